"""Check rendered configuration files with the real programs that consume them.

Every validator takes the path of a rendered file and returns a list of
human-readable problems: an empty list means the consumer accepted the file.
A validator never passes when it could not check: a missing tool, a tool that
crashed or timed out, or a check that needs root run without it are problems
too. The Debian packages behind these tools are installed by
``scripts/install-validators``; each function's docstring says what its tool checks.
"""

from __future__ import annotations

import functools
import glob
import gzip
import ipaddress
import logging
import os
import re
import shlex
import shutil
import subprocess
import tempfile
import uuid
import warnings
from pathlib import Path

__all__ = [
    "chrony",
    "mariadb_cnf",
    "rabbitmq_conf",
    "libvirtd_conf",
    "virtqemud_conf",
    "qemu_conf",
    "libvirtd_semantic",
    "nova_conf",
    "nova_conf_report",
    "keystone_conf",
    "keystone_conf_report",
    "dnsmasq",
    "lvmconfig",
    "drbd",
    "corosync",
    "cluster_conf",
]

HERE = Path(__file__).resolve().parent
DATA = HERE.parent / "data"
INSTALL_HINT = "run scripts/install-validators"

# --------------------------------------------------------------------------
# helpers


def _run(cmd, *, timeout=60, env=None, input=None):
    """Run cmd; return (rc, stdout, stderr) or a problem string when it could not run."""
    full_env = None
    if env is not None:
        full_env = dict(os.environ)
        full_env.update(env)
    try:
        proc = subprocess.run(
            cmd,
            capture_output=True,
            text=True,
            errors="replace",
            timeout=timeout,
            env=full_env,
            input=input,
            stdin=None if input is not None else subprocess.DEVNULL,
        )
    except FileNotFoundError:
        return f"{cmd[0]}: not installed ({INSTALL_HINT})"
    except subprocess.TimeoutExpired:
        return f"{shlex.join(cmd)}: timed out after {timeout} s"
    return proc.returncode, proc.stdout, proc.stderr


def _lines(*texts):
    """Non-blank, stripped lines of the given texts."""
    return [ln.strip() for t in texts for ln in (t or "").splitlines() if ln.strip()]


def _is_root():
    """True when running as uid 0."""
    return os.geteuid() == 0


def _missing(path):
    """A problem list for a file that does not exist, else []."""
    return [] if os.path.isfile(path) else [f"{path}: no such file"]


# --------------------------------------------------------------------------
# chrony


def chrony(path):
    """chrony.conf: `chronyd -p -f path`; problems are a non-zero exit or anything on stderr."""
    res = _run(["chronyd", "-p", "-f", str(path)])
    if isinstance(res, str):
        return [res]
    rc, _out, err = res
    # "2026-01-01T00:00:00Z Fatal error : Invalid directive at line 2 in file f"
    problems = [re.sub(r"^\S+Z\s+", "", ln) for ln in _lines(err)]
    if rc != 0 and not problems:
        problems.append(f"chronyd -p exited {rc}")
    return problems


# --------------------------------------------------------------------------
# MariaDB


def mariadb_cnf(path):
    """my.cnf: `mariadbd --defaults-file=path --help --verbose` as nobody; fail on [ERROR]/unknown option."""
    # As root, mariadbd honours `user=` from the file and tries to switch to it
    # ("Can't change to run as user 'mysql'" on a host without that user), and
    # a --user=root given after the file is ignored. Unprivileged, it never
    # switches user, so run it as nobody on a private, readable copy.
    with tempfile.TemporaryDirectory(prefix="kst-mycnf-") as tmp:
        os.chmod(tmp, 0o755)
        copy = os.path.join(tmp, "my.cnf")
        shutil.copyfile(path, copy)
        os.chmod(copy, 0o644)
        cmd = ["mariadbd", f"--defaults-file={copy}", "--help", "--verbose"]
        if _is_root():
            for tool in ("mariadbd", "setpriv"):
                if shutil.which(tool) is None:
                    return [f"{tool}: not installed ({INSTALL_HINT})"]
            cmd = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", *cmd]
        res = _run(cmd)
    if isinstance(res, str):
        return [res]
    rc, out, err = res
    problems = [
        ln.replace(copy, str(path))
        for ln in _lines(err)
        if "[ERROR]" in ln or re.search(r"unknown (variable|option)", ln, re.I)
    ]
    if rc != 0:
        if not problems:
            problems = [ln for ln in _lines(err) if "[Warning]" not in ln] or [f"mariadbd exited {rc}"]
    elif "Variables (--variable-name=value)" not in out:
        problems.append("mariadbd printed no option table: the check did not run")
    return problems


