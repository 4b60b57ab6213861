"""playbooks/reinstall.yml refuses what would wipe the site's data, before touching any host."""

import pytest

from conftest import copy_lab, run_playbook


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    return copy_lab(tmp_path_factory.mktemp("reinstall") / "inventory")


@pytest.mark.parametrize("host", ["ctl01", "stor01"])
def test_controller_and_storage_are_refused_unless_forced(lab, tmp_path, host):
    r = run_playbook("reinstall.yml", lab, tmp_path, "--limit", host)
    assert r.returncode != 0
    assert f"{host}: profile " in r.stdout and "kickstack_reinstall_force: true" in r.stdout, r.stdout[-2000:]
    assert "Put the host back into build mode" not in r.stdout


def test_no_limit_is_refused(lab, tmp_path):
    r = run_playbook("reinstall.yml", lab, tmp_path)
    assert r.returncode != 0 and "name them with --limit" in r.stdout, r.stdout[-2000:]
    assert "Put the host back into build mode" not in r.stdout
