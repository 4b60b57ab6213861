"""The harness' BMC with a real VM: the stock fence_redfish in the guest, power off/on, a panic.

One small TCG VM with a ``bmc`` in its spec. From inside the guest, fence_redfish (fence-agents
4.12.1, baked into the image) reads the node's power state through 10.0.2.100:443 (QEMU's
guestfwd and the relay); then ``vm.py power off`` must silence ssh and ``vm.py power on`` boot
the guest again with the same kernel command line; at last a kernel panic must end QEMU (the
pvpanic device and -action panic=exit-failure) instead of looping. About 2 min with a cached
image. Needs root (the image build); KICKSTACK_SKIP_VM=1 skips it.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bmc  # noqa: E402
import common  # noqa: E402
import vm  # noqa: E402

LAB = "bmc-test-vm"
NODE = "bmc01"
USER = "kickstack"
PASSWORD = "vm-test-Pa55word"
VM_PY = Path(__file__).resolve().parent / "vm.py"

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root: the VM image is built with debootstrap + chroot"),
    pytest.mark.skipif(os.environ.get("KICKSTACK_SKIP_VM") == "1", reason="KICKSTACK_SKIP_VM=1"),
]

SPEC = {"lab": LAB, "memory": 768, "nodes": [{"name": NODE}], "bmc": {"username": USER, "password": PASSWORD}}


@pytest.fixture(scope="module")
def lab():
    vm.down(LAB)  # leftovers of an interrupted run
    try:
        t0 = time.monotonic()
        st = vm.up(vm.normalize_spec(SPEC))
        print(f"\nVM up with ssh after {time.monotonic() - t0:.0f} s")
        yield st
    finally:
        vm.down(LAB)


def ssh(st, command, timeout=120):
    return vm.run_ssh(vm.state_dir(LAB), st["nodes"][0]["ssh_port"], command, timeout=timeout)


def power(action):
    res = subprocess.run([sys.executable, str(VM_PY), "power", "--lab", LAB, NODE, action, "--json"],
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    return json.loads(res.stdout)


def relays(sdir):
    """Live relay processes of the lab (one per guest connection, gone when it closes)."""
    argvs = common.processes()
    return [pid for pid in vm.lab_pids(sdir) if b"relay" in argvs.get(pid, []) and common.pid_alive(pid, f"{sdir}/")]


def fence(st, *args):
    return ssh(st, f"fence_redfish --ip {bmc.GUEST_ADDRESS} --username {USER} --password {PASSWORD}"
                   f" --ssl-insecure {' '.join(args)}")


def test_fence_redfish_in_the_guest_reads_power_state(lab):
    sdir = vm.state_dir(LAB)
    uri = lab["nodes"][0]["bmc_systems_uri"]
    assert uri == f"/redfish/v1/Systems/{NODE}"
    res = fence(lab, "--systems-uri", uri, "-o", "status")
    assert res.returncode == 0, res.stdout + res.stderr
    assert res.stdout.strip() == "Status: ON"
    # without --systems-uri the agent finds the system through /redfish/v1 -> Systems -> Members
    res = fence(lab, "-o", "status")
    assert res.returncode == 0 and res.stdout.strip() == "Status: ON", res.stdout + res.stderr
    res = ssh(lab, f"fence_redfish --ip {bmc.GUEST_ADDRESS} --username {USER} --password wrong"
                   f" --ssl-insecure --systems-uri {uri} -o status")
    assert res.returncode != 0
    entries = [json.loads(line) for line in (sdir / "bmc.log").read_text().splitlines()]
    guest = [e for e in entries if e["client"] == f"{NODE} (guest)"]
    assert any(e["path"] == uri and e["status"] == 200 and e["power"] == "On" for e in guest), entries
    assert any(e["path"] == "/redfish/v1/Systems" for e in guest)
    assert any(e["status"] == 401 for e in guest)
    assert PASSWORD not in (sdir / "bmc.log").read_text()
    assert common.wait_until(lambda: not relays(sdir), 10, 0.5), "relay processes outlive their connections"


def test_restrict_still_blocks_other_addresses(lab):
    # restrict=on: the guest reaches nothing but the explicit forwards; without it, 10.0.2.2 is
    # the host's loopback, where the BMC itself listens
    probe = "timeout 10 bash -c 'echo > /dev/tcp/{}/{}' && echo open || echo closed"
    res = ssh(lab, probe.format("10.0.2.2", lab["bmc"]["host_port"]))
    assert res.stdout.strip() == "closed", res.stdout + res.stderr
    res = ssh(lab, probe.format(bmc.GUEST_ADDRESS, bmc.GUEST_PORT))
    assert res.stdout.strip() == "open", res.stdout + res.stderr


def test_power_off_and_on(lab):
    sdir = vm.state_dir(LAB)
    before = ssh(lab, "cat /proc/sys/kernel/random/boot_id /proc/cmdline")
    assert before.returncode == 0
    boot_id, cmdline = before.stdout.split("\n", 1)

    assert power("off")["power"] == "Off"
    t0 = time.monotonic()
    res = ssh(lab, "true", timeout=30)
    assert res.returncode != 0, "ssh still answers a powered-off VM"
    print(f"\nssh failed {time.monotonic() - t0:.1f} s after power off")
    assert power("status") == {"node": NODE, "power": "Off", "qemu": "paused"}
    assert vm.status(LAB)["nodes"][0]["running"]  # QEMU itself is still there

    t0 = time.monotonic()
    on = subprocess.run([sys.executable, str(VM_PY), "power", "--lab", LAB, NODE, "on", "--wait", "--json"],
                        capture_output=True, text=True, timeout=900)
    assert on.returncode == 0, on.stderr[-3000:]
    print(f"power on -> ssh and boot finished after {time.monotonic() - t0:.0f} s "
          f"(harness: {json.loads(on.stdout)['boot_seconds']} s)")
    after = ssh(lab, "cat /proc/sys/kernel/random/boot_id /proc/cmdline")
    assert after.returncode == 0, after.stderr
    new_boot_id, new_cmdline = after.stdout.split("\n", 1)
    assert new_boot_id != boot_id, "the guest did not boot again"
    assert new_cmdline == cmdline, "a reset must boot the same kernel command line"
    assert f"kickstack.hostname={NODE}" in new_cmdline
    res = fence(lab, "--systems-uri", f"/redfish/v1/Systems/{NODE}", "-o", "status")
    assert res.stdout.strip() == "Status: ON", res.stdout + res.stderr
    cli = [json.loads(line) for line in (sdir / "bmc.log").read_text().splitlines()
           if '"CLI"' in line]
    assert [e["action"] for e in cli] == ["off", "on"]


def test_guest_panic_ends_qemu(lab):
    sdir = vm.state_dir(LAB)
    res = ssh(lab, "test -d /sys/module/pvpanic && ls /sys/bus/*/drivers | grep -c pvpanic")
    assert res.returncode == 0, "the guest kernel has no pvpanic driver bound: " + res.stdout + res.stderr
    pid = vm.read_pid(sdir / NODE / "qemu.pid")
    ssh(lab, "sync; echo c > /proc/sysrq-trigger", timeout=30)
    assert common.wait_until(lambda: not common.pid_alive(pid, f"{sdir}/"), 120, 1), \
        "QEMU still runs after a guest panic"
    assert "Kernel panic" in (sdir / NODE / "serial.log").read_text(errors="replace")
    assert power("status")["power"] == "Off"
