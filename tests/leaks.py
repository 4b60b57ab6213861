"""Find the lab's secrets in tool output without ever showing them.

`forms(value)` lists the ways a secret can appear in text: as is, URL-quoted the way the roles
put passwords into connection URLs, and inside base64 (e.g. an HTTP Basic header, where the
secret follows "user:" at any byte offset). `find_leaks` reports (name, line number) pairs and
`mask` replaces every form with a placeholder naming the secret, so a failure message can
quote tool output safely.
"""

from __future__ import annotations

import base64
import re
from typing import Dict, Iterable, List, Set, Tuple
from urllib.parse import quote, quote_plus

MIN_LENGTH = 8
# Public values the secrets file carries next to the secrets.
PUBLIC = frozenset({"deploy_ssh_public_key"})


def _base64_cores(value: bytes) -> Set[str]:
    """Base64 text that encodes `value` whatever the number of bytes before it in the blob.

    With k bytes in front, only the characters whose 6 bits come wholly from `value` are fixed.
    """
    cores = set()
    for k in range(3):
        encoded = base64.b64encode(b"\0" * k + value).decode()
        first = -(-8 * k // 6)  # first character that starts at or after the value's first bit
        last = (8 * (k + len(value))) // 6  # characters before this one end inside the value
        core = encoded[first:last]
        if len(core) >= MIN_LENGTH:
            cores.add(core)
            cores.add(core.replace("+", "-").replace("/", "_"))  # URL-safe alphabet
    return cores


def forms(value: str) -> Set[str]:
    """Every text form of one secret worth looking for (empty for a value too short to tell)."""
    if len(value) < MIN_LENGTH:
        return set()
    found = {value, quote(value, safe=""), quote_plus(value, safe=""), quote(value)}
    # The roles' URL quoting: Jinja's urlencode with '/' quoted too.
    found.add(quote(value, safe="").replace("%2f", "%2F"))
    found |= _base64_cores(value.encode())
    return {f for f in found if len(f) >= MIN_LENGTH}


def secret_forms(secrets: Dict[str, object]) -> Dict[str, Set[str]]:
    """name -> forms for every string secret of at least MIN_LENGTH characters."""
    out = {}
    for name, value in secrets.items():
        if name in PUBLIC or not isinstance(value, str):
            continue
        values = {value, value.strip()}
        found = set().union(*(forms(v) for v in values))
        if found:
            out[name] = found
    return out


def find_leaks(text: str, secrets: Dict[str, object]) -> List[Tuple[str, int]]:
    """(secret name, 1-based line number) for every line of text that holds a form of a secret."""
    table = secret_forms(secrets)
    leaks = []
    for number, line in enumerate(text.splitlines(), start=1):
        for name, found in table.items():
            if any(f in line for f in found):
                leaks.append((name, number))
    return leaks


def mask(text: str, secrets: Dict[str, object]) -> str:
    """text with every form of every secret replaced by <secret NAME>."""
    table = secret_forms(secrets)
    pairs = sorted(((f, name) for name, found in table.items() for f in found), key=lambda p: -len(p[0]))
    if not pairs:
        return text
    names = {}
    for f, name in pairs:
        names.setdefault(f, name)
    pattern = re.compile("|".join(re.escape(f) for f, _ in pairs))
    return pattern.sub(lambda m: f"<secret {names[m.group(0)]}>", text)


def describe(leaks: Iterable[Tuple[str, int]], limit: int = 40) -> str:
    """A failure message naming secrets and lines, never a value."""
    leaks = list(leaks)
    shown = ", ".join(f"{name} at line {line}" for name, line in leaks[:limit])
    more = f" (and {len(leaks) - limit} more)" if len(leaks) > limit else ""
    return f"{len(leaks)} secret occurrence(s) in the output: {shown}{more}"
