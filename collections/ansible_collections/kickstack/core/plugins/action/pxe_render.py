# -*- coding: utf-8 -*-
"""Action plugin behind kickstack.core.pxe_render: every host's kickstart and boot entries in one pass.

Each template is compiled once and rendered in-process for every host (a template task per
file and host would cost ~0.6 s, an in-process render ~1 ms); the rendering itself lives in
module_utils/render.py, shared with the tests. Every value is quoted for its target format or
refused (module_utils/quoting.py); when anything is refused nothing is written. Only changed
files are written; files of hosts that left the inventory are removed.

With `preflight` (the preflight role's checks), the action validates the whole inventory and
builds the model itself, in the same task: kickstart.yml then hands no site-sized fact from
task to task. With `hosts` (a --limit run), only those hosts' files are rendered, plus the
shared dnsmasq configuration and index, and nothing is removed.
"""

from __future__ import annotations

import os

from ansible.errors import AnsibleError
from ansible.plugins.action import ActionBase
from jinja2 import TemplateError

from ansible_collections.kickstack.core.plugins.action.preflight import check_site, fail_on, without_gc
from ansible_collections.kickstack.core.plugins.module_utils.bulk import sync_tree
from ansible_collections.kickstack.core.plugins.module_utils.render import (
    MANAGED,
    RenderError,
    Renderer,
    check_targets,
)


class ActionModule(ActionBase):
    TRANSFERS_FILES = False
    _requires_connection = False

    def run(self, tmp=None, task_vars=None):
        return without_gc(self._run, tmp, task_vars)

    def _run(self, tmp=None, task_vars=None):
        result = super().run(tmp, task_vars)
        task_vars = task_vars or {}
        args = self._task.args
        if args.get("preflight"):
            model, problems = check_site(task_vars, self._templar, args["preflight"])
            if problems:
                return fail_on(result, problems)
        else:
            # The model is read straight from the facts preflight left: templating a large
            # structure as a task argument would cost more than rendering every file.
            model = args.get("model") or task_vars.get("ansible_facts", {}).get("kickstack_model")
        if not model:
            raise AnsibleError("kickstack.core.pxe_render needs kickstack_model: run the preflight role first")
        dest = os.path.abspath(args["dest"])
        context = dict(args.get("context") or {})
        # Unset site-wide settings come from the model (the site's own kickstack_* values).
        site = model["site"]
        if not context.get("http_base_url"):
            context["http_base_url"] = f"http://{site.get('pxe_ip')}/kickstack"
        for name in ("kernel_args", "extra_packages"):
            if context.get(name) is None:
                context[name] = site.get(name)
        only = args.get("hosts")
        if only is not None:
            only = list(only)
            unknown = sorted(set(only) - set(model["hosts"]))
            if unknown:
                raise AnsibleError(f"kickstack.core.pxe_render: hosts not in the inventory: {', '.join(unknown[:10])}")
            if not only:
                raise AnsibleError("the --limit selects no host of the inventory: nothing to render "
                                   "(name hosts or groups of the inventory, or drop --limit)")

        # A kickstart carries the root hash only when the site opted in (preflight sets root_login).
        root_hash = None
        if model["site"].get("root_login") == "password":
            secrets = self._templar.template(task_vars.get("kickstack_secrets")) or {}
            root_hash = secrets.get("root_password_hash") or None

        try:
            renderer = Renderer(args["template_dir"])
        except TemplateError as exc:
            raise AnsibleError(f"kickstack template error: {exc}") from None
        rendered = renderer.render(model, context, root_hash, only=only)
        try:
            if rendered.problems:
                raise RenderError(rendered.problems)
            check_targets(dest, sorted(rendered.outputs))
        except RenderError as exc:
            raise AnsibleError(str(exc)) from None
        outputs, index = rendered.outputs, rendered.index

        report = sync_tree(dest, outputs, MANAGED, check=self._task.check_mode, diff=self._task.diff,
                           prune=only is None)
        result["changed"] = bool(report.changed or report.removed)
        result["changed_files"] = report.changed
        result["removed_files"] = report.removed
        result["index"] = index
        result["dest"] = dest
        if self._task.diff and report.diffs:
            result["diff"] = report.diffs
        scope = f"{len(index) - 1} installed hosts" if only is None else f"{len(only)} of {len(index) - 1} installed hosts"
        result["msg"] = f"{len(outputs)} files for {scope}: {len(report.changed)} changed, {len(report.removed)} removed"
        return result
