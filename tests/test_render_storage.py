"""Render tier for the shared-storage roles (drbd, lvm_shared): their templates with the inputs
playbooks/storage.yml hands them (tests/render_helper.py), on the lab and on a generated site, in
DRBD 8.4 and 9 syntax. Every DRBD resource passes
`drbdadm -c <file> -d up` for each of its nodes (tests/validators.drbd), every lvm.conf passes
`lvmconfig --validate`, and broken configurations are shown to be caught."""

import json
import re
import stat
from pathlib import Path

import pytest
import yaml
from conftest import REPO, VENV_BIN, copy_lab, read_secrets, run
from render_helper import Job, playbook_vars, render

import validators

VERSIONS = ("8.4", "9")


def render_storage(inventory: Path, out: Path, *extra: str):
    """The drbd and lvm_shared templates with the inputs playbooks/storage.yml hands the roles
    (tests/render_helper.py), each host's files under OUT/<host>/, after the drbd role's own
    checks. The DRBD version is given (a later -e wins): no facts are gathered."""
    drbd = {**playbook_vars("storage.yml", "drbd"), "__drbd_res": "{{ drbd_resources | first }}"}
    jobs = [
        Job("drbd", [("global_common.conf.j2", "{{ __drbd_conf_dir }}/global_common.conf", "0644"),
                     ("resource.res.j2", "{{ __drbd_conf_dir }}/{{ __drbd_res.name }}.res", "0600"),
                     ("fence-peer.sh.j2", "{{ __drbd_fence_script }}", "0755")], drbd, checks=True),
        Job("lvm_shared", [("lvm.conf.j2", "{{ lvm_shared_conf_file }}", "0644")],
            playbook_vars("storage.yml", "lvm_shared")),
    ]
    return render(out, jobs, inventory=inventory, extra=("-e", "kickstack_drbd_version=8.4", *extra))


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    return copy_lab(tmp_path_factory.mktemp("storage") / "inventory")


@pytest.fixture(scope="module")
def generated(tmp_path_factory):
    inv = tmp_path_factory.mktemp("storage-gen") / "inventory"
    result = run([VENV_BIN / "python", REPO / "scripts" / "gen-inventory", "--hosts", "20", "--out", inv])
    assert result.returncode == 0, result.stderr
    return inv


def _rendered(lab, generated, tmp_path_factory, site, version):
    inv = lab if site == "lab" else generated
    out = tmp_path_factory.mktemp(f"render-{site}-{version}")
    result = render_storage(inv, out, "-e", f"kickstack_drbd_version={version}")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    return inv, out, result.stdout + result.stderr


@pytest.fixture(scope="module")
def renders(lab, generated, tmp_path_factory):
    return {(site, v): _rendered(lab, generated, tmp_path_factory, site, v)
            for site in ("lab", "generated") for v in VERSIONS}


def _on_nodes(text):
    return re.findall(r"^\s*on (\S+) \{", text, re.M)


@pytest.mark.parametrize("site", ["lab", "generated"])
@pytest.mark.parametrize("version", VERSIONS)
def test_drbd_resources_pass_drbdadm(renders, site, version, tmp_path):
    _inv, out, _log = renders[(site, version)]
    hosts = sorted(p.name for p in out.iterdir())
    assert len(hosts) == (2 if site == "lab" else 6)
    for host in hosts:
        res = out / host / "etc/drbd.d/r0.res"
        common = out / host / "etc/drbd.d/global_common.conf"
        assert stat.S_IMODE(res.stat().st_mode) == 0o600, f"{res} holds the shared secret"
        text = res.read_text()
        nodes = _on_nodes(text)
        assert host in nodes and len(nodes) == 2, nodes
        # The whole configuration, as /etc/drbd.conf includes it, for each node of the pair.
        whole = tmp_path / f"{host}-drbd.conf"
        whole.write_text(common.read_text() + text)
        for node in nodes:
            for path in (res, whole):
                assert validators.drbd(path, node, version) == [], (path, node)
        assert re.search(r"protocol C;", text)
        assert "allow-two-primaries yes;" in text
        assert "after-sb-0pri discard-zero-changes;" in text
        assert "after-sb-1pri discard-secondary;" in text
        assert "after-sb-2pri disconnect;" in text
        assert "on-io-error detach;" in text and "sndbuf-size 0;" in text
        assert "resync-rate 37M;" in text  # 0.3 x min(1000 Mbit/s = 125 MB/s, 200 MB/s)
        # Pacemaker fences the peer (DRBD is not a pacemaker resource): the role's own handler,
        # no crm scripts.
        assert 'fence-peer "/usr/lib/drbd/kickstack-fence-peer.sh";' in text
        assert (out / host / "usr/lib/drbd/kickstack-fence-peer.sh").exists()
        assert "crm-" not in text and "unfence-peer" not in text and "after-resync-target" not in text
        net = re.search(r"net \{(.*?)\}", text, re.S).group(1)
        disk = re.search(r"disk \{(.*?)\}", text, re.S).group(1)
        if version == "8.4":
            assert "become-primary-on both;" in text
            assert "fencing resource-and-stonith;" in disk
        else:
            assert "auto-promote yes;" in text and "become-primary-on both" not in text
            assert "fencing resource-and-stonith;" in net
        # The other syntax is refused: the validator tells the versions apart.
        other = "9" if version == "8.4" else "8.4"
        assert validators.drbd(res, host, other), f"{res} passed as DRBD {other}"


