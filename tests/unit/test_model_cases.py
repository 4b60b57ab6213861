"""One patch on the lab per case; each must be refused with the exact 'where: field: ...' text."""

import copy

import pytest
from modelkit import DEPLOY_KEY, SECRETS, build, lab  # noqa: F401 (fixture)

MGMT = {"network": "mgmt", "mac": "52:54:00:60:00:21", "ip": "10.60.0.21"}
STOR = {"network": "storage", "mac": "52:54:00:60:01:21", "ip": "10.60.1.21"}
NETS = {"mgmt": {"cidr": "10.60.0.0/24", "gateway": "10.60.0.1", "dns": ["10.60.0.1"]},
        "storage": {"cidr": "10.60.1.0/24", "mtu": 9000}}
FENCE = [{"name": "fence-stor01", "agent": "fence_ipmilan", "host": "stor01",
          "params": {"ip": "10.60.0.131", "username": "k", "password": "p"}},
         {"name": "fence-stor02", "agent": "fence_ipmilan", "host": "stor02",
          "params": {"ip": "10.60.0.132", "username": "k", "password": "p"}}]
STORAGE = ("stor01", "stor02")
BMC = {"protocol": "redfish", "address": "10.60.0.121", "username": "kickstack", "password": "fixture-ipmi"}


def nets(**changes):
    out = copy.deepcopy(NETS)
    for name, spec in changes.items():
        out.setdefault(name, {}).update(spec)
    return out


def nic(**changes):
    out = dict(MGMT)
    out.update(changes)
    return [out, dict(STOR)]


def part(*parts):
    return list(parts)


