#!/usr/bin/env python3
"""Power control and a Redfish BMC emulator for the QEMU test VMs of tests/harness/vm.py.

Power goes through each VM's QMP socket (<state>/<node>/qmp.sock):

    off    QMP ``stop``: the vCPUs freeze, the node does no more I/O and answers nothing on
           the network, as after a power loss; a marker file (<node>/power-off) remembers
           that the node is off.
    on     when off: ``system_reset`` then ``cont`` (the guest boots again from scratch, with
           the same -kernel/-append); when QEMU is not running at all (the guest powered
           itself off): QEMU is started again from <node>/qemu.argv; when on: nothing.
    reset  ``system_reset`` (+ ``cont`` when stopped); QEMU started again when not running.
    freeze (``vm.py power`` only) ``stop`` without marking the node off: a hung node whose BMC
           still reports On, so a fence does ForceOff + On (after ``off`` the BMC reports Off
           and fence_redfish's reboot only sends On).

The Redfish service (``vm.py up`` starts it when the spec has a ``bmc`` object) is HTTPS on
127.0.0.1:<port> with Basic auth, one ComputerSystem per lab node (Id = node name):

    GET  /redfish/v1                          service root, links Systems
    GET  /redfish/v1/Systems                  Members: /redfish/v1/Systems/<node>
    GET  /redfish/v1/Systems/<node>           PowerState On|Off, Boot, Actions.#ComputerSystem.Reset
    PATCH /redfish/v1/Systems/<node>          {"Boot": {"BootSourceOverrideTarget": None|Pxe|Hdd,
                                               "BootSourceOverrideEnabled": Disabled|Once}}
    POST /redfish/v1/Systems/<node>/Actions/ComputerSystem.Reset   {"ResetType": On|ForceOff|ForceRestart}

The boot override (<node>/boot-override.json) is taken by the next boot the BMC starts (On from
Off, ForceRestart), as on a real BMC: before that reset the emulator moves the VM's NICs to the
front of QEMU's boot order (the devices' ``bootindex``, through QMP ``qom-set``) and clears the
override. QEMU gives the firmware the boot order when the firmware reads it during POST, not at
the reset, so the old order is put back BOOT_ORDER_HOLD seconds later (env
KICKSTACK_BMC_BOOT_ORDER_HOLD, default 20: POST reads it within a few seconds, an installer
reboots minutes later) or at the node's next power action, whichever comes first
(<node>/boot-restore.json holds it until then): the boot after the one-time boot is from disk
again. Only a running QEMU can be re-ordered: a VM that QEMU has to start again keeps the
override for the next reset.

Guests reach it at 10.0.2.100:443: their user-mode NIC forwards that address (guestfwd) to
``bmc.py relay``, one process per connection, which pipes the connection to the service and
tells it which node is calling. Every request is appended to <state>/bmc.log as one JSON object
per line (time, client, method, path, system, reset_type, status, result); ``vm.py power``
actions are logged there too with method "CLI". The password is kept in <state>/bmc.json (0600)
only and never logged.

Python 3.11+ standard library only (and the openssl CLI to make the self-signed certificate).
"""
from __future__ import annotations

import base64
import contextlib
import fcntl
import hmac
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

try:
    from . import common  # imported as part of a package
except ImportError:
    import common  # run as a script, or imported with tests/harness on sys.path

GUEST_ADDRESS = "10.0.2.100"  # inside QEMU's user-mode network 10.0.2.0/24, outside its DHCP pool
GUEST_PORT = 443              # fence_redfish's default ipport
RESET_TYPES = ("On", "ForceOff", "ForceRestart")
BOOT_TARGETS = ("None", "Pxe", "Hdd")
BOOT_ENABLED = ("Disabled", "Once")
ACTIONS = {"On": "on", "ForceOff": "off", "ForceRestart": "reset"}
ROOT = "/redfish/v1"
RELAY_MAGIC = b"KSRELAY "
QMP_TIMEOUT = 15.0
BOOT_ORDER_HOLD = float(os.environ.get("KICKSTACK_BMC_BOOT_ORDER_HOLD", "20"))


