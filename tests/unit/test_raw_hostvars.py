"""Preflight's shortcut to each host's variables (group part built once per set of groups)
must give exactly what Ansible's own hostvars give, for every kickstack_* key."""

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "collections"))

from ansible.inventory.manager import InventoryManager  # noqa: E402
from ansible.parsing.dataloader import DataLoader  # noqa: E402
from ansible.parsing.vault import VaultSecret  # noqa: E402
from ansible.plugins.loader import init_plugin_loader  # noqa: E402
from ansible.vars.hostvars import HostVars  # noqa: E402
from ansible.vars.manager import VariableManager  # noqa: E402
from ansible_collections.kickstack.core.plugins.action.preflight import _lookup, _RawHostVars  # noqa: E402

HOSTS = """\
all:
  vars:
    kickstack_domain: inventory-all.test
    kickstack_kernel_args: [quiet]
  children:
    compute:
      vars:
        kickstack_profile: compute
        kickstack_disks: [sda]
      hosts:
        cmp01:
        cmp02:
        cmp03:
          kickstack_disks: [nvme0n1]
      children:
        fast:
          vars:
            kickstack_disks: [vda]
          hosts:
            cmp03:
            cmp04:
    storage:
      hosts:
        sto01:
          kickstack_drbd_disk: "{{ 'vd' ~ 'b' }}"
"""


_LOADER_READY = []


def _hostvars(inventory, extra=None):
    if not _LOADER_READY:  # once per process: a second call only warns
        init_plugin_loader([str(REPO / "collections")])
        _LOADER_READY.append(True)
    loader = DataLoader()
    password = subprocess.run([REPO / "scripts" / "vault-password"], capture_output=True, text=True,
                              check=True).stdout.strip().encode()
    loader.set_vault_secrets([("default", VaultSecret(password))])
    manager = InventoryManager(loader=loader, sources=[str(inventory)])
    variables = VariableManager(loader=loader, inventory=manager)
    if extra:
        variables._extra_vars = extra
    return manager, HostVars(manager, variables, loader)


def _hand_written(tmp_path):
    (tmp_path / "group_vars").mkdir()
    (tmp_path / "host_vars").mkdir()
    (tmp_path / "hosts.yml").write_text(HOSTS)
    (tmp_path / "group_vars" / "all.yml").write_text("kickstack_domain: group-vars-all.test\nkickstack_ntp_servers: [ntp]\n")
    (tmp_path / "group_vars" / "fast.yml").write_text("kickstack_os_disk: vda\n")
    (tmp_path / "host_vars" / "cmp02.yml").write_text("kickstack_disks: [sdb]\nkickstack_os_disk: sdb\n")
    return tmp_path / "hosts.yml"


@pytest.mark.parametrize("site", ["lab", "hand-written", "hand-written with extra vars"])
def test_shortcut_matches_hostvars(site, tmp_path):
    inventory = REPO / "inventory" / "lab" if site == "lab" else _hand_written(tmp_path)
    extra = {"kickstack_disks": ["xvda"]} if "extra" in site else None
    manager, hostvars = _hostvars(inventory, extra)
    reader = _RawHostVars(hostvars)
    assert reader.usable
    names = [host.name for host in manager.get_hosts()]
    assert names
    for name in names:
        full = hostvars.raw_get(name)
        layers, group_names = reader.layers(name)
        keys = {k for k in full if k.startswith("kickstack_")} | {
            k for layer in layers for k in layer if k.startswith("kickstack_")}
        for key in keys:
            assert _lookup(layers, key) == (key in full, full.get(key)), f"{name} {key}"
        assert group_names == full["group_names"], name
    if site != "lab":
        # Precedence the comparison covers: group_vars/all over inventory 'all' vars, a child
        # group over its parent, host_vars over the host's inventory line, extra vars over all.
        get = {name: hostvars.raw_get(name) for name in names}
        assert get["cmp01"]["kickstack_domain"] == "group-vars-all.test"
        assert get["cmp02"]["kickstack_disks"] == (["xvda"] if extra else ["sdb"])
        assert get["cmp04"]["kickstack_disks"] == (["xvda"] if extra else ["vda"])
        assert get["cmp03"]["kickstack_disks"] == (["xvda"] if extra else ["nvme0n1"])


