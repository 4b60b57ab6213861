"""kickstack.core.yaml (ansible.cfg) must read an inventory exactly as ansible.builtin.yaml does."""

import json

import pytest

from conftest import REPO, VENV_BIN, run, tool_env

HOSTS_YML = """\
all:
  vars:
    kickstack_domain: example.test
  children:
    compute:
      vars:
        kickstack_profile: compute
      hosts:
        cmp[01:03]:
        cmp10:
          kickstack_disks: [sda]
          kickstack_ssh_keys: ["{{ kickstack_secrets.deploy_ssh_public_key }}"]
          nothing: null
    storage:
      hosts: sto01
      children:
        fast: {}
"""


def listing(inventory, plugin):
    env = dict(tool_env(), ANSIBLE_INVENTORY_ENABLED=f"ansible.builtin.host_list,{plugin}")
    result = run([VENV_BIN / "ansible-inventory", "-i", inventory, "--list"], env=env)
    assert result.returncode == 0, result.stderr[-2000:]
    start = result.stdout.index("{")
    return json.loads(result.stdout[start:result.stdout.rindex("}") + 1])


@pytest.fixture(params=["lab", "generated", "hand-written"])
def inventory(request, tmp_path):
    if request.param == "lab":
        return REPO / "inventory" / "lab"
    if request.param == "generated":
        out = tmp_path / "site"
        result = run([VENV_BIN / "python", REPO / "scripts" / "gen-inventory", "--hosts", "20", "--out", out])
        assert result.returncode == 0, result.stderr
        return out
    path = tmp_path / "hosts.yml"
    path.write_text(HOSTS_YML)
    return path


def test_same_inventory_as_the_builtin_yaml_plugin(inventory):
    ours = listing(inventory, "kickstack.core.yaml")
    builtin = listing(inventory, "ansible.builtin.yaml")
    assert ours == builtin
    assert len(ours["_meta"]["hostvars"]) >= 5