class PowerError(common.HarnessError):
    """The VM could not be asked or told (QMP unreachable, QEMU failed to start)."""


# ---------------------------------------------------------------- QMP
class QMP:
    """A minimal QMP client: greeting, qmp_capabilities, commands; events are collected."""

    def __init__(self, path: Path, timeout: float = QMP_TIMEOUT):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.timeout = timeout
        self.sock.settimeout(timeout)
        self.buf = b""
        self.events: list[dict] = []
        try:
            deadline = time.monotonic() + timeout
            while True:
                try:
                    self.sock.connect(str(path))
                    break
                except BlockingIOError:  # backlog full: QEMU serves one QMP client at a time
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.1)
            greeting = self._read()
            if "QMP" not in greeting:
                raise PowerError(f"{path}: not a QMP greeting: {greeting}")
            self.execute("qmp_capabilities")
        except BaseException:
            self.sock.close()
            raise

    def __enter__(self) -> "QMP":
        return self

    def __exit__(self, *exc) -> None:
        self.sock.close()

    def _read(self) -> dict:
        while b"\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise PowerError("QMP connection closed")
            self.buf += chunk
        line, self.buf = self.buf.split(b"\n", 1)
        return json.loads(line)

    def execute(self, command: str, arguments: dict | None = None):
        msg = {"execute": command}
        if arguments:
            msg["arguments"] = arguments
        self.sock.sendall(json.dumps(msg).encode() + b"\n")
        while True:
            reply = self._read()
            if "event" in reply:
                self.events.append(reply)
                continue
            if "error" in reply:
                raise PowerError(f"QMP {command}: {reply['error'].get('desc', reply['error'])}")
            return reply.get("return")

    def wait_event(self, name: str, timeout: float = 10.0) -> bool:
        deadline = time.monotonic() + timeout
        try:
            while not any(e.get("event") == name for e in self.events):
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self.sock.settimeout(left)
                try:
                    reply = self._read()
                except TimeoutError:
                    return False
                if "event" in reply:
                    self.events.append(reply)
            return True
        finally:
            self.sock.settimeout(self.timeout)


# ---------------------------------------------------------------- power
def qemu_alive(sdir: Path, node: str) -> bool:
    return common.pid_alive(common.read_pid(sdir / node / "qemu.pid"), f"{sdir}/")