PROC_DRBD_84 = """version: 8.4.11 (api:1/proto:86-101)
 0: cs:WFConnection ro:Primary/Unknown ds:{ds}/DUnknown C r-----
"""
DRBDSETUP_STATUS_9 = """r0 role:Primary
  disk:{ds}
  stor02 connection:Connecting
"""


def _run_fence_handler(tmp_path, script, *, ds="UpToDate", syntax="8.4", stonith_rc=0, env=None):
    """Run the rendered fence-peer handler as DRBD would, with stand-ins for stonith_admin,
    drbdsetup and logger on PATH and the 8.4 /proc/drbd replaced by a file; returns (exit code,
    stonith_admin calls, log)."""
    import subprocess
    work = tmp_path / f"handler-{syntax}-{ds}-{stonith_rc}"
    (work / "bin").mkdir(parents=True)
    proc = work / "proc-drbd"
    if syntax == "8.4":
        proc.write_text(PROC_DRBD_84.format(ds=ds))
    else:
        proc.write_text("version: 9.2.12 (api:2/proto:86-122)\n")
    calls, log = work / "calls", work / "log"
    stubs = {
        "stonith_admin": f'echo "$*" >> {calls}; exit {stonith_rc}',
        "drbdsetup": (f"cat <<'EOF'\n{DRBDSETUP_STATUS_9.format(ds=ds)}EOF" if ds else
                      "echo 'r0: No such resource' >&2; exit 10"),
        "logger": f'echo "$*" >> {log}',
    }
    for name, body in stubs.items():
        (work / "bin" / name).write_text(f"#!/bin/sh\n{body}\n")
        (work / "bin" / name).chmod(0o755)
    handler = work / "handler.sh"
    handler.write_text(script.replace("/proc/drbd", str(proc)))
    run_env = {"PATH": f"{work / 'bin'}:/usr/bin:/bin", "DRBD_RESOURCE": "r0", "DRBD_MINOR": "0",
               "DRBD_PEERS": "stor02", **(env or {})}
    result = subprocess.run(["sh", str(handler)], env=run_env, capture_output=True, text=True)
    return (result.returncode, calls.read_text().splitlines() if calls.exists() else [],
            log.read_text() if log.exists() else "")


def test_fence_peer_handler_fences_once_from_good_data(renders, tmp_path):
    """The role's fence-peer handler: shellcheck-clean; asks for the cluster's action (reboot)
    with the tolerance, so a fencing the cluster already did counts; exit 7 only when the peer is
    fenced; never fences from a disk that is not UpToDate, nor a peer with an odd name."""
    import subprocess
    _inv, out, _log = renders[("lab", "8.4")]
    path = out / "stor01/usr/lib/drbd/kickstack-fence-peer.sh"
    assert stat.S_IMODE(path.stat().st_mode) == 0o755
    check = subprocess.run([VENV_BIN / "shellcheck", "-s", "sh", path], capture_output=True, text=True)
    assert check.returncode == 0, check.stdout
    script = path.read_text()
    for syntax in VERSIONS:
        rc, calls, log = _run_fence_handler(tmp_path, script, syntax=syntax)
        assert (rc, calls) == (7, ["--reboot stor02 --tolerance 120s --tag drbd"]), (syntax, log)
        rc, calls, log = _run_fence_handler(tmp_path, script, syntax=syntax, ds="Outdated")
        assert (rc, calls) == (1, []) and "not UpToDate" in log, (syntax, log)
        rc, calls, log = _run_fence_handler(tmp_path, script, syntax=syntax, stonith_rc=1)
        assert rc == 1 and len(calls) == 1 and "failed" in log, (syntax, log)
    # No disk state at all (drbdsetup fails): no fencing either.
    rc, calls, log = _run_fence_handler(tmp_path / "none", script, syntax="9", ds="")
    assert (rc, calls) == (1, []) and "no disk state" in log, log
    # DRBD 9 names the peer by node id.
    rc, calls, _ = _run_fence_handler(tmp_path / "9", script, syntax="9",
                                      env={"DRBD_PEERS": "", "DRBD_PEER_NODE_ID": "1", "DRBD_NODE_ID_1": "stor02"})
    assert (rc, calls) == (7, ["--reboot stor02 --tolerance 120s --tag drbd"])
    for env in ({"DRBD_PEERS": "stor02;reboot"}, {"DRBD_PEERS": ""}, {"DRBD_MINOR": "0;x"}):
        rc, calls, log = _run_fence_handler(tmp_path / str(len(env) + len(str(env))), script, env=env)
        assert (rc, calls) == (1, []), (env, log)


