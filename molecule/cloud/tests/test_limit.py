"""A --limit run sees the whole site: `common.yml --limit cmp01` after the converge changes
nothing on cmp01 and leaves the controller in its /etc/hosts (the site model is built from the
whole inventory by preflight, not from the play's hosts)."""

import os
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]


def test_limit_run_keeps_the_rest_of_the_site(host):
    if host.backend.get_hostname() != "cmp01":
        pytest.skip("runs on cmp01")
    inventory = Path(os.environ["MOLECULE_INVENTORY_FILE"]).parent
    env = dict(os.environ)
    env.pop("ANSIBLE_LOG_PATH", None)
    result = subprocess.run(
        [REPO / ".venv" / "bin" / "ansible-playbook", "-i", inventory, REPO / "playbooks" / "common.yml",
         "--limit", "cmp01"],
        capture_output=True, text=True, env=env, cwd=REPO, timeout=900, check=False)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-3000:]
    recap = [line for line in output.splitlines() if line.startswith("cmp01 ")]
    assert recap and "changed=0" in recap[-1], output[-3000:]
    assert not [line for line in output.splitlines() if line.startswith("ctl01 ")], "the limit was not kept"
    assert host.check_output("getent hosts ctl01").split()[:2] == [os.environ.get("KICKSTACK_TEST_CTL_IP", "10.60.0.11"), "ctl01.lab.kickstack.test"]
