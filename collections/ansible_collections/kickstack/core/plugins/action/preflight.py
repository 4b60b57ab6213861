# -*- coding: utf-8 -*-
"""Action plugin behind kickstack.core.preflight: validate the whole inventory in one pass.

It runs on the controller, reads every host's kickstack_* variables once, and either fails
with every problem listed (host and field named) or returns the resolved model as the fact
``kickstack_model``. Secret values are only tested for presence and never returned.
"""

from __future__ import annotations

from ansible.errors import AnsibleError
from ansible.plugins.action import ActionBase

from ansible_collections.kickstack.core.plugins.module_utils.model import (
    HOST_KEYS,
    Unresolvable,
    build_model,
)

SITE_KEYS = (
    "kickstack_domain",
    "kickstack_networks",
    "kickstack_boot_network",
    "kickstack_timezone",
    "kickstack_time_sources",
    "kickstack_mirror_url",
    "kickstack_extra_repos",
    "kickstack_deploy_user",
    "kickstack_deploy_ssh_keys",
    "kickstack_os",
    "kickstack_language",
    "kickstack_keyboard",
    "kickstack_replication_network",
    "kickstack_drbd_version",
    "kickstack_drbd_dual_primary",
    "kickstack_drbd_fencing",
    "kickstack_drbd_allow_dual_primary_without_fencing",
)


def _read(getter, key):
    """Evaluate one variable; an evaluation error becomes an Unresolvable, never a traceback."""
    try:
        return getter(key)
    except KeyError:
        return None
    except AnsibleError as exc:
        return Unresolvable(str(exc).splitlines()[0])


class ActionModule(ActionBase):
    TRANSFERS_FILES = False
    _requires_connection = False

    def run(self, tmp=None, task_vars=None):
        result = super().run(tmp, task_vars)
        task_vars = task_vars or {}
        args = self._task.args
        platforms = args.get("platforms") or {}
        required_secrets = args.get("required_secrets") or {}

        templar = self._templar

        def site_get(key):
            if key not in task_vars:
                raise KeyError(key)
            return templar.template(task_vars[key])

        site_vars = {}
        for key in SITE_KEYS:
            value = _read(site_get, key)
            if value is not None:
                site_vars[key] = value
        unresolved = [f"site: {k}: cannot be evaluated: {v.reason}"
                      for k, v in site_vars.items() if isinstance(v, Unresolvable)]
        site_vars = {k: v for k, v in site_vars.items() if not isinstance(v, Unresolvable)}

        hostvars = task_vars["hostvars"]
        hosts = {}
        for name in task_vars["groups"]["all"]:
            hv = hostvars[name]
            hosts[name] = {}
            for key in HOST_KEYS:
                value = _read(hv.__getitem__, key)
                if value is not None:
                    hosts[name][key] = value

        secrets = _read(site_get, "kickstack_secrets")
        model = build_model(site_vars, hosts, platforms, required_secrets, secrets,
                            require_pxe=bool(args.get("require_pxe", True)))
        problems = unresolved + model.pop("problems")
        if problems:
            result["failed"] = True
            result["problems"] = problems
            result["msg"] = (f"The inventory has {len(problems)} problem(s); nothing was touched.\n"
                             + "\n".join(f"  - {p}" for p in problems))
            return result
        result["changed"] = False
        result["msg"] = f"inventory OK: {len(model['hosts'])} hosts"
        result["ansible_facts"] = {"kickstack_model": model}
        return result
