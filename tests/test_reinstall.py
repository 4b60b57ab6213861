"""playbooks/reinstall.yml refuses, before it touches the boot server or any BMC: a run
without --limit, the boot server, storage nodes and the controller unless forced per host,
and hosts without kickstack_bmc. Nothing here is reachable, so a refusal that came too late
would fail differently. (The reinstall itself is proven by tests/test_pxe_boot.py.)"""

import re

from conftest import copy_lab, run_playbook


def test_reinstall_refusals(tmp_path):
    inv = copy_lab(tmp_path / "inventory")
    build = tmp_path / "pxe"
    r = run_playbook("reinstall.yml", inv, build)
    out = r.stdout + r.stderr
    assert r.returncode != 0 and "name the hosts with --limit" in re.sub(r"\s+", " ", out), out[-3000:]

    # stor01 (storage, not forced), ctl01 (forced, but the lab gives it no BMC), cmp02 (no BMC),
    # pxe01 (the boot server); cmp01 alone would pass the checks.
    r = run_playbook("reinstall.yml", inv, build, "--limit", "stor01,ctl01,cmp02,pxe01",
                     "-e", "kickstack_reinstall_force=ctl01")
    out = re.sub(r"\s+", " ", r.stdout + r.stderr)
    assert r.returncode != 0, out[-3000:]
    assert ("stor01: it is the storage node and its disks hold the site's data: reinstall it only on purpose, "
            "with -e kickstack_reinstall_force=stor01") in out, out[-3000:]
    assert "ctl01: it has no kickstack_bmc" in out and "cmp02: it has no kickstack_bmc" in out, out[-3000:]
    assert "pxe01: it is the boot server" in out, out[-3000:]
    assert "Put the hosts back into build mode" not in out, "a refused run went on"
