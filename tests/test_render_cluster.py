"""Render tier for the cluster: corosync 3 + lvmlockd (roles cluster and clvm) and the legacy
cman + clvmd files (playbooks/legacy_cman_render.yml), checked by their consumers.

The roles' templates are rendered through tests/render_helper.py with the inputs
playbooks/cluster.yml hands the roles (EL10 platform vars), over a fresh copy of the lab, after
the cluster role's own checks. The legacy playbook is render-only by design (EL6 hosts cannot be
managed) and runs as an operator would run it. Every file goes to the program that reads it
(corosync -t, lvmconfig --validate) or, for cman's cluster.conf, which nothing here can run, to
xmllint against our own RelaxNG schema of the subset we emit (tests/data/cluster.rng) plus XPath
checks. Golden files: tests/golden/cluster-*; regenerate with KICKSTACK_UPDATE_GOLDEN=1 (make golden).
"""

import json
import os
import re
import shutil
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import validators
from conftest import REPO, VENV_BIN, copy_lab, read_secrets, run
from render_helper import EL10, Job, playbook_vars, render, role_vars

GOLDEN = Path(__file__).parent / "golden"
UPDATE = os.environ.get("KICKSTACK_UPDATE_GOLDEN") == "1"
SCHEMA = Path(__file__).parent / "data" / "cluster.rng"

# cman's fence agents take the old parameter names (ipaddr/login/passwd).
CMAN_FENCE = [
    {"name": f"ipmi-{h}", "agent": "fence_ipmilan", "host": h,
     "params": {"ipaddr": f"10.60.0.1{h[-2:]}", "login": "kickstack", "passwd": "s3cret&<x>", "lanplus": 1}}
    for h in ("stor01", "stor02")
]


def render_corosync(inventory, out, *extra):
    """corosync.conf and lvmlocal.conf from the roles' templates, with what cluster.yml hands
    the roles, after the cluster role's checks; OUT/<host>/..."""
    return render(out, [
        Job("cluster", [("corosync.conf.j2", "etc/corosync/corosync.conf", "0644")],
            playbook_vars("cluster.yml", "cluster"), checks=True),
        Job("clvm", [("lvmlocal.conf.j2", "{{ clvm_lvm_conf_file }}", "0644")], playbook_vars("cluster.yml", "clvm")),
    ], inventory=inventory, extra=extra)


def render_legacy(inventory, out, *extra):
    """playbooks/legacy_cman_render.yml as an operator runs it: OUT/<host>/..."""
    return run([VENV_BIN / "ansible-playbook", "-i", inventory, REPO / "playbooks" / "legacy_cman_render.yml",
                "-e", f"kickstack_legacy_render_dir={out}", *extra])


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    return copy_lab(tmp_path_factory.mktemp("cluster") / "lab")


@pytest.fixture(scope="module")
def corosync_tree(lab, tmp_path_factory):
    out = tmp_path_factory.mktemp("corosync")
    result = render_corosync(lab, out)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr
    return out


@pytest.fixture(scope="module")
def cman_tree(lab, tmp_path_factory):
    out = tmp_path_factory.mktemp("cman")
    result = render_legacy(lab, out, "-e", json.dumps({
        "kickstack_cluster_stack": "cman", "kickstack_clvm_mode": "clvmd",
        "kickstack_fence_devices": CMAN_FENCE}))
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr
    return out


# ---------------------------------------------------------------- corosync 3 + lvmlockd

@pytest.mark.skipif(os.geteuid() != 0, reason="the corosync check needs root (netns)")
@pytest.mark.parametrize("node,ip", [("stor01", "10.60.1.31"), ("stor02", "10.60.1.32")])
def test_corosync_conf_passes_corosync(corosync_tree, node, ip):
    path = corosync_tree / node / "etc/corosync/corosync.conf"
    assert validators.corosync(path, ip) == []


