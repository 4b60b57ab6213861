"""What the test harnesses share: nspawn.py (container labs), vm.py (QEMU labs), bmc.py (their
BMC) and tests/test_pxe_boot.py (QEMU PXE clients) all import it.

It holds the small pieces each of them needs the same way: the error type and stderr logging,
running and spawning commands, telling whether a PID is still ours, a lab's state directory and
its state.json, the ssh options, key and the ssh_config/inventory files written for a lab, MAC
addresses derived from names, and the one function that builds a QEMU command line.

Python 3.11+, standard library only.
"""
from __future__ import annotations

import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

STATE_ROOT = Path(os.environ.get("KICKSTACK_STATE_ROOT", "/var/tmp/kickstack"))
QEMU = os.environ.get("KICKSTACK_QEMU", "qemu-system-x86_64")
OVMF_CODE = Path("/usr/share/OVMF/OVMF_CODE_4M.fd")
OVMF_VARS = Path("/usr/share/OVMF/OVMF_VARS_4M.fd")


class HarnessError(RuntimeError):
    """A lab could not be brought up, inspected or taken down; the message says why."""


def logger(prefix: str):
    """A log(msg) function that writes "<prefix>: msg" to stderr."""
    def log(msg: str) -> None:
        print(f"{prefix}: {msg}", file=sys.stderr, flush=True)
    return log


# ---------------------------------------------------------------- processes
def run(cmd: list, check: bool = True, **kw) -> subprocess.CompletedProcess:
    """Run cmd with its output captured as text; with check, a failure raises HarnessError."""
    p = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, **kw)
    if check and p.returncode != 0:
        raise HarnessError(f"{' '.join(map(str, cmd))} failed ({p.returncode}): {p.stderr.strip()}")
    return p


def build_output(cmd: list) -> str:
    """Run a build script (its stderr goes to ours) and return the last line it printed: the
    path of what it built or found in its cache."""
    p = subprocess.run([str(c) for c in cmd], stdout=subprocess.PIPE, text=True)
    lines = p.stdout.strip().splitlines()
    if p.returncode != 0 or not lines:
        raise HarnessError(f"{cmd[0]} failed (exit {p.returncode}, {len(lines)} lines of output)")
    return lines[-1].strip()


def spawn(argv: list, logfile: Path) -> subprocess.Popen:
    """Start argv in a session of its own, stdin from /dev/null, stdout and stderr appended to logfile."""
    with open(logfile, "ab") as out:
        return subprocess.Popen([str(a) for a in argv], stdin=subprocess.DEVNULL, stdout=out, stderr=out,
                                start_new_session=True)


def pid_alive(pid: int | None, marker: str | None = None) -> bool:
    """Whether pid runs and is not a zombie (a child of ours that exited is reaped here).

    With marker, the process must also have it in its command line: a PID recorded earlier may
    since have been given to an unrelated process."""
    if not pid or pid < 0:
        return False
    try:
        if os.waitpid(pid, os.WNOHANG)[0] == pid:
            return False
    except ChildProcessError:
        pass
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes() if marker else b""
    except OSError:
        return False
    if marker and marker.encode() not in cmdline:
        return False
    return stat.rsplit(")", 1)[1].split()[0] not in ("Z", "X")


def read_pid(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None


def kill(pid: int, sig: int) -> None:
    """Send sig to pid; a process that is gone already is fine."""
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


def stop(pids, marker: str | None = None, grace: float = 10) -> None:
    """SIGTERM the live ones among pids, SIGKILL those still there after grace seconds, and wait
    up to 5 s more for them to go."""
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 5)):
        alive = [p for p in pids if pid_alive(p, marker)]
        for pid in alive:
            kill(pid, sig)
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline and any(pid_alive(p, marker) for p in alive):
            time.sleep(0.1)


def free_port(kind: int = socket.SOCK_STREAM, exclude=()) -> int:
    """A port on 127.0.0.1 that nothing is bound to now (TCP or UDP), not one of exclude."""
    for _ in range(100):
        with socket.socket(socket.AF_INET, kind) as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port not in exclude:
            return port
    raise HarnessError("no free port")


