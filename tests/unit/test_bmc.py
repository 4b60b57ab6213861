"""kickstack_bmc: the fence devices' parameters derived from it, and what the model keeps of it.

The lab and the cluster scenario define each storage node's BMC once (kickstack_bmc) and their
fence devices without params; the derived parameters must be exactly (values and order) the
explicit ones both inventories carried before, so the CIB pacemaker gets is unchanged.
"""

import sys
from pathlib import Path

import yaml
from modelkit import REPO, SECRETS, build, lab  # noqa: F401 (fixture)

sys.path.insert(0, str(REPO / "collections"))
from ansible_collections.kickstack.core.plugins.filter.bmc import fence_devices  # noqa: E402
from ansible_collections.kickstack.core.plugins.module_utils.bmc import fence_params  # noqa: E402

PW = "{{ kickstack_secrets.ipmi_password }}"
# The explicit definitions before kickstack_bmc (inventory/lab/group_vars/storage.yml and
# molecule/cluster/inventory/group_vars/storage/zz-scenario.yml).
LAB_BEFORE = [
    {"name": "fence-stor01", "agent": "fence_ipmilan", "host": "stor01",
     "params": {"ip": "10.60.0.131", "username": "kickstack", "password": PW, "lanplus": 1}},
    {"name": "fence-stor02", "agent": "fence_ipmilan", "host": "stor02",
     "params": {"ip": "10.60.0.132", "username": "kickstack", "password": PW, "lanplus": 1}},
]
SCENARIO_BEFORE = [
    {"name": f"fence-{h}", "agent": "fence_redfish", "host": h,
     "params": {"ip": "10.0.2.100", "ipport": 443, "ssl_insecure": 1, "username": "kickstack", "password": PW,
                "systems_uri": f"/redfish/v1/Systems/{h}"}} for h in ("stor01", "stor02")
]


def _yaml(path):
    data = {}
    for p in sorted(Path(path).glob("*.yml")) if Path(path).is_dir() else [Path(path)]:
        data.update(yaml.safe_load(p.read_text()) or {})
    return data


def _derived(devices_file, host_vars):
    devices = _yaml(devices_file)["kickstack_fence_devices"]
    hostvars = {h: _yaml(p) for h, p in host_vars.items()}
    return fence_devices(devices, hostvars)


def _same(actual, expected):
    # Equal values in the same order (the order of the CIB's nvpairs).
    assert actual == expected
    assert [list(d["params"].items()) for d in actual] == [list(d["params"].items()) for d in expected]


def test_lab_fence_devices_unchanged():
    lab_dir = REPO / "inventory" / "lab"
    _same(_derived(lab_dir / "group_vars" / "storage.yml",
                   {h: lab_dir / "host_vars" / f"{h}.yml" for h in ("stor01", "stor02")}), LAB_BEFORE)


def test_cluster_scenario_fence_devices_unchanged():
    inv = REPO / "molecule" / "cluster" / "inventory"
    _same(_derived(inv / "group_vars" / "storage", {h: inv / "host_vars" / h for h in ("stor01", "stor02")}),
          SCENARIO_BEFORE)


def test_storage_scenario_keeps_the_lab_bmc():
    inv = REPO / "molecule" / "storage" / "inventory"
    assert _yaml(inv / "host_vars" / "stor01")["kickstack_bmc"]["protocol"] == "ipmi"


def test_own_params_win_and_add():
    bmc = {"protocol": "redfish", "address": "bmc1", "username": "u", "password": "p", "verify_tls": True}
    assert list(fence_params("fence_redfish", bmc, {"ip": "10.0.0.9", "method": "cycle"}).items()) == [
        ("username", "u"), ("password", "p"), ("ip", "10.0.0.9"), ("method", "cycle")]
    # cman's agents take the old names: a device giving them gets none of the derived aliases.
    ipmi = dict(bmc, protocol="ipmi")
    assert list(fence_params("fence_ipmilan", ipmi, {"ipaddr": "a", "login": "b", "passwd": "c", "lanplus": 0}).items()) \
        == [("ipaddr", "a"), ("login", "b"), ("passwd", "c"), ("lanplus", 0)]
    # An agent that does not speak the BMC's protocol derives nothing.
    assert fence_params("fence_ipmilan", bmc, {}) == {}
    assert fence_params("fence_sbd", bmc, {"devices": "/dev/sdz"}) == {"devices": "/dev/sdz"}
    assert fence_params("fence_ipmilan", None, {"ip": "x"}) == {"ip": "x"}


def test_model_keeps_the_bmc_without_its_password(lab):  # noqa: F811
    site, hosts = lab
    hosts["cmp01"]["kickstack_bmc"] = {"protocol": "redfish", "address": "10.60.0.121", "port": 8443,
                                       "username": "kickstack", "password": SECRETS["ipmi_password"],
                                       "systems_uri": "/redfish/v1/Systems/System.Embedded.1"}
    result = build(site, hosts)
    assert result["problems"] == []
    assert result["hosts"]["cmp01"]["bmc"] == {
        "protocol": "redfish", "address": "10.60.0.121", "port": 8443, "username": "kickstack",
        "systems_uri": "/redfish/v1/Systems/System.Embedded.1", "verify_tls": True,
        "resource_id": "System.Embedded.1"}
    assert result["hosts"]["stor01"]["bmc"]["protocol"] == "ipmi"
    assert result["hosts"]["cmp02"]["bmc"] is None
    assert SECRETS["ipmi_password"] not in repr(result)
