"""Nova on the cloud scenario: controller services (with placement) on ctl01, libvirt and
nova-compute on cmp01 (molecule verifier: testinfra)."""

import json
import time

import pytest

VENV = "/opt/kickstack/nova"


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


def test_services_up(controller):
    """conductor, scheduler and cmp01's nova-compute report to the cell database
    within service_down_time (60 s), which is what `openstack compute service list`
    shows as `up`."""
    sql = ("SELECT `binary`, host, TIMESTAMPDIFF(SECOND, COALESCE(updated_at, created_at), UTC_TIMESTAMP()) "
           "FROM nova.services WHERE deleted = 0")
    computes = sorted(controller.ansible.get_variables()["groups"].get("compute", []))
    want = {("nova-conductor", controller.backend.get_hostname()),
            ("nova-scheduler", controller.backend.get_hostname())}
    want |= {("nova-compute", c) for c in computes}
    deadline = time.monotonic() + 120
    while True:
        rows = [line.split("\t") for line in controller.check_output("mysql -N -B -e %s", sql).splitlines()]
        up = {(b, h) for b, h, age in rows if int(age) <= 60}
        if want <= up or time.monotonic() > deadline:
            break
        time.sleep(5)
    assert want <= up, f"missing or down: {sorted(want - up)}; rows: {rows}"
