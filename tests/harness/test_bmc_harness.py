"""The harness' Redfish BMC (tests/harness/bmc.py, started by vm.py) against fake VMs.

Each fake VM is a unix socket speaking enough QMP (greeting, qmp_capabilities, query-status,
stop, cont, system_reset with its RESET event); the BMC runs as `vm.py up` starts it (a daemon
on a free port, HTTPS with the lab's self-signed certificate) and is driven over HTTPS with
http.client, directly and through the relay QEMU runs for each guest connection. No VM, a few
seconds. The state root has a comma and a space in its name: QEMU option escaping is checked
on the real argv.
"""
from __future__ import annotations

import base64
import http.client
import json
import os
import shlex
import shutil
import socket
import ssl
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bmc  # noqa: E402
import common  # noqa: E402
import vm  # noqa: E402

LAB = "bmc-test-unit"
USER = "kickstack"
PASSWORD = "s3cret-Pa55word-for-bmc"  # must never show up in a log or a command line
HERE = Path(__file__).resolve().parent


class FakeQMP(threading.Thread):
    """One QEMU monitor: serves one QMP client at a time, like QEMU's chardev socket server."""

    def __init__(self, path: Path):
        super().__init__(daemon=True)
        self.running = True
        self.status = "running"
        self.commands: list[str] = []
        self.resets = 0
        # QOM devices with a boot index, as a disk-first PXE client has them: the disk boots,
        # the NIC has an option ROM but no boot index. boot_orders: the order at each reset.
        self.devices = {"/machine/peripheral/disk0": {"bootindex": 0, "nic": False},
                        "/machine/peripheral/nic0": {"bootindex": -1, "nic": True}}
        self.boot_orders: list[dict] = []
        self.srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.srv.bind(str(path))
        self.srv.listen(4)

    def run(self):
        while True:
            try:
                conn, _ = self.srv.accept()
            except OSError:
                return
            with conn:
                try:
                    self.serve(conn)
                except OSError:
                    pass

    def serve(self, conn):
        def send(obj):
            conn.sendall(json.dumps(obj).encode() + b"\r\n")  # QEMU ends lines with CRLF

        send({"QMP": {"version": {"qemu": {"major": 7, "minor": 2, "micro": 0}}, "capabilities": []}})
        f = conn.makefile("rb")
        for line in f:
            msg = json.loads(line)
            cmd, args = msg["execute"], msg.get("arguments", {})
            self.commands.append(cmd)
            if cmd == "qmp_capabilities":
                send({"return": {}})
            elif cmd == "query-status":
                send({"return": {"running": self.running, "singlestep": False, "status": self.status}})
            elif cmd == "stop":
                self.running, self.status = False, "paused"
                send({"event": "STOP", "timestamp": {"seconds": 0, "microseconds": 0}})
                send({"return": {}})
            elif cmd == "cont":
                self.running, self.status = True, "running"
                send({"return": {}})
                send({"event": "RESUME", "timestamp": {"seconds": 0, "microseconds": 0}})
            elif cmd == "qom-list":
                path = args["path"]
                if path == "/machine/peripheral":
                    send({"return": [{"name": p.rsplit("/", 1)[1], "type": "child<x>"} for p in self.devices]
                          + [{"name": "type", "type": "string"}]})
                elif path in self.devices:
                    props = ["type", "bootindex"] + (["mac", "netdev"] if self.devices[path]["nic"] else ["drive"])
                    send({"return": [{"name": n, "type": "str"} for n in props]})
                else:
                    send({"error": {"class": "DeviceNotFound", "desc": f"Device '{path}' not found"}})
            elif cmd == "qom-get":
                send({"return": self.devices[args["path"]]["bootindex"]})
            elif cmd == "qom-set":
                value = args["value"]
                if value >= 0 and any(d["bootindex"] == value for p, d in self.devices.items() if p != args["path"]):
                    send({"error": {"class": "GenericError", "desc": f"The bootindex {value} has already been used"}})
                else:
                    self.devices[args["path"]]["bootindex"] = value
                    send({"return": {}})
            elif cmd == "system_reset":
                self.resets += 1
                self.boot_orders.append(self.boot_order())
                if not self.running:
                    self.status = "prelaunch"
                send({"return": {}})
                time.sleep(0.05)  # the reset happens later in QEMU's main loop
                send({"event": "RESET", "data": {"guest": False, "reason": "host-qmp-system-reset"},
                      "timestamp": {"seconds": 0, "microseconds": 0}})
            else:
                send({"error": {"class": "CommandNotFound", "desc": f"The command {cmd} has not been found"}})

    def boot_order(self) -> list[str]:
        """Device names in the order the firmware would try them (what QEMU's reset hands it)."""
        ranked = sorted((d["bootindex"], p.rsplit("/", 1)[1]) for p, d in self.devices.items() if d["bootindex"] >= 0)
        return [name for _i, name in ranked]

    def close(self):
        self.srv.close()


