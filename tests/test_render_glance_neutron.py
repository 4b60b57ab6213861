"""Render tier for the glance and neutron_server roles: glance-api.conf, neutron.conf and
ml2_conf.ini, rendered by the roles' own templates with the `template` module and per-platform
vars (Fedora, EL, Debian), then checked with oslo.config against glance 33's and neutron 29's
own option definitions, types included (tests/validators)."""

import pytest
from test_render_nova import _vars, render

import validators

PLATFORMS = ("Fedora", "EL", "Debian")
DB_PASSWORD = "s3cr/et+db@x"  # URL-unsafe characters must be escaped
GLANCE = {
    "glance_listen_ip": "10.60.0.11",
    "glance_db_host": "10.60.0.11",
    "glance_db_password": DB_PASSWORD,
    "glance_keystone_url": "http://10.60.0.11:5000/v3",
    "glance_keystone_password": "k3ystone-pw",
}
NEUTRON = {
    "neutron_server_listen_ip": "10.60.0.11",
    "neutron_server_db_host": "10.60.0.11",
    "neutron_server_db_password": DB_PASSWORD,
    "neutron_server_rabbitmq_host": "10.60.0.11",
    "neutron_server_rabbitmq_password": "r@bbit:pw/1",
    "neutron_server_keystone_url": "http://10.60.0.11:5000/v3",
    "neutron_server_keystone_password": "k3ystone-pw",
}


def _glance(platform, dest, **extra):
    return ("glance", platform, "glance-api.conf.j2", dest, {**_vars("glance", platform), **GLANCE, **extra})


def _neutron(platform, template, dest, **extra):
    return ("neutron_server", platform, template, dest, {**_vars("neutron_server", platform), **NEUTRON, **extra})


@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("glance-neutron")
    jobs = [_glance(p, f"{p}-glance-api.conf") for p in PLATFORMS]
    jobs += [_neutron(p, "neutron.conf.j2", f"{p}-neutron.conf") for p in PLATFORMS]
    jobs += [_neutron(p, "ml2_conf.ini.j2", f"{p}-ml2_conf.ini") for p in PLATFORMS]
    return render(tmp, jobs)


@pytest.mark.parametrize("platform", PLATFORMS)
def test_glance_api_conf_is_valid(rendered, platform):
    path = rendered[f"{platform}-glance-api.conf"]
    text = path.read_text()
    assert text.startswith("#"), "ansible_managed header missing"
    assert validators.glance_conf(path, strict=True) == []
    assert "mysql+pymysql://glance:s3cr%2Fet%2Bdb%40x@10.60.0.11/glance?charset=utf8" in text
    assert "[file]\nfilesystem_store_datadir = /var/lib/glance/images" in text


@pytest.mark.parametrize("platform", PLATFORMS)
def test_neutron_confs_are_valid(rendered, platform):
    assert validators.neutron_conf(rendered[f"{platform}-neutron.conf"], strict=True) == []
    assert validators.neutron_conf(rendered[f"{platform}-ml2_conf.ini"], service="ml2", strict=True) == []
    text = rendered[f"{platform}-neutron.conf"].read_text()
    assert "transport_url = rabbit://neutron:r%40bbit%3Apw%2F1@10.60.0.11:5672//neutron" in text


def test_broken_glance_and_neutron_confs_are_caught(tmp_path):
    out = render(tmp_path, [
        _glance("Debian", "bad-type.conf", glance_api_conf_overrides={
            "DEFAULT": {"image_size_cap": "huge"}, "file": {"filesystem_store_file_perm": "rw"}}),
        _glance("Debian", "bad-name.conf", glance_api_conf_overrides={"glance_store": {"default_store_name": "x"}}),
        _glance("Debian", "no-store.conf", glance_api_conf_overrides={"glance_store": {"default_backend": None}}),
        _neutron("Debian", "neutron.conf.j2", "bad-neutron.conf",
                 neutron_server_neutron_conf_overrides={"DEFAULT": {"max_dns_nameservers": "many"}, "nova": {"regionname": "x"}}),
        _neutron("Debian", "ml2_conf.ini.j2", "bad-ml2.ini", neutron_server_ml2_conf_overrides={"ml2": {"type_driver": "x"}}),
    ])
    problems = validators.glance_conf(out["bad-type.conf"])
    assert any("image_size_cap = huge" in p for p in problems), problems
    assert any("filesystem_store_file_perm = rw" in p for p in problems), problems
    assert any("default_store_name: unknown option" in p for p in validators.glance_conf(out["bad-name.conf"]))
    assert any("default_backend: required" in p for p in validators.glance_conf(out["no-store.conf"]))
    problems = validators.neutron_conf(out["bad-neutron.conf"])
    assert any("max_dns_nameservers = many" in p for p in problems), problems
    assert any("regionname: unknown option" in p for p in problems), problems
    assert any("type_driver: unknown option" in p for p in validators.neutron_conf(out["bad-ml2.ini"], service="ml2"))
    # the database password is never echoed by the validator
    assert all("s3cr" not in p for p in validators.glance_conf(out["bad-type.conf"]))