def test_corosync_conf_content(corosync_tree):
    text = (corosync_tree / "stor01/etc/corosync/corosync.conf").read_text()
    for line in ("transport: knet", "crypto_cipher: aes256", "crypto_hash: sha256",
                 "provider: corosync_votequorum", "two_node: 1",
                 "ring0_addr: 10.60.1.31", "ring0_addr: 10.60.1.32"):
        assert re.search(rf"^\s*{re.escape(line)}$", text, re.M), line
    assert (corosync_tree / "stor02/etc/corosync/corosync.conf").read_text() == text, "nodes disagree"


@pytest.mark.skipif(os.geteuid() != 0, reason="the corosync check needs root (netns)")
def test_corosync_validator_catches_a_broken_file(corosync_tree, tmp_path):
    broken = tmp_path / "corosync.conf"
    text = (corosync_tree / "stor01/etc/corosync/corosync.conf").read_text()
    broken.write_text(text.replace("quorum {", "quorum {{", 1))
    assert validators.corosync(broken, "10.60.1.31") != []


def test_lvmlockd_lvm_conf_passes_lvmconfig(corosync_tree):
    path = corosync_tree / "stor01/etc/lvm/lvmlocal.conf"
    assert validators.lvmconfig(path) == []
    assert re.search(r"^\s*use_lvmlockd = 1$", path.read_text(), re.M)


# ---------------------------------------------------------------- cman + clvmd

def _cluster_conf_problems(path):
    """The checks a schema cannot make: unique nodeids/names, two_node => expected_votes=1,
    a fence method per node whose devices exist."""
    problems = []
    root = ET.parse(path).getroot()
    nodes = root.findall("./clusternodes/clusternode")
    ids = [n.get("nodeid") for n in nodes]
    names = [n.get("name") for n in nodes]
    if len(set(ids)) != len(ids):
        problems.append(f"duplicate nodeid: {ids}")
    if len(set(names)) != len(names):
        problems.append(f"duplicate clusternode name: {names}")
    cman = root.find("./cman")
    if cman is not None and cman.get("two_node") == "1":
        if cman.get("expected_votes") != "1":
            problems.append("two_node=1 without expected_votes=1")
        if len(nodes) != 2:
            problems.append(f"two_node=1 with {len(nodes)} nodes")
    devices = {d.get("name") for d in root.findall("./fencedevices/fencedevice")}
    for node in nodes:
        methods = node.findall("./fence/method")
        if not methods:
            problems.append(f"{node.get('name')}: no fence method")
        for dev in node.findall("./fence/method/device"):
            if dev.get("name") not in devices:
                problems.append(f"{node.get('name')}: fence device {dev.get('name')} is not defined")
    return problems


def test_cluster_conf_passes_schema_and_xpath(cman_tree):
    path = cman_tree / "stor01/etc/cluster/cluster.conf"
    assert validators.cluster_conf(path, SCHEMA) == []
    assert _cluster_conf_problems(path) == []
    root = ET.parse(path).getroot()
    assert root.find("./cman").attrib == {"two_node": "1", "expected_votes": "1", "port": "5405"}
    assert (cman_tree / "stor02/etc/cluster/cluster.conf").read_text() == path.read_text()


@pytest.mark.parametrize("breakage,expected", [
    (lambda t: t.replace('nodeid="2"', 'nodeid="1"'), "duplicate nodeid"),
    (lambda t: t.replace('expected_votes="1"', 'expected_votes="2"'), "two_node=1 without expected_votes=1"),
    (lambda t: re.sub(r"(<clusternode name=\"stor02\"[^>]*>\s*<fence>).*?(</fence>)", r"\1\2", t, flags=re.S),
     "stor02: no fence method"),
], ids=["duplicate-nodeid", "two-node-expected-votes", "no-fence-method"])
def test_broken_cluster_conf_is_caught(cman_tree, tmp_path, breakage, expected):
    broken = tmp_path / "cluster.conf"
    broken.write_text(breakage((cman_tree / "stor01/etc/cluster/cluster.conf").read_text()))
    assert validators.cluster_conf(broken, SCHEMA) != [] or expected == "duplicate nodeid"
    assert expected in " ".join(_cluster_conf_problems(broken))


