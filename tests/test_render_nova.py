"""Render tier for the nova roles: nova.conf (controller and compute) and the libvirt
configuration files, rendered by the roles' own templates with the `template` module and
per-platform vars (Fedora, EL, Debian) through tests/render_helper.py, then checked by the real consumers
(tests/validators): nova's option data with types, Augeas lenses, the real libvirtd."""

import configparser
import shutil

import pytest
import render_helper
import yaml
from conftest import REPO, run
from render_helper import DEBIAN, EL10, FEDORA, Job, role_vars

import validators

ROLES = REPO / "roles"
PLATFORMS = {"Fedora": FEDORA, "EL": EL10, "Debian": DEBIAN}
SECRETS = {  # realistic shapes: URL-unsafe characters in passwords must be escaped
    "db": "s3cr/et+db@x",
    "rabbit": "r@bbit:pw/1",
    "keystone": "k3ystone-pw",
}


def _vars(role, platform):
    return role_vars(role, PLATFORMS[platform])


COMMON = {
    "ansible_managed": "Managed by kickstack (Ansible); local changes are overwritten.",
}
CONTROLLER = {
    "nova_controller_listen_ip": "10.60.0.11",
    "nova_controller_db_host": "10.60.0.11",
    "nova_controller_db_password": SECRETS["db"],
    "nova_controller_placement_db_password": SECRETS["db"],
    "nova_controller_rabbitmq_host": "10.60.0.11",
    "nova_controller_rabbitmq_password": SECRETS["rabbit"],
    "nova_controller_keystone_url": "http://10.60.0.11:5000/v3",
    "nova_controller_keystone_nova_password": SECRETS["keystone"],
    "nova_controller_keystone_placement_password": SECRETS["keystone"],
    "nova_controller_metadata_secret": "0123456789abcdef",
}
COMPUTE = {
    "nova_compute_my_ip": "10.60.0.21",
    "nova_compute_rabbitmq_host": "10.60.0.11",
    "nova_compute_rabbitmq_password": SECRETS["rabbit"],
    "nova_compute_keystone_url": "http://10.60.0.11:5000/v3",
    "nova_compute_placement_password": SECRETS["keystone"],
    "nova_compute_keystone_nova_password": SECRETS["keystone"],
    "nova_compute_novncproxy_base_url": "http://10.60.0.11:6080/vnc_auto.html",
    "__nova_compute_virt_type": "qemu",
}


def render(tmp, jobs):
    """jobs: [(role, platform, template, dest name, extra vars)] -> {dest name: path}."""
    result = render_helper.render(tmp, [Job(role, [(template, dest, "0600")], {**COMMON, **extra}, PLATFORMS[platform])
                                        for role, platform, template, dest, extra in jobs])
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return {dest: tmp / dest for _, _, _, dest, _ in jobs}


@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("nova")
    jobs = []
    for platform in PLATFORMS:
        jobs.append(("nova_controller", platform, "nova.conf.j2", f"{platform}-controller-nova.conf", CONTROLLER))
        jobs.append(("nova_compute", platform, "nova.conf.j2", f"{platform}-compute-nova.conf", COMPUTE))
        lv = _vars("libvirt", platform)
        for transport in ("tls", "tcp"):
            extra = {"libvirt_migration_transport": transport, "libvirt_tcp_sasl_opt_in": transport == "tcp"}
            for conf in lv["__libvirt_daemon_confs"]:
                jobs.append(("libvirt", platform, "daemon.conf.j2", f"{platform}-{transport}-{conf['name']}.conf",
                             {**extra, "item": conf, "__libvirt_remote": conf["remote"]}))
            # both forms of cgroup_controllers: a list of controllers, and none at all (containers)
            cgroups = {"libvirt_qemu_cgroup_controllers": ["cpu", "devices", "memory"] if transport == "tls" else []}
            jobs.append(("libvirt", platform, "qemu.conf.j2", f"{platform}-{transport}-qemu.conf", {**extra, **cgroups}))
    return render(tmp, jobs)


@pytest.mark.parametrize("platform", PLATFORMS)
@pytest.mark.parametrize("service", ["controller", "compute"])
def test_nova_conf_is_valid(rendered, platform, service):
    path = rendered[f"{platform}-{service}-nova.conf"]
    text = path.read_text()
    assert text.startswith("#"), "ansible_managed header missing"
    assert validators.nova_conf(path, service=service, strict=True) == []
    # the vhost /nova and escaped credentials
    assert "@10.60.0.11:5672//nova" in text
    assert "r%40bbit%3Apw%2F1" in text
    if service == "compute":
        assert "virt_type = qemu" in text


@pytest.mark.parametrize("platform", PLATFORMS)
def test_placement_conf_renders(tmp_path, platform):
    out = render(tmp_path, [("nova_controller", platform, "placement.conf.j2", "placement.conf", CONTROLLER)])
    text = out["placement.conf"].read_text()
    assert "[placement_database]" in text and "s3cr%2Fet%2Bdb%40x@10.60.0.11/placement" in text


def test_broken_nova_conf_is_caught(tmp_path):
    out = render(tmp_path, [
        ("nova_compute", "Fedora", "nova.conf.j2", "bad-type.conf",
         {**COMPUTE, "nova_compute_nova_conf_overrides": {"libvirt": {"virt_type": "xen"}, "DEFAULT": {"debug": "maybe"}}}),
        ("nova_compute", "Fedora", "nova.conf.j2", "bad-name.conf",
         {**COMPUTE, "nova_compute_nova_conf_overrides": {"libvirt": {"virt_typo": "qemu"}}}),
        ("nova_compute", "Fedora", "nova.conf.j2", "db-on-compute.conf",
         {**COMPUTE, "nova_compute_nova_conf_overrides": {"database": {"connection": "mysql+pymysql://x:y@z/nova"}}}),
    ])
    problems = validators.nova_conf(out["bad-type.conf"], service="compute")
    assert any("virt_type = xen" in p for p in problems), problems
    assert any("debug = maybe" in p for p in problems), problems
    assert any("virt_typo" in p for p in validators.nova_conf(out["bad-name.conf"], service="compute"))
    assert validators.nova_conf(out["db-on-compute.conf"], service="compute", strict=True)


