"""The cluster tier, live: corosync 3 + pacemaker with fencing, dlm + lvmlockd, a shared VG on DRBD.

A stonith parameter changed by hand is put back by the next run of cluster.yml (nothing else
changes, the BMC password never appears even at -vvv --diff). The last test cuts the
replication link (corosync and DRBD) at both ends while both nodes run, as a pulled cable
would: both race to fence, the fence delay lets stor01 win, so exactly one node (stor02) is
fenced, once, through fence_redfish (pacemaker's, dlm's and DRBD's requests end in one reboot);
stor01 stays quorate and keeps its LV usable; then the cable goes back, and stor02, back from
its reboot by itself, rejoins, resyncs without split brain and gets its LV back from
pacemaker. The fence race's timeline (fence requests, BMC calls, DRBD
handshake) is written to link-cut.log in the lab's state directory (and to
$KICKSTACK_DIAG_DIR when set), and printed when a wait times out. (The harness can also freeze
a node, a hang rather than a split: ``vm.py power --lab ... stor02 freeze``.)
"""
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
import testinfra

REPO = Path(__file__).resolve().parents[3]
VM_PY = REPO / "tests" / "harness" / "vm.py"
# The harness lab molecule created for this scenario (create.yml: molecule-<scenario name>).
LAB = f"molecule-{os.environ.get('MOLECULE_SCENARIO_NAME', 'cluster')}"
RES = "r0"
VG = "vg_shared"
LV = "lv_test"
NODES = ("stor01", "stor02")


def _peer_host(name):
    inventory = os.environ["MOLECULE_INVENTORY_FILE"]
    return testinfra.get_host(f"ansible://{name}?ansible_inventory={inventory}")


DIAG = ("crm_mon -1 --show-detail -rf; corosync-quorumtool -s; drbdadm status; cat /proc/drbd; "
        "journalctl --no-pager -o short-precise -n 60 -u corosync -u pacemaker; "
        "journalctl --no-pager -o short-precise -k -n 300 | grep -Ei 'drbd|dlm' | tail -n 30")


def _state(hosts):
    """What explains a timeout: each reachable node's pacemaker, quorum, DRBD and journal tail."""
    out = []
    for node in hosts:
        try:
            res = node.run(f"( {DIAG} ) 2>&1")
            out.append(f"==== {node.backend.get_hostname()}\n{res.stdout}")
        except Exception as exc:  # noqa: BLE001 - an unreachable node is part of the picture
            out.append(f"==== {node.backend.get_hostname()}: unreachable ({exc})")
    return "\n".join(out)


def _wait(check, timeout=240, step=5, hosts=()):
    deadline = time.monotonic() + timeout
    while True:
        ok, detail = check()
        if ok:
            return detail
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout} s: {detail}\n{_state(hosts)}")
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
    # lvs' lv_active_exclusively is not reliable under lvmlockd: read the lock lvmlockd holds.
    uuid = host.check_output(f"lvs --noheadings -o lv_uuid {VG}/{LV}").strip()
    assert host.check_output(f"lvs --noheadings -o lv_active_locally {VG}/{LV}").strip() == "active locally"
    locks = host.check_output("lvmlockctl --info")
    assert f"LK LV sh {uuid}" in locks, locks


def test_stonith_devices_run_fence_redfish_against_the_bmc(host):
    out = host.check_output("crm_mon -1 -r")
    for node in NODES:
        assert re.search(rf"fence-{node}\s+\(stonith:fence_redfish\):\s+Started", out), out
    assert "Failed" not in out, out
    # The devices' monitor operations reached the harness' BMC (one Redfish system per VM).
    log = _bmc_log()
    for node in NODES:
        assert f"/redfish/v1/Systems/{node}" in log, log[-2000:]


def _stonith_param(host, device, key):
    return host.run(f"crm_resource --resource {device} --get-parameter {key}").stdout.strip()


def test_fence_race_delay_favours_the_first_node(host):
    # On a split the device that fences stor01 waits, so stor01 shoots first and survives.
    assert _stonith_param(host, "fence-stor01", "pcmk_delay_base") == "10s"
    assert _stonith_param(host, "fence-stor02", "pcmk_delay_base") == "0s"


def test_lvs_activated_by_pacemaker(host):
    out = host.check_output("crm_mon -1 -r")
    assert re.search(rf"{VG}-{LV}-clone \[{VG}-{LV}\]:\s*\n\s*\* Started: \[ stor01 stor02 \]", out), out