def test_cluster_conf_escapes_fence_secrets_and_is_private(cman_tree):
    path = cman_tree / "stor01/etc/cluster/cluster.conf"
    assert oct(path.stat().st_mode & 0o777) == "0o640"
    dev = ET.parse(path).getroot().find("./fencedevices/fencedevice[@name='ipmi-stor01']")
    assert dev.get("passwd") == "s3cret&<x>"


# The lvmconfig here is LVM 2.03, which parses locking_type = 3 but no longer implements it:
# it says exactly that (and nothing else). EL6's LVM 2.02 is the consumer of this file.
LVM203_CLVM_NOTES = {
    "WARNING: see lvmlockd(8) for information on using cluster/clvm VGs.",
    "WARNING: locking_type (3) is deprecated, using file locking.",
}


def test_clvmd_lvm_conf_passes_lvmconfig(cman_tree, tmp_path):
    path = cman_tree / "stor01/etc/lvm/lvmlocal.conf"
    assert set(validators.lvmconfig(path)) <= LVM203_CLVM_NOTES
    broken = tmp_path / "lvm.conf"
    broken.write_text(path.read_text().replace("locking_type = 3", "locking_type = three"))
    assert set(validators.lvmconfig(broken)) - LVM203_CLVM_NOTES, "lvmconfig missed a broken value"
    assert re.search(r"^\s*locking_type = 3$", path.read_text(), re.M)


def test_cman_corosync1_and_firewall(cman_tree):
    text = (cman_tree / "stor01/etc/corosync/corosync.conf").read_text()
    assert re.search(r"^\s*bindnetaddr: 10\.60\.1\.0$", text, re.M)
    assert re.search(r"^\s*mcastport: 5405$", text, re.M)
    rules = (cman_tree / "stor01/etc/sysconfig/iptables-kickstack-cluster").read_text()
    assert "--dports 5404,5405" in rules and "--dport 21064" in rules and "-s 10.60.1.0/24" in rules


# ---------------------------------------------------------------- golden files

GOLDEN_FILES = {
    ("corosync", "etc/corosync/corosync.conf"): "cluster-corosync3.conf",
    ("corosync", "etc/lvm/lvmlocal.conf"): "cluster-lvmlocal-lvmlockd.conf",
    ("cman", "etc/cluster/cluster.conf"): "cluster-cman-cluster.conf",
    ("cman", "etc/corosync/corosync.conf"): "cluster-cman-corosync1.conf",
    ("cman", "etc/sysconfig/iptables-kickstack-cluster"): "cluster-cman-iptables",
    ("cman", "etc/lvm/lvmlocal.conf"): "cluster-lvmlocal-clvmd.conf",
}


@pytest.mark.parametrize("key", GOLDEN_FILES, ids=list(GOLDEN_FILES.values()))
def test_golden(key, corosync_tree, cman_tree):
    stack, rel = key
    tree = corosync_tree if stack == "corosync" else cman_tree
    actual = (tree / "stor01" / rel).read_text()
    golden = GOLDEN / GOLDEN_FILES[key]
    if UPDATE:
        golden.write_text(actual)
    assert golden.exists(), f"missing golden file {golden.name}: run `make golden`"
    assert actual == golden.read_text(), f"{rel} ({stack}) differs from {golden.name}: review, then `make golden`"


# ---------------------------------------------------------------- role asserts on broken inputs

TWO = [{"name": "stor01", "addr": "10.60.1.31", "nodeid": 1}, {"name": "stor02", "addr": "10.60.1.32", "nodeid": 2}]


def _fence(agent):
    return [{"name": f"f-{n['name']}", "agent": agent, "host": n["name"], "params": {}} for n in TWO]


@pytest.mark.parametrize("nodes,fence,expected", [
    ([TWO[0], dict(TWO[1], nodeid=1)], _fence("fence_ipmilan"), "duplicate nodeid"),
    (TWO, _fence("fence_manual"), "fence_manual exists only for cman"),
    (TWO, _fence("fence_ipmilan")[:1], "no fence device for ['stor02']"),
    (TWO + [dict(TWO[0], name="stor03", nodeid=3)], [], "two_node needs exactly 2 nodes"),
    (TWO, [dict(f, name=f"x\"/>{f['name']}") for f in _fence("fence_ipmilan")], "node and fence device names must be"),
    (TWO, [dict(f, params={"pass word": "x"}) for f in _fence("fence_ipmilan")],
     "fence device parameter names must start"),
], ids=["duplicate-nodeid", "fence-manual-pacemaker", "unfenced-node", "two-node-3", "device-name-xml",
        "param-name-space"])
