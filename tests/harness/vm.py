#!/usr/bin/env python3
"""QEMU (TCG) test VMs for kickstack's storage tests.

    python3 tests/harness/vm.py up|down|status --spec FILE [--json]
    python3 tests/harness/vm.py power --lab LAB NODE on|off|reset|freeze|status [--json] [--wait]
    python3 tests/harness/vm.py link --lab LAB NODE up|down|status [--json]

The spec is JSON (or YAML when PyYAML happens to be importable)::

    {"lab": "storage",
     "nodes": [
       {"name": "stor01", "link_ip": "10.60.1.31/24", "ssh_port": 2231,
        "disks": [{"serial": "drbd0", "size": "1G"}]},
       {"name": "stor02", "link_ip": "10.60.1.32/24", "ssh_port": 2232,
        "disks": [{"serial": "drbd0", "size": "1G"}]}]}

Optional keys: top level ``memory`` (MiB, default 1024), ``cpus`` (1), ``image`` (a directory
made by scripts/build-vm-image; default: run that script, which reuses its cache),
``boot_timeout`` (s, default 600), ``bmc`` (below); per node ``memory``/``cpus``; per disk
``format`` (raw|qcow2).

Each VM: the cached root image under a qcow2 overlay, data disks as virtio-blk with a serial
(the guest sees /dev/disk/by-id/virtio-<serial>; root is /dev/vda, data disks /dev/vdb, /dev/vdc...
in spec order, because the PCI slots are fixed), user-mode networking with restrict=on and ssh
forwarded from 127.0.0.1:<ssh_port>, and a private link to the other VMs: two nodes get a
point-to-point UDP socket link over loopback; three or more are joined by a small UDP hub
(``vm.py hub``) on loopback. Inside, the link NIC carries ``link_ip``; the user NIC gets DHCP.
Per-VM settings reach the guest on the kernel command line (kickstack.* parameters, applied by
kickstack-seed.service baked into the image).

Power: a reset (guest reboot, QMP system_reset) reboots the same kernel with the same command
line; a guest power-off ends QEMU; a guest kernel panic ends QEMU with an error (pvpanic device,
``-action panic=exit-failure``; a panic before udev loads pvpanic is caught from the serial log
while waiting for ssh). ``vm.py power`` cuts and restores power through QMP (tests/harness/bmc.py:
off freezes the vCPUs like a power loss and the BMC reports PowerState Off; on resets and boots
the guest again; reset reboots; freeze stops the vCPUs but the BMC still reports On, a hung node).
``vm.py link`` cuts (down) or restores (up) a VM's private link with QMP ``set_link``: the guest's
NIC loses its carrier and no frame passes either way, as with a pulled cable; cut both ends for a
split of the pair. The link state survives a guest reset.

BMC: with a top-level ``bmc`` object in the spec, ``{"bmc": {"username": "kickstack", "password": "..."}}``
(``"bmc": true`` or no password: username kickstack and a random password, read it from
state.json's bmc.credentials_file), ``up`` also starts a Redfish service for the lab (bmc.py) on
127.0.0.1 (HTTPS, self-signed), which every guest reaches at https://10.0.2.100:443 (a guestfwd of
its user-mode NIC), one ComputerSystem per node at /redfish/v1/Systems/<node>, as
``fence_redfish --ip 10.0.2.100 --ssl-insecure --systems-uri /redfish/v1/Systems/<node> ...`` wants it.
Requests are logged to <state>/bmc.log (JSON lines, no password). state.json has ``bmc``
(address, port, host_address, host_port, username, credentials_file, log, systems) and each node
``bmc_systems_uri``; instances.json and inventory.yml carry the address, port and systems URI.

State lives in /var/tmp/kickstack/<lab>/ (KICKSTACK_STATE_ROOT overrides): ssh key, overlays,
disks, pidfiles, serial logs (<node>/serial.log), inventory.yml (Ansible), ssh_config,
instances.json (molecule instance config) and state.json. ``down`` kills the VMs and removes it.

Python 3.11+ standard library only.
"""
from __future__ import annotations

import argparse
import base64
import json
import os
import shlex
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

try:
    from . import bmc as bmc_mod, common  # imported as part of a package
except ImportError:
    import bmc as bmc_mod  # run as a script, or imported with tests/harness on sys.path
    import common

