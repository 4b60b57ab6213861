#!/usr/bin/env python3
"""systemd-nspawn test hosts for kickstack: a "lab" of Debian containers with systemd
as PID 1, each in its own network namespace, joined by a bridge in a namespace of its
own. The host reaches the nodes over ssh through a veth pair from the root namespace
into that bridge; no test traffic leaves the host.

    python3 tests/harness/nspawn.py up     --spec lab.json
    python3 tests/harness/nspawn.py status --spec lab.json      # or --lab NAME
    python3 tests/harness/nspawn.py down   --spec lab.json      # or --lab NAME

Spec (JSON file or dict):

    {"lab": "cloud", "subnet": "10.60.0.0/24",
     "nodes": [{"name": "ctl01", "ip": "10.60.0.11"},
               {"name": "cmp01", "ip": "10.60.0.21", "mac": "02:00:0a:3c:00:15"}],
     # optional:
     "bridge_ip": "10.60.0.1",  "host_ip": "10.60.0.254",
     "rootfs": "/var/cache/kickstack/rootfs/bookworm-...",   # default: scripts/build-rootfs
     "packages": ["mariadb-server"],   # baked into the rootfs: nodes reach no mirror
     "nspawn_args": ["--bind-ro=/srv"], "boot_timeout": 90,
     "binds": [{"src": "/var/cache/kickstack/wheels/abc", "dst": "/srv/kickstack/wheels"}]}
                                       # read-only bind mounts (--bind-ro=SRC:DST) into
                                       # every node; src must be an existing directory

Nodes may also carry their own "nspawn_args"; their own "packages" (a rootfs of their own, built
from those instead of the lab's list); and "defer": true, for a node `up` prepares but does not
start: `install` later runs a kickstart's %post scripts in its root, as the installer runs them,
in its network namespace (the boot server sees the node's own address), then boots it:

    python3 tests/harness/nspawn.py install --lab LAB --node NAME --ks URL   # needs pykickstart

Topology (all names derived from the
lab name, so `down` needs no state and is safe to run twice):

    root netns: ks<hash>h (host_ip/24) ==veth== [netns ks-LAB-br: uplink, br0 (bridge_ip/24)]
    netns ks-LAB-NODE: eth0 (ip/24, default via bridge_ip) ==veth== n<i> in br0

The bridge namespace does not forward (ip_forward=0), so nothing from a node leaves
the lab. State lives in /var/tmp/kickstack/LAB/ ($KICKSTACK_STATE_ROOT): the ssh key,
per-node overlay upper dirs and console logs, state.json, inventory.yml, ssh_config.
Python 3.11+, stdlib only. Needs root.
"""
from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import hashlib
import ipaddress
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

try:
    from . import common  # imported as part of a package
except ImportError:
    import common  # run as a script, or imported with tests/harness on sys.path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
BUILD_ROOTFS = REPO / "scripts" / "build-rootfs"
CGROUP_BASE = "kickstack"
# Seconds `up` waits for another lab on the same subnet to go away (KICKSTACK_LAB_WAIT).
LAB_WAIT = int(os.environ.get("KICKSTACK_LAB_WAIT", "1500"))
NAME_RE = re.compile(r"^[a-z0-9]([a-z0-9-]{0,30}[a-z0-9])?$")


HarnessError, run, pid_alive = common.HarnessError, common.run, common.pid_alive
log = common.logger("nspawn")


