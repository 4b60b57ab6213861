"""Smoke checks of the storage VMs: the kernel and packages the storage stack relies on."""
import os
from pathlib import Path

import yaml

SCENARIO = Path(os.environ.get("MOLECULE_SCENARIO_DIRECTORY", Path(__file__).resolve().parents[1]))
PLATFORMS = {p["name"]: p for p in yaml.safe_load((SCENARIO / "molecule.yml").read_text())["platforms"]}


def _bytes(size):
    units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
    return int(size[:-1]) * units[size[-1]] if size[-1] in units else int(size)


def _me(host):
    return host.backend.get_hostname()


def test_drbd_module_is_8_4_11(host):
    with host.sudo():
        host.run_expect([0], "modprobe drbd")
    assert host.file("/proc/drbd").content_string.startswith("version: 8.4.11")


def test_peer_reachable_over_private_link(host):
    me = _me(host)
    own_ip = PLATFORMS[me]["link_ip"].split("/")[0]
    assert f" {own_ip}/" in host.check_output("ip -br -4 addr show")
    for name, platform in PLATFORMS.items():
        if name != me:
            peer_ip = platform["link_ip"].split("/")[0]
            host.run_expect([0], f"ping -c 2 -W 5 {peer_ip}")


def test_data_disk_present(host):
    for disk in PLATFORMS[_me(host)]["disks"]:
        dev = host.file(f"/dev/disk/by-id/virtio-{disk['serial']}")
        assert dev.exists and dev.is_symlink
        host.run_expect([0], f"test -b {dev.linked_to}")
        size = int(host.check_output(f"blockdev --getsize64 {dev.linked_to}"))
        assert size == _bytes(disk["size"])


def test_cluster_storage_binaries_installed(host):
    for binary in ("lvm", "lvmlockd", "drbdadm", "corosync", "pacemakerd", "dlm_controld", "pcs"):
        assert host.exists(binary), binary
