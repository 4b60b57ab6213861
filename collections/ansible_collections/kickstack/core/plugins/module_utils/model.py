# -*- coding: utf-8 -*-
"""The kickstack inventory model: read the site and every host once, check it, resolve it.

Preflight builds the model and refuses the run while any problem remains; later steps
(bulk rendering, roles) consume the resolved model and do not re-check it. Every problem
names the host (or "site") and the field, so an operator can go straight to the line.

Checks run in three stages: each variable against its declaration in schema.py (YAML type,
unsafe characters, full-string pattern), then the values themselves (addresses, disks,
names that must exist), then rules across fields and hosts (pairs, overlaps, duplicates).
A value refused by an earlier stage is not reported again by a later one.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import re
from typing import Any, Dict, List, Optional

from ansible_collections.kickstack.core.plugins.module_utils import schema
from ansible_collections.kickstack.core.plugins.module_utils.bmc import FENCE_AGENT_PROTOCOL, fence_params, redfish_resource_id
from ansible_collections.kickstack.core.plugins.module_utils.locales import UTF8_LOCALES

try:
    import zoneinfo
    _TIMEZONES = frozenset(zoneinfo.available_timezones())
except Exception:  # pragma: no cover - no tz database on the controller
    # Without tzdata only the shape of the name can be checked (schema pattern).
    _TIMEZONES = frozenset()

PROFILES_INSTALLED = ("controller", "compute", "storage")
PROFILES = PROFILES_INSTALLED + ("pxe",)

HOST_KEYS = schema.HOST_KEYS
SITE_KEYS = schema.SITE_KEYS

PARTITION_FSTYPES = ("xfs", "ext4")

MAC_RE = re.compile(r"[0-9a-f]{2}(?::[0-9a-f]{2}){5}")
LABEL_RE = re.compile(r"(?!-)[a-z0-9-]{1,63}(?<!-)")
INVENTORY_NAME_RE = re.compile(r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)")
FQDN_MAX = 64

# Repository ids the platforms' own trees use; an extra repo may not take one of them.
PLATFORM_REPO_NAMES = frozenset({"baseos", "appstream", "updates", "fedora", "everything", "extras",
                                 "crb", "highavailability", "resilientstorage", "anaconda", "updates-testing"})

# Fence agents of the fence-agents project known to kickstack (an unknown name is a typo).
FENCE_AGENTS = frozenset("""
fence_aliyun fence_alom fence_amt fence_amt_ws fence_apc fence_apc_snmp fence_aws fence_azure_arm
fence_bladecenter fence_brocade fence_cisco_mds fence_cisco_ucs fence_compute fence_docker fence_drac5
fence_eaton_snmp fence_emerson fence_eps fence_evacuate fence_gce fence_hpblade fence_ibmblade fence_ibmz
fence_idrac fence_ifmib fence_ilo fence_ilo2 fence_ilo3 fence_ilo3_ssh fence_ilo4 fence_ilo4_ssh fence_ilo5
fence_ilo5_ssh fence_ilo_moonshot fence_ilo_mp fence_ilo_ssh fence_imm fence_intelmodular fence_ipdu
fence_ipmilan fence_ipmilanplus fence_ironic fence_kdump fence_kubevirt fence_ldom fence_lpar fence_mpath
fence_netio fence_openstack fence_powerman fence_pve fence_raritan fence_rcd_serial fence_redfish fence_rhevm
fence_rsa fence_sanbox2 fence_sbd fence_scsi fence_skalar fence_tripplite_snmp fence_vbox fence_virsh
fence_virt fence_vmware_rest fence_vmware_soap fence_watchdog fence_wti fence_xenapi fence_xvm fence_zvmip
fence_heuristics_ping
""".split())
# Agents that log in to a management controller: they need its address, a user and a password.
FENCE_AGENTS_WITH_LOGIN = frozenset("""
fence_alom fence_amt fence_amt_ws fence_apc fence_bladecenter fence_cisco_ucs fence_drac5 fence_hpblade
fence_ibmblade fence_idrac fence_ilo fence_ilo2 fence_ilo3 fence_ilo3_ssh fence_ilo4 fence_ilo4_ssh fence_ilo5
fence_ilo5_ssh fence_ilo_moonshot fence_ilo_mp fence_ilo_ssh fence_imm fence_ipmilan fence_ipmilanplus
fence_ldom fence_lpar fence_pve fence_redfish fence_rhevm fence_rsa fence_virsh fence_vmware_rest
fence_vmware_soap fence_wti fence_zvmip
""".split())
_FENCE_ADDRESS = ("ip", "ipaddr")
_FENCE_LOGIN = ("username", "login")
_FENCE_PASSWORD = ("password", "passwd", "password_script", "passwd_script")


class Problems:
    """Collects problems as 'where: field: message' lines, in inventory order.

    A field refused by the schema stage is suppressed for its host afterwards, so a later
    rule does not report the same value again (or "missing" for it).
    """

    def __init__(self) -> None:
        self.items: List[str] = []
        self._suppressed: Dict[str, set] = {}

    def add(self, where: str, field: str, message: str) -> None:
        root = re.split(r"[.\[ ]", field, maxsplit=1)[0]
        if root in self._suppressed.get(where, ()):
            return
        self.items.append(f"{where}: {field}: {message}")

    def suppress(self, where: str, fields) -> None:
        self._suppressed.setdefault(where, set()).update(fields)

    def __bool__(self) -> bool:
        return bool(self.items)


class Unresolvable:
    """Marks an inventory value that Ansible could not evaluate (undefined variable, bad template)."""

    def __init__(self, reason: str) -> None:
        self.reason = reason


def _is_str(value: Any) -> bool:
    return isinstance(value, str) and value != ""


def _get(values: Dict[str, Any], key: str) -> Any:
    value = values.get(key)
    return schema.default(key) if value is None else value


def _split_unresolved(where: str, values: Dict[str, Any], problems: Problems) -> Dict[str, Any]:
    clean = {}
    for key, value in values.items():
        if isinstance(value, Unresolvable):
            problems.add(where, key, f"cannot be evaluated: {value.reason}")
            problems.suppress(where, [key])
        else:
            clean[key] = value
    return clean


# ----------------------------------------------------------------------------------- site

def _check_networks(site_vars: Dict[str, Any], problems: Problems) -> Dict[str, Any]:
    """Resolve kickstack_networks into ip_network objects plus their options."""
    networks: Dict[str, Any] = {}
    raw = site_vars.get("kickstack_networks")
    if raw is None:
        problems.add("site", "kickstack_networks", "missing: define the site's networks as {name: {cidr, ...}}")
        return networks
    for name, spec in raw.items():
        field = f"kickstack_networks.{name}"
        try:
            net = ipaddress.IPv4Network(spec["cidr"], strict=True)
        except ValueError as exc:
            problems.add("site", f"{field}.cidr", f"{spec['cidr']!r} is not a network address: {exc}: "
                                                  "write the network's first address, e.g. 10.60.0.0/24")
            continue
        entry = {"name": name, "cidr": str(net), "net": net,
                 "netmask": str(net.netmask), "gateway": None, "dns": list(spec.get("dns", [])),
                 "mtu": spec.get("mtu")}
        gateway = spec.get("gateway")
        if gateway is not None:
            gw = ipaddress.IPv4Address(gateway)
            if gw not in net:
                problems.add("site", f"{field}.gateway", f"{gw} is outside {net}")
            elif net.prefixlen < 31 and gw in (net.network_address, net.broadcast_address):
                problems.add("site", f"{field}.gateway",
                             f"{gw} is the network or broadcast address of {net}: use a host address")
            entry["gateway"] = str(gw)
        networks[name] = entry
    names = list(networks)
    for i, first in enumerate(names):
        for second in names[i + 1:]:
            if networks[first]["net"].overlaps(networks[second]["net"]):
                problems.add("site", f"kickstack_networks.{second}.cidr",
                             f"{networks[second]['cidr']} overlaps network {first} ({networks[first]['cidr']}): "
                             "networks must be disjoint")
    return networks


def _check_ssh_key(index: int, key: str, problems: Problems) -> None:
    parts = key.split(" ", 2)
    kind, blob = parts[0], parts[1]
    try:
        raw = base64.b64decode(blob, validate=True)
    except (binascii.Error, ValueError):
        problems.add("site", f"kickstack_deploy_ssh_keys[{index}]", "the key's base64 data is malformed "
                     "(truncated or mistyped): paste the whole public key line again")
        return
    if len(raw) < 4:
        problems.add("site", f"kickstack_deploy_ssh_keys[{index}]", "the key's data is truncated")
        return
    length = int.from_bytes(raw[:4], "big")
    declared = raw[4:4 + length]
    if length > 64 or declared != kind.encode():
        problems.add("site", f"kickstack_deploy_ssh_keys[{index}]",
                     f"the key's data does not start with its type {kind} (truncated or mixed up): "
                     "paste the whole public key line again")
    elif len(raw) < 4 + length + 20:
        problems.add("site", f"kickstack_deploy_ssh_keys[{index}]", "the key's data is truncated")


def _check_site(site_vars: Dict[str, Any], platforms: Dict[str, Any], problems: Problems) -> Dict[str, Any]:
    resolved: Dict[str, Any] = {}
    for key in ("kickstack_domain", "kickstack_time_sources", "kickstack_mirror_url", "kickstack_deploy_ssh_keys"):
        if key not in site_vars:
            problems.add("site", key, f"missing: {schema.BY_KEY[key].doc}")
    resolved["domain"] = site_vars.get("kickstack_domain")
    resolved["networks"] = _check_networks(site_vars, problems)
    # Without a usable network list (already reported), membership checks would only add noise.
    known = bool(resolved["networks"]) and len(resolved["networks"]) == len(site_vars.get("kickstack_networks") or {})
    resolved["_networks_known"] = known

    boot = _get(site_vars, "kickstack_boot_network")
    if known and boot not in resolved["networks"]:
        problems.add("site", "kickstack_boot_network",
                     f"{boot!r} is not one of kickstack_networks ({', '.join(sorted(resolved['networks']))})")
    resolved["boot_network"] = boot

    tz = _get(site_vars, "kickstack_timezone")
    if _TIMEZONES and tz not in _TIMEZONES:
        problems.add("site", "kickstack_timezone",
                     f"{tz!r} is not in the tz database: use a name like Europe/Berlin or UTC")
    resolved["timezone"] = tz

    resolved["time_sources"] = list(site_vars.get("kickstack_time_sources", []))
    resolved["mirror_url"] = (site_vars.get("kickstack_mirror_url") or "").rstrip("/")

    extra_repos = _get(site_vars, "kickstack_extra_repos")
    platform_repos = set(PLATFORM_REPO_NAMES)
    for platform in platforms.values():
        if isinstance(platform, dict):
            platform_repos.update(str(n).lower() for n in (platform.get("repos") or {}))
    seen_repos: Dict[str, int] = {}
    for index, repo in enumerate(extra_repos):
        lowered = repo["name"].lower()
        if lowered in platform_repos:
            problems.add("site", f"kickstack_extra_repos[{index}].name",
                         f"{repo['name']} is the name of a platform repository: choose another name")
        elif lowered in seen_repos:
            problems.add("site", f"kickstack_extra_repos[{index}].name",
                         f"{repo['name']} is already the name of kickstack_extra_repos[{seen_repos[lowered]}]")
        else:
            seen_repos[lowered] = index
    resolved["extra_repos"] = [{"name": r["name"], "baseurl": r["baseurl"]} for r in extra_repos]

    user = _get(site_vars, "kickstack_deploy_user")
    if user == "root":
        problems.add("site", "kickstack_deploy_user", "must not be root: name an unprivileged user like deploy")
    resolved["deploy_user"] = user

    keys = [k.strip() for k in site_vars.get("kickstack_deploy_ssh_keys", [])]
    for index, key in enumerate(keys):
        _check_ssh_key(index, key, problems)
    resolved["deploy_ssh_keys"] = keys

    language = _get(site_vars, "kickstack_language")
    base = language.replace(".UTF-8", "")
    if base not in UTF8_LOCALES:
        problems.add("site", "kickstack_language",
                     f"{language!r} is not a glibc UTF-8 locale: use one like en_US.UTF-8 or de_DE.UTF-8")
    resolved["language"] = language
    resolved["keyboard"] = _get(site_vars, "kickstack_keyboard")
    resolved["os_default"] = site_vars.get("kickstack_os")
    resolved["kernel_args"] = list(_get(site_vars, "kickstack_kernel_args"))
    resolved["extra_packages"] = list(_get(site_vars, "kickstack_extra_packages"))
    venv = _get(site_vars, "kickstack_openstack_venv")
    if any(part in (".", "..") for part in venv.split("/")):
        problems.add("site", "kickstack_openstack_venv", f"{venv!r} has a '.' or '..' component: write a plain path")
    resolved["openstack_venv"] = venv
    resolved["chrony_daemon_options"] = list(_get(site_vars, "kickstack_chrony_daemon_options"))
    resolved["root_password_in_kickstart"] = bool(_get(site_vars, "kickstack_root_password_in_kickstart"))
    resolved["replication_network"] = _get(site_vars, "kickstack_replication_network")
    return resolved


# ----------------------------------------------------------------------------------- hosts

def _interfaces(name: str, hv: Dict[str, Any], site: Dict[str, Any], problems: Problems) -> List[Dict[str, Any]]:
    raw = hv.get("kickstack_interfaces")
    if raw is None:
        problems.add(name, "kickstack_interfaces", "must list at least one interface {network, mac, ip}")
        return []
    result = []
    for index, nic in enumerate(raw):
        field = f"kickstack_interfaces[{index}]"
        mac = nic["mac"].lower()
        if mac == "00:00:00:00:00:00":
            problems.add(name, f"{field}.mac", f"{mac} is the all-zero address, not a NIC's: copy the NIC's real MAC")
        elif mac == "ff:ff:ff:ff:ff:ff":
            problems.add(name, f"{field}.mac", f"{mac} is the broadcast address, not a NIC's: copy the NIC's real MAC")
        elif int(mac[:2], 16) & 1:
            problems.add(name, f"{field}.mac", f"{mac} is a multicast address, not a NIC's: copy the NIC's real MAC")
        network = nic["network"]
        net = site["networks"].get(network)
        if net is None and site["_networks_known"]:
            problems.add(name, f"{field}.network",
                         f"{network!r} is not one of kickstack_networks ({', '.join(sorted(site['networks']))})")
        ip = ipaddress.IPv4Address(nic["ip"])
        if net is not None:
            if ip not in net["net"]:
                problems.add(name, f"{field}.ip", f"{ip} is outside network {network} ({net['cidr']})")
            elif net["net"].prefixlen < 31 and ip in (net["net"].network_address, net["net"].broadcast_address):
                problems.add(name, f"{field}.ip", f"{ip} is the network or broadcast address of {net['cidr']}")
            elif net["gateway"] and str(ip) == net["gateway"]:
                problems.add(name, f"{field}.ip", f"{ip} is the gateway of network {network}")
        result.append({
            "network": network, "mac": mac, "ip": str(ip),
            "netmask": net["netmask"] if net else None,
            "gateway": net["gateway"] if net else None, "dns": net["dns"] if net else [],
            "mtu": net["mtu"] if net else None,
        })
    networks_seen = [n["network"] for n in result]
    for network in sorted({n for n in networks_seen if networks_seen.count(n) > 1}):
        problems.add(name, "kickstack_interfaces", f"more than one interface on network {network}")
    return result


def _disks(name: str, hv: Dict[str, Any], profile: str, problems: Problems) -> Dict[str, Any]:
    out: Dict[str, Any] = {"os_disk": None, "disks": [], "drbd_disk": None, "os_disk_ks": None, "partitions": None}
    if profile not in PROFILES_INSTALLED:
        return out
    disks = list(_get(hv, "kickstack_disks"))
    if len(set(disks)) != len(disks):
        problems.add(name, "kickstack_disks", "lists the same disk twice")
    out["disks"] = disks
    os_disk = hv.get("kickstack_os_disk")
    if os_disk is None:
        problems.add(name, "kickstack_os_disk", "missing: name the disk to install the OS on, like sda")
    elif disks and os_disk not in disks:
        problems.add(name, "kickstack_os_disk", f"{os_disk} is not in kickstack_disks ({', '.join(disks)})")
    out["os_disk"] = os_disk
    # Kickstart wants bare names (sda) or /dev/disk/by-* paths.
    if os_disk is not None:
        out["os_disk_ks"] = os_disk if "/" not in os_disk else f"/dev/{os_disk}"
    out["partitions"] = _partitions(name, hv.get("kickstack_partitions"), problems)
    return out


def _lv_name(mount: str) -> str:
    return "root" if mount == "/" else "swap" if mount == "swap" else mount.strip("/").replace("/", "_")


def _partitions(name: str, raw: Any, problems: Problems) -> Optional[List[Dict[str, Any]]]:
    """Validate a host's own partition layout; None means the profile's default layout."""
    if raw is None:
        return None
    mounts: Dict[str, int] = {}
    lvs: Dict[str, str] = {}
    result = []
    for index, part in enumerate(raw):
        field = f"kickstack_partitions[{index}]"
        mount = part["mount"]
        normal = mount.rstrip("/") or "/"
        if normal in ("/boot", "/boot/efi"):
            problems.add(name, f"{field}.mount",
                         f"{mount} is created by the installer (reqpart --add-boot): remove it from the layout")
            continue
        if any(c in (".", "..") for c in normal.split("/")):
            problems.add(name, f"{field}.mount", f"{mount!r} has a '.' or '..' component: write a plain path")
            continue
        if normal in mounts:
            problems.add(name, f"{field}.mount",
                         f"{mount} is already kickstack_partitions[{mounts[normal]}] (a trailing '/' is the same mount)")
            continue
        mounts[normal] = index
        lv = _lv_name(normal)
        if lv in lvs:
            problems.add(name, f"{field}.mount",
                         f"{mount} and {lvs[lv]} would both be the logical volume {lv}: rename one of the mounts")
        lvs.setdefault(lv, normal)
        if normal == "swap" and part.get("fstype") not in (None,):
            problems.add(name, f"{field}.fstype", "swap has no file system type: remove fstype")
        entry = {"mount": normal, "size_mb": part["size_mb"]}
        if "grow" in part:
            entry["grow"] = part["grow"]
        if normal != "swap":
            entry["fstype"] = part.get("fstype", "xfs")
        result.append(entry)
    if "/" not in mounts:
        problems.add(name, "kickstack_partitions", "has no / (root) partition")
    return result


def _check_storage(name: str, hv: Dict[str, Any], host: Dict[str, Any], problems: Problems) -> None:
    drbd_disk = hv.get("kickstack_drbd_disk")
    if drbd_disk is None:
        problems.add(name, "kickstack_drbd_disk", "storage nodes need the DRBD backing device")
    elif drbd_disk == host["os_disk"]:
        problems.add(name, "kickstack_drbd_disk", f"{drbd_disk} is also the OS disk: the installer would wipe it")
    elif host["disks"] and drbd_disk not in host["disks"]:
        problems.add(name, "kickstack_drbd_disk",
                     f"backing device {drbd_disk} is missing from kickstack_disks ({', '.join(host['disks'])})")
    host["drbd_disk"] = drbd_disk
    force = _get(hv, "kickstack_drbd_force_create_md")
    if force is True:
        force = [drbd_disk] if drbd_disk else []
    elif force is False:
        force = []
    plain = []
    for disk in force:
        bare = disk[5:] if disk.startswith("/dev/") else disk
        if bare != drbd_disk:
            problems.add(name, "kickstack_drbd_force_create_md",
                         f"{disk} is not this host's DRBD backing device ({drbd_disk})")
        plain.append(bare)
    host["_drbd_force_create_md"] = plain
    peer = hv.get("kickstack_drbd_peer")
    if peer is None:
        problems.add(name, "kickstack_drbd_peer", "storage nodes come in pairs: name this node's DRBD peer")
    host["drbd_peer"] = peer
    host["peer"] = peer
    # Per-node DRBD and cluster settings (usually group_vars/storage); resolved per pair later.
    host["_storage_vars"] = {key: _get(hv, key) for key in schema.HOST_KEYS
                             if key.startswith(("kickstack_drbd_", "kickstack_cluster_", "kickstack_clvm_",
                                                "kickstack_shared_", "kickstack_fence_"))}
    settings = host["_storage_vars"]
    version = settings["kickstack_drbd_version"]
    settings["kickstack_drbd_version"] = str(version)
    dual, fencing = settings["kickstack_drbd_dual_primary"], settings["kickstack_drbd_fencing"]
    allow = settings["kickstack_drbd_allow_dual_primary_without_fencing"]
    if dual and fencing != "resource-and-stonith" and not allow:
        problems.add(name, "kickstack_drbd_fencing",
                     f"dual-primary DRBD (kickstack_drbd_dual_primary: true) with fencing {fencing!r} can corrupt "
                     "data after a split brain: use resource-and-stonith (with the cluster's fencing), or set "
                     "kickstack_drbd_allow_dual_primary_without_fencing: true in a test lab")
    lv_names: Dict[str, int] = {}
    for index, lv in enumerate(settings["kickstack_shared_lvs"]):
        if lv["name"] in lv_names:
            problems.add(name, f"kickstack_shared_lvs[{index}].name",
                         f"{lv['name']} is already kickstack_shared_lvs[{lv_names[lv['name']]}]")
        lv_names.setdefault(lv["name"], index)


def _bmc(name: str, bmc: Any, problems: Problems) -> Optional[Dict[str, Any]]:
    """The host's BMC as the plays read it: everything but the password (which stays in the
    inventory, read by the play that needs it), defaults filled in."""
    if not isinstance(bmc, dict):
        return None
    if bmc["protocol"] == "ipmi" and bmc.get("systems_uri"):
        problems.add(name, "kickstack_bmc.systems_uri",
                     "is a Redfish setting, but protocol is ipmi: remove it or set protocol: redfish")
    out = {key: bmc.get(key) for key in ("protocol", "address", "port", "username", "systems_uri")}
    out["verify_tls"] = bmc.get("verify_tls", True)
    out["resource_id"] = redfish_resource_id(bmc) if bmc["protocol"] == "redfish" else None
    return out


def _check_host(name: str, hv: Dict[str, Any], group_names: Any, site: Dict[str, Any],
                platforms: Dict[str, Any], problems: Problems, seen: Dict[str, Dict[str, str]]) -> Dict[str, Any]:
    if not INVENTORY_NAME_RE.fullmatch(name):
        problems.add(name, "inventory_hostname",
                     f"{name!r} is not a valid DNS label (letters, digits, '-'; max 63): it names the host's "
                     "files, so rename the host in the inventory")
    if isinstance(group_names, list):
        in_profiles = [g for g in group_names if g in PROFILES]
        if len(in_profiles) > 1:
            problems.add(name, "group_names",
                         f"the host is in more than one profile group ({', '.join(in_profiles)}): keep it in one")
    profile = hv.get("kickstack_profile")
    if profile is None:
        problems.add(name, "kickstack_profile",
                     f"missing: put the host in one of the groups {', '.join(PROFILES)} or set it")

    hostname = hv.get("kickstack_hostname") or name
    field = "kickstack_hostname" if hv.get("kickstack_hostname") else "inventory_hostname"
    if not LABEL_RE.fullmatch(hostname):
        if field == "kickstack_hostname" or INVENTORY_NAME_RE.fullmatch(name):
            problems.add(name, field, f"{hostname!r} is not a valid host name (lowercase letters, digits, '-'; max 63)")
    elif hostname in seen["name"]:
        problems.add(name, "kickstack_hostname", f"host name {hostname} is already used by {seen['name'][hostname]}")
    else:
        seen["name"][hostname] = name
    fqdn = f"{hostname}.{site['domain']}" if site["domain"] else hostname
    if site["domain"] and len(fqdn) > FQDN_MAX:
        problems.add(name, field, f"the FQDN {fqdn} is {len(fqdn)} characters long, more than {FQDN_MAX}: "
                                  "shorten the host name or kickstack_domain")

    os_name = hv.get("kickstack_os", site["os_default"])
    platform = platforms.get(os_name) if isinstance(os_name, str) else None
    if platform is None:
        problems.add(name, "kickstack_os",
                     f"unsupported OS release {os_name!r} (supported: {', '.join(sorted(platforms))})")

    interfaces = _interfaces(name, hv, site, problems)
    for index, nic in enumerate(interfaces):
        for kind in ("mac", "ip"):
            value = nic[kind]
            if value in seen[kind]:
                problems.add(name, f"kickstack_interfaces[{index}].{kind}", f"{value} is already used by {seen[kind][value]}")
            else:
                seen[kind][value] = name
    boot_nic = next((n for n in interfaces if n["network"] == site["boot_network"]), None)
    if interfaces and boot_nic is None and site["_networks_known"]:
        problems.add(name, "kickstack_interfaces", f"no interface on the boot network {site['boot_network']!r}")

    host: Dict[str, Any] = {
        "name": name, "hostname": hostname, "fqdn": fqdn,
        "profile": profile, "os": os_name, "platform": platform,
        "interfaces": interfaces, "boot_nic": boot_nic,
        "mgmt_ip": boot_nic["ip"] if boot_nic else None,
        "netboot": _get(hv, "kickstack_netboot"),
        # Only installed hosts get a kickstart; the boot server's host is always configured over SSH.
        "delivery": _get(hv, "kickstack_delivery") if profile in PROFILES_INSTALLED else "bootstrap",
    }
    host.update(_disks(name, hv, profile or "", problems))
    host["bmc"] = _bmc(name, hv.get("kickstack_bmc"), problems)
    if profile == "storage":
        _check_storage(name, hv, host, problems)
    return host


def build_model(site_vars: Dict[str, Any], hosts: Dict[str, Dict[str, Any]],
                platforms: Dict[str, Any], required_secrets: Dict[str, List[str]],
                secrets: Any, require_pxe: bool = True) -> Dict[str, Any]:
    """Check the whole inventory and return {'problems': [...], 'site': {...}, 'hosts': {...}}.

    site_vars: the site-wide kickstack_* variables; hosts: inventory_hostname -> its kickstack_*
    variables (values that failed to evaluate are passed as Unresolvable), plus `group_names`
    when known; required_secrets: profile -> secret names needed when a host of that profile
    exists; secrets: the site's kickstack_secrets mapping (None when missing). Secret values
    never enter the model, and no check ends in a traceback: an unexpected error becomes an
    "internal check error" problem of the host being checked.
    """
    problems = Problems()
    site_vars = _split_unresolved("site", site_vars, problems)
    site_keys = tuple(k for k in SITE_KEYS if k != "kickstack_secrets")
    clean_site, refused = schema.check_vars("site", site_vars, site_keys, problems.add)
    problems.suppress("site", refused)
    try:
        site = _check_site(clean_site, platforms, problems)
    except Exception as exc:  # never a traceback: name the stage instead
        problems.add("site", "kickstack_*", f"internal check error ({type(exc).__name__}: {exc}): "
                                             "please report it; meanwhile check the site's variables")
        return {"problems": problems.items, "site": {}, "hosts": {}}

    model_hosts: Dict[str, Dict[str, Any]] = {}
    seen: Dict[str, Dict[str, str]] = {"mac": {}, "ip": {}, "name": {}}
    for name, raw in hosts.items():
        name = str(name)
        group_names = raw.get("group_names")
        hv = _split_unresolved(name, {k: v for k, v in raw.items() if k != "group_names"}, problems)
        hv, refused = schema.check_vars(name, hv, HOST_KEYS, problems.add)
        problems.suppress(name, refused)
        try:
            model_hosts[name] = _check_host(name, hv, group_names, site, platforms, problems, seen)
        except Exception as exc:
            problems.add(name, "kickstack_*", f"internal check error ({type(exc).__name__}: {exc}): "
                                              "please report it; meanwhile check this host's variables")
            problems.suppress(name, HOST_KEYS)
            model_hosts[name] = {"name": name, "hostname": name, "fqdn": name, "profile": None, "os": None,
                                 "platform": None, "interfaces": [], "boot_nic": None, "mgmt_ip": None,
                                 "netboot": False, "delivery": "bootstrap", "bmc": None, "os_disk": None, "disks": [], "drbd_disk": None,
                                 "os_disk_ks": None, "partitions": None}

    for stage in (lambda: _check_roles(model_hosts, site, problems, require_pxe),
                  lambda: _check_pairs(model_hosts, problems),
                  lambda: _check_fencing(model_hosts, problems),
                  lambda: _check_replication(model_hosts, site, problems),
                  lambda: _resolve_storage(model_hosts, site, problems),
                  lambda: _check_secrets(model_hosts, site, required_secrets, secrets, problems)):
        try:
            stage()
        except Exception as exc:
            problems.add("site", "kickstack_*", f"internal check error ({type(exc).__name__}: {exc}): "
                         "please report it; meanwhile check the relations between hosts (pairs, fencing)")

    site.pop("_networks_known", None)
    for host in model_hosts.values():
        for key in ("_storage_vars", "_replication_ip", "_drbd_force_create_md"):
            host.pop(key, None)
    for net in site["networks"].values():
        net.pop("net", None)
    return {"problems": problems.items, "site": site, "hosts": model_hosts}


def _check_roles(hosts: Dict[str, Dict[str, Any]], site: Dict[str, Any], problems: Problems,
                 require_pxe: bool) -> None:
    by_profile: Dict[str, List[str]] = {p: [] for p in PROFILES}
    for name, host in hosts.items():
        if host["profile"] in by_profile:
            by_profile[host["profile"]].append(name)
    if not by_profile["controller"]:
        problems.add("site", "controller", "no host has profile controller: the cloud needs one")
    elif len(by_profile["controller"]) > 1:
        problems.add("site", "controller",
                     f"more than one controller ({', '.join(by_profile['controller'])}): kickstack runs one")
    if len(by_profile["pxe"]) > 1 or require_pxe and not by_profile["pxe"]:
        problems.add("site", "pxe", f"exactly one host needs profile pxe (found {len(by_profile['pxe'])})")
    site["controller"] = by_profile["controller"][0] if by_profile["controller"] else None
    site["pxe"] = by_profile["pxe"][0] if by_profile["pxe"] else None
    for role in ("controller", "pxe"):
        name = site[role]
        site[f"{role}_ip"] = hosts[name]["mgmt_ip"] if name else None
    controller = hosts.get(site["controller"]) if site["controller"] else None
    site["controller_hostname"] = controller["hostname"] if controller else None
    site["controller_fqdn"] = controller["fqdn"] if controller else None
    boot = site["networks"].get(site["boot_network"])
    site["mgmt_cidr"] = boot["cidr"] if boot else None
    site["hosts_entries"] = [{"name": n, "hostname": h["hostname"], "fqdn": h["fqdn"], "ip": h["mgmt_ip"]}
                             for n, h in sorted(hosts.items()) if h["mgmt_ip"]]


def _check_pairs(hosts: Dict[str, Dict[str, Any]], problems: Problems) -> None:
    storage = [n for n, h in hosts.items() if h["profile"] == "storage"]
    if len(storage) % 2:
        problems.add("site", "storage", f"storage nodes come in DRBD pairs; found an odd number ({len(storage)})")
    for name in storage:
        peer = hosts[name].get("drbd_peer")
        if not _is_str(peer):
            continue
        if peer == name:
            problems.add(name, "kickstack_drbd_peer", "a node cannot be its own DRBD peer")
        elif peer not in hosts:
            problems.add(name, "kickstack_drbd_peer", f"peer {peer} is not in the inventory")
        elif hosts[peer]["profile"] != "storage":
            problems.add(name, "kickstack_drbd_peer", f"peer {peer} is not a storage node")
        elif hosts[peer].get("drbd_peer") != name:
            problems.add(name, "kickstack_drbd_peer",
                         f"peer {peer} names {hosts[peer].get('drbd_peer')!r} as its peer, not {name}")


def _pair_of(hosts: Dict[str, Dict[str, Any]], name: str) -> Optional[List[str]]:
    """The pair (sorted inventory names) when both nodes name each other, else None."""
    peer = hosts[name].get("drbd_peer")
    if _is_str(peer) and peer != name and peer in hosts and hosts[peer]["profile"] == "storage" \
            and hosts[peer].get("drbd_peer") == name:
        return sorted((name, peer))
    return None


def _check_fencing(hosts: Dict[str, Dict[str, Any]], problems: Problems) -> None:
    """Each storage node's cluster gets its fence devices from kickstack_fence_devices.

    Checked on every storage node (the list is usually group_vars/storage): well-formed
    devices for known storage nodes, with an agent kickstack knows and the credentials it
    needs, and one for each node of the pair unless the test-lab switch
    kickstack_cluster_allow_no_fencing is set. Device params (passwords) never enter the model.
    """
    for name, host in hosts.items():
        if host["profile"] != "storage" or "_storage_vars" not in host:
            continue
        settings = host["_storage_vars"]
        devices = settings["kickstack_fence_devices"]
        allow = settings["kickstack_cluster_allow_no_fencing"]
        fenced, seen = set(), set()
        host["_fence_devices"] = []
        for i, dev in enumerate(devices):
            where = f"kickstack_fence_devices[{i}]"
            dev_name, agent, target = dev["name"], dev["agent"], dev["host"]
            if dev_name in seen:
                problems.add(name, f"{where}.name", f"{dev_name} is defined twice")
            seen.add(dev_name)
            if agent not in FENCE_AGENTS:
                problems.add(name, f"{where}.agent",
                             f"{agent} is not a fence agent kickstack knows (e.g. fence_ipmilan, fence_redfish, "
                             "fence_idrac, fence_ilo4, fence_virsh, fence_xvm, fence_scsi, fence_sbd): check the name")
            own = dev.get("params", {})
            bmc = hosts[target].get("bmc") if target in hosts else None
            # The password never enters the model: the schema made sure the BMC has one.
            params = fence_params(agent, dict(bmc, password="(from the vault)") if bmc else None, own)
            protocol = FENCE_AGENT_PROTOCOL.get(agent)
            if protocol and bmc and bmc["protocol"] != protocol and not own.get("ip"):
                problems.add(name, f"{where}.agent",
                             f"{agent} speaks {protocol}, but {target}'s kickstack_bmc is {bmc['protocol']}: use "
                             f"an agent for {bmc['protocol']} (fence_redfish or fence_ipmilan), or give params.ip "
                             "and the rest of the connection")
            elif agent in FENCE_AGENTS_WITH_LOGIN:
                for names, what in ((_FENCE_ADDRESS, "the management address"), (_FENCE_LOGIN, "the user name"),
                                    (_FENCE_PASSWORD, "the password (or password_script)")):
                    if not any(params.get(k) not in (None, "") for k in names):
                        problems.add(name, f"{where}.params",
                                     f"{agent} needs {what}: set params.{names[0]}"
                                     + (" (from the vault, e.g. \"{{ kickstack_secrets.ipmi_password }}\")"
                                        if names is _FENCE_PASSWORD else "")
                                     + (f", or give {target} a kickstack_bmc" if protocol and not bmc else ""))
            if target not in hosts:
                problems.add(name, f"{where}.host", f"{target!r} is not a host of the inventory")
            elif hosts[target]["profile"] != "storage":
                problems.add(name, f"{where}.host", f"{target} is not a storage node: only the storage pairs are clustered")
            else:
                fenced.add(target)
            host["_fence_devices"].append({"name": dev_name, "agent": agent, "host": target})
        pair = [name] + ([host["drbd_peer"]] if _is_str(host.get("drbd_peer")) else [])
        missing = [n for n in pair if n not in fenced]
        if missing and allow is not True:
            problems.add(name, "kickstack_fence_devices",
                         f"no fence device for {', '.join(missing)}: the pair's cluster must be able to fence "
                         "each node (set kickstack_cluster_allow_no_fencing: true only in a test lab)")


def _check_replication(hosts: Dict[str, Dict[str, Any]], site: Dict[str, Any], problems: Problems) -> None:
    """DRBD pairs replicate on one network, both with an address on it.

    The model has one DRBD resource per host (kickstack_drbd_disk), so no disk can serve two
    resources here; the drbd role asserts it again for resources given to it directly.
    """
    storage = [n for n, h in hosts.items() if h["profile"] == "storage"]
    net_name = site["replication_network"]
    net = site["networks"].get(net_name)
    site["replication_cidr"] = net["cidr"] if net else None
    if not storage:
        return
    if net is None:
        if not site["_networks_known"]:
            return
        problems.add("site", "kickstack_replication_network",
                     f"{net_name!r} is not one of kickstack_networks ({', '.join(sorted(site['networks']))})")
        return
    for name in storage:
        host = hosts[name]
        nic = next((n for n in host["interfaces"] if n["network"] == net_name), None)
        host["_replication_ip"] = nic["ip"] if nic else None
        if nic is None and host["interfaces"]:
            problems.add(name, "kickstack_interfaces",
                         f"no interface on the replication network {net_name!r} ({net['cidr']}): DRBD needs one")
    for name in storage:
        peer = hosts[name].get("drbd_peer")
        if _is_str(peer) and peer in hosts and hosts[peer]["profile"] == "storage":
            if hosts[name].get("_replication_ip") and hosts[peer].get("_replication_ip") is None:
                problems.add(name, "kickstack_drbd_peer",
                             f"peer {peer} has no address on the replication network {net_name!r}")


# Settings both nodes of a pair must agree on.
PAIR_AGREE = ("kickstack_drbd_version", "kickstack_drbd_resource", "kickstack_drbd_device", "kickstack_drbd_port",
              "kickstack_drbd_fencing", "kickstack_drbd_dual_primary",
              "kickstack_drbd_allow_dual_primary_without_fencing", "kickstack_drbd_initial_sync_source",
              "kickstack_drbd_link_speed_mbit", "kickstack_drbd_fence_tolerance", "kickstack_cluster_stack", "kickstack_cluster_name",
              "kickstack_cluster_totem_token", "kickstack_cluster_fence_timeout", "kickstack_cluster_allow_no_fencing",
              "kickstack_clvm_mode", "kickstack_shared_vg", "kickstack_shared_vg_mode", "kickstack_shared_lvs")


def _resolve_storage(hosts: Dict[str, Dict[str, Any]], site: Dict[str, Any], problems: Problems) -> None:
    """Per storage node: the pair's DRBD resource and cluster, as the converge plays read them."""
    for name, host in hosts.items():
        if host["profile"] != "storage" or "_storage_vars" not in host:
            continue
        pair = _pair_of(hosts, name)
        if pair is None:
            continue
        peer = host["drbd_peer"]
        mine, theirs = host["_storage_vars"], hosts[peer].get("_storage_vars", {})
        if name == pair[0]:  # report a disagreement once per pair
            for key in PAIR_AGREE:
                if key in theirs and mine[key] != theirs[key]:
                    problems.add(name, key, f"{mine[key]!r} differs from {theirs[key]!r} on its peer {peer}: "
                                            "both nodes of a pair must agree")
            if host["os"] != hosts[peer]["os"]:
                problems.add(name, "kickstack_os", f"{host['os']} differs from {hosts[peer]['os']} on its peer {peer}: "
                                                   "a DRBD pair runs one OS release")
        source = mine["kickstack_drbd_initial_sync_source"] or pair[0]
        if source not in pair:
            problems.add(name, "kickstack_drbd_initial_sync_source",
                         f"{source} is not a node of the pair ({', '.join(pair)})")
        nodes = [hosts[n] for n in pair]
        meta = mine["kickstack_drbd_meta_disk"]
        host["drbd"] = {
            "resource": mine["kickstack_drbd_resource"], "device": mine["kickstack_drbd_device"],
            "port": mine["kickstack_drbd_port"], "version": mine["kickstack_drbd_version"],
            "dual_primary": mine["kickstack_drbd_dual_primary"], "fencing": mine["kickstack_drbd_fencing"],
            "allow_dual_primary_without_fencing": mine["kickstack_drbd_allow_dual_primary_without_fencing"],
            "initial_sync_source": source,
            "force_create_md": [f"/dev/{d}" for d in host.get("_drbd_force_create_md", [])],
            "link_speed_mbit": mine["kickstack_drbd_link_speed_mbit"],
            "disk_speed_mbyte": mine["kickstack_drbd_disk_speed_mbyte"],
            "fence_tolerance": mine["kickstack_drbd_fence_tolerance"],
            "disk": f"/dev/{host['drbd_disk']}" if host.get("drbd_disk") else None,
            "meta_disk": meta,
            "nodes": [{"name": n["hostname"], "address": n.get("_replication_ip"),
                       "disk": f"/dev/{n['drbd_disk']}" if n.get("drbd_disk") else None,
                       "meta_disk": n.get("_storage_vars", {}).get("kickstack_drbd_meta_disk", "internal"),
                       "node_id": i} for i, n in enumerate(nodes)],
        }
        host["cluster"] = {
            "stack": mine["kickstack_cluster_stack"], "name": mine["kickstack_cluster_name"],
            "clvm_mode": mine["kickstack_clvm_mode"],
            "nodes": [{"name": n["hostname"], "nodeid": i + 1, "addr": n.get("_replication_ip")}
                      for i, n in enumerate(nodes)],
            "fence_device_names": [d["name"] for d in host.get("_fence_devices", []) if d["host"] in pair],
            "allow_no_fencing": mine["kickstack_cluster_allow_no_fencing"],
            "totem_token": mine["kickstack_cluster_totem_token"],
            "fence_timeout": mine["kickstack_cluster_fence_timeout"],
            "shared_vg": mine["kickstack_shared_vg"], "shared_vg_mode": mine["kickstack_shared_vg_mode"],
            "shared_lvs": [dict(lv) for lv in mine["kickstack_shared_lvs"]],
            "network_cidr": site.get("replication_cidr"),
        }
    for host in hosts.values():
        host.pop("_fence_devices", None)


