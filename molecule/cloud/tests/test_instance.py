"""Glance, the networking API and a server that boots (cloud scenario): glance-api and
neutron's API on the management address only with private configuration, the administrator's
hand-off files, and playbooks/smoke.yml run against the converged site from this machine:
a flavor, the test image (scripts/build-smoke-image), a server booted with `--nic none`
under TCG on cmp01, ACTIVE, the marker read from its console log, everything deleted."""

import os
import re
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]
CTL, CTL_IP = "ctl01", os.environ.get("KICKSTACK_TEST_CTL_IP", "10.60.0.11")


@pytest.fixture
def controller(host):
    if host.backend.get_hostname() != CTL:
        pytest.skip(f"runs on {CTL}")
    return host


@pytest.mark.parametrize("port, service, conf, group", [
    (9292, "glance-api", "/etc/glance/glance-api.conf", "glance"),
    (9696, "neutron-api", "/etc/neutron/neutron.conf", "neutron"),
])
def test_api_on_the_management_ip_only_with_private_config(controller, port, service, conf, group):
    out = controller.check_output(f"ss -tlnH 'sport = :{port}'")
    assert sorted({line.split()[3].rsplit(":", 1)[0] for line in out.splitlines() if line.strip()}) == [CTL_IP]
    assert controller.service(service).is_running and controller.service(service).is_enabled
    f = controller.file(conf)
    assert (f.user, f.group, f.mode) == ("root", group, 0o640)


def test_image_store_belongs_to_glance(controller):
    d = controller.file("/var/lib/glance/images")
    assert (d.user, d.group, d.mode) == ("glance", "glance", 0o750)


def test_root_has_the_client_and_a_private_clouds_yaml(controller):
    f = controller.file("/root/.config/openstack/clouds.yaml")
    assert (f.user, f.mode) == ("root", 0o600)
    out = controller.check_output("openstack --os-cloud kickstack catalog list -f value -c Type")
    assert {"identity", "compute", "placement", "image", "network"} <= set(out.split()), out


def test_operator_credentials_next_to_the_inventory(controller):
    generated = Path(os.environ["MOLECULE_INVENTORY_FILE"]).parent / ".generated"
    assert generated.stat().st_mode & 0o777 == 0o700
    for name in ("clouds.yaml", "openrc"):
        path = generated / name
        assert path.is_file(), f"{path} was not written"
        assert path.stat().st_mode & 0o777 == 0o600, oct(path.stat().st_mode)
    # openrc works as written: a token for the admin through keystone.
    env = {"PATH": "/usr/bin:/bin"}
    script = f". {generated / 'openrc'} && python3 -c " + (
        "\"import json,os,urllib.request as u; a={'identity':{'methods':['password'],'password':{'user':{"
        "'name':os.environ['OS_USERNAME'],'domain':{'name':os.environ['OS_USER_DOMAIN_NAME']},"
        "'password':os.environ['OS_PASSWORD']}}}}; r=u.urlopen(u.Request(os.environ['OS_AUTH_URL']+'/auth/tokens',"
        "json.dumps({'auth':a}).encode(),{'Content-Type':'application/json'}),timeout=30); print(r.status)\"")
    out = subprocess.run(["sh", "-c", script], capture_output=True, text=True, env=env, timeout=60)
    assert out.stdout.strip() == "201", out.stdout + out.stderr


def test_smoke_playbook_boots_a_server_and_cleans_up(controller):
    image = subprocess.run([REPO / "scripts" / "build-smoke-image"], capture_output=True, text=True, check=False)
    assert image.returncode == 0, image.stderr
    image_dir = image.stdout.splitlines()[-1]
    inventory = Path(os.environ["MOLECULE_INVENTORY_FILE"]).parent
    env = dict(os.environ)
    env.pop("ANSIBLE_LOG_PATH", None)
    result = subprocess.run(
        [REPO / ".venv" / "bin" / "ansible-playbook", "-i", inventory, REPO / "playbooks" / "smoke.yml",
         "-e", f"kickstack_smoke_image_dir={image_dir}"],
        capture_output=True, text=True, env=env, cwd=REPO, timeout=1200, check=False)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-6000:]
    assert re.search(r"KICKSTACK-SMOKE-OK uptime=", output), output[-3000:]
    # Nothing of the run is left behind.
    for kind in ("server list", "image list", "flavor list --all"):
        left = controller.check_output(f"openstack --os-cloud kickstack {kind} -f value -c Name")
        assert "kickstack-smoke" not in left, f"{kind}s left: {left}"