# ---------------------------------------------------------------- state
def state_dir(lab: str) -> Path:
    """Where a lab keeps its files: STATE_ROOT/<lab> (KICKSTACK_STATE_ROOT, default /var/tmp/kickstack)."""
    return STATE_ROOT / lab


def read_state(sdir: Path) -> dict | None:
    """The lab's state.json, or None when there is none."""
    path = sdir / "state.json"
    return json.loads(path.read_text()) if path.exists() else None


def write_state(sdir: Path, record: dict) -> None:
    """Replace state.json at once, so a reader never sees half of it."""
    tmp = sdir / "state.json.tmp"
    tmp.write_text(json.dumps(record, indent=2) + "\n")
    tmp.replace(sdir / "state.json")


def read_spec(path: str | os.PathLike) -> dict:
    """A spec file: JSON, or YAML when it is not JSON and PyYAML can be imported."""
    text = Path(path).read_text()
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        try:
            import yaml  # type: ignore[import-untyped]
        except ImportError as exc:
            raise HarnessError(f"{path}: not JSON, and PyYAML is not available to read YAML") from exc
        return yaml.safe_load(text)


# ---------------------------------------------------------------- ssh and inventories
# What Ansible passes to ssh (ansible_ssh_common_args); scripts add BatchMode and a timeout.
ANSIBLE_SSH_OPTS = ["-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
                    "-o", "LogLevel=ERROR", "-o", "IdentitiesOnly=yes"]
SSH_OPTS = [*ANSIBLE_SSH_OPTS, "-o", "BatchMode=yes", "-o", "ConnectTimeout=5"]


def ensure_key(sdir: Path) -> Path:
    """The lab's ssh key (sdir/id_ed25519), made on first use."""
    key = sdir / "id_ed25519"
    if not key.exists():
        run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", f"kickstack-{sdir.name}", "-f", key])
    return key


def ssh_cmd(sdir: Path | str, host: str, *cmd: str, port: int | None = None) -> list[str]:
    """ssh argv that runs cmd as root on host with the lab's key."""
    return ["ssh", *SSH_OPTS, "-i", str(Path(sdir) / "id_ed25519"), *(["-p", str(port)] if port else []),
            f"root@{host}", *cmd]


def ansible_ssh_vars(key: Path | str) -> dict:
    """The connection variables of a lab node for Ansible."""
    return {"ansible_user": "root", "ansible_ssh_private_key_file": str(key),
            "ansible_python_interpreter": "/usr/bin/python3",
            "ansible_ssh_common_args": " ".join(ANSIBLE_SSH_OPTS)}


def to_yaml(data: dict, indent: int = 0) -> list[str]:
    """Block YAML lines for nested dicts; other values are written as JSON, which YAML reads as
    the same scalar, list or mapping."""
    lines = []
    for key, value in data.items():
        if isinstance(value, dict):
            lines += [f"{'  ' * indent}{key}:", *to_yaml(value, indent + 1)]
        else:
            lines.append(f"{'  ' * indent}{key}: {json.dumps(value)}")
    return lines


def write_inventory(path: Path, data: dict, header: str) -> Path:
    path.write_text("\n".join([f"# {header}", *to_yaml(data)]) + "\n")
    return path


def write_ssh_config(path: Path, key: Path | str, hosts: list[tuple]) -> None:
    """An ssh_config for `ssh -F`: one block per (name, address, port or None)."""
    blocks = [f"Host {name}\n  HostName {address}\n" + (f"  Port {port}\n" if port else "")
              + f"  User root\n  IdentityFile {key}\n  IdentitiesOnly yes\n  StrictHostKeyChecking no\n"
              "  UserKnownHostsFile /dev/null\n  LogLevel ERROR\n" for name, address, port in hosts]
    path.write_text("\n".join(blocks))


def lab_mac(lab: str, node: str, nic: str | None = None) -> str:
    """A MAC address that stays the same for the same lab, node (and NIC): 02:... (locally
    administered, unicast) followed by five bytes of a hash of the names."""
    key = f"{lab}/{node}" if nic is None else f"{lab}/{node}/{nic}"
    digest = hashlib.sha256(key.encode()).digest()
    return "02:" + ":".join(f"{b:02x}" for b in digest[:5])