HarnessError, read_pid, state_dir = common.HarnessError, common.read_pid, common.state_dir

REPO = Path(__file__).resolve().parents[2]
BUILD_SCRIPT = REPO / "scripts" / "build-vm-image"

# Fixed PCI slots keep guest device names stable: NICs first, then root (vda), data disks.
PCI_USER_NIC, PCI_LINK_NIC, PCI_RNG, PCI_ROOT, PCI_DATA0 = 3, 4, 5, 6, 7
LINK_NETDEV = "n1"  # the private link's netdev id (`vm.py link` cuts it)
log = common.logger("vm.py")


# ---------------------------------------------------------------- spec
def load_spec(path: str | os.PathLike) -> dict:
    return normalize_spec(common.read_spec(path))


def normalize_spec(spec: dict) -> dict:
    if not isinstance(spec, dict) or not spec.get("lab"):
        raise HarnessError("spec needs a 'lab' name")
    lab = str(spec["lab"])
    if not lab.replace("-", "").replace("_", "").isalnum():
        raise HarnessError(f"lab name {lab!r}: use letters, digits, - and _ only")
    nodes = spec.get("nodes") or []
    names = [n.get("name") for n in nodes]
    if not nodes or not all(names) or len(set(names)) != len(names):
        raise HarnessError("spec needs 'nodes', each with a unique 'name'")
    out_nodes = []
    for idx, node in enumerate(nodes):
        disks = []
        for d_idx, disk in enumerate(node.get("disks", node.get("data_disks", [])) or []):
            serial = str(disk.get("serial") or disk.get("name") or f"data{d_idx}")
            if len(serial) > 20 or not serial.replace("-", "").replace("_", "").isalnum():
                raise HarnessError(f"{node['name']}: disk serial {serial!r} must be <= 20 chars [A-Za-z0-9_-]")
            fmt = disk.get("format", "raw")
            if fmt not in ("raw", "qcow2"):
                raise HarnessError(f"{node['name']}: disk format {fmt!r} (raw or qcow2)")
            disks.append({
                "serial": serial,
                "size": str(disk.get("size", "1G")),
                "format": fmt,
                "guest_device": "/dev/vd" + chr(ord("b") + d_idx),
                "guest_by_id": f"/dev/disk/by-id/virtio-{serial}",
            })
        out_nodes.append({
            "name": str(node["name"]),
            "index": idx,
            "link_ip": node.get("link_ip"),
            "ssh_port": node.get("ssh_port"),
            "memory": int(node.get("memory", spec.get("memory", 1024))),
            "cpus": int(node.get("cpus", spec.get("cpus", 1))),
            "disks": disks,
        })
    bmc = spec.get("bmc")
    if bmc is True:
        bmc = {}
    if bmc not in (None, False) and not isinstance(bmc, dict):
        raise HarnessError("spec 'bmc' must be an object: {username, password}")
    if bmc is not None and bmc is not False:
        username = str(bmc.get("username") or "kickstack")
        password = bmc.get("password")
        if ":" in username or not username.isprintable():
            raise HarnessError("bmc username: printable, without ':'")
        if password is not None and (not isinstance(password, str) or not password):
            raise HarnessError("bmc password: a non-empty string")
        bmc = {"username": username, "password": password}
    else:
        bmc = None
    return {
        "lab": lab,
        "nodes": out_nodes,
        "image": spec.get("image") or os.environ.get("KICKSTACK_VM_IMAGE"),
        "boot_timeout": int(spec.get("boot_timeout", 600)),
        "bmc": bmc,
    }


# ---------------------------------------------------------------- helpers
def port_free(port: int, kind: int) -> bool:
    with socket.socket(socket.AF_INET, kind) as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def lab_marker(sdir: Path) -> str:
    """What the command line of each of the lab's processes contains (see common.pid_alive)."""
    return f"{sdir}/"


def lab_pids(sdir: Path) -> list[int]:
    """The lab's qemu, hub, BMC and relay processes: found by their command line naming its state dir."""
    marker = lab_marker(sdir).encode()
    return [pid for pid, argv in common.processes().items() if any(marker in a for a in argv) and (
        os.path.basename(argv[0]).startswith(b"qemu-system")
        or b"--state-dir" in argv and any(c in argv for c in (b"hub", b"bmc", b"serve", b"relay")))]


