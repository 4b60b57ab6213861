"""Nova on the cloud scenario: controller services (with placement) on ctl01, libvirt and
nova-compute on cmp01 (molecule verifier: testinfra)."""

import json
import os
import time

import pytest

# One venv per node for keystone and nova (playbooks/vars/model.yml: kickstack_venv).
VENV = "/opt/kickstack/openstack"
CTL_IP = os.environ.get("KICKSTACK_TEST_CTL_IP", "10.60.0.11")


def _groups(host):
    me = host.backend.get_hostname()
    groups = host.ansible.get_variables()["groups"]
    return {g for g, members in groups.items() if me in members}


@pytest.fixture
def controller(host):
    if "controller" not in _groups(host):
        pytest.skip("not a controller")
    return host


@pytest.fixture
def compute(host):
    if "compute" not in _groups(host):
        pytest.skip("not a compute node")
    return host


def test_nova_conf_is_private(host):
    if not _groups(host) & {"controller", "compute"}:
        pytest.skip("no nova here")
    f = host.file("/etc/nova/nova.conf")
    assert (f.user, f.group, f.mode) == ("root", "nova", 0o640)


def test_nova_user_manages_guests(compute):
    cmd = compute.run("runuser -u nova -- virsh -c qemu:///system list --all")
    assert cmd.rc == 0, cmd.stderr


def test_other_users_are_refused(compute):
    for flags in ("", "-r"):  # the read-write and the read-only socket
        cmd = compute.run(f"runuser -u nobody -- virsh {flags} -c qemu:///system list --all")
        assert cmd.rc != 0, f"nobody could use qemu:///system {flags}: {cmd.stdout}"
        assert "ermission denied" in cmd.stderr, cmd.stderr


def test_compute_service_running(compute):
    assert compute.service("nova-compute").is_running
    assert "virt_type = " in compute.file("/etc/nova/nova.conf").content_string


def test_apis_answer(controller):
    ip = controller.ansible.get_variables()["ansible_host"]
    for port, key in ((8774, "versions"), (8778, "versions")):
        url = f"http://{ip}:{port}/"
        out = controller.check_output(
            "python3 -c %s", f"import urllib.request as u; print(u.urlopen('{url}', timeout=10).read().decode())")
        assert key in json.loads(out), out


def test_cells_mapped(controller):
    out = controller.check_output(f"{VENV}/bin/nova-manage cell_v2 list_cells")
    assert "cell0" in out and "cell1" in out


# As the admin, through keystone and the compute API: GET /os-services, the API behind
# `openstack compute service list`. Prints the services as JSON.
SERVICE_LIST = r"""
import json, sys, urllib.request
ctl, password = sys.argv[1:3]
auth = {"identity": {"methods": ["password"], "password": {"user": {
    "name": "admin", "domain": {"id": "default"}, "password": password}}},
    "scope": {"project": {"name": "admin", "domain": {"id": "default"}}}}
req = urllib.request.Request(f"http://{ctl}:5000/v3/auth/tokens", data=json.dumps({"auth": auth}).encode(),
                             headers={"Content-Type": "application/json"})
with urllib.request.urlopen(req, timeout=30) as resp:
    token = resp.headers["X-Subject-Token"]
req = urllib.request.Request(f"http://{ctl}:8774/v2.1/os-services", headers={"X-Auth-Token": token})
with urllib.request.urlopen(req, timeout=30) as resp:
    print(json.dumps([{k: s[k] for k in ("binary", "host", "state", "status")} for s in json.load(resp)["services"]]))
"""


def test_services_up(controller):
    """conductor, scheduler and every compute node's nova-compute are `up` and enabled, as
    `openstack compute service list` would show them (keystone token, compute API)."""
    password = controller.ansible.get_variables()["kickstack_secrets"]["keystone_admin_password"]
    computes = sorted(controller.ansible.get_variables()["groups"].get("compute", []))
    me = controller.backend.get_hostname()
    want = {("nova-conductor", me), ("nova-scheduler", me)} | {("nova-compute", c) for c in computes}
    deadline = time.monotonic() + 120
    while True:
        services = json.loads(controller.check_output("python3 -c %s %s %s", SERVICE_LIST, CTL_IP, password))
        up = {(s["binary"], s["host"]) for s in services if s["state"] == "up" and s["status"] == "enabled"}
        if want <= up or time.monotonic() > deadline:
            break
        time.sleep(5)
    assert want <= up, f"missing or down: {sorted(want - up)}; services: {services}"


# As nova, call one of nova's own privsep entrypoints the way nova-compute does (sudo,
# nova-rootwrap, privsep-helper): read the tail of a file only root may read.
PRIVSEP_READ = r"""
import shlex
import nova.conf
from nova import utils
from oslo_privsep import priv_context
nova.conf.CONF(["--config-file", "/etc/nova/nova.conf"], project="nova")
priv_context.init(root_helper=shlex.split(utils.get_root_helper()))
import nova.privsep.path
data, _ = nova.privsep.path.last_bytes("/etc/shadow", 16)
print("read", len(data))
"""


def test_privsep_escalates_for_nova_only(compute):
    assert compute.run("runuser -u nova -- cat /etc/shadow").rc != 0
    res = compute.run(f"cd /tmp && runuser -u nova -- {VENV}/bin/python -c %s", PRIVSEP_READ)
    assert res.rc == 0 and res.stdout.strip() == "read 16", res.stdout + res.stderr
    # rootwrap's filters allow privsep-helper only; sudo allows nova-rootwrap only.
    other = compute.run("runuser -u nova -- sudo -n nova-rootwrap /etc/nova/rootwrap.conf cat /etc/shadow")
    assert other.rc != 0 and "Unauthorized command" in other.stdout + other.stderr, other.stdout + other.stderr
    assert compute.run("runuser -u nova -- sudo -n cat /etc/shadow").rc != 0
    assert compute.run("runuser -u nobody -- sudo -n nova-rootwrap /etc/nova/rootwrap.conf privsep-helper --help").rc != 0
    sudoers = compute.file("/etc/sudoers.d/kickstack-nova")
    assert (sudoers.user, sudoers.mode) == ("root", 0o440)
    assert compute.file("/etc/nova/rootwrap.conf").user == "root"