# --------------------------------------------------------------------------
# RabbitMQ


def _rabbitmq_plugins_dir():
    """The plugins directory of the newest installed rabbitmq_server, or None."""
    dirs = glob.glob("/usr/lib/rabbitmq/lib/rabbitmq_server-*/plugins")

    def version(d):
        v = d.split("rabbitmq_server-")[-1].split("/")[0]
        return [int(x) if x.isdigit() else 0 for x in re.split(r"[.-]", v)]

    return max(dirs, key=version) if dirs else None


def rabbitmq_conf(path, host_files=False):
    """rabbitmq.conf: translate with the broker's own cuttlefish schemas (escript; no broker is started)."""
    plugins = _rabbitmq_plugins_dir()
    if plugins is None:
        return [f"rabbitmq-server schemas not found under /usr/lib/rabbitmq ({INSTALL_HINT})"]
    if shutil.which("escript") is None:
        return [f"escript: not installed ({INSTALL_HINT})"]
    script = HERE / "rabbitmq_conf_check.escript"
    cmd = ["escript", str(script), plugins, str(path)]
    if host_files:
        cmd.append("--host-files")
    res = _run(cmd, timeout=60, env={"HOME": tempfile.gettempdir()})
    if isinstance(res, str):
        return [res]
    rc, out, err = res
    if rc == 0 and "OK" in _lines(out):
        return []
    problems = [ln[len("ERROR: ") :] for ln in _lines(out) if ln.startswith("ERROR: ")]
    if not problems:
        problems = _lines(out, err) or [f"rabbitmq_conf_check.escript exited {rc}"]
    return problems


# --------------------------------------------------------------------------
# libvirt: Augeas lenses and the real daemon

_AUG_LENS_DIRS = ("/usr/share/augeas/lenses", "/usr/share/augeas/lenses/dist")


def _lens_available(lens):
    """True when an Augeas module for lens (e.g. 'Virtqemud.lns') is installed."""
    module = lens.split(".")[0].lower() + ".aug"
    return any(os.path.isfile(os.path.join(d, module)) for d in _AUG_LENS_DIRS)


def _augeas(path, lens):
    """Parse path with an Augeas lens in a private root; every /augeas//error is a problem."""
    if shutil.which("augtool") is None:
        return [f"augtool: not installed ({INSTALL_HINT})"]
    if not os.path.isfile(path):
        return _missing(path)
    with tempfile.TemporaryDirectory(prefix="kst-aug-") as root:
        shutil.copyfile(path, os.path.join(root, "check.conf"))
        script = (
            f"set /augeas/load/Check/lens {lens}\n"
            "set /augeas/load/Check/incl /check.conf\n"
            "load\n"
            "print /augeas//error\n"
            "match /augeas/files/check.conf/path\n"
        )
        res = _run(["augtool", "-r", root, "--noautoload"], input=script)
    if isinstance(res, str):
        return [res]
    rc, out, err = res
    errors = {}
    for ln in _lines(out):
        m = re.match(r'^(/augeas/\S*?/error)(/\S+)?\s*=\s*"?(.*?)"?$', ln)
        if m:
            errors.setdefault(m.group(1), {})[m.group(2) or ""] = m.group(3)
    problems = []
    for fields in errors.values():
        where = ""
        if "/line" in fields:
            where = f"line {fields['/line']}, char {fields.get('/char', '?')}: "
        msg = fields.get("/message") or fields.get("")
        problems.append(f"{path}: {where}{msg} (Augeas {lens})")
    if rc != 0:
        problems += _lines(err) or [f"augtool exited {rc}"]
    if not problems and "/augeas/files/check.conf/path" not in out:
        problems.append(f"{path}: Augeas did not load the file with {lens}")
    return problems


