# -*- coding: utf-8 -*-
"""Quote, escape or refuse every value for the file format it is written into.

The renderers assume the inventory checks may have missed something: each value that reaches
a kickstart, a boot entry, the dnsmasq configuration or a shell script goes through one of the
filters below, which either quote it so that it stays one argument of its own line, or refuse
it with an `Unsafe` error that names the field. The template environment only lets `Quoted`
strings (what these filters return) and plain integers through (see `guard`), so a template
that interpolates a value without a filter fails to render instead of writing it raw.

Target formats, and what decides the rules:

kickstart   pykickstart (used by anaconda and dracut alike) cuts the file into lines with
            str.splitlines(), which also breaks at \\r, \\v, \\f, \\x1c-\\x1e, \\x85, U+2028 and
            U+2029, then splits a command line with shlex.split(line, comments=True) (POSIX
            mode): outside quotes whitespace separates arguments, '#' starts a comment and '\\'
            escapes; inside double quotes only '\\"' and '\\\\' are escapes. A value is written
            bare when it only has characters shlex treats as plain word characters, otherwise
            in double quotes with '"' and '\\' escaped; either way it is exactly one argument.
            Nothing can quote a line break, so any control character is refused.
GRUB 2      grub.cfg words are single-quoted when they are not plain (a quote as '\\'' ), so ';',
            '#', '$', '{', spaces cannot start a command, a comment or an expansion.
kernel      the Linux command line has no escapes: whitespace, '"' (its quoting character), and
            '\\' and "'" (GRUB prefixes them with a backslash the kernel does not remove) are
            refused, as is anything outside printable ASCII (the kernel takes byte 0xA0, part
            of many UTF-8 characters, for a space).
pxelinux    no quoting at all: a value with whitespace or a control character is refused.
dnsmasq     one option per line, fields separated by ',', '#' starts a comment, '"' and '\\'
            are interpreted: values are limited to a plain character set.
shell       POSIX single quotes (shlex.quote); JSON through a JSON encoder, ASCII only.
"""

from __future__ import annotations

import json
import re
import shlex
from typing import Any, Optional

# Every character that ends a line for str.splitlines() (pykickstart, Python readers), for C
# readers (\n, \r) and terminals (escape sequences): the C0 and C1 controls, DEL, the Unicode
# line and paragraph separators, and lone surrogates (which cannot even be written as UTF-8).
CONTROL_RE = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff]")

# Written without quotes when a value consists of these only.
KS_BARE_RE = re.compile(r"[A-Za-z0-9_@%+=:,./$-]+")
GRUB_BARE_RE = re.compile(r"[A-Za-z0-9_@%+=:,./-]+")
# Printable ASCII without space, '"', "'" and '\'.
KERNEL_WORD_RE = re.compile(r"[!#-&(-\[\]-~]+")
DNSMASQ_RE = re.compile(r"[A-Za-z0-9_.:/@+%=~-]+")
PACKAGE_RE = re.compile(r"(?:@\^?|-)?[A-Za-z0-9_][A-Za-z0-9_.+:*?/~^-]*")
USER_RE = re.compile(r"[a-z_][a-z0-9_-]{0,31}")
LV_NAME_RE = re.compile(r"[A-Za-z0-9_+.][A-Za-z0-9_+.-]{0,126}")
PATH_COMPONENT_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,199}")

# Longest value for one kernel argument and for a dnsmasq field; the whole line is checked
# by the renderer as well.
KERNEL_WORD_MAX = 1024
DNSMASQ_VALUE_MAX = 255


class Quoted(str):
    """A value already quoted (or checked) for the format it is written into."""

    __slots__ = ()


class Unsafe(Exception):
    """A value that cannot be written safely; the renderer adds the host and the file."""

    def __init__(self, field: str, problem: str, host: Optional[str] = None) -> None:
        super().__init__(f"{field}: {problem}")
        self.field = field
        self.problem = problem
        self.host = host