# --------------------------------------------------------------------------- spec
def load_spec(spec: dict | str | Path) -> dict:
    """Validate a spec and fill in defaults. Accepts a dict or a JSON file path."""
    if not isinstance(spec, dict):
        spec = common.read_spec(spec)
    s = dict(spec)
    lab = s.get("lab", "")
    if not NAME_RE.match(lab) or len(lab) > 20:
        raise HarnessError(f"lab name {lab!r}: lowercase letters, digits, '-', at most 20")
    net = ipaddress.ip_network(s["subnet"], strict=True)
    if net.version != 4 or net.prefixlen > 29:
        raise HarnessError(f"subnet {net}: need IPv4, /29 or larger")
    hosts = list(net.hosts())
    s["subnet"] = str(net)
    s["bridge_ip"] = str(ipaddress.ip_address(s.get("bridge_ip", str(hosts[0]))))
    s["host_ip"] = str(ipaddress.ip_address(s.get("host_ip", str(hosts[-1]))))
    s.setdefault("nspawn_args", [])
    s.setdefault("boot_timeout", 90)
    binds = []
    for b in s.get("binds") or []:
        src, dst = (b.get("src", ""), b.get("dst", "")) if isinstance(b, dict) else ("", "")
        if not (src.startswith("/") and dst.startswith("/")) or ":" in src + dst:
            raise HarnessError(f"bind {b!r}: need {{'src': ABSPATH, 'dst': ABSPATH}} without ':'")
        binds.append({"src": src, "dst": dst})
    s["binds"] = binds
    s["packages"] = sorted(set(s.get("packages") or []))
    bad = [p for p in s["packages"] if not re.match(r"^[a-z0-9][a-z0-9+.-]+$", p)]
    if bad:
        raise HarnessError(f"bad package names: {bad}")
    seen_names, seen_ips, seen_macs = set(), {s["bridge_ip"], s["host_ip"]}, set()
    if s["bridge_ip"] == s["host_ip"]:
        raise HarnessError("bridge_ip and host_ip must differ")
    nodes = []
    for n in s.get("nodes") or []:
        n = dict(n)
        name, ip = n.get("name", ""), n.get("ip", "")
        if not NAME_RE.match(name) or len(f"ks-{lab}-{name}") > 60:
            raise HarnessError(f"node name {name!r} is not a valid short hostname")
        if name in seen_names:
            raise HarnessError(f"node name {name} appears twice")
        addr = ipaddress.ip_address(ip)
        if addr not in net or addr in (net.network_address, net.broadcast_address):
            raise HarnessError(f"node {name}: {ip} is not a host address of {net}")
        if ip in seen_ips:
            raise HarnessError(f"node {name}: {ip} is already taken in the lab")
        mac = n.get("mac") or common.lab_mac(lab, name)
        mac = mac.lower()
        if not re.match(r"^([0-9a-f]{2}:){5}[0-9a-f]{2}$", mac) or int(mac[:2], 16) & 1:
            raise HarnessError(f"node {name}: bad or multicast MAC {mac}")
        if mac in seen_macs:
            raise HarnessError(f"node {name}: MAC {mac} is already taken")
        seen_names.add(name)
        seen_ips.add(ip)
        seen_macs.add(mac)
        n.update(ip=str(addr), mac=mac)
        n.setdefault("nspawn_args", [])
        if not isinstance(n.setdefault("defer", False), bool):
            raise HarnessError(f"node {name}: defer must be true or false")
        if "packages" in n:
            n["packages"] = sorted(set(n["packages"] or []))
            bad = [p for p in n["packages"] if not re.match(r"^[a-z0-9][a-z0-9+.-]+$", p)]
            if bad:
                raise HarnessError(f"node {name}: bad package names: {bad}")
        nodes.append(n)
    if not nodes:
        raise HarnessError("spec has no nodes")
    s["nodes"] = nodes
    return s


def names(lab: str) -> dict:
    h = hashlib.sha256(lab.encode()).hexdigest()[:8]
    return {
        "state": common.state_dir(lab),
        "br_ns": f"ks-{lab}-br",
        "host_if": f"ks{h}h",  # root-namespace end of the host<->bridge veth (<= 15 chars)
    }


def node_ns(lab: str, node: str) -> str:
    return f"ks-{lab}-{node}"


def cgroup_roots() -> list[Path]:
    """Hierarchies a launcher must be moved into (hybrid: name=systemd + unified)."""
    base = Path("/sys/fs/cgroup")
    roots = [base / d for d in ("systemd", "unified") if (base / d / "cgroup.procs").exists()]
    if not roots and (base / "cgroup.procs").exists():  # pure cgroup v2 host
        roots = [base]
    return roots


def node_cgroups(lab: str, node: str) -> list[Path]:
    return [r / CGROUP_BASE / lab / node for r in cgroup_roots()]


# --------------------------------------------------------------------- processes
def cgroup_pids(cg: Path) -> set[int]:
    pids: set[int] = set()
    if cg.is_dir():
        for procs in cg.rglob("cgroup.procs"):
            try:
                pids.update(int(x) for x in procs.read_text().split())
            except OSError:
                pass
    return pids


