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


def test_fast_path_keeps_templates_vault_and_duplicate_warnings(tmp_path):
    # Read through libyaml: Jinja in a host variable is still templated, a duplicate key is
    # reported as Ansible reports it, and a file with a vault tag goes through Ansible's loader.
    (tmp_path / "hosts.yml").write_text(
        "all:\n  hosts:\n    h1:\n      greeting: \"{{ 'hel' ~ 'lo' }}\"\n      size: 1\n      size: 2\n")
    env = dict(tool_env(), ANSIBLE_INVENTORY_ENABLED="kickstack.core.yaml")
    result = run([VENV_BIN / "ansible", "-i", tmp_path / "hosts.yml", "h1", "-c", "local", "-m", "debug",
                  "-a", "msg='{{ greeting }} {{ size }}'"], env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "msg: hello 2" in result.stdout, result.stdout
    assert "duplicate mapping key 'size'" in result.stdout + result.stderr
    env["ANSIBLE_DUPLICATE_YAML_DICT_KEY"] = "error"
    env["ANSIBLE_INVENTORY_UNPARSED_FAILED"] = "true"
    result = run([VENV_BIN / "ansible-inventory", "-i", tmp_path / "hosts.yml", "--list"], env=env)
    assert result.returncode != 0 and "duplicate mapping key 'size'" in result.stdout + result.stderr

    vaulted = run([VENV_BIN / "ansible-vault", "encrypt_string", "s3cret", "--name", "secret"], env=tool_env())
    assert vaulted.returncode == 0, vaulted.stderr
    body = "\n".join("      " + line for line in vaulted.stdout.strip().splitlines())
    (tmp_path / "vaulted.yml").write_text(f"all:\n  hosts:\n    h2:\n{body}\n")
    env["ANSIBLE_DUPLICATE_YAML_DICT_KEY"] = "warn"
    result = run([VENV_BIN / "ansible", "-i", tmp_path / "vaulted.yml", "h2", "-c", "local", "-m", "debug",
                  "-a", "msg={{ secret }}"], env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "msg: s3cret" in result.stdout, result.stdout