@contextlib.contextmanager
def _node_lock(sdir: Path, node: str):
    """One QMP user per node at a time (the BMC's threads and `vm.py power`): QEMU serves one
    QMP client at a time and refuses more than its backlog."""
    try:
        fd = os.open(sdir / node / "power.lock", os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        raise PowerError(f"{node}: {exc}") from exc
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _qmp(sdir: Path, node: str) -> QMP | None:
    """A QMP connection, or None when QEMU is not running."""
    try:
        return QMP(sdir / node / "qmp.sock")
    except (FileNotFoundError, ConnectionRefusedError) as exc:
        if qemu_alive(sdir, node):
            raise PowerError(f"{node}: QEMU runs but its QMP socket refuses: {exc}") from exc
        return None
    except (OSError, ValueError) as exc:
        raise PowerError(f"{node}: QMP: {exc}") from exc


def power_state(sdir: Path, node: str) -> dict:
    """{"power": "On"|"Off", "qemu": QMP run state or "not running"}."""
    with _node_lock(sdir, node):
        return _power_state(sdir, node)


def _power_state(sdir: Path, node: str) -> dict:
    q = _qmp(sdir, node)
    if q is None:
        return {"power": "Off", "qemu": "not running"}
    with q:
        status = q.execute("query-status")
    off = (sdir / node / "power-off").exists()
    return {"power": "Off" if off else "On", "qemu": status.get("status", "?")}


def _relaunch(sdir: Path, node: str) -> None:
    argv_file = sdir / node / "qemu.argv"
    try:
        argv = json.loads(argv_file.read_text())
    except (OSError, ValueError) as exc:
        raise PowerError(f"{node}: QEMU is not running and {argv_file} is unreadable: {exc}") from exc
    serial = sdir / node / "serial.log"
    if serial.exists():
        serial.replace(serial.with_suffix(".log.prev"))
    try:
        common.start_qemu(argv, node)
    except common.HarnessError as exc:
        raise PowerError(str(exc)) from exc


def power(sdir: Path, node: str, action: str) -> dict:
    """Do action (on|off|reset|freeze|status) to node; returns the state afterwards (see power_state)."""
    if action == "status":
        return power_state(sdir, node)
    if action not in ("on", "off", "reset", "freeze"):
        raise ValueError(f"power action {action!r}")
    marker = sdir / node / "power-off"
    with _node_lock(sdir, node):
        q = _qmp(sdir, node)
        if q is not None:
            with q:
                _restore_boot_order(q, sdir, node)
            q = _qmp(sdir, node)
        if q is None:
            if action in ("on", "reset"):
                _relaunch(sdir, node)
            marker.unlink(missing_ok=True)
        else:
            with q:
                running = q.execute("query-status").get("running")
                if action in ("off", "freeze"):
                    if running:
                        q.execute("stop")
                    if action == "off":
                        marker.touch()
                elif action == "on" and marker.exists() or action == "reset":
                    restore = _apply_boot_override(q, sdir, node)
                    q.execute("system_reset")
                    q.wait_event("RESET", timeout=10)
                    if restore is not None:
                        # Taken by this boot; the order goes back once the firmware has read it.
                        (sdir / node / "boot-restore.json").write_text(json.dumps(restore) + "\n")
                        (sdir / node / "boot-override.json").unlink(missing_ok=True)
                        timer = threading.Timer(BOOT_ORDER_HOLD, _restore_later, (sdir, node))
                        timer.daemon = True
                        timer.start()
                    if not q.execute("query-status").get("running"):
                        q.execute("cont")
                    marker.unlink(missing_ok=True)
        return _power_state(sdir, node)


# ---------------------------------------------------------------- boot override
def boot_override(sdir: Path, node: str) -> dict:
    """{"target": ..., "enabled": ...} as the Redfish Boot property shows them."""
    try:
        data = json.loads((sdir / node / "boot-override.json").read_text())
        return {"target": data["target"], "enabled": data["enabled"]}
    except (OSError, ValueError, KeyError, TypeError):
        return {"target": "None", "enabled": "Disabled"}


def set_boot_override(sdir: Path, node: str, target: str, enabled: str) -> dict:
    with _node_lock(sdir, node):
        path = sdir / node / "boot-override.json"
        if enabled == "Disabled" or target == "None":
            path.unlink(missing_ok=True)
        else:
            path.write_text(json.dumps({"target": target, "enabled": enabled}) + "\n")
        return boot_override(sdir, node)


def _boot_devices(q: QMP) -> list[dict]:
    """The VM's devices that have a boot index: QOM path, whether it is a NIC, its bootindex."""
    devices = []
    for base in ("/machine/peripheral", "/machine/peripheral-anon"):
        try:
            children = q.execute("qom-list", {"path": base})
        except PowerError:
            continue
        for child in children:
            if not str(child.get("type", "")).startswith("child<"):
                continue
            path = f"{base}/{child['name']}"
            props = {p["name"] for p in q.execute("qom-list", {"path": path})}
            if "bootindex" in props:
                devices.append({"path": path, "nic": "mac" in props,
                                "bootindex": int(q.execute("qom-get", {"path": path, "property": "bootindex"}))})
    return devices


def _set_boot_order(q: QMP, devices: list[dict]) -> None:
    """Give each device its bootindex (every one cleared first: QEMU refuses an index in use)."""
    for dev in devices:
        q.execute("qom-set", {"path": dev["path"], "property": "bootindex", "value": -1})
    for dev in devices:
        if dev["bootindex"] >= 0:
            q.execute("qom-set", {"path": dev["path"], "property": "bootindex", "value": dev["bootindex"]})


def _restore_boot_order(q: QMP, sdir: Path, node: str) -> None:
    """Put back the boot order a one-time boot changed, if it is still changed."""
    path = sdir / node / "boot-restore.json"
    try:
        devices = json.loads(path.read_text())
    except (OSError, ValueError):
        return
    _set_boot_order(q, devices)
    path.unlink(missing_ok=True)


def _restore_later(sdir: Path, node: str) -> None:
    try:
        with _node_lock(sdir, node):
            q = _qmp(sdir, node)
            if q is None:  # QEMU is gone: a restart starts with its own order anyway
                (sdir / node / "boot-restore.json").unlink(missing_ok=True)
                return
            with q:
                _restore_boot_order(q, sdir, node)
        log_event(sdir, client="timer", method="BOOT-ORDER", path=None, system=node, reset_type=None,
                  status=0, result="boot order put back after the one-time boot")
    except (PowerError, OSError) as exc:
        log_event(sdir, client="timer", method="BOOT-ORDER", path=None, system=node, reset_type=None,
                  status=0, result=f"boot order not put back: {exc}")


def _apply_boot_override(q: QMP, sdir: Path, node: str) -> list[dict] | None:
    """Before a reset: with a pending Pxe override, the NICs boot first. Returns the order to
    put back after the reset, or None when there is nothing to put back."""
    override = boot_override(sdir, node)
    if override["enabled"] == "Disabled" or override["target"] == "None":
        return None
    if override["target"] == "Hdd":  # the disk comes first already: the boot just takes the override
        (sdir / node / "boot-override.json").unlink(missing_ok=True)
        return None
    devices = _boot_devices(q)
    if not any(d["nic"] for d in devices):
        raise PowerError(f"{node}: a network boot was asked for, but the VM has no NIC with a boot index")
    rank = sorted(devices, key=lambda d: (not d["nic"], d["bootindex"] < 0, d["bootindex"]))
    _set_boot_order(q, [dict(d, bootindex=i) for i, d in enumerate(rank)])
    return devices


# ---------------------------------------------------------------- log
_log_lock = threading.Lock()


def log_event(sdir: Path, **fields) -> None:
    entry = {"time": datetime.now(timezone.utc).isoformat(timespec="milliseconds"), **fields}
    line = (json.dumps(entry) + "\n").encode()
    with _log_lock:
        fd = os.open(sdir / "bmc.log", os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, line)
        finally:
            os.close(fd)


# ---------------------------------------------------------------- setup (called by vm.py up)
def write_secret(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        os.fchmod(f.fileno(), 0o600)
        f.write(text)


def make_cert(sdir: Path) -> tuple[Path, Path]:
    cert, key = sdir / "bmc-cert.pem", sdir / "bmc-key.pem"
    if cert.exists() and key.exists():
        return cert, key
    # the key is created 0600 before openssl writes into it
    write_secret(key, "")
    res = subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
         "-nodes", "-keyout", str(key), "-out", str(cert), "-days", "3650",
         "-subj", "/CN=kickstack-bmc",
         "-addext", f"subjectAltName=IP:{GUEST_ADDRESS},IP:127.0.0.1"],
        stdin=subprocess.DEVNULL, capture_output=True, text=True)
    if res.returncode != 0:
        raise PowerError(f"openssl could not make the BMC certificate: {res.stderr.strip()}")
    os.chmod(key, 0o600)
    return cert, key


