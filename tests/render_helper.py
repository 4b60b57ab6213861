"""The one way render tests reach a role's templates, without a test switch in the role.

A render is a throwaway playbook of one play per job. Each play gets the role's variables as
the role would see them on a host with the given OS facts (defaults/main.yml, vars/main.yml,
then the platform files tasks/set_vars.yml loads, later wins), then the job's own variables,
and writes the role's templates with the `template` module. Optionally it first runs the
role's input checks (roles/<role>/tasks/checks.yml, through include_role), so a render also
shows what the role refuses.

Two ways to give a job its variables:
  - by hand (vars={...}): the play runs on localhost, files land in OUT/<dest>;
  - from a step playbook (vars=playbook_vars("storage.yml", "drbd")): the play runs on an
    inventory's hosts after preflight.yml, with the site model (playbooks/vars/model.yml), so
    the role's inputs are exactly what that playbook hands it; files land in
    OUT/<host>/<dest>. Nothing reaches a node: the run is `-c local`.
"""

import json
from dataclasses import dataclass, field
from pathlib import Path

import yaml
from conftest import REPO, VENV_BIN, platform_vars_files, run

ROLES = REPO / "roles"
PLAYBOOKS = REPO / "playbooks"

FEDORA = {"os_family": "RedHat", "distribution": "Fedora", "distribution_major_version": "45"}
EL10 = {"os_family": "RedHat", "distribution": "CentOS", "distribution_major_version": "10"}
DEBIAN = {"os_family": "Debian", "distribution": "Debian", "distribution_major_version": "12"}


def role_vars(role: str, facts: dict) -> dict:
    """roles/<role>'s variables for a host with these OS facts: defaults, vars/main.yml, then
    the platform vars files in tasks/set_vars.yml's order (later wins)."""
    data = {}
    for f in (ROLES / role / "defaults" / "main.yml", ROLES / role / "vars" / "main.yml",
              *platform_vars_files(role, facts)):
        if f.exists():
            data.update(yaml.safe_load(f.read_text()) or {})
    return data


def playbook_vars(playbook: str, role: str) -> dict:
    """What playbooks/<playbook> hands <role>: its play's vars, then the role entry's vars."""
    for play in yaml.safe_load((PLAYBOOKS / playbook).read_text()):
        for entry in play.get("roles", []):
            if isinstance(entry, dict) and entry.get("role") == role:
                return {**(play.get("vars") or {}), **(entry.get("vars") or {})}
    raise AssertionError(f"{playbook} runs no role {role}")


@dataclass
class Job:
    """One role's templates: files is [(template under roles/<role>/templates, dest, mode)]."""
    role: str
    files: list
    vars: dict = field(default_factory=dict)
    facts: dict = field(default_factory=lambda: dict(EL10))
    checks: bool = False


def render(out: Path, jobs: list, *, inventory: Path = None, hosts: str = None, extra: tuple = ()):
    """Render the jobs; returns the ansible-playbook result (the caller asserts on it).
    Without an inventory: one host, HOSTS (default localhost; a role may check its own name),
    files in OUT/<dest>. With one: preflight, then HOSTS (default storage), OUT/<host>/<dest>."""
    hosts = hosts or ("storage" if inventory else "localhost")
    out = Path(out)
    prefix = f"{out}/{{{{ inventory_hostname }}}}" if inventory else str(out)
    plays = [{"ansible.builtin.import_playbook": str(PLAYBOOKS / "preflight.yml")}] if inventory else []
    for job in jobs:
        tasks = []
        if job.checks:
            tasks.append({"name": f"Check the {job.role} inputs",
                          "ansible.builtin.include_role": {"name": job.role, "tasks_from": "checks"}})
        for template, dest, mode in job.files:
            # dest may name the role's own path variables ("{{ __drbd_conf_dir }}/r0.res").
            path = {"__render_dest": f"{prefix}/{dest}"}
            tasks += [
                {"name": f"Directory of {dest}", "vars": path, "ansible.builtin.file": {
                    "path": "{{ __render_dest | dirname }}", "state": "directory", "mode": "0755"}},
                {"name": f"Render {template} to {dest}", "vars": path, "ansible.builtin.template": {
                    "src": str(ROLES / job.role / "templates" / template), "dest": "{{ __render_dest }}", "mode": mode}},
            ]
        play = {"name": f"{job.role}: {', '.join(f[0] for f in job.files)}",
                "hosts": hosts, "gather_facts": False,
                "vars": {**role_vars(job.role, job.facts), **job.vars},
                "tasks": tasks}
        if inventory:
            play["vars_files"] = [str(PLAYBOOKS / "vars" / "model.yml")]
        plays.append(play)
    out.mkdir(parents=True, exist_ok=True)
    pb = out.parent / f"{out.name}-render.yml"
    pb.write_text(json.dumps(plays))
    return run([VENV_BIN / "ansible-playbook", "-i", inventory or f"{hosts},", "-c", "local",
                "-e", f"ansible_python_interpreter={VENV_BIN / 'python'}", pb, *extra])
