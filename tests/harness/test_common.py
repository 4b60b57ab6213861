"""The harnesses' shared module (tests/harness/common.py): pure Python, no lab, no root."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402


def options(argv: list[str], flag: str) -> list[str]:
    return [argv[i + 1] for i, a in enumerate(argv) if a == flag]


def test_lab_mac_is_stable_local_and_unicast():
    mac = common.lab_mac("cloud", "ctl01")
    assert mac == common.lab_mac("cloud", "ctl01") and len(mac.split(":")) == 6
    assert int(mac[:2], 16) & 3 == 2, mac  # locally administered, unicast
    others = {common.lab_mac("cloud", "cmp01"), common.lab_mac("other", "ctl01"),
              common.lab_mac("cloud", "ctl01", "user"), common.lab_mac("cloud", "ctl01", "link")}
    assert mac not in others and len(others) == 4


def test_qemu_argv_bios_network_boot():
    argv = common.qemu_argv(memory=512, serial=Path("/tmp/c.log"), boot="n", extra=["-no-reboot"],
                            nics=[{"netdev": "tap,ifname=tq0,script=no", "model": "e1000", "mac": "02:00:00:00:00:01"}])
    assert argv == [common.QEMU, "-accel", "tcg", "-machine", "pc", "-m", "512", "-smp", "1", "-nodefaults",
                    "-display", "none", "-monitor", "none", "-serial", "file:/tmp/c.log", "-boot", "n",
                    "-netdev", "tap,id=n0,ifname=tq0,script=no",
                    "-device", "e1000,netdev=n0,mac=02:00:00:00:00:01,id=nic0", "-no-reboot"]


def test_qemu_argv_uefi_kernel_and_disks(tmp_path):
    argv = common.qemu_argv(
        memory=1024, cpus=2, name="vm1", serial=tmp_path / "s.log", firmware="uefi", uefi_vars=tmp_path / "v.fd",
        kernel=tmp_path / "vmlinuz", initrd=tmp_path / "initrd", append="console=ttyS0",
        qmp=tmp_path / "qmp.sock", pidfile=tmp_path / "q.pid", daemonize=True,
        nics=[{"netdev": "user", "mac": "02:00:00:00:00:02", "addr": 3},
              {"netdev": "socket,udp=127.0.0.1:1", "id": "link", "mac": "02:00:00:00:00:03"}],
        disks=[{"file": tmp_path / "root.qcow2", "format": "qcow2", "id": "root", "addr": 6},
               {"file": tmp_path / "d.img", "serial": "drbd0", "bootindex": 1}])
    assert options(argv, "-drive") == [
        f"if=pflash,format=raw,unit=0,readonly=on,file={common.OVMF_CODE}",
        f"if=pflash,format=raw,unit=1,file={tmp_path}/v.fd",
        f"file={tmp_path}/root.qcow2,if=none,id=root,format=qcow2,cache=unsafe,discard=unmap",
        f"file={tmp_path}/d.img,if=none,id=d1,format=raw,cache=unsafe,discard=unmap"]
    assert options(argv, "-device") == ["virtio-net-pci,netdev=n0,mac=02:00:00:00:00:02,id=nic0,addr=0x3",
                                        "virtio-net-pci,netdev=link,mac=02:00:00:00:00:03,id=nic1",
                                        "virtio-blk-pci,drive=root,id=rootdev,addr=0x6",
                                        "virtio-blk-pci,drive=d1,id=d1dev,serial=drbd0,bootindex=1"]
    assert options(argv, "-netdev") == ["user,id=n0", "socket,id=link,udp=127.0.0.1:1"]
    assert options(argv, "-name") == ["vm1"] and options(argv, "-smp") == ["2"] and "-daemonize" in argv
    assert options(argv, "-append") == ["console=ttyS0"] and options(argv, "-pidfile") == [f"{tmp_path}/q.pid"]
    assert options(argv, "-qmp") == [f"unix:{tmp_path}/qmp.sock,server=on,wait=off"]
    with pytest.raises(ValueError):
        common.qemu_argv(memory=1, serial=tmp_path / "s", firmware="coreboot")


def test_pid_alive_checks_the_marker_and_reaps(tmp_path):
    marker = f"{tmp_path}/"
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)", marker])
    try:
        # Popen returns once exec has begun; the kernel publishes the new command line a moment
        # later, so a check made at once can still see an empty one.
        assert common.wait_until(lambda: common.pid_alive(proc.pid, marker), 10)
        assert common.pid_alive(proc.pid)
        assert not common.pid_alive(proc.pid, "/nowhere/")
        common.stop([proc.pid], marker, grace=5)
        assert not common.pid_alive(proc.pid, marker)
    finally:
        proc.kill()
    done = subprocess.Popen([sys.executable, "-c", "pass"])
    assert common.wait_until(lambda: not common.pid_alive(done.pid), 10)
    with pytest.raises(ChildProcessError):  # an exited child of ours is reaped, not left a zombie
        os.waitpid(done.pid, os.WNOHANG)
    assert not common.pid_alive(None) and not common.pid_alive(-1)


def test_state_pid_inventory_ssh_and_log(tmp_path, capsys):
    assert common.read_state(tmp_path) is None
    common.write_state(tmp_path, {"lab": "x", "nodes": []})
    assert common.read_state(tmp_path) == {"lab": "x", "nodes": []}
    (tmp_path / "q.pid").write_text("123\n")
    assert common.read_pid(tmp_path / "q.pid") == 123 and common.read_pid(tmp_path / "none") is None
    data = {"all": {"hosts": {"n1": {"ansible_port": 2222, **common.ansible_ssh_vars("/k ey"), "x": [{"a": "b: c"}]}}}}
    inv = common.write_inventory(tmp_path / "inventory.yml", data, "generated")
    assert inv.read_text().startswith("# generated\nall:\n  hosts:\n    n1:\n")
    assert yaml.safe_load(inv.read_text()) == data
    cmd = common.ssh_cmd("/s", "127.0.0.1", "true", port=2222)
    assert cmd[0] == "ssh" and cmd[-4:] == ["-p", "2222", "root@127.0.0.1", "true"] and "BatchMode=yes" in cmd
    assert options(cmd, "-i") == ["/s/id_ed25519"] and "-p" not in common.ssh_cmd("/s", "10.0.0.1")
    common.logger("vm.py")("hello")
    assert capsys.readouterr().err == "vm.py: hello\n"