@pytest.mark.parametrize("platform", PLATFORMS)
@pytest.mark.parametrize("transport", ["tls", "tcp"])
def test_libvirt_confs_parse(rendered, platform, transport):
    for conf in _vars("libvirt", platform)["__libvirt_daemon_confs"]:
        path = rendered[f"{platform}-{transport}-{conf['name']}.conf"]
        check = validators.libvirtd_conf if conf["name"] in ("libvirtd", "virtproxyd") else validators.virtqemud_conf
        assert check(path) == [], path.read_text()
        text = path.read_text()
        assert 'unix_sock_group = "libvirt"' in text and 'unix_sock_rw_perms = "0770"' in text
        assert 'auth_tcp = "sasl"' in text if conf["remote"] and transport == "tcp" else 'auth_tcp' not in text
    assert validators.qemu_conf(rendered[f"{platform}-{transport}-qemu.conf"]) == []
    want = '[ "cpu", "devices", "memory" ]' if transport == "tls" else "[  ]"
    assert f"cgroup_controllers = {want}" in rendered[f"{platform}-{transport}-qemu.conf"].read_text()


@pytest.mark.skipif(shutil.which("libvirtd") is None, reason="libvirtd not installed")
@pytest.mark.parametrize("transport", ["tls", "tcp"])
def test_libvirtd_conf_semantics(rendered, transport):
    # Debian 12 runs the monolithic libvirtd: start the real daemon on our file.
    assert validators.libvirtd_semantic(rendered[f"Debian-{transport}-libvirtd.conf"]) == []


def test_broken_libvirt_conf_is_caught(rendered, tmp_path):
    bad = tmp_path / "libvirtd.conf"
    bad.write_text(rendered["Debian-tls-libvirtd.conf"].read_text().replace('"0770"', "0770 0770", 1))
    assert validators.libvirtd_conf(bad)
    bad2 = tmp_path / "libvirtd2.conf"
    bad2.write_text(rendered["Debian-tls-libvirtd.conf"].read_text().replace("log_level = 3", "log_level = 9"))
    assert validators.libvirtd_semantic(bad2)


@pytest.mark.skipif(shutil.which("visudo") is None, reason="visudo not installed")
@pytest.mark.parametrize("platform", ["Fedora", "Debian"])
def test_rootwrap_and_sudoers_render(tmp_path, platform):
    import configparser
    import subprocess

    extra = {**COMPUTE, "nova_compute_venv": "/opt/kickstack/openstack"}
    out = render(tmp_path, [("nova_compute", platform, t, t, extra) for t in ("sudoers-nova.j2", "rootwrap.conf.j2")])
    check = subprocess.run(["visudo", "-cf", str(out["sudoers-nova.j2"])], capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    rules = [ln for ln in out["sudoers-nova.j2"].read_text().splitlines() if ln and not ln.startswith(("#", "Defaults"))]
    assert rules == ["nova ALL = (root) NOPASSWD: /opt/kickstack/openstack/bin/nova-rootwrap /etc/nova/rootwrap.conf *"]
    conf = configparser.ConfigParser()
    conf.read(out["rootwrap.conf.j2"])
    assert conf["DEFAULT"]["filters_path"] == "/etc/nova/rootwrap.d"
    assert conf["DEFAULT"]["exec_dirs"].split(",")[0] == "/opt/kickstack/openstack/bin"


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze not installed")
def test_uwsgi_apps_render_units_systemd_accepts(tmp_path):
    # nova-api and placement-api go through the shared uwsgi_app templates (keystone too):
    # systemd checks each unit, and the ini holds the socket on the management address.
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    (venv / "bin" / "uwsgi").write_text("#!/bin/sh\n")
    (venv / "bin" / "uwsgi").chmod(0o755)
    apis = yaml.safe_load((ROLES / "nova_controller" / "vars" / "main.yml").read_text())["__nova_controller_uwsgi"]
    shared = "../../uwsgi_app/templates/"
    jobs = []
    for api in apis:
        extra = {**CONTROLLER, "item": api["app"], "uwsgi_app_venv": str(venv), "uwsgi_app_user": "nova",
                 "uwsgi_app_group": "nova", "uwsgi_app_processes": 2}
        name = api["app"]["name"]
        jobs.append(("nova_controller", "Debian", shared + "uwsgi.service.j2", f"{name}.service", extra))
        jobs.append(("nova_controller", "Debian", shared + "uwsgi.ini.j2", f"{name}.ini", extra))
    out = render(tmp_path, jobs)
    ports = {"nova-api": 8774, "placement-api": 8778}
    for name, port in ports.items():
        unit = out[f"{name}.service"]
        result = run(["systemd-analyze", "verify", unit])
        assert result.returncode == 0 and result.stderr.strip() == "", result.stderr
        assert f"ExecStart={venv}/bin/uwsgi --ini /etc/" in unit.read_text()
        ini = configparser.ConfigParser(interpolation=None, strict=False)
        ini.read_string(out[f"{name}.ini"].read_text())
        assert ini["uwsgi"]["http-socket"] == f"10.60.0.11:{port}"
        assert ini["uwsgi"]["die-on-term"] == "true" and ini["uwsgi"]["processes"] == "2"