def _check_secrets(hosts: Dict[str, Dict[str, Any]], site: Dict[str, Any], required: Dict[str, List[str]],
                   secrets: Any, problems: Problems) -> None:
    if secrets is None:
        problems.add("site", "kickstack_secrets",
                     "missing: generate the site's secrets with `make secrets` (or define them in Vault)")
        return
    if isinstance(secrets, Unresolvable):
        problems.add("site", "kickstack_secrets", f"cannot be evaluated: {secrets.reason}")
        return
    if not isinstance(secrets, dict):
        problems.add("site", "kickstack_secrets", "must be a mapping of secret name to value")
        return
    profiles = {h["profile"] for h in hosts.values()}
    needed = sorted({s for p in profiles for s in required.get(p, [])} | set(required.get("all", [])))
    for secret in needed:
        if secrets.get(secret) in (None, ""):
            problems.add("site", f"kickstack_secrets.{secret}", "missing or empty")
    root_hash = secrets.get("root_password_hash")
    if root_hash not in (None, ""):
        # Only the shape is checked and reported, never the value.
        if not (isinstance(root_hash, str) and re.fullmatch(
                r"\$6\$(rounds=\d+\$)?[./0-9A-Za-z]{1,16}\$[./0-9A-Za-z]{86}", root_hash)):
            problems.add("site", "kickstack_secrets.root_password_hash", "is not a SHA-512 crypt hash ($6$...)")
        elif site.get("root_password_in_kickstart"):
            site["root_login"] = "password"