def run_ssh(sdir: Path, port: int, command: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return common.run(common.ssh_cmd(sdir, "127.0.0.1", command, port=port), check=False, timeout=timeout)


def build_image() -> Path:
    if not BUILD_SCRIPT.exists():
        raise HarnessError(f"{BUILD_SCRIPT} not found")
    return Path(common.build_output([BUILD_SCRIPT]))


# ---------------------------------------------------------------- hub (3+ nodes)
def run_hub(listen_port: int, node_ports: list[int]) -> None:
    """A dumb Ethernet hub over UDP: each frame from one VM goes to every other VM."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", listen_port))
    peers = [("127.0.0.1", p) for p in node_ports]
    while True:
        data, src = sock.recvfrom(65535)
        for peer in peers:
            if peer != src:
                sock.sendto(data, peer)


# ---------------------------------------------------------------- up
def bmc_guestfwd(sdir: Path, node: dict, st: dict) -> str:
    """guestfwd rule of the user-mode netdev: each guest connection to 10.0.2.100:443 runs one
    relay process (libslirp splits the command with g_shell_parse_argv and gives it the
    connection as stdin/stdout/stderr). A comma inside a QEMU option value is written twice."""
    cmd = " ".join(shlex.quote(a) for a in [
        sys.executable, str(Path(bmc_mod.__file__).resolve()), "relay",
        "--port", str(st["bmc"]["host_port"]), "--node", node["name"], "--state-dir", lab_marker(sdir)])
    return f"guestfwd=tcp:{bmc_mod.GUEST_ADDRESS}:{bmc_mod.GUEST_PORT}-cmd:{cmd.replace(',', ',,')}"


def qemu_argv(image: Path, sdir: Path, node: dict, st: dict, all_nodes: list[dict]) -> list[str]:
    ndir = sdir / node["name"]
    pubkey = (sdir / "id_ed25519.pub").read_text().strip()
    hosts = ",".join(
        f"{n['name']}={n['link_ip'].split('/')[0]}" for n in all_nodes if n.get("link_ip")
    )
    append = [
        "root=/dev/vda", "rw", "console=ttyS0", "panic=-1", "mitigations=off",
        f"kickstack.hostname={node['name']}",
        f"kickstack.user_mac={node['user_mac']}",
        f"kickstack.sshkey={base64.b64encode(pubkey.encode()).decode()}",
    ]
    if node.get("link_ip"):
        append += [f"kickstack.link_mac={node['link_mac']}", f"kickstack.link_ip={node['link_ip']}"]
    if hosts:
        append.append(f"kickstack.hosts={hosts}")
    user = f"user,restrict=on,hostfwd=tcp:127.0.0.1:{node['ssh_port']}-:22"
    nics = [{"netdev": user + (f",{bmc_guestfwd(sdir, node, st)}" if st.get("bmc") else ""),
             "mac": node["user_mac"], "addr": PCI_USER_NIC}]
    if node.get("link_ip"):
        nics.append({"netdev": f"socket,udp=127.0.0.1:{node['link_peer_port']},"
                               f"localaddr=127.0.0.1:{node['link_port']}",
                     "id": LINK_NETDEV, "mac": node["link_mac"], "addr": PCI_LINK_NIC})
    disks = [{"file": ndir / "root.qcow2", "id": "root", "format": "qcow2", "addr": PCI_ROOT}]
    disks += [{"file": ndir / f"{d['serial']}.{d['format']}", "format": d["format"], "serial": d["serial"],
               "addr": PCI_DATA0 + i} for i, d in enumerate(node["disks"])]
    return common.qemu_argv(
        name=f"kickstack-{st['lab']}-{node['name']}", memory=node["memory"], cpus=node["cpus"],
        kernel=image / "vmlinuz", initrd=image / "initrd.img", append=" ".join(append),
        serial=ndir / "serial.log", qmp=ndir / "qmp.sock", pidfile=ndir / "qemu.pid", daemonize=True,
        nics=nics, disks=disks,
        # a reset (guest reboot, the BMC's system_reset) reboots: -kernel/-initrd/-append are
        # loaded again by the firmware; a guest power-off ends QEMU; a guest panic (reported by
        # the pvpanic device) ends QEMU with exit status 1, so a crashed VM does not boot-loop.
        extra=["-action", "reboot=reset,shutdown=poweroff,panic=exit-failure", "-device", "pvpanic",
               "-device", f"virtio-rng-pci,addr={PCI_RNG:#x}"])


def _plan(spec: dict, image: Path) -> dict:
    """Assign ports and MACs; the result is saved as state.json."""
    nodes = [dict(n) for n in spec["nodes"]]
    used: set[int] = {n["ssh_port"] for n in nodes if n.get("ssh_port")}
    for n in nodes:
        if n.get("ssh_port"):
            if not port_free(int(n["ssh_port"]), socket.SOCK_STREAM):
                raise HarnessError(f"{n['name']}: ssh_port {n['ssh_port']} on 127.0.0.1 is in use")
            n["ssh_port"] = int(n["ssh_port"])
        else:
            n["ssh_port"] = common.free_port(socket.SOCK_STREAM, used)
            used.add(n["ssh_port"])
        n["user_mac"] = common.lab_mac(spec["lab"], n["name"], "user")
        n["link_mac"] = common.lab_mac(spec["lab"], n["name"], "link")
    linked = [n for n in nodes if n.get("link_ip")]
    udp_used: set[int] = set()
    for n in linked:
        n["link_port"] = common.free_port(socket.SOCK_DGRAM, udp_used)
        udp_used.add(n["link_port"])
    hub_port = None
    if len(linked) == 2:
        linked[0]["link_peer_port"] = linked[1]["link_port"]
        linked[1]["link_peer_port"] = linked[0]["link_port"]
    elif len(linked) > 2:
        hub_port = common.free_port(socket.SOCK_DGRAM, udp_used)
        for n in linked:
            n["link_peer_port"] = hub_port
    elif len(linked) == 1:
        # a lone node still gets its NIC, looped to an unused port
        linked[0]["link_peer_port"] = common.free_port(socket.SOCK_DGRAM, udp_used | {linked[0]["link_port"]})
    st = {"lab": spec["lab"], "image": str(image), "nodes": nodes, "hub_port": hub_port,
          "boot_timeout": spec["boot_timeout"], "bmc": None}
    if spec.get("bmc"):
        sdir = state_dir(spec["lab"])
        st["bmc"] = {
            "address": bmc_mod.GUEST_ADDRESS,   # what the guests use (fence_redfish --ip)
            "port": bmc_mod.GUEST_PORT,         # (--ipport)
            "host_address": "127.0.0.1",        # what the host uses
            "host_port": common.free_port(socket.SOCK_STREAM, used),
            "username": spec["bmc"]["username"],
            "credentials_file": str(sdir / "bmc.json"),  # 0600, {"username", "password", ...}
            "log": str(sdir / "bmc.log"),
            "systems": {n["name"]: f"{bmc_mod.ROOT}/Systems/{n['name']}" for n in nodes},
        }
        for n in nodes:
            n["bmc_systems_uri"] = st["bmc"]["systems"][n["name"]]
    return st


def bmc_alive(sdir: Path) -> bool:
    return common.pid_alive(read_pid(sdir / "bmc.pid"), lab_marker(sdir))


def start_bmc(sdir: Path, st: dict) -> int:
    """Start the lab's Redfish service (`vm.py bmc`, see bmc.py) as a daemon; returns its pid."""
    proc = common.spawn([sys.executable, Path(__file__).resolve(), "bmc", "--state-dir", lab_marker(sdir)],
                        sdir / "bmc.out")
    (sdir / "bmc.pid").write_text(f"{proc.pid}\n")
    try:
        bmc_mod.wait_listening(st["bmc"]["host_port"], proc.pid)
    except bmc_mod.PowerError as exc:
        raise HarnessError(f"{exc}; see {sdir / 'bmc.out'}:\n{tail(sdir / 'bmc.out', 10)}") from exc
    log(f"BMC (Redfish) on https://127.0.0.1:{st['bmc']['host_port']}, guests use "
        f"https://{st['bmc']['address']}:{st['bmc']['port']}")
    return proc.pid


def setup_bmc(sdir: Path, st: dict, bmc_spec: dict) -> None:
    """Credentials (0600) and certificate for the lab's BMC; a random password when none is given."""
    if not shutil.which("openssl"):
        raise HarnessError("the BMC needs the openssl CLI (apt-get install openssl)")
    password = bmc_spec.get("password")
    if not password:
        import secrets
        password = secrets.token_urlsafe(18)
    bmc_mod.configure(sdir, bmc_spec["username"], password, st["bmc"]["host_port"])


def up(spec: dict, wait: bool = True) -> dict:
    """Start every VM of the spec (idempotent: a running lab is left alone) and wait for ssh."""
    sdir = state_dir(spec["lab"])
    st = common.read_state(sdir)
    if st:
        running = [n["name"] for n in st["nodes"] if bmc_mod.qemu_alive(sdir, n["name"])]
        if len(running) == len(st["nodes"]):
            log(f"lab {spec['lab']} already running")
            if st.get("bmc") and not bmc_alive(sdir):
                log("its BMC is not running: starting it again")
                start_bmc(sdir, st)
            for n in st["nodes"]:
                if (sdir / n["name"] / "power-off").exists():
                    log(f"{n['name']} is powered off: powering it on")
                    power(st["lab"], n["name"], "on")
            if wait:
                wait_ssh(st)
            return st
        log(f"lab {spec['lab']} partly up ({running}): recreating")
        down(spec["lab"])

    image = Path(spec["image"]) if spec.get("image") else build_image()
    for f in ("vmlinuz", "initrd.img", "root.img"):
        if not (image / f).is_file():
            raise HarnessError(f"image dir {image} lacks {f}")
    if not shutil.which(common.QEMU):
        raise HarnessError(f"{common.QEMU} not found (scripts/build-vm-image installs qemu-system-x86)")

    sdir.mkdir(parents=True, exist_ok=True)
    st = _plan(spec, image)
    common.write_state(sdir, st)
    common.ensure_key(sdir)

    try:
        if st.get("bmc"):
            setup_bmc(sdir, st, spec["bmc"])
            start_bmc(sdir, st)
        if st["hub_port"]:
            hub = common.spawn(
                [sys.executable, Path(__file__).resolve(), "hub", "--listen", st["hub_port"],
                 "--ports", ",".join(str(n["link_port"]) for n in st["nodes"] if n.get("link_ip")),
                 "--state-dir", lab_marker(sdir)], sdir / "hub.log")
            (sdir / "hub.pid").write_text(f"{hub.pid}\n")
        for node in st["nodes"]:
            ndir = sdir / node["name"]
            ndir.mkdir(exist_ok=True)
            common.run(["qemu-img", "create", "-q", "-f", "qcow2", "-F", "raw",
                        "-b", image / "root.img", ndir / "root.qcow2"])
            for disk in node["disks"]:
                common.run(["qemu-img", "create", "-q", "-f", disk["format"],
                            ndir / f"{disk['serial']}.{disk['format']}", disk["size"]])
            argv = qemu_argv(image, sdir, node, st, st["nodes"])
            (ndir / "qemu.argv").write_text(json.dumps(argv, indent=1) + "\n")
            common.start_qemu(argv, node["name"])
            log(f"{node['name']}: qemu pid {read_pid(ndir / 'qemu.pid')}, ssh 127.0.0.1:{node['ssh_port']}")
        write_inventory(st)
        if wait:
            wait_ssh(st)
    except BaseException:
        log("start failed: stopping what was started (state kept for the serial logs)")
        stop_processes(sdir)
        raise
    return st


PANIC_MARKS = ("Kernel panic - not syncing", "Rebooting automatically due to panic=")


def wait_ssh(st: dict, timeout: float | None = None) -> None:
    sdir = state_dir(st["lab"])
    serial_start = {}
    for n in st["nodes"]:
        try:
            serial_start[n["name"]] = (sdir / n["name"] / "serial.log").stat().st_size
        except OSError:
            serial_start[n["name"]] = 0
    deadline = time.monotonic() + (timeout or st.get("boot_timeout", 600))
    t0 = time.monotonic()
    pending = {n["name"]: n for n in st["nodes"]}
    while pending:
        for name, node in list(pending.items()):
            if not bmc_mod.qemu_alive(sdir, name):
                raise HarnessError(f"{name}: qemu exited; see {sdir / name / 'serial.log'}:\n"
                                   + tail(sdir / name / "serial.log"))
            panic = serial_panic(sdir / name / "serial.log", serial_start[name])
            if panic:
                raise HarnessError(f"{name}: the guest panicked while booting:\n{panic}")
            try:
                res = run_ssh(sdir, node["ssh_port"], "true", timeout=20)
            except subprocess.TimeoutExpired:
                continue
            if res.returncode == 0:
                log(f"{name}: ssh up after {time.monotonic() - t0:.0f} s")
                del pending[name]
        if pending:
            if time.monotonic() > deadline:
                name = next(iter(pending))
                raise HarnessError(f"{name}: no ssh after {time.monotonic() - t0:.0f} s; serial log tail:\n"
                                   + tail(sdir / name / "serial.log"))
            time.sleep(2)
    # let boot finish (networkd has the link address, no unit still starting)
    for node in st["nodes"]:
        try:
            res = run_ssh(sdir, node["ssh_port"], "timeout 180 systemctl is-system-running --wait", timeout=200)
            state = res.stdout.strip()
        except subprocess.TimeoutExpired:
            state = "timeout"
        if state != "running":
            failed = run_ssh(sdir, node["ssh_port"], "systemctl --failed --no-legend --plain", timeout=30)
            log(f"{node['name']}: system is {state}; failed units: {failed.stdout.strip() or '-'}")
    log(f"all VMs of {st['lab']} up after {time.monotonic() - t0:.0f} s")


def serial_panic(path: Path, offset: int = 0) -> str | None:
    """The serial log's tail when the guest panicked (after offset), else None."""
    try:
        with open(path, "rb") as f:
            f.seek(offset)
            text = f.read().decode(errors="replace")
    except OSError:
        return None
    if any(mark in text for mark in PANIC_MARKS):
        return "\n".join(text.splitlines()[-30:])
    return None


def tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no serial log)"


