"""A kickstart's %post scripts as the installer runs them (nspawn.py install): parsed with
pykickstart, each body written to a file of its own, in the kickstart's order."""
from __future__ import annotations

import re
from pathlib import Path

from pykickstart.constants import KS_SCRIPT_POST
from pykickstart.errors import KickstartError
from pykickstart.parser import KickstartParser
from pykickstart.version import DEVEL, makeVersion, stringToVersion

# kickstack's kickstarts name their syntax in their header: "... (F41 syntax)."
SYNTAX_RE = re.compile(r"^#.*\((\w+) syntax\)", re.M)


class KickstartScriptError(Exception):
    pass


def post_scripts(path: Path, out_dir: Path) -> list[dict]:
    """[{"file", "interp", "log", "erroronfail"}] of every in-chroot %post of the kickstart at
    path; the bodies are written to out_dir/post-N.sh."""
    text = Path(path).read_text()
    found = SYNTAX_RE.search(text)
    try:
        version = stringToVersion(found.group(1)) if found else DEVEL
    except KickstartError:
        version = DEVEL
    parser = KickstartParser(makeVersion(version), errorsAreFatal=True, missingIncludeIsFatal=True)
    try:
        parser.readKickstartFromString(text)
    except KickstartError as exc:
        raise KickstartScriptError(f"{path}: {exc}") from None
    scripts = []
    for script in parser.handler.scripts:
        if script.type != KS_SCRIPT_POST:
            continue
        if not script.inChroot:
            raise KickstartScriptError(f"{path}: a %post --nochroot script: not supported here")
        name = f"post-{len(scripts) + 1}.sh"
        (Path(out_dir) / name).write_text(script.script)
        scripts.append({"file": name, "interp": script.interp or "/bin/sh", "log": script.logfile,
                        "erroronfail": bool(script.errorOnFail)})
    return scripts