def make_fake_lab(lab: str, names: list[str]):
    spec = vm.normalize_spec({"lab": lab, "nodes": [{"name": n} for n in names],
                              "bmc": {"username": USER, "password": PASSWORD}})
    sdir = vm.state_dir(lab)
    sdir.mkdir(parents=True)
    st = vm._plan(spec, Path("/nonexistent/image"))
    (sdir / "state.json").write_text(json.dumps(st, indent=2))
    fakes = {}
    for n in names:
        (sdir / n).mkdir()
        fakes[n] = FakeQMP(sdir / n / "qmp.sock")
        fakes[n].start()
    vm.setup_bmc(sdir, st, spec["bmc"])
    pid = vm.start_bmc(sdir, st)
    vm.write_inventory(st)
    return sdir, st, fakes, pid


@pytest.fixture(scope="module")
def state_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("bmc") / "state, root"
    root.mkdir()
    saved = common.STATE_ROOT
    common.STATE_ROOT = root
    yield root
    common.STATE_ROOT = saved


HOLD = 1.0  # the BMC's KICKSTACK_BMC_BOOT_ORDER_HOLD here (seconds)


@pytest.fixture(scope="module")
def lab(state_root):
    if not shutil.which("openssl"):
        pytest.skip("openssl CLI missing")
    saved = os.environ.get("KICKSTACK_BMC_BOOT_ORDER_HOLD")
    os.environ["KICKSTACK_BMC_BOOT_ORDER_HOLD"] = str(HOLD)  # the BMC daemon inherits it
    try:
        sdir, st, fakes, pid = make_fake_lab(LAB, ["n1", "n2"])
    finally:
        if saved is None:
            os.environ.pop("KICKSTACK_BMC_BOOT_ORDER_HOLD")
        else:
            os.environ["KICKSTACK_BMC_BOOT_ORDER_HOLD"] = saved
    yield {"sdir": sdir, "st": st, "fakes": fakes, "pid": pid}
    vm.down(LAB)
    for f in fakes.values():
        f.close()


def request(lab, method, path, body=None, auth=(USER, PASSWORD)):
    ctx = ssl.create_default_context(cafile=str(lab["sdir"] / "bmc-cert.pem"))  # verifies the cert too
    conn = http.client.HTTPSConnection("127.0.0.1", lab["st"]["bmc"]["host_port"], context=ctx, timeout=30)
    headers = {"Accept": "application/json", "OData-Version": "4.0"}
    if auth:
        headers["Authorization"] = "Basic " + base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
    data = None
    if body is not None:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        headers["Content-Type"] = "application/json"
    try:
        conn.request(method, path, body=data, headers=headers)
        resp = conn.getresponse()
        raw = resp.read()
        return resp.status, (json.loads(raw) if raw else None), resp.headers
    finally:
        conn.close()


def log_entries(lab) -> list[dict]:
    return [json.loads(line) for line in (lab["sdir"] / "bmc.log").read_text().splitlines()]


def reset(lab, name, reset_type):
    return request(lab, "POST", f"/redfish/v1/Systems/{name}/Actions/ComputerSystem.Reset",
                   {"ResetType": reset_type})


def power_state(lab, name):
    status, body, _ = request(lab, "GET", f"/redfish/v1/Systems/{name}")
    assert status == 200, body
    return body["PowerState"]