def write_inventory(st: dict) -> Path:
    sdir = state_dir(st["lab"])
    key = str(sdir / "id_ed25519")
    hosts, instances = {}, []
    for n in st["nodes"]:
        hosts[n["name"]] = h = {"ansible_host": "127.0.0.1", "ansible_port": n["ssh_port"],
                                **common.ansible_ssh_vars(key)}
        instance = {"instance": n["name"], "address": "127.0.0.1", "user": "root",
                    "port": n["ssh_port"], "identity_file": key}
        if n.get("link_ip"):
            h["kickstack_link_ip"] = n["link_ip"]
        if n.get("bmc_systems_uri"):
            h.update(kickstack_bmc_address=st["bmc"]["address"], kickstack_bmc_port=st["bmc"]["port"],
                     kickstack_bmc_username=st["bmc"]["username"], kickstack_bmc_systems_uri=n["bmc_systems_uri"])
            instance.update(bmc_address=st["bmc"]["address"], bmc_port=st["bmc"]["port"],
                            bmc_systems_uri=n["bmc_systems_uri"])
        if n["disks"]:
            h["kickstack_data_disks"] = [{"serial": d["serial"], "device": d["guest_by_id"],
                                          "kernel_name": d["guest_device"]} for d in n["disks"]]
        instances.append(instance)
    (sdir / "instances.json").write_text(json.dumps(instances, indent=2) + "\n")
    common.write_ssh_config(sdir / "ssh_config", key, [(n["name"], "127.0.0.1", n["ssh_port"]) for n in st["nodes"]])
    return common.write_inventory(sdir / "inventory.yml", {"all": {"hosts": hosts}}, "generated by tests/harness/vm.py")