def configure(sdir: Path, username: str, password: str, port: int) -> dict:
    """Write <state>/bmc.json (0600: it holds the password) and the certificate."""
    cert, key = make_cert(sdir)
    cfg = {"username": username, "password": password, "port": port, "cert": str(cert), "key": str(key)}
    write_secret(sdir / "bmc.json", json.dumps(cfg, indent=2) + "\n")
    return cfg


def read_config(sdir: Path) -> dict:
    return json.loads((sdir / "bmc.json").read_text())


# ---------------------------------------------------------------- Redfish service
def _system(name: str, state: dict, boot: dict) -> dict:
    uri = f"{ROOT}/Systems/{name}"
    return {
        "@odata.id": uri,
        "@odata.type": "#ComputerSystem.v1_13_0.ComputerSystem",
        "Id": name,
        "Name": name,
        "SystemType": "Virtual",
        "Manufacturer": "QEMU",
        "Model": "kickstack test VM (TCG)",
        "PowerState": state["power"],
        "Status": {"State": "Enabled" if state["power"] == "On" else "StandbyOffline", "Health": "OK"},
        "Boot": {
            "BootSourceOverrideEnabled": boot["enabled"],
            "BootSourceOverrideTarget": boot["target"],
            "BootSourceOverrideTarget@Redfish.AllowableValues": list(BOOT_TARGETS),
        },
        "Actions": {
            "#ComputerSystem.Reset": {
                "target": f"{uri}/Actions/ComputerSystem.Reset",
                "ResetType@Redfish.AllowableValues": list(RESET_TYPES),
            },
        },
    }


