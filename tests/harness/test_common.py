"""The harnesses' shared module (tests/harness/common.py): pure Python, no lab, no root."""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402


def test_lab_mac_is_stable_local_and_unicast():
    mac = common.lab_mac("cloud", "ctl01")
    assert mac == common.lab_mac("cloud", "ctl01")
    first = int(mac[:2], 16)
    assert first & 2 and not first & 1, mac  # locally administered, unicast
    assert len(mac.split(":")) == 6
    others = {common.lab_mac("cloud", "cmp01"), common.lab_mac("other", "ctl01"),
              common.lab_mac("cloud", "ctl01", "user"), common.lab_mac("cloud", "ctl01", "link")}
    assert mac not in others and len(others) == 4


def test_qemu_argv_bios_network_boot():
    argv = common.qemu_argv(memory=512, serial=Path("/tmp/c.log"), boot="n", extra=["-no-reboot"],
                            nics=[{"netdev": "tap,ifname=tq0,script=no", "model": "e1000", "mac": "02:00:00:00:00:01"}])
    assert argv[0] == common.QEMU
    assert argv[argv.index("-machine") + 1] == "pc" and argv[argv.index("-m") + 1] == "512"
    assert argv[argv.index("-serial") + 1] == "file:/tmp/c.log"
    assert argv[argv.index("-boot") + 1] == "n" and argv[-1] == "-no-reboot"
    assert argv[argv.index("-netdev") + 1] == "tap,id=n0,ifname=tq0,script=no"
    assert argv[argv.index("-device") + 1] == "e1000,netdev=n0,mac=02:00:00:00:00:01,id=nic0"
    assert not any("pflash" in a for a in argv) and "-daemonize" not in argv


def test_qemu_argv_uefi_kernel_and_disks(tmp_path):
    argv = common.qemu_argv(
        memory=1024, cpus=2, name="vm1", serial=tmp_path / "s.log", firmware="uefi", uefi_vars=tmp_path / "vars.fd",
        kernel=tmp_path / "vmlinuz", initrd=tmp_path / "initrd", append="console=ttyS0",
        qmp=tmp_path / "qmp.sock", pidfile=tmp_path / "q.pid", daemonize=True,
        nics=[{"netdev": "user", "mac": "02:00:00:00:00:02", "addr": 3},
              {"netdev": "socket,udp=127.0.0.1:1", "id": "link", "mac": "02:00:00:00:00:03"}],
        disks=[{"file": tmp_path / "root.qcow2", "format": "qcow2", "id": "root", "addr": 6},
               {"file": tmp_path / "d.img", "serial": "drbd0", "bootindex": 1}])
    drives = [argv[i + 1] for i, a in enumerate(argv) if a == "-drive"]
    assert drives[:2] == [f"if=pflash,format=raw,unit=0,readonly=on,file={common.OVMF_CODE}",
                          f"if=pflash,format=raw,unit=1,file={tmp_path / 'vars.fd'}"]
    assert drives[2] == f"file={tmp_path / 'root.qcow2'},if=none,id=root,format=qcow2,cache=unsafe,discard=unmap"
    assert drives[3].startswith(f"file={tmp_path / 'd.img'},if=none,id=d1,format=raw,")
    devices = [argv[i + 1] for i, a in enumerate(argv) if a == "-device"]
    assert devices == ["virtio-net-pci,netdev=n0,mac=02:00:00:00:00:02,id=nic0,addr=0x3",
                       "virtio-net-pci,netdev=link,mac=02:00:00:00:00:03,id=nic1",
                       "virtio-blk-pci,drive=root,id=rootdev,addr=0x6",
                       "virtio-blk-pci,drive=d1,id=d1dev,serial=drbd0,bootindex=1"]
    netdevs = [argv[i + 1] for i, a in enumerate(argv) if a == "-netdev"]
    assert netdevs == ["user,id=n0", "socket,id=link,udp=127.0.0.1:1"]
    assert argv[argv.index("-name") + 1] == "vm1" and argv[argv.index("-smp") + 1] == "2"
    assert argv[argv.index("-append") + 1] == "console=ttyS0" and "-daemonize" in argv
    assert argv[argv.index("-qmp") + 1] == f"unix:{tmp_path / 'qmp.sock'},server=on,wait=off"
    with pytest.raises(ValueError):
        common.qemu_argv(memory=1, serial=tmp_path / "s", firmware="coreboot")


def test_pid_alive_checks_the_marker_and_reaps(tmp_path):
    marker = f"{tmp_path}/"
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)", marker])
    try:
        assert common.pid_alive(proc.pid)
        assert common.pid_alive(proc.pid, marker)
        assert not common.pid_alive(proc.pid, "/nowhere/")
        common.stop([proc.pid], marker, grace=5)
        assert not common.pid_alive(proc.pid, marker)
    finally:
        proc.kill()
    done = subprocess.Popen([sys.executable, "-c", "pass"])
    deadline = time.monotonic() + 10
    while common.pid_alive(done.pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    with pytest.raises(ChildProcessError):  # an exited child of ours is reaped, not left a zombie
        os.waitpid(done.pid, os.WNOHANG)
    assert not common.pid_alive(None) and not common.pid_alive(-1)


def test_state_pid_and_inventory_files(tmp_path):
    assert common.read_state(tmp_path) is None
    common.write_state(tmp_path, {"lab": "x", "nodes": []})
    assert common.read_state(tmp_path) == {"lab": "x", "nodes": []}
    (tmp_path / "q.pid").write_text("123\n")
    assert common.read_pid(tmp_path / "q.pid") == 123 and common.read_pid(tmp_path / "none") is None
    data = {"all": {"hosts": {"n1": {"ansible_port": 2222, **common.ansible_ssh_vars("/k ey"),
                                     "disks": [{"serial": "a: b"}]}}}}
    inv = common.write_inventory(tmp_path / "inventory.yml", data, "generated")
    assert inv.read_text().startswith("# generated\nall:\n  hosts:\n    n1:\n")
    assert yaml.safe_load(inv.read_text()) == data


def test_ssh_cmd_and_logger(capsys):
    cmd = common.ssh_cmd("/s", "127.0.0.1", "true", port=2222)
    assert cmd[:1] == ["ssh"] and cmd[-4:] == ["-p", "2222", "root@127.0.0.1", "true"]
    assert cmd[cmd.index("-i") + 1] == "/s/id_ed25519" and "BatchMode=yes" in cmd
    assert "-p" not in common.ssh_cmd("/s", "10.0.0.1")
    common.logger("vm.py")("hello")
    assert capsys.readouterr().err == "vm.py: hello\n"
