"""Helpers for the pure-Python model tests: build_model on the lab's own YAML, no ansible-playbook."""

import copy
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "collections"))

from ansible_collections.kickstack.core.plugins.module_utils import model  # noqa: E402

LAB = REPO / "inventory" / "lab"
PREFLIGHT_VARS = yaml.safe_load((REPO / "roles" / "preflight" / "vars" / "main.yml").read_text())
PLATFORMS = PREFLIGHT_VARS["__preflight_platforms"]
REQUIRED = PREFLIGHT_VARS["__preflight_required_secrets"]

# A real ed25519 public key (its blob starts with the type string) and fixture secrets.
DEPLOY_KEY = ("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIM3bfljhiN7sBBA13LEKRE3KC1d0/ojO0NlCPY3DESjq "
              "kickstack deploy")
SECRETS = {name: "x" * 20 for names in REQUIRED.values() for name in names}
SECRETS.update({"ipmi_password": "fixture-ipmi", "deploy_ssh_public_key": DEPLOY_KEY})


def _resolve(value, secrets):
    """The two templates the lab uses, resolved as Ansible would."""
    if value == "{{ kickstack_secrets.deploy_ssh_public_key }}":
        return secrets["deploy_ssh_public_key"]
    if value == "{{ kickstack_secrets.ipmi_password }}":
        return secrets["ipmi_password"]
    if isinstance(value, list):
        return [_resolve(v, secrets) for v in value]
    if isinstance(value, dict):
        return {k: _resolve(v, secrets) for k, v in value.items()}
    return value


def load_lab():
    """(site_vars, hosts) of inventory/lab, group and host vars merged per host as Ansible does."""
    site = yaml.safe_load((LAB / "group_vars" / "all" / "site.yml").read_text())
    inventory = yaml.safe_load((LAB / "hosts.yml").read_text())
    hosts = {}
    for group, spec in inventory["all"]["children"].items():
        group_file = LAB / "group_vars" / f"{group}.yml"
        group_vars = yaml.safe_load(group_file.read_text()) if group_file.exists() else {}
        for name in spec["hosts"]:
            hv = dict(site)
            hv.update(group_vars)
            host_file = LAB / "host_vars" / f"{name}.yml"
            hv.update(yaml.safe_load(host_file.read_text()) if host_file.exists() else {})
            hv = {k: v for k, v in hv.items() if k in model.HOST_KEYS}
            hv["group_names"] = [group]
            hosts[name] = _resolve(hv, SECRETS)
    site = {k: _resolve(v, SECRETS) for k, v in site.items() if k in model.SITE_KEYS}
    return site, hosts


_LAB = load_lab()


@pytest.fixture
def lab():
    site, hosts = copy.deepcopy(_LAB)
    return site, hosts


_DEFAULT = object()


def build(site, hosts, secrets=_DEFAULT, require_pxe=True):
    return model.build_model(site, hosts, PLATFORMS, REQUIRED,
                             copy.deepcopy(SECRETS) if secrets is _DEFAULT else secrets, require_pxe=require_pxe)