def _error(message: str, code: str = "Base.1.0.GeneralError") -> dict:
    return {"error": {"code": code, "message": message}}


def make_server(sdir: Path, host: str = "127.0.0.1"):
    import ssl
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    cfg = read_config(sdir)
    nodes = [n["name"] for n in common.read_state(sdir)["nodes"]]
    expected = base64.b64encode(f"{cfg['username']}:{cfg['password']}".encode()).decode()
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cfg["cert"], cfg["key"])

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        server_version = "kickstack-bmc/1"
        sys_version = ""
        client_label = "?"

        def log_message(self, format, *args):  # noqa: A002 - the base class' name
            pass  # bmc.log has one line per request; the default would print to stderr

        def _reply(self, status: int, body: dict | None = None, headers: dict | None = None) -> None:
            data = json.dumps(body, indent=1).encode() if body is not None else b""
            self.send_response(status)
            if data:
                self.send_header("Content-Type", "application/json; charset=utf-8")
            self.send_header("OData-Version", "4.0")
            self.send_header("Content-Length", str(len(data)))
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.end_headers()
            if data and self.command != "HEAD":
                self.wfile.write(data)

        def _handle(self) -> None:
            method, path = self.command, self.path.split("?", 1)[0].split("#", 1)[0]
            entry = {"client": self.client_label, "method": method, "path": path,
                     "system": None, "reset_type": None}
            status, result = 500, "error"
            try:
                length = int(self.headers.get("Content-Length") or 0)
                if length > 65536:
                    status, result = 413, "body too large"
                    self.close_connection = True
                    return self._reply(status, _error(result))
                body = self.rfile.read(length) if length else b""
                status, result, reply, headers = self._route(method, path.rstrip("/") or "/", body, entry)
                self._reply(status, reply, headers)
            finally:
                log_event(sdir, **entry, status=status, result=result)

        def _route(self, method, path, body, entry):
            auth = self.headers.get("Authorization", "")
            scheme, _, token = auth.partition(" ")
            if scheme.lower() != "basic" or not hmac.compare_digest(token.strip().encode(), expected.encode()):
                entry["auth"] = "missing" if not auth else "bad"
                return 401, "unauthorized", _error("valid Basic credentials required",
                                                   "Base.1.0.InsufficientPrivilege"), \
                    {"WWW-Authenticate": 'Basic realm="kickstack-bmc"'}
            parts = path.strip("/").split("/")
            if parts[:2] != ["redfish", "v1"]:
                if path == "/redfish" and method in ("GET", "HEAD"):
                    return 200, "ok", {"v1": f"{ROOT}/"}, None
                return 404, "not found", _error(f"no resource {path}", "Base.1.0.ResourceMissingAtURI"), None
            rest = parts[2:]
            if rest and rest[0] == "Systems" and len(rest) >= 2:
                entry["system"] = rest[1]
                if rest[1] not in nodes:
                    return 404, "no such system", _error(f"no system {rest[1]}", "Base.1.0.ResourceMissingAtURI"), None
            resource = "/".join(rest[:1] + (["<node>"] if len(rest) >= 2 else []) + rest[2:])
            allowed = {"": ("GET",), "Systems": ("GET",), "Systems/<node>": ("GET", "PATCH"),
                       "Systems/<node>/Actions/ComputerSystem.Reset": ("POST",)}.get(resource)
            if allowed is None:
                return 404, "not found", _error(f"no resource {path}", "Base.1.0.ResourceMissingAtURI"), None
            if method not in allowed + (("HEAD",) if "GET" in allowed else ()):
                return 405, "method not allowed", _error(f"{method} not allowed on {path}"), \
                    {"Allow": ", ".join(allowed)}
            if resource == "":
                return 200, "ok", {
                    "@odata.id": ROOT, "@odata.type": "#ServiceRoot.v1_5_0.ServiceRoot",
                    "Id": "RootService", "Name": "kickstack BMC emulator", "RedfishVersion": "1.6.0",
                    "Systems": {"@odata.id": f"{ROOT}/Systems"}}, None
            if resource == "Systems":
                return 200, "ok", {
                    "@odata.id": f"{ROOT}/Systems",
                    "@odata.type": "#ComputerSystemCollection.ComputerSystemCollection",
                    "Name": "Computer System Collection", "Members@odata.count": len(nodes),
                    "Members": [{"@odata.id": f"{ROOT}/Systems/{n}"} for n in nodes]}, None
            name = rest[1]
            if resource == "Systems/<node>" and method == "PATCH":
                return self._patch_system(name, body, entry)
            if resource == "Systems/<node>":
                try:
                    state = power_state(sdir, name)
                except PowerError as exc:
                    return 503, str(exc), _error(str(exc)), None
                entry["power"] = state["power"]
                return 200, "ok", _system(name, state, boot_override(sdir, name)), None
            try:
                reset_type = json.loads(body or b"{}").get("ResetType")
            except (ValueError, AttributeError):
                return 400, "malformed JSON body", _error("malformed JSON body", "Base.1.0.MalformedJSON"), None
            entry["reset_type"] = reset_type if isinstance(reset_type, str) else repr(reset_type)
            if reset_type not in RESET_TYPES:
                return 400, f"unsupported ResetType {reset_type!r}", _error(
                    f"ResetType must be one of {', '.join(RESET_TYPES)}",
                    "Base.1.0.ActionParameterNotSupported"), None
            try:
                state = power(sdir, name, ACTIONS[reset_type])
            except PowerError as exc:
                return 503, str(exc), _error(str(exc)), None
            entry["power"] = state["power"]
            return 204, "ok", None, None

        def _patch_system(self, name, body, entry):
            """Only the boot override can be changed: Boot.BootSourceOverrideTarget/Enabled."""
            try:
                data = json.loads(body or b"{}")
            except ValueError:
                return 400, "malformed JSON body", _error("malformed JSON body", "Base.1.0.MalformedJSON"), None
            boot = data.get("Boot") if isinstance(data, dict) else None
            if not isinstance(boot, dict) or set(data) != {"Boot"} or not boot:
                return 400, "only Boot can be patched", _error(
                    "only the Boot property can be changed", "Base.1.0.PropertyNotWritable"), None
            current = boot_override(sdir, name)
            target = boot.get("BootSourceOverrideTarget", current["target"])
            enabled = boot.get("BootSourceOverrideEnabled", current["enabled"])
            entry["boot"] = f"{target}/{enabled}"
            unknown = sorted(set(boot) - {"BootSourceOverrideTarget", "BootSourceOverrideEnabled"})
            if unknown:
                return 400, f"unsupported Boot properties {unknown}", _error(
                    f"Boot.{unknown[0]} is not supported", "Base.1.0.PropertyNotWritable"), None
            if target not in BOOT_TARGETS or enabled not in BOOT_ENABLED:
                return 400, f"unsupported override {target!r}/{enabled!r}", _error(
                    f"BootSourceOverrideTarget must be one of {', '.join(BOOT_TARGETS)} and "
                    f"BootSourceOverrideEnabled one of {', '.join(BOOT_ENABLED)}",
                    "Base.1.0.PropertyValueNotInList"), None
            try:
                set_boot_override(sdir, name, target, enabled)
            except OSError as exc:
                return 503, str(exc), _error(str(exc)), None
            return 204, "ok", None, None

        do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = _handle

    class Server(ThreadingHTTPServer):
        daemon_threads = True
        allow_reuse_address = True

        def finish_request(self, request, client_address):
            # TLS per connection in the connection's own thread; a relayed connection first
            # names the guest node it comes from ("KSRELAY <node>\n", see relay()).
            label = f"{client_address[0]}:{client_address[1]}"
            request.settimeout(60)
            try:
                if request.recv(len(RELAY_MAGIC), socket.MSG_PEEK | socket.MSG_WAITALL) == RELAY_MAGIC:
                    line = b""
                    while not line.endswith(b"\n") and len(line) < 128:
                        chunk = request.recv(1)
                        if not chunk:
                            return
                        line += chunk
                    label = line[len(RELAY_MAGIC):].decode(errors="replace").strip() + " (guest)"
                conn = ctx.wrap_socket(request, server_side=True)
            except (OSError, ssl.SSLError):
                return
            handler = type("H", (Handler,), {"client_label": label})
            try:
                handler(conn, client_address, self)
            except (OSError, ssl.SSLError):
                pass

        def handle_error(self, request, client_address):
            pass

    return Server((host, int(cfg["port"])), Handler)


