"""Preflight refuses broken inventories, naming host and field, before anything is written."""

from pathlib import Path

import pytest
import yaml
from conftest import REPO, VENV_BIN, copy_lab, run, run_playbook, tool_env

CASES = yaml.safe_load((Path(__file__).parent / "preflight_cases.yml").read_text())


def patch_inventory(inventory: Path, case: dict) -> None:
    for host, changes in (case.get("host_vars") or {}).items():
        path = inventory / "host_vars" / f"{host}.yml"
        data = yaml.safe_load(path.read_text()) if path.exists() else {}
        for key, value in changes.items():
            if value is None:
                data.pop(key, None)
            else:
                data[key] = value
        path.write_text("---\n" + yaml.safe_dump(data))
    if case.get("site"):
        path = inventory / "group_vars" / "all" / "site.yml"
        data = yaml.safe_load(path.read_text())
        data.update(case["site"])
        path.write_text("---\n" + yaml.safe_dump(data))
    for host, text in (case.get("raw_host_vars") or {}).items():
        path = inventory / "host_vars" / f"{host}.yml"
        data = yaml.safe_load(path.read_text()) if path.exists() else {}
        keys = yaml.safe_load(text)
        for key in keys:
            data.pop(key, None)
        path.write_text("---\n" + yaml.safe_dump(data) + text)
    for rel in case.get("delete", []):
        (inventory / rel).unlink()


@pytest.fixture(scope="module")
def lab_copy(tmp_path_factory):
    return copy_lab(tmp_path_factory.mktemp("preflight") / "inventory")


def test_corpus_is_there():
    assert len(CASES) >= 5


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_preflight_rejects(case, lab_copy, tmp_path):
    import shutil
    inventory = tmp_path / "inventory"
    shutil.copytree(lab_copy, inventory)
    patch_inventory(inventory, case)
    build = tmp_path / "build"
    result = run_playbook("kickstart.yml", inventory, build)
    output = result.stdout + result.stderr
    assert result.returncode != 0, output[-2000:]
    for text in case["expect"]:
        assert text in output, f"expected {text!r} in:\n{output[-2500:]}"
    assert "Traceback" not in output
    assert "nothing was touched" in output
    assert not build.exists(), "preflight failed but something was written"


def test_lab_passes_preflight(lab_copy, tmp_path):
    # The result message (inventory OK: N hosts) shows at -v.
    result = run_playbook("preflight.yml", lab_copy, tmp_path / "unused", "-v")
    assert result.returncode == 0, result.stdout[-2000:]
    assert "inventory OK: 6 hosts" in result.stdout, result.stdout[-2000:]


def test_lab_fails_preflight_when_broken(lab_copy, tmp_path):
    """The check above can fail: the same run on a broken copy does not say 'inventory OK'."""
    import shutil
    inventory = tmp_path / "inventory"
    shutil.copytree(lab_copy, inventory)
    patch_inventory(inventory, {"host_vars": {"cmp01": {"kickstack_profile": "hypervisor"}}})
    result = run_playbook("preflight.yml", inventory, tmp_path / "unused", "-v")
    assert result.returncode != 0
    assert "inventory OK" not in result.stdout


def _fake_checkout(tmp_path):
    """A checkout's scripts/ and inventory/ without its .vault-pass (the scripts find both by path)."""
    import shutil
    top = tmp_path / "checkout"
    (top / "scripts").mkdir(parents=True)
    for script in ("vault-password", "kickstack-secrets"):
        shutil.copy2(REPO / "scripts" / script, top / "scripts" / script)
    return top


def test_vault_password_lost_is_refused(tmp_path):
    top = _fake_checkout(tmp_path)
    first = run([top / "scripts" / "vault-password"])
    assert first.returncode == 0 and first.stdout.strip()
    secrets = top / "inventory" / "site" / "group_vars" / "all" / "secrets.yml"
    secrets.parent.mkdir(parents=True)
    secrets.write_text("$ANSIBLE_VAULT;1.1;AES256\n00\n")
    (top / ".vault-pass").unlink()
    lost = run([top / "scripts" / "vault-password"])
    assert lost.returncode != 0
    assert not (top / ".vault-pass").exists(), "a new password was created next to existing secrets"
    assert str(secrets) in lost.stderr
    assert "restore .vault-pass" in lost.stderr and "ANSIBLE_VAULT_PASSWORD_FILE" in lost.stderr


def test_deploy_key_lost_is_refused(lab_copy, tmp_path):
    import shutil
    inventory = tmp_path / "inventory"
    shutil.copytree(lab_copy, inventory)
    before = (inventory / "group_vars" / "all" / "secrets.yml").read_bytes()
    (inventory / ".generated" / "deploy_ed25519").unlink()
    result = run([VENV_BIN / "python", REPO / "scripts" / "kickstack-secrets", inventory])
    assert result.returncode != 0
    assert "deploy_ed25519" in result.stderr and "--new-deploy-key" in result.stderr
    assert not (inventory / ".generated" / "deploy_ed25519").exists()
    assert (inventory / "group_vars" / "all" / "secrets.yml").read_bytes() == before


def test_wrong_vault_password_names_the_file(lab_copy, tmp_path):
    password = tmp_path / "wrong-password.txt"
    password.write_text("not-the-password\n")
    env = tool_env()
    env["ANSIBLE_VAULT_PASSWORD_FILE"] = str(password)
    result = run([VENV_BIN / "python", REPO / "scripts" / "kickstack-secrets", lab_copy], env=env)
    assert result.returncode != 0
    assert f"cannot decrypt {lab_copy / 'group_vars' / 'all' / 'secrets.yml'}" in result.stderr
    assert "vault password" in result.stderr
