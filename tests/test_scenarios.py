"""Converge tiers: molecule scenarios on real services (containers) and real kernels (VMs).

Each runs the whole molecule sequence (create, converge, idempotence, a `--check --diff`
pass where the scenario lists `check`, verify, destroy). Every playbook runs at -vvv with
diffs on (ANSIBLE_VERBOSITY and ANSIBLE_DIFF_ALWAYS in each molecule.yml), and the whole
output is then scanned for every secret of the lab (tests/leaks.py): a secret found fails the
test with its name and line number, never its value.
Run one alone with `.venv/bin/pytest tests/test_scenarios.py -k cloud` or, from the
repository root, `PATH=$PWD/.venv/bin:$PATH molecule test -s cloud`.
"""

import os
import re
import subprocess
import threading
import time

import pytest
import yaml
from conftest import REPO, VENV_BIN, read_secrets, run, tool_env
from leaks import describe, find_leaks, mask

SCENARIOS = sorted(p.name for p in (REPO / "molecule").iterdir() if (p / "molecule.yml").exists())


@pytest.mark.slow
@pytest.mark.skipif(os.geteuid() != 0, reason="containers and VMs need root")
@pytest.mark.parametrize("scenario", SCENARIOS)
def test_molecule_scenario(scenario, tmp_path, capsys):
    # The scenarios converge with the lab's inventory data, secrets included.
    secrets = run([VENV_BIN / "python", REPO / "scripts" / "kickstack-secrets", REPO / "inventory" / "lab"])
    assert secrets.returncode == 0, secrets.stderr
    # Every generated secret of the lab. The VM labs' BMC (tests/harness/bmc.py, started by
    # molecule/storage/create.yml) takes the lab's ipmi_password, so it is among them.
    lab_secrets = read_secrets(REPO / "inventory" / "lab")
    assert "ipmi_password" in lab_secrets
    output, returncode, elapsed, steps = run_molecule(scenario, timeout=45 * 60)
    timing = ", ".join(f"{step} {seconds:.0f} s" for step, seconds in steps)
    # On the terminal even when pytest captures output: CI's log shows the steps' times and
    # what the verifier reports of its own accord (the Tempest counts).
    with capsys.disabled():
        print(f"\nmolecule test -s {scenario}: {elapsed:.0f} s ({timing})")
        for line in re.findall(r"^tempest: .*$", output, re.M):
            print(f"molecule test -s {scenario}: {line}")
    leaks = find_leaks(output, lab_secrets)
    # The whole output, masked, for the post-mortem (line numbers match the leak report).
    saved = tmp_path / f"molecule-{scenario}.log"
    saved.write_text(mask(output, lab_secrets))
    print(f"output (secrets masked): {saved}")
    # Masked before it is cut: a secret across the cut would otherwise show in part.
    assert returncode == 0, (f"molecule test -s {scenario} failed after {elapsed:.0f} s (output: {saved})"
                             + (f" ({describe(leaks)})" if leaks else "") + ":\n"
                             + mask(output, lab_secrets)[-6000:])
    assert not leaks, f"molecule test -s {scenario}: " + describe(leaks)
    # Standalone delivery: the nodes configured themselves in create; the first push over SSH
    # (converge, site.yml) must change nothing on them: both modes end in the same node. (What
    # it writes on this machine, such as the admin's clouds.yaml next to the inventory, shows
    # as "changed: [ctl01 -> localhost]" and is not a change on the node.)
    lab = yaml.safe_load((REPO / "molecule" / scenario / "molecule.yml").read_text())["driver"].get("kickstack_lab", {})
    if lab.get("delivery") == "standalone":
        converge = step_output(output, "converge")
        assert "PLAY RECAP" in converge, f"no converge step in the output ({saved})"
        changed = node_changes(converge)
        assert not changed, f"site.yml changed standalone nodes after their first boot (output: {saved}): {changed}"
        # The scenario's idempotence step is left out (converge is already the nodes' second
        # run); the --check pass after it must find nothing to change, on this machine either.
        recap = recaps(step_output(output, "check"))
        assert {n: recap.get(n) for n in ("ctl01", "cmp01")} == {"ctl01": 0, "cmp01": 0}, \
            f"the --check pass after converge would change something (output: {saved}): {recap}"


# "[cloud > converge] Executing" (molecule 26 without colour) or "cloud ➜ converge: Executing".
STEP = re.compile(r"(?:\[[\w.-]+ > (\w+)\]|➜ (\w+):) Executing")


def node_changes(text):
    """[(task, host)] of every change a run made on a node itself (not delegated elsewhere)."""
    found, task = [], None
    for line in text.splitlines():
        line = re.sub(r"^\s*│ ?", "", line)  # molecule's frame around Ansible's output
        if line.startswith("TASK ["):
            task = line[6:].split("]", 1)[0]
        match = re.match(r"changed: \[([^\]\s]+)\]", line)
        if match:
            found.append((task, match.group(1)))
    return found


def recaps(text):
    """{host: changed} of the last PLAY RECAP in text."""
    found = {}
    for line in text.splitlines():
        match = re.match(r"(\S+)\s+: ok=\d+\s+changed=(\d+)", re.sub(r"^\s*│ ?", "", line))
        if match:
            found[match.group(1)] = int(match.group(2))
    return found


def step_output(output, step):
    """The part of molecule's output from the step's "Executing" line to the next step's."""
    parts, current = {}, None
    for line in output.splitlines(keepends=True):
        found = STEP.search(ANSI.sub("", line))
        if found:
            current = found.group(1) or found.group(2)
        parts[current] = parts.get(current, "") + line
    return ANSI.sub("", parts.get(step, ""))
ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


def run_molecule(scenario, timeout):
    """(output, return code, seconds, [(step, seconds)]) of `molecule test -s scenario`."""
    env = tool_env()
    env["NO_COLOR"] = "1"
    start = time.monotonic()
    proc = subprocess.Popen([str(VENV_BIN / "molecule"), "test", "-s", scenario], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, errors="replace")
    timer = threading.Timer(timeout, proc.kill)
    timer.start()
    lines, steps, current, since = [], [], None, start
    try:
        for line in proc.stdout:
            lines.append(line)
            found = STEP.search(ANSI.sub("", line))
            if found:
                now = time.monotonic()
                if current:
                    steps.append((current, now - since))
                current, since = found.group(1) or found.group(2), now
        returncode = proc.wait()
    finally:
        timer.cancel()
    end = time.monotonic()
    if current:
        steps.append((current, end - since))
    return "".join(lines), returncode, end - start, steps
