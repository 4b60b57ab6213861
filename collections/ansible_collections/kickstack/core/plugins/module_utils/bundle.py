# -*- coding: utf-8 -*-
"""A standalone host's bundle: what its first boot needs to apply its own plays to itself.

kickstack_delivery: standalone makes the render (pxe_render) write, next to the host's
kickstart, ``ks/<host>.bundle.tgz``: a tar.gz the kickstart fetches under the host's build token,
checks against the sha256 pinned in the kickstart, and unpacks into /var/lib/kickstack/bundle,
from where kickstack-firstboot.service runs ``ansible-playbook -c local -i vars/inventory.yml
-e @vars/host.yml local.yml``. It holds:

- ``playbooks/``: the step playbooks of playbooks/site.yml that have a play for the host's
  profile group, unchanged, with preflight.yml and vars/model.yml (one set of plays: nothing is
  forked for the bundle);
- ``roles/``: every role those playbooks name (a playbook must parse as a whole, so nova.yml's
  controller roles travel with a compute node's bundle, never run there), with the roles they
  include and depend on;
- ``collections/``: kickstack.core (its filters, and the preflight action preflight.yml names),
  and from every other collection only the modules the roles call plus the module_utils those
  import, as the operator's Ansible has them (the node's ansible-core comes from the OS
  repositories, which do not carry those collections, and the same code gives the same node);
- ``ansible.cfg`` and ``local.yml``: the plays for localhost under the host's inventory name;
- ``vars/host.yml`` (per host): kickstack_site, kickstack_host, the host's slice of
  kickstack_secrets (the secrets its profile requires in roles/preflight/vars/main.yml
  ``__preflight_required_secrets``, nothing else), a storage node's fence devices with their
  parameters complete; ``vars/inventory.yml``: the node in its profile's group, with the public
  variables of the roles it runs (``<role>_*``) as the site's inventory sets them for it, at
  inventory precedence as in a push run; and ``vars/depends`` (what the first boot waits for).

Bundles are deterministic: entries sorted, owner root, mode 0700/0600, mtime 0, gzip without a
name or time. The part shared by every host of a profile is archived and compressed once per
render; each host's bundle is that gzip member followed by one holding its vars/ (a tar stream
split at an entry boundary, in two gzip members: what gzip -d and tarfile read as one).
"""

from __future__ import annotations

import gzip
import hashlib
import importlib
import io
import os
import re
import tarfile
from typing import Any, Callable, Dict, Iterable, List, Optional, Set, Tuple

import yaml

BUNDLE_SUFFIX = ".bundle.tgz"
BUNDLE_DIR = "/var/lib/kickstack/bundle"
OWN_COLLECTION = ("kickstack", "core")

# The bundle's Ansible configuration: the repository's, minus what belongs to the operator's
# machine (inventory, vault password, SSH), with paths inside the bundle.
ANSIBLE_CFG = """\
# kickstack standalone bundle: the node applies its own plays (kickstack-firstboot.service).
[defaults]
roles_path = roles
collections_path = collections
interpreter_python = auto_silent
gathering = explicit
retry_files_enabled = false
stdout_callback = ansible.builtin.default
callback_result_format = yaml
nocows = true

[inventory]
# Only this node's profile group exists here: the plays for the other groups match nothing.
host_pattern_mismatch = ignore
enable_plugins = ansible.builtin.yaml
"""

LOCAL_HEAD = """\
---
# kickstack standalone first boot of a {profile} node: the node applies its own plays to itself,
#   ansible-playbook -c local -i vars/inventory.yml -e @vars/host.yml local.yml
# (kickstack-firstboot.service). The plays are playbooks/site.yml's steps for {profile}, unchanged.
# They read the model through kickstack_site and kickstack_host as always; vars/host.yml holds
# this host's slice, checked by preflight when the bundle was rendered, so the model is put
# where preflight leaves it and preflight.yml does not run again.
# vars/inventory.yml has this node under its inventory name, in its profile's group, with the
# role variables the site's inventory sets for it.
- name: The site model, where preflight leaves it
  hosts: localhost
  gather_facts: false
  tasks:
    - name: Put the checked site model where preflight leaves it
      ansible.builtin.set_fact:
        kickstack_model:
          site: "{{{{ kickstack_site }}}}"
          hosts: "{{{{ {{kickstack_bundle.host: kickstack_host}} }}}}"
        cacheable: true
"""

