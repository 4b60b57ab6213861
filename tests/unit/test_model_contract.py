"""The lab builds cleanly, legitimate variants still pass, and the model has the agreed shape."""

import copy
import json

from modelkit import DEPLOY_KEY, build, lab  # noqa: F401 (fixture)


def test_lab_is_clean(lab):
    result = build(*lab)
    assert result["problems"] == []


def test_legitimate_variants_pass(lab):
    site, hosts = lab
    hosts["cmp01"]["kickstack_interfaces"][0]["mac"] = "52:54:00:AB:CD:21"
    hosts["cmp02"]["kickstack_disks"] = ["disk/by-id/nvme-Samsung_SSD_980_S123456"]
    hosts["cmp02"]["kickstack_os_disk"] = "disk/by-id/nvme-Samsung_SSD_980_S123456"
    site["kickstack_extra_repos"] = [{"name": "site-tools", "baseurl": "https://repo.example.org:8443/el/10/x86_64"}]
    site["kickstack_mirror_url"] = "https://mirror.example.org/pub/"
    site["kickstack_deploy_ssh_keys"] = [DEPLOY_KEY + " with spaces in the comment"]
    site["kickstack_time_sources"] = ["10.60.0.1", "ntp.example.org"]
    site["kickstack_language"] = "de_DE.UTF-8"
    site["kickstack_kernel_args"] = ["console=ttyS1,115200n8", "inst.text"]
    site["kickstack_extra_packages"] = ["vim-enhanced", "@^minimal-environment", "-plymouth"]
    for name in ("stor01", "stor02"):
        hosts[name]["kickstack_drbd_version"] = 9       # YAML reads 9 as a number
        hosts[name]["kickstack_drbd_force_create_md"] = True
        hosts[name]["kickstack_shared_lvs"] = [{"name": "lv_data", "size": "50%FREE"}]
    hosts["cmp01"]["kickstack_partitions"] = [{"mount": "/", "size_mb": 10240, "grow": True},
                                              {"mount": "/var/lib/nova/", "size_mb": 4096, "fstype": "ext4"},
                                              {"mount": "swap", "size_mb": 1024}]
    result = build(site, hosts)
    assert result["problems"] == []
    cmp01, cmp02 = result["hosts"]["cmp01"], result["hosts"]["cmp02"]
    assert cmp01["interfaces"][0]["mac"] == "52:54:00:ab:cd:21"
    assert cmp02["os_disk_ks"] == "/dev/disk/by-id/nvme-Samsung_SSD_980_S123456"
    assert result["site"]["mirror_url"] == "https://mirror.example.org/pub"
    assert [p["mount"] for p in cmp01["partitions"]] == ["/", "/var/lib/nova", "swap"]
    stor01 = result["hosts"]["stor01"]
    assert stor01["drbd"]["version"] == "9"
    assert stor01["drbd"]["force_create_md"] == ["/dev/sdb"]