def libvirtd_conf(path, lens="Libvirtd.lns"):
    """libvirtd.conf: parse with the Augeas lens shipped by libvirt (Libvirtd.lns)."""
    return _augeas(path, lens)


def virtqemud_conf(path):
    """virtqemud.conf: Augeas Virtqemud.lns when installed (not in Debian 12), else Libvirtd.lns."""
    lens = "Virtqemud.lns" if _lens_available("Virtqemud.lns") else "Libvirtd.lns"
    return _augeas(path, lens)


def qemu_conf(path):
    """qemu.conf: parse with the Augeas lens Libvirtd_qemu.lns."""
    return _augeas(path, "Libvirtd_qemu.lns")


_LIBVIRTD_NS_SCRIPT = r"""
set -eu
tmp=$1; conf=$2; shift 2
mount --make-rprivate /
mount -t tmpfs kst-run /run
for d in etc var; do
  mkdir -p "$tmp/$d.up" "$tmp/$d.work"
  mount -t overlay kst-$d -o "lowerdir=/$d,upperdir=$tmp/$d.up,workdir=$tmp/$d.work" "/$d"
done
gid=64000
for g in $KST_GROUPS; do
  gid=$((gid + 1))
  grep -q "^$g:" /etc/group || echo "$g:x:$gid:" >> /etc/group
done
ip link set lo up
exec libvirtd --config "$conf" --timeout 1 "$@"
"""


def libvirtd_semantic(path, groups=("libvirt",), listen=False, timeout=15):
    """libvirtd.conf semantics: start the real libvirtd on it in a throwaway mount/net/pid namespace."""
    # Private namespaces: /run is a fresh tmpfs, /etc and /var are overlays whose
    # writes land in a temp dir, the network namespace has only lo. Drivers are
    # not loaded (LIBVIRT_DRIVER_DIR is empty): this checks the daemon's own
    # config, not the qemu driver's host environment. `groups` are the groups
    # libvirt's packages create on the target (unix_sock_group etc.); they are
    # added to the overlay's /etc/group when this host lacks them.
    if not _is_root():
        return ["libvirtd_semantic needs root (unshare, mount)"]
    for tool in ("libvirtd", "unshare", "ip"):
        if shutil.which(tool) is None:
            return [f"{tool}: not installed ({INSTALL_HINT})"]
    if not os.path.isfile(path):
        return _missing(path)
    with tempfile.TemporaryDirectory(prefix="kst-libvirtd-") as tmp:
        conf = os.path.join(tmp, "libvirtd.conf")
        shutil.copyfile(path, conf)
        drivers = os.path.join(tmp, "no-drivers")
        os.mkdir(drivers)
        cmd = [
            "unshare",
            "--mount",
            "--net",
            "--pid",
            "--ipc",
            "--uts",
            "--fork",
            "--kill-child",
            "--mount-proc",
            "sh",
            "-c",
            _LIBVIRTD_NS_SCRIPT,
            "kst-libvirtd",
            tmp,
            conf,
        ]
        if listen:
            cmd.append("--listen")
        res = _run(
            cmd,
            timeout=timeout,
            env={
                "LIBVIRT_DRIVER_DIR": drivers,
                "LIBVIRT_LOG_OUTPUTS": "3:stderr",
                "KST_GROUPS": " ".join(groups),
            },
        )
    if isinstance(res, str):
        return [res]
    rc, out, err = res
    problems = []
    for ln in _lines(out, err):
        m = re.search(r"\d+: (error|warning) : (?:\w+:\d+ : )?(.*)$", ln)
        if m:
            problems.append(m.group(2).replace(conf, str(path)))
        elif not re.search(r"\d+: info : ", ln):
            problems.append(ln.replace(conf, str(path)))
    if rc != 0 and not problems:
        problems.append(f"libvirtd exited {rc}")
    return problems


# --------------------------------------------------------------------------
# nova.conf, keystone.conf: oslo.config against the service's own option definitions

