"""End-to-end check of the QEMU harness (tests/harness/vm.py + scripts/build-vm-image).

Builds (or reuses) the VM image, starts two TCG VMs joined by a private link, checks ssh,
the in-kernel DRBD 8.4.11 module, the data disk and the link, then checks that `down`
leaves no qemu process and no state behind. Needs root (debootstrap, chroot); takes
about 1.5 min with a cached image, plus ~2 min for a cold image build.
Set KICKSTACK_SKIP_VM=1 to skip it.
"""
from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402
import vm  # noqa: E402

LAB = "harness-test"

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root: the VM image is built with debootstrap + chroot"),
    pytest.mark.skipif(os.environ.get("KICKSTACK_SKIP_VM") == "1", reason="KICKSTACK_SKIP_VM=1"),
]

SPEC = {
    "lab": LAB,
    "nodes": [
        # no ssh_port: the harness picks free ones
        {"name": "h01", "link_ip": "10.60.9.1/24", "disks": [{"serial": "drbd0", "size": "1G"}]},
        {"name": "h02", "link_ip": "10.60.9.2/24", "disks": [{"serial": "drbd0", "size": "1G"}]},
    ],
}


def live_qemu_pids(sdir: Path) -> list[int]:
    """qemu processes of the lab that are not zombies (PID 1 reaps daemonized ones late)."""
    return [pid for pid in vm.lab_pids(sdir) if common.pid_alive(pid)]


@pytest.fixture(scope="module")
def lab():
    vm.down(LAB)  # leftovers of an interrupted run
    t0 = time.monotonic()
    st = vm.up(vm.normalize_spec(SPEC))
    print(f"\nVMs up with ssh after {time.monotonic() - t0:.0f} s (includes the image build if not cached)")
    yield st
    vm.down(LAB)


def ssh(st: dict, name: str, command: str, timeout: float = 120):
    node = next(n for n in st["nodes"] if n["name"] == name)
    return vm.run_ssh(vm.state_dir(st["lab"]), node["ssh_port"], command, timeout=timeout)


def test_ssh_reaches_both(lab):
    for name in ("h01", "h02"):
        res = ssh(lab, name, "hostname")
        assert res.returncode == 0, res.stderr
        assert res.stdout.strip() == name


def test_inventory_written(lab):
    inv = (vm.state_dir(LAB) / "inventory.yml").read_text()
    for n in lab["nodes"]:
        assert f"ansible_port: {n['ssh_port']}" in inv
    assert 'ansible_python_interpreter: "/usr/bin/python3"' in inv


def test_drbd_module_is_8_4_11(lab):
    for name in ("h01", "h02"):
        res = ssh(lab, name, "modprobe drbd && cat /proc/drbd")
        assert res.returncode == 0, res.stderr
        assert res.stdout.startswith("version: 8.4.11"), res.stdout


def test_data_disk_has_serial(lab):
    res = ssh(lab, "h01", "readlink -f /dev/disk/by-id/virtio-drbd0 && blockdev --getsize64 /dev/vdb")
    assert res.returncode == 0, res.stderr
    assert res.stdout.split() == ["/dev/vdb", str(1 << 30)]


def test_private_link(lab):
    res = ssh(lab, "h01", "ping -c 3 -W 5 10.60.9.2")
    assert res.returncode == 0, res.stdout + res.stderr
    res = ssh(lab, "h02", "ping -c 3 -W 5 h01")  # /etc/hosts names the link addresses
    assert res.returncode == 0, res.stdout + res.stderr


def test_down_leaves_nothing(lab):
    sdir = vm.state_dir(LAB)
    assert live_qemu_pids(sdir), "the VMs should be running before down"
    vm.down(LAB)
    assert not live_qemu_pids(sdir)
    assert not sdir.exists()
    vm.down(LAB)  # twice is fine
    assert vm.status(LAB)["up"] is False