def show(value: Any, secret: bool = False) -> str:
    """The value for an error message: repr, shortened, or hidden when it is a secret."""
    if secret:
        return "(value hidden: it is a secret)"
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _text(value: Any, field: str, secret: bool = False, host: Optional[str] = None) -> str:
    """The value as text (strings as they are, integers in decimal), free of control characters."""
    if isinstance(value, str):
        text = value
    elif isinstance(value, int) and not isinstance(value, bool):
        text = str(value)
    else:
        raise Unsafe(field, f"is {type(value).__name__} {show(value, secret)}, not a string or a number", host)
    if text == "":
        raise Unsafe(field, "is empty", host)
    bad = CONTROL_RE.search(text)
    if bad:
        raise Unsafe(field, f"{show(text, secret)} contains the control character U+{ord(bad.group()):04X}, "
                            "which could end the line and start a new command; remove it", host)
    return text


def _first_bad(text: str, allowed: "re.Pattern[str]") -> str:
    for char in text:
        if not allowed.fullmatch(char):
            return char
    return ""


def guard(value: Any) -> Any:
    """Jinja `finalize`: only quoted strings and integers may reach the output."""
    if type(value) is Quoted or isinstance(value, Quoted) or (isinstance(value, int) and not isinstance(value, bool)):
        return value
    raise Unsafe("template", f"interpolates {show(value)} without a quoting filter (ks_value, grub, ...): "
                             "every value must go through the filter of its target format")


