# -*- coding: utf-8 -*-
"""Write many generated files at once, touching only what changed.

Used by the bulk renderers, which run in-process on the controller: compare each wanted file
with what is on disk, write changed ones atomically with their mode, and remove files a
previous run made that are no longer wanted. Check mode only reports.

Diffs never show a secret: a file's diff is replaced by a note when the new content carries
one (Output.secret), when the file belongs to a class that may carry one (secret_globs, e.g.
the kickstarts, which hold the root hash whenever the site sets one), or when the file on
disk is private (no group/other read bit: a previous run wrote it as a secret). In every such
case neither the old nor the new content is shown.
"""

from __future__ import annotations

import fnmatch
import os
import tempfile
from dataclasses import dataclass, field
from typing import Dict, Iterable, List


@dataclass
class Output:
    content: "str | bytes"  # text is written as UTF-8, bytes as they are
    mode: int = 0o644
    secret: bool = False


# Relative paths (fnmatch globs) whose content may carry a secret, old or new.
SECRET_GLOBS = ("ks/*",)

HIDDEN_BEFORE = "(old content hidden: may carry a secret)\n"
HIDDEN_AFTER = "(content hidden: carries a secret)\n"


@dataclass
class Report:
    changed: List[str] = field(default_factory=list)
    removed: List[str] = field(default_factory=list)
    diffs: List[Dict[str, str]] = field(default_factory=list)


def _read(path: str):
    """The text of the file on disk and its permission bits, or (None, None)."""
    try:
        with open(path, "rb") as handle:
            return handle.read().decode("utf-8", "replace"), os.fstat(handle.fileno()).st_mode & 0o7777
    except FileNotFoundError:
        return None, None


def _same(path: str, data: bytes, mode: int) -> bool:
    """True when the file on disk holds exactly data with mode: one stat, and a read only when
    the size and mode already match (the common case of a re-run over a big tree)."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return False
    if st.st_size != len(data) or st.st_mode & 0o7777 != mode:
        return False
    with open(path, "rb") as handle:
        return handle.read() == data


def _may_carry_secret(rel: str, out: Output, mode, secret_globs) -> bool:
    if out.secret or any(fnmatch.fnmatch(rel, pat) for pat in secret_globs):
        return True
    # A file on disk that only its owner may read was written as a secret.
    return mode is not None and not mode & 0o044


def sync_tree(dest: str, outputs: Dict[str, Output], managed: Iterable[str], check: bool,
              diff: bool, max_diffs: int = 20, secret_globs: Iterable[str] = SECRET_GLOBS,
              prune: bool = True) -> Report:
    """Make dest hold exactly `outputs` among the files matching the `managed` globs
    (prune=False: write `outputs` and remove nothing, for a run over some hosts only)."""
    report = Report()
    secret_globs = tuple(secret_globs)
    for rel in sorted(outputs):
        out = outputs[rel]
        path = os.path.join(dest, rel)
        data = out.content if isinstance(out.content, bytes) else out.content.encode("utf-8")
        if _same(path, data, out.mode):
            continue
        report.changed.append(rel)
        if diff and len(report.diffs) < max_diffs:
            before, mode = _read(path)
            if _may_carry_secret(rel, out, mode, secret_globs):
                report.diffs.append({"before_header": rel, "after_header": rel,
                                     "before": HIDDEN_BEFORE if before is not None else "",
                                     "after": HIDDEN_AFTER})
            else:
                report.diffs.append({"before_header": rel, "after_header": rel,
                                     "before": before or "", "after": data.decode("utf-8", "replace")})
        if not check:
            _write(path, data, out.mode)

    if not prune:
        return report
    patterns = list(managed)
    for root, _dirs, files in os.walk(dest):
        prefix = "" if root == dest else os.path.relpath(root, dest) + os.sep
        for name in files:
            rel = prefix + name
            if rel not in outputs and any(fnmatch.fnmatch(rel, pat) for pat in patterns):
                report.removed.append(rel)
                if not check:
                    os.unlink(os.path.join(dest, rel))
    report.removed.sort()
    return report


def _write(path: str, data: bytes, mode: int) -> None:
    directory = os.path.dirname(path)
    os.makedirs(directory, mode=0o755, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".kickstack-")
    try:
        # mkstemp creates 0600, so a secret never exists with a wider mode, even briefly.
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