NOVA_VERSION = "34.0.0"
KEYSTONE_VERSION = "30.0.0"
GLANCE_VERSION = "33.0.0"
NEUTRON_VERSION = "29.0.0"
_OPTION_DATA = {
    "nova": DATA / f"nova-{NOVA_VERSION}-options.yaml",
    "keystone": DATA / f"keystone-{KEYSTONE_VERSION}-options.yaml",
    "glance": DATA / f"glance-{GLANCE_VERSION}-options.yaml",
    "neutron": DATA / f"neutron-{NEUTRON_VERSION}-options.yaml",
}
# Groups a service names at run time, read with the options of a group in the data: glance's
# reserved stores (staging, tasks) are file stores.
_GROUP_ALIASES = {
    "glance": {"os_glance_staging_store": "file", "os_glance_tasks_store": "file"},
}

# Options of keystoneauth's password plugins. They are registered at run time
# from auth_type, so the generator lists them only for groups whose list_opts
# adds them (placement, neutron, ...), not for [keystone_authtoken].
_KSA_PASSWORD_OPTS = (
    "auth-url",
    "system-scope",
    "domain-id",
    "domain-name",
    "project-id",
    "project-name",
    "project-domain-id",
    "project-domain-name",
    "trust-id",
    "default-domain-id",
    "default-domain-name",
    "user-id",
    "username",
    "user-domain-id",
    "user-domain-name",
    "password",
    "tenant-id",
    "tenant-name",
)
_KSA_PASSWORD_PLUGINS = ("password", "v3password")

# What each kickstack role must set for its nova services to work.
_NOVA_REQUIRED = {
    "controller": (
        ("DEFAULT", "transport_url"),
        ("api_database", "connection"),
        ("database", "connection"),
        ("keystone_authtoken", "www_authenticate_uri"),
        ("keystone_authtoken", "auth_url"),
        ("keystone_authtoken", "auth_type"),
        ("placement", "auth_url"),
        ("placement", "auth_type"),
    ),
    "compute": (
        ("DEFAULT", "transport_url"),
        ("placement", "auth_url"),
        ("placement", "auth_type"),
    ),
}
# Set on a compute node, these hand it database credentials it must not have.
_NOVA_COMPUTE_UNWANTED = (("database", "connection"), ("api_database", "connection"))

# What the glance role must set: its database, token validation and one file store.
_GLANCE_REQUIRED = {
    "api": (
        ("database", "connection"),
        ("DEFAULT", "enabled_backends"),
        ("glance_store", "default_backend"),
        ("keystone_authtoken", "auth_url"),
        ("keystone_authtoken", "auth_type"),
        ("paste_deploy", "flavor"),
    ),
}
# What the neutron_server role must set, in neutron.conf (server) and ml2_conf.ini (ml2).
_NEUTRON_REQUIRED = {
    "server": (
        ("DEFAULT", "core_plugin"),
        ("DEFAULT", "transport_url"),
        ("database", "connection"),
        ("keystone_authtoken", "auth_url"),
        ("keystone_authtoken", "auth_type"),
    ),
    "ml2": (("ml2", "type_drivers"),),
}

# What the keystone role must set: its database, fernet tokens and both key repositories.
_KEYSTONE_REQUIRED = {
    "keystone": (
        ("database", "connection"),
        ("token", "provider"),
        ("fernet_tokens", "key_repository"),
        ("credential", "key_repository"),
    ),
}


@functools.lru_cache(maxsize=None)
def _project_options(project):
    """The option data generated from the project (tests/data/README.md), loaded once."""
    import yaml

    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    path = _OPTION_DATA[project]
    gz = path.with_name(path.name + ".gz")
    if path.is_file():
        with open(path, "rb") as fh:
            data = yaml.load(fh, Loader=loader)
    elif gz.is_file():
        with gzip.open(gz, "rb") as fh:
            data = yaml.load(fh, Loader=loader)
    else:
        raise FileNotFoundError(f"{path}[.gz] is missing (see tests/data/README.md)")
    return data["options"]


