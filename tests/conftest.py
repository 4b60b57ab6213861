"""Shared fixtures: the project's venv, throwaway copies of inventories, rendered PXE trees."""

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parent.parent
VENV_BIN = REPO / ".venv" / "bin"
sys.path.insert(0, str(REPO / "tests"))


def tool_env():
    env = os.environ.copy()
    env["PATH"] = f"{VENV_BIN}:{env.get('PATH', '/usr/bin:/bin')}"
    env["ANSIBLE_CONFIG"] = str(REPO / "ansible.cfg")
    env["ANSIBLE_FORCE_COLOR"] = "0"
    env["ANSIBLE_NOCOLOR"] = "1"
    env.pop("ANSIBLE_VAULT_PASSWORD_FILE", None)
    return env


def platform_vars_files(role: str, facts: dict) -> list:
    """The files roles/<role>/tasks/set_vars.yml loads for these facts, in its order (later wins)."""
    family, dist, major = facts["os_family"], facts["distribution"], facts["distribution_major_version"]
    names = (f"{family}.yml", f"{family}_{major}.yml", f"{dist}.yml", f"{dist}_{major}.yml")
    found = [REPO / "roles" / role / "vars" / n for n in names if (REPO / "roles" / role / "vars" / n).is_file()]
    assert found, f"{role}: no vars file for {facts}"
    return found


def run(cmd, **kwargs):
    kwargs.setdefault("cwd", REPO)
    kwargs.setdefault("env", tool_env())
    return subprocess.run([str(c) for c in cmd], capture_output=True, text=True, **kwargs)


def run_playbook(playbook, inventory, build_dir, *extra):
    return run([VENV_BIN / "ansible-playbook", "-i", inventory, REPO / "playbooks" / playbook,
                "-e", f"kickstack_build_dir={build_dir}", *extra])


def copy_lab(dest: Path) -> Path:
    """A copy of inventory/lab without the checkout's generated secrets, with fresh ones."""
    shutil.copytree(REPO / "inventory" / "lab", dest,
                    ignore=shutil.ignore_patterns("secrets.yml", ".generated"))
    result = run([VENV_BIN / "python", REPO / "scripts" / "kickstack-secrets", dest])
    assert result.returncode == 0, result.stderr
    return dest


def read_secrets(inventory: Path) -> dict:
    from ansible.parsing.vault import VaultLib, VaultSecret
    password = run([REPO / "scripts" / "vault-password"]).stdout.strip().encode()
    vault = VaultLib([("default", VaultSecret(password))])
    data = (inventory / "group_vars" / "all" / "secrets.yml").read_bytes()
    return yaml.safe_load(vault.decrypt(data))["kickstack_secrets"]


@dataclass
class Render:
    inventory: Path
    build: Path
    output: str

    def kickstarts(self):
        return sorted((self.build / "ks").glob("*.ks"))


def render_site(inventory: Path, build: Path) -> Render:
    result = run_playbook("kickstart.yml", inventory, build, "-v")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return Render(inventory, build, result.stdout + result.stderr)


@pytest.fixture(scope="session")
def lab_render(tmp_path_factory):
    base = tmp_path_factory.mktemp("lab")
    return render_site(copy_lab(base / "inventory"), base / "pxe")


# The lab's hosts that the standalone render delivers in standalone mode (one per profile); the
# others stay bootstrap, as a site mixing both does.
STANDALONE_HOSTS = ("ctl01", "cmp01", "stor01")


@pytest.fixture(scope="session")
def standalone_render(tmp_path_factory):
    """The lab with one host of each profile in standalone mode (kickstack_delivery in host_vars)."""
    base = tmp_path_factory.mktemp("standalone")
    inventory = copy_lab(base / "inventory")
    for name in STANDALONE_HOSTS:
        with open(inventory / "host_vars" / f"{name}.yml", "a") as handle:
            handle.write("kickstack_delivery: standalone\n")
    return render_site(inventory, base / "pxe")


@pytest.fixture(scope="session")
def matrix_render(tmp_path_factory):
    """A generated site where every profile meets every supported OS release."""
    base = tmp_path_factory.mktemp("matrix")
    result = run([VENV_BIN / "python", REPO / "scripts" / "gen-inventory", "--hosts", "70",
                  "--out", base / "inventory"])
    assert result.returncode == 0, result.stderr
    return render_site(base / "inventory", base / "pxe")