# A task's module as a YAML key: "  community.general.modprobe:" or "- ansible.posix.firewalld:".
_FQCN = re.compile(r"^[ \t]*(?:-[ \t]+)?([a-z][a-z0-9_]*)\.([a-z][a-z0-9_]*)\.([a-z][a-z0-9_]*)[ \t]*:", re.M)
_ROLE_KEYS = ("ansible.builtin.include_role", "ansible.builtin.import_role", "include_role", "import_role")
_PY_IMPORT = re.compile(
    r"^\s*(?:from\s+ansible_collections\.([a-z0-9_]+)\.([a-z0-9_]+)\.plugins\.([\w.]+)\s+import\s+(\([^)]*\)|[^\n]+)"
    r"|import\s+ansible_collections\.([a-z0-9_]+)\.([a-z0-9_]+)\.plugins\.([\w.]+))", re.M)


_PY_RELATIVE = re.compile(r"^\s*from\s+(\.+)([\w.]*)\s+import\s+(\([^)]*\)|[^\n]+)", re.M)


class BundleError(Exception):
    """The bundle cannot be made (a role, playbook or module it needs is missing)."""


def secret_slice(profile: str, required: Dict[str, List[str]], secrets: Dict[str, Any]) -> Dict[str, Any]:
    """The secrets a host of this profile needs: __preflight_required_secrets' `all` and its
    profile's list, in name order; nothing else of kickstack_secrets."""
    names = sorted(set(required.get("all") or []) | set(required.get(profile) or []))
    return {name: secrets[name] for name in names if name in secrets}


def depends(host: Dict[str, Any], site: Dict[str, Any]) -> List[Tuple[str, int, str]]:
    """(address, TCP port, what) the first boot waits for before each attempt: a compute node
    the controller's APIs and RabbitMQ, a storage node its peer (its SSH port: it has booted)."""
    out: List[Tuple[str, int, str]] = []
    if host["profile"] == "compute" and site.get("controller_ip"):
        ctl = site["controller_ip"]
        out += [(ctl, 5000, "keystone"), (ctl, 5672, "rabbitmq"), (ctl, 8778, "placement")]
    elif host["profile"] == "storage":
        peer = host.get("peer") or (host.get("drbd") or {}).get("peer")
        ips = {e["name"]: e["ip"] for e in site.get("hosts_entries") or []}
        if peer in ips:
            out.append((ips[peer], 22, f"storage peer {peer}"))
    return out


def _load_yaml(path: str) -> Any:
    with open(path, encoding="utf-8") as handle:
        return yaml.safe_load(handle)


def _walk(value: Any) -> Iterable[Any]:
    yield value
    if isinstance(value, dict):
        for item in value.values():
            yield from _walk(item)
    elif isinstance(value, list):
        for item in value:
            yield from _walk(item)


def _role_refs(data: Any) -> Set[str]:
    """Static role names of include_role/import_role tasks and `roles:` entries in YAML data."""
    names: Set[str] = set()
    for node in _walk(data):
        if not isinstance(node, dict):
            continue
        for key in _ROLE_KEYS:
            spec = node.get(key)
            if isinstance(spec, dict) and isinstance(spec.get("name"), str) and "{{" not in spec["name"]:
                names.add(spec["name"])
        roles = node.get("roles")
        if isinstance(roles, list) and ("hosts" in node or "import_playbook" not in node):
            for entry in roles:
                name = entry if isinstance(entry, str) else (entry or {}).get("role") or (entry or {}).get("name")
                if isinstance(name, str):
                    names.add(name)
    return names


def _files_below(root: str, prefix: str) -> Dict[str, str]:
    """arcname -> path of every file below root (no bytecode)."""
    out = {}
    for base, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if d != "__pycache__")
        for name in files:
            if name.endswith((".pyc", ".pyo")):
                continue
            path = os.path.join(base, name)
            out[prefix + os.path.relpath(path, root).replace(os.sep, "/")] = path
    return out


def default_collection_root(namespace: str, name: str) -> Optional[str]:
    """Where the controller's Ansible finds a collection (the loaded collection finder, or the
    ansible_collections namespace package on sys.path)."""
    try:
        module = importlib.import_module(f"ansible_collections.{namespace}.{name}")
    except ImportError:
        return None
    paths = list(getattr(module, "__path__", []) or [])
    return paths[0] if paths else None