def test_shortcut_steps_aside_for_set_fact(tmp_path):
    manager, hostvars = _hostvars(_hand_written(tmp_path))
    hostvars._variable_manager._nonpersistent_fact_cache["cmp01"] = {"kickstack_disks": ["set-by-fact"]}
    reader = _RawHostVars(hostvars)
    assert reader.layers("cmp01") is None
    assert reader.layers("cmp02") is not None


def _check_site_both_ways(inventory, monkeypatch):
    """check_site's model with the shortcuts, and with every host read through hostvars."""
    import yaml
    from ansible.template import Templar
    from ansible_collections.kickstack.core.plugins.action import preflight

    manager, hostvars = _hostvars(inventory)
    variables = hostvars._variable_manager
    task_vars = variables.get_vars(host=manager.get_host("localhost"))
    templar = Templar(loader=hostvars._loader, variables=task_vars)
    pre = yaml.safe_load((REPO / "roles" / "preflight" / "vars" / "main.yml").read_text())
    args = {"platforms": pre["__preflight_platforms"], "required_secrets": pre["__preflight_required_secrets"]}
    resolved = []
    real = preflight._resolve_secret_refs

    def spy(value, secrets):
        result = real(value, secrets)
        resolved.append(result is not preflight._UNRESOLVED)
        return result

    monkeypatch.setattr(preflight, "_resolve_secret_refs", spy)
    fast = preflight.check_site(task_vars, templar, args)
    monkeypatch.setattr(preflight._RawHostVars, "layers", lambda self, name: None)
    slow = preflight.check_site(task_vars, templar, args)
    return fast, slow, resolved


@pytest.mark.parametrize("site", ["lab", "generated"])
def test_check_site_same_model_with_and_without_shortcuts(site, tmp_path, monkeypatch):
    if site == "lab":
        inventory = REPO / "inventory" / "lab"
    else:
        inventory = tmp_path / "inv"
        subprocess.run([sys.executable, REPO / "scripts" / "gen-inventory", "--hosts", "40", "--out", inventory],
                       check=True, stdout=subprocess.DEVNULL)
    (fast_model, fast_problems), (slow_model, slow_problems), resolved = _check_site_both_ways(inventory, monkeypatch)
    assert fast_problems == slow_problems == []
    assert fast_model == slow_model
    # The fast run resolved the storage nodes' fence passwords ("{{ kickstack_secrets.ipmi_password }}")
    # without the templar, and the slow run (no shortcut at all) agreed on the whole model.
    assert resolved and all(resolved), resolved


def test_unparsable_vars_file_is_named(tmp_path):
    """A group_vars file Ansible cannot parse loads only when preflight reads the variables;
    preflight's problem line names that file and line, not the task."""
    from ansible.errors import AnsibleError
    from ansible_collections.kickstack.core.plugins.action.preflight import unreadable_file
    (tmp_path / "hosts.yml").write_text("all:\n  children:\n    compute:\n      hosts:\n        cmp01:\n")
    (tmp_path / "group_vars").mkdir()
    broken = tmp_path / "group_vars" / "compute.yml"
    broken.write_text("---\nkickstack_profile: compute\nkickstack_disks: [sda\n")
    manager, hostvars = _hostvars(tmp_path)
    with pytest.raises(AnsibleError) as caught:
        _RawHostVars(hostvars).layers("cmp01")
    line = unreadable_file(caught.value)
    assert line.startswith(f"inventory file {broken}, line "), line
    assert "YAML" in line and "Fix:" in line, line
