# -*- coding: utf-8 -*-
"""Every kickstack_* inventory variable, declared once: scope, type, default, allowed values.

The preflight model (model.py) checks each value against its declaration before any rule
that relates fields to each other; docs/inventory.md is generated from this table
(scripts/gen-inventory-doc). Checks are ordered: the YAML type first, then characters that
could break out of a kickstart, boot entry, shell script or config file, then the full-string
pattern or list of allowed values.

Scopes: "site" is read once (group_vars/all), "group" is read per host and usually set in
group_vars/<group> (storage pairs must agree on most of them), "host" is per host.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Tuple

BAD = object()  # returned by a check that reported a problem

# Characters that let a value escape its place in a generated file or script. A field that
# legitimately needs one of them says so (Str.allow).
_UNSAFE = (
    (re.compile(r"[\x00-\x08\x0a-\x1f\x7f\u2028\u2029\x85]"), "control character (e.g. a newline)", "control"),
    (re.compile(r"\t"), "tab", "control"),
    (re.compile(r"[\"']"), "quote", "quote"),
    (re.compile(r"`"), "backtick", "backtick"),
    (re.compile(r"\$"), "'$' (shell expansion)", "dollar"),
    (re.compile(r";"), "';' (command separator)", "semicolon"),
    (re.compile(r"#"), "'#' (comment)", "hash"),
    (re.compile(r"[{}]"), "'{' or '}' (template syntax)", "brace"),
    (re.compile(r"\\"), "backslash", "backslash"),
    (re.compile(r" "), "space", "space"),
)


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 70 else text[:67] + "..."


class Ctx:
    """Where a check reports: the host (or "site") and a problems sink."""

    def __init__(self, where: str, report: Callable[[str, str, str], None]) -> None:
        self.where = where
        self.report = report

    def bad(self, path: str, message: str) -> Any:
        self.report(self.where, path, message)
        return BAD


@dataclass(frozen=True)
class Spec:
    def check(self, value: Any, ctx: Ctx, path: str) -> Any:  # pragma: no cover - abstract
        raise NotImplementedError

    def type_name(self) -> str:  # pragma: no cover - abstract
        raise NotImplementedError


def _type_of(value: Any) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, (list, tuple)):
        return "a list"
    if value is None:
        return "empty (null)"
    return f"a {type(value).__name__}"


@dataclass(frozen=True)
class Str(Spec):
    """A string, free of unsafe characters except those in `allow`, fully matching `pattern`."""
    pattern: Optional[str] = None
    hint: str = ""            # what a valid value looks like, e.g. "a host name like ntp1.example.org"
    allow: Tuple[str, ...] = ()  # unsafe classes this field may carry (see _UNSAFE)
    choices: Tuple[str, ...] = ()
    max_len: int = 255
    number_hint: str = ""     # said when YAML produced a number instead
    secret: bool = False

    def type_name(self) -> str:
        if self.choices:
            return "string (" + " | ".join(self.choices) + ")"
        return "string"

    def check(self, value: Any, ctx: Ctx, path: str) -> Any:
        if not isinstance(value, str):
            extra = f": {self.number_hint}" if self.number_hint and isinstance(value, (int, float)) \
                and not isinstance(value, bool) else ""
            shown = "" if self.secret else f" ({_show(value)})"
            want = f" ({self.hint})" if self.hint and not extra else ""
            return ctx.bad(path, f"is {_type_of(value)}{shown}, expected a string{want}{extra}")
        shown = "the value" if self.secret else _show(value)
        if value == "":
            return ctx.bad(path, f"is empty{self._want()}")
        if len(value) > self.max_len:
            return ctx.bad(path, f"is longer than {self.max_len} characters{self._want()}")
        for regex, what, cls in _UNSAFE:
            if cls not in self.allow and regex.search(value):
                return ctx.bad(path, f"{shown} contains a {what}, which could break out of the generated "
                                     f"file{self._want()}")
        if self.choices and value not in self.choices:
            return ctx.bad(path, f"{shown} is not one of {', '.join(self.choices)}")
        if self.pattern and not re.fullmatch(self.pattern, value):
            return ctx.bad(path, f"{shown} is not valid{self._want()}")
        return value

    def _want(self) -> str:
        return f": expected {self.hint}" if self.hint else ""

    def describe(self) -> str:
        if self.choices:
            return "one of " + ", ".join(f"`{c}`" for c in self.choices)
        if self.pattern and len(self.pattern) <= 48:
            return f"full match of `{self.pattern}`"
        return self.hint or "any safe string"


@dataclass(frozen=True)
class Int(Spec):
    minimum: Optional[int] = None
    maximum: Optional[int] = None
    hint: str = ""

    def type_name(self) -> str:
        if self.minimum is not None and self.maximum is not None:
            return f"integer ({self.minimum}-{self.maximum})"
        if self.minimum is not None:
            return f"integer (>= {self.minimum})"
        return "integer"

    def describe(self) -> str:
        return self.type_name()

    def check(self, value: Any, ctx: Ctx, path: str) -> Any:
        if isinstance(value, bool) or not isinstance(value, int):
            digits = isinstance(value, str) and value.strip().lstrip("-").isdigit()
            return ctx.bad(path, f"is {_type_of(value)} ({_show(value)}), expected an integer"
                                 + (f" ({self.hint})" if self.hint else "") + ": write it without quotes"
                                 + (_extra_vars_hint(path, value.strip()) if digits else ""))
        if self.minimum is not None and value < self.minimum or self.maximum is not None and value > self.maximum:
            bounds = (f"between {self.minimum} and {self.maximum}" if self.maximum is not None
                      else f"at least {self.minimum}")
            return ctx.bad(path, f"{value} is out of range: must be {bounds}")
        return value


def _extra_vars_hint(path: str, example: str) -> str:
    """Extra vars given as -e key=value are always strings: say how to pass a typed value."""
    key = path.split("[")[0].split(".")[0]
    return f" (with -e, pass JSON: -e '{{\"{key}\": {example}}}', or a file: -e @vars.yml)"


@dataclass(frozen=True)
class Bool(Spec):
    def type_name(self) -> str:
        return "boolean"

    def describe(self) -> str:
        return "true or false (unquoted)"

    def check(self, value: Any, ctx: Ctx, path: str) -> Any:
        if not isinstance(value, bool):
            hint = (_extra_vars_hint(path, value.lower()) if isinstance(value, str) and value.lower() in ("true", "false")
                    else "")
            return ctx.bad(path, f"is {_type_of(value)} ({_show(value)}), expected true or false (unquoted)" + hint)
        return value


@dataclass(frozen=True)
class List(Spec):
    item: Spec = field(default_factory=Str)
    min_len: int = 0
    hint: str = ""

    def type_name(self) -> str:
        return f"list of {self.item.type_name()}"

    def describe(self) -> str:
        return (f"at least {self.min_len}; " if self.min_len else "") + "each: " + self.item.describe()

    def check(self, value: Any, ctx: Ctx, path: str) -> Any:
        if not isinstance(value, list):
            return ctx.bad(path, f"is {_type_of(value)}, expected a list" + (f" of {self.hint}" if self.hint else ""))
        if len(value) < self.min_len:
            return ctx.bad(path, f"must list at least {self.min_len}" + (f" {self.hint}" if self.hint else " item"))
        out, ok = [], True
        for index, item in enumerate(value):
            checked = self.item.check(item, ctx, f"{path}[{index}]")
            ok = ok and checked is not BAD
            out.append(checked)
        return out if ok else BAD


@dataclass(frozen=True)
class Record(Spec):
    """A mapping with known keys: {key: (spec, required)}; unknown keys are refused."""
    fields: Tuple[Tuple[str, Spec, bool], ...] = ()
    hint: str = ""

    def type_name(self) -> str:
        return "mapping {" + ", ".join(k if req else k + "?" for k, _s, req in self.fields) + "}"

    def describe(self) -> str:
        return "; ".join(f"{k}: {s.describe()}" for k, s, _r in self.fields)

    def check(self, value: Any, ctx: Ctx, path: str) -> Any:
        if not isinstance(value, dict):
            return ctx.bad(path, f"is {_type_of(value)}, expected a mapping {self.hint or self.type_name()[8:]}")
        known = {k for k, _s, _r in self.fields}
        ok = True
        for key in value:
            if key not in known:
                ctx.bad(f"{path}.{key}" if isinstance(key, str) else path,
                        f"unknown key {_show(key)} (known: {', '.join(sorted(known))})")
                ok = False
        out = {}
        for key, spec, required in self.fields:
            if key not in value or value[key] is None:
                if required:
                    ctx.bad(f"{path}.{key}", "is missing")
                    ok = False
                continue
            checked = spec.check(value[key], ctx, f"{path}.{key}")
            ok = ok and checked is not BAD
            out[key] = checked
        return out if ok else BAD


@dataclass(frozen=True)
class Named(Spec):
    """A mapping of name -> value (e.g. networks by name)."""
    key: Str = field(default_factory=Str)
    value: Spec = field(default_factory=Str)
    min_len: int = 0

    def type_name(self) -> str:
        return f"mapping of name to {self.value.type_name()}"

    def describe(self) -> str:
        return f"names: {self.key.describe()}; values: {self.value.describe()}"

    def check(self, value: Any, ctx: Ctx, path: str) -> Any:
        if not isinstance(value, dict):
            return ctx.bad(path, f"is {_type_of(value)}, expected a mapping of name to {self.value.type_name()}")
        if len(value) < self.min_len:
            return ctx.bad(path, f"must define at least {self.min_len} entry")
        out, ok = {}, True
        for key, item in value.items():
            if self.key.check(key, ctx, f"{path} key {_show(key)}") is BAD:
                ok = False
                continue
            checked = self.value.check(item, ctx, f"{path}.{key}")
            ok = ok and checked is not BAD
            out[key] = checked
        return out if ok else BAD


@dataclass(frozen=True)
class Either(Spec):
    """The first spec whose YAML type matches decides (e.g. true or a list of disks)."""
    options: Tuple[Tuple[type, Spec], ...] = ()
    hint: str = ""

    def type_name(self) -> str:
        return " or ".join(s.type_name() for _t, s in self.options)

    def describe(self) -> str:
        return " or ".join(s.describe() for _t, s in self.options)

    def check(self, value: Any, ctx: Ctx, path: str) -> Any:
        for kind, spec in self.options:
            if isinstance(value, kind) and not (kind is int and isinstance(value, bool)):
                return spec.check(value, ctx, path)
        return ctx.bad(path, f"is {_type_of(value)} ({_show(value)}), expected {self.hint or self.type_name()}")


@dataclass(frozen=True)
class Plain(Spec):
    """A scalar agent parameter (string, number, boolean); may be a secret, so never shown."""

    def type_name(self) -> str:
        return "string, number or boolean"

    def describe(self) -> str:
        return "no control characters"

    def check(self, value: Any, ctx: Ctx, path: str) -> Any:
        if not isinstance(value, (str, int, float, bool)):
            return ctx.bad(path, f"is {_type_of(value)}: agent parameters must be plain values")
        if isinstance(value, str) and re.search(r"[\x00-\x1f\x7f]", value):
            return ctx.bad(path, "contains a control character (e.g. a newline): remove it")
        return value


@dataclass(frozen=True)
class Secret(Spec):
    """A password or similar: a non-empty string without control characters, never shown."""

    def type_name(self) -> str:
        return "string (secret)"

    def describe(self) -> str:
        return "a vault reference like \"{{ kickstack_secrets.ipmi_password }}\"; no control characters"

    def check(self, value: Any, ctx: Ctx, path: str) -> Any:
        if not isinstance(value, str):
            return ctx.bad(path, f"is {_type_of(value)}, expected a string (from the vault, e.g. "
                                 "\"{{ kickstack_secrets.ipmi_password }}\")")
        if value == "":
            return ctx.bad(path, "is empty: set it from the vault, e.g. \"{{ kickstack_secrets.ipmi_password }}\"")
        if not re.fullmatch(r"[^\x00-\x1f\x7f\u2028\u2029\x85]{1,255}", value):
            return ctx.bad(path, "contains a control character (e.g. a newline) or is longer than 255 "
                                 "characters: fix the secret")
        return value


@dataclass(frozen=True)
class Opaque(Spec):
    """A mapping whose values are secrets: only its shape is checked here."""

    def type_name(self) -> str:
        return "mapping (vault-encrypted)"

    def describe(self) -> str:
        return "the secrets preflight requires per profile, present and non-empty"

    def check(self, value: Any, ctx: Ctx, path: str) -> Any:
        if not isinstance(value, dict):
            return ctx.bad(path, f"is {_type_of(value)}, expected a mapping of secret name to value")
        return value


# Patterns (always used with re.fullmatch).
LABEL = r"(?!-)[a-z0-9-]{1,63}(?<!-)"
DOMAIN = rf"{LABEL}(?:\.{LABEL})*"
DNS_NAME = r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)(?:\.(?!-)[A-Za-z0-9-]{1,63}(?<!-))*"
IPV4 = r"(?:(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])\.){3}(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
CIDR4 = IPV4 + r"/(?:[0-9]|[12][0-9]|3[0-2])"
DISK = r"(?:[a-z][a-z0-9]*|disk/by-(?:id|path|uuid|label|partuuid)/[A-Za-z0-9_.:+@-]+)"
URL = (r"https?://(?:" + DNS_NAME + r"|" + IPV4 + r")(?::[0-9]{1,5})?"
       r"(?:/[A-Za-z0-9._~%+,=:@-]*)*")
LVM_NAME = r"(?!-)[A-Za-z0-9_+.-]{1,64}"
ABS_PATH = r"(?:/[A-Za-z0-9_.+@-]+)+"
MAC = r"[0-9A-Fa-f]{2}(?::[0-9A-Fa-f]{2}){5}"

MAC_NUMBER_HINT = ("YAML 1.1 reads an unquoted MAC made only of digits and colons as a base-60 number: "
                   "put the MAC in quotes, e.g. mac: \"52:54:00:60:00:21\"")
IPV4_ONLY = "an IPv4 address like 10.60.0.21 (the generated files are IPv4-only)"

NETWORK = Record(fields=(
    ("cidr", Str(pattern=CIDR4, hint="an IPv4 network like 10.60.0.0/24 (IPv4 only)"), True),
    ("gateway", Str(pattern=IPV4, hint=IPV4_ONLY), False),
    ("dns", List(item=Str(pattern=IPV4, hint=IPV4_ONLY), hint="IPv4 addresses"), False),
    ("mtu", Int(minimum=576, maximum=9216, hint="576-9216"), False),
))
INTERFACE = Record(fields=(
    ("network", Str(pattern=r"[A-Za-z0-9_-]{1,32}", hint="the name of one of kickstack_networks"), True),
    ("mac", Str(pattern=MAC, hint="a MAC address like 52:54:00:12:34:56", number_hint=MAC_NUMBER_HINT), True),
    ("ip", Str(pattern=IPV4, hint=IPV4_ONLY), True),
))
PARTITION = Record(fields=(
    ("mount", Str(pattern=r"swap|/|(?:/[A-Za-z0-9_.-]+)+/?", hint="an absolute path like /var/log, or swap"), True),
    ("size_mb", Int(minimum=1, hint="MiB"), True),
    ("grow", Bool(), False),
    ("fstype", Str(choices=("xfs", "ext4")), False),
))
REPO = Record(fields=(
    ("name", Str(pattern=r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}", hint="a repo id like site-tools"), True),
    ("baseurl", Str(pattern=URL, hint="an http(s) URL without spaces, quotes, ';', '#', '$', braces"), True),
))
FENCE_DEVICE = Record(fields=(
    ("name", Str(pattern=r"[A-Za-z_][A-Za-z0-9_.-]{0,63}", hint="a pacemaker id like fence-stor01"), True),
    ("agent", Str(pattern=r"fence_[a-z0-9_]+", hint="a fence agent name like fence_ipmilan"), True),
    ("host", Str(pattern=r"[A-Za-z0-9][A-Za-z0-9_.-]*", hint="the inventory name of the node it fences"), True),
    ("params", Named(key=Str(pattern=r"[a-z][a-z0-9_]*", hint="an agent parameter name like ip"), value=Plain()), False),
))
BMC = Record(fields=(
    ("protocol", Str(choices=("redfish", "ipmi")), True),
    ("address", Str(pattern=DNS_NAME + "|" + IPV4, max_len=253,
                    hint="the BMC's host name or IPv4 address like 10.60.0.131"), True),
    ("port", Int(minimum=1, maximum=65535, hint="1-65535"), False),
    ("username", Str(pattern=r"[A-Za-z0-9_][A-Za-z0-9_.@-]{0,63}", hint="a BMC user name like kickstack"), True),
    ("password", Secret(), True),
    ("systems_uri", Str(pattern=r"/redfish/v1/Systems/[A-Za-z0-9_][A-Za-z0-9_.:@-]{0,63}",
                        hint="the host's Redfish system like /redfish/v1/Systems/1"), False),
    ("verify_tls", Bool(), False),
))
SHARED_LV = Record(fields=(
    ("name", Str(pattern=LVM_NAME, hint="an LVM name like lv_data"), True),
    ("size", Str(pattern=r"[0-9]+(?:\.[0-9]+)?[bBsSkKmMgGtTpPeE]?|[0-9]{1,3}%(?:VG|FREE|PVS)",
                 hint="an LVM size like 64m, 10G or 50%FREE"), True),
))
SSH_KEY = Str(pattern=r"(?:ssh-ed25519|ssh-rsa|ecdsa-sha2-nistp(?:256|384|521)|sk-ssh-ed25519@openssh\.com"
                      r"|sk-ecdsa-sha2-nistp256@openssh\.com) [A-Za-z0-9+/]+={0,3}(?: [^\"'\\`]*)?",
              allow=("space",), max_len=16384,
              hint="an SSH public key 'TYPE BASE64 [comment]' (the comment may have spaces, not quotes)")


@dataclass(frozen=True)
class Version(Spec):
    """A release number YAML may read as a number (9, 8.4) or a string ('9'); kept as a string."""
    choices: Tuple[str, ...] = ()

    def type_name(self) -> str:
        return "string (" + " | ".join(repr(c) for c in self.choices) + ")"

    def describe(self) -> str:
        return "one of " + ", ".join(f"`{c!r}`" for c in self.choices) + " (a number is read as its text)"

    def check(self, value: Any, ctx: Ctx, path: str) -> Any:
        if isinstance(value, bool) or not isinstance(value, (str, int, float)):
            return ctx.bad(path, f"is {_type_of(value)} ({_show(value)}), expected one of "
                                 + ", ".join(repr(c) for c in self.choices))
        text = str(value)
        if text not in self.choices:
            return ctx.bad(path, f"{_show(text)} is not one of {', '.join(repr(c) for c in self.choices)}")
        return text


VERSION = Version(choices=("", "8.4", "9"))
FORCE_MD = Either(options=((bool, Bool()), (list, List(item=Str(pattern=r"(?:/dev/)?" + DISK,
                                                                hint="a disk like sdb or /dev/sdb")))),
                  hint="true (the DRBD disk) or a list of disks")


@dataclass(frozen=True)
class Field:
    key: str
    scope: str          # site | group | host
    spec: Spec
    default: Any
    doc: str
    required: bool = False
    unsafe: str = ""    # what otherwise-unsafe content the field may carry (docs)


_NONE = object()

FIELDS: Tuple[Field, ...] = (
    # --- site ---------------------------------------------------------------------------
    Field("kickstack_domain", "site", Str(pattern=DOMAIN, max_len=200, hint="a DNS domain like lab.example.org"),
          _NONE, "DNS domain of every host (FQDN = hostname.domain, at most 64 characters).", required=True),
    Field("kickstack_timezone", "site", Str(pattern=r"[A-Za-z0-9_+-]+(?:/[A-Za-z0-9_+-]+)*",
                                             hint="a tz database name like Europe/Berlin"),
          "UTC", "Time zone of the installed hosts (tz database name)."),
    Field("kickstack_keyboard", "site", Str(pattern=r"[a-z]{2,3}(?:[-_][a-z0-9_]+)*(?:\([a-z0-9_]+\))?",
                                             hint="a keyboard layout like us or de-nodeadkeys"),
          "us", "Console keyboard layout written to the kickstart."),
    Field("kickstack_language", "site", Str(pattern=r"[a-z]{2,3}_[A-Z]{2}(?:\.UTF-8)?(?:@[a-z]+)?",
                                             hint="a glibc locale like en_US.UTF-8"),
          "en_US.UTF-8", "System locale (a glibc UTF-8 locale)."),
    Field("kickstack_time_sources", "site", List(item=Str(pattern=DNS_NAME + "|" + IPV4, max_len=253,
                                                           hint="a host name or IPv4 address, no options"),
                                                 min_len=1, hint="NTP server or pool name"),
          _NONE, "Upstream NTP servers of the controller (host names or IPv4 addresses only).", required=True),
    Field("kickstack_mirror_url", "site", Str(pattern=URL, max_len=1024,
                                               hint="an http(s) URL without spaces, quotes, ';', '#', '$', braces"),
          _NONE, "Base URL of the local mirror of the install trees.", required=True),
    Field("kickstack_extra_repos", "site", List(item=REPO, hint="{name, baseurl}"), [],
          "Extra repositories added to every kickstart; names may not repeat a platform repo."),
    Field("kickstack_boot_network", "site", Str(pattern=r"[A-Za-z0-9_-]{1,32}", hint="a network name"),
          "mgmt", "The network hosts PXE-boot and are managed on."),
    Field("kickstack_networks", "site", Named(key=Str(pattern=r"[A-Za-z0-9_-]{1,32}", hint="a network name"),
                                              value=NETWORK, min_len=1),
          _NONE, "Networks by name: {cidr, gateway?, dns?, mtu?} (IPv4; networks may not overlap).", required=True),
    Field("kickstack_deploy_user", "site", Str(pattern=r"[a-z_][a-z0-9_-]{0,31}", hint="a user name like deploy"),
          "deploy", "The user Ansible logs in as after installation (not root)."),
    Field("kickstack_deploy_ssh_keys", "site", List(item=SSH_KEY, min_len=1, hint="SSH public key"), _NONE,
          "SSH public keys of the deploy user.", required=True,
          unsafe="spaces in the key's comment (no quotes, no control characters)"),
    Field("kickstack_kernel_args", "site", List(item=Str(pattern=r"[A-Za-z0-9_.][A-Za-z0-9_.,:=/+@-]*",
                                                          hint="a kernel argument like console=ttyS0,115200n8")),
          ["console=tty0", "console=ttyS0,115200n8"], "Kernel arguments of the installer boot entries."),
    Field("kickstack_extra_packages", "site", List(item=Str(pattern=r"-?(?:@\^?)?[A-Za-z0-9][A-Za-z0-9_.+:*-]*",
                                                             hint="a package or @group name")),
          [], "Packages added to every kickstart on top of the per-family and per-profile lists."),
    Field("kickstack_replication_network", "site", Str(pattern=r"[A-Za-z0-9_-]{1,32}", hint="a network name"),
          "storage", "The network DRBD and the storage cluster use."),
    Field("kickstack_openstack_venv", "site", Str(pattern=ABS_PATH, hint="an absolute path like /opt/kickstack/openstack"),
          "/opt/kickstack/openstack", "Virtualenv of the OpenStack services installed from PyPI."),
    Field("kickstack_chrony_daemon_options", "site", List(item=Str(pattern=r"-[A-Za-z0-9]+|[A-Za-z0-9_.,:=/+-]+",
                                                                   hint="a chronyd option like -x")),
          [], "Extra command-line options of chronyd (e.g. -x in containers)."),
    Field("kickstack_root_password_in_kickstart", "site", Bool(), False,
          "Put kickstack_secrets.root_password_hash into the kickstarts (root console login). Default: "
          "root is locked and no kickstart carries a password hash."),
    Field("kickstack_secrets", "site", Opaque(), _NONE,
          "Generated, vault-encrypted secrets (scripts/kickstack-secrets); values are never shown.", required=True),
    # --- group (per host, usually group_vars) -------------------------------------------
    Field("kickstack_profile", "group", Str(choices=("controller", "compute", "storage", "pxe")), _NONE,
          "The host's role; set by its group (one of controller, compute, storage, pxe).", required=True),
    Field("kickstack_fence_devices", "group", List(item=FENCE_DEVICE, hint="{name, agent, host, params}"), [],
          "Storage: fence devices of the pair's cluster; params are the agent's (password from the vault). "
          "fence_redfish, fence_ipmilan and fence_ipmilanplus take ip, ipport, username, password (and "
          "systems_uri, ssl_insecure or lanplus) from the fenced host's kickstack_bmc; params given "
          "here are added on top.",
          unsafe="any character but control characters in params (never shown)"),
    Field("kickstack_cluster_allow_no_fencing", "group", Bool(), False,
          "Storage: allow a cluster without fence devices (test labs only)."),
    Field("kickstack_drbd_version", "group", VERSION, "", "Storage: DRBD version ('' = the platform's default, '8.4', '9')."),
    Field("kickstack_drbd_dual_primary", "group", Bool(), True, "Storage: DRBD dual-primary (both nodes active)."),
    Field("kickstack_drbd_fencing", "group", Str(choices=("resource-and-stonith", "resource-only", "none")),
          "resource-and-stonith", "Storage: DRBD fencing policy."),
    Field("kickstack_drbd_allow_dual_primary_without_fencing", "group", Bool(), False,
          "Storage: accept dual-primary without resource-and-stonith (test labs only)."),
    Field("kickstack_drbd_resource", "group", Str(pattern=r"[A-Za-z0-9_-]{1,32}", hint="a resource name like r0"),
          "r0", "Storage: DRBD resource name."),
    Field("kickstack_drbd_device", "group", Str(pattern=r"/dev/drbd[0-9]{1,4}", hint="a device like /dev/drbd0"),
          "/dev/drbd0", "Storage: DRBD device."),
    Field("kickstack_drbd_port", "group", Int(minimum=1, maximum=65535), 7789, "Storage: DRBD TCP port."),
    Field("kickstack_drbd_meta_disk", "group", Str(pattern=r"internal|/dev/" + DISK, hint="internal or /dev/<disk>"),
          "internal", "Storage: where DRBD keeps its metadata."),
    Field("kickstack_drbd_initial_sync_source", "group", Str(pattern=r"[A-Za-z0-9][A-Za-z0-9_.-]*",
                                                              hint="the inventory name of a node of the pair"),
          None, "Storage: the node whose data wins the first sync (default: first of the pair by name)."),
    Field("kickstack_drbd_link_speed_mbit", "group", Int(minimum=1), 1000, "Storage: replication link speed (Mbit/s)."),
    Field("kickstack_drbd_disk_speed_mbyte", "group", Int(minimum=1), 200, "Storage: backing disk speed (MByte/s)."),
    Field("kickstack_drbd_fence_tolerance", "group", Int(minimum=1, maximum=3600), 120,
          "Storage: a fencing of the peer this recent (s) counts as DRBD's own (less than a node takes to boot)."),
    Field("kickstack_cluster_stack", "group", Str(choices=("corosync", "cman")), "corosync", "Storage: cluster stack."),
    Field("kickstack_cluster_name", "group", Str(pattern=r"[A-Za-z][A-Za-z0-9_-]{0,15}", hint="a name of up to 16 characters"),
          "kickstack", "Storage: cluster name."),
    Field("kickstack_cluster_totem_token", "group", Int(minimum=100, maximum=600000), 3000,
          "Storage: corosync totem token timeout (ms)."),
    Field("kickstack_cluster_fence_timeout", "group", Int(minimum=1, maximum=3600), 60, "Storage: fence timeout (s)."),
    Field("kickstack_clvm_mode", "group", Str(choices=("lvmlockd", "clvmd")), "lvmlockd", "Storage: cluster LVM locking."),
    Field("kickstack_shared_vg", "group", Str(pattern=LVM_NAME, hint="an LVM name like vg_shared"), "vg_shared",
          "Storage: the volume group on the DRBD device."),
    Field("kickstack_shared_vg_mode", "group", Str(choices=("clustered", "local")), "clustered",
          "Storage: clustered (shared lock) or local volume group."),
    Field("kickstack_shared_lvs", "group", List(item=SHARED_LV, hint="{name, size}"), [],
          "Storage: logical volumes in the shared volume group."),
    # --- host ----------------------------------------------------------------------------
    Field("kickstack_hostname", "host", Str(pattern=LABEL, hint="a lowercase DNS label like cmp01"), None,
          "Host name (default: the inventory name)."),
    Field("kickstack_interfaces", "host", List(item=INTERFACE, min_len=1, hint="interface {network, mac, ip}"),
          _NONE, "Interfaces: {network, mac, ip}; one on the boot network.", required=True),
    Field("kickstack_disks", "host", List(item=Str(pattern=DISK, hint="a disk like sda, nvme0n1 or disk/by-id/...")),
          [], "Installed hosts: the host's disks."),
    Field("kickstack_os_disk", "host", Str(pattern=DISK, hint="a disk like sda, nvme0n1 or disk/by-id/..."), _NONE,
          "Installed hosts: the disk the OS is installed on (wiped)."),
    Field("kickstack_partitions", "host", List(item=PARTITION, min_len=1, hint="{mount, size_mb[, grow, fstype]}"),
          None, "Installed hosts: the OS disk's layout (default: the profile's)."),
    Field("kickstack_os", "host", Str(pattern=r"[a-z0-9.-]+", hint="an OS release like centos-stream-10"),
          _NONE, "OS release of the host; set the site's default in group_vars/all.", required=True),
    Field("kickstack_netboot", "host", Bool(), True, "Whether the host PXE-boots into the installer."),
    Field("kickstack_delivery", "host", Str(choices=("bootstrap", "standalone")), "bootstrap",
          "Installed hosts: how the roles reach the node. bootstrap: the kickstart prepares it for Ansible "
          "and playbooks/site.yml configures it over SSH; standalone: the kickstart also delivers a bundle "
          "(its roles, plays, model slice and secrets) and the node applies it to itself on first boot. "
          "Set the site's default in group_vars/all."),
    Field("kickstack_bmc", "host", BMC, None,
          "The host's BMC: {protocol (redfish | ipmi), address, port?, username, password (from the vault), "
          "systems_uri? (Redfish, when the BMC manages several systems), verify_tls? (Redfish, default true)}. "
          "playbooks/reinstall.yml needs it; fence_redfish and fence_ipmilan devices take their "
          "connection from the fenced host's BMC.",
          unsafe="any character but control characters in password (never shown)"),
    Field("kickstack_drbd_disk", "host", Str(pattern=DISK, hint="a disk like sdb or disk/by-id/..."), _NONE,
          "Storage: the DRBD backing disk (never touched by the installer)."),
    Field("kickstack_drbd_peer", "host", Str(pattern=r"[A-Za-z0-9][A-Za-z0-9_.-]*", hint="an inventory host name"),
          _NONE, "Storage: the inventory name of the other node of the pair."),
    Field("kickstack_drbd_force_create_md", "host", FORCE_MD, [],
          "Storage: disks whose DRBD metadata may be (re)created, destroying data; true = the DRBD disk."),
)

BY_KEY: Dict[str, Field] = {f.key: f for f in FIELDS}
# kickstack_os is read for the site too: its group_vars/all value is the default of every host.
SITE_KEYS = tuple(f.key for f in FIELDS if f.scope == "site") + ("kickstack_os",)
HOST_KEYS = tuple(f.key for f in FIELDS if f.scope != "site")
MISSING = _NONE


def default(key: str) -> Any:
    value = BY_KEY[key].default
    return None if value is _NONE else value


def check_vars(where: str, values: Dict[str, Any], keys: Tuple[str, ...],
               report: Callable[[str, str, str], None]) -> Tuple[Dict[str, Any], set]:
    """Type/character/pattern check of each present key; returns (clean values, keys refused)."""
    ctx = Ctx(where, report)
    clean: Dict[str, Any] = {}
    refused = set()
    for key in keys:
        if key not in values:
            continue
        value = values[key]
        if value is None:
            continue
        checked = BY_KEY[key].spec.check(value, ctx, key)
        if checked is BAD:
            refused.add(key)
        else:
            clean[key] = checked
    return clean, refused


def doc_rows() -> List[Dict[str, str]]:
    rows = []
    for f in FIELDS:
        if f.default is _NONE:
            dflt = "required" if f.required else "—"
        elif f.default is None:
            dflt = "—"
        else:
            dflt = repr(f.default) if not isinstance(f.default, (list, bool, int)) else \
                ("true" if f.default is True else "false" if f.default is False else str(f.default))
        rows.append({"key": f.key, "scope": f.scope, "type": f.spec.type_name(), "default": dflt,
                     "allowed": f.spec.describe(),
                     "doc": f.doc, "unsafe": f.unsafe or "no"})
    return rows
