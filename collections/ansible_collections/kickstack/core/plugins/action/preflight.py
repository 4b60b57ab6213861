# -*- coding: utf-8 -*-
"""Action plugin behind kickstack.core.preflight: validate the whole inventory in one pass.

It runs on the controller, reads every host's kickstack_* variables once, and either fails
with every problem listed (host and field named) or returns the resolved model as the fact
``kickstack_model``. Secret values are only tested for presence and never returned.
"""

from __future__ import annotations

import gc
import re

from ansible import constants as C
from ansible.errors import AnsibleError
from ansible.inventory.helpers import get_group_vars, sort_groups
from ansible.plugins.action import ActionBase
from ansible.vars.plugins import get_vars_from_inventory_sources, get_vars_from_path

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


class _RawHostVars:
    """Each host's variables before templating, as ``hostvars[host]`` holds them, for the keys
    preflight reads, built from the inventory's layers instead of one full variable build per
    host. The group part (the 'all' group and the host's groups, inventory and vars-plugin
    sources, in Ansible's configured precedence) is built once per distinct set of groups and
    shared by every host with that set; host variables and extra vars are looked up on top,
    key by key, as Ansible's "replace" hash behaviour combines them.

    ``layers(name)`` returns None wherever this shortcut could differ from Ansible's own build
    (merge hash behaviour, facts or set_fact variables for the host, an unknown precedence
    entry): the caller then reads ``hostvars[name]``.
    """

    _STAGES = ("all_inventory", "all_plugins_inventory", "all_plugins_play",
               "groups_inventory", "groups_plugins_inventory", "groups_plugins_play")

    def __init__(self, hostvars):
        self._vm = getattr(hostvars, "_variable_manager", None)
        self._inventory = getattr(hostvars, "_inventory", None)
        self._loader = getattr(hostvars, "_loader", None)
        self._groups = {}
        self.usable = (
            self._vm is not None and self._inventory is not None and self._loader is not None
            and C.DEFAULT_HASH_BEHAVIOUR == "replace"
            and all(entry in self._STAGES for entry in C.VARIABLE_PRECEDENCE))
        if self.usable:
            self._basedirs = [self._loader.get_basedir()] if getattr(self._vm, "safe_basedir", False) else []
            self._extra = self._vm.extra_vars

    def _plugins_inventory(self, entities):
        return get_vars_from_inventory_sources(self._loader, self._inventory._sources, entities, "task")

    def _plugins_play(self, entities):
        data = {}
        for path in self._basedirs:
            data |= get_vars_from_path(self._loader, path, entities, "task")
        return data

    def _group_part(self, groups):
        key = tuple(group.name for group in groups)
        data = self._groups.get(key)
        if data is None:
            all_group = self._inventory.groups["all"]
            stages = {
                "all_inventory": lambda: all_group.get_vars(),
                "all_plugins_inventory": lambda: self._plugins_inventory([all_group]),
                "all_plugins_play": lambda: self._plugins_play([all_group]),
                "groups_inventory": lambda: get_group_vars(groups),
                "groups_plugins_inventory": lambda: self._plugins_inventory(groups),
                "groups_plugins_play": lambda: self._plugins_play(groups),
            }
            data = {}
            for entry in C.VARIABLE_PRECEDENCE:
                data |= stages[entry]()
            self._groups[key] = data
        return data

    def layers(self, name):
        """(layers highest first, group_names) for the host, or None (see the class)."""
        if not self.usable:
            return None
        host = self._inventory.get_host(name)
        if host is None or self._vm._vars_cache.get(name) or self._vm._nonpersistent_fact_cache.get(name):
            return None
        try:
            if self._vm._fact_cache.get(name):
                return None
        except KeyError:
            pass
        groups = sort_groups([group for group in host.get_groups() if group.name != "all"])
        layers = (self._extra, self._plugins_play([host]), self._plugins_inventory([host]), host.get_vars(),
                  self._group_part(groups))
        return layers, sorted(group.name for group in groups)


def _lookup(layers, key):
    for layer in layers:
        if key in layer:
            return True, layer[key]
    return False, None


_SECRET_REF = re.compile(r"\{\{\s*kickstack_secrets\.([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")
_UNRESOLVED = object()


