"""playbooks/reinstall.yml refuses, before it touches the boot server or any BMC: a run
without --limit, the boot server, storage nodes and the controller unless forced per host,
and hosts without kickstack_bmc. Nothing here is reachable, so a refusal that came too late
would fail differently. (The reinstall itself is proven by tests/test_pxe_boot.py.)"""

import re

import pytest
from conftest import REPO, VENV_BIN, copy_lab, run, run_playbook


def test_reinstall_refusals(tmp_path):
    inv = copy_lab(tmp_path / "inventory")
    build = tmp_path / "pxe"
    r = run_playbook("reinstall.yml", inv, build)
    out = r.stdout + r.stderr
    assert r.returncode != 0 and "name the hosts with --limit" in re.sub(r"\s+", " ", out), out[-3000:]

    # stor01 (storage, not forced), ctl01 (forced, but the lab gives it no BMC), cmp02 (no BMC),
    # pxe01 (the boot server), cmp01 (a BMC, but kickstack_netboot: false).
    with open(inv / "host_vars" / "cmp01.yml", "a") as f:
        f.write("kickstack_netboot: false\nkickstack_bmc: {protocol: ipmi, address: 10.60.0.121, username: k, "
                "password: \"{{ kickstack_secrets.ipmi_password }}\"}\n")
    r = run_playbook("reinstall.yml", inv, build, "--limit", "stor01,ctl01,cmp01,cmp02,pxe01",
                     "-e", "kickstack_reinstall_force=ctl01")
    out = re.sub(r"\s+", " ", r.stdout + r.stderr)
    assert r.returncode != 0, out[-3000:]
    assert ("stor01: it is the storage node and its disks hold the site's data: reinstall it only on purpose, "
            "with -e kickstack_reinstall_force=stor01") in out, out[-3000:]
    assert "ctl01: it has no kickstack_bmc" in out and "cmp02: it has no kickstack_bmc" in out, out[-3000:]
    assert "pxe01: it is the boot server" in out, out[-3000:]
    assert "cmp01: it has kickstack_netboot: false, so its boot entries boot the local disk" in out, out[-3000:]
    assert "Put the hosts back into build mode" not in out, "a refused run went on"


# The BMC steps (playbooks/tasks/bmc_network_boot.yml) over IPMI, against pyghmi's BMC server
# class: it records what the controller asked (boot device and whether it was persistent,
# power actions). The Redfish side runs against the harness' BMC in test_bmc_harness.py.
FAKE_IPMI_BMC = r'''
import json, sys
import pyghmi.ipmi.bmc as bmc
import pyghmi.ipmi.private.serversession as serversession

# pyghmi's server speaks only cipher suite 3 (HMAC-SHA1) but would accept the client's
# SHA-256 offer: answer "invalid authentication algorithm" as a suite-3-only BMC does, and the
# client asks again with suite 3.
_open = serversession.ServerSession.create_open_session_response


def _suite3_only(self, request):
    if request[12] != 1:
        return bytearray([request[0], 0x11, 0, 0]) + request[4:8]
    return _open(self, request)


serversession.ServerSession.create_open_session_response = _suite3_only

events_file, port, user, password, power = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5]


class Fake(bmc.Bmc):
    power = power
    bootdev = "default"

    def record(self, *event):
        with open(events_file, "a") as f:
            f.write(json.dumps(event) + "\n")

    def get_power_state(self):
        return self.power

    def power_on(self):
        self.record("power", "on")
        self.power = "on"

    def power_off(self):
        self.record("power", "off")
        self.power = "off"

    def power_reset(self):
        self.record("power", "reset")

    def power_cycle(self):
        self.record("power", "cycle")

    def get_boot_device(self):
        return self.bootdev

    def set_system_boot_options(self, request, session):
        if request["data"][0] == 5:  # boot flags: byte 1 bit 6 = persistent
            self.record("bootdev", (request["data"][2] >> 2) & 0xF, bool(request["data"][1] & 0x40))
        super().set_system_boot_options(request, session)

    def set_boot_device(self, bootdevice):
        self.bootdev = bootdevice


Fake({user: password}, port=port, address="127.0.0.1").listen()
'''


def _free_udp_port():
    import socket
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("power,expected", [("on", ["power", "reset"]), ("off", ["power", "on"])])
def test_ipmi_one_time_network_boot(tmp_path, power, expected):
    pytest.importorskip("pyghmi")
    import json
    import subprocess
    import sys
    import time

    port, user, password = _free_udp_port(), "kickstack", "ipmi-Pa55-for-test"
    events = tmp_path / "events.jsonl"
    script = tmp_path / "fake_bmc.py"
    script.write_text(FAKE_IPMI_BMC)
    proc = subprocess.Popen([str(VENV_BIN / "python"), str(script), str(events), str(port), user, password, power],
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        time.sleep(1)
        play = tmp_path / "play.yml"
        play.write_text(json.dumps([{"hosts": "localhost", "gather_facts": False, "tasks": [
            {"ansible.builtin.include_tasks": str(REPO / "playbooks" / "tasks" / "bmc_network_boot.yml")}]}]))
        bmc = {"protocol": "ipmi", "address": "127.0.0.1", "port": port, "username": user, "systems_uri": None,
               "verify_tls": True, "resource_id": None}
        r = run([VENV_BIN / "ansible-playbook", "-i", "localhost,", "-c", "local", play, "-vvv",
                 "-e", json.dumps({"bmc": bmc, "bmc_password": password,
                                   "ansible_python_interpreter": str(VENV_BIN / "python")})], timeout=300)
        out = r.stdout + r.stderr
        assert r.returncode == 0, out[-3000:]
        assert password not in out
    finally:
        proc.kill()
        proc.wait(10)
    recorded = [json.loads(line) for line in events.read_text().splitlines()]
    # network (pyghmi's boot device 1 = PXE) for the next boot only, then power on or reset
    assert recorded == [["bootdev", 1, False], expected], recorded