def test_model_contract(lab):
    result = build(*lab)
    site = result["site"]
    for key in ("domain", "networks", "boot_network", "timezone", "time_sources", "mirror_url", "extra_repos",
                "deploy_user", "deploy_ssh_keys", "language", "keyboard", "controller", "pxe"):
        assert key in site, key
    assert site["mgmt_cidr"] == "10.60.0.0/24"
    assert (site["controller"], site["controller_ip"], site["controller_hostname"], site["controller_fqdn"]) == \
        ("ctl01", "10.60.0.11", "ctl01", "ctl01.lab.kickstack.test")
    assert (site["pxe"], site["pxe_ip"]) == ("pxe01", "10.60.0.5")
    assert (site["replication_network"], site["replication_cidr"]) == ("storage", "10.60.1.0/24")
    assert site["kernel_args"] == ["console=tty0", "console=ttyS0,115200n8"]
    assert site["extra_packages"] == []
    assert site["openstack_venv"] == "/opt/kickstack/openstack"
    assert site["chrony_daemon_options"] == []
    assert [e["name"] for e in site["hosts_entries"]] == ["cmp01", "cmp02", "ctl01", "pxe01", "stor01", "stor02"]
    assert site["hosts_entries"][2] == {"name": "ctl01", "hostname": "ctl01", "fqdn": "ctl01.lab.kickstack.test",
                                        "ip": "10.60.0.11"}
    cmp01 = result["hosts"]["cmp01"]
    assert cmp01["mgmt_ip"] == "10.60.0.21"
    assert "drbd" not in cmp01
    stor02 = result["hosts"]["stor02"]
    assert stor02["peer"] == "stor01"
    # Internal working keys never reach the model.
    assert not [k for h in result["hosts"].values() for k in h if k.startswith("_")]
    assert stor02["drbd"] == {
        "resource": "r0", "device": "/dev/drbd0", "port": 7789, "version": "", "dual_primary": True,
        "fencing": "resource-and-stonith", "allow_dual_primary_without_fencing": False,
        "initial_sync_source": "stor01", "force_create_md": [], "link_speed_mbit": 1000, "disk_speed_mbyte": 200,
        "fence_tolerance": 120,
        "disk": "/dev/sdb", "meta_disk": "internal",
        "nodes": [{"name": "stor01", "address": "10.60.1.31", "disk": "/dev/sdb", "meta_disk": "internal", "node_id": 0},
                  {"name": "stor02", "address": "10.60.1.32", "disk": "/dev/sdb", "meta_disk": "internal", "node_id": 1}]}
    cluster = stor02["cluster"]
    assert cluster["nodes"] == [{"name": "stor01", "nodeid": 1, "addr": "10.60.1.31"},
                                {"name": "stor02", "nodeid": 2, "addr": "10.60.1.32"}]
    assert cluster["fence_device_names"] == ["fence-stor01", "fence-stor02"]
    assert (cluster["stack"], cluster["name"], cluster["clvm_mode"], cluster["totem_token"], cluster["fence_timeout"],
            cluster["shared_vg"], cluster["shared_vg_mode"], cluster["shared_lvs"], cluster["network_cidr"],
            cluster["allow_no_fencing"]) == ("corosync", "kickstack", "lvmlockd", 3000, 60, "vg_shared", "clustered",
                                             [], "10.60.1.0/24", False)


def test_no_secret_in_model(lab):
    from modelkit import SECRETS
    text = json.dumps(build(*lab), default=str)
    for name, value in SECRETS.items():
        if name != "deploy_ssh_public_key":
            assert value not in text, name


def test_never_a_traceback_on_odd_values(lab):
    """Odd values everywhere: every one ends as a named problem, never an exception."""
    odd = [None, 0, -1, 1.5, True, "", " ", "\n", [], {}, [None], [{}], {"a": None}, "x" * 5000, b"bytes", object()]
    site0, hosts0 = lab
    for key in list(site0) + ["kickstack_kernel_args", "kickstack_extra_packages"]:
        for value in odd:
            site, hosts = copy.deepcopy((site0, hosts0))
            site[key] = value
            result = build(site, hosts)
            assert not any("internal check error" in p for p in result["problems"]), (key, value, result["problems"])
    for key in list(hosts0["stor01"]):
        for value in odd:
            site, hosts = copy.deepcopy((site0, hosts0))
            hosts["stor01"][key] = value
            result = build(site, hosts)
            assert not any("internal check error" in p for p in result["problems"]), (key, value, result["problems"])


def test_delivery_site_default_and_host_override(lab):
    """kickstack_delivery: bootstrap unless set; group_vars/all sets the site's default, a host
    overrides it; the boot server's host is always configured over SSH."""
    site, hosts = lab
    assert {n: h["delivery"] for n, h in build(site, hosts)["hosts"].items()} == dict.fromkeys(hosts, "bootstrap")
    for name in hosts:  # group_vars/all: every host inherits it
        hosts[name]["kickstack_delivery"] = "standalone"
    hosts["cmp02"]["kickstack_delivery"] = "bootstrap"  # host_vars win
    result = build(site, hosts)
    assert result["problems"] == []
    delivery = {n: h["delivery"] for n, h in result["hosts"].items()}
    assert delivery == {"ctl01": "standalone", "cmp01": "standalone", "cmp02": "bootstrap",
                        "stor01": "standalone", "stor02": "standalone", "pxe01": "bootstrap"}
