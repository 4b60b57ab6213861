"""docs/inventory.md is generated from the schema and must not go stale."""

import subprocess
import sys

from modelkit import REPO


def test_inventory_doc_is_current():
    result = subprocess.run([sys.executable, str(REPO / "scripts" / "gen-inventory-doc"), "--check"],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_every_variable_documented():
    from ansible_collections.kickstack.core.plugins.module_utils import schema
    text = (REPO / "docs" / "inventory.md").read_text()
    for field in schema.FIELDS:
        assert f"| `{field.key}` |" in text, field.key


def test_schema_covers_every_variable_the_project_reads():
    """Every kickstack_* inventory key used by playbooks, scenarios and the lab is declared."""
    import re
    from ansible_collections.kickstack.core.plugins.module_utils import schema
    # Names the plays derive themselves, run options given with -e, or names that only test
    # harnesses set: not inventory keys.
    derived = {"kickstack_model", "kickstack_site", "kickstack_host", "kickstack_build_dir",
               "kickstack_legacy_render_dir", "kickstack_http_base_url",
               "kickstack_rebuild", "kickstack_reinstall_force", "kickstack_smoke_image_dir",
               "kickstack_smoke_marker", "kickstack_smoke_timeout",
               # set only by a standalone bundle's vars/host.yml (module_utils/bundle.py)
               "kickstack_bundle"}
    used = set()
    for path in list((REPO / "playbooks").rglob("*.yml")) + list((REPO / "inventory" / "lab").rglob("*.yml")):
        used |= set(re.findall(r"\bkickstack_[a-z0-9_]+", path.read_text()))
    # A name ending in "_" is a family named in a comment (kickstack_drbd_*), not a key.
    missing = sorted(v for v in used - derived - set(schema.BY_KEY) if not v.endswith("_"))
    assert not missing, missing


def test_check_detects_a_stale_doc(tmp_path, monkeypatch):
    import importlib.util
    spec = importlib.util.spec_from_loader("gen_doc", loader=None)
    source = (REPO / "scripts" / "gen-inventory-doc").read_text()
    module = importlib.util.module_from_spec(spec)
    module.__file__ = str(REPO / "scripts" / "gen-inventory-doc")
    exec(compile(source, "gen-inventory-doc", "exec"), module.__dict__)
    stale = tmp_path / "inventory.md"
    stale.write_text(module.render() + "edited by hand\n")
    monkeypatch.setattr(module, "DOC", stale)
    monkeypatch.setattr(sys, "argv", ["gen-inventory-doc", "--check"])
    assert module.main() == 1