# ---------------------------------------------------------------- QEMU command line
def split_qemu_opts(value: str) -> list[str]:
    """QemuOpts' split: ',' separates, ',,' is a literal comma."""
    parts, cur, i = [], "", 0
    while i < len(value):
        if value[i] == ",":
            if value[i + 1:i + 2] == ",":
                cur, i = cur + ",", i + 2
                continue
            parts.append(cur)
            cur, i = "", i + 1
            continue
        cur, i = cur + value[i], i + 1
    return parts + [cur]


def test_qemu_argv_keeps_resets_and_forwards_the_bmc(lab, tmp_path):
    sdir, st = lab["sdir"], lab["st"]
    (sdir / "id_ed25519.pub").write_text("ssh-ed25519 AAAA test\n")
    node = st["nodes"][0]
    argv = vm.qemu_argv(tmp_path, sdir, node, st, st["nodes"])
    assert "-no-reboot" not in argv
    assert argv[argv.index("-action") + 1] == "reboot=reset,shutdown=poweroff,panic=exit-failure"
    assert "pvpanic" in argv
    netdev = argv[argv.index("-netdev") + 1]
    assert "," in str(sdir), "the state dir should have a comma to test the escaping"
    opts = split_qemu_opts(netdev)
    assert opts[:3] == ["user", "id=n0", "restrict=on"]
    fwd = [o for o in opts if o.startswith("guestfwd=")]
    assert len(fwd) == 1, opts
    prefix = "guestfwd=tcp:10.0.2.100:443-cmd:"
    assert fwd[0].startswith(prefix)
    # libslirp splits the command with g_shell_parse_argv: POSIX shell quoting
    assert shlex.split(fwd[0][len(prefix):]) == [
        sys.executable, str(HERE / "bmc.py"), "relay", "--port", str(st["bmc"]["host_port"]),
        "--node", "n1", "--state-dir", str(sdir) + "/"]