def find_leader(launcher: int) -> int | None:
    """The container's PID 1 as seen from the host: a descendant of the launcher whose
    innermost namespace PID is 1."""
    children: dict[int, list[int]] = {}
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            ppid = int((d / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(d.name))
    todo = list(children.get(launcher, []))
    while todo:
        pid = todo.pop(0)
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("NSpid:"):
                    f = line.split()[1:]
                    if len(f) > 1 and f[-1] == "1":
                        return pid
        except OSError:
            continue
        todo.extend(children.get(pid, []))
    return None


def nsenter(leader: int, cmd: list[str], timeout: float = 30, check: bool = False):
    return run(["nsenter", "-t", str(leader), "-m", "-u", "-i", "-n", "-p", "--", *cmd],
               check=check, timeout=timeout)


# ------------------------------------------------------------------------ network
def netns_exists(ns: str) -> bool:
    return Path(f"/run/netns/{ns}").exists()


def _overlaps_root_routes(net: ipaddress.IPv4Network, own_if: str) -> str | None:
    out = run(["ip", "-j", "-4", "route", "show", "table", "all"], check=False).stdout
    for r in json.loads(out or "[]"):
        dst = r.get("dst", "")
        if dst in ("default", "") or r.get("dev") == own_if or r.get("type") in (
                "broadcast", "local", "multicast"):
            continue
        try:
            if ipaddress.ip_network(dst, strict=False).overlaps(net):
                return f"{dst} dev {r.get('dev')}"
        except ValueError:
            continue
    return None


def setup_network(spec: dict) -> None:
    lab, n = spec["lab"], names(spec["lab"])
    net = ipaddress.ip_network(spec["subnet"])
    plen = net.prefixlen
    clash = _overlaps_root_routes(net, n["host_if"])
    # Another kickstack lab on the same subnet (its host end is named ks<hash>h): wait for it
    # to be torn down, so two test runs on one machine take turns instead of failing.
    deadline = time.monotonic() + LAB_WAIT
    while clash and re.search(r" dev ks[0-9a-f]+h$", clash) and time.monotonic() < deadline:
        log(f"subnet {net} is used by another lab ({clash}); waiting")
        time.sleep(10)
        clash = _overlaps_root_routes(net, n["host_if"])
    if clash:
        raise HarnessError(f"subnet {net} overlaps a route of the host ({clash}); pick another")
    br = n["br_ns"]
    run(["ip", "netns", "add", br])
    ipn = ["ip", "-n", br]
    run(ipn + ["link", "set", "lo", "up"])
    run(ipn + ["link", "add", "br0", "type", "bridge", "stp_state", "0", "forward_delay", "0"])
    run(ipn + ["addr", "add", f"{spec['bridge_ip']}/{plen}", "dev", "br0"])
    run(ipn + ["link", "set", "br0", "up"])
    # host <-> bridge: the root end gets host_ip, the other end is a bridge port.
    run(["ip", "link", "add", n["host_if"], "type", "veth", "peer", "name", "uplink", "netns", br])
    run(ipn + ["link", "set", "uplink", "master", "br0", "up"])
    run(["sysctl", "-qw", f"net.ipv6.conf.{n['host_if']}.disable_ipv6=1"], check=False)
    run(["ip", "addr", "add", f"{spec['host_ip']}/{plen}", "dev", n["host_if"]])
    run(["ip", "link", "set", n["host_if"], "up"])
    for i, node in enumerate(spec["nodes"]):
        ns = node_ns(lab, node["name"])
        run(["ip", "netns", "add", ns])
        run(["ip", "-n", ns, "link", "set", "lo", "up"])
        run(ipn + ["link", "add", f"n{i}", "type", "veth", "peer", "name", "eth0", "netns", ns])
        run(ipn + ["link", "set", f"n{i}", "master", "br0", "up"])
        run(["ip", "-n", ns, "link", "set", "eth0", "address", node["mac"]])
        run(["ip", "-n", ns, "addr", "add", f"{node['ip']}/{plen}", "dev", "eth0"])
        run(["ip", "-n", ns, "link", "set", "eth0", "up"])
        # A default route so tools find a "primary" address (ansible_default_ipv4);
        # the bridge namespace does not forward, so nothing leaves the lab.
        run(["ip", "-n", ns, "route", "add", "default", "via", spec["bridge_ip"]])


def teardown_network(spec: dict) -> None:
    lab, n = spec["lab"], names(spec["lab"])
    for node in spec["nodes"]:
        ns = node_ns(lab, node["name"])
        if netns_exists(ns):
            run(["ip", "netns", "del", ns], check=False)
    if netns_exists(n["br_ns"]):
        run(["ip", "netns", "del", n["br_ns"]], check=False)
    if Path(f"/sys/class/net/{n['host_if']}").exists():
        run(["ip", "link", "del", n["host_if"]], check=False)


# ------------------------------------------------------------------------- rootfs
def get_rootfs(spec: dict, node: dict | None = None) -> str:
    """The lab's rootfs, or the node's own when it names its own packages."""
    own = node is not None and "packages" in node
    rootfs = None if own else spec.get("rootfs") or os.environ.get("KICKSTACK_ROOTFS")
    if not rootfs:
        packages = node["packages"] if own else spec["packages"]
        extra = ["--extra-packages", " ".join(packages)] if packages else []
        rootfs = common.build_output([BUILD_ROOTFS, *extra])
    if not Path(rootfs, "usr/lib/systemd/systemd").exists():
        raise HarnessError(f"{rootfs} does not look like a rootfs with systemd")
    return rootfs


def prepare_upper(spec: dict, node: dict, upper: Path, pubkey: str) -> None:
    """Files the node sees on top of the shared rootfs (its overlay upper dir)."""
    (upper / "etc").mkdir(parents=True, exist_ok=True)
    (upper / "etc/hostname").write_text(node["name"] + "\n")
    # The node's own name resolves to its lab address (services bind to it).
    hosts = ["127.0.0.1\tlocalhost", "::1\tlocalhost ip6-localhost ip6-loopback",
             "ff02::1\tip6-allnodes", "ff02::2\tip6-allrouters", "",
             f"# kickstack lab {spec['lab']}"]
    hosts += [f"{n['ip']}\t{n['name']}" for n in spec["nodes"]]
    (upper / "etc/hosts").write_text("\n".join(hosts) + "\n")
    # No DNS in a lab: no nameserver line means 127.0.0.1, so lookups fail at once
    # instead of timing out against an address outside the lab.
    (upper / "etc/resolv.conf").write_text("# kickstack lab: no DNS, names are in /etc/hosts\n"
                                           "options timeout:1 attempts:1\n")
    # The harness logs in as root with its key. sshd takes the first value it reads, and its
    # drop-ins in name order: this one wins over a node's own (a kickstart's %post says no root).
    (upper / "etc/ssh/sshd_config.d").mkdir(parents=True, exist_ok=True)
    (upper / "etc/ssh/sshd_config.d/05-kickstack-lab.conf").write_text(
        "# kickstack test lab: the harness's root login with its key\nPermitRootLogin prohibit-password\n")
    ssh = upper / "root/.ssh"
    ssh.mkdir(parents=True, exist_ok=True)
    os.chmod(upper / "root", 0o700)
    os.chmod(ssh, 0o700)
    ak = ssh / "authorized_keys"
    ak.write_text(pubkey)
    os.chmod(ak, 0o600)


# ---------------------------------------------------------------------- lifecycle
def _launch(cgroups: list[str], logfile: str, argv: list[str]) -> int:
    """Start argv detached (new session, reparented to init), as the only process of
    the given cgroups. Runs in a fresh single-threaded helper process (see main)."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(r)
            os.setsid()
            for cg in cgroups:
                Path(cg, "cgroup.procs").write_text(f"{os.getpid()}\n")
            fd = os.open(logfile, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
            null = os.open(os.devnull, os.O_RDONLY)
            os.dup2(null, 0)
            os.dup2(fd, 1)
            os.dup2(fd, 2)
            os.write(w, b"ok")
            os.close(w)
            os.execvp(argv[0], argv)
        finally:
            os._exit(127)
    os.close(w)
    ok = os.read(r, 2)
    os.close(r)
    if ok != b"ok":
        raise HarnessError(f"launcher for {argv} failed before exec")
    return pid


def start_node(spec: dict, node: dict, rootfs: str, state: Path) -> int:
    lab, name = spec["lab"], node["name"]
    ndir = state / name
    upper = ndir / "upper"
    cgs = node_cgroups(lab, name)
    for cg in cgs:
        cg.mkdir(parents=True, exist_ok=True)
    # nsenter --net (which execs, keeping the PID) puts nspawn itself in the node's
    # namespace, so the sysfs nspawn mounts for the container shows the node's
    # interfaces. With --network-namespace-path alone, /sys/class/net inside shows
    # the HOST's interfaces (wrong MAC/MTU in Ansible facts). Not `ip netns exec`:
    # it remounts /sys without the cgroup mounts, and nspawn then fails.
    argv = ["nsenter", f"--net=/run/netns/{node_ns(lab, name)}", "--",
            "systemd-nspawn", "-q", "-D", rootfs, "-b", "--register=no", "--keep-unit",
            # machine name unique across labs (nspawn keys /run/systemd/nspawn/* on it)
            "-M", f"{lab}-{name}", f"--hostname={name}", f"--overlay={rootfs}:{upper}:/",
            f"--network-namespace-path=/run/netns/{node_ns(lab, name)}",
            "--link-journal=no", "--console=read-only", "--resolv-conf=off",
            "--timezone=off", *[f"--bind-ro={b['src']}:{b['dst']}" for b in spec.get("binds", [])],
            *spec["nspawn_args"], *node["nspawn_args"]]
    # A fresh interpreter forks and execs, so the launcher never belongs to (and is
    # never reaped by) a multi-threaded caller such as pytest or ansible.
    env = dict(os.environ, SYSTEMD_NSPAWN_LOCK="0")  # nodes share one read-only lower dir
    p = subprocess.run([sys.executable, __file__, "_launch", "--log", str(ndir / "console.log"),
                        *[a for cg in cgs for a in ("--cgroup", str(cg))], "--", *argv],
                       capture_output=True, text=True, env=env)
    if p.returncode != 0:
        raise HarnessError(f"starting {name} failed: {p.stderr.strip()}")
    return int(p.stdout.strip())


def wait_node(spec: dict, node: dict, launcher: int, deadline: float) -> dict:
    name = node["name"]
    leader = None
    while time.monotonic() < deadline:
        if not pid_alive(launcher):
            raise HarnessError(f"{name}: systemd-nspawn exited; see its console.log")
        leader = find_leader(launcher)
        if leader:
            break
        time.sleep(0.1)
    if not leader:
        raise HarnessError(f"{name}: no container PID 1 found")
    state = ""
    while time.monotonic() < deadline:
        try:
            p = nsenter(leader, ["systemctl", "is-system-running", "--wait"],
                        timeout=max(1.0, deadline - time.monotonic()))
            state = p.stdout.strip()
            if state in ("running", "degraded"):
                break
        except subprocess.TimeoutExpired:
            break
        time.sleep(0.2)  # "Failed to connect to bus" while systemd is still coming up
    if state not in ("running", "degraded"):
        raise HarnessError(f"{name}: systemd did not finish booting (state {state!r})")
    if state == "degraded":
        failed = nsenter(leader, ["systemctl", "--failed", "--plain", "--no-legend"]).stdout
        log(f"{name}: degraded; failed units: {failed.strip()}")
    while time.monotonic() < deadline:
        if common.port_answers(node["ip"], 22, timeout=2, banner=b"SSH-"):
            return {"launcher": launcher, "leader": leader, "systemd": state}
        time.sleep(0.2)
    raise HarnessError(f"{name}: sshd on {node['ip']}:22 did not answer")


def write_inventory(spec: dict, state: Path, key: Path) -> Path:
    hosts = {n["name"]: {"ansible_host": n["ip"]} for n in spec["nodes"]}
    common.write_ssh_config(state / "ssh_config", key, [(n["name"], n["ip"], None) for n in spec["nodes"]])
    inventory = {"all": {"vars": common.ansible_ssh_vars(key),
                         "children": {spec["lab"].replace("-", "_"): {"hosts": hosts}}}}
    return common.write_inventory(state / "inventory.yml", inventory,
                                  "generated by tests/harness/nspawn.py; removed by `down`")


def up(spec: dict | str | Path) -> dict:
    """Bring a lab up (tearing down any leftover of the same lab first); returns the
    state dict that is also written to STATE/state.json."""
    spec = load_spec(spec)
    _need_root()
    # Checked here, not in load_spec: `down` must work after a bound directory is gone.
    for b in spec.get("binds", []):
        if not Path(b["src"]).is_dir():
            raise HarnessError(f"bind {b!r}: {b['src']} is not a directory")
    t0 = time.monotonic()
    down(spec, quiet=True)
    rootfs = get_rootfs(spec)
    rootfs_of = {nd["name"]: get_rootfs(spec, nd) if "packages" in nd else rootfs for nd in spec["nodes"]}
    n = names(spec["lab"])
    state: Path = n["state"]
    state.mkdir(parents=True, exist_ok=True)
    os.chmod(state, 0o700)
    key = common.ensure_key(state)
    pub = (state / "id_ed25519.pub").read_text()
    record = {"spec": spec, "rootfs": rootfs, "state_dir": str(state), "nodes": {},
              "host_if": n["host_if"], "bridge_netns": n["br_ns"]}
    try:
        setup_network(spec)
        launchers = {}
        for node in spec["nodes"]:
            upper = state / node["name"] / "upper"
            upper.mkdir(parents=True, exist_ok=True)
            prepare_upper(spec, node, upper, pub)
            record["nodes"][node["name"]] = {"launcher": None, "ip": node["ip"], "mac": node["mac"],
                                             "rootfs": rootfs_of[node["name"]]}
            if node["defer"]:
                record["nodes"][node["name"]]["systemd"] = "deferred"
                continue
            launchers[node["name"]] = start_node(spec, node, rootfs_of[node["name"]], state)
            record["nodes"][node["name"]]["launcher"] = launchers[node["name"]]
        common.write_state(state, record)
        deadline = time.monotonic() + float(spec["boot_timeout"])
        started = [nd for nd in spec["nodes"] if not nd["defer"]]
        with concurrent.futures.ThreadPoolExecutor(max(1, len(started))) as ex:
            futs = {nd["name"]: ex.submit(wait_node, spec, nd, launchers[nd["name"]], deadline)
                    for nd in started}
            for name, f in futs.items():
                record["nodes"][name].update(f.result())
    except BaseException:
        if state.is_dir():
            common.write_state(state, record)
        if os.environ.get("KICKSTACK_KEEP"):
            log(f"up failed; KICKSTACK_KEEP set, leaving the lab as it is ({state})")
        else:
            log("up failed; tearing the lab down (KICKSTACK_KEEP=1 keeps it, "
                "with the console logs)")
            down(spec, quiet=True)
        raise
    record["inventory"] = str(write_inventory(spec, state, key))
    record["ssh_key"] = str(key)
    record["up_seconds"] = round(time.monotonic() - t0, 2)
    common.write_state(state, record)
    log(f"lab {spec['lab']} up in {record['up_seconds']} s: "
        + ", ".join(f"{k}={v['ip']}({v['systemd']})" for k, v in record["nodes"].items()))
    return record


def install(lab: str, name: str, ks_url: str) -> dict:
    """Install a deferred node as the installer would, then boot it: fetch its kickstart from the
    boot server inside the node's network namespace, run the kickstart's %post scripts (extracted
    with pykickstart) in the node's root with its network, stop on a failing --erroronfail one,
    and start the node. Returns the node's record."""
    _need_root()
    try:  # pykickstart: only this command needs it
        from . import ks_scripts
    except ImportError:
        import ks_scripts

    state = common.state_dir(lab)
    rec = common.read_state(state)
    if not rec or name not in rec.get("nodes", {}):
        raise HarnessError(f"lab {lab} has no node {name} (run `up` first)")
    spec = rec["spec"]
    node = next(nd for nd in spec["nodes"] if nd["name"] == name)
    if rec["nodes"][name].get("launcher"):
        raise HarnessError(f"{name} is running already: only a deferred node is installed")
    ns = node_ns(lab, name)
    ndir = state / name
    work = ndir / "install"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    fetched = run(["ip", "netns", "exec", ns, "curl", "--fail", "--silent", "--show-error", "--max-time", "60",
                   "--output", str(work / "ks.cfg"), ks_url])
    if fetched.returncode != 0:
        raise HarnessError(f"{name}: fetching its kickstart {ks_url} failed: {fetched.stderr.strip()}")
    scripts = ks_scripts.post_scripts(work / "ks.cfg", work)
    rootfs, upper = rec["nodes"][name].get("rootfs") or rec["rootfs"], ndir / "upper"
    env = dict(os.environ, SYSTEMD_NSPAWN_LOCK="0")
    for i, script in enumerate(scripts, 1):
        argv = ["nsenter", f"--net=/run/netns/{ns}", "--",
                "systemd-nspawn", "-q", "-D", rootfs, "--register=no", "--keep-unit", "-M", f"{lab}-{name}-install",
                f"--overlay={rootfs}:{upper}:/", f"--network-namespace-path=/run/netns/{ns}",
                "--link-journal=no", "--resolv-conf=off", "--timezone=off", "--pipe",
                f"--bind-ro={work}:/run/kickstack-install",
                *[f"--bind-ro={b['src']}:{b['dst']}" for b in spec.get("binds", [])],
                "--", script["interp"], f"/run/kickstack-install/{script['file']}"]
        t0 = time.monotonic()
        p = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=1800)
        output = p.stdout + p.stderr
        if script.get("log"):
            target = upper / script["log"].lstrip("/")
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(output)
            os.chmod(target, 0o600)
        (work / f"{script['file']}.log").write_text(output)
        log(f"{name}: %post script {i} of {len(scripts)} ({script['interp']}) exited {p.returncode} "
            f"in {time.monotonic() - t0:.1f} s")
        if p.returncode != 0 and script["erroronfail"]:
            raise HarnessError(f"{name}: %post script {i} failed (exit {p.returncode}); its output ends:\n"
                               + output[-3000:])
    launcher = start_node(spec, node, rootfs, state)
    rec["nodes"][name].update(launcher=launcher)
    common.write_state(state, rec)
    rec["nodes"][name].update(wait_node(spec, node, launcher, time.monotonic() + float(spec["boot_timeout"])))
    common.write_state(state, rec)
    return rec["nodes"][name]