def number(value: Any, field: str, host: Optional[str] = None) -> int:
    """A whole number (a timeout): integers only, never a string that looks like one."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise Unsafe(field, f"is {type(value).__name__} {show(value)}, not a whole number >= 0", host)
    return value


# --- kickstart -------------------------------------------------------------------------

def ks_quote(text: str) -> str:
    if KS_BARE_RE.fullmatch(text):
        return text
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def ks_value(value: Any, field: str, secret: bool = False, host: Optional[str] = None) -> Quoted:
    """The value of a kickstart option (--name=VALUE): one argument, whatever it holds."""
    return Quoted(ks_quote(_text(value, field, secret, host)))


def ks_positional(value: Any, field: str, secret: bool = False, host: Optional[str] = None) -> Quoted:
    """A positional kickstart argument: also refused when it would read as an option."""
    text = _text(value, field, secret, host)
    if text.startswith("-"):
        raise Unsafe(field, f"{show(text, secret)} starts with '-', so the kickstart would read it as an option",
                     host)
    return Quoted(ks_quote(text))


def ks_item(value: Any, field: str, host: Optional[str] = None) -> Quoted:
    """One element of a comma-separated kickstart option (--only-use=, --drives=, --port=)."""
    text = _text(value, field, host=host)
    if "," in text:
        raise Unsafe(field, f"{show(text)} contains ',', which would add another element to the list", host)
    return Quoted(ks_quote(text))


def ks_list(values: Any, field: str, host: Optional[str] = None) -> Quoted:
    """A list as the comma-separated value of one kickstart option."""
    if not isinstance(values, (list, tuple)) or not values:
        raise Unsafe(field, f"is {show(values)}, not a non-empty list", host)
    items = []
    for item in values:
        text = _text(item, field, host=host)
        if "," in text:
            raise Unsafe(field, f"element {show(text)} contains ',', which would add another element", host)
        items.append(text)
    return Quoted(ks_quote(",".join(items)))


def ks_package(value: Any, field: str, host: Optional[str] = None) -> Quoted:
    """One line of %packages: a package, @group, @^environment or -excluded package name."""
    text = _text(value, field, host=host)
    if not PACKAGE_RE.fullmatch(text):
        bad = _first_bad(text, re.compile(r"[A-Za-z0-9_.+:*?/~^@-]"))
        why = f"the character {bad!r}" if bad else "an unexpected first character"
        raise Unsafe(field, f"{show(text)} is not a package name (it has {why}); a %packages line holds one name",
                     host)
    return Quoted(text)


def user_name(value: Any, field: str, host: Optional[str] = None) -> Quoted:
    """A POSIX user name, as written into kickstart options, sudoers and file names."""
    text = _text(value, field, host=host)
    if not USER_RE.fullmatch(text):
        raise Unsafe(field, f"{show(text)} is not a user name (lowercase letters, digits, '_' and '-', "
                            "starting with a letter or '_', at most 32)", host)
    return Quoted(text)


def lv_name(mount: Any, field: str, host: Optional[str] = None) -> Quoted:
    """The logical volume name for a mount point (/var/log -> var_log), checked for LVM."""
    text = _text(mount, field, host=host)
    name = "root" if text == "/" else text.strip("/").replace("/", "_")
    if not LV_NAME_RE.fullmatch(name) or name in (".", ".."):
        raise Unsafe(field, f"mount point {show(text)} gives the logical volume name {show(name)}, which LVM "
                            "does not accept (letters, digits, '+', '_', '.', '-'; not starting with '-')", host)
    return Quoted(name)


# --- shell (%post) -----------------------------------------------------------------------

def sh(value: Any, field: str, host: Optional[str] = None) -> Quoted:
    """One word of a POSIX shell command."""
    return Quoted(shlex.quote(_text(value, field, host=host)))


def json_line(value: Any, field: str, host: Optional[str] = None) -> Quoted:
    """A JSON document on one line of ASCII (control characters and U+2028 come out as \\uXXXX)."""
    try:
        text = json.dumps(value, ensure_ascii=True, allow_nan=False, sort_keys=False)
    except (TypeError, ValueError) as exc:
        raise Unsafe(field, f"cannot be written as JSON: {exc}", host) from None
    # ensure_ascii leaves DEL alone; nothing else outside printable ASCII can remain.
    return Quoted(text.replace("\x7f", "\\u007f"))


# --- comments and free text ----------------------------------------------------------------

def _visible(match: "re.Match[str]") -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def text(value: Any) -> Quoted:
    """Free text on a comment or report line: control characters shown as \\xNN, never raw."""
    value = str(value)
    return Quoted(CONTROL_RE.sub(_visible, value) if CONTROL_RE.search(value) else value)


def comment(value: Any, prefix: str = "#") -> Quoted:
    """A comment block: every line prefixed, control characters inside a line shown escaped."""
    lines = str(value).splitlines() or [""]
    return Quoted("\n".join(f"{prefix} {CONTROL_RE.sub(_visible, line)}".rstrip() for line in lines))


# --- GRUB 2 ------------------------------------------------------------------------------

def grub_quote(text: str) -> str:
    if GRUB_BARE_RE.fullmatch(text):
        return text
    return "'" + text.replace("'", "'\\''") + "'"


def grub(value: Any, field: str, host: Optional[str] = None) -> Quoted:
    """One word of a grub.cfg command (a menu title, a path)."""
    return Quoted(grub_quote(_text(value, field, host=host)))


def kernel_word(value: Any, field: str, host: Optional[str] = None) -> str:
    """One argument of the Linux kernel command line, or Unsafe."""
    return _limited(_text(value, field, host=host), field, host, KERNEL_WORD_MAX, KERNEL_WORD_RE,
                    "a kernel argument may have at most {max} (the whole command line at most 2047 bytes)",
                    "which the kernel command line cannot carry (no spaces, quotes, backslashes or non-ASCII "
                    "characters)")


def _limited(text: str, field: str, host: Optional[str], limit: int, pattern, too_long: str, refused: str) -> str:
    """text, when it is at most limit characters long and pattern matches all of it; else Unsafe."""
    if len(text) > limit:
        raise Unsafe(field, f"{show(text)} is {len(text)} characters long: {too_long.format(max=limit)}", host)
    if not pattern.fullmatch(text):
        raise Unsafe(field, f"{show(text)} contains {_first_bad(text, pattern)!r}, {refused}", host)
    return text


def grub_kernel(value: Any, field: str, host: Optional[str] = None) -> Quoted:
    """A kernel argument on GRUB's `linux` line: kernel-safe, then quoted for GRUB."""
    return Quoted(grub_quote(kernel_word(value, field, host)))