def _oslo_opt(cfg, types, spec, group):
    """An oslo.config Opt of the type, bounds and choices the generator recorded for spec."""
    kind = spec["type"]
    deprecated = [
        cfg.DeprecatedOpt(d["name"], group=d.get("group") or group) for d in spec.get("deprecated_opts") or []
    ]
    common = {"deprecated_opts": deprecated, "secret": bool(spec.get("secret"))}
    choices = [c[0] if isinstance(c, (list, tuple)) else c for c in spec.get("choices") or []]
    bounds = {k: spec[k] for k in ("min", "max") if spec.get(k) is not None}
    name = spec["name"]
    # Generator type name -> (Opt class, keyword arguments it takes beyond the common ones).
    table = {
        "string value": (cfg.StrOpt, {"choices": choices or None}),
        "integer value": (cfg.IntOpt, {"choices": choices or None, **bounds}),
        "port value": (cfg.PortOpt, {"choices": choices or None, **bounds}),
        "floating point value": (cfg.FloatOpt, bounds),
        "boolean value": (cfg.BoolOpt, {}),
        "list value": (cfg.ListOpt, {}),
        "dict value": (cfg.DictOpt, {}),
        "multi valued": (cfg.MultiStrOpt, {}),
        "uri value": (cfg.URIOpt, {}),
        "host address value": (cfg.HostAddressOpt, {}),
        "host domain value": (cfg.HostDomainOpt, {}),
        "hostname value": (cfg.HostnameOpt, {}),
        "ip address value": (cfg.IPOpt, {}),
        "IPv4 address value": (cfg.IPOpt, {"version": 4}),
        "IPv6 address value": (cfg.IPOpt, {"version": 6}),
        # neutron's designate zone prefixes: integers in a range (the multiple-of-8/4 rule is not checked)
        "IPv4 zone prefix": (cfg.IntOpt, bounds),
        "IPv6 zone prefix": (cfg.IntOpt, bounds),
    }
    if kind in table:
        opt_class, extra = table[kind]
        return opt_class(name, **extra, **common)
    if kind == "range value":
        return cfg.Opt(name, type=types.Range(), **common)
    raise ValueError(f"[{group}] {name}: option type {kind!r} unknown to the validator")


def _quiet_oslo(func, *args):
    """Run func with oslo.config's deprecation logging muted (returned as notes instead)."""
    oslo_log = logging.getLogger("oslo_config.cfg")
    level = oslo_log.level
    oslo_log.setLevel(logging.ERROR)
    try:
        return func(*args)
    finally:
        oslo_log.setLevel(level)


def nova_conf_report(path, service=None):
    """nova.conf: (problems, warnings) from an oslo.config type check against nova's option data."""
    if service not in (None, *_NOVA_REQUIRED):
        raise ValueError(f"service must be None or one of {sorted(_NOVA_REQUIRED)}")
    required = _NOVA_REQUIRED.get(service, ())
    unwanted = _NOVA_COMPUTE_UNWANTED if service == "compute" else ()
    return _quiet_oslo(_oslo_conf_report, path, "nova", NOVA_VERSION, service, required, unwanted)


def keystone_conf_report(path, service="keystone"):
    """keystone.conf: (problems, warnings) from an oslo.config type check against keystone's option data."""
    if service not in (None, *_KEYSTONE_REQUIRED):
        raise ValueError(f"service must be None or one of {sorted(_KEYSTONE_REQUIRED)}")
    required = _KEYSTONE_REQUIRED.get(service, ())
    return _quiet_oslo(_oslo_conf_report, path, "keystone", KEYSTONE_VERSION, service, required, ())


def glance_conf_report(path, service="api"):
    """glance-api.conf: (problems, warnings) from an oslo.config type check against glance's option data."""
    required = _GLANCE_REQUIRED[service] if service else ()
    return _quiet_oslo(_oslo_conf_report, path, "glance", GLANCE_VERSION, service, required, ())


def neutron_conf_report(path, service="server"):
    """neutron.conf or ml2_conf.ini: (problems, warnings) against neutron's option data."""
    required = _NEUTRON_REQUIRED[service] if service else ()
    return _quiet_oslo(_oslo_conf_report, path, "neutron", NEUTRON_VERSION, service, required, ())


def _password_plugin_group(options):
    """A group whose recorded options include keystoneauth's password plugin, or None."""
    return next((g for g in ("placement", "service_user", "nova") if g in options
                 and any(s["name"] == "auth-url" for s in options[g]["opts"])), None)


