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


# "[cloud > converge] Executing" (molecule 26 without colour) or "cloud ➜ converge: Executing".
STEP = re.compile(r"(?:\[[\w.-]+ > (\w+)\]|➜ (\w+):) Executing")
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