def test_role_refuses_broken_input(tmp_path, nodes, fence, expected):
    # The cluster role's checks (tasks/checks.yml) run before the render, on a host named stor01.
    inputs = {"cluster_nodes": nodes, "cluster_fence_devices": fence, "cluster_authkey_b64": "a2V5"}
    extra = ["-e", "cluster_two_node=true"] if "two_node" in expected else []
    out = tmp_path / "out"
    result = render(out, [Job("cluster", [("corosync.conf.j2", "corosync.conf", "0644")], inputs, checks=True)],
                    hosts="stor01", extra=extra)
    assert result.returncode != 0
    assert expected in result.stdout + result.stderr, result.stdout[-2000:]
    assert not (out / "corosync.conf").exists(), "rendered although the checks refused"


def test_legacy_playbook_refuses_lvmlockd_and_a_relative_dir(lab, tmp_path):
    # (fence_manual never gets this far: the model knows no such agent.)
    inputs = {"kickstack_cluster_stack": "cman", "kickstack_clvm_mode": "lvmlockd"}
    result = render_legacy(lab, tmp_path / "out", "-e", json.dumps(inputs))
    assert result.returncode != 0 and "a cman pair needs kickstack_clvm_mode: clvmd" in result.stdout, result.stdout[-2000:]
    result = run([VENV_BIN / "ansible-playbook", "-i", lab, REPO / "playbooks" / "legacy_cman_render.yml",
                  "-e", "kickstack_legacy_render_dir=out", "-e", json.dumps(dict(inputs, kickstack_clvm_mode="clvmd"))])
    assert result.returncode != 0 and "as an absolute path" in result.stdout, result.stdout[-2000:]
    assert not (tmp_path / "out").exists() and not (REPO / "out").exists()


def test_legacy_playbook_skips_corosync_pairs(lab, tmp_path):
    result = render_legacy(lab, tmp_path / "out")
    assert result.returncode == 0, result.stdout[-2000:]
    assert not (tmp_path / "out").exists()


def test_cluster_playbook_refuses_the_legacy_stack(lab):
    # cluster.yml stops a cman pair before it gathers facts (EL6 cannot be managed).
    # Should it get further, the hosts are unreachable: nothing here is ever configured.
    result = run([VENV_BIN / "ansible-playbook", "-i", lab, REPO / "playbooks" / "cluster.yml",
                  "-e", "ansible_host=127.0.0.1", "-e", "ansible_port=1",
                  "-e", json.dumps({"kickstack_cluster_stack": "cman", "kickstack_clvm_mode": "clvmd"})])
    assert result.returncode != 0
    assert "render its files with playbooks/legacy_cman_render.yml" in result.stdout, result.stdout[-2000:]
    assert "Gather facts" not in result.stdout


# ---------------------------------------------------------------- the CIB transaction script

# The cluster role writes every CIB object (stonith devices, dlm/lvmlockd, LVM-activate clones)
# through templates/cib-apply.sh.j2: XML objects in quoted heredocs, applied with cibadmin on a
# file. A fence password that carries every special character of XML and sh (and a line that
# looks like the heredoc's end) must come through intact and never appear raw in the script.
NASTY = "p'a\"s$s`x\\\nKICKSTACK_CIB_OBJECT\n<&>\t$(id)"
HEREDOC = re.compile(r"""cat >"\$dir/object-\d+\.xml" <<'KICKSTACK_CIB_OBJECT'\n(.*?)\nKICKSTACK_CIB_OBJECT\n""", re.S)