def _oslo_conf_report(path, project, version, service, required, unwanted):
    """Parse path, register every option of project with its recorded type, read every value."""
    from oslo_config import cfg, types

    if not os.path.isfile(path):
        return _missing(path), []
    options = dict(_project_options(project))
    for alias, group in _GROUP_ALIASES.get(project, {}).items():
        options.setdefault(alias, options[group])
    problems, notes = [], []

    try:
        sections = {}
        cfg.ConfigParser(str(path), sections).parse()
    except cfg.ParseError as exc:
        return [f"{path}: {exc}"], []
    present = {(g, k) for g, kv in sections.items() for k in kv}
    # keystoneauth's password plugin options, as the generator recorded them for a group that lists them
    # (a project without such a group, e.g. glance, borrows nova's: the same keystoneauth1 release)
    plugin_options = options
    plugin_source = _password_plugin_group(options)
    if plugin_source is None and project != "nova":
        plugin_options = _project_options("nova")
        plugin_source = _password_plugin_group(plugin_options)

    conf = cfg.ConfigOpts()
    index = {}  # (group, key as written in a file) -> (group, opt, deprecated?)
    opaque_groups = set()
    for group, gdata in options.items():
        specs = list(gdata["opts"])
        names = {s["name"] for s in specs}
        auth_type = sections.get(group, {}).get("auth_type", [None])[-1]
        if "auth_type" in names and "auth-url" not in names and auth_type:
            if auth_type in _KSA_PASSWORD_PLUGINS and plugin_source:
                source = {s["name"]: s for s in plugin_options[plugin_source]["opts"]}
                for n in _KSA_PASSWORD_OPTS:
                    # the plugin's aliases live in the group that uses it
                    deps = [
                        {**d, "group": group if d.get("group") in (None, plugin_source) else d["group"]}
                        for d in source[n].get("deprecated_opts") or []
                    ]
                    specs.append({**source[n], "deprecated_opts": deps})
            else:
                opaque_groups.add(group)
                notes.append(
                    f"[{group}] auth_type = {auth_type}: the plugin's options are not known "
                    "to this validator and were not checked"
                )
        for spec in specs:
            opt = _oslo_opt(cfg, types, spec, group)
            try:
                conf.register_opt(opt, group=None if group == "DEFAULT" else group)
            except cfg.DuplicateOptError:
                continue
            index.setdefault((group, opt.dest), (group, opt, False))
            for dep in spec.get("deprecated_opts") or []:
                dgroup = dep.get("group") or group
                index.setdefault((dgroup, dep["name"].replace("-", "_")), (group, opt, True))
            if spec.get("deprecated_for_removal") and (group, opt.dest) in present:
                reason = " ".join((spec.get("deprecated_reason") or "").split())
                notes.append(
                    f"[{group}] {opt.dest} is deprecated for removal" + (f": {reason}" if reason else "")
                )

    try:
        conf(
            args=[],
            project=project,
            default_config_files=[str(path)],
            default_config_dirs=[],
            use_env=False,
        )
    except cfg.Error as exc:
        return [f"{path}: {exc}"], notes

    groups = set(options) | {"DEFAULT"}
    for group, keys in sections.items():
        if group not in groups and not any(g == group for g, _ in index):
            problems.append(f"[{group}]: unknown group (no option of {project} {version} lives there)")
            continue
        for key in keys:
            hit = index.get((group, key))
            if hit is None:
                if group in opaque_groups:
                    continue
                problems.append(f"[{group}] {key}: unknown option")
                continue
            real_group, opt, deprecated = hit
            dest = opt.dest
            if deprecated:
                notes.append(f"[{group}] {key} is a deprecated name: use [{real_group}] {dest}")
            try:
                if real_group == "DEFAULT":
                    getattr(conf, dest)
                else:
                    getattr(getattr(conf, real_group), dest)
            except (cfg.Error, ValueError) as exc:
                msg = re.sub(r"^Value for option \S+ from LocationInfo\(.*?\) is not valid: ", "", str(exc))
                value = "****" if opt.secret else keys[key][-1]
                problems.append(f"[{group}] {key} = {value}: {msg}".replace(keys[key][-1], value))

    for group, key in required:
        if (group, key) not in present:
            problems.append(f"[{group}] {key}: required for the {service} but not set")
    for group, key in unwanted:
        if (group, key) in present:
            notes.append(f"[{group}] {key} is set on a {service} node: it needs no database access")
    return problems, notes


