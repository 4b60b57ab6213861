"""Golden files: one host of each profile and OS family, plus the boot server's files.

After an intended template change, regenerate them with `make golden` and review the diff.
"""

import os
import re
from pathlib import Path

import pytest
from conftest import REPO, VENV_BIN, copy_lab, render_site, run

GOLDEN = Path(__file__).parent / "golden"
UPDATE = os.environ.get("KICKSTACK_UPDATE_GOLDEN") == "1"

# (site, file in the build dir) -> golden name
FILES = {
    ("lab", "ks/ctl01.ks"): "fedora-controller.ks",
    ("lab", "ks/cmp01.ks"): "fedora-compute.ks",
    ("fedora", "ks/sto001.ks"): "fedora-storage.ks",
    ("el", "ks/ctl001.ks"): "el-controller.ks",
    ("el", "ks/cmp001.ks"): "el-compute.ks",
    ("lab", "ks/stor01.ks"): "el-storage.ks",
    ("lab", "grub.cfg-01-52-54-00-60-00-11"): "grub.cfg-01-ctl01",
    ("lab", "pxelinux.cfg/01-52-54-00-60-00-31"): "pxelinux.cfg-01-stor01",
    ("lab", "dnsmasq/kickstack.conf"): "dnsmasq-kickstack.conf",
    ("lab", "index.txt"): "index.txt",
}


def normalise(text: str) -> str:
    """Blank out what is generated per site: the root hash and the deploy key."""
    text = re.sub(r"^rootpw --iscrypted \S+$", "rootpw --iscrypted <ROOT-PASSWORD-HASH>", text, flags=re.M)
    return re.sub(r'"ssh-ed25519 \S+ kickstack-deploy"', '"ssh-ed25519 <DEPLOY-KEY> kickstack-deploy"', text)


@pytest.fixture(scope="module")
def sites(tmp_path_factory):
    base = tmp_path_factory.mktemp("golden")
    builds = {"lab": render_site(copy_lab(base / "lab"), base / "lab-pxe").build}
    for name, release in (("fedora", "fedora-44"), ("el", "rocky-9")):
        result = run([VENV_BIN / "python", REPO / "scripts" / "gen-inventory", "--hosts", "8",
                      "--os", release, "--out", base / name])
        assert result.returncode == 0, result.stderr
        builds[name] = render_site(base / name, base / f"{name}-pxe").build
    return builds


@pytest.mark.parametrize("key", FILES, ids=list(FILES.values()))
def test_golden(key, sites):
    site, rel = key
    actual = normalise((sites[site] / rel).read_text())
    golden = GOLDEN / FILES[key]
    if UPDATE:
        golden.write_text(actual)
    assert golden.exists(), f"missing golden file {golden.name}: run `make golden`"
    assert actual == golden.read_text(), f"{rel} of {site} differs from {golden.name}: review, then `make golden`"
