"""Static tier: yamllint, ansible-lint (production profile, offline), syntax, collection ranges."""

import yaml
from conftest import REPO, VENV_BIN, run


def test_yamllint():
    result = run([VENV_BIN / "yamllint", "-s", "."])
    assert result.returncode == 0, result.stdout + result.stderr


def test_ansible_lint_production_profile():
    result = run([VENV_BIN / "ansible-lint", "--offline", "--nocolor", "--profile", "production"])
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]


def test_playbooks_syntax():
    for playbook in sorted((REPO / "playbooks").glob("*.yml")):
        result = run([VENV_BIN / "ansible-playbook", "--syntax-check", playbook])
        assert result.returncode == 0, f"{playbook.name}: {result.stdout}{result.stderr}"


def test_requirements_yml_is_satisfied_offline():
    result = run([VENV_BIN / "ansible-galaxy", "collection", "install", "--offline", "-r", "requirements.yml"])
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Nothing to do" in result.stdout


def test_every_role_declares_its_arguments():
    for role in sorted(p for p in (REPO / "roles").iterdir() if p.is_dir()):
        assert (role / "meta" / "argument_specs.yml").exists(), f"{role.name} has no meta/argument_specs.yml"
        assert (role / "defaults" / "main.yml").exists(), f"{role.name} has no defaults/main.yml"
        assert (role / "README.md").exists(), f"{role.name} has no README.md"


def _role_options(role):
    spec = yaml.safe_load((role / "meta" / "argument_specs.yml").read_text())["argument_specs"]
    options = {}
    for entry_point in spec.values():
        options.update(entry_point.get("options") or {})
    return options


def role_argument_problems(role):
    """What breaks "required means required" in one role: every option either has a default in
    defaults/main.yml or is required (no placeholder default that would keep `required` from
    ever firing), defaults hold no undeclared option, and a default stated in the spec is the
    one in defaults/main.yml."""
    options = _role_options(role)
    defaults = yaml.safe_load((role / "defaults" / "main.yml").read_text()) or {}
    required = {name for name, opt in options.items() if opt.get("required")}
    problems = [f"{role.name}: {name} is required but has a default in defaults/main.yml"
                for name in sorted(required & set(defaults))]
    problems += [f"{role.name}: {name} is neither required nor given a default"
                 for name in sorted(set(options) - required - set(defaults))]
    problems += [f"{role.name}: {name} is in defaults/main.yml but not in the argument spec"
                 for name in sorted(set(defaults) - set(options))]
    problems += [f"{role.name}: {name}: the spec's default {opt['default']!r} is not defaults/main.yml's "
                 f"{defaults.get(name)!r}"
                 for name, opt in sorted(options.items()) if "default" in opt and opt["default"] != defaults.get(name)]
    return problems


def test_required_means_required(tmp_path):
    roles = sorted(p for p in (REPO / "roles").iterdir() if p.is_dir())
    problems = [problem for role in roles for problem in role_argument_problems(role)]
    assert not problems, "\n".join(problems)
    # The check can fail: a placeholder default for a required option is reported.
    fake = tmp_path / "fake"
    (fake / "meta").mkdir(parents=True)
    (fake / "defaults").mkdir()
    (fake / "meta" / "argument_specs.yml").write_text(
        "argument_specs:\n  main:\n    options:\n      fake_host: {type: str, required: true}\n")
    (fake / "defaults" / "main.yml").write_text('fake_host: ""\n')
    assert role_argument_problems(fake) == ["fake: fake_host is required but has a default in defaults/main.yml"]


def test_handler_names_are_unique_across_roles():
    # Handlers share one namespace per play: two roles defining "Reload systemd" means only
    # one of them runs, at a time the other role did not plan for.
    seen = {}
    for handlers in sorted((REPO / "roles").glob("*/handlers/*.yml")):
        role = handlers.parts[-3]
        for handler in yaml.safe_load(handlers.read_text()) or []:
            listen = handler.get("listen") or []
            for name in [handler.get("name"), *([listen] if isinstance(listen, str) else listen)]:
                if name is not None:
                    assert seen.setdefault(name, role) == role, f'handler "{name}" is in {seen[name]} and {role}'


def test_platform_vars_load_one_way():
    # Every role with per-platform vars files loads them through the same tasks/set_vars.yml
    # (family, family_major, distribution, distribution_major; later files override earlier).
    roles = sorted(p for p in (REPO / "roles").iterdir() if p.is_dir())
    platform_roles = [r for r in roles if any(f.name != "main.yml" for f in (r / "vars").glob("*.yml"))]
    assert platform_roles, "no role has per-platform vars: the check below would prove nothing"
    reference = (REPO / "roles" / "common" / "tasks" / "set_vars.yml").read_text()
    for role in platform_roles:
        set_vars = role / "tasks" / "set_vars.yml"
        assert set_vars.is_file(), f"{role.name}: per-platform vars but no tasks/set_vars.yml"
        assert set_vars.read_text() == reference, f"{role.name}/tasks/set_vars.yml differs from common's"
        assert "include_tasks: set_vars.yml" in (role / "tasks" / "main.yml").read_text(), role.name
    for tasks in sorted((REPO / "roles").glob("*/tasks/*.yml")):
        assert "first_found" not in tasks.read_text(), f"{tasks}: load platform vars through set_vars.yml"
