"""The PXE boot server, proven by real PXE clients on a private network.

Then playbooks/reinstall.yml: a disk-first client behind the harness' Redfish BMC
(tests/harness/bmc.py) boots its local disk, the playbook re-arms it and has its BMC boot it
from the network once, and it installs again under a new token.

A systemd-nspawn container pxe01 (10.60.0.5, tests/harness/nspawn.py) on a lab bridge of its
own gets playbooks/pxe_server.yml (the lab inventory, only pxe01 reachable). The installer is
a stand-in (scripts/build-pxe-standin: Debian's kernel + a busybox initramfs that prints its
command line, takes a DHCP lease, fetches inst.ks= and prints the kickstart's header). QEMU
(TCG) clients on a tap in the bridge's namespace then PXE-boot from it: ctl01's MAC with BIOS
(SeaBIOS + iPXE) and with UEFI (OVMF + Debian's signed shim/GRUB), and an unknown MAC that
must get nothing. Evidence: dnsmasq's log-dhcp journal in the container and the clients'
serial consoles. Every qemu is killed and the lab torn down, also on failure.

Host packages: scripts/install-pxe-test-deps.
"""

import base64
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from conftest import REPO, copy_lab, read_secrets, run, run_playbook

sys.path.insert(0, str(REPO / "tests" / "harness"))
import bmc as bmc_harness  # noqa: E402
import common  # noqa: E402
import nspawn  # noqa: E402

LAB = "pxe"
PXE_IP = "10.60.0.5"
CTL_MAC = "52:54:00:60:00:11"
CTL_IP = "10.60.0.11"
UNKNOWN_MAC = "52:54:00:60:00:99"
KS_URL_RE = re.compile(rf"http://{re.escape(PXE_IP)}/kickstack/build/([0-9a-f]{{32}})/ctl01\.ks")
OTHER_IP = "10.60.0.77"  # another address of the lab, on the bridge's namespace
MIRROR_IN_NODE = "/srv/standin-mirror"
PACKAGES = ["dnsmasq", "nginx", "pxelinux", "syslinux-common", "grub-efi-amd64-signed", "shim-signed",
            "python3-apt"]  # python3-apt: the package module on Debian
BOOT_TIMEOUT = int(os.environ.get("KICKSTACK_PXE_BOOT_TIMEOUT", "300"))  # per client, TCG; ~40-80 s idle

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root: network namespaces, systemd-nspawn, taps"),
    pytest.mark.skipif(not shutil.which(common.QEMU) or not common.OVMF_CODE.exists()
                       or not Path("/usr/lib/ipxe/qemu/efi-e1000.rom").exists()
                       or not Path("/bin/busybox").exists(),
                       reason="needs qemu-system-x86, ovmf, ipxe-qemu, busybox-static "
                              "(scripts/install-pxe-test-deps)"),
]


def _local_disk_mbr():
    """A boot sector standing in for an installed system: prints KSDISK on COM1 and halts."""
    msg = b"KSDISK local disk booted\r\n\0"
    code = bytes([0xFA, 0xFC, 0x31, 0xC0, 0x8E, 0xD8,  # cli; cld; xor ax,ax; mov ds,ax
                  0xBA, 0xF8, 0x03,                    # mov dx,0x3f8
                  0xBE, 0x17, 0x7C,                    # mov si,0x7c17 (msg)
                  0xAC, 0x84, 0xC0, 0x74, 0x03,        # next: lodsb; test al,al; jz halt
                  0xEE, 0xEB, 0xF8,                    # out dx,al; jmp next
                  0xF4, 0xEB, 0xFD])                   # halt: hlt; jmp halt
    assert len(code) == 0x17
    sector = code + msg
    return sector + bytes(510 - len(sector)) + b"\x55\xaa"


LOCAL_DISK_MBR = _local_disk_mbr()