def test_lab_addresses_and_disks(renders):
    _inv, out, _log = renders[("lab", "8.4")]
    text = (out / "stor01/etc/drbd.d/r0.res").read_text()
    assert "address 10.60.1.31:7789;" in text and "address 10.60.1.32:7789;" in text
    assert "disk /dev/sdb;" in text and "device /dev/drbd0;" in text and "meta-disk internal;" in text


@pytest.mark.parametrize("site", ["lab", "generated"])
def test_lvm_conf_passes_lvmconfig_and_hides_backing_device(renders, site):
    _inv, out, _log = renders[(site, "8.4")]
    for host in sorted(p.name for p in out.iterdir()):
        conf = out / host / "etc/lvm/lvm.conf"
        assert validators.lvmconfig(conf) == [], conf
        text = conf.read_text()
        assert re.search(r"^\s*write_cache_state = 0$", text, re.M)
        for key in ("filter", "global_filter"):
            raw = re.search(rf"^\s*{key} = (\[.*\])$", text, re.M).group(1)
            patterns = json.loads(raw)

            def verdict(dev):
                for pat in patterns:
                    if re.search(pat[2:-1], dev):
                        return pat[0]
                return "a"

            assert verdict("/dev/drbd0") == "a"
            assert verdict("/dev/sdb") == "r", "the DRBD backing device must be rejected"
            assert verdict("/dev/disk/by-id/virtio-drbd0") == "r"
            assert verdict("/dev/sda2") == "a", "the OS disk's vg_os must stay visible"
            assert verdict("/dev/sdc") == "r"


def test_broken_configs_are_caught(renders, tmp_path):
    _inv, out, _log = renders[("lab", "8.4")]
    text = (out / "stor01/etc/drbd.d/r0.res").read_text()
    broken = tmp_path / "broken.res"
    broken.write_text(text.replace("protocol C;", "protocol C"))
    assert validators.drbd(broken, "stor01", "8.4")
    wrong_host = tmp_path / "wrong-host.res"
    wrong_host.write_text(text)
    assert validators.drbd(wrong_host, "stor99", "8.4"), "a node outside the resource must be refused"
    lvm = (out / "stor01/etc/lvm/lvm.conf").read_text()
    bad = tmp_path / "lvm.conf"
    bad.write_text(lvm.replace('"r|.*|" ]', '"r|.*|"', 1))
    assert validators.lvmconfig(bad)


def test_no_secret_in_output(lab, renders):
    secret = read_secrets(lab)["drbd_shared_secret"]
    for (site, _v), (_inv, _out, log) in renders.items():
        if site == "lab":
            assert secret not in log


def test_dual_primary_without_fencing_is_refused(lab, tmp_path):
    result = render_storage(lab, tmp_path / "out", "-e", "kickstack_drbd_fencing=none")
    assert result.returncode != 0
    # Preflight refuses it before the drbd role runs, naming the field.
    assert "kickstack_drbd_fencing: dual-primary DRBD" in result.stdout
    ok = render_storage(lab, tmp_path / "ok", "-e", "kickstack_drbd_fencing=none",
                        "-e", '{"kickstack_drbd_allow_dual_primary_without_fencing": true}')
    assert ok.returncode == 0, ok.stdout[-2000:]
    text = (tmp_path / "ok/stor01/etc/drbd.d/r0.res").read_text()
    assert "fencing dont-care;" in text and "handlers" not in text
    assert validators.drbd(tmp_path / "ok/stor01/etc/drbd.d/r0.res", "stor01", "8.4") == []


def test_two_resources_on_one_disk_are_refused(lab, tmp_path):
    nodes = [{"name": "stor01", "address": "10.60.1.31", "disk": "/dev/sdb"},
             {"name": "stor02", "address": "10.60.1.32", "disk": "/dev/sdb"}]
    resources = [{"name": "r0", "device": "/dev/drbd0", "port": 7789, "nodes": nodes},
                 {"name": "r1", "device": "/dev/drbd1", "port": 7790, "nodes": nodes}]
    result = render_storage(lab, tmp_path / "out", "-e", json.dumps({"drbd_resources": resources}))
    assert result.returncode != 0
    assert "no backing disk may serve two resources" in result.stdout


def test_extra_vars_yaml_is_valid():
    # storage.yml documents its inventory inputs; keep it parseable YAML with one play.
    plays = yaml.safe_load((REPO / "playbooks" / "storage.yml").read_text())
    assert plays[0]["ansible.builtin.import_playbook"] == "preflight.yml"
    assert [r["role"] for r in plays[1]["roles"]] == ["drbd", "lvm_shared"]
