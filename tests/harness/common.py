"""Pieces shared by the test harnesses: nspawn.py (container labs), vm.py (QEMU labs), bmc.py
(their BMC) and tests/test_pxe_boot.py (QEMU PXE clients).

Errors and stderr logging, commands and processes (a PID counts as ours only while its command
line holds the lab's marker), a lab's state directory and state.json, the ssh options and the
ssh_config and Ansible inventory written for a lab, MACs derived from names, and the one QEMU
command line builder. Python 3.11+, standard library only.
"""
from __future__ import annotations

import contextlib
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
    """A lab could not be brought up, looked at or taken down; the message says why."""


def logger(prefix: str):
    """A log(msg) that prints "<prefix>: msg" to stderr."""
    return lambda msg: print(f"{prefix}: {msg}", file=sys.stderr, flush=True)


def cli(log):
    """Decorator for a harness' main(argv): a HarnessError becomes one ERROR line and exit status 1."""
    def wrap(main):
        def guarded(argv: list[str] | None = None) -> int:
            try:
                return main(argv)
            except HarnessError as exc:
                log(f"ERROR: {exc}")
                return 1
        return guarded
    return wrap


# ---------------------------------------------------------------- processes
def run(cmd: list, check: bool = True, **kw) -> subprocess.CompletedProcess:
    """Run cmd, output captured as text; with check, a non-zero exit raises HarnessError."""
    p = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, **kw)
    if check and p.returncode != 0:
        raise HarnessError(f"{' '.join(map(str, cmd))} failed ({p.returncode}): {p.stderr.strip()}")
    return p


def build_output(cmd: list) -> str:
    """The last line a build script prints (the path of what it built); its stderr is left to ours."""
    p = subprocess.run([str(c) for c in cmd], stdout=subprocess.PIPE, text=True)
    lines = p.stdout.strip().splitlines()
    if p.returncode != 0 or not lines:
        raise HarnessError(f"{cmd[0]} failed (exit {p.returncode}, {len(lines)} lines of output)")
    return lines[-1].strip()


def spawn(argv: list, logfile: Path) -> subprocess.Popen:
    """Start argv in a new session, stdin from /dev/null, stdout and stderr appended to logfile."""
    with open(logfile, "ab") as out:
        return subprocess.Popen([str(a) for a in argv], stdin=subprocess.DEVNULL, stdout=out, stderr=out,
                                start_new_session=True)


def pid_alive(pid: int | None, marker: str | None = None) -> bool:
    """Whether pid runs and is no zombie (an exited child of ours is reaped here); with marker,
    also whether its command line holds marker, since a recorded PID may have been reused."""
    if not pid or pid < 0:
        return False
    try:
        if os.waitpid(pid, os.WNOHANG)[0] == pid:
            return False
    except ChildProcessError:
        pass
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        if marker and marker.encode() not in Path(f"/proc/{pid}/cmdline").read_bytes():
            return False
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] not in ("Z", "X")


def processes() -> dict[int, list[bytes]]:
    """The command line (argv) of every process but this one, by PID."""
    found = {}
    for p in Path("/proc").iterdir():
        if p.name.isdigit() and int(p.name) != os.getpid():
            try:
                found[int(p.name)] = p.joinpath("cmdline").read_bytes().split(b"\0")
            except OSError:
                pass
    return found


def read_pid(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None


def stop(pids, marker: str | None = None, grace: float = 10) -> None:
    """SIGTERM those of pids still alive, SIGKILL the ones left after grace seconds, wait up to 5 s."""
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 5)):
        alive = [p for p in pids if pid_alive(p, marker)]
        for pid in alive:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        wait_until(lambda: not any(pid_alive(p, marker) for p in alive), wait)


def wait_until(condition, timeout: float, interval: float = 0.1):
    """Call condition until it returns something true or timeout seconds have passed; its last answer."""
    deadline = time.monotonic() + timeout
    while not (answer := condition()) and time.monotonic() < deadline:
        time.sleep(interval)
    return answer


def free_port(kind: int = socket.SOCK_STREAM, exclude=()) -> int:
    """A TCP (or UDP) port of 127.0.0.1 that is free now and not in exclude."""
    for _ in range(100):
        with socket.socket(socket.AF_INET, kind) as s:
            s.bind(("127.0.0.1", 0))
            if s.getsockname()[1] not in exclude:
                return s.getsockname()[1]
    raise HarnessError("no free port")


def port_answers(host: str, port: int, timeout: float = 1, banner: bytes = b"") -> bool:
    """Whether host:port accepts a connection (and, with banner, starts by sending it)."""
    try:
        with socket.create_connection((host, port), timeout=timeout) as s:
            return not banner or s.recv(len(banner)) == banner
    except OSError:
        return False


# ---------------------------------------------------------------- state
def state_dir(lab: str) -> Path:
    return STATE_ROOT / lab


def read_state(sdir: Path) -> dict | None:
    """The lab's state.json, None when there is none."""
    path = sdir / "state.json"
    return json.loads(path.read_text()) if path.exists() else None


def write_state(sdir: Path, record: dict) -> None:
    """Replace state.json in one step: a reader never sees half of it."""
    tmp = sdir / "state.json.tmp"
    tmp.write_text(json.dumps(record, indent=2) + "\n")
    tmp.replace(sdir / "state.json")


def read_spec(path: str | os.PathLike) -> dict:
    """A spec file: JSON, or YAML if it is not JSON and PyYAML can be imported."""
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
ANSIBLE_SSH_OPTS = ["-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
                    "-o", "LogLevel=ERROR", "-o", "IdentitiesOnly=yes"]