def timed(times, name):
    class _T:
        def __enter__(self):
            self.t0 = time.monotonic()

        def __exit__(self, *exc):
            times[name] = round(time.monotonic() - self.t0, 1)
    return _T()


def standin_mirror(base: Path) -> Path:
    """A mirror root holding <tree>/images/pxeboot/{vmlinuz,initrd.img} for every OS release."""
    standin = Path(common.build_output([REPO / "scripts" / "build-pxe-standin"]))
    mirror = base / "mirror"
    (mirror / "_standin").mkdir(parents=True)
    for f in ("vmlinuz", "initrd.img"):
        shutil.copy(standin / f, mirror / "_standin" / f)
    platforms = yaml.safe_load((REPO / "roles/preflight/vars/main.yml").read_text())["__preflight_platforms"]
    for plat in platforms.values():
        d = mirror / plat["tree"] / "images" / "pxeboot"
        d.mkdir(parents=True, exist_ok=True)
        for f in ("vmlinuz", "initrd.img"):
            (d / f).symlink_to(os.path.relpath(mirror / "_standin" / f, d))
    return mirror


class Client:
    """One QEMU PXE client on a tap in the lab bridge's namespace."""

    def __init__(self, name, mac, firmware, workdir, br_ns, bmc_node_dir=None):
        """bmc_node_dir: a disk-first machine behind the harness BMC (tests/harness/bmc.py): its
        disk (bootindex 0) prints KSDISK and halts, its NIC has no boot index, QEMU's QMP
        socket and pid file are where the BMC looks for them, and a reset reboots (no
        -no-reboot) so that the BMC can power-cycle it."""
        self.name, self.mac, self.firmware, self.br_ns = name, mac, firmware, br_ns
        self.console = workdir / f"{name}.console.log"
        self.tap = f"tq{name[:10]}"
        run(["ip", "-n", br_ns, "tuntap", "add", "dev", self.tap, "mode", "tap"], check=True)
        run(["ip", "-n", br_ns, "link", "set", self.tap, "master", "br0", "up"], check=True)
        nic = {"netdev": f"tap,ifname={self.tap},script=no,downscript=no", "model": "e1000", "mac": mac}
        qemu = {"memory": 512, "serial": self.console, "nics": [nic], "firmware": firmware}
        if firmware == "uefi":
            qemu["uefi_vars"] = workdir / f"{name}.OVMF_VARS.fd"
            shutil.copy(common.OVMF_VARS, qemu["uefi_vars"])
        if bmc_node_dir is None:
            qemu.update(boot="n", extra=["-no-reboot"])
        else:
            disk = workdir / f"{name}.disk.img"
            disk.write_bytes(LOCAL_DISK_MBR + bytes(1024 * 1024 - len(LOCAL_DISK_MBR)))
            qemu.update(disks=[{"file": disk, "model": "ide-hd", "id": "disk0", "bootindex": 0}],
                        qmp=bmc_node_dir / "qmp.sock", pidfile=bmc_node_dir / "qemu.pid")
        self.proc = common.spawn(["nsenter", f"--net=/run/netns/{br_ns}", "--", *common.qemu_argv(**qemu)],
                                 workdir / f"{name}.qemu.err")

    def text(self):
        return self.console.read_text(errors="replace") if self.console.exists() else ""

    def finish(self, timeout):
        """Let the client run until it ends (-no-reboot) or timeout passes, then kill it."""
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            pass
        self.kill()

    def kill(self):
        common.stop([self.proc.pid], marker=str(self.console), grace=0)


def journal(state_dir, unit, since):
    return node_sh(state_dir, "journalctl", "-u", unit, "--no-pager", "-o", "cat", "--since", f"'{since}'").stdout


def journal_now():
    """A --since for the node's journal (the container shares the host's clock)."""
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(time.time() - 1))


def node_sh(state_dir, *cmd):
    return common.run(common.ssh_cmd(state_dir, PXE_IP, *cmd), check=False, timeout=60)