@pytest.mark.skipif(not shutil.which(common.QEMU), reason="no QEMU")
def test_qemu_accepts_the_netdev(lab, tmp_path):
    """The real QEMU parses the user netdev with the escaped guestfwd (and the -action flags)."""
    sdir, st = lab["sdir"], lab["st"]
    (sdir / "id_ed25519.pub").write_text("ssh-ed25519 AAAA test\n")
    argv = vm.qemu_argv(tmp_path, sdir, st["nodes"][0], st, st["nodes"])
    netdev = argv[argv.index("-netdev") + 1]
    action = argv[argv.index("-action") + 1]
    res = subprocess.run(
        [common.QEMU, "-accel", "tcg", "-machine", "pc", "-nodefaults", "-display", "none", "-S",
         "-action", action, "-device", "pvpanic", "-netdev", netdev,
         "-device", "virtio-net-pci,netdev=n0", "-qmp", "stdio"],
        input='{"execute": "qmp_capabilities"}\n{"execute": "quit"}\n',
        capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    assert '"return"' in res.stdout


# ---------------------------------------------------------------- secrets
def test_credentials_stored_private(lab):
    sdir = lab["sdir"]
    for name in ("bmc.json", "bmc-key.pem"):
        assert (sdir / name).stat().st_mode & 0o777 == 0o600, name
    assert json.loads((sdir / "bmc.json").read_text())["password"] == PASSWORD
    st = json.loads((sdir / "state.json").read_text())
    assert st["bmc"]["credentials_file"] == str(sdir / "bmc.json")
    assert PASSWORD not in (sdir / "state.json").read_text()
    assert PASSWORD not in Path(f"/proc/{lab['pid']}/cmdline").read_bytes().decode()


def test_state_and_instances_name_the_bmc(lab, capsys):
    sdir = lab["sdir"]
    st = json.loads((sdir / "state.json").read_text())
    assert st["bmc"]["address"] == "10.0.2.100" and st["bmc"]["port"] == 443
    assert st["bmc"]["host_address"] == "127.0.0.1"
    assert st["bmc"]["username"] == USER
    assert st["bmc"]["systems"] == {"n1": "/redfish/v1/Systems/n1", "n2": "/redfish/v1/Systems/n2"}
    assert [n["bmc_systems_uri"] for n in st["nodes"]] == ["/redfish/v1/Systems/n1", "/redfish/v1/Systems/n2"]
    inst = json.loads((sdir / "instances.json").read_text())
    assert inst[1]["bmc_address"] == "10.0.2.100" and inst[1]["bmc_port"] == 443
    assert inst[1]["bmc_systems_uri"] == "/redfish/v1/Systems/n2"
    inv = (sdir / "inventory.yml").read_text()
    assert 'kickstack_bmc_systems_uri: "/redfish/v1/Systems/n1"' in inv
    stat = vm.status(LAB)
    assert stat["bmc"]["running"] is True
    assert stat["nodes"][0]["bmc_systems_uri"] == "/redfish/v1/Systems/n1"
    vm.main(["status", "--lab", LAB])  # no QEMU here: the lab counts as down
    assert "BMC running: guests https://10.0.2.100:443" in capsys.readouterr().out


# ---------------------------------------------------------------- Redfish
@pytest.mark.parametrize("auth", [None, (USER, "wrong"), ("admin", PASSWORD)])
def test_needs_valid_basic_auth(lab, auth):
    for path in ("/redfish/v1", "/redfish/v1/Systems", "/redfish/v1/Systems/n1"):
        status, body, headers = request(lab, "GET", path, auth=auth)
        assert status == 401, (path, body)
        assert headers["WWW-Authenticate"].startswith("Basic")
    status, _, _ = request(lab, "POST", "/redfish/v1/Systems/n1/Actions/ComputerSystem.Reset",
                           {"ResetType": "ForceOff"}, auth=auth)
    assert status == 401
    assert lab["fakes"]["n1"].running, "an unauthenticated request must not power anything"


def test_service_root_and_systems(lab):
    status, root, headers = request(lab, "GET", "/redfish/v1")
    assert status == 200 and headers["Content-Type"].startswith("application/json")
    assert root["Systems"] == {"@odata.id": "/redfish/v1/Systems"}
    status, coll, _ = request(lab, "GET", root["Systems"]["@odata.id"])
    assert status == 200
    assert [m["@odata.id"] for m in coll["Members"]] == ["/redfish/v1/Systems/n1", "/redfish/v1/Systems/n2"]
    assert coll["Members@odata.count"] == 2
    assert request(lab, "GET", "/redfish/v1/")[0] == 200  # trailing slash


def test_system_resource(lab):
    status, system, _ = request(lab, "GET", "/redfish/v1/Systems/n2")
    assert status == 200
    assert system["Id"] == system["Name"] == "n2"
    assert system["PowerState"] == "On"
    action = system["Actions"]["#ComputerSystem.Reset"]
    assert action["target"] == "/redfish/v1/Systems/n2/Actions/ComputerSystem.Reset"
    assert action["ResetType@Redfish.AllowableValues"] == ["On", "ForceOff", "ForceRestart"]


@pytest.mark.parametrize("method,path", [
    ("GET", "/redfish/v1/Systems/n3"),
    ("POST", "/redfish/v1/Systems/n3/Actions/ComputerSystem.Reset"),
    ("GET", "/redfish/v1/Managers"),
    ("GET", "/redfish/v1/Systems/n1/Bios"),
    ("GET", "/"),
])
def test_unknown_resources_404(lab, method, path):
    status, body, _ = request(lab, method, path, {"ResetType": "On"} if method == "POST" else None)
    assert status == 404, body
    assert "error" in body


def test_bad_requests(lab):
    for reset_type in ("GracefulShutdown", "Nmi", "forceoff", None, 3):
        status, body, _ = reset(lab, "n1", reset_type)
        assert status == 400, (reset_type, body)
    status, _, _ = request(lab, "POST", "/redfish/v1/Systems/n1/Actions/ComputerSystem.Reset", b"{not json")
    assert status == 400
    status, _, headers = request(lab, "GET", "/redfish/v1/Systems/n1/Actions/ComputerSystem.Reset")
    assert status == 405 and headers["Allow"] == "POST"
    assert request(lab, "DELETE", "/redfish/v1/Systems/n1")[0] == 405
    assert request(lab, "PATCH", "/redfish/v1/Systems")[0] == 405
    assert lab["fakes"]["n1"].running and lab["fakes"]["n1"].resets == 0


def test_force_off_on_and_restart(lab):
    fake = lab["fakes"]["n1"]
    other = lab["fakes"]["n2"]
    fake.commands.clear()
    assert reset(lab, "n1", "ForceOff")[0] == 204
    assert not fake.running and "stop" in fake.commands
    assert power_state(lab, "n1") == "Off"
    assert power_state(lab, "n2") == "On" and other.running
    assert reset(lab, "n1", "ForceOff")[0] == 204  # off stays off
    assert power_state(lab, "n1") == "Off"

    fake.commands.clear()
    assert reset(lab, "n1", "On")[0] == 204
    assert fake.running and fake.resets == 1
    assert fake.commands.index("system_reset") < fake.commands.index("cont")
    assert power_state(lab, "n1") == "On"
    fake.commands.clear()
    assert reset(lab, "n1", "On")[0] == 204  # on stays on: no reset
    assert fake.resets == 1 and "system_reset" not in fake.commands

    fake.commands.clear()
    assert reset(lab, "n1", "ForceRestart")[0] == 204  # running: reset only
    assert fake.resets == 2 and fake.running and "cont" not in fake.commands
    assert power_state(lab, "n1") == "On"

    assert reset(lab, "n1", "ForceOff")[0] == 204
    fake.commands.clear()
    assert reset(lab, "n1", "ForceRestart")[0] == 204  # off: reset and run
    assert fake.resets == 3 and fake.running and "cont" in fake.commands
    assert power_state(lab, "n1") == "On"
    assert other.resets == 0 and other.running


def test_fence_redfish_reboot_sequence(lab):
    """What fence_redfish -o reboot does (fencing.py's default onoff method)."""
    fake = lab["fakes"]["n2"]
    status, root, _ = request(lab, "GET", "/redfish/v1")
    systems = request(lab, "GET", root["Systems"]["@odata.id"])[1]
    uri = [m["@odata.id"] for m in systems["Members"] if m["@odata.id"].endswith("/n2")][0]
    system = request(lab, "GET", uri)[1]
    assert system["PowerState"] == "On"
    target = system["Actions"]["#ComputerSystem.Reset"]["target"]
    assert request(lab, "POST", target, {"ResetType": "ForceOff"})[0] == 204
    assert request(lab, "GET", uri)[1]["PowerState"] == "Off"
    assert request(lab, "POST", target, {"ResetType": "On"})[0] == 204
    assert request(lab, "GET", uri)[1]["PowerState"] == "On"
    assert fake.running and fake.resets == 1


def test_concurrent_requests(lab):
    """Parallel clients (pacemaker monitors, a fence, the CLI) share each VM's one QMP socket."""
    from concurrent.futures import ThreadPoolExecutor

    def job(i):
        if i == 5:
            return reset(lab, "n1", "ForceRestart")[0]
        if i == 9:
            return vm.main(["power", "--lab", LAB, "n1", "status"]) or 200
        return request(lab, "GET", f"/redfish/v1/Systems/n{1 + i % 2}")[0]

    resets = lab["fakes"]["n1"].resets
    with ThreadPoolExecutor(12) as pool:
        results = list(pool.map(job, range(24)))
    assert results.count(204) == 1 and results.count(200) == 23, results
    assert lab["fakes"]["n1"].resets == resets + 1


def test_every_request_logged_without_password(lab):
    entries = log_entries(lab)
    posts = [e for e in entries if e["method"] == "POST" and e["status"] == 204]
    assert any(e["system"] == "n2" and e["reset_type"] == "ForceOff" for e in posts)
    assert any(e["system"] == "n1" and e["reset_type"] == "ForceRestart" for e in posts)
    for e in entries:
        assert {"time", "client", "method", "path", "system", "reset_type", "status", "result"} <= e.keys()
    assert any(e["status"] == 401 for e in entries)
    assert any(e["status"] == 404 and e["system"] == "n3" for e in entries)
    assert any(e["status"] == 400 and e["reset_type"] == "GracefulShutdown" for e in entries)
    token = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
    for name in ("bmc.log", "bmc.out", "state.json", "instances.json", "inventory.yml"):
        path = lab["sdir"] / name
        if path.exists():
            text = path.read_text()
            assert PASSWORD not in text and token not in text, name


def test_relay_pipes_a_guest_connection(lab):
    """What QEMU does per guest connection to 10.0.2.100:443: run the relay on a socket."""
    ours, theirs = socket.socketpair()
    proc = subprocess.Popen(
        [sys.executable, str(HERE / "bmc.py"), "relay", "--port", str(lab["st"]["bmc"]["host_port"]),
         "--node", "n2", "--state-dir", str(lab["sdir"]) + "/"],
        stdin=theirs, stdout=theirs, stderr=theirs)
    theirs.close()
    try:
        ctx = ssl.create_default_context(cafile=str(lab["sdir"] / "bmc-cert.pem"))
        ctx.check_hostname = False  # the guest uses --ssl-insecure; the name is 10.0.2.100 there
        ours.settimeout(30)
        tls = ctx.wrap_socket(ours)
        auth = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
        for _ in range(2):  # keep-alive: two requests on one connection
            tls.sendall(b"GET /redfish/v1/Systems/n1 HTTP/1.1\r\nHost: 10.0.2.100\r\n"
                        b"Authorization: Basic " + auth.encode() + b"\r\n\r\n")
            resp = http.client.HTTPResponse(tls)
            resp.begin()
            assert resp.status == 200
            assert json.loads(resp.read())["Id"] == "n1"
        tls.close()
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
    last = log_entries(lab)[-1]
    assert last["client"] == "n2 (guest)" and last["path"] == "/redfish/v1/Systems/n1"


def test_power_cli(lab, capsys):
    fake = lab["fakes"]["n2"]
    assert vm.main(["power", "--lab", LAB, "n2", "status"]) == 0
    assert capsys.readouterr().out.strip() == "on"
    assert vm.main(["power", "--lab", LAB, "n2", "off"]) == 0
    assert capsys.readouterr().out.strip() == "off"
    assert not fake.running and power_state(lab, "n2") == "Off"
    assert vm.status(LAB)["nodes"][1]["power"] == "off"
    assert vm.main(["power", "--lab", LAB, "n2", "status", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == {"node": "n2", "power": "Off", "qemu": "paused"}
    resets = fake.resets
    assert vm.main(["power", "--lab", LAB, "n2", "on"]) == 0
    assert capsys.readouterr().out.strip() == "on"
    assert fake.running and fake.resets == resets + 1 and power_state(lab, "n2") == "On"
    assert vm.main(["power", "--lab", LAB, "n2", "reset"]) == 0
    assert capsys.readouterr().out.strip() == "on"
    assert fake.resets == resets + 2
    assert vm.main(["power", "--lab", LAB, "n9", "off"]) == 1
    # freeze: a hung node, the BMC still says On, so a fence does ForceOff then On
    assert vm.main(["power", "--lab", LAB, "n2", "freeze"]) == 0
    assert capsys.readouterr().out.strip() == "on"
    assert not fake.running and power_state(lab, "n2") == "On"
    assert reset(lab, "n2", "ForceOff")[0] == 204 and power_state(lab, "n2") == "Off"
    assert reset(lab, "n2", "On")[0] == 204 and power_state(lab, "n2") == "On" and fake.running
    cli = [e for e in log_entries(lab) if e["method"] == "CLI"]
    assert [e["action"] for e in cli] == ["off", "on", "reset", "freeze"]
    # a test looking for the fence (ForceOff from a guest) does not mistake the CLI for it
    assert not any("ForceOff" in json.dumps(e) for e in cli)


def test_down_stops_the_bmc(state_root):
    lab2 = "bmc-test-unit2"
    sdir, st, fakes, pid = make_fake_lab(lab2, ["x1"])
    try:
        assert vm.bmc_alive(sdir)
        assert pid in vm.lab_pids(sdir)
        vm.down(lab2)
        assert common.wait_until(lambda: not common.pid_alive(pid, vm.lab_marker(sdir)), 10)
        assert not sdir.exists()
        with pytest.raises(OSError):
            socket.create_connection(("127.0.0.1", st["bmc"]["host_port"]), timeout=2).close()
    finally:
        for f in fakes.values():
            f.close()
        if sdir.exists():
            vm.down(lab2)


def test_power_on_relaunches_a_stopped_qemu(state_root, tmp_path):
    """A guest that powered itself off (QEMU gone): On starts QEMU again from qemu.argv."""
    lab3 = "bmc-test-unit3"
    spec = vm.normalize_spec({"lab": lab3, "nodes": [{"name": "y1"}]})
    sdir = vm.state_dir(lab3)
    (sdir / "y1").mkdir(parents=True)
    (sdir / "state.json").write_text(json.dumps(vm._plan(spec, tmp_path)))
    marker = tmp_path / "started"
    # stands in for qemu -daemonize: "starts" and leaves a pidfile naming a dead process
    (sdir / "y1" / "qemu.argv").write_text(json.dumps(["/bin/sh", "-c", f"echo ok > '{marker}'"]))
    (sdir / "y1" / "serial.log").write_text("old boot\n")
    try:
        assert bmc.power_state(sdir, "y1") == {"power": "Off", "qemu": "not running"}
        bmc.power(sdir, "y1", "off")
        assert not marker.exists()
        bmc.power(sdir, "y1", "on")
        assert marker.read_text() == "ok\n"
        assert (sdir / "y1" / "serial.log.prev").read_text() == "old boot\n"
    finally:
        vm.down(lab3)


# ---------------------------------------------------------------- one-time boot override
def patch_boot(lab, name, boot):
    return request(lab, "PATCH", f"/redfish/v1/Systems/{name}", {"Boot": boot})


def test_boot_override_shown_and_refused_when_unsupported(lab):
    boot = request(lab, "GET", "/redfish/v1/Systems/n2")[1]["Boot"]
    assert boot["BootSourceOverrideEnabled"] == "Disabled" and boot["BootSourceOverrideTarget"] == "None"
    assert "Pxe" in boot["BootSourceOverrideTarget@Redfish.AllowableValues"]
    for bad in ({"BootSourceOverrideTarget": "Pxe", "BootSourceOverrideEnabled": "Continuous"},
                {"BootSourceOverrideTarget": "Usb", "BootSourceOverrideEnabled": "Once"},
                {"BootSourceOverrideMode": "UEFI"}, {}):
        status, body, _ = patch_boot(lab, "n2", bad)
        assert status == 400 and "error" in body, bad
    assert request(lab, "PATCH", "/redfish/v1/Systems/n2", {"AssetTag": "x"})[0] == 400
    assert request(lab, "PATCH", "/redfish/v1/Systems/n2", b"{not json")[0] == 400
    assert request(lab, "PATCH", "/redfish/v1/Systems/n2", {"Boot": {"BootSourceOverrideTarget": "Pxe"}},
                   auth=(USER, "wrong"))[0] == 401
    assert request(lab, "GET", "/redfish/v1/Systems/n2")[1]["Boot"]["BootSourceOverrideEnabled"] == "Disabled"


def test_one_time_pxe_boot_is_taken_by_the_next_reset_only(lab):
    fake = lab["fakes"]["n2"]
    fake.boot_orders.clear()
    assert patch_boot(lab, "n2", {"BootSourceOverrideTarget": "Pxe", "BootSourceOverrideEnabled": "Once"})[0] == 204
    boot = request(lab, "GET", "/redfish/v1/Systems/n2")[1]["Boot"]
    assert (boot["BootSourceOverrideTarget"], boot["BootSourceOverrideEnabled"]) == ("Pxe", "Once")
    assert fake.boot_order() == ["disk0"], "setting the override changes nothing before the boot"
    assert reset(lab, "n2", "ForceRestart")[0] == 204
    assert fake.boot_orders == [["nic0", "disk0"]], "the reset boots from the network first"
    boot = request(lab, "GET", "/redfish/v1/Systems/n2")[1]["Boot"]
    assert (boot["BootSourceOverrideTarget"], boot["BootSourceOverrideEnabled"]) == ("None", "Disabled")
    # The firmware reads the order during POST: it stays network-first for a while, then is put back.
    assert fake.boot_order() == ["nic0", "disk0"]
    assert common.wait_until(lambda: fake.boot_order() == ["disk0"], HOLD + 10), \
        "the order after that boot is the disk's again"
    assert reset(lab, "n2", "ForceRestart")[0] == 204
    assert fake.boot_orders[-1] == ["disk0"]
    # From power off, On takes it as well, and the next power action puts the order back at once.
    assert patch_boot(lab, "n2", {"BootSourceOverrideTarget": "Pxe", "BootSourceOverrideEnabled": "Once"})[0] == 204
    assert reset(lab, "n2", "ForceOff")[0] == 204
    assert fake.boot_orders[-1] == ["disk0"] and len(fake.boot_orders) == 2, "ForceOff is no boot"
    assert reset(lab, "n2", "On")[0] == 204
    assert fake.boot_orders[-1] == ["nic0", "disk0"]
    assert reset(lab, "n2", "ForceRestart")[0] == 204
    assert fake.boot_orders[-1] == ["disk0"]
    # Disabled withdraws a pending override.
    assert patch_boot(lab, "n2", {"BootSourceOverrideTarget": "Pxe", "BootSourceOverrideEnabled": "Once"})[0] == 204
    assert patch_boot(lab, "n2", {"BootSourceOverrideEnabled": "Disabled"})[0] == 204
    assert reset(lab, "n2", "ForceRestart")[0] == 204
    assert fake.boot_orders[-1] == ["disk0"]
    assert any(e.get("boot") == "Pxe/Once" and e["status"] == 204 for e in log_entries(lab))


@pytest.mark.parametrize("power", ["On", "Off"])
def test_reinstall_bmc_tasks_drive_the_override(lab, tmp_path, power):
    """The BMC steps of playbooks/reinstall.yml (playbooks/tasks/bmc_network_boot.yml), with
    the real community.general modules: the power state from redfish_info, then
    SetOneTimeBoot Pxe and PowerForceRestart (PowerOn when off) for one system of several."""
    ansible = Path(sys.executable).parent / "ansible-playbook"
    if not ansible.exists():
        pytest.skip("no ansible-playbook next to this Python")
    fake = lab["fakes"]["n1"]
    if power == "Off":
        assert reset(lab, "n1", "ForceOff")[0] == 204
    fake.boot_orders.clear()
    play = tmp_path / "play.yml"
    play.write_text(json.dumps([{"hosts": "localhost", "gather_facts": False, "tasks": [
        {"ansible.builtin.include_tasks": str(HERE.parent.parent / "playbooks" / "tasks" / "bmc_network_boot.yml")}]}]))
    bmc_vars = {"protocol": "redfish", "address": "127.0.0.1", "port": lab["st"]["bmc"]["host_port"],
                "username": USER, "systems_uri": "/redfish/v1/Systems/n1", "verify_tls": False, "resource_id": "n1"}
    env = dict(os.environ, ANSIBLE_NOCOLOR="1", ANSIBLE_RETRY_FILES_ENABLED="0")
    res = subprocess.run([str(ansible), "-i", "localhost,", "-c", "local", str(play), "-vvv",
                          "-e", json.dumps({"bmc": bmc_vars, "bmc_password": PASSWORD,
                                            "ansible_python_interpreter": sys.executable})],
                         capture_output=True, text=True, timeout=300, env=env)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-2000:]
    assert fake.boot_orders == [["nic0", "disk0"]] and fake.running
    assert power_state(lab, "n1") == "On"
    assert lab["fakes"]["n2"].boot_order() == ["disk0"]
    posts = [e["reset_type"] for e in log_entries(lab) if e["method"] == "POST" and e["system"] == "n1"]
    assert posts[-1] == ("On" if power == "Off" else "ForceRestart")
    assert PASSWORD not in res.stdout + res.stderr