SSH_OPTS = [*ANSIBLE_SSH_OPTS, "-o", "BatchMode=yes", "-o", "ConnectTimeout=5"]


def ensure_key(sdir: Path) -> Path:
    """The lab's ssh key, sdir/id_ed25519, made on first use."""
    key = sdir / "id_ed25519"
    if not key.exists():
        run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", f"kickstack-{sdir.name}", "-f", key])
    return key


def ssh_cmd(sdir: Path | str, host: str, *cmd: str, port: int | None = None) -> list[str]:
    """ssh argv running cmd as root on host (port: another than 22) with the lab's key."""
    return ["ssh", *SSH_OPTS, "-i", str(Path(sdir) / "id_ed25519"), *(["-p", str(port)] if port else []),
            f"root@{host}", *cmd]


def ansible_ssh_vars(key: Path | str) -> dict:
    return {"ansible_user": "root", "ansible_ssh_private_key_file": str(key),
            "ansible_python_interpreter": "/usr/bin/python3", "ansible_ssh_common_args": " ".join(ANSIBLE_SSH_OPTS)}


def to_yaml(data: dict, indent: int = 0) -> list[str]:
    """Block YAML for nested dicts; any other value is written as JSON, which YAML reads the same."""
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
    """A file for `ssh -F`: one block per (name, address, port or None)."""
    path.write_text("\n".join(
        f"Host {name}\n  HostName {address}\n" + (f"  Port {port}\n" if port else "") + f"  User root\n"
        f"  IdentityFile {key}\n  IdentitiesOnly yes\n  StrictHostKeyChecking no\n  UserKnownHostsFile /dev/null\n"
        "  LogLevel ERROR\n" for name, address, port in hosts))


def lab_mac(lab: str, node: str, nic: str | None = None) -> str:
    """The same MAC for the same names: 02 (locally administered, unicast), then 5 hash bytes."""
    digest = hashlib.sha256("/".join([lab, node] + ([nic] if nic else [])).encode()).digest()
    return "02:" + ":".join(f"{b:02x}" for b in digest[:5])


# ---------------------------------------------------------------- QEMU
def _device(model: str, **values) -> str:
    """"model,key=value,..." without the values that are None (an int addr as a hex PCI slot)."""
    if values.get("addr") is not None:
        values["addr"] = f"{values['addr']:#x}"
    return ",".join([model] + [f"{k}={v}" for k, v in values.items() if v is not None])


def qemu_argv(*, memory: int, serial: Path, cpus: int = 1, name: str | None = None, firmware: str = "bios",
              uefi_vars: Path | None = None, kernel: Path | None = None, initrd: Path | None = None,
              append: str = "", nics: list[dict] = (), disks: list[dict] = (), boot: str | None = None,
              qmp: Path | None = None, pidfile: Path | None = None, daemonize: bool = False,
              extra: list[str] = ()) -> list[str]:
    """argv of a headless TCG guest (machine pc), its console in the file serial.

    firmware: bios (SeaBIOS) or uefi (OVMF, uefi_vars its own copy of OVMF_VARS). nics: dicts of
    netdev (the backend, "user,..." without id), mac and optionally model (virtio-net-pci), id
    (n<i>), addr (PCI slot), bootindex; disks: file and optionally format (raw), model
    (virtio-blk-pci), id (d<i>), serial, addr, bootindex. boot: -boot's value; extra: appended.
    """
    argv = [QEMU, *(["-name", name] if name else []), "-accel", "tcg", "-machine", "pc", "-m", str(memory),
            "-smp", str(cpus), "-nodefaults", "-display", "none", "-monitor", "none", "-serial", f"file:{serial}"]
    if firmware not in ("bios", "uefi"):
        raise ValueError(f"firmware {firmware!r}: bios or uefi")
    if firmware == "uefi":
        argv += ["-drive", f"if=pflash,format=raw,unit=0,readonly=on,file={OVMF_CODE}",
                 "-drive", f"if=pflash,format=raw,unit=1,file={uefi_vars}"]
    if kernel:
        argv += ["-kernel", str(kernel), "-initrd", str(initrd), "-append", append]
    for flag, value in (("-boot", boot), ("-qmp", qmp and f"unix:{qmp},server=on,wait=off"), ("-pidfile", pidfile)):
        argv += [flag, str(value)] if value else []
    argv += ["-daemonize"] if daemonize else []
    for i, nic in enumerate(nics):
        netdev, (kind, _, rest) = nic.get("id", f"n{i}"), nic["netdev"].partition(",")
        argv += ["-netdev", ",".join([kind, f"id={netdev}"] + ([rest] if rest else [])),
                 "-device", _device(nic.get("model", "virtio-net-pci"), netdev=netdev, mac=nic["mac"], id=f"nic{i}",
                                    addr=nic.get("addr"), bootindex=nic.get("bootindex"))]
    for i, disk in enumerate(disks):
        drive = disk.get("id", f"d{i}")
        argv += ["-drive", f"file={disk['file']},if=none,id={drive},format={disk.get('format', 'raw')},"
                           "cache=unsafe,discard=unmap",
                 "-device", _device(disk.get("model", "virtio-blk-pci"), drive=drive, id=f"{drive}dev",
                                    serial=disk.get("serial"), addr=disk.get("addr"), bootindex=disk.get("bootindex"))]
    return argv + list(extra)


def start_qemu(argv: list[str], name: str, timeout: float = 120) -> None:
    """Run a -daemonize QEMU command line; HarnessError with QEMU's complaint if it does not start."""
    res = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=timeout)
    if res.returncode != 0:
        raise HarnessError(f"{name}: QEMU failed to start: {res.stderr.strip()[-500:]}")