class Sources:
    """The checkout's playbooks, roles and collections, read once per render; each profile's
    shared part of the bundle is built once and reused for every host of that profile."""

    def __init__(self, top: str, collection_root: Callable[[str, str], Optional[str]] = default_collection_root):
        self.top = os.path.abspath(top)
        self.collection_root = collection_root
        self._shared: Dict[str, bytes] = {}
        self._plans: Dict[str, Dict[str, Any]] = {}

    # --- what a profile needs -----------------------------------------------------------------
    def plan(self, profile: str) -> Dict[str, Any]:
        if profile in self._plans:
            return self._plans[profile]
        pb_dir = os.path.join(self.top, "playbooks")
        site = _load_yaml(os.path.join(pb_dir, "site.yml")) or []
        playbooks: List[str] = []
        roles: Set[str] = set()
        applied: Set[str] = set()
        for entry in site:
            target = entry.get("ansible.builtin.import_playbook") or entry.get("import_playbook")
            if not target or target == "preflight.yml":
                continue
            plays = _load_yaml(os.path.join(pb_dir, target)) or []
            groups = set()
            for play in plays:
                if isinstance(play, dict) and isinstance(play.get("hosts"), str):
                    groups |= set(re.split(r"[:,]", play["hosts"]))
            if profile in groups:
                playbooks.append(target)
                roles |= _role_refs([p for p in plays if isinstance(p, dict) and "hosts" in p])
                applied |= _role_refs([p for p in plays if isinstance(p, dict) and isinstance(p.get("hosts"), str)
                                       and profile in re.split(r"[:,]", p["hosts"])])
        if not playbooks:
            raise BundleError(f"playbooks/site.yml has no play for the profile {profile}")
        # preflight.yml (imported by every step, skipped on the node) names its role statically.
        roles |= _role_refs(_load_yaml(os.path.join(pb_dir, "preflight.yml")))
        seen = self._closure(roles, profile)
        modules: Set[Tuple[str, str, str]] = set()
        texts = [os.path.join(pb_dir, p) for p in playbooks]
        for role in sorted(seen):
            for sub in ("tasks", "handlers"):
                texts += [p for p in _files_below(os.path.join(self.top, "roles", role, sub), "").values()
                          if p.endswith((".yml", ".yaml"))]
        for path in texts:
            with open(path, encoding="utf-8") as handle:
                for ns, coll, name in _FQCN.findall(handle.read()):
                    if (ns, coll) not in (("ansible", "builtin"), OWN_COLLECTION):
                        modules.add((ns, coll, name))
        # The roles that run on a host of this profile (not those of other groups' plays that
        # travel along): their public variables set in the inventory go with the host.
        plan = {"playbooks": playbooks, "roles": sorted(seen), "modules": sorted(modules),
                "applied": sorted(self._closure(applied, profile))}
        self._plans[profile] = plan
        return plan

    def _closure(self, roles: Set[str], profile: str) -> Set[str]:
        """roles with every role they include or depend on."""
        todo, seen = sorted(roles), set()
        while todo:
            role = todo.pop()
            if role in seen:
                continue
            seen.add(role)
            role_dir = os.path.join(self.top, "roles", role)
            if not os.path.isdir(role_dir):
                raise BundleError(f"role {role} (named by the {profile} plays) is not in {self.top}/roles")
            found: Set[str] = set()
            for sub in ("tasks", "handlers"):
                for path in sorted(_files_below(os.path.join(role_dir, sub), "").values()):
                    if path.endswith((".yml", ".yaml")):
                        found |= _role_refs(_load_yaml(path))
            meta = os.path.join(role_dir, "meta", "main.yml")
            if os.path.exists(meta):
                for dep in (_load_yaml(meta) or {}).get("dependencies") or []:
                    name = dep if isinstance(dep, str) else dep.get("role") or dep.get("name")
                    if isinstance(name, str):
                        found.add(name)
            todo.extend(sorted(found - seen))
        return seen

    def role_var_prefixes(self, profile: str) -> Tuple[str, ...]:
        """Name prefixes of the public variables of the roles a host of this profile runs."""
        return tuple(f"{role}_" for role in self.plan(profile)["applied"] if role != "preflight")

    # --- the files ----------------------------------------------------------------------------
    def _collection_files(self, modules: Iterable[Tuple[str, str, str]]) -> Dict[str, str]:
        files: Dict[str, str] = {}
        own = os.path.join(self.top, "collections", "ansible_collections", *OWN_COLLECTION)
        files.update(_files_below(own, "collections/ansible_collections/kickstack/core/"))
        roots: Dict[Tuple[str, str], str] = {}

        def root_of(ns: str, coll: str) -> str:
            if (ns, coll) not in roots:
                root = self.collection_root(ns, coll)
                if not root or not os.path.isdir(root):
                    raise BundleError(f"collection {ns}.{coll} (used by the bundled roles) is not installed "
                                      "where this Ansible finds collections")
                roots[(ns, coll)] = root
                for meta in ("MANIFEST.json", "meta/runtime.yml"):
                    if os.path.exists(os.path.join(root, meta)):
                        files[f"collections/ansible_collections/{ns}/{coll}/{meta}"] = os.path.join(root, meta)
            return roots[(ns, coll)]

        def add(ns: str, coll: str, rel: str) -> bool:
            """Add plugins/<rel> (a .py file or a package) and everything it imports."""
            root = root_of(ns, coll)
            base = os.path.join(root, "plugins", *rel.split("/"))
            for path in (base + ".py", os.path.join(base, "__init__.py")):
                if os.path.isfile(path):
                    break
            else:
                # A namespace package (a directory without __init__.py): its submodules are
                # added by name by the caller.
                return os.path.isdir(base)
            arc = f"collections/ansible_collections/{ns}/{coll}/" + os.path.relpath(path, root).replace(os.sep, "/")
            if arc in files:
                return True
            files[arc] = path
            # the packages on the way down
            parts = rel.split("/")[:-1]
            for i in range(1, len(parts) + 1):
                init = os.path.join(root, "plugins", *parts[:i], "__init__.py")
                if os.path.isfile(init):
                    files[f"collections/ansible_collections/{ns}/{coll}/plugins/{'/'.join(parts[:i])}/__init__.py"] = init
            with open(path, encoding="utf-8") as handle:
                source = handle.read()
            package = rel.split("/") if path.endswith("__init__.py") else rel.split("/")[:-1]
            for match in _PY_RELATIVE.finditer(source):
                dots, dotted, names = match.group(1), match.group(2), match.group(3)
                base_parts = package[:len(package) - (len(dots) - 1)] if len(dots) > 1 else list(package)
                target = "/".join(base_parts + [p for p in dotted.split(".") if p])
                if dotted and not add(ns, coll, target):
                    raise BundleError(f"{ns}.{coll}: {arc} imports {dots}{dotted}, which is missing")
                for item in re.findall(r"[A-Za-z_][A-Za-z0-9_]*", names.replace(" as ", " , ")):
                    add(ns, coll, f"{target}/{item}")  # a submodule, when it is one
            for match in _PY_IMPORT.finditer(source):
                ins, icoll, dotted, names = match.group(1), match.group(2), match.group(3), match.group(4)
                if ins is None:
                    ins, icoll, dotted, names = match.group(5), match.group(6), match.group(7), ""
                if (ins, icoll) == OWN_COLLECTION:
                    continue
                target = dotted.replace(".", "/")
                if not add(ins, icoll, target):
                    raise BundleError(f"{ns}.{coll}: {arc} imports {ins}.{icoll}.plugins.{dotted}, which is missing")
                for item in re.findall(r"[A-Za-z_][A-Za-z0-9_]*", (names or "").replace(" as ", " , ")):
                    add(ins, icoll, f"{target}/{item}")  # a submodule, when it is one
            return True

        def redirect(ns: str, coll: str, name: str) -> Optional[Tuple[str, str, str]]:
            """Where the collection's meta/runtime.yml routes a module (e.g. community.mysql's
            modules now live in ansible.mysql), or None."""
            runtime = os.path.join(root_of(ns, coll), "meta", "runtime.yml")
            if not os.path.exists(runtime):
                return None
            route = (((_load_yaml(runtime) or {}).get("plugin_routing") or {}).get("modules") or {}).get(name) or {}
            target = route.get("redirect")
            parts = target.split(".") if isinstance(target, str) else []
            return tuple(parts) if len(parts) == 3 else None

        for ns, coll, name in modules:
            for _hop in range(5):
                routed = redirect(ns, coll, name)
                if routed is None:
                    break
                ns, coll, name = routed
            if not add(ns, coll, f"modules/{name}"):
                raise BundleError(f"module {ns}.{coll}.{name} (used by the bundled roles) is not in {root_of(ns, coll)}")
            add(ns, coll, f"action/{name}")
        return files

    def shared(self, profile: str) -> bytes:
        """The profile's part of every bundle, as one gzip member of an unterminated tar stream."""
        if profile in self._shared:
            return self._shared[profile]
        plan = self.plan(profile)
        files: Dict[str, Any] = {}
        pb_dir = os.path.join(self.top, "playbooks")
        for name in plan["playbooks"] + ["preflight.yml", "vars/model.yml"]:
            files[f"playbooks/{name}"] = os.path.join(pb_dir, name)
        for role in plan["roles"]:
            files.update(_files_below(os.path.join(self.top, "roles", role), f"roles/{role}/"))
        files.update(self._collection_files(plan["modules"]))
        files["ansible.cfg"] = ANSIBLE_CFG.encode()
        local = LOCAL_HEAD.format(profile=profile)
        for name in plan["playbooks"]:
            local += f"\n- name: {name}\n  ansible.builtin.import_playbook: playbooks/{name}\n"
        files["local.yml"] = local.encode()
        contents = {}
        for arc, src in files.items():
            if isinstance(src, bytes):
                contents[arc] = src
            else:
                with open(src, "rb") as handle:
                    contents[arc] = handle.read()
        if any(arc.startswith("vars/") for arc in contents):
            raise BundleError("the shared part may not hold vars/")  # vars/ sorts last: the host part
        data = gzip.compress(_tar(contents, terminate=False), compresslevel=6, mtime=0)
        self._shared[profile] = data
        return data

    def bundle(self, profile: str, host_files: Dict[str, bytes]) -> bytes:
        """The host's bundle: the profile's shared member, then its own vars/ and the tar's end."""
        assert all(arc.startswith("vars/") for arc in host_files)
        return self.shared(profile) + gzip.compress(_tar(host_files, terminate=True), compresslevel=6, mtime=0)