def changed_count(out):
    m = re.findall(r"^pxe01\s*:.*?changed=(\d+).*?failed=(\d+)", out, re.M)
    assert m, out[-2000:]
    return int(m[-1][0]), int(m[-1][1])


def test_pxe_boot(tmp_path):
    times = {}
    t_all = time.monotonic()
    mirror = standin_mirror(tmp_path)
    spec = {"lab": LAB, "subnet": "10.60.0.0/24", "boot_timeout": 120,
            "nodes": [{"name": "pxe01", "ip": PXE_IP, "mac": "52:54:00:60:00:05"}],
            "packages": PACKAGES,
            # DHCP needs CAP_NET_ADMIN (dnsmasq refuses to start without it); the node has
            # a network namespace of its own, so this touches nothing outside the lab.
            "nspawn_args": [f"--bind-ro={mirror}:{MIRROR_IN_NODE}", "--capability=CAP_NET_ADMIN"]}
    clients = []
    procs = []
    try:
        with timed(times, "lab_up"):
            rec = nspawn.up(spec)
        state = Path(rec["state_dir"])
        br_ns = rec["bridge_netns"]

        # The lab inventory, with only pxe01 reachable (over the harness's ssh).
        inv = copy_lab(tmp_path / "inventory")
        with open(inv / "host_vars" / "pxe01.yml", "a") as f:
            f.write(yaml.safe_dump({"ansible_host": PXE_IP, **common.ansible_ssh_vars(rec["ssh_key"])}))
        # ctl01's BMC: the harness' Redfish BMC on the controller's loopback (started below).
        bmc_port = common.free_port()
        with open(inv / "host_vars" / "ctl01.yml", "a") as f:
            f.write(yaml.safe_dump({"kickstack_bmc": {
                "protocol": "redfish", "address": "127.0.0.1", "port": bmc_port, "username": "kickstack",
                "password": "{{ kickstack_secrets.ipmi_password }}", "systems_uri": "/redfish/v1/Systems/ctl01",
                "verify_tls": False}}, sort_keys=False))
        build = tmp_path / "pxe"
        extra = ["-e", "pxe_server_log_dhcp=true",
                 "-e", f"pxe_server_image_base_url=file://{MIRROR_IN_NODE}"]
        with timed(times, "converge"):
            r = run_playbook("pxe_server.yml", inv, build, *extra)
        assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-2000:]
        assert "http://10.60.0.5/kickstack/build/@KICKSTACK_TOKEN@/ctl01.ks" in (build / "index.txt").read_text()
        with timed(times, "idempotence"):
            r = run_playbook("pxe_server.yml", inv, build, *extra)
        assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-2000:]
        assert changed_count(r.stdout) == (0, 0), r.stdout[-4000:]
        if os.environ.get("KICKSTACK_PXE_CHECK_MODE"):  # +1 converge (~40-75 s here): opt-in
            with timed(times, "check_mode"):
                r = run_playbook("pxe_server.yml", inv, build, *extra, "--check", "--diff")
            assert r.returncode == 0 and changed_count(r.stdout) == (0, 0), r.stdout[-4000:]

        # Nothing of the site in the TFTP root but boot entries; state and kickstarts root only.
        assert node_sh(state, "ls", "/srv/kickstack/pxe/index.txt", "/srv/kickstack/pxe/ks").returncode != 0
        st = node_sh(state, "stat", "-c", "'%a %U'", "/var/lib/kickstack/build/ks/ctl01.ks",
                     "/var/lib/kickstack/build/hosts/ctl01.json").stdout.split()
        assert st == ["600", "root", "600", "root"], st
        assert node_sh(state, "systemctl", "is-active", "dnsmasq", "nginx", "kickstack-build.socket"
                       ).stdout.split() == ["active"] * 3
        listen = node_sh(state, "grep", "-h", "listen", "/etc/nginx/conf.d/kickstack.conf").stdout
        assert listen.split() == ["listen", f"{PXE_IP}:80;"], listen
        # ... and nginx listens there only: no default site on every address.
        sockets = node_sh(state, "ss", "-Hltnp").stdout
        nginx = sorted({line.split()[3] for line in sockets.splitlines() if '"nginx"' in line})
        assert nginx == [f"{PXE_IP}:80"], sockets
        status = node_sh(state, "/usr/local/sbin/kickstack-build", "status").stdout
        assert re.search(r"^ctl01\s+build\s", status, re.M), status
        token1 = build_token(state)
        assert token1 not in r.stdout + status
        run(["ip", "-n", br_ns, "addr", "add", f"{OTHER_IP}/24", "dev", "br0"], check=True)
        ks = f"http://{PXE_IP}/kickstack/build/{{}}/ctl01.ks"
        # A valid token from another address: 403; a wrong token: 404.
        assert http_code(br_ns, ks.format(token1)) == "403"
        assert http_code(br_ns, ks.format("0" * 32)) == "404"

        since = journal_now()
        workdir = tmp_path / "clients"
        workdir.mkdir()

        def client(name, mac=CTL_MAC, firmware="bios", **kw):
            clients.append(Client(name, mac, firmware, workdir, br_ns, **kw))
            return clients[-1]

        # BIOS: SeaBIOS + iPXE -> pxelinux -> kernel + initrd -> kickstart over HTTP -> built.
        with timed(times, "bios_client"):
            bios = client("bios")
            bios.finish(BOOT_TIMEOUT)
        log = journal(state, "dnsmasq", since)
        check_client(bios.text(), log, "bios", token1)
        assert re.search(r"sent \S*/pxelinux\.0 to " + re.escape(CTL_IP), log), log[-3000:]
        assert re.search(r"sent \S*/pxelinux\.cfg/01-52-54-00-60-00-11 to " + re.escape(CTL_IP), log), log[-3000:]
        # Built: token revoked (replay -> 404), kickstart unpublished, entries boot the local disk.
        assert http_code(br_ns, ks.format(token1)) == "404"
        assert re.search(r"^ctl01\s+built\s.*built .* from 10\.60\.0\.11$",
                         node_sh(state, "/usr/local/sbin/kickstack-build", "status").stdout, re.M)
        assert node_sh(state, "ls", "/var/lib/kickstack/build/ks/ctl01.ks").returncode != 0
        for entry in ("pxelinux.cfg/01-52-54-00-60-00-11", "grub.cfg-01-52-54-00-60-00-11"):
            text = node_sh(state, "cat", f"/srv/kickstack/pxe/{entry}").stdout
            assert "local" in text and "vmlinuz" not in text and "inst.ks" not in text, (entry, text)

        # A re-run of pxe_server.yml leaves the built host alone.
        with timed(times, "rerun_after_built"):
            r = run_playbook("pxe_server.yml", inv, build, *extra)
        assert r.returncode == 0 and changed_count(r.stdout) == (0, 0), r.stdout[-4000:]

        # The next boot (and, at the same time, an unknown machine): local disk, no kernel, no kickstart.
        since = journal_now()
        with timed(times, "local_boot_and_unknown_clients"):
            again = client("again")
            unknown = client("unknown", UNKNOWN_MAC)
            entry_sent = rf"sent \S*/pxelinux\.cfg/01-52-54-00-60-00-11 to {re.escape(CTL_IP)}"
            common.wait_until(lambda: re.search(entry_sent, journal(state, "dnsmasq", since)), BOOT_TIMEOUT, 5)
            time.sleep(15)  # time enough to fetch a kernel, were it offered one
            again.kill()
            unknown.kill()
        log = journal(state, "dnsmasq", since)
        assert re.search(entry_sent, log), log[-3000:]
        assert "vmlinuz" not in log and "initrd" not in log, log[-3000:]
        assert "ctl01 ks" not in journal(state, "kickstack-build", since)
        assert "KSTEST" not in again.text()
        # The unknown MAC: seen and ignored, never offered an address; its console stays silent.
        assert re.search(rf"DHCPDISCOVER\(eth0\) {UNKNOWN_MAC} ignored", log), log[-3000:]
        assert not re.search(rf"DHCP(OFFER|ACK)\(eth0\) \S+ {UNKNOWN_MAC}", log), log[-3000:]
        assert "KSTEST" not in unknown.text()

        # Reinstall through the BMC. A disk-first machine with ctl01's MAC boots its local disk
        # (KSDISK); reinstall.yml (ctl01 is the controller: forced) re-arms it on the boot server
        # and has the BMC boot it from the network once; it installs under a new token.
        bmc_dir = tmp_path / "bmc"
        (bmc_dir / "ctl01").mkdir(parents=True)
        (bmc_dir / "state.json").write_text(json.dumps({"nodes": [{"name": "ctl01"}]}))
        bmc_password = read_secrets(inv)["ipmi_password"]
        bmc_harness.configure(bmc_dir, "kickstack", bmc_password, bmc_port)
        bmc_proc = common.spawn([sys.executable, REPO / "tests" / "harness" / "bmc.py", "serve",
                                 "--state-dir", bmc_dir], bmc_dir / "bmc.out")
        procs.append(bmc_proc)
        bmc_harness.wait_listening(bmc_port, bmc_proc.pid)
        force = ["--limit", "ctl01", "-e", "kickstack_reinstall_force=ctl01"]
        with timed(times, "reinstall_disk_boot"):
            reinst = client("reinst", bmc_node_dir=bmc_dir / "ctl01")
            common.wait_until(lambda: "KSDISK" in reinst.text(), BOOT_TIMEOUT, 1)
        assert "KSDISK" in reinst.text(), reinst.text()[-2000:]
        # --check re-arms nothing and touches no BMC.
        with timed(times, "reinstall_check_mode"):
            r = run_playbook("reinstall.yml", inv, build, *force, "--check")
        assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-2000:]
        assert re.search(r"^ctl01\s+built\s", node_sh(state, "/usr/local/sbin/kickstack-build", "status").stdout, re.M)
        assert not [e for e in bmc_log(bmc_dir) if e["method"] not in ("GET", "HEAD")], bmc_log(bmc_dir)
        since = journal_now()
        with timed(times, "reinstall_playbook"):
            r = run_playbook("reinstall.yml", inv, build, *force, "-vvv")
        out = r.stdout + r.stderr
        assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-2000:]
        for form in (bmc_password, base64.b64encode(f"kickstack:{bmc_password}".encode()).decode()):
            assert form not in out, "the BMC password shows in reinstall.yml's -vvv output"
        token2 = build_token(state)
        assert token2 != token1 and token2 not in out
        with timed(times, "reinstall_client"):
            reinst.finish(BOOT_TIMEOUT)
        console = reinst.text()
        check_client(console, journal(state, "dnsmasq", since), "reinstall", token2)
        assert console.index("KSDISK") < console.index("KSTEST"), console[-3000:]
        changes = [(e["method"], e.get("boot"), e.get("reset_type"), e["status"]) for e in bmc_log(bmc_dir)
                   if e["method"] in ("PATCH", "POST")]
        assert changes == [("PATCH", "Pxe/Once", None, 204), ("POST", None, "ForceRestart", 204)], changes
        assert bmc_harness.boot_override(bmc_dir, "ctl01") == {"target": "None", "enabled": "Disabled"}
        assert re.search(r"^ctl01\s+built\s", node_sh(state, "/usr/local/sbin/kickstack-build", "status").stdout, re.M)

        # Back into build mode (a fresh token), then UEFI (OVMF, shim -> GRUB) installs again.
        assert node_sh(state, "/usr/local/sbin/kickstack-build", "arm", "ctl01").returncode == 0
        token3 = build_token(state)
        assert token3 not in (token1, token2)
        since = journal_now()
        with timed(times, "uefi_client"):
            uefi = client("uefi", firmware="uefi")
            uefi.finish(BOOT_TIMEOUT)
        log = journal(state, "dnsmasq", since)
        check_client(uefi.text(), log, "uefi", token3)
        for f in ("shimx64.efi", "grubx64.efi", "grub.cfg-01-52-54-00-60-00-11"):
            assert re.search(rf"sent \S*/{re.escape(f)} to " + re.escape(CTL_IP), log), (f, log[-3000:])

        # Expiry: the same request, with a valid token from another address, is 403 before the
        # expiry and 404 after it (the token is checked first). (Taking the host's own address on
        # the bridge instead would race pxe01's ARP cache entry for the client just killed.)
        assert node_sh(state, "/usr/local/sbin/kickstack-build", "arm", "ctl01", "--ttl", "4").returncode == 0
        token4 = build_token(state)
        assert http_code(br_ns, ks.format(token4)) == "403"
        time.sleep(5)
        assert http_code(br_ns, ks.format(token4)) == "404"
        assert re.search(r"^ctl01\s+expired\s", node_sh(state, "/usr/local/sbin/kickstack-build", "status").stdout, re.M)
    finally:
        for c in clients:
            c.kill()
        common.stop([p.pid for p in procs], marker=str(tmp_path))
        if not os.environ.get("KICKSTACK_KEEP"):
            nspawn.down(spec, quiet=True)
        times["total"] = round(time.monotonic() - t_all, 1)
        print(f"test_pxe_boot times (s): {times}")