def _spec_from_lab(lab: str) -> dict:
    rec = common.read_state(common.state_dir(lab))
    if not rec:
        raise HarnessError(f"no state for lab {lab} ({common.state_dir(lab) / 'state.json'}); pass --spec")
    return rec["spec"]


def down(spec: dict | str | Path, quiet: bool = False, stop_timeout: float = 20) -> None:
    """Stop every container of the lab and remove its namespaces, veths, cgroups and
    state dir. Works from the spec alone; safe to run any number of times."""
    spec = load_spec(spec)
    _need_root()
    lab = spec["lab"]
    n = names(lab)
    state: Path = n["state"]
    launchers: set[int] = set()
    try:
        rec = common.read_state(state) or {}
        launchers = {v["launcher"] for v in rec.get("nodes", {}).values() if v.get("launcher")}
    except (ValueError, KeyError):
        pass
    cgs = [cg for node in spec["nodes"] for cg in node_cgroups(lab, node["name"])]
    # Only trust a recorded PID if it is still in one of our cgroups (PIDs get reused).
    ours = set().union(*(cgroup_pids(cg) for cg in cgs)) if cgs else set()
    launchers = {p for p in launchers if p in ours and pid_alive(p)}
    # Launchers without a record: nspawn moves itself to NODE/supervisor (the
    # container lives in NODE/payload); before that it is in NODE itself.
    for cg in cgs:
        for d in (cg, cg / "supervisor"):
            try:
                launchers.update(int(x) for x in (d / "cgroup.procs").read_text().split())
            except OSError:
                pass
    # nspawn turns SIGTERM into a clean poweroff of the container
    common.stop(launchers, grace=stop_timeout)
    for _ in range(50):
        left = {p for cg in cgs for p in cgroup_pids(cg) if pid_alive(p)}
        if not left:
            break
        if not quiet:
            log(f"killing leftover processes {sorted(left)}")
        for pid in left:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.1)
    for cg in cgs:
        _rmdir_tree(cg)
    for root in cgroup_roots():
        for d in (root / CGROUP_BASE / lab, root / CGROUP_BASE):
            with contextlib.suppress(OSError):
                d.rmdir()
    teardown_network(spec)
    for node in spec["nodes"]:
        for machine in (f"{lab}-{node['name']}", f"{lab}-{node['name']}-install"):
            prop = Path("/run/systemd/nspawn/propagate", machine)
            if prop.is_dir() and not any(prop.iterdir()):
                prop.rmdir()
    if state.exists():
        mounts = [ln.split()[1] for ln in Path("/proc/mounts").read_text().splitlines()]
        if any(m.startswith(str(state) + "/") for m in mounts):
            raise HarnessError(f"mounts left under {state}; not removing it")
        shutil.rmtree(state)
    if not quiet:
        log(f"lab {lab} down")