# ---------------------------------------------------------------- down / status
def stop_processes(sdir: Path, grace: float = 10) -> None:
    # the BMC first: it must not power a VM on again while the VMs go
    common.stop([read_pid(sdir / "bmc.pid")], lab_marker(sdir), grace=5)
    pids = set(lab_pids(sdir))
    pids.update(read_pid(f) for f in [*sdir.glob("*/qemu.pid"), sdir / "hub.pid", sdir / "bmc.pid"])
    common.stop(pids, lab_marker(sdir), grace)


def down(lab: str) -> None:
    """Kill the lab's VMs and remove its state dir. Safe to run when nothing is up."""
    sdir = state_dir(lab)
    if sdir.resolve().parent != common.STATE_ROOT.resolve():
        raise HarnessError(f"refusing to remove {sdir}")
    stop_processes(sdir)
    left = lab_pids(sdir)
    if left:
        raise HarnessError(f"processes of lab {lab} still alive: {left}")
    if sdir.exists():
        shutil.rmtree(sdir)
        log(f"lab {lab}: stopped, {sdir} removed")
    else:
        log(f"lab {lab}: nothing to do")


def status(lab: str) -> dict:
    sdir = state_dir(lab)
    st = common.read_state(sdir)
    if not st:
        return {"lab": lab, "state_dir": str(sdir), "up": False, "nodes": []}
    nodes = []
    for n in st["nodes"]:
        pid = read_pid(sdir / n["name"] / "qemu.pid")
        alive = bmc_mod.qemu_alive(sdir, n["name"])
        nodes.append({"name": n["name"], "running": alive, "pid": pid if alive else None,
                      "ssh_port": n["ssh_port"], "link_ip": n.get("link_ip"),
                      "disks": [{"serial": d["serial"], "device": d["guest_device"], "by_id": d["guest_by_id"]}
                                for d in n["disks"]],
                      "power": "on" if alive and not (sdir / n["name"] / "power-off").exists() else "off",
                      "serial_log": str(sdir / n["name"] / "serial.log")})
        if n.get("bmc_systems_uri"):
            nodes[-1]["bmc_systems_uri"] = n["bmc_systems_uri"]
    out = {"lab": lab, "state_dir": str(sdir), "image": st["image"],
           "inventory": str(sdir / "inventory.yml"),
           "up": all(n["running"] for n in nodes), "nodes": nodes}
    if st.get("bmc"):
        out["bmc"] = {**st["bmc"], "running": bmc_alive(sdir)}
    return out