# (id, patches, expected fragment). A patch is ("site", key, value), (host, key, value) or
# ("storage", key, value) for both storage nodes (as group_vars/storage would set it).
CASES = [
    # --- wrong YAML types --------------------------------------------------------------
    ("type domain list", [("site", "kickstack_domain", ["a"])], "site: kickstack_domain: is a list"),
    ("type domain number", [("site", "kickstack_domain", 5)], "site: kickstack_domain: is a number (5), expected a string"),
    ("type networks list", [("site", "kickstack_networks", [1])], "site: kickstack_networks: is a list, expected a mapping"),
    ("type network str", [("site", "kickstack_networks", {"mgmt": "10.60.0.0/24"})],
     "site: kickstack_networks.mgmt: is a string, expected a mapping"),
    ("type mtu string", [("site", "kickstack_networks", nets(storage={"mtu": "9000"}))],
     "site: kickstack_networks.storage.mtu: is a string ('9000'), expected an integer"),
    ("type mtu newline", [("site", "kickstack_networks", nets(storage={"mtu": "9000\n%pre\nid\n%end"}))],
     "site: kickstack_networks.storage.mtu: is a string"),
    ("type mtu bool", [("site", "kickstack_networks", nets(storage={"mtu": True}))],
     "site: kickstack_networks.storage.mtu: is a boolean (True), expected an integer"),
    ("type dns str", [("site", "kickstack_networks", nets(mgmt={"dns": "10.60.0.1"}))],
     "site: kickstack_networks.mgmt.dns: is a string, expected a list"),
    ("type time sources str", [("site", "kickstack_time_sources", "pool.ntp.org")],
     "site: kickstack_time_sources: is a string, expected a list"),
    ("type time source dict", [("site", "kickstack_time_sources", [{"a": 1}])],
     "site: kickstack_time_sources[0]: is a mapping"),
    ("type extra repos dict", [("site", "kickstack_extra_repos", {"name": "x"})],
     "site: kickstack_extra_repos: is a mapping, expected a list"),
    ("type extra repo str", [("site", "kickstack_extra_repos", ["x"])],
     "site: kickstack_extra_repos[0]: is a string, expected a mapping"),
    ("type ssh keys str", [("site", "kickstack_deploy_ssh_keys", DEPLOY_KEY)],
     "site: kickstack_deploy_ssh_keys: is a string, expected a list"),
    ("type kernel args str", [("site", "kickstack_kernel_args", "console=ttyS0")],
     "site: kickstack_kernel_args: is a string, expected a list"),
    ("type extra packages dict", [("site", "kickstack_extra_packages", {"a": 1})],
     "site: kickstack_extra_packages: is a mapping, expected a list"),
    ("type deploy user int", [("site", "kickstack_deploy_user", 1000)],
     "site: kickstack_deploy_user: is a number (1000), expected a string"),
    ("type chrony opts str", [("site", "kickstack_chrony_daemon_options", "-x")],
     "site: kickstack_chrony_daemon_options: is a string, expected a list"),
    ("type interfaces dict", [("cmp01", "kickstack_interfaces", MGMT)],
     "cmp01: kickstack_interfaces: is a mapping, expected a list"),
    ("type interface list", [("cmp01", "kickstack_interfaces", [["mgmt"]])],
     "cmp01: kickstack_interfaces[0]: is a list, expected a mapping"),
    ("type mac base60", [("cmp01", "kickstack_interfaces", nic(mac=11340781121))],
     "cmp01: kickstack_interfaces[0].mac: is a number (11340781121), expected a string: YAML 1.1 reads an unquoted MAC"),
    ("type ip int", [("cmp01", "kickstack_interfaces", nic(ip=167772161))],
     "cmp01: kickstack_interfaces[0].ip: is a number (167772161), expected a string"),
    ("type disks str", [("cmp01", "kickstack_disks", "nvme0n1")], "cmp01: kickstack_disks: is a string, expected a list"),
    ("type os disk list", [("cmp01", "kickstack_os_disk", ["nvme0n1"])], "cmp01: kickstack_os_disk: is a list"),
    ("type partitions dict", [("cmp01", "kickstack_partitions", {"mount": "/"})],
     "cmp01: kickstack_partitions: is a mapping, expected a list"),
    ("type size_mb bool", [("cmp01", "kickstack_partitions", [{"mount": "/", "size_mb": True}])],
     "cmp01: kickstack_partitions[0].size_mb: is a boolean (True), expected an integer"),
    ("type size_mb str", [("cmp01", "kickstack_partitions", [{"mount": "/", "size_mb": "10G"}])],
     "cmp01: kickstack_partitions[0].size_mb: is a string ('10G'), expected an integer"),
    ("type grow str", [("cmp01", "kickstack_partitions", [{"mount": "/", "size_mb": 10, "grow": "yes"}])],
     "cmp01: kickstack_partitions[0].grow: is a string ('yes'), expected true or false"),
    ("type netboot str", [("cmp01", "kickstack_netboot", "no")], "cmp01: kickstack_netboot: is a string ('no'), expected true or false"),
    ("type hostname int", [("cmp01", "kickstack_hostname", 7)], "cmp01: kickstack_hostname: is a number (7)"),
    ("type profile list", [("cmp01", "kickstack_profile", ["compute"])], "cmp01: kickstack_profile: is a list"),
    ("type drbd port str", [("storage", "kickstack_drbd_port", "7789")],
     "stor01: kickstack_drbd_port: is a string ('7789'), expected an integer"),
    ("type dual primary str", [("storage", "kickstack_drbd_dual_primary", "yes")],
     "stor01: kickstack_drbd_dual_primary: is a string ('yes'), expected true or false"),
    ("type force md str", [("stor01", "kickstack_drbd_force_create_md", "sdb")],
     "stor01: kickstack_drbd_force_create_md: is a string ('sdb'), expected true (the DRBD disk) or a list of disks"),
    ("type fence devices dict", [("storage", "kickstack_fence_devices", {"name": "x"})],
     "stor01: kickstack_fence_devices: is a mapping, expected a list"),
    ("type fence params list", [("storage", "kickstack_fence_devices",
                                 [dict(FENCE[0], params=[1]), FENCE[1]])],
     "stor01: kickstack_fence_devices[0].params: is a list, expected a mapping"),
    ("type fence param nested", [("storage", "kickstack_fence_devices",
                                  [dict(FENCE[0], params={"ip": [1]}), FENCE[1]])],
     "stor01: kickstack_fence_devices[0].params.ip: is a list: agent parameters must be plain values"),
    ("type shared lvs dict", [("storage", "kickstack_shared_lvs", {"name": "lv"})],
     "stor01: kickstack_shared_lvs: is a mapping, expected a list"),
    ("type shared lv size int", [("storage", "kickstack_shared_lvs", [{"name": "lv", "size": 64}])],
     "stor01: kickstack_shared_lvs[0].size: is a number (64), expected a string"),
    ("fence tolerance zero", [("storage", "kickstack_drbd_fence_tolerance", 0)],
     "stor01: kickstack_drbd_fence_tolerance: 0 is out of range: must be between 1 and 3600"),
    ("fence tolerance differs in pair", [("stor02", "kickstack_drbd_fence_tolerance", 60)],
     "stor01: kickstack_drbd_fence_tolerance: 120 differs from 60 on its peer stor02"),
    ("type totem token str", [("storage", "kickstack_cluster_totem_token", "3000")],
     "stor01: kickstack_cluster_totem_token: is a string ('3000'), expected an integer: write it without quotes "
     "(with -e, pass JSON: -e '{\"kickstack_cluster_totem_token\": 3000}', or a file: -e @vars.yml)"),
    ("type allow no fencing str", [("storage", "kickstack_cluster_allow_no_fencing", "true")],
     "stor01: kickstack_cluster_allow_no_fencing: is a string ('true'), expected true or false (unquoted) "
     "(with -e, pass JSON: -e '{\"kickstack_cluster_allow_no_fencing\": true}', or a file: -e @vars.yml)"),
    ("type drbd version bool", [("storage", "kickstack_drbd_version", True)],
     "stor01: kickstack_drbd_version: is a boolean (True)"),
    ("unknown interface key", [("cmp01", "kickstack_interfaces", nic(vlan=5))],
     "cmp01: kickstack_interfaces[0].vlan: unknown key 'vlan'"),
    # --- hostile characters ------------------------------------------------------------
    ("time source newline", [("site", "kickstack_time_sources", ["pool.ntp.org\n%pre\nid\n%end"])],
     "site: kickstack_time_sources[0]: 'pool.ntp.org\\n%pre\\nid\\n%end' contains a control character"),
    ("time source options", [("site", "kickstack_time_sources", ["pool.ntp.org iburst"])],
     "site: kickstack_time_sources[0]: 'pool.ntp.org iburst' contains a space"),
    ("time source option flag", [("site", "kickstack_time_sources", ["pool.ntp.org,nts"])],
     "site: kickstack_time_sources[0]: 'pool.ntp.org,nts' is not valid: expected a host name or IPv4 address"),
    ("time source jinja output", [("site", "kickstack_time_sources", ["uid=0(root) gid=0(root)"])],
     "site: kickstack_time_sources[0]: 'uid=0(root) gid=0(root)' contains a space"),
    ("time source braces", [("site", "kickstack_time_sources", ["{{ lookup('pipe', 'id') }}"])],
     "contains a quote"),
    ("repo name newline", [("site", "kickstack_extra_repos", [{"name": "x\n%post\nid\n%end", "baseurl": "http://a/b"}])],
     "site: kickstack_extra_repos[0].name: 'x\\n%post\\nid\\n%end' contains a control character"),
    ("repo url space", [("site", "kickstack_extra_repos", [{"name": "site", "baseurl": "http://a/b c"}])],
     "site: kickstack_extra_repos[0].baseurl: 'http://a/b c' contains a space"),
    ("repo url quote", [("site", "kickstack_extra_repos", [{"name": "site", "baseurl": "http://a/b\"c"}])],
     "site: kickstack_extra_repos[0].baseurl: 'http://a/b\"c' contains a quote"),
    ("repo url ftp", [("site", "kickstack_extra_repos", [{"name": "site", "baseurl": "ftp://a/b"}])],
     "site: kickstack_extra_repos[0].baseurl: 'ftp://a/b' is not valid: expected an http(s) URL"),
    ("kernel arg newline", [("site", "kickstack_kernel_args", ["quiet\n%pre"])],
     "site: kickstack_kernel_args[0]: 'quiet\\n%pre' contains a control character"),
    ("kernel arg semicolon", [("site", "kickstack_kernel_args", ["quiet;reboot"])],
     "site: kickstack_kernel_args[0]: 'quiet;reboot' contains a ';' (command separator)"),
    ("kernel arg dollar", [("site", "kickstack_kernel_args", ["x=$(id)"])],
     "site: kickstack_kernel_args[0]: 'x=$(id)' contains a '$' (shell expansion)"),
    ("kernel arg space", [("site", "kickstack_kernel_args", ["a b"])], "site: kickstack_kernel_args[0]: 'a b' contains a space"),
    ("extra package newline", [("site", "kickstack_extra_packages", ["vim\n%end\n%post\nid"])],
     "site: kickstack_extra_packages[0]: 'vim\\n%end\\n%post\\nid' contains a control character"),
    ("extra package backtick", [("site", "kickstack_extra_packages", ["`id`"])],
     "site: kickstack_extra_packages[0]: '`id`' contains a backtick"),
    ("mirror semicolon", [("site", "kickstack_mirror_url", "http://10.60.0.5/m;reboot")],
     "site: kickstack_mirror_url: 'http://10.60.0.5/m;reboot' contains a ';' (command separator)"),
    ("mirror hash", [("site", "kickstack_mirror_url", "http://10.60.0.5/m#x")],
     "site: kickstack_mirror_url: 'http://10.60.0.5/m#x' contains a '#' (comment)"),
    ("mirror brace", [("site", "kickstack_mirror_url", "http://10.60.0.5/{a}")],
     "site: kickstack_mirror_url: 'http://10.60.0.5/{a}' contains a '{' or '}'"),
    ("mirror backtick", [("site", "kickstack_mirror_url", "http://10.60.0.5/`id`")],
     "site: kickstack_mirror_url: 'http://10.60.0.5/`id`' contains a backtick"),
    ("mirror dollar", [("site", "kickstack_mirror_url", "http://10.60.0.5/$x")],
     "site: kickstack_mirror_url: 'http://10.60.0.5/$x' contains a '$'"),
    ("mirror trailing newline", [("site", "kickstack_mirror_url", "http://10.60.0.5/m\n")],
     "site: kickstack_mirror_url: 'http://10.60.0.5/m\\n' contains a control character"),
    ("mirror not url", [("site", "kickstack_mirror_url", "10.60.0.5/mirror")],
     "site: kickstack_mirror_url: '10.60.0.5/mirror' is not valid"),
    ("mirror ipv6", [("site", "kickstack_mirror_url", "http://[fd00::5]/mirror")],
     "site: kickstack_mirror_url: 'http://[fd00::5]/mirror' is not valid"),
    ("ssh key comment quote", [("site", "kickstack_deploy_ssh_keys", [DEPLOY_KEY + '" command="id'])],
     "contains a quote, which could break out of the generated file: expected an SSH public key"),
    ("ssh key newline", [("site", "kickstack_deploy_ssh_keys", [DEPLOY_KEY + "\n%post"])],
     "contains a control character (e.g. a newline), which could break out of the generated file: expected an SSH"),
    ("hostname trailing newline", [("cmp01", "kickstack_hostname", "cmp01\n")],
     "cmp01: kickstack_hostname: 'cmp01\\n' contains a control character"),
    ("hostname underscore", [("cmp01", "kickstack_hostname", "cmp_01")], "cmp01: kickstack_hostname: 'cmp_01' is not valid"),
    ("domain semicolon", [("site", "kickstack_domain", "lab;id")], "site: kickstack_domain: 'lab;id' contains a ';'"),
    ("timezone newline", [("site", "kickstack_timezone", "UTC\n%pre")], "site: kickstack_timezone: 'UTC\\n%pre' contains a control"),
    ("keyboard quote", [("site", "kickstack_keyboard", "us'")], "site: kickstack_keyboard: \"us'\" contains a quote"),
    ("language dollar", [("site", "kickstack_language", "en_US.$(id)")], "site: kickstack_language: 'en_US.$(id)' contains a '$'"),
    ("deploy user space", [("site", "kickstack_deploy_user", "dep loy")], "site: kickstack_deploy_user: 'dep loy' contains a space"),
    ("deploy user root", [("site", "kickstack_deploy_user", "root")], "site: kickstack_deploy_user: must not be root"),
    ("os disk path traversal", [("cmp01", "kickstack_os_disk", "../etc")], "cmp01: kickstack_os_disk: '../etc' is not valid"),
    ("disk by-id ok but newline", [("cmp01", "kickstack_disks", ["disk/by-id/x\n"])],
     "cmp01: kickstack_disks[0]: 'disk/by-id/x\\n' contains a control character"),
    ("mount semicolon", [("cmp01", "kickstack_partitions", [{"mount": "/;id", "size_mb": 5}])],
     "cmp01: kickstack_partitions[0].mount: '/;id' contains a ';'"),
    ("fence param newline", [("storage", "kickstack_fence_devices",
                              [dict(FENCE[0], params={"ip": "1.2.3.4\nx", "username": "k", "password": "p"}), FENCE[1]])],
     "stor01: kickstack_fence_devices[0].params.ip: contains a control character"),
    ("fence name space", [("storage", "kickstack_fence_devices", [dict(FENCE[0], name="fence stor01"), FENCE[1]])],
     "stor01: kickstack_fence_devices[0].name: 'fence stor01' contains a space"),
    ("drbd resource brace", [("storage", "kickstack_drbd_resource", "r0}")], "stor01: kickstack_drbd_resource: 'r0}' contains a '{' or '}'"),
    ("cluster name semicolon", [("storage", "kickstack_cluster_name", "a;b")], "stor01: kickstack_cluster_name: 'a;b' contains a ';'"),
    ("shared vg newline", [("storage", "kickstack_shared_vg", "vg\n")], "stor01: kickstack_shared_vg: 'vg\\n' contains a control"),
    ("venv relative", [("site", "kickstack_openstack_venv", "opt/venv")], "site: kickstack_openstack_venv: 'opt/venv' is not valid"),
    ("venv dotdot", [("site", "kickstack_openstack_venv", "/opt/../etc")], "site: kickstack_openstack_venv: '/opt/../etc' has a '.' or '..'"),
    ("chrony opt semicolon", [("site", "kickstack_chrony_daemon_options", ["-x;id"])],
     "site: kickstack_chrony_daemon_options[0]: '-x;id' contains a ';'"),
    ("tab in name", [("site", "kickstack_domain", "lab\tx")], "site: kickstack_domain: 'lab\\tx' contains a tab"),
    ("unicode line separator", [("site", "kickstack_domain", "lab\u2028x")], "site: kickstack_domain: 'lab\\u2028x' contains a control"),
    # --- addresses and networks -------------------------------------------------------------
    ("mac all zero", [("cmp01", "kickstack_interfaces", nic(mac="00:00:00:00:00:00"))],
     "cmp01: kickstack_interfaces[0].mac: 00:00:00:00:00:00 is the all-zero address"),
    ("mac broadcast", [("cmp01", "kickstack_interfaces", nic(mac="FF:FF:FF:FF:FF:FF"))],
     "cmp01: kickstack_interfaces[0].mac: ff:ff:ff:ff:ff:ff is the broadcast address"),
    ("mac multicast", [("cmp01", "kickstack_interfaces", nic(mac="01:00:5e:00:00:21"))],
     "cmp01: kickstack_interfaces[0].mac: 01:00:5e:00:00:21 is a multicast address"),
    ("mac dashes", [("cmp01", "kickstack_interfaces", nic(mac="52-54-00-60-00-21"))],
     "cmp01: kickstack_interfaces[0].mac: '52-54-00-60-00-21' is not valid: expected a MAC address"),
    ("mac duplicate upper", [("cmp02", "kickstack_interfaces", nic(mac="52:54:00:60:00:21".upper(), ip="10.60.0.22")[:1]
                              + [{"network": "storage", "mac": "52:54:00:60:01:22", "ip": "10.60.1.22"}])],
     "cmp02: kickstack_interfaces[0].mac: 52:54:00:60:00:21 is already used by cmp01"),
    ("ip duplicate", [("cmp02", "kickstack_interfaces", [dict(MGMT, mac="52:54:00:60:00:22")])],
     "cmp02: kickstack_interfaces[0].ip: 10.60.0.21 is already used by cmp01"),
    ("ip ipv6", [("cmp01", "kickstack_interfaces", nic(ip="fd00::21"))],
     "cmp01: kickstack_interfaces[0].ip: 'fd00::21' is not valid: expected an IPv4 address"),
    ("ip bad octet", [("cmp01", "kickstack_interfaces", nic(ip="10.60.0.311"))],
     "cmp01: kickstack_interfaces[0].ip: '10.60.0.311' is not valid"),
    ("ip leading zero", [("cmp01", "kickstack_interfaces", nic(ip="10.60.0.021"))],
     "cmp01: kickstack_interfaces[0].ip: '10.60.0.021' is not valid"),
    ("ip outside", [("cmp01", "kickstack_interfaces", nic(ip="10.60.7.21"))],
     "cmp01: kickstack_interfaces[0].ip: 10.60.7.21 is outside network mgmt (10.60.0.0/24)"),
    ("ip is gateway", [("cmp01", "kickstack_interfaces", nic(ip="10.60.0.1"))],
     "cmp01: kickstack_interfaces[0].ip: 10.60.0.1 is the gateway of network mgmt"),
    ("ip is broadcast", [("cmp01", "kickstack_interfaces", nic(ip="10.60.0.255"))],
     "cmp01: kickstack_interfaces[0].ip: 10.60.0.255 is the network or broadcast address"),
    ("unknown network", [("cmp01", "kickstack_interfaces", [MGMT, dict(STOR, network="backend")])],
     "cmp01: kickstack_interfaces[1].network: 'backend' is not one of kickstack_networks (mgmt, storage)"),
    ("two nics one network", [("cmp01", "kickstack_interfaces", [MGMT, dict(MGMT, mac="52:54:00:60:00:99", ip="10.60.0.99")])],
     "cmp01: kickstack_interfaces: more than one interface on network mgmt"),
    ("no boot nic", [("cmp01", "kickstack_interfaces", [STOR])], "cmp01: kickstack_interfaces: no interface on the boot network 'mgmt'"),
    ("gateway network address", [("site", "kickstack_networks", nets(mgmt={"gateway": "10.60.0.0"}))],
     "site: kickstack_networks.mgmt.gateway: 10.60.0.0 is the network or broadcast address of 10.60.0.0/24"),
    ("gateway broadcast", [("site", "kickstack_networks", nets(mgmt={"gateway": "10.60.0.255"}))],
     "site: kickstack_networks.mgmt.gateway: 10.60.0.255 is the network or broadcast address"),
    ("gateway outside", [("site", "kickstack_networks", nets(mgmt={"gateway": "10.61.0.1"}))],
     "site: kickstack_networks.mgmt.gateway: 10.61.0.1 is outside 10.60.0.0/24"),
    ("gateway ipv6", [("site", "kickstack_networks", nets(mgmt={"gateway": "fd00::1"}))],
     "site: kickstack_networks.mgmt.gateway: 'fd00::1' is not valid: expected an IPv4 address"),
    ("dns ipv6", [("site", "kickstack_networks", nets(mgmt={"dns": ["fd00::1"]}))],
     "site: kickstack_networks.mgmt.dns[0]: 'fd00::1' is not valid: expected an IPv4 address"),
    ("cidr ipv6", [("site", "kickstack_networks", nets(storage={"cidr": "fd00::/64"}))],
     "site: kickstack_networks.storage.cidr: 'fd00::/64' is not valid: expected an IPv4 network"),
    ("cidr host bits", [("site", "kickstack_networks", nets(storage={"cidr": "10.60.1.5/24"}))],
     "site: kickstack_networks.storage.cidr: '10.60.1.5/24' is not a network address"),
    ("networks overlap", [("site", "kickstack_networks", nets(storage={"cidr": "10.60.0.0/16"}))],
     "site: kickstack_networks.storage.cidr: 10.60.0.0/16 overlaps network mgmt (10.60.0.0/24)"),
    ("mtu too small", [("site", "kickstack_networks", nets(storage={"mtu": 100}))],
     "site: kickstack_networks.storage.mtu: 100 is out of range: must be between 576 and 9216"),
    ("mtu too big", [("site", "kickstack_networks", nets(storage={"mtu": 65536}))],
     "site: kickstack_networks.storage.mtu: 65536 is out of range"),
    ("boot network unknown", [("site", "kickstack_boot_network", "pxe")],
     "site: kickstack_boot_network: 'pxe' is not one of kickstack_networks (mgmt, storage)"),
    ("replication network unknown", [("site", "kickstack_replication_network", "drbd")],
     "site: kickstack_replication_network: 'drbd' is not one of kickstack_networks (mgmt, storage)"),
    # --- names, locale, time ----------------------------------------------------------------
    ("fqdn too long", [("cmp01", "kickstack_hostname", "c" * 60)], "cmp01: kickstack_hostname: the FQDN " + "c" * 60),
    ("inventory name traversal", [("rename", "cmp01", "../x")], "../x: inventory_hostname: '../x' is not a valid DNS label"),
    ("inventory name slash", [("rename", "cmp01", "a/b")], "a/b: inventory_hostname: 'a/b' is not a valid DNS label"),
    ("duplicate hostname", [("cmp02", "kickstack_hostname", "cmp01")], "cmp02: kickstack_hostname: host name cmp01 is already used by cmp01"),
    ("domain empty label", [("site", "kickstack_domain", "lab..test")], "site: kickstack_domain: 'lab..test' is not valid"),
    ("timezone unknown", [("site", "kickstack_timezone", "Mars/Olympus")],
     "site: kickstack_timezone: 'Mars/Olympus' is not in the tz database"),
    ("timezone traversal", [("site", "kickstack_timezone", "../../etc/passwd")], "site: kickstack_timezone: '../../etc/passwd' is not valid"),
    ("locale unknown", [("site", "kickstack_language", "xx_YY.UTF-8")], "site: kickstack_language: 'xx_YY.UTF-8' is not a glibc UTF-8 locale"),
    ("locale latin1", [("site", "kickstack_language", "de_DE.ISO-8859-1")], "site: kickstack_language: 'de_DE.ISO-8859-1' is not valid"),
    ("keyboard bad", [("site", "kickstack_keyboard", "US")], "site: kickstack_keyboard: 'US' is not valid"),
    ("time sources empty", [("site", "kickstack_time_sources", [])], "site: kickstack_time_sources: must list at least 1"),
    ("time source ipv6", [("site", "kickstack_time_sources", ["fd00::1"])], "site: kickstack_time_sources[0]: 'fd00::1' is not valid"),
    ("ssh keys empty", [("site", "kickstack_deploy_ssh_keys", [])], "site: kickstack_deploy_ssh_keys: must list at least 1"),
    ("ssh key truncated", [("site", "kickstack_deploy_ssh_keys", [DEPLOY_KEY.split()[0] + " " + DEPLOY_KEY.split()[1][:40]])],
     "site: kickstack_deploy_ssh_keys[0]: the key's"),
    ("ssh key wrong type", [("site", "kickstack_deploy_ssh_keys", ["ssh-rsa " + DEPLOY_KEY.split()[1]])],
     "site: kickstack_deploy_ssh_keys[0]: the key's data does not start with its type ssh-rsa"),
    ("ssh key not base64", [("site", "kickstack_deploy_ssh_keys", ["ssh-ed25519 AAAA=B"])],
     "site: kickstack_deploy_ssh_keys[0]: 'ssh-ed25519 AAAA=B' is not valid: expected an SSH public key"),
    ("ssh key bad padding", [("site", "kickstack_deploy_ssh_keys", ["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5A"])],
     "site: kickstack_deploy_ssh_keys[0]: the key's base64 data is malformed"),
    ("repo platform name", [("site", "kickstack_extra_repos", [{"name": "AppStream", "baseurl": "http://a/b"}])],
     "site: kickstack_extra_repos[0].name: AppStream is the name of a platform repository"),
    ("repo updates name", [("site", "kickstack_extra_repos", [{"name": "updates", "baseurl": "http://a/b"}])],
     "site: kickstack_extra_repos[0].name: updates is the name of a platform repository"),
    ("repo duplicate", [("site", "kickstack_extra_repos", [{"name": "site", "baseurl": "http://a/b"},
                                                          {"name": "site", "baseurl": "http://a/c"}])],
     "site: kickstack_extra_repos[1].name: site is already the name of kickstack_extra_repos[0]"),
    ("os unsupported", [("stor01", "kickstack_os", "centos-stream-8")], "stor01: kickstack_os: unsupported OS release 'centos-stream-8'"),
    ("profile unknown", [("cmp01", "kickstack_profile", "hypervisor")], "cmp01: kickstack_profile: 'hypervisor' is not one of"),
    ("two profile groups", [("cmp01", "group_names", ["compute", "storage"])],
     "cmp01: group_names: the host is in more than one profile group (compute, storage)"),
    # --- disks and partitions -------------------------------------------------------------
    ("os disk not listed", [("cmp02", "kickstack_os_disk", "sda")], "cmp02: kickstack_os_disk: sda is not in kickstack_disks (nvme0n1)"),
    ("disk twice", [("cmp01", "kickstack_disks", ["nvme0n1", "nvme0n1"])], "cmp01: kickstack_disks: lists the same disk twice"),
    ("lv name collision", [("cmp01", "kickstack_partitions", [{"mount": "/", "size_mb": 5}, {"mount": "/var/log", "size_mb": 5},
                                                             {"mount": "/var_log", "size_mb": 5}])],
     "cmp01: kickstack_partitions[2].mount: /var_log and /var/log would both be the logical volume var_log"),
    ("boot as lv", [("cmp01", "kickstack_partitions", [{"mount": "/", "size_mb": 5}, {"mount": "/boot", "size_mb": 5}])],
     "cmp01: kickstack_partitions[1].mount: /boot is created by the installer (reqpart --add-boot)"),
    ("boot efi as lv", [("cmp01", "kickstack_partitions", [{"mount": "/", "size_mb": 5}, {"mount": "/boot/efi", "size_mb": 5}])],
     "cmp01: kickstack_partitions[1].mount: /boot/efi is created by the installer"),
    ("trailing slash duplicate", [("cmp01", "kickstack_partitions", [{"mount": "/", "size_mb": 5}, {"mount": "/var", "size_mb": 5},
                                                                    {"mount": "/var/", "size_mb": 5}])],
     "cmp01: kickstack_partitions[2].mount: /var/ is already kickstack_partitions[1]"),
    ("no root", [("cmp01", "kickstack_partitions", [{"mount": "/var", "size_mb": 5}])], "cmp01: kickstack_partitions: has no / (root) partition"),
    ("size zero", [("cmp01", "kickstack_partitions", [{"mount": "/", "size_mb": 0}])],
     "cmp01: kickstack_partitions[0].size_mb: 0 is out of range: must be at least 1"),
    ("fstype unknown", [("cmp01", "kickstack_partitions", [{"mount": "/", "size_mb": 5, "fstype": "btrfs"}])],
     "cmp01: kickstack_partitions[0].fstype: 'btrfs' is not one of xfs, ext4"),
    ("mount dotdot", [("cmp01", "kickstack_partitions", [{"mount": "/", "size_mb": 5}, {"mount": "/var/..", "size_mb": 5}])],
     "cmp01: kickstack_partitions[1].mount: '/var/..' has a '.' or '..' component"),
    # --- storage pairs -------------------------------------------------------------------
    ("drbd disk is os disk", [("stor01", "kickstack_drbd_disk", "sda")], "stor01: kickstack_drbd_disk: sda is also the OS disk"),
    ("drbd disk missing", [("stor02", "kickstack_drbd_disk", None)], "stor02: kickstack_drbd_disk: storage nodes need the DRBD backing device"),
    ("force md other disk", [("stor01", "kickstack_drbd_force_create_md", ["/dev/sda"])],
     "stor01: kickstack_drbd_force_create_md: /dev/sda is not this host's DRBD backing device (sdb)"),
    ("peer self", [("stor02", "kickstack_drbd_peer", "stor02")], "stor02: kickstack_drbd_peer: a node cannot be its own DRBD peer"),
    ("pair different os", [("stor02", "kickstack_os", "rocky-10")],
     "stor01: kickstack_os: centos-stream-10 differs from rocky-10 on its peer stor02"),
    ("pair disagree port", [("stor02", "kickstack_drbd_port", 7790)], "stor01: kickstack_drbd_port: 7789 differs from 7790 on its peer stor02"),
    ("pair disagree version", [("stor02", "kickstack_drbd_version", 9)], "stor01: kickstack_drbd_version: '' differs from '9' on its peer stor02"),
    ("pair disagree cluster name", [("stor01", "kickstack_cluster_name", "other")],
     "stor01: kickstack_cluster_name: 'other' differs from 'kickstack' on its peer stor02"),
    ("pair disagree clvm", [("stor02", "kickstack_clvm_mode", "clvmd")], "stor01: kickstack_clvm_mode: 'lvmlockd' differs from 'clvmd'"),
    ("drbd version unknown", [("storage", "kickstack_drbd_version", "8.3")], "stor01: kickstack_drbd_version: '8.3' is not one of '', '8.4', '9'"),
    ("drbd fencing unknown", [("storage", "kickstack_drbd_fencing", "stonith")],
     "stor01: kickstack_drbd_fencing: 'stonith' is not one of resource-and-stonith, resource-only, none"),
    ("dual primary no fencing", [("storage", "kickstack_drbd_fencing", "none")],
     "stor01: kickstack_drbd_fencing: dual-primary DRBD (kickstack_drbd_dual_primary: true) with fencing 'none'"),
    ("drbd device bad", [("storage", "kickstack_drbd_device", "/dev/sdb")], "stor01: kickstack_drbd_device: '/dev/sdb' is not valid"),
    ("drbd port range", [("storage", "kickstack_drbd_port", 70000)], "stor01: kickstack_drbd_port: 70000 is out of range"),
    ("initial sync source outside", [("storage", "kickstack_drbd_initial_sync_source", "cmp01")],
     "stor01: kickstack_drbd_initial_sync_source: cmp01 is not a node of the pair (stor01, stor02)"),
    ("cluster stack unknown", [("storage", "kickstack_cluster_stack", "heartbeat")],
     "stor01: kickstack_cluster_stack: 'heartbeat' is not one of corosync, cman"),
    ("clvm mode unknown", [("storage", "kickstack_clvm_mode", "sanlock")], "stor01: kickstack_clvm_mode: 'sanlock' is not one of lvmlockd, clvmd"),
    ("shared vg mode unknown", [("storage", "kickstack_shared_vg_mode", "shared")],
     "stor01: kickstack_shared_vg_mode: 'shared' is not one of clustered, local"),
    ("shared lv size bad", [("storage", "kickstack_shared_lvs", [{"name": "lv", "size": "lots"}])],
     "stor01: kickstack_shared_lvs[0].size: 'lots' is not valid"),
    ("shared lv duplicate", [("storage", "kickstack_shared_lvs", [{"name": "lv", "size": "1G"}, {"name": "lv", "size": "2G"}])],
     "stor01: kickstack_shared_lvs[1].name: lv is already kickstack_shared_lvs[0]"),
    ("replication nic missing", [("stor02", "kickstack_interfaces", [{"network": "mgmt", "mac": "52:54:00:60:00:32", "ip": "10.60.0.32"}])],
     "stor02: kickstack_interfaces: no interface on the replication network 'storage' (10.60.1.0/24)"),
    ("odd storage", [("stor02", "kickstack_profile", "compute"), ("stor02", "group_names", ["compute"])],
     "site: storage: storage nodes come in DRBD pairs; found an odd number (1)"),
    # --- fencing --------------------------------------------------------------------------
    ("fence agent unknown", [("storage", "kickstack_fence_devices", [dict(FENCE[0], agent="fence_ipmilna"), FENCE[1]])],
     "stor01: kickstack_fence_devices[0].agent: fence_ipmilna is not a fence agent kickstack knows"),
    ("fence agent malformed", [("storage", "kickstack_fence_devices", [dict(FENCE[0], agent="ipmilan"), FENCE[1]])],
     "stor01: kickstack_fence_devices[0].agent: 'ipmilan' is not valid: expected a fence agent name"),
    ("fence no password", [("stor01", "kickstack_bmc", None), ("storage", "kickstack_fence_devices",
                            [dict(FENCE[0], params={"ip": "10.0.0.1", "username": "k"}), FENCE[1]])],
     "stor01: kickstack_fence_devices[0].params: fence_ipmilan needs the password (or password_script)"),
    ("fence empty password", [("storage", "kickstack_fence_devices",
                               [dict(FENCE[0], params={"ip": "10.0.0.1", "username": "k", "password": ""}), FENCE[1]])],
     "stor01: kickstack_fence_devices[0].params: fence_ipmilan needs the password"),
    ("fence no ip", [("stor01", "kickstack_bmc", None), ("storage", "kickstack_fence_devices",
                      [dict(FENCE[0], params={"username": "k", "password": "p"}), FENCE[1]])],
     "stor01: kickstack_fence_devices[0].params: fence_ipmilan needs the management address: set params.ip, "
     "or give stor01 a kickstack_bmc"),
    ("fence no bmc no params", [("stor02", "kickstack_bmc", None), ("storage", "kickstack_fence_devices",
                                [{"name": "f1", "agent": "fence_ipmilan", "host": "stor01"},
                                 {"name": "f2", "agent": "fence_ipmilan", "host": "stor02"}])],
     "stor01: kickstack_fence_devices[1].params: fence_ipmilan needs the management address: set params.ip, "
     "or give stor02 a kickstack_bmc"),
    ("fence agent other protocol", [("storage", "kickstack_fence_devices",
                                     [{"name": "f1", "agent": "fence_redfish", "host": "stor01"}, FENCE[1]])],
     "stor01: kickstack_fence_devices[0].agent: fence_redfish speaks redfish, but stor01's kickstack_bmc is ipmi"),
    # --- kickstack_bmc ------------------------------------------------------------------
    ("bmc not a mapping", [("cmp01", "kickstack_bmc", "10.60.0.121")],
     "cmp01: kickstack_bmc: is a string, expected a mapping"),
    ("bmc protocol", [("cmp01", "kickstack_bmc", dict(BMC, protocol="ssh"))],
     "cmp01: kickstack_bmc.protocol: 'ssh' is not one of redfish, ipmi"),
    ("bmc address injection", [("cmp01", "kickstack_bmc", dict(BMC, address="10.0.0.1;reboot"))],
     "cmp01: kickstack_bmc.address: '10.0.0.1;reboot' contains a ';' (command separator)"),
    ("bmc address not a host", [("cmp01", "kickstack_bmc", dict(BMC, address="https://bmc"))],
     "cmp01: kickstack_bmc.address: 'https://bmc' is not valid: expected the BMC's host name or IPv4 address"),
    ("bmc port range", [("cmp01", "kickstack_bmc", dict(BMC, port=0))],
     "cmp01: kickstack_bmc.port: 0 is out of range: must be between 1 and 65535"),
    ("bmc port string", [("cmp01", "kickstack_bmc", dict(BMC, port="443"))],
     "cmp01: kickstack_bmc.port: is a string ('443'), expected an integer"),
    ("bmc no user", [("cmp01", "kickstack_bmc", {k: v for k, v in BMC.items() if k != "username"})],
     "cmp01: kickstack_bmc.username: is missing"),
    ("bmc user space", [("cmp01", "kickstack_bmc", dict(BMC, username="a b"))],
     "cmp01: kickstack_bmc.username: 'a b' contains a space"),
    ("bmc no password", [("cmp01", "kickstack_bmc", {k: v for k, v in BMC.items() if k != "password"})],
     "cmp01: kickstack_bmc.password: is missing"),
    ("bmc password newline", [("cmp01", "kickstack_bmc", dict(BMC, password="fixture-ipmi\nx"))],
     "cmp01: kickstack_bmc.password: contains a control character"),
    ("bmc password number", [("cmp01", "kickstack_bmc", dict(BMC, password=1234))],
     "cmp01: kickstack_bmc.password: is a number, expected a string"),
    ("bmc systems uri", [("cmp01", "kickstack_bmc", dict(BMC, systems_uri="/redfish/v1/Systems/1/../x"))],
     "cmp01: kickstack_bmc.systems_uri: '/redfish/v1/Systems/1/../x' is not valid: expected the host's Redfish system"),
    ("bmc systems uri with ipmi", [("cmp01", "kickstack_bmc", dict(BMC, protocol="ipmi", systems_uri="/redfish/v1/Systems/1"))],
     "cmp01: kickstack_bmc.systems_uri: is a Redfish setting, but protocol is ipmi"),
    ("bmc verify_tls string", [("cmp01", "kickstack_bmc", dict(BMC, verify_tls="no"))],
     "cmp01: kickstack_bmc.verify_tls: is a string ('no'), expected true or false"),
    ("bmc unknown key", [("cmp01", "kickstack_bmc", dict(BMC, ssl=False))],
     "cmp01: kickstack_bmc.ssl: unknown key 'ssl'"),
    ("fence no user", [("storage", "kickstack_fence_devices",
                        [dict(FENCE[0], agent="fence_redfish", params={"ip": "h", "password": "p"}), FENCE[1]])],
     "stor01: kickstack_fence_devices[0].params: fence_redfish needs the user name: set params.username"),
    ("fence host unknown", [("storage", "kickstack_fence_devices", [dict(FENCE[0], host="stor9"), FENCE[1]])],
     "stor01: kickstack_fence_devices[0].host: 'stor9' is not a host of the inventory"),
    ("fence host not storage", [("storage", "kickstack_fence_devices", FENCE + [dict(FENCE[0], name="f3", host="ctl01")])],
     "stor01: kickstack_fence_devices[2].host: ctl01 is not a storage node"),
    ("fence duplicate name", [("storage", "kickstack_fence_devices", [FENCE[0], dict(FENCE[1], name="fence-stor01")])],
     "stor01: kickstack_fence_devices[1].name: fence-stor01 is defined twice"),
    ("fence missing for peer", [("storage", "kickstack_fence_devices", FENCE[:1])],
     "stor01: kickstack_fence_devices: no fence device for stor02"),
    ("fence unknown key", [("storage", "kickstack_fence_devices", [dict(FENCE[0], passwd="x"), FENCE[1]])],
     "stor01: kickstack_fence_devices[0].passwd: unknown key 'passwd'"),
    # --- secrets ------------------------------------------------------------------------------
    ("secrets missing", [("secrets", None, None)], "site: kickstack_secrets: missing: generate the site's secrets"),
    ("secrets list", [("secrets", None, ["x"])], "site: kickstack_secrets: must be a mapping of secret name to value"),
    ("secret empty", [("secrets", "corosync_authkey", "")], "site: kickstack_secrets.corosync_authkey: missing or empty"),
    ("root hash bad", [("secrets", "root_password_hash", "$1$abc$def")], "site: kickstack_secrets.root_password_hash: is not a SHA-512"),
    ("unresolvable", [("cmp01", "kickstack_os_disk", "UNRESOLVABLE")], "cmp01: kickstack_os_disk: cannot be evaluated: undefined"),
    ("controller missing", [("ctl01", "kickstack_profile", "compute"), ("ctl01", "group_names", ["compute"])],
     "site: controller: no host has profile controller"),
]