def _rmdir_tree(cg: Path, timeout: float = 10) -> None:
    # Processes just killed with SIGKILL keep their cgroup busy (EBUSY) until the kernel
    # has finished tearing them down: retry for a while before giving up.
    deadline = time.monotonic() + timeout
    while cg.is_dir():
        for d in sorted((p for p in cg.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts)):
            with contextlib.suppress(OSError):
                d.rmdir()
        try:
            cg.rmdir()
        except OSError as e:
            if time.monotonic() > deadline:
                raise HarnessError(f"cannot remove cgroup {cg}: {e}") from e
            time.sleep(0.2)


def status(spec: dict | str | Path) -> dict:
    """Per node: launcher alive, systemd state, sshd answering."""
    spec = load_spec(spec)
    lab = spec["lab"]
    rec = common.read_state(names(lab)["state"]) or {"nodes": {}}
    out = {}
    for node in spec["nodes"]:
        r = rec["nodes"].get(node["name"], {})
        launcher = r.get("launcher")
        alive = bool(launcher) and pid_alive(launcher) and launcher in set().union(
            *(cgroup_pids(cg) for cg in node_cgroups(lab, node["name"])))
        leader = find_leader(launcher) if alive else None
        systemd = ""
        if leader:
            try:
                systemd = nsenter(leader, ["systemctl", "is-system-running"], timeout=10).stdout.strip()
            except subprocess.TimeoutExpired:
                systemd = "timeout"
        ssh = alive and common.port_answers(node["ip"], 22)
        out[node["name"]] = {"ip": node["ip"], "running": alive, "leader": leader,
                             "systemd": systemd or "stopped", "ssh": ssh}
    return out