# ---------------------------------------------------------------- power
def _lab_node(lab: str, node: str) -> tuple:
    """The lab's state dir, its saved state and [the node's record], or HarnessError."""
    sdir = state_dir(lab)
    st = common.read_state(sdir)
    if not st:
        raise HarnessError(f"lab {lab} is not up ({sdir})")
    nodes = [n for n in st["nodes"] if n["name"] == node]
    if not nodes:
        raise HarnessError(f"lab {lab} has no node {node!r} ({', '.join(n['name'] for n in st['nodes'])})")
    return sdir, st, nodes


def power(lab: str, node: str, action: str, wait: bool = False) -> dict:
    """on|off|reset|freeze|status of one VM through QMP, as the lab's BMC does it (logged to bmc.log)."""
    sdir, st, nodes = _lab_node(lab, node)
    try:
        result = bmc_mod.power(sdir, node, action)
    except bmc_mod.PowerError as exc:
        if action != "status":
            bmc_mod.log_event(sdir, client="cli", method="CLI", path=None, system=node, reset_type=None,
                              action=action, status=None, result=f"error: {exc}")
        raise HarnessError(str(exc)) from exc
    if action != "status":
        bmc_mod.log_event(sdir, client="cli", method="CLI", path=None, system=node, reset_type=None,
                          action=action, power=result["power"], status=None, result="ok")
    if wait and action in ("on", "reset"):
        t0 = time.monotonic()
        wait_ssh({**st, "nodes": nodes})
        result["boot_seconds"] = round(time.monotonic() - t0, 1)
    return {"node": node, **result}