@pytest.fixture(scope="module")
def cib_scripts(tmp_path_factory):
    """The cluster role's cib-apply.sh.j2 for the three transactions the roles run: the
    stonith devices (cluster), dlm + lvmlockd and the LVs (clvm's objects)."""
    tmp = tmp_path_factory.mktemp("cib")
    fence = [{"name": f"fence-{h}", "agent": "fence_redfish", "host": h,
              "params": {"ip": "10.0.2.100", "ipport": 443, "username": "kickstack", "password": NASTY,
                         "systems_uri": f"/redfish/v1/Systems/{h}"}} for h in ("stor01", "stor02")]
    inputs = {**role_vars("clvm", EL10), "cluster_nodes": TWO, "cluster_two_node": True, "cluster_fence_delay": 10,
              "cluster_fence_timeout": 60, "cluster_fence_devices": fence, "clvm_lvs": [{"name": "lv_test", "size": "64m"}],
              "clvm_vg_name": "vg_shared", "clvm_dlm_fencing": True, "clvm_op_timeout": 90, "clvm_failure_timeout": 60,
              "clvm_dlm_resource": "dlm", "clvm_lvmlockd_resource": "lvmlockd", "__cluster_cib_dir": "/run/scratch"}
    transactions = {"fencing": ({"stonith-enabled": True, "no-quorum-policy": "freeze"}, "{{ __cluster_stonith_objects }}"),
                    "locking": ({}, "{{ __clvm_cib_objects }}"),
                    "lvs": ({}, "{{ __clvm_lv_objects }}")}
    result = render(tmp, [Job("cluster", [("cib-apply.sh.j2", f"{name}.sh", "0700")],
                              {**inputs, "cluster_cib_label": name, "cluster_cib_properties": props,
                               "cluster_cib_objects": objects})
                          for name, (props, objects) in transactions.items()])
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr
    return {name: (tmp / f"{name}.sh").read_text() for name in transactions}


def _objects(script):
    return {el.get("id"): el for el in (ET.fromstring(body) for body in HEREDOC.findall(script))}


def test_cib_script_passes_sh_n_and_shellcheck(cib_scripts, tmp_path):
    shellcheck = shutil.which("shellcheck", path=str(VENV_BIN))
    for name, text in cib_scripts.items():
        path = tmp_path / f"{name}.sh"
        path.write_text(text)
        res = subprocess.run(["sh", "-n", str(path)], capture_output=True, text=True)
        assert res.returncode == 0, f"{name}: {res.stderr}"
        if shellcheck:
            res = subprocess.run([shellcheck, "-s", "sh", str(path)], capture_output=True, text=True)
            assert res.returncode == 0, f"{name}: {res.stdout}"


def test_cib_script_carries_the_secret_intact_and_escaped(cib_scripts):
    text = cib_scripts["fencing"]
    # every heredoc ends where it should: as many objects as devices + location rules
    assert len(HEREDOC.findall(text)) == 4 == text.count("<<'KICKSTACK_CIB_OBJECT'")
    objs = _objects(text)
    for host in ("stor01", "stor02"):
        params = {nv.get("name"): nv.get("value") for nv in objs[f"fence-{host}"].iter("nvpair")}
        assert params["password"] == NASTY
        assert params["pcmk_host_list"] == host
        assert params["pcmk_off_timeout"] == "60s"
        rule = objs[f"location-fence-{host}-{host}--INFINITY"]
        assert (rule.get("rsc"), rule.get("node"), rule.get("score")) == (f"fence-{host}", host, "-INFINITY")
    # no piece of it that needs escaping appears raw (XML escaping ends each piece's raw form)
    raw = [line for line in NASTY.splitlines() if set(line) & set("'\"<>&")]
    assert len(raw) == 2
    for piece in raw:
        assert piece not in text, f"raw secret piece {piece!r} in the script"


def test_cib_fence_delay_only_on_the_first_nodes_device(cib_scripts):
    objs = _objects(cib_scripts["fencing"])
    delay = {h: {nv.get("name"): nv.get("value") for nv in objs[f"fence-{h}"].iter("nvpair")}["pcmk_delay_base"]
             for h in ("stor01", "stor02")}
    assert delay == {"stor01": "10s", "stor02": "0s"}


