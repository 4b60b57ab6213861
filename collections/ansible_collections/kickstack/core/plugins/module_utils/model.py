# -*- coding: utf-8 -*-
"""The kickstack inventory model: read the site and every host once, check it, resolve it.

Preflight builds the model and refuses the run while any problem remains; later steps
(bulk rendering, roles) consume the resolved model and do not re-check it. Every problem
names the host (or "site") and the field, so an operator can go straight to the line.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Any, Dict, List, Optional

PROFILES_INSTALLED = ("controller", "compute", "storage")
PROFILES = PROFILES_INSTALLED + ("pxe",)

# Host-level inventory keys the model reads. Anything else in hostvars is ignored.
HOST_KEYS = (
    "kickstack_profile",
    "kickstack_os",
    "kickstack_hostname",
    "kickstack_interfaces",
    "kickstack_os_disk",
    "kickstack_disks",
    "kickstack_partitions",
    "kickstack_drbd_peer",
    "kickstack_drbd_disk",
    "kickstack_drbd_force_create_md",
    "kickstack_netboot",
    "kickstack_fence_devices",
    "kickstack_cluster_allow_no_fencing",
)

PARTITION_FSTYPES = ("xfs", "ext4")

MAC_RE = re.compile(r"^[0-9a-f]{2}(:[0-9a-f]{2}){5}$")
LABEL_RE = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")
DISK_RE = re.compile(r"^(?:[a-z][a-z0-9]*|disk/by-(?:id|path|uuid|label)/[A-Za-z0-9_.:+@-]+)$")
SSH_KEY_RE = re.compile(
    r"^(ssh-ed25519|ssh-rsa|ecdsa-sha2-nistp(256|384|521)|sk-ssh-ed25519@openssh\.com"
    r"|sk-ecdsa-sha2-nistp256@openssh\.com) [A-Za-z0-9+/]+={0,3}( .*)?$"
)
URL_RE = re.compile(r"^https?://[^\s/$.?#][^\s]*$")
TZ_RE = re.compile(r"^[A-Za-z_+-]+(/[A-Za-z0-9_+-]+)*$")


class Problems:
    """Collects problems as 'where: field: message' lines, in inventory order."""

    def __init__(self) -> None:
        self.items: List[str] = []

    def add(self, where: str, field: str, message: str) -> None:
        self.items.append(f"{where}: {field}: {message}")

    def __bool__(self) -> bool:
        return bool(self.items)


def _is_str(value: Any) -> bool:
    return isinstance(value, str) and value != ""


def _valid_domain(name: Any) -> bool:
    if not _is_str(name) or len(name) > 253:
        return False
    return all(LABEL_RE.match(label) for label in name.split("."))


def _check_networks(site: Dict[str, Any], problems: Problems) -> Dict[str, Any]:
    """Resolve kickstack_networks into ip_network objects plus their options."""
    networks: Dict[str, Any] = {}
    raw = site.get("kickstack_networks")
    if not isinstance(raw, dict) or not raw:
        problems.add("site", "kickstack_networks", "must be a mapping of network name to {cidr, ...}")
        return networks
    for name, spec in raw.items():
        field = f"kickstack_networks.{name}"
        if not isinstance(spec, dict) or "cidr" not in spec:
            problems.add("site", field, "must be a mapping with at least 'cidr'")
            continue
        try:
            net = ipaddress.ip_network(str(spec["cidr"]), strict=True)
        except ValueError as exc:
            problems.add("site", f"{field}.cidr", f"not a network address: {exc}")
            continue
        entry = {"name": name, "cidr": str(net), "net": net, "prefix": net.prefixlen,
                 "netmask": str(net.netmask), "gateway": None, "dns": [], "mtu": spec.get("mtu")}
        gateway = spec.get("gateway")
        if gateway is not None:
            try:
                gw = ipaddress.ip_address(str(gateway))
            except ValueError:
                problems.add("site", f"{field}.gateway", f"{gateway!r} is not an IP address")
            else:
                if gw not in net:
                    problems.add("site", f"{field}.gateway", f"{gw} is outside {net}")
                entry["gateway"] = str(gw)
        dns = spec.get("dns", [])
        if not isinstance(dns, list):
            problems.add("site", f"{field}.dns", "must be a list of IP addresses")
            dns = []
        for server in dns:
            try:
                entry["dns"].append(str(ipaddress.ip_address(str(server))))
            except ValueError:
                problems.add("site", f"{field}.dns", f"{server!r} is not an IP address")
        networks[name] = entry
    return networks


def _check_site(site: Dict[str, Any], platforms: Dict[str, Any], problems: Problems) -> Dict[str, Any]:
    resolved: Dict[str, Any] = {}
    domain = site.get("kickstack_domain")
    if not _valid_domain(domain):
        problems.add("site", "kickstack_domain", f"{domain!r} is not a valid DNS domain")
    resolved["domain"] = domain
    resolved["networks"] = _check_networks(site, problems)

    boot = site.get("kickstack_boot_network", "mgmt")
    if resolved["networks"] and boot not in resolved["networks"]:
        problems.add("site", "kickstack_boot_network",
                     f"{boot!r} is not one of kickstack_networks ({', '.join(sorted(resolved['networks']))})")
    resolved["boot_network"] = boot

    tz = site.get("kickstack_timezone", "UTC")
    if not _is_str(tz) or not TZ_RE.match(tz):
        problems.add("site", "kickstack_timezone", f"{tz!r} is not a timezone name like Europe/Berlin")
    resolved["timezone"] = tz

    sources = site.get("kickstack_time_sources", [])
    if not isinstance(sources, list) or not sources or not all(_is_str(s) for s in sources):
        problems.add("site", "kickstack_time_sources",
                     "must list at least one upstream NTP server or pool for the controller")
        sources = []
    resolved["time_sources"] = sources

    mirror = site.get("kickstack_mirror_url")
    if not _is_str(mirror) or not URL_RE.match(mirror):
        problems.add("site", "kickstack_mirror_url", f"{mirror!r} is not an http(s) URL")
    resolved["mirror_url"] = (mirror or "").rstrip("/")

    extra_repos = site.get("kickstack_extra_repos", [])
    if not isinstance(extra_repos, list):
        problems.add("site", "kickstack_extra_repos", "must be a list of {name, baseurl}")
        extra_repos = []
    for index, repo in enumerate(extra_repos):
        if not (isinstance(repo, dict) and _is_str(repo.get("name")) and _is_str(repo.get("baseurl"))
                and URL_RE.match(repo["baseurl"])):
            problems.add("site", f"kickstack_extra_repos[{index}]", "needs a name and an http(s) baseurl")
    resolved["extra_repos"] = extra_repos

    user = site.get("kickstack_deploy_user", "deploy")
    if not _is_str(user) or not re.match(r"^[a-z_][a-z0-9_-]{0,31}$", user) or user == "root":
        problems.add("site", "kickstack_deploy_user", f"{user!r} is not a valid non-root user name")
    resolved["deploy_user"] = user

    keys = site.get("kickstack_deploy_ssh_keys")
    if not isinstance(keys, list) or not keys:
        problems.add("site", "kickstack_deploy_ssh_keys", "must list at least one SSH public key")
        keys = []
    for index, key in enumerate(keys):
        if not _is_str(key) or not SSH_KEY_RE.match(key.strip()):
            problems.add("site", f"kickstack_deploy_ssh_keys[{index}]", "is not an SSH public key")
    resolved["deploy_ssh_keys"] = [k.strip() for k in keys if isinstance(k, str)]

    language = site.get("kickstack_language", "en_US.UTF-8")
    if not _is_str(language) or not re.match(r"^[a-z]{2,3}_[A-Z]{2}(\.UTF-8)?$", language):
        problems.add("site", "kickstack_language", f"{language!r} is not a locale like en_US.UTF-8")
    resolved["language"] = language
    keyboard = site.get("kickstack_keyboard", "us")
    if not _is_str(keyboard) or not re.match(r"^[a-z]{2,3}([-_(][a-z0-9_)]+)*$", keyboard):
        problems.add("site", "kickstack_keyboard", f"{keyboard!r} is not a keyboard layout like us or de-nodeadkeys")
    resolved["keyboard"] = keyboard
    resolved["os_default"] = site.get("kickstack_os")
    return resolved


def _interfaces(name: str, hv: Dict[str, Any], site: Dict[str, Any], problems: Problems) -> List[Dict[str, Any]]:
    raw = hv.get("kickstack_interfaces")
    if not isinstance(raw, list) or not raw:
        problems.add(name, "kickstack_interfaces", "must list at least one interface {network, mac, ip}")
        return []
    result = []
    for index, nic in enumerate(raw):
        field = f"kickstack_interfaces[{index}]"
        if not isinstance(nic, dict):
            problems.add(name, field, "must be a mapping {network, mac, ip}")
            continue
        mac = str(nic.get("mac", "")).strip().lower()
        if not MAC_RE.match(mac):
            problems.add(name, f"{field}.mac", f"{nic.get('mac')!r} is not a MAC address like 52:54:00:12:34:56")
        elif int(mac[:2], 16) & 1:
            problems.add(name, f"{field}.mac", f"{mac} is a multicast address, not a NIC's")
        network = nic.get("network")
        net = site["networks"].get(network) if isinstance(network, str) else None
        if net is None:
            problems.add(name, f"{field}.network",
                         f"{network!r} is not one of kickstack_networks ({', '.join(sorted(site['networks']))})")
        ip_text = nic.get("ip")
        ip = None
        try:
            ip = ipaddress.ip_address(str(ip_text))
        except ValueError:
            problems.add(name, f"{field}.ip", f"{ip_text!r} is not an IP address")
        if ip is not None and net is not None:
            if ip not in net["net"]:
                problems.add(name, f"{field}.ip", f"{ip} is outside network {network} ({net['cidr']})")
            elif ip in (net["net"].network_address, net["net"].broadcast_address):
                problems.add(name, f"{field}.ip", f"{ip} is the network or broadcast address of {net['cidr']}")
            elif net["gateway"] and str(ip) == net["gateway"]:
                problems.add(name, f"{field}.ip", f"{ip} is the gateway of network {network}")
        result.append({
            "network": network, "mac": mac, "ip": str(ip) if ip else None,
            "prefix": net["prefix"] if net else None, "netmask": net["netmask"] if net else None,
            "gateway": net["gateway"] if net else None, "dns": net["dns"] if net else [],
            "mtu": net["mtu"] if net else None,
        })
    networks_seen = [n["network"] for n in result]
    for network in sorted({n for n in networks_seen if networks_seen.count(n) > 1 and n}):
        problems.add(name, "kickstack_interfaces", f"more than one interface on network {network}")
    return result


def _disks(name: str, hv: Dict[str, Any], profile: str, problems: Problems) -> Dict[str, Any]:
    out: Dict[str, Any] = {"os_disk": None, "disks": [], "drbd_disk": None}
    if profile not in PROFILES_INSTALLED:
        return out
    disks = hv.get("kickstack_disks", [])
    if not isinstance(disks, list) or not all(_is_str(d) and DISK_RE.match(d) for d in disks):
        problems.add(name, "kickstack_disks", "must list disk names like sda, nvme0n1 or disk/by-id/...")
        disks = []
    if len(set(disks)) != len(disks):
        problems.add(name, "kickstack_disks", "lists the same disk twice")
    out["disks"] = disks
    os_disk = hv.get("kickstack_os_disk")
    if not _is_str(os_disk) or not DISK_RE.match(os_disk):
        problems.add(name, "kickstack_os_disk", f"{os_disk!r} is not a disk name like sda or disk/by-id/...")
    elif disks and os_disk not in disks:
        problems.add(name, "kickstack_os_disk", f"{os_disk} is not in kickstack_disks ({', '.join(disks)})")
    out["os_disk"] = os_disk
    # Kickstart wants bare names (sda) or /dev/disk/by-* paths.
    out["os_disk_ks"] = os_disk if _is_str(os_disk) and "/" not in os_disk else f"/dev/{os_disk}"
    out["partitions"] = _partitions(name, hv.get("kickstack_partitions"), problems)
    return out


def _partitions(name: str, raw: Any, problems: Problems) -> Optional[List[Dict[str, Any]]]:
    """Validate a host's own partition layout; None means the profile's default layout."""
    if raw is None:
        return None
    if not isinstance(raw, list) or not raw:
        problems.add(name, "kickstack_partitions", "must be a list of {mount, size_mb[, grow, fstype]}")
        return None
    mounts = []
    for index, part in enumerate(raw):
        field = f"kickstack_partitions[{index}]"
        if not isinstance(part, dict):
            problems.add(name, field, "must be a mapping {mount, size_mb[, grow, fstype]}")
            continue
        mount = part.get("mount")
        if not (_is_str(mount) and (mount == "swap" or re.match(r"^/[A-Za-z0-9_/.-]*$", mount))):
            problems.add(name, f"{field}.mount", f"{mount!r} is not an absolute path or swap")
        size = part.get("size_mb")
        if not isinstance(size, int) or isinstance(size, bool) or size <= 0:
            problems.add(name, f"{field}.size_mb", f"{size!r} is not a positive number of MiB")
        if part.get("fstype", "xfs") not in PARTITION_FSTYPES and mount != "swap":
            problems.add(name, f"{field}.fstype", f"{part.get('fstype')!r} is not one of {', '.join(PARTITION_FSTYPES)}")
        if mount in mounts:
            problems.add(name, f"{field}.mount", f"{mount} is listed twice")
        mounts.append(mount)
    if "/" not in mounts:
        problems.add(name, "kickstack_partitions", "has no / (root) partition")
    return raw


def _check_storage(name: str, hv: Dict[str, Any], host: Dict[str, Any], problems: Problems) -> None:
    drbd_disk = hv.get("kickstack_drbd_disk")
    if drbd_disk is None:
        problems.add(name, "kickstack_drbd_disk", "storage nodes need the DRBD backing device")
    elif not _is_str(drbd_disk) or not DISK_RE.match(drbd_disk):
        problems.add(name, "kickstack_drbd_disk", f"{drbd_disk!r} is not a disk name like sdb or disk/by-id/...")
    elif drbd_disk == host["os_disk"]:
        problems.add(name, "kickstack_drbd_disk", f"{drbd_disk} is also the OS disk: the installer would wipe it")
    elif host["disks"] and drbd_disk not in host["disks"]:
        problems.add(name, "kickstack_drbd_disk",
                     f"backing device {drbd_disk} is missing from kickstack_disks ({', '.join(host['disks'])})")
    host["drbd_disk"] = drbd_disk
    force = hv.get("kickstack_drbd_force_create_md", [])
    if force is True:
        force = [drbd_disk] if _is_str(drbd_disk) else []
    elif force is False or force is None:
        force = []
    if not isinstance(force, list) or not all(_is_str(d) for d in force):
        problems.add(name, "kickstack_drbd_force_create_md",
                     "must be a list of this host's disks whose contents may be destroyed (or true for the DRBD disk)")
        force = []
    for disk in force:
        if disk != drbd_disk:
            problems.add(name, "kickstack_drbd_force_create_md",
                         f"{disk} is not this host's DRBD backing device ({drbd_disk})")
    host["drbd_force_create_md"] = force
    peer = hv.get("kickstack_drbd_peer")
    if not _is_str(peer):
        problems.add(name, "kickstack_drbd_peer", "storage nodes come in pairs: name this node's DRBD peer")
    host["drbd_peer"] = peer


def build_model(site_vars: Dict[str, Any], hosts: Dict[str, Dict[str, Any]],
                platforms: Dict[str, Any], required_secrets: Dict[str, List[str]],
                secrets: Any, require_pxe: bool = True) -> Dict[str, Any]:
    """Check the whole inventory and return {'problems': [...], 'site': {...}, 'hosts': {...}}.

    site_vars: the site-wide kickstack_* variables; hosts: inventory_hostname -> its kickstack_*
    variables (values that failed to evaluate are passed as Unresolvable); required_secrets:
    profile -> secret names needed when a host of that profile exists; secrets: the site's
    kickstack_secrets mapping (None when missing). Secret values never enter the model.
    """
    problems = Problems()
    site = _check_site(site_vars, platforms, problems)
    model_hosts: Dict[str, Dict[str, Any]] = {}
    seen_mac: Dict[str, str] = {}
    seen_ip: Dict[str, str] = {}
    seen_name: Dict[str, str] = {}

    for name, hv in hosts.items():
        for field, value in hv.items():
            if isinstance(value, Unresolvable):
                problems.add(name, field, f"cannot be evaluated: {value.reason}")
        hv = {k: v for k, v in hv.items() if not isinstance(v, Unresolvable)}

        profile = hv.get("kickstack_profile")
        if profile is None:
            problems.add(name, "kickstack_profile",
                         f"missing: put the host in one of the groups {', '.join(PROFILES)} or set it")
        elif profile not in PROFILES:
            problems.add(name, "kickstack_profile", f"unknown profile {profile!r} (known: {', '.join(PROFILES)})")

        hostname = str(hv.get("kickstack_hostname") or name)
        if not LABEL_RE.match(hostname):
            problems.add(name, "kickstack_hostname" if hv.get("kickstack_hostname") else "inventory_hostname",
                         f"{hostname!r} is not a valid host name (lowercase letters, digits, '-'; max 63)")
        elif hostname in seen_name:
            problems.add(name, "kickstack_hostname", f"host name {hostname} is already used by {seen_name[hostname]}")
        else:
            seen_name[hostname] = name

        os_name = hv.get("kickstack_os", site["os_default"])
        platform = platforms.get(os_name) if isinstance(os_name, str) else None
        if platform is None:
            problems.add(name, "kickstack_os",
                         f"unsupported OS release {os_name!r} (supported: {', '.join(sorted(platforms))})")

        interfaces = _interfaces(name, hv, site, problems)
        for index, nic in enumerate(interfaces):
            if MAC_RE.match(nic["mac"]):
                if nic["mac"] in seen_mac:
                    problems.add(name, f"kickstack_interfaces[{index}].mac",
                                 f"{nic['mac']} is already used by {seen_mac[nic['mac']]}")
                else:
                    seen_mac[nic["mac"]] = name
            if nic["ip"]:
                if nic["ip"] in seen_ip:
                    problems.add(name, f"kickstack_interfaces[{index}].ip",
                                 f"{nic['ip']} is already used by {seen_ip[nic['ip']]}")
                else:
                    seen_ip[nic["ip"]] = name
        boot_nic = next((n for n in interfaces if n["network"] == site["boot_network"]), None)
        if interfaces and boot_nic is None:
            problems.add(name, "kickstack_interfaces",
                         f"no interface on the boot network {site['boot_network']!r}")

        host: Dict[str, Any] = {
            "name": name, "hostname": hostname,
            "fqdn": f"{hostname}.{site['domain']}" if site["domain"] else hostname,
            "profile": profile, "os": os_name, "platform": platform,
            "interfaces": interfaces, "boot_nic": boot_nic,
            "netboot": hv.get("kickstack_netboot", True),
        }
        if not isinstance(host["netboot"], bool):
            problems.add(name, "kickstack_netboot", f"{host['netboot']!r} is not true or false")
        host.update(_disks(name, hv, profile or "", problems))
        if profile == "storage":
            _check_storage(name, hv, host, problems)
        model_hosts[name] = host

    _check_roles(model_hosts, site, problems, require_pxe)
    _check_pairs(model_hosts, problems)
    _check_fencing(hosts, model_hosts, problems)
    _check_replication(model_hosts, site, site_vars, problems)
    _check_secrets(model_hosts, site, required_secrets, secrets, problems)

    if not problems:
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
        if name and hosts[name]["boot_nic"] and hosts[name]["boot_nic"]["ip"]:
            site[f"{role}_ip"] = hosts[name]["boot_nic"]["ip"]
        else:
            site[f"{role}_ip"] = None


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


FENCE_AGENT_RE = re.compile(r"^fence_[a-z0-9_]+$")
CIB_ID_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]*$")


def _check_fencing(raw: Dict[str, Dict[str, Any]], hosts: Dict[str, Dict[str, Any]], problems: Problems) -> None:
    """Each storage node's cluster gets its fence devices from kickstack_fence_devices.

    Checked on every storage node (the list is usually group_vars/storage): well-formed
    devices for known storage nodes, and one for each node of the pair unless the test-lab
    switch kickstack_cluster_allow_no_fencing is set. Device params (passwords) are not kept.
    """
    for name, host in hosts.items():
        if host["profile"] != "storage":
            continue
        hv = raw.get(name, {})
        devices = hv.get("kickstack_fence_devices", [])
        allow = hv.get("kickstack_cluster_allow_no_fencing", False)
        if isinstance(devices, Unresolvable) or isinstance(allow, Unresolvable):
            continue  # already reported as "cannot be evaluated"
        if not isinstance(allow, bool):
            problems.add(name, "kickstack_cluster_allow_no_fencing", f"{allow!r} is not true or false")
        if not isinstance(devices, list):
            problems.add(name, "kickstack_fence_devices", "must be a list of {name, agent, host, params}")
            continue
        fenced, seen = set(), set()
        for i, dev in enumerate(devices):
            where = f"kickstack_fence_devices[{i}]"
            if not isinstance(dev, dict):
                problems.add(name, where, "must be a mapping with name, agent, host and params")
                continue
            dev_name, agent, target = dev.get("name"), dev.get("agent"), dev.get("host")
            if not _is_str(dev_name) or not CIB_ID_RE.match(dev_name):
                problems.add(name, f"{where}.name", f"{dev_name!r} is not a pacemaker id like fence-stor01")
            elif dev_name in seen:
                problems.add(name, f"{where}.name", f"{dev_name} is defined twice")
            else:
                seen.add(dev_name)
            if not _is_str(agent) or not FENCE_AGENT_RE.match(agent):
                problems.add(name, f"{where}.agent", f"{agent!r} is not a fence agent name like fence_ipmilan")
            if not _is_str(target) or target not in hosts:
                problems.add(name, f"{where}.host", f"{target!r} is not a host of the inventory")
            elif hosts[target]["profile"] != "storage":
                problems.add(name, f"{where}.host", f"{target} is not a storage node: only the storage pairs are clustered")
            else:
                fenced.add(target)
            params = dev.get("params", {})
            if not isinstance(params, dict) or not all(_is_str(k) for k in params):
                problems.add(name, f"{where}.params", "must be a mapping of agent parameters")
            elif any(isinstance(v, (dict, list)) for v in params.values()):
                problems.add(name, f"{where}.params", "agent parameters must be plain values")
        pair = [name] + ([host["drbd_peer"]] if _is_str(host.get("drbd_peer")) else [])
        missing = [n for n in pair if n not in fenced]
        if missing and allow is not True:
            problems.add(name, "kickstack_fence_devices",
                         f"no fence device for {', '.join(missing)}: the pair's cluster must be able to fence "
                         "each node (set kickstack_cluster_allow_no_fencing: true only in a test lab)")


DRBD_FENCING = ("resource-and-stonith", "resource-only", "none")
DRBD_VERSIONS = ("8.4", "9")


def _check_replication(hosts: Dict[str, Dict[str, Any]], site: Dict[str, Any], site_vars: Dict[str, Any],
                       problems: Problems) -> None:
    """DRBD pairs replicate on one network, both with an address on it; dual-primary needs fencing.

    The model has one DRBD resource per host (kickstack_drbd_disk), so no disk can serve two
    resources here; the drbd role asserts it again for resources given to it directly.
    """
    storage = [n for n, h in hosts.items() if h["profile"] == "storage"]
    net_name = site_vars.get("kickstack_replication_network", "storage")
    site["replication_network"] = net_name
    version = site_vars.get("kickstack_drbd_version")
    if version is not None and str(version) not in DRBD_VERSIONS:
        problems.add("site", "kickstack_drbd_version", f"{version!r} is not one of {', '.join(DRBD_VERSIONS)}")
    dual = site_vars.get("kickstack_drbd_dual_primary", True)
    fencing = site_vars.get("kickstack_drbd_fencing", "resource-and-stonith")
    allow = site_vars.get("kickstack_drbd_allow_dual_primary_without_fencing", False)
    for field, value in (("kickstack_drbd_dual_primary", dual),
                         ("kickstack_drbd_allow_dual_primary_without_fencing", allow)):
        if not isinstance(value, bool):
            problems.add("site", field, f"{value!r} is not true or false")
    if fencing not in DRBD_FENCING:
        problems.add("site", "kickstack_drbd_fencing", f"{fencing!r} is not one of {', '.join(DRBD_FENCING)}")
    elif storage and dual is True and fencing != "resource-and-stonith" and allow is not True:
        problems.add("site", "kickstack_drbd_fencing",
                     f"dual-primary DRBD (kickstack_drbd_dual_primary: true) with fencing {fencing!r} can corrupt "
                     "data after a split brain: use resource-and-stonith (with the cluster's fencing), or set "
                     "kickstack_drbd_allow_dual_primary_without_fencing: true in a test lab")
    if not storage:
        return
    net = site["networks"].get(net_name) if isinstance(net_name, str) else None
    if net is None:
        problems.add("site", "kickstack_replication_network",
                     f"{net_name!r} is not one of kickstack_networks ({', '.join(sorted(site['networks']))})")
        return
    for name in storage:
        host = hosts[name]
        nic = next((n for n in host["interfaces"] if n["network"] == net_name), None)
        host["replication_ip"] = nic["ip"] if nic else None
        if nic is None:
            problems.add(name, "kickstack_interfaces",
                         f"no interface on the replication network {net_name!r} ({net['cidr']}): DRBD needs one")
        # An address outside the network is reported on the interface itself (_interfaces).
    for name in storage:
        peer = hosts[name].get("drbd_peer")
        if _is_str(peer) and peer in hosts and hosts[peer]["profile"] == "storage":
            if hosts[name].get("replication_ip") and hosts[peer].get("replication_ip") is None:
                problems.add(name, "kickstack_drbd_peer",
                             f"peer {peer} has no address on the replication network {net_name!r}")


def _check_secrets(hosts: Dict[str, Dict[str, Any]], site: Dict[str, Any], required: Dict[str, List[str]],
                   secrets: Any, problems: Problems) -> None:
    site["root_login"] = "locked"
    if secrets is None:
        problems.add("site", "kickstack_secrets",
                     "missing: generate the site's secrets with `make secrets` (or define them in Vault)")
        return
    if isinstance(secrets, Unresolvable) or not isinstance(secrets, dict):
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
        if not (isinstance(root_hash, str) and re.match(r"^\$6\$(rounds=\d+\$)?[./0-9A-Za-z]{1,16}\$[./0-9A-Za-z]{86}$", root_hash)):
            problems.add("site", "kickstack_secrets.root_password_hash", "is not a SHA-512 crypt hash ($6$...)")
        else:
            site["root_login"] = "password"


class Unresolvable:
    """Marks an inventory value that Ansible could not evaluate (undefined variable, bad template)."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