def link(lab: str, node: str, state: str) -> dict:
    """Cut (down) or restore (up) node's private link, as a pulled cable would: QMP set_link on
    its link netdev takes the carrier away from the guest's NIC and drops every frame both ways.
    The state survives a guest reset (a fenced node boots with the link as it was); a marker
    file (<node>/link-down) records it for `status`."""
    sdir, st, nodes = _lab_node(lab, node)
    if not nodes[0].get("link_ip"):
        raise HarnessError(f"{node} has no private link")
    if state not in ("up", "down", "status"):
        raise HarnessError(f"link state {state!r}: up, down or status")
    marker = sdir / node / "link-down"
    if state != "status":
        with bmc_mod._node_lock(sdir, node):
            q = bmc_mod._qmp(sdir, node)
            if q is None:
                raise HarnessError(f"{node}: QEMU is not running")
            with q:
                q.execute("set_link", {"name": LINK_NETDEV, "up": state == "up"})
        if state == "down":
            marker.touch()
        else:
            marker.unlink(missing_ok=True)
        bmc_mod.log_event(sdir, client="cli", method="CLI", path=None, system=node, reset_type=None,
                          action=f"link-{state}", status=None, result="ok")
    return {"node": node, "link": "down" if marker.exists() else "up"}


def power_cli(args) -> int:
    result = power(args.lab, args.node, args.action, wait=args.wait)
    if args.json:
        print(json.dumps(result))
    else:
        print(result["power"].lower())
    return 0