def test_cib_locking_clones_retry_failed_starts(cib_scripts):
    objs = _objects(cib_scripts["locking"])
    for rsc in ("dlm", "lvmlockd"):
        clone = objs[f"{rsc}-clone"]
        meta = {nv.get("name"): nv.get("value") for nv in clone.find("primitive/meta_attributes").iter("nvpair")}
        assert meta["failure-timeout"] == "60s"
        ops = {op.get("name"): op for op in clone.iter("op")}
        assert ops["monitor"].get("on-fail") == "fence" and ops["start"].get("timeout") == "90s"
    order = objs["order-dlm-clone-lvmlockd-clone-mandatory"]
    assert (order.get("first"), order.get("then")) == ("dlm-clone", "lvmlockd-clone")
    lv = _objects(cib_scripts["lvs"])["vg_shared-lv_test-clone"]
    params = {nv.get("name"): nv.get("value") for nv in lv.find("primitive/instance_attributes").iter("nvpair")}
    assert params == {"vgname": "vg_shared", "lvname": "lv_test", "vg_access_mode": "lvmlockd", "activation_mode": "shared"}


# ---------------------------------------------------------------- fence devices from kickstack_bmc

# The fence devices as the lab and the cluster scenario wrote them before kickstack_bmc (explicit
# params); each inventory now defines each node's BMC once and the devices derive from it.
_PW = "{{ kickstack_secrets.ipmi_password }}"
FENCE_BEFORE = {
    "lab": [{"name": f"fence-{h}", "agent": "fence_ipmilan", "host": h,
             "params": {"ip": ip, "username": "kickstack", "password": _PW, "lanplus": 1}}
            for h, ip in (("stor01", "10.60.0.131"), ("stor02", "10.60.0.132"))],
    "cluster-scenario": [{"name": f"fence-{h}", "agent": "fence_redfish", "host": h,
                          "params": {"ip": "10.0.2.100", "ipport": 443, "ssl_insecure": 1, "username": "kickstack",
                                     "password": _PW, "systems_uri": f"/redfish/v1/Systems/{h}"}}
                         for h in ("stor01", "stor02")],
}


def _cluster_scenario_inventory(dest):
    """A lab copy (fresh secrets) laid out as molecule/cluster's inventory: its storage
    group_vars and the storage nodes' host_vars directories (lab file, VM disks, BMC)."""
    inv = copy_lab(dest)
    scenario = REPO / "molecule" / "cluster" / "inventory"
    (inv / "group_vars" / "storage.yml").unlink()
    shutil.copytree(scenario / "group_vars" / "storage", inv / "group_vars" / "storage")
    for host in ("stor01", "stor02"):
        (inv / "host_vars" / f"{host}.yml").unlink()
        shutil.copytree(scenario / "host_vars" / host, inv / "host_vars" / host)
    return inv


@pytest.mark.parametrize("site", ["lab", "cluster-scenario"])
def test_fence_params_from_the_bmc_render_as_the_explicit_ones(site, lab, tmp_path):
    """cluster.yml hands the cluster role the same fence devices (values and order) as the
    explicit definitions did: cman's cluster.conf, which writes each device with every agent
    parameter as an attribute, in order, carries exactly the explicit devices."""
    inv = lab if site == "lab" else _cluster_scenario_inventory(tmp_path / "inventory")
    result = render_legacy(inv, tmp_path / "out", "-e",
                    json.dumps({"kickstack_cluster_stack": "cman", "kickstack_clvm_mode": "clvmd"}))
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr
    secret = read_secrets(inv)["ipmi_password"]
    expected = ["".join([f'<fencedevice name="{d["name"]}" agent="{d["agent"]}"']
                        + [f' {k}="{secret if v == _PW else v}"' for k, v in d["params"].items()] + ["/>"])
                for d in FENCE_BEFORE[site]]
    for host in ("stor01", "stor02"):
        text = (tmp_path / "out" / host / "etc/cluster/cluster.conf").read_text()
        assert [line.strip() for line in text.splitlines() if "<fencedevice " in line] == expected
