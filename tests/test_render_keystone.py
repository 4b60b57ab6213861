"""Render tier for the keystone role: keystone.conf, rendered by the role's own template with
the `template` module and per-platform vars (Fedora, EL, Debian), then checked with oslo.config
against keystone 30's own option definitions, types included (tests/validators)."""

import pytest
from test_render_nova import _vars, render

import validators

PLATFORMS = ("Fedora", "EL", "Debian")
KEYSTONE = {
    "keystone_listen_ip": "10.60.0.11",
    "keystone_db_host": "10.60.0.11",
    "keystone_db_password": "s3cr/et+db@x",  # URL-unsafe characters must be escaped
    "keystone_public_url": "http://10.60.0.11:5000/v3",
    "keystone_admin_password": "0123456789abcdef",
}


def _job(platform, dest, **extra):
    return ("keystone", platform, "keystone.conf.j2", dest, {**_vars("keystone", platform), **KEYSTONE, **extra})


@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("keystone")
    return render(tmp, [_job(p, f"{p}-keystone.conf") for p in PLATFORMS])


@pytest.mark.parametrize("platform", PLATFORMS)
def test_keystone_conf_is_valid(rendered, platform):
    path = rendered[f"{platform}-keystone.conf"]
    text = path.read_text()
    assert text.startswith("#"), "ansible_managed header missing"
    assert validators.keystone_conf(path, strict=True) == []
    assert "mysql+pymysql://keystone:s3cr%2Fet%2Bdb%40x@10.60.0.11/keystone?charset=utf8" in text
    assert "provider = fernet" in text


def test_broken_keystone_conf_is_caught(tmp_path):
    out = render(tmp_path, [
        _job("Fedora", "bad-type.conf", keystone_keystone_conf_overrides={
            "token": {"expiration": "an hour", "provider": "jwt"}, "DEFAULT": {"debug": "maybe"}}),
        _job("Fedora", "bad-name.conf", keystone_keystone_conf_overrides={"token": {"expirations": 60}}),
        _job("Fedora", "bad-group.conf", keystone_keystone_conf_overrides={"keystone_authtoken": {"auth_url": "x"}}),
        _job("Fedora", "no-repo.conf", keystone_keystone_conf_overrides={"fernet_tokens": {"key_repository": None}}),
    ])
    problems = validators.keystone_conf(out["bad-type.conf"])
    assert any("expiration = an hour" in p for p in problems), problems
    assert any("debug = maybe" in p for p in problems), problems
    assert not any("provider" in p for p in problems), "jwt is a valid token provider"
    assert any("expirations: unknown option" in p for p in validators.keystone_conf(out["bad-name.conf"]))
    assert any("[keystone_authtoken]: unknown group" in p for p in validators.keystone_conf(out["bad-group.conf"]))
    assert any("key_repository: required" in p for p in validators.keystone_conf(out["no-repo.conf"]))
    # the database password is never echoed by the validator
    bad_db = tmp_path / "bad-db.conf"
    bad_db.write_text(out["bad-type.conf"].read_text())
    assert all("s3cr" not in p for p in validators.keystone_conf(bad_db))
