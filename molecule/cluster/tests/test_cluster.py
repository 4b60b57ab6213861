"""The cluster tier, live: corosync 3 + pacemaker, dlm + lvmlockd, a shared VG on DRBD.

The last test takes stor02 out of the cluster (a clean stop of its stack: LV deactivated,
lockspace stopped, pacemaker and corosync stopped) and checks that stor01 stays quorate
(two_node) and that its LV and the VG's lock manager keep working; then it brings stor02 back.
"""
import os
import re
import time

import pytest
import testinfra

VG = "vg_shared"
LV = "lv_test"
NODES = ("stor01", "stor02")


def _peer_host(name):
    inventory = os.environ["MOLECULE_INVENTORY_FILE"]
    return testinfra.get_host(f"ansible://{name}?ansible_inventory={inventory}")


def _wait(check, timeout=240, step=5):
    deadline = time.monotonic() + timeout
    while True:
        ok, detail = check()
        if ok:
            return detail
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout} s: {detail}")
        time.sleep(step)


def test_corosync_quorate_with_both_nodes(host):
    out = host.check_output("corosync-quorumtool -s")
    assert re.search(r"Quorate:\s+Yes", out), out
    assert re.search(r"Total votes:\s+2", out), out
    assert "2Node" in out, out
    for name in NODES:
        assert re.search(rf"^\s+\d+\s+1\s+{name}\b", out, re.M), out


def test_corosync_uses_knet_with_crypto(host):
    conf = host.file("/etc/corosync/corosync.conf").content_string
    assert re.search(r"^\s*transport:\s*knet$", conf, re.M)
    assert re.search(r"^\s*crypto_cipher:\s*aes256$", conf, re.M)
    key = host.file("/etc/corosync/authkey")
    assert key.mode == 0o400 and key.user == "root" and key.size == 256


def test_pacemaker_online(host):
    out = host.check_output("crm_mon -1")
    assert re.search(r"Online: \[ stor01 stor02 \]", out), out
    assert "partition with quorum" in out, out


def test_dlm_and_lvmlockd_run(host):
    assert host.process.filter(comm="dlm_controld"), "dlm_controld not running"
    assert host.process.filter(comm="lvmlockd"), "lvmlockd not running"
    out = host.check_output("crm_mon -1 -r")
    assert re.search(r"dlm-clone \[dlm\]:\s*\n\s*\* Started: \[ stor01 stor02 \]", out), out
    assert re.search(r"lvmlockd-clone \[lvmlockd\]:\s*\n\s*\* Started: \[ stor01 stor02 \]", out), out


def test_shared_vg_with_dlm_locks(host):
    out = host.check_output(f"vgs --noheadings -o vg_name,lock_type {VG}")
    assert out.split() == [VG, "dlm"], out
    assert f"lvm_{VG}" in host.check_output("lvmlockctl --info")


def test_lv_active_shared(host):
    out = host.check_output(f"lvs --noheadings -o lv_active_locally,lv_active_exclusively {VG}/{LV}")
    assert out.strip() == "active locally", f"{LV} is not active shared: {out!r}"


def test_survivor_stays_quorate_and_lv_usable(host):
    if host.backend.get_hostname() != "stor01":
        pytest.skip("run once, from stor01 (the survivor)")
    peer = _peer_host("stor02")
    try:
        peer.run_expect([0], f"lvchange -an {VG}/{LV} && vgchange --lockstop {VG}")
        peer.run_expect([0], "systemctl stop pacemaker && systemctl stop corosync")

        def gone():
            out = host.check_output("corosync-quorumtool -s")
            return bool(re.search(r"Total votes:\s+1\b", out)), out

        out = _wait(gone, timeout=120)
        assert re.search(r"Quorate:\s+Yes", out), f"survivor lost quorum: {out}"
        mon = host.check_output("crm_mon -1")
        assert "OFFLINE: [ stor02 ]" in mon and "partition with quorum" in mon, mon

        # The LV keeps serving I/O, and the lock manager still grants metadata changes.
        host.run_expect([0], "dd if=/dev/urandom of=/root/probe bs=64k count=16 status=none")
        host.run_expect([0], f"dd if=/root/probe of=/dev/{VG}/{LV} bs=64k oflag=direct status=none")
        host.run_expect([0], f"dd if=/dev/{VG}/{LV} bs=64k count=16 iflag=direct status=none | cmp - /root/probe")
        host.run_expect([0], f"lvcreate --activate n --zero n --yes -n lv_probe -L 8m {VG}")
        host.run_expect([0], f"lvremove --yes {VG}/lv_probe")
    finally:
        peer.run("systemctl start corosync pacemaker")

        def back():
            res = peer.run("lvmlockctl --info")
            return res.rc == 0, res.stderr

        _wait(back, timeout=300)
        peer.run_expect([0], f"vgchange --lockstart {VG} && lvchange -asy {VG}/{LV}")