# ---------------------------------------------------------------- QEMU
def _opts(kind: str, **values) -> str:
    """A QEMU option string "kind,key=value,...", leaving out the values that are None."""
    return ",".join([kind] + [f"{k}={v}" for k, v in values.items() if v is not None])


def _addr(slot: int | None) -> str | None:
    return None if slot is None else f"{slot:#x}"


def qemu_argv(*, memory: int, serial: Path, cpus: int = 1, name: str | None = None, firmware: str = "bios",
              uefi_vars: Path | None = None, kernel: Path | None = None, initrd: Path | None = None,
              append: str | None = None, nics: list[dict] = (), disks: list[dict] = (), boot: str | None = None,
              qmp: Path | None = None, pidfile: Path | None = None, daemonize: bool = False,
              extra: list[str] = ()) -> list[str]:
    """The command line of a headless TCG x86 guest on the "pc" machine, console on serial (a file).

    firmware: "bios" (SeaBIOS) or "uefi" (OVMF; uefi_vars is the guest's own copy of OVMF_VARS).
    nics: {"netdev": "user,..." (backend without its id), "mac", optional "model" (virtio-net-pci),
    "id" (netdev id, default n<i>), "addr" (PCI slot), "bootindex"}; the device is nic<i>.
    disks: {"file", optional "format" (raw), "model" (virtio-blk-pci), "id" (drive id, default d<i>;
    the device is <id>dev), "serial", "addr", "bootindex"}; all are scratch disks (cache=unsafe).
    boot: -boot's argument ("n": network first); extra: more arguments, appended as they are.
    """
    argv = [QEMU, *(["-name", name] if name else []), "-accel", "tcg", "-machine", "pc",
            "-m", str(memory), "-smp", str(cpus), "-nodefaults", "-display", "none", "-monitor", "none",
            "-serial", f"file:{serial}"]
    if firmware == "uefi":
        argv += ["-drive", f"if=pflash,format=raw,unit=0,readonly=on,file={OVMF_CODE}",
                 "-drive", f"if=pflash,format=raw,unit=1,file={uefi_vars}"]
    elif firmware != "bios":
        raise ValueError(f"firmware {firmware!r}: bios or uefi")
    if kernel:
        argv += ["-kernel", str(kernel), "-initrd", str(initrd), "-append", append or ""]
    argv += ["-boot", boot] if boot else []
    argv += ["-qmp", f"unix:{qmp},server=on,wait=off"] if qmp else []
    argv += ["-pidfile", str(pidfile)] if pidfile else []
    argv += ["-daemonize"] if daemonize else []
    for i, nic in enumerate(nics):
        netdev = nic.get("id", f"n{i}")
        kind, _, rest = nic["netdev"].partition(",")
        argv += ["-netdev", f"{kind},id={netdev}" + (f",{rest}" if rest else ""),
                 "-device", _opts(nic.get("model", "virtio-net-pci"), netdev=netdev, mac=nic["mac"], id=f"nic{i}",
                                  addr=_addr(nic.get("addr")), bootindex=nic.get("bootindex"))]
    for i, disk in enumerate(disks):
        drive = disk.get("id", f"d{i}")
        argv += ["-drive", f"file={disk['file']},if=none,id={drive},format={disk.get('format', 'raw')},"
                           "cache=unsafe,discard=unmap",
                 "-device", _opts(disk.get("model", "virtio-blk-pci"), drive=drive, id=f"{drive}dev",
                                  serial=disk.get("serial"), addr=_addr(disk.get("addr")),
                                  bootindex=disk.get("bootindex"))]
    return argv + list(extra)


def start_qemu(argv: list[str], name: str, timeout: float = 120) -> None:
    """Run a -daemonize'd QEMU command line; HarnessError with QEMU's complaint when it does not start."""
    res = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=timeout)
    if res.returncode != 0:
        raise HarnessError(f"{name}: QEMU failed to start: {res.stderr.strip()[-500:]}")