def _need_root() -> None:
    if os.geteuid() != 0:
        raise HarnessError("must run as root (network namespaces, cgroups, systemd-nspawn)")


@common.cli(log)
def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "_launch":  # internal: see start_node()
        ap = argparse.ArgumentParser()
        ap.add_argument("--cgroup", action="append", default=[])
        ap.add_argument("--log", required=True)
        ap.add_argument("argv", nargs=argparse.REMAINDER)
        a = ap.parse_args(argv[1:])
        cmd = a.argv[1:] if a.argv[:1] == ["--"] else a.argv
        print(_launch(a.cgroup, a.log, cmd))
        return 0
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("action", choices=["up", "down", "status", "install"])
    ap.add_argument("--node", help="install: the deferred node")
    ap.add_argument("--ks", help="install: the node's kickstart URL (fetched from the node's address)")
    g = ap.add_mutually_exclusive_group(required=True)
    g.add_argument("--spec", help="lab spec, a JSON file")
    g.add_argument("--lab", help="lab name (down/status: use the spec saved by `up`)")
    a = ap.parse_args(argv)
    if a.action == "install":
        if not (a.lab and a.node and a.ks):
            ap.error("install needs --lab, --node and --ks")
        print(json.dumps(install(a.lab, a.node, a.ks), indent=2))
        return 0
    if a.spec:
        spec = a.spec
    else:
        try:
            spec = _spec_from_lab(a.lab)
        except HarnessError:
            if a.action == "down":
                return 0  # nothing recorded, nothing to do
            raise
    if a.action == "up":
        rec = up(spec)
        print(json.dumps({"inventory": rec["inventory"], "ssh_key": rec["ssh_key"],
                          "state_dir": rec["state_dir"], "up_seconds": rec["up_seconds"],
                          "nodes": rec["nodes"]}, indent=2))
    elif a.action == "down":
        down(spec)
    else:
        res = status(spec)
        print(json.dumps(res, indent=2))
        return 0 if all(v["running"] and v["systemd"] in ("running", "degraded") and v["ssh"]
                        for v in res.values()) else 3
    return 0


if __name__ == "__main__":
    sys.exit(main())