def _resolve_secret_refs(value, secrets):
    """value with every string that is exactly a secret reference ("{{ kickstack_secrets.NAME }}",
    the inventory's documented form) replaced by that secret, or _UNRESOLVED when any other
    Jinja is in it (the caller then templates it the slow, general way). What the templar would
    give, for the one shape of template that fills a host's fence passwords."""
    if isinstance(value, str):
        if not any(mark in value for mark in _TEMPLATE_MARKS):
            return value
        match = _SECRET_REF.fullmatch(value)
        if match and isinstance(secrets, dict) and isinstance(secrets.get(match.group(1)), str):
            return secrets[match.group(1)]
        return _UNRESOLVED
    if isinstance(value, dict):
        out = {}
        for key, item in value.items():
            if not isinstance(key, str) or any(mark in key for mark in _TEMPLATE_MARKS):
                return _UNRESOLVED
            out[key] = _resolve_secret_refs(item, secrets)
            if out[key] is _UNRESOLVED:
                return _UNRESOLVED
        return out
    if isinstance(value, (list, tuple)):
        out = [_resolve_secret_refs(item, secrets) for item in value]
        return _UNRESOLVED if any(item is _UNRESOLVED for item in out) else out
    return value


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

    secrets = _read(site_get, "kickstack_secrets")
    site_secrets_raw = task_vars.get("kickstack_secrets")
    hostvars = task_vars["hostvars"]
    reader = _RawHostVars(hostvars)
    hosts = {}
    seen = {}
    for name in task_vars["groups"]["all"]:
        # The host's variables before templating: plain data is taken as it is, and only
        # values with Jinja in them are templated (per key, in the host's context, through
        # hostvars, which then builds that host's variables in full).
        found = reader.layers(name)
        if found is None:
            hv = hostvars[name]
            raw = getattr(hv, "_vars", None)
            layers, group_names = ((raw,) if raw is not None else None), None
        else:
            hv, (layers, group_names) = None, found
        hosts[name] = {}
        # Secret references resolve without the templar when this host sees the site's own
        # kickstack_secrets (the same object, not one overridden for it).
        shortcut_secrets = (found is not None and site_secrets_raw is not None
                            and _lookup(layers, "kickstack_secrets")[1] is site_secrets_raw)
        for key in HOST_KEYS:
            if layers is not None:
                present, value = _lookup(layers, key)
                if not present:
                    continue
                if _plain(value, seen):
                    if value is not None:
                        hosts[name][key] = value
                    continue
                if shortcut_secrets:
                    resolved = _resolve_secret_refs(value, secrets)
                    if resolved is not _UNRESOLVED:
                        if resolved is not None:
                            hosts[name][key] = resolved
                        continue
            if hv is None:
                hv = hostvars[name]
            value = _read(hv.__getitem__, key)
            if value is not None:
                hosts[name][key] = value
        if group_names is None:
            groups = layers[0].get("group_names") if layers is not None else None
            if not (isinstance(groups, list) and _plain(groups, seen)):
                groups = _read((hv or hostvars[name]).__getitem__, "group_names")
            group_names = groups
        if isinstance(group_names, list):
            hosts[name]["group_names"] = group_names

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


def unreadable_file(exc):
    """The problem line for an inventory file Ansible could not parse: the file, line and
    column (Ansible keeps them on an exception down the chain, not in the message) and the
    parser's complaint."""
    where, seen = None, set()
    cur = exc
    while cur is not None and id(cur) not in seen and where is None:
        seen.add(id(cur))
        origin = getattr(cur, "obj", None)
        if isinstance(getattr(origin, "path", None), str):
            where = origin
        cur = cur.__cause__ or cur.__context__
    problem = (str(exc).splitlines()[0] if str(exc) else type(exc).__name__).rstrip(".")
    if where is None:
        return f"inventory: cannot be read: {problem}. Fix: check the inventory's files (yamllint shows YAML errors)"
    line = f", line {where.line_num}" if getattr(where, "line_num", None) else ""
    return (f"inventory file {where.path}{line}: cannot be read: {problem}. "
            f"Fix: correct that file (yamllint {where.path} shows the YAML error)")


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
        try:
            model, problems = check_site(task_vars, self._templar, args)
        except AnsibleError as exc:
            # Host and group variables files load when first needed, so a file Ansible cannot
            # parse surfaces here; name it instead of blaming the task.
            return fail_on(result, [unreadable_file(exc)])
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