# --- pxelinux ----------------------------------------------------------------------------

def pxe_kernel(value: Any, field: str, host: Optional[str] = None) -> Quoted:
    """A word of a pxelinux KERNEL or APPEND line, which has no quoting: refused unless plain."""
    return Quoted(kernel_word(value, field, host))


def pxe_text(value: Any, field: str, host: Optional[str] = None) -> Quoted:
    """Text up to the end of a pxelinux line (MENU LABEL)."""
    return Quoted(_text(value, field, host=host))


# --- dnsmasq -------------------------------------------------------------------------------

def dnsmasq(value: Any, field: str, host: Optional[str] = None) -> Quoted:
    """One field of a dnsmasq option: no ',', '#', quotes, backslashes, whitespace or controls."""
    return Quoted(_limited(_text(value, field, host=host), field, host, DNSMASQ_VALUE_MAX, DNSMASQ_RE,
                           "a dnsmasq field may have at most {max} here",
                           "which dnsmasq would read as a field separator, comment, quote or line end "
                           "(allowed: letters, digits and _ . : / @ + % = ~ -)"))


def dnsmasq_list(values: Any, field: str, host: Optional[str] = None) -> Quoted:
    """A list written as the last, comma-separated fields of a dnsmasq option."""
    if not isinstance(values, (list, tuple)) or not values:
        raise Unsafe(field, f"is {show(values)}, not a non-empty list", host)
    return Quoted(",".join(dnsmasq(v, field, host) for v in values))


# --- file names ----------------------------------------------------------------------------

def path_component(value: Any, field: str, host: Optional[str] = None) -> str:
    """A name used as one file name component below the build directory."""
    text = _text(value, field, host=host)
    if not PATH_COMPONENT_RE.fullmatch(text):
        raise Unsafe(field, f"{show(text)} cannot be used in a file name (allowed: letters, digits and "
                            "_ . -, not starting with '.' or '-', at most 200 characters; no '/')", host)
    return text


def _memoised(function):
    """Cache a filter's result per (string value, field): site-wide values repeat for every host.

    Only successful results are kept (a refusal raises each time), only for the common call
    with a string and a field name, and at most CACHE_MAX per filter.
    """
    cache: dict = {}

    def wrapper(value, field, *args, **kwargs):
        if args or kwargs or not isinstance(value, str):
            return function(value, field, *args, **kwargs)
        key = (value, field)
        try:
            return cache[key]
        except KeyError:
            result = function(value, field)
            if len(cache) < CACHE_MAX:
                cache[key] = result
            return result

    wrapper.__name__ = function.__name__
    wrapper.__doc__ = function.__doc__
    return wrapper


CACHE_MAX = 65536

FILTERS = {
    "number": number,
    "ks_value": _memoised(ks_value),
    "ks_positional": _memoised(ks_positional),
    "ks_item": _memoised(ks_item),
    "ks_list": ks_list,
    "ks_package": _memoised(ks_package),
    "user_name": _memoised(user_name),
    "lv_name": _memoised(lv_name),
    "sh": _memoised(sh),
    "json_line": json_line,
    "text": text,
    "comment": comment,
    "grub": _memoised(grub),
    "grub_kernel": _memoised(grub_kernel),
    "pxe_kernel": _memoised(pxe_kernel),
    "pxe_text": _memoised(pxe_text),
    "dnsmasq": _memoised(dnsmasq),
    "dnsmasq_list": dnsmasq_list,
}