def build_token(state_dir):
    """The host's current token, read from the boot server's state (test only: never printed)."""
    return json.loads(node_sh(state_dir, "cat", "/var/lib/kickstack/build/hosts/ctl01.json").stdout)["token"]


def bmc_log(bmc_dir):
    path = bmc_dir / "bmc.log"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def http_code(br_ns, url, source=OTHER_IP):
    return common.run(["ip", "netns", "exec", br_ns, "curl", "-s", "-o", "/dev/null", "-w", "%{http_code}",
                       "--interface", source, "--max-time", "20", url], check=False, timeout=60).stdout.strip()


def check_client(console, log, firmware, token):
    where = f"{firmware}: console:\n{console[-3000:]}\ndnsmasq:\n{log[-3000:]}"
    # DHCP: the reserved address for ctl01's MAC (firmware and the installer's udhcpc).
    assert re.search(rf"DHCPACK\(eth0\) {re.escape(CTL_IP)} {CTL_MAC} ctl01", log), where
    assert f"KSTEST dhcp-bound ip={CTL_IP} server={PXE_IP}" in console, where
    # TFTP: the kernel and initrd of ctl01's OS.
    assert re.search(rf"sent \S*/images/fedora-45/vmlinuz to {re.escape(CTL_IP)}", log), where
    assert re.search(rf"sent \S*/images/fedora-45/initrd.img to {re.escape(CTL_IP)}", log), where
    # The kernel booted with ctl01's own kickstart URL, and the GET from the client returned it.
    cmdline = re.search(r"KSTEST cmdline: (.*)", console)
    urls = [a[len("inst.ks="):] for a in cmdline.group(1).split() if a.startswith("inst.ks=")] if cmdline else []
    assert len(urls) == 1 and KS_URL_RE.fullmatch(urls[0]) and KS_URL_RE.fullmatch(urls[0]).group(1) == token, where
    assert f"BOOTIF=01-{CTL_MAC.replace(':', '-')}" in cmdline.group(1), where
    assert "KSTEST ks-header: # Kickstart for ctl01.lab.kickstack.test: profile controller" in console, where
    # The stand-in installer's "built" callback was accepted.
    assert "KSTEST built-status: HTTP/1.1 200 OK" in console, where
