# -*- coding: utf-8 -*-
"""Action plugin behind kickstack.core.preflight: validate the whole inventory in one pass.

It runs on the controller, reads every host's kickstack_* variables once, and either fails
with every problem listed (host and field named) or returns the resolved model as the fact
``kickstack_model``. Secret values are only tested for presence and never returned.
"""

from __future__ import annotations

import gc
from ansible.errors import AnsibleError
from ansible.plugins.action import ActionBase

from ansible_collections.kickstack.core.plugins.module_utils.model import (
    HOST_KEYS,
    SITE_KEYS,
    Unresolvable,
    build_model,
)


def _read(getter, key):
    """Evaluate one variable; an evaluation error becomes an Unresolvable, never a traceback."""
    try:
        return getter(key)
    except KeyError:
        return None
    except AnsibleError as exc:
        return Unresolvable(str(exc).splitlines()[0])
    except Exception as exc:  # a broken value must not end the run with a traceback
        return Unresolvable(f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}")


_TEMPLATE_MARKS = ("{{", "{%", "{#")


def _plain(value, seen):
    """True when no string in value carries Jinja: it needs no templating (cached by object,
    since the site-wide values of group_vars/all are the same objects on every host)."""
    key = id(value)
    if key in seen:
        return seen[key]
    if isinstance(value, str):
        plain = not any(mark in value for mark in _TEMPLATE_MARKS)
    elif isinstance(value, dict):
        plain = all(_plain(k, seen) and _plain(v, seen) for k, v in value.items())
    elif isinstance(value, (list, tuple)):
        plain = all(_plain(v, seen) for v in value)
    else:
        plain = True
    seen[key] = plain
    return plain


def check_site(task_vars, templar, args):
    """Read every host's kickstack_* variables once and build the model: (model, problems).

    Shared by this action and kickstack.core.pxe_render, which checks and renders in one task
    for kickstart.yml (no site-sized fact handed from task to task).
    """
    platforms = args.get("platforms") or {}
    required_secrets = args.get("required_secrets") or {}

    def site_get(key):
        if key not in task_vars:
            raise KeyError(key)
        return templar.template(task_vars[key])

    site_vars = {}
    for key in SITE_KEYS:
        if key == "kickstack_secrets":
            continue
        value = _read(site_get, key)
        if value is not None:
            site_vars[key] = value

    hostvars = task_vars["hostvars"]
    hosts = {}
    seen = {}
    for name in task_vars["groups"]["all"]:
        hv = hostvars[name]
        # The host's variables before templating: plain data is taken as it is, and only
        # values with Jinja in them are templated (per key, in the host's context).
        raw = getattr(hv, "_vars", None)
        hosts[name] = {}
        for key in HOST_KEYS:
            if raw is not None:
                if key not in raw:
                    continue
                if _plain(raw[key], seen):
                    if raw[key] is not None:
                        hosts[name][key] = raw[key]
                    continue
            value = _read(hv.__getitem__, key)
            if value is not None:
                hosts[name][key] = value
        groups = raw.get("group_names") if raw is not None else None
        if not (isinstance(groups, list) and _plain(groups, seen)):
            groups = _read(hv.__getitem__, "group_names")
        if isinstance(groups, list):
            hosts[name]["group_names"] = groups

    secrets = _read(site_get, "kickstack_secrets")
    model = build_model(site_vars, hosts, platforms, required_secrets, secrets,
                        require_pxe=bool(args.get("require_pxe", True)))
    return model, model.pop("problems")


def without_gc(func, *args):
    """Call func with the cyclic garbage collector off: reading a large inventory and rendering
    make many objects that all stay alive until the task ends, which it would only walk over
    and over."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        return func(*args)
    finally:
        if enabled:
            gc.enable()


def fail_on(result, problems):
    """Fill result as a failure listing every problem; nothing was touched."""
    result["failed"] = True
    result["problems"] = problems
    result["msg"] = (f"The inventory has {len(problems)} problem(s); nothing was touched.\n"
                     + "\n".join(f"  - {p}" for p in problems))
    return result


class ActionModule(ActionBase):
    TRANSFERS_FILES = False
    _requires_connection = False

    def run(self, tmp=None, task_vars=None):
        return without_gc(self._run, tmp, task_vars)

    def _run(self, tmp=None, task_vars=None):
        result = super().run(tmp, task_vars)
        task_vars = task_vars or {}
        args = self._task.args
        model, problems = check_site(task_vars, self._templar, args)
        if problems:
            return fail_on(result, problems)
        if not args.get("converge", True):
            # Provisioning renders from the install facts only: the converge facts (DRBD,
            # cluster, /etc/hosts entries) would be carried along by every later task for
            # nothing. They were built and checked all the same.
            model["site"].pop("hosts_entries", None)
            for host in model["hosts"].values():
                host.pop("drbd", None)
                host.pop("cluster", None)
        result["changed"] = False
        result["msg"] = f"inventory OK: {len(model['hosts'])} hosts"
        result["ansible_facts"] = {"kickstack_model": model}
        return result
