"""Every step playbook checks the inventory first and reads the site only through the model."""

import re

import pytest
import yaml
from conftest import REPO

PLAYBOOKS = sorted(p for p in (REPO / "playbooks").glob("*.yml") if p.name != "preflight.yml")


def runs_preflight_first(plays):
    first = plays[0]
    if first.get("ansible.builtin.import_playbook") == "preflight.yml":
        return True
    roles = [r["role"] if isinstance(r, dict) else r for r in first.get("roles", [])]
    tasks = first.get("tasks", [])
    first_task_role = (tasks[0].get("ansible.builtin.include_role") or {}).get("name") if tasks else None
    if (roles[:1] == ["preflight"]) or first_task_role == "preflight":
        return True
    # Or the first role the play runs checks the whole inventory in its own task
    # (kickstart.yml: kickstart with kickstart_preflight); only include_vars may come before.
    for task in tasks:
        role = task.get("ansible.builtin.import_role") or task.get("ansible.builtin.include_role")
        if role:
            return role.get("name") == "kickstart" and bool((task.get("vars") or {}).get("kickstart_preflight"))
        if "ansible.builtin.include_vars" not in task:
            return False
    return False


@pytest.mark.parametrize("playbook", PLAYBOOKS, ids=[p.name for p in PLAYBOOKS])
def test_step_playbook_runs_preflight_first(playbook):
    plays = yaml.safe_load(playbook.read_text())
    assert runs_preflight_first(plays), f"{playbook.name} does not check the inventory before its first play"


@pytest.mark.parametrize("playbook", PLAYBOOKS, ids=[p.name for p in PLAYBOOKS])
def test_plays_read_the_model_not_raw_inventory(playbook):
    # Site facts come from kickstack_site / kickstack_host (the model preflight built), never
    # from a raw kickstack_* variable with a play-local default.
    text = playbook.read_text()
    raw = re.findall(r"(kickstack_\w+)\s*\|\s*default\(", text)
    assert raw == [], f"{playbook.name} re-derives the model"
    assert not re.search(r"hostvars\[[^\]]+\]\.kickstack_interfaces", text), f"{playbook.name} reads raw interfaces"


def test_the_check_catches_a_playbook_without_preflight():
    assert not runs_preflight_first([{"hosts": "all", "roles": ["common"]}])
    assert runs_preflight_first([{"ansible.builtin.import_playbook": "preflight.yml"}])
    assert not runs_preflight_first([{"hosts": "localhost", "tasks": [
        {"ansible.builtin.import_role": {"name": "kickstart"}}]}])
    assert runs_preflight_first([{"hosts": "localhost", "tasks": [
        {"ansible.builtin.import_role": {"name": "kickstart"}, "vars": {"kickstart_preflight": {"platforms": {}}}}]}])