def apply(site, hosts, patches):
    secrets = dict(SECRETS)
    from ansible_collections.kickstack.core.plugins.module_utils.model import Unresolvable
    for target, key, value in patches:
        if value == "UNRESOLVABLE":
            value = Unresolvable("undefined variable 'x'")
        if target == "site":
            site[key] = value
        elif target == "secrets":
            if key is None:
                secrets = value
            else:
                secrets[key] = value
        elif target == "rename":
            hosts[value] = hosts.pop(key)
        else:
            for name in (STORAGE if target == "storage" else (target,)):
                if value is None:
                    hosts[name].pop(key, None)
                else:
                    hosts[name][key] = copy.deepcopy(value)
    return secrets


def test_enough_cases():
    assert len(CASES) >= 100
    assert len({c[0] for c in CASES}) == len(CASES)


@pytest.mark.parametrize("patches,expected", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_refused(lab, patches, expected):
    site, hosts = lab
    secrets = apply(site, hosts, patches)
    result = build(site, hosts, secrets)
    problems = result["problems"]
    assert any(expected in p for p in problems), "\n".join(problems) or "no problem reported"
    assert not any("internal check error" in p for p in problems), problems
    # No secret value ever appears in a message.
    for value in ("fixture-ipmi",):
        assert not any(value in p for p in problems)