def _strict_or_warn(path, report, strict):
    problems, notes = report
    if strict:
        return problems + notes
    for note in notes:
        warnings.warn(f"{path}: {note}", stacklevel=3)
    return problems


def nova_conf(path, service=None, strict=False):
    """nova.conf: type-check every option against nova's own data; warnings for deprecated names."""
    return _strict_or_warn(path, nova_conf_report(path, service=service), strict)


def keystone_conf(path, service="keystone", strict=False):
    """keystone.conf: type-check every option against keystone's own data; warnings for deprecated names."""
    return _strict_or_warn(path, keystone_conf_report(path, service=service), strict)


def glance_conf(path, service="api", strict=False):
    """glance-api.conf: type-check every option against glance's own data; warnings for deprecated names."""
    return _strict_or_warn(path, glance_conf_report(path, service=service), strict)


def neutron_conf(path, service="server", strict=False):
    """neutron.conf (service "server") or ml2_conf.ini ("ml2"): type-check against neutron's own data."""
    return _strict_or_warn(path, neutron_conf_report(path, service=service), strict)


# --------------------------------------------------------------------------
# dnsmasq, LVM, DRBD


def dnsmasq(path):
    """dnsmasq.conf: `dnsmasq --test -C path`."""
    res = _run(["dnsmasq", "--test", "-C", str(path)])
    if isinstance(res, str):
        return [res]
    rc, out, err = res
    lines = _lines(out, err)
    if rc == 0 and any("syntax check OK" in ln for ln in lines):
        return []
    return [ln for ln in lines if "syntax check OK" not in ln] or [f"dnsmasq --test exited {rc}"]


def lvmconfig(path):
    """lvm.conf: `LVM_SYSTEM_DIR=<dir with a copy> lvmconfig --validate`."""
    if not os.path.isfile(path):
        return _missing(path)
    with tempfile.TemporaryDirectory(prefix="kst-lvm-") as tmp:
        shutil.copyfile(path, os.path.join(tmp, "lvm.conf"))
        res = _run(
            ["lvmconfig", "--validate"],
            env={"LVM_SYSTEM_DIR": tmp, "LVM_SUPPRESS_FD_WARNINGS": "1"},
        )
    if isinstance(res, str):
        return [res]
    rc, out, err = res
    lines = [ln.replace(os.path.join(tmp, "lvm.conf"), str(path)) for ln in _lines(out, err)]
    noise = ("LVM configuration valid.", "WARNING: Running as a non-root user.")
    problems = [ln for ln in lines if not ln.startswith(noise)]
    if rc == 0 and "LVM configuration valid." in lines:
        # lvmconfig exits 0 on some warnings: keep only those
        return [ln for ln in problems if re.search(r"warning|unknown|invalid", ln, re.I)]
    return problems or [f"lvmconfig --validate exited {rc}"]


_DRBD_VERSIONS = {"8.4": "8.4.11", "9": "9.2.12"}


def drbd(path, node, version="8.4"):
    """DRBD resources: `__DRBD_NODE__=node drbdadm -c path -d up all` against a pretended driver version."""
    if version not in _DRBD_VERSIONS:
        raise ValueError(f"version must be one of {sorted(_DRBD_VERSIONS)}")
    res = _run(
        ["drbdadm", "-c", str(path), "-d", "up", "all"],
        env={"__DRBD_NODE__": node, "DRBD_DRIVER_VERSION_OVERRIDE": _DRBD_VERSIONS[version]},
    )
    if isinstance(res, str):
        return [res]
    rc, _out, err = res
    noise = ("found __DRBD_NODE__ in environment", "PRETENDING that I am")
    problems = [ln for ln in _lines(err) if not ln.startswith(noise)]
    if rc != 0 and not problems:
        problems.append(f"drbdadm -d up exited {rc}")
    return problems


# --------------------------------------------------------------------------
# corosync