def serve(sdir: Path) -> None:
    server = make_server(sdir)

    def _terminate(*_):
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, _terminate)
    common.logger("bmc")(f"listening on 127.0.0.1:{server.server_address[1]}")
    try:
        server.serve_forever()
    finally:
        server.server_close()


def wait_listening(port: int, pid: int | None = None, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not common.port_answers("127.0.0.1", port):
        if pid is not None and not common.pid_alive(pid):
            raise PowerError("the BMC service exited at start")
        if time.monotonic() > deadline:
            raise PowerError(f"the BMC service does not listen on 127.0.0.1:{port}")
        time.sleep(0.1)


# ---------------------------------------------------------------- relay (guestfwd cmd:)
def relay(port: int, node: str) -> int:
    """Pipe stdin/stdout (QEMU's end of one guest connection) to the BMC service.

    QEMU (libslirp) starts one of these per connection the guest opens to 10.0.2.100:443, with
    stdin, stdout and stderr all on that connection: nothing may be printed.
    """
    import selectors

    devnull = os.open(os.devnull, os.O_RDWR)
    os.dup2(devnull, 2)
    try:
        guest = socket.socket(fileno=os.dup(0))
    except OSError:
        guest = None
    try:
        host = socket.create_connection(("127.0.0.1", port), timeout=10)
    except OSError:
        return 1
    host.settimeout(None)
    host.sendall(RELAY_MAGIC + node.encode() + b"\n")
    # stdin may be a socket (QEMU) or pipes (tests); read fd 0, write fd 1
    rfd, wfd = 0, 1
    sel = selectors.DefaultSelector()
    sel.register(rfd, selectors.EVENT_READ, "guest")
    sel.register(host, selectors.EVENT_READ, "host")
    open_dirs = 2
    while open_dirs:
        for key, _ in sel.select():
            try:
                if key.data == "guest":
                    data = os.read(rfd, 65536)
                    if data:
                        host.sendall(data)
                        continue
                    sel.unregister(rfd)
                    with contextlib.suppress(OSError):
                        host.shutdown(socket.SHUT_WR)
                else:
                    data = host.recv(65536)
                    if data:
                        view = memoryview(data)
                        while view:
                            view = view[os.write(wfd, view):]
                        continue
                    sel.unregister(host)
                    if guest is not None:
                        with contextlib.suppress(OSError):
                            guest.shutdown(socket.SHUT_WR)
                    else:
                        os.close(wfd)
            except OSError:
                return 0
            open_dirs -= 1
    return 0


def main(argv: list[str] | None = None) -> int:
    import argparse

    ap = argparse.ArgumentParser(description="kickstack test BMC pieces (started by vm.py)")
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("relay")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--node", default="?")
    p.add_argument("--state-dir", help="only marks the process as belonging to the lab")
    p = sub.add_parser("serve")
    p.add_argument("--state-dir", required=True)
    args = ap.parse_args(argv)
    if args.cmd == "relay":
        return relay(args.port, args.node)
    serve(Path(args.state_dir.rstrip("/")))
    return 0


if __name__ == "__main__":
    sys.exit(main())
