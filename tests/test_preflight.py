"""Preflight refuses broken inventories, naming host and field, before anything is written."""

from pathlib import Path

import pytest
import yaml
from conftest import copy_lab, run_playbook

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
    for rel in case.get("delete", []):
        (inventory / rel).unlink()


@pytest.fixture(scope="module")
def lab_copy(tmp_path_factory):
    return copy_lab(tmp_path_factory.mktemp("preflight") / "inventory")


def test_corpus_is_large_enough():
    assert len(CASES) >= 12


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
    result = run_playbook("preflight.yml", lab_copy, tmp_path / "unused")
    assert result.returncode == 0, result.stdout[-2000:]
    assert "inventory OK: 6 hosts" in result.stdout or "ok=" in result.stdout