_COROSYNC_NS_SCRIPT = r"""
set -eu
tmp=$1; conf=$2
mount --make-rprivate /
mount -t tmpfs kst-run /run
for d in etc var; do
  mkdir -p "$tmp/$d.up" "$tmp/$d.work"
  mount -t overlay kst-$d -o "lowerdir=/$d,upperdir=$tmp/$d.up,workdir=$tmp/$d.work" "/$d"
done
for f in $KST_LOGFILES; do
  case $f in /var/*) mkdir -p "$(dirname "$f")" ;; esac
done
case $KST_KEYFILE in
  /etc/*|/var/*)
    mkdir -p "$(dirname "$KST_KEYFILE")"
    [ -e "$KST_KEYFILE" ] || head -c 256 /dev/urandom > "$KST_KEYFILE" ;;
esac
exec corosync -t -c "$conf"
"""


def corosync(path, local_ip):
    """corosync.conf: `corosync -t -c path` in a throwaway netns with local_ip on lo (private /etc, /var)."""
    # corosync -t opens the logfile and reads the authkey: both happen in
    # overlays of /etc and /var, where a throwaway key and the log directory
    # are made (the target gets them from its package and from the role).
    if not _is_root():
        return ["corosync check needs root (ip netns, mount)"]
    for tool in ("corosync", "ip", "unshare"):
        if shutil.which(tool) is None:
            return [f"{tool}: not installed ({INSTALL_HINT})"]
    if not os.path.isfile(path):
        return _missing(path)
    addr = ipaddress.ip_address(local_ip)
    text = Path(path).read_text(errors="replace")
    logfiles = re.findall(r"^\s*logfile\s*:\s*(\S+)", text, re.M)
    keyfile = (re.findall(r"^\s*keyfile\s*:\s*(\S+)", text, re.M) or ["/etc/corosync/authkey"])[-1]
    ns = f"kst-coro-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    with tempfile.TemporaryDirectory(prefix="kst-corosync-") as tmp:
        conf = os.path.join(tmp, "corosync.conf")
        shutil.copyfile(path, conf)
        setup = [
            ["ip", "netns", "add", ns],
            ["ip", "-n", ns, "link", "set", "lo", "up"],
            ["ip", "-n", ns, "addr", "add", f"{addr}/{addr.max_prefixlen}", "dev", "lo"],
        ]
        try:
            for cmd in setup:
                res = _run(cmd, timeout=15)
                if isinstance(res, str) or res[0] != 0:
                    return [res if isinstance(res, str) else f"{shlex.join(cmd)}: {res[2].strip()}"]
            res = _run(
                [
                    "ip",
                    "netns",
                    "exec",
                    ns,
                    "unshare",
                    "--mount",
                    "--propagation",
                    "private",
                    "sh",
                    "-c",
                    _COROSYNC_NS_SCRIPT,
                    "kst-corosync",
                    tmp,
                    conf,
                ],
                timeout=30,
                env={"KST_LOGFILES": " ".join(logfiles), "KST_KEYFILE": keyfile},
            )
        finally:
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, check=False)
    if isinstance(res, str):
        return [res]
    rc, out, err = res
    lines = [ln.replace(conf, str(path)) for ln in _lines(out, err)]
    if rc == 0:
        return [ln for ln in lines if re.search(r"\b(error|warning|crit)\b", ln, re.I)]
    problems = [ln for ln in lines if not re.search(r"\bnotice\b", ln)]
    return problems or [f"corosync -t exited {rc}"]


# --------------------------------------------------------------------------
# cluster.conf (cman)


def cluster_conf(path, schema):
    """cluster.conf: `xmllint --noout --relaxng schema path` (no upstream schema exists, so the RELAX NG schema
    is ours and covers the subset kickstack writes)."""
    res = _run(["xmllint", "--noout", "--relaxng", str(schema), str(path)])
    if isinstance(res, str):
        return [res]
    rc, out, err = res
    lines = _lines(out, err)
    if rc == 0 and any(ln.endswith(" validates") for ln in lines):
        return []
    return [ln for ln in lines if not ln.endswith(" fails to validate")] or [f"xmllint --relaxng exited {rc}"]