def _vm(*args):
    res = subprocess.run([sys.executable, VM_PY, *args], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    return res.stdout.strip()


def _vm_power(node, action):
    return _vm("power", "--lab", LAB, node, action)


def _vm_link(node, state):
    return _vm("link", "--lab", LAB, node, state)


def _state_dir():
    return Path(os.environ.get("KICKSTACK_STATE_ROOT", "/var/tmp/kickstack")) / LAB


def _bmc_log():
    path = _state_dir() / "bmc.log"
    return path.read_text() if path.exists() else ""


def _bmc_password():
    return json.loads((_state_dir() / "bmc.json").read_text())["password"]


def test_rerun_corrects_drifted_stonith_parameters(host):
    if host.backend.get_hostname() != "stor01":
        pytest.skip("run once, from stor01")
    # Parameters that no longer match the inventory (a hand edit, a device made by an older
    # run): the next run of cluster.yml puts them back in one CIB push, and nothing else changes.
    host.check_output("crm_resource --resource fence-stor01 --set-parameter pcmk_delay_base --parameter-value 2s")
    host.check_output("crm_resource --resource fence-stor02 --delete-parameter pcmk_off_timeout")
    env = {k: v for k, v in os.environ.items() if k not in ("ANSIBLE_LOG_PATH", "ANSIBLE_FORCE_COLOR")}
    env["ANSIBLE_NOCOLOR"] = "1"
    result = subprocess.run([Path(sys.executable).parent / "ansible-playbook", "-vvv", "--diff",
                             "-i", Path(os.environ["MOLECULE_INVENTORY_FILE"]).parent, REPO / "playbooks" / "cluster.yml"],
                            capture_output=True, text=True, timeout=1500, env=env, cwd=REPO)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    # One changed task (the CIB transaction, run once from stor01) and nothing else.
    changed = dict(re.findall(r"^(stor0\d)\s+:.*?changed=(\d+)", result.stdout, re.M))
    assert changed == {"stor01": "1", "stor02": "0"}, result.stdout[-4000:]
    assert _stonith_param(host, "fence-stor01", "pcmk_delay_base") == "10s"
    assert _stonith_param(host, "fence-stor02", "pcmk_off_timeout") == "60s"
    # The devices' parameters include the BMC password: even at -vvv --diff it is never printed.
    password = _bmc_password()
    assert len(password) >= 8
    assert password not in result.stdout + result.stderr
    # ... nor left on the node outside the CIB (the scratch directory is gone).
    assert host.run("ls -d /tmp/ansible.*kickstack-cib 2>/dev/null").stdout.strip() == ""


def _boot_id(node):
    return node.check_output("cat /proc/sys/kernel/random/boot_id").strip()


def _timeline(nodes, since):
    """Everything the fence race left, per reachable node since `since` (epoch seconds): the
    fencer, corosync, DRBD and dlm kernel lines, the fence history; and the BMC's calls."""
    out = []
    for node in nodes:
        name = node.backend.get_hostname()
        try:
            res = node.run(
                f"journalctl --no-pager -o short-precise --since @{since} -u corosync -u pacemaker -u drbd "
                f"| grep -E 'fenced|KNET|TOTEM|QUORUM|drbd|Peer|fence' | tail -n 120; "
                f"journalctl --no-pager -o short-precise --since @{since} -k | grep -Ei 'drbd|dlm' | tail -n 80; "
                f"journalctl --no-pager -o short-precise --since @{since} -t kickstack-drbd-fence-peer; "
                "stonith_admin --history '*' 2>&1 | tail -n 20; cat /proc/drbd")
            out.append(f"==== {name} (boot {_boot_id(node)})\n{res.stdout}{res.stderr}")
        except Exception as exc:  # noqa: BLE001 - an unreachable node is part of the picture
            out.append(f"==== {name}: unreachable ({exc})")
    out.append("==== BMC calls (last 40)\n" + "\n".join(_bmc_log().splitlines()[-40:]))
    serial = _state_dir() / "stor02" / "serial.log"
    if serial.exists():
        out.append("==== stor02 serial (tail)\n" + "\n".join(serial.read_text(errors="replace").splitlines()[-40:]))
    text = "\n".join(out)
    (_state_dir() / "link-cut.log").write_text(text)
    if os.environ.get("KICKSTACK_DIAG_DIR"):
        diag = Path(os.environ["KICKSTACK_DIAG_DIR"])
        diag.mkdir(parents=True, exist_ok=True)
        (diag / "link-cut.log").write_text(text)
    return text


def test_link_cut_fences_exactly_one_node_survivor_keeps_quorum_and_lv(host):
    if host.backend.get_hostname() != "stor01":
        pytest.skip("run once, from stor01 (the survivor)")
    peer = _peer_host("stor02")
    bmc_before = len(_bmc_log().splitlines())
    boot_before = _boot_id(host)
    host.run_expect([0], "dd if=/dev/urandom of=/root/before bs=64k count=16 status=none")
    host.run_expect([0], f"dd if=/root/before of=/dev/{VG}/{LV} bs=64k oflag=direct status=none")
    since = int(host.check_output("date +%s")) - 5

    # The replication link (corosync and DRBD both use it) is cut at both ends while both
    # nodes run: each loses the other and both race to fence. The device that fences stor01
    # waits (pcmk_delay_base), so stor01 shoots first and stor02 never gets to.
    _vm_link("stor01", "down")
    _vm_link("stor02", "down")

    def fenced():
        out = host.run("stonith_admin --history stor02").stdout
        return bool(re.search(r"(reboot|off) of stor02 successful", out)), out

    try:
        _wait(fenced, timeout=300, hosts=(host,))
    finally:
        # The cable goes back in whatever happened, so a failure leaves a pair that can heal.
        _vm_link("stor01", "up")
        _vm_link("stor02", "up")
    # Exactly one node was fenced: the BMC got a power-off for stor02 from stor01 and no
    # power action at all for stor01, which kept running (same boot).
    calls = [json.loads(line) for line in _bmc_log().splitlines()[bmc_before:]]
    posts = [(c.get("system"), c.get("client"), c.get("reset_type")) for c in calls if c.get("method") == "POST"]
    assert ("stor02", "stor01 (guest)", "ForceOff") in posts, calls
    assert not [p for p in posts if p[0] == "stor01"], posts
    assert _boot_id(host) == boot_before, "stor01 was rebooted: both nodes were fenced"
    history = host.run("stonith_admin --history stor01").stdout
    assert not re.search(r"of stor01 successful", history), history

    out = host.check_output("corosync-quorumtool -s")
    assert re.search(r"Quorate:\s+Yes", out), f"survivor lost quorum: {out}"
    assert re.search(r"Total votes:\s+1\b", out), out

    # The survivor's LV keeps serving I/O (DRBD resumed after the fence-peer handler), and
    # the lock manager still grants metadata changes (dlm recovered after the fence).
    host.run_expect([0], "dd if=/dev/urandom of=/root/during bs=64k count=16 status=none")
    host.run_expect([0], f"dd if=/root/during of=/dev/{VG}/{LV} bs=64k seek=16 oflag=direct status=none")
    host.run_expect([0], f"dd if=/dev/{VG}/{LV} bs=64k count=16 iflag=direct status=none | cmp - /root/before")
    host.run_expect([0], f"lvcreate --activate n --zero n --yes -n lv_probe -L 8m {VG}")
    host.run_expect([0], f"lvremove --yes {VG}/lv_probe")

    # Pacemaker, dlm and DRBD's fence-peer handler all asked to reboot stor02; the handler
    # counts a reboot completed within its tolerance as its own, so stor02 is fenced once, comes
    # back by itself, rejoins, resyncs from stor01 and pacemaker activates its LV again; it
    # reads what stor01 wrote while it was away. Should it stay off (a fencing that powered it
    # off), the test powers it on as an operator would, and fails after the rejoin.
    power_ons = []

    def keep_stor02_on():
        if _vm_power("stor02", "status") == "off":
            power_ons.append(_vm_power("stor02", "on"))

    def rejoined():
        keep_stor02_on()
        mon = host.run("crm_mon -1 -r").stdout
        ok = re.search(r"Online: \[ stor01 stor02 \]", mon) and re.search(
            rf"{VG}-{LV}-clone \[{VG}-{LV}\]:\s*\n\s*\* Started: \[ stor01 stor02 \]", mon)
        return bool(ok), f"{mon}\nstor02 powered on by the test {len(power_ons)} time(s)"

    def synced():
        keep_stor02_on()
        res = peer.run(f"drbdadm cstate {RES}; drbdadm dstate {RES}; drbdadm role {RES}")
        return res.stdout.split() == ["Connected", "UpToDate/UpToDate", "Primary/Primary"], res.stdout

    try:
        _wait(rejoined, timeout=600, step=10, hosts=(host, peer))
        _wait(synced, timeout=300, hosts=(host, peer))
    except BaseException:
        print(_timeline((host, peer), since))
        raise
    # What happened is kept for the log (fence requests, BMC calls, DRBD handshake).
    print(f"stor02 powered on by the test {len(power_ons)} time(s)")
    timeline = _timeline((host, peer), since)
    # One fencing: a single power-off of stor02 at its BMC, and no power-on left to the test.
    calls = [json.loads(line) for line in _bmc_log().splitlines()[bmc_before:]]
    offs = [c for c in calls if c.get("method") == "POST" and c.get("reset_type") == "ForceOff"]
    assert [c.get("system") for c in offs] == ["stor02"], f"{offs}\n{timeline}"
    assert power_ons == [], f"stor02 stayed off after its fencing\n{timeline}"
    # stor01 was never fenced, before or after the rejoin.
    assert not re.search(r"of stor01 successful", host.run("stonith_admin --history stor01").stdout)
    during = host.check_output(f"dd if=/dev/{VG}/{LV} bs=64k skip=16 count=16 iflag=direct status=none | sha256sum")
    assert peer.check_output(
        f"dd if=/dev/{VG}/{LV} bs=64k skip=16 count=16 iflag=direct status=none | sha256sum") == during
    for node in (host, peer):
        assert "Split-Brain" not in node.check_output("dmesg"), node.backend.get_hostname()