def _tar(contents: Dict[str, bytes], terminate: bool) -> bytes:
    """A tar stream of contents (and their directories), sorted, owned by root, 0700/0600, mtime 0."""
    entries: Dict[str, Optional[bytes]] = {}
    for arc, data in contents.items():
        parts = arc.split("/")
        for i in range(1, len(parts)):
            entries.setdefault("/".join(parts[:i]), None)
        entries[arc] = data
    buf = io.BytesIO()
    tar = tarfile.TarFile(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT)
    for arc in sorted(entries, key=lambda a: a.split("/")):
        info = tarfile.TarInfo(arc)
        info.uid = info.gid = 0
        info.uname = info.gname = "root"
        info.mtime = 0
        data = entries[arc]
        if data is None:
            info.type, info.mode = tarfile.DIRTYPE, 0o700
            tar.addfile(info)
        else:
            info.mode, info.size = 0o600, len(data)
            tar.addfile(info, io.BytesIO(data))
    if terminate:
        tar.close()
    return buf.getvalue()


def host_files(name: str, host: Dict[str, Any], site: Dict[str, Any], secrets: Dict[str, Any],
               required: Dict[str, List[str]], fence_devices: Optional[List[Dict[str, Any]]] = None,
               role_vars: Optional[Dict[str, Any]] = None) -> Dict[str, bytes]:
    """vars/host.yml (extra vars of the local run), vars/inventory.yml and vars/depends of one host."""
    data: Dict[str, Any] = {
        "kickstack_bundle": {"host": name, "profile": host["profile"]},
        "kickstack_site": site,
        "kickstack_host": host,
        "kickstack_secrets": secret_slice(host["profile"], required, secrets),
    }
    if host["profile"] == "storage":
        data["kickstack_fence_devices"] = fence_devices or []
    head = (f"# kickstack standalone bundle of {name}: the extra vars of its first boot's local run.\n"
            "# Holds this host's secrets: root only (0600), like the rest of the bundle.\n")
    text = head + yaml.safe_dump(data, sort_keys=False, default_flow_style=False, allow_unicode=True, width=1 << 16)
    deps = "".join(f"{addr} {port} {what.replace(' ', '_')}\n" for addr, port, what in depends(host, site))
    node = {"ansible_connection": "local", "ansible_python_interpreter": "{{ ansible_playbook_python }}"}
    node.update(sorted((role_vars or {}).items()))
    inventory = {"all": {"children": {host["profile"]: {"hosts": {name: node}}}}}
    inv_text = (f"# kickstack standalone bundle of {name}: this node in its profile's group, with the role\n"
                "# variables the site's inventory gives it (at inventory precedence, as in a push run).\n"
                + yaml.safe_dump(inventory, sort_keys=False, default_flow_style=False, allow_unicode=True,
                                 width=1 << 16))
    return {"vars/host.yml": text.encode("utf-8"), "vars/inventory.yml": inv_text.encode("utf-8"),
            "vars/depends": deps.encode("ascii")}


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
