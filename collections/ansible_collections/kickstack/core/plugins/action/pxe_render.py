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

A host with kickstack_delivery: standalone also gets its bundle (module_utils/bundle.py): the
roles and plays of its profile from `bundle_source` (the checkout), its model slice and the
secrets its profile requires (the preflight role's __preflight_required_secrets), written 0600
as ks/<host>.bundle.tgz; its kickstart pins the bundle's sha256. With no standalone host, none
of this runs.
"""

from __future__ import annotations

import os

import yaml

from ansible.errors import AnsibleError
from ansible.plugins.action import ActionBase
from jinja2 import TemplateError

from ansible_collections.kickstack.core.plugins.action.preflight import (
    _RawHostVars,
    check_site,
    fail_on,
    without_gc,
)
from ansible_collections.kickstack.core.plugins.filter.bmc import fence_devices
from ansible_collections.kickstack.core.plugins.module_utils import bundle as ksbundle
from ansible_collections.kickstack.core.plugins.module_utils.bulk import sync_tree
from ansible_collections.kickstack.core.plugins.module_utils.render import (
    INSTALLED,
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

        standalone = [name for name, host in sorted(model["hosts"].items())
                      if host.get("delivery") == "standalone" and host.get("profile") in INSTALLED
                      and (only is None or name in only)]
        pki_needed = []
        bundles = self._bundles(model, standalone, task_vars, args, pki_needed) if standalone else None

        try:
            renderer = Renderer(args["template_dir"])
        except TemplateError as exc:
            raise AnsibleError(f"kickstack template error: {exc}") from None
        rendered = renderer.render(model, context, root_hash, only=only, bundles=bundles)
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
        # Standalone compute nodes whose libvirt certificates are not issued yet: the kickstart
        # role issues them (roles/libvirt/tasks/pki.yml) and renders again.
        result["pki_needed"] = pki_needed
        if self._task.diff and report.diffs:
            result["diff"] = report.diffs
        scope = f"{len(index) - 1} installed hosts" if only is None else f"{len(only)} of {len(index) - 1} installed hosts"
        result["msg"] = f"{len(outputs)} files for {scope}: {len(report.changed)} changed, {len(report.removed)} removed"
        return result

    def _bundles(self, model, names, task_vars, args, pki_needed):
        """The bundle of each standalone host to render: {inventory name: tar.gz bytes}."""
        site = model["site"]
        if "hosts_entries" not in site:
            raise AnsibleError("kickstack.core.pxe_render: standalone hosts need the converge part of the model "
                               "(run preflight with preflight_converge_facts: true, or let pxe_render check the "
                               "inventory itself with `preflight`)")
        top = os.path.abspath(args.get("bundle_source") or os.path.join(args["template_dir"], ".."))
        required = (args.get("preflight") or {}).get("required_secrets")
        if required is None:
            # The one list of the secrets each profile needs, as preflight reads it.
            with open(os.path.join(top, "roles", "preflight", "vars", "main.yml"), encoding="utf-8") as handle:
                required = dict(yaml.safe_load(handle)["__preflight_required_secrets"])
            extra = self._templar.template(task_vars.get("preflight_extra_required_secrets")) or {}
            for profile, more in dict(extra).items():
                required[profile] = list(required.get(profile) or []) + list(more or [])
        secrets = _plain(self._templar.template(task_vars.get("kickstack_secrets")) or {})
        hostvars = task_vars["hostvars"]
        raw = _RawHostVars(hostvars)
        sources = ksbundle.Sources(top)
        out = {}
        try:
            for name in names:
                host = _plain(model["hosts"][name])
                devices = None
                if host["profile"] == "storage":
                    devices = self._fence_devices(hostvars, name, host)
                role_vars = self._role_vars(raw, hostvars, name, sources.role_var_prefixes(host["profile"]))
                extra = {}
                if host["profile"] == "compute" and role_vars.get("libvirt_migration_transport", "tls") == "tls":
                    extra = self._libvirt_pki(hostvars, name, host, role_vars, pki_needed)
                files = ksbundle.host_files(name, host, _plain(site), secrets, _plain(required), devices, role_vars)
                files.update(extra)
                out[name] = sources.bundle(host["profile"], files)
        except (ksbundle.BundleError, OSError, yaml.YAMLError) as exc:
            raise AnsibleError(f"kickstack.core.pxe_render: cannot make the standalone bundle: {exc}") from None
        return out

    def _libvirt_pki(self, hostvars, name, host, role_vars, pki_needed):
        """The compute node's libvirt certificates and keys and the CA certificate (never its
        key), from the operator's libvirt_pki_dir, as vars/libvirt-pki/ of its bundle; the node's
        libvirt role then installs them as they are (libvirt_pki_issue: false). Missing ones are
        listed in pki_needed, with the names and address playbooks/nova.yml gives the role."""
        inventory_dir = hostvars[name].get("inventory_dir") if name in hostvars else None
        pki_dir = role_vars.get("libvirt_pki_dir") or os.path.join(str(inventory_dir or "."), ".generated", "libvirt-pki")
        wanted = ["ca.crt"] + [f"{name}-{kind}.{ext}" for kind in ("server", "client") for ext in ("crt", "key")]
        role_vars["libvirt_pki_dir"] = f"{ksbundle.BUNDLE_DIR}/vars/libvirt-pki"
        role_vars["libvirt_pki_issue"] = False
        out = {}
        for file in wanted:
            try:
                with open(os.path.join(pki_dir, file), "rb") as handle:
                    out[f"vars/libvirt-pki/{file}"] = handle.read()
            except FileNotFoundError:
                pki_needed.append({"host": name, "dir": str(pki_dir), "names": [host["hostname"], host["fqdn"]],
                                   "addresses": [host["mgmt_ip"]]})
                return {}
        return out

    def _role_vars(self, raw, hostvars, name, prefixes):
        """The host's inventory variables named after a role it runs (nova_common_pip_find_links,
        chrony_servers, ...), templated: what a push run would give those roles from the inventory."""
        if not prefixes or name not in hostvars:  # a model passed in whole may name hosts of no inventory
            return {}
        layers = raw.layers(name)
        if layers is None:
            keys = [key for key in hostvars[name] if key.startswith(prefixes)]
        else:
            keys = {key for layer in layers[0] for key in layer if key.startswith(prefixes)}
        # Templated as the host's own variables (its inventory_dir, its groups), not localhost's.
        return {str(key): _plain(hostvars[name][key]) for key in sorted(keys)}

    def _fence_devices(self, hostvars, name, host):
        """The storage node's fence devices as cluster.yml gives them to the cluster role (the
        pair's devices, parameters completed from the fenced nodes' BMCs, passwords included)."""
        wanted = set((host.get("cluster") or {}).get("fence_device_names") or [])
        devices = _plain(self._templar.template(hostvars[name].get("kickstack_fence_devices")) or [])
        chosen = [dev for dev in devices if dev.get("name") in wanted]
        bmcs = {}
        for dev in chosen:
            target = dev.get("host")
            if target in hostvars:
                bmcs[target] = {"kickstack_bmc": _plain(self._templar.template(hostvars[target].get("kickstack_bmc")))}
        return _plain(fence_devices(chosen, bmcs))


def _plain(value):
    """Ansible's tagged and lazy containers as plain YAML-safe Python (yaml.safe_dump refuses
    str and dict subclasses)."""
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, str):
        return str(value)
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value)
    if isinstance(value, dict) or hasattr(value, "items"):
        return {_plain(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value