# ---------------------------------------------------------------- CLI
@common.cli(log)
def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    for name in ("up", "down", "status"):
        p = sub.add_parser(name)
        g = p.add_mutually_exclusive_group(required=True)
        g.add_argument("--spec", help="lab spec file (JSON, or YAML with PyYAML)")
        if name != "up":
            g.add_argument("--lab", help="lab name instead of a spec")
        p.add_argument("--json", action="store_true", help="print machine-readable output")
        if name == "up":
            p.add_argument("--no-wait", action="store_true", help="do not wait for ssh")
    p = sub.add_parser("power", help="power a VM off/on like its BMC would (QMP)")
    p.add_argument("--lab", required=True)
    p.add_argument("node")
    p.add_argument("action", choices=("on", "off", "reset", "freeze", "status"))
    p.add_argument("--json", action="store_true", help="print machine-readable output")
    p.add_argument("--wait", action="store_true", help="after on/reset: wait until the node answers ssh")
    p = sub.add_parser("link", help="cut or restore a VM's private link (QMP set_link)")
    p.add_argument("--lab", required=True)
    p.add_argument("node")
    p.add_argument("state", choices=("up", "down", "status"))
    p.add_argument("--json", action="store_true", help="print machine-readable output")
    p = sub.add_parser("bmc", help=argparse.SUPPRESS)
    p.add_argument("--state-dir", required=True)
    p = sub.add_parser("relay", help=argparse.SUPPRESS)
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--node", default="?")
    p.add_argument("--state-dir")
    p = sub.add_parser("hub", help=argparse.SUPPRESS)
    p.add_argument("--listen", type=int, required=True)
    p.add_argument("--ports", required=True)
    p.add_argument("--state-dir", help="only marks the process as belonging to the lab")
    args = ap.parse_args(argv)
    if args.cmd == "hub":
        run_hub(args.listen, [int(x) for x in args.ports.split(",")])
        return 0
    if args.cmd == "bmc":
        bmc_mod.serve(Path(args.state_dir.rstrip("/")))
        return 0
    if args.cmd == "relay":
        return bmc_mod.relay(args.port, args.node)
    if args.cmd == "power":
        return power_cli(args)
    if args.cmd == "link":
        result = link(args.lab, args.node, args.state)
        print(json.dumps(result) if args.json else result["link"])
        return 0
    if args.spec:
        spec = load_spec(args.spec)
        lab = spec["lab"]
    else:
        spec, lab = None, args.lab
    if args.cmd == "up":
        up(spec, wait=not args.no_wait)
        print(json.dumps(status(lab), indent=2) if args.json else state_dir(lab) / "inventory.yml")
    elif args.cmd == "down":
        down(lab)
    else:
        st = status(lab)
        if args.json:
            print(json.dumps(st, indent=2))
        else:
            print(f"lab {lab}: {'up' if st['up'] else 'down'} ({st['state_dir']})")
            for n in st["nodes"]:
                print(f"  {n['name']:<12} {'running pid %s' % n['pid'] if n['running'] else 'stopped':<20}"
                      f" power {n['power']:<3}  ssh 127.0.0.1:{n['ssh_port']}  link {n['link_ip']}  disks "
                      + " ".join(f"{d['by_id']}({d['device']})" for d in n["disks"]))
            if st.get("bmc"):
                b = st["bmc"]
                print(f"  BMC {'running' if b['running'] else 'NOT running'}: guests https://{b['address']}:{b['port']}"
                      f", host https://{b['host_address']}:{b['host_port']}, log {b['log']}")
        return 0 if st["up"] else 3
    return 0


if __name__ == "__main__":
    sys.exit(main())
