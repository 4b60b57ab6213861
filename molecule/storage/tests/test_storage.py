"""Verify the storage plays on the two VMs: DRBD 8.4 dual-primary, LVM on DRBD, failover.

Run by molecule's testinfra verifier (each test once per host). The failover test drives both
nodes, so it runs from stor01's turn only and reaches stor02 through the same inventory.
"""
import os
import re
import time

import pytest
import testinfra

RES = "r0"
VG = "vg_shared"
LV = "lv_data"
BACKING = "/dev/vdb"
MiB = 1 << 20


def _me(host):
    return host.backend.get_hostname()


def _states(host, what):
    with host.sudo():
        return re.findall(r"[A-Za-z]+", host.check_output(f"drbdadm {what} {RES}"))


def _wait(predicate, timeout=180, step=3):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():
            return True
        time.sleep(step)
    return predicate()


def _peer(host):
    inventory = os.environ.get("MOLECULE_INVENTORY_FILE") or os.environ["KICKSTACK_STORAGE_INVENTORY"]
    peer = "stor02" if _me(host) == "stor01" else "stor01"
    return testinfra.get_host(f"ansible://{peer}", ansible_inventory=inventory)


def _sha(host, offset_mib, size_mib=4):
    with host.sudo():
        return host.check_output(
            f"dd if=/dev/{VG}/{LV} bs=1M skip={offset_mib} count={size_mib} iflag=direct status=none | sha256sum"
        ).split()[0]


def test_drbd_connected_primary_primary_uptodate(host):
    assert _wait(lambda: _states(host, "dstate") == ["UpToDate", "UpToDate"]), _states(host, "dstate")
    assert _states(host, "cstate") == ["Connected"]
    assert _states(host, "role") == ["Primary", "Primary"]
    content = host.file("/proc/drbd").content_string
    assert content.startswith("version: 8.4.11")
    assert "cs:Connected ro:Primary/Primary ds:UpToDate/UpToDate C" in content


def test_resource_file_is_private(host):
    res = host.file(f"/etc/drbd.d/{RES}.res")
    assert res.mode == 0o600 and res.user == "root"


def test_pvs_sees_drbd_not_backing_device(host):
    with host.sudo():
        pvs = host.check_output("pvs --noheadings -o pv_name,vg_name").split()
        # The backing device carries the same PV label, LVM must not look at it.
        direct = host.run(f"pvs {BACKING}")
    assert "/dev/drbd0" in pvs and VG in pvs
    assert BACKING not in pvs
    assert direct.rc != 0
    assert host.file("/etc/lvm/cache/.cache").exists is False


def test_lv_active(host):
    with host.sudo():
        out = host.check_output(f"lvs --noheadings -o lv_name,lv_active {VG}")
    assert re.search(rf"^\s*{LV}\s+active\s*$", out, re.M), out


def test_failover_keeps_data_and_resyncs_without_split_brain(host):
    if _me(host) != "stor01":
        pytest.skip("driven from stor01")
    a, b = host, _peer(host)
    with a.sudo():
        a.check_output(f"dd if=/dev/urandom of=/dev/{VG}/{LV} bs=1M count=4 oflag=direct status=none")
    written = _sha(a, 0)
    assert _sha(b, 0) == written, "a write on one primary is not visible on the other"

    # stor01 goes away: LVs off, resource down (as a crashed or powered-off node looks to its peer).
    with a.sudo():
        a.check_output(f"vgchange -an {VG}")
        a.check_output(f"drbdadm down {RES}")
    try:
        assert _wait(lambda: _states(b, "cstate") != ["Connected"], timeout=60)
        assert _states(b, "role")[0] == "Primary"
        assert _states(b, "dstate")[0] == "UpToDate"
        # The survivor keeps the data and keeps working.
        assert _sha(b, 0) == written
        with b.sudo():
            b.check_output(f"dd if=/dev/urandom of=/dev/{VG}/{LV} bs=1M seek=4 count=4 oflag=direct status=none")
        survivor_wrote = _sha(b, 4)
    finally:
        # stor01 returns: it resyncs from stor02 and both are primary again.
        with a.sudo():
            a.check_output(f"drbdadm up {RES}")
    assert _wait(lambda: _states(a, "dstate") == ["UpToDate", "UpToDate"], timeout=300), _states(a, "dstate")
    assert _states(a, "cstate") == ["Connected"]
    with a.sudo():
        a.check_output(f"drbdadm primary {RES}")
        a.check_output(f"vgchange -ay {VG}")
        kernel = a.check_output("dmesg")
    assert "Split-Brain" not in kernel and "split-brain" not in kernel
    assert _states(a, "role") == ["Primary", "Primary"]
    assert _sha(a, 0) == written and _sha(a, 4) == survivor_wrote
