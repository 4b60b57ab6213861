"""The systemd-nspawn lab harness (tests/harness/nspawn.py) end to end: a 2-node lab
boots systemd, answers ssh, routes across its bridge, and `down` leaves nothing behind.

Needs root (namespaces, cgroups, nspawn). A cold rootfs build (scripts/build-rootfs)
takes ~75 s once; with the cached rootfs the whole module runs in a few seconds."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import common  # noqa: E402
import nspawn  # noqa: E402

pytestmark = [
    pytest.mark.skipif(not sys.platform.startswith("linux"), reason="needs Linux"),
    pytest.mark.skipif(os.geteuid() != 0,
                       reason="needs root: network namespaces, cgroups and systemd-nspawn"),
]

SPEC = {
    "lab": "pytest-harness",
    "subnet": "10.62.0.0/24",
    "nodes": [{"name": "nodea", "ip": "10.62.0.11"},
              {"name": "nodeb", "ip": "10.62.0.12", "mac": "02:00:0a:3e:00:0c"}],
}


@pytest.fixture(scope="module")
def lab():
    spec = dict(SPEC, rootfs=common.build_output([nspawn.BUILD_ROOTFS]))
    rec = nspawn.up(spec)
    yield spec, rec
    nspawn.down(spec, quiet=True)


def ssh(rec: dict, node: str, *cmd: str) -> subprocess.CompletedProcess:
    ip = rec["nodes"][node]["ip"]
    return common.run(common.ssh_cmd(rec["state_dir"], ip, *cmd), check=False, timeout=30)


def test_systemd_running(lab):
    spec, rec = lab
    st = nspawn.status(spec)
    for node in ("nodea", "nodeb"):
        assert st[node]["running"] and st[node]["ssh"], st[node]
        assert st[node]["systemd"] in ("running", "degraded"), st[node]
        assert ssh(rec, node, "cat", "/proc/1/comm").stdout.strip() == "systemd"


def test_ssh_hostname_and_network(lab):
    _, rec = lab
    for node in ("nodea", "nodeb"):
        p = ssh(rec, node, "hostname; cat /sys/class/net/eth0/address; getent hosts " + node)
        assert p.returncode == 0, p.stderr
        hostname, mac, hosts = p.stdout.splitlines()
        assert hostname == node
        # sysfs shows the node's own interface, not the host's
        assert mac == rec["nodes"][node]["mac"]
        assert hosts.split()[0] == rec["nodes"][node]["ip"]


def test_ping_across_bridge(lab):
    _, rec = lab
    p = ssh(rec, "nodea", "ping", "-c", "1", "-W", "2", rec["nodes"]["nodeb"]["ip"])
    assert p.returncode == 0, p.stdout + p.stderr
    p = ssh(rec, "nodeb", "ping", "-c", "1", "-W", "2", "nodea")
    assert p.returncode == 0, p.stdout + p.stderr


def test_inventory(lab):
    _, rec = lab
    inv = Path(rec["inventory"]).read_text()
    for node in ("nodea", "nodeb"):
        assert f'ansible_host: "{rec["nodes"][node]["ip"]}"' in inv
    assert 'ansible_python_interpreter: "/usr/bin/python3"' in inv
    assert Path(rec["ssh_key"]).exists()


def test_down_leaves_nothing(lab):
    spec, rec = lab
    pids = [p for n in rec["nodes"].values() for p in (n["launcher"], n["leader"])]
    nspawn.down(spec)
    lab_name = spec["lab"]
    netns = os.listdir("/run/netns") if os.path.isdir("/run/netns") else []
    assert not [ns for ns in netns if ns.startswith(f"ks-{lab_name}-")]
    assert not Path("/sys/class/net", rec["host_if"]).exists()
    assert not [p for p in pids if nspawn.pid_alive(p)]  # zombies count as gone
    assert not _processes_mentioning(rec["state_dir"])
    for root in nspawn.cgroup_roots():
        assert not (root / nspawn.CGROUP_BASE / lab_name).exists()
    assert not Path(rec["state_dir"]).exists()
    nspawn.down(spec)  # a second time is fine


def _processes_mentioning(text: str) -> list[str]:
    return [f"{pid}: {b' '.join(argv).decode()}" for pid, argv in common.processes().items()
            if text.encode() in b" ".join(argv) and nspawn.pid_alive(pid)]
