"""The %post scripts nspawn.py install runs, as pykickstart reads them from a kickstart; and the
spec fields that defer a node or give it a rootfs of its own."""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
import ks_scripts  # noqa: E402
import nspawn  # noqa: E402

KICKSTART = """\
# Kickstart for n1.test: profile compute, fedora-45 (F45 syntax).
text
%pre
echo pre
%end
%post --log=/root/post.log --erroronfail
set -eu
echo one
%end
%post --interpreter=/usr/bin/python3
print("two")
%end
"""


def test_post_scripts_in_order_with_their_options(tmp_path):
    ks = tmp_path / "n1.ks"
    ks.write_text(KICKSTART)
    scripts = ks_scripts.post_scripts(ks, tmp_path)
    assert scripts == [
        {"file": "post-1.sh", "interp": "/bin/sh", "log": "/root/post.log", "erroronfail": True},
        {"file": "post-2.sh", "interp": "/usr/bin/python3", "log": None, "erroronfail": False},
    ]
    assert (tmp_path / "post-1.sh").read_text().strip() == "set -eu\necho one"
    assert "echo pre" not in (tmp_path / "post-1.sh").read_text() + (tmp_path / "post-2.sh").read_text()


def test_nochroot_and_broken_kickstarts_are_refused(tmp_path):
    ks = tmp_path / "n1.ks"
    ks.write_text(KICKSTART + "%post --nochroot\necho outside\n%end\n")
    with pytest.raises(ks_scripts.KickstartScriptError, match="nochroot"):
        ks_scripts.post_scripts(ks, tmp_path)
    ks.write_text("%post\necho never closed\n")
    with pytest.raises(ks_scripts.KickstartScriptError):
        ks_scripts.post_scripts(ks, tmp_path)


def test_spec_defer_and_own_packages():
    spec = nspawn.load_spec({"lab": "t", "subnet": "10.99.0.0/24", "nodes": [
        {"name": "boot", "ip": "10.99.0.5", "packages": ["nginx", "dnsmasq", "nginx"]},
        {"name": "n1", "ip": "10.99.0.11", "defer": True}]})
    boot, n1 = spec["nodes"]
    assert boot["packages"] == ["dnsmasq", "nginx"] and boot["defer"] is False
    assert n1["defer"] is True and "packages" not in n1
    for bad in ({"defer": "yes"}, {"packages": ["ok", "rm -rf"]}):
        with pytest.raises(nspawn.HarnessError):
            nspawn.load_spec({"lab": "t", "subnet": "10.99.0.0/24", "nodes": [{"name": "n1", "ip": "10.99.0.11", **bad}]})
