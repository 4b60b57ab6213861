"""Standalone delivery (kickstack_delivery: standalone): the bundle the render makes per host, and
the kickstart that fetches it. The kickstarts themselves go through ksvalidator and shellcheck
with the others (tests/test_render.py, the standalone_render fixture); here: what a bundle holds,
which secrets, that it is byte-identical on a re-run, and that it is enough on its own for
ansible-playbook to load the host's plays."""

import hashlib
import io
import os
import re
import shutil
import stat
import subprocess
import sys
import tarfile

import pytest
import yaml
from conftest import REPO, STANDALONE_HOSTS, VENV_BIN, read_secrets, run, run_playbook, tool_env

PREFLIGHT = yaml.safe_load((REPO / "roles" / "preflight" / "vars" / "main.yml").read_text())
REQUIRED = PREFLIGHT["__preflight_required_secrets"]
NOT_FOR_COMPUTE = ("corosync_authkey", "drbd_shared_secret", "keystone_admin_password")


def bundle_path(render, host):
    return render.build / "ks" / f"{host}.bundle.tgz"


def members(render, host):
    with tarfile.open(bundle_path(render, host), "r:gz") as tar:
        return {m.name: (m, tar.extractfile(m).read() if m.isfile() else None) for m in tar.getmembers()}


def host_vars(render, host):
    return yaml.safe_load(members(render, host)["vars/host.yml"][1])


def test_only_standalone_hosts_get_a_private_bundle(standalone_render, lab_render):
    for host in ("ctl01", "cmp01", "cmp02", "stor01", "stor02"):
        path = bundle_path(standalone_render, host)
        if host in STANDALONE_HOSTS:
            assert stat.S_IMODE(path.stat().st_mode) == 0o600, host
        else:
            assert not path.exists(), f"bootstrap host {host} got a bundle"
    assert not list((lab_render.build / "ks").glob("*.bundle.tgz")), "a site without standalone hosts got bundles"


def test_bundle_entries_are_sorted_root_owned_private_and_timeless(standalone_render):
    for host in STANDALONE_HOSTS:
        entries = members(standalone_render, host)
        names = list(entries)
        assert names == sorted(names, key=lambda n: n.split("/")), host
        for name, (info, _data) in entries.items():
            assert (info.uid, info.gid, info.uname, info.gname, info.mtime) == (0, 0, "root", "root", 0), name
            assert info.mode == (0o700 if info.isdir() else 0o600), name
            assert not name.startswith("/") and ".." not in name.split("/"), name
        assert {"ansible.cfg", "local.yml", "vars/host.yml", "vars/depends", "playbooks/vars/model.yml",
                "playbooks/preflight.yml"} <= set(names), host


def roles_of(render, host):
    return {n.split("/")[1] for n in members(render, host) if n.startswith("roles/")}


def test_bundle_holds_its_profiles_plays_and_roles(standalone_render):
    plays = {h: re.findall(r"import_playbook: playbooks/(\S+)", members(standalone_render, h)["local.yml"][1].decode())
             for h in STANDALONE_HOSTS}
    assert plays["ctl01"] == ["common.yml", "infra.yml", "keystone.yml", "glance.yml", "neutron.yml", "nova.yml",
                              "client.yml"]
    assert plays["cmp01"] == ["common.yml", "nova.yml"]
    assert plays["stor01"] == ["common.yml", "storage.yml", "cluster.yml"]
    ctl, cmp, stor = (roles_of(standalone_render, h) for h in STANDALONE_HOSTS)
    assert {"common", "chrony", "mariadb", "rabbitmq", "keystone", "glance", "neutron_server", "nova_common",
            "nova_controller", "openstack_client", "uwsgi_app"} <= ctl
    assert {"common", "chrony", "nova_common", "libvirt", "nova_compute"} <= cmp
    assert not {"mariadb", "rabbitmq", "keystone", "glance", "drbd", "cluster"} & cmp
    assert {"common", "chrony", "drbd", "lvm_shared", "cluster", "clvm"} <= stor
    assert not {"mariadb", "keystone", "nova_compute", "libvirt"} & stor
    # The plays are the checkout's own, byte for byte (one set of plays).
    for host in STANDALONE_HOSTS:
        for name, (_info, data) in members(standalone_render, host).items():
            if name.startswith(("playbooks/", "roles/", "collections/ansible_collections/kickstack/")):
                rel = name.replace("collections/", "collections/", 1)
                assert data is None or data == (REPO / rel).read_bytes(), name


def test_each_bundle_holds_only_the_secrets_its_profile_needs(standalone_render):
    secrets = read_secrets(standalone_render.inventory)
    sliced = {h: host_vars(standalone_render, h)["kickstack_secrets"] for h in STANDALONE_HOSTS}
    for host, profile in zip(STANDALONE_HOSTS, ("controller", "compute", "storage")):
        assert sorted(sliced[host]) == sorted(set(REQUIRED["all"]) | set(REQUIRED[profile])), host
        assert all(sliced[host][k] == secrets[k] for k in sliced[host])
    compute = sliced["cmp01"]
    assert not [k for k in compute if k.startswith("mariadb_")] and not set(NOT_FOR_COMPUTE) & set(compute)
    assert not {"corosync_authkey", "drbd_shared_secret"} & set(sliced["ctl01"])
    assert not [k for k in sliced["stor01"] if k.startswith(("mariadb_", "keystone_", "rabbitmq_"))]
    # Not only the keys: no value of a secret the host does not need appears anywhere in its bundle.
    for host in STANDALONE_HOSTS:
        blob = b"".join(data or b"" for _info, data in members(standalone_render, host).values())
        for name, value in secrets.items():
            if name in sliced[host] or name in ("deploy_ssh_public_key", "ipmi_password"):
                continue
            assert str(value).encode() not in blob, f"{host}'s bundle holds {name}"
    # A storage node fences its pair: its devices carry the pair's BMC passwords, nobody else's bundle does.
    devices = host_vars(standalone_render, "stor01")["kickstack_fence_devices"]
    assert [d["name"] for d in devices] == ["fence-stor01", "fence-stor02"]
    assert all(d["params"]["password"] == secrets["ipmi_password"] for d in devices)
    for host in ("ctl01", "cmp01"):
        blob = b"".join(data or b"" for _info, data in members(standalone_render, host).values())
        assert secrets["ipmi_password"].encode() not in blob, host


def test_bundle_model_slice_is_the_model_and_depends(standalone_render):
    cmp = host_vars(standalone_render, "cmp01")
    assert cmp["kickstack_bundle"] == {"host": "cmp01", "profile": "compute"}
    assert cmp["kickstack_host"]["name"] == "cmp01" and cmp["kickstack_host"]["mgmt_ip"] == "10.60.0.21"
    assert cmp["kickstack_site"]["controller_ip"] == "10.60.0.11"
    assert "hosts_entries" in cmp["kickstack_site"]
    assert members(standalone_render, "cmp01")["vars/depends"][1].decode().split("\n")[:3] == [
        "10.60.0.11 5000 keystone", "10.60.0.11 5672 rabbitmq", "10.60.0.11 8778 placement"]
    assert members(standalone_render, "stor01")["vars/depends"][1] == b"10.60.0.32 22 storage_peer_stor02\n"
    assert members(standalone_render, "ctl01")["vars/depends"][1] == b""
    stor = host_vars(standalone_render, "stor01")["kickstack_host"]
    assert stor["drbd"]["resource"] and stor["cluster"]["fence_device_names"]


def test_bundle_inventory_carries_the_role_variables_the_node_runs_with(standalone_render, tmp_path):
    """A role variable the inventory sets reaches the bundle of a host that runs the role, at
    inventory precedence; not a host that only carries the role's code, nor a non-role variable."""
    inventory = tmp_path / "inventory"
    shutil.copytree(standalone_render.inventory, inventory)
    with open(inventory / "group_vars" / "all" / "zz-test.yml", "w") as handle:
        handle.write("nova_common_pip_find_links: /srv/wheels\nkeystone_pip_find_links: '{{ \"/srv/\" ~ \"ks\" }}'\n"
                     "libvirt_qemu_cgroup_controllers: []\nunrelated_setting: 1\n")
    build = tmp_path / "pxe"
    result = run_playbook("kickstart.yml", inventory, build)
    assert result.returncode == 0, result.stdout[-3000:]

    def node(host):
        with tarfile.open(build / "ks" / f"{host}.bundle.tgz", "r:gz") as tar:
            inv = yaml.safe_load(tar.extractfile("vars/inventory.yml").read())
        profile = {"ctl01": "controller", "cmp01": "compute", "stor01": "storage"}[host]
        return inv["all"]["children"][profile]["hosts"][host]

    ctl, cmp, stor = node("ctl01"), node("cmp01"), node("stor01")
    assert ctl["ansible_connection"] == "local"
    assert ctl["keystone_pip_find_links"] == "/srv/ks" and ctl["nova_common_pip_find_links"] == "/srv/wheels"
    assert cmp["nova_common_pip_find_links"] == "/srv/wheels" and cmp["libvirt_qemu_cgroup_controllers"] == []
    assert "keystone_pip_find_links" not in cmp  # nova.yml carries keystone's code to cmp01, never runs it
    assert not any(key.startswith(("nova_", "keystone_", "unrelated")) for key in stor)


def test_compute_bundle_carries_its_libvirt_certificates_not_the_ca_key(standalone_render):
    """Issued on the operator's machine by the render (the libvirt role's pki.yml, the site's one
    CA), so a later push finds them current; the CA key never leaves that machine."""
    pki = standalone_render.inventory / ".generated" / "libvirt-pki"
    entries = members(standalone_render, "cmp01")
    shipped = sorted(n for n in entries if n.startswith("vars/libvirt-pki/") and entries[n][1] is not None)
    assert shipped == [f"vars/libvirt-pki/{f}" for f in ("ca.crt", "cmp01-client.crt", "cmp01-client.key",
                                                         "cmp01-server.crt", "cmp01-server.key")]
    for name in shipped:
        assert entries[name][1] == (pki / name.rsplit("/", 1)[1]).read_bytes(), name
    assert (pki / "ca.key").exists() and not any(n.endswith("ca.key") for n in entries)
    cert = subprocess.run(["openssl", "x509", "-noout", "-text"], input=entries["vars/libvirt-pki/cmp01-server.crt"][1],
                          capture_output=True)
    assert b"DNS:cmp01, DNS:cmp01.lab.kickstack.test, IP Address:10.60.0.21" in cert.stdout
    node = yaml.safe_load(entries["vars/inventory.yml"][1])["all"]["children"]["compute"]["hosts"]["cmp01"]
    assert node["libvirt_pki_issue"] is False and node["libvirt_pki_dir"] == "/var/lib/kickstack/bundle/vars/libvirt-pki"
    assert not any(n.startswith("vars/libvirt-pki") for n in members(standalone_render, "ctl01"))


def test_kickstart_pins_the_bundle_and_installs_the_first_boot_unit(standalone_render):
    for host in STANDALONE_HOSTS:
        ks = (standalone_render.build / "ks" / f"{host}.ks").read_text()
        digest = hashlib.sha256(bundle_path(standalone_render, host).read_bytes()).hexdigest()
        assert re.search(rf"^KICKSTACK_BUNDLE_SHA256='?{digest}'?$", ks, re.M), host
        assert re.search(rf"^KICKSTACK_BUNDLE_URL='?http://10\.60\.0\.5/kickstack/build/@KICKSTACK_TOKEN@/{host}"
                         r"\.bundle\.tgz'?$", ks, re.M), host
        packages = ks.split("%packages", 1)[1].split("%end", 1)[0].split()
        assert "ansible-core" in packages and "tar" in packages
        assert "sha256sum --check" in ks and "/failed" in ks
        assert "ansible-playbook -c local -i vars/inventory.yml -e @vars/host.yml local.yml" in ks
        assert "SyslogIdentifier=kickstack-firstboot" in ks and "systemctl enable kickstack-firstboot.service" in ks
        assert "systemctl disable kickstack-firstboot.service" in ks
        assert '"mode": "standalone"' in ks
        # %post ends with `installed` (local boot; the token stays for the first boot), not `built`.
        assert re.search(r"^KICKSTACK_INSTALLED_URL='?http://10\.60\.0\.5/kickstack/build/@KICKSTACK_TOKEN@/\w+"
                         r"/installed'?$", ks, re.M)
        assert "KICKSTACK_BUILT_URL=" not in ks
        # The kickstart itself carries no secret: it stays world-readable like a bootstrap one.
        assert stat.S_IMODE((standalone_render.build / "ks" / f"{host}.ks").stat().st_mode) == 0o644
    boot = (standalone_render.build / "ks" / "cmp02.ks").read_text()
    assert "KICKSTACK_BUNDLE" not in boot and "ansible-core" not in boot and '"mode": "bootstrap"' in boot


def firstboot_script(ks_text):
    return ks_text.split("<<'FIRSTBOOT'\n", 1)[1].split("\nFIRSTBOOT\n", 1)[0] + "\n"


def test_first_boot_script_passes_shellcheck_and_retries_with_backoff(standalone_render, tmp_path):
    """The wrapper the unit runs (a here-document of %post, which shellcheck of %post does not
    read): shellcheck, then a run with a fake ansible-playbook that fails twice, a fake curl
    and systemctl: bounded retries, doubling delays, `built` reported once it succeeds; what
    the node depends on is checked again with a gentler backoff (not an attempt) until a bound,
    then `failed`."""
    script = tmp_path / "kickstack-firstboot"
    script.write_text(firstboot_script((standalone_render.build / "ks" / "cmp01.ks").read_text()))
    shellcheck = shutil.which("shellcheck", path=str(VENV_BIN))
    lint = subprocess.run([shellcheck, "-s", "bash", str(script)], capture_output=True, text=True)
    assert lint.returncode == 0, lint.stdout

    text = script.read_text()
    bundle, state = tmp_path / "bundle", tmp_path / "state"
    (bundle / "vars").mkdir(parents=True)
    state.mkdir()
    (bundle / "vars" / "depends").write_text("")
    fake = tmp_path / "bin"
    fake.mkdir()
    log = tmp_path / "calls"
    for name, body in (("ansible-playbook", f'echo "ansible-playbook $*" >> {log}\n'
                        f'n=$(grep -c ansible-playbook {log}); [ "$n" -ge 3 ]'),
                       ("curl", f'echo "curl $*" >> {log}'), ("systemctl", f'echo "systemctl $*" >> {log}'),
                       ("sleep", f'echo "sleep $*" >> {log}')):
        (fake / name).write_text(f"#!/bin/bash\n{body}\n")
        (fake / name).chmod(0o755)
    text = text.replace("/var/lib/kickstack/bundle", str(bundle)).replace("/var/lib/kickstack/", f"{state}/")
    script.write_text(text)
    env = {**os.environ, "PATH": f"{fake}:{os.environ['PATH']}", "KICKSTACK_BUILD_URL": "http://boot/b/T/cmp01"}
    result = subprocess.run(["bash", str(script)], env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    calls = log.read_text().splitlines()
    assert [c for c in calls if c.startswith("sleep")] == ["sleep 30", "sleep 60"]
    assert calls[-2:] == ["systemctl disable kickstack-firstboot.service",
                          "curl --fail --silent --show-error --retry 5 --retry-connrefused --max-time 30 "
                          "--request POST http://boot/b/T/cmp01/built"]
    assert (state / "firstboot.done").exists()
    # Always failing: it gives up after the bounded attempts and reports `failed`.
    log.unlink()
    (fake / "ansible-playbook").write_text(f'#!/bin/bash\necho "ansible-playbook $*" >> {log}\nexit 2\n')
    (state / "firstboot.done").unlink()
    env["KICKSTACK_FIRSTBOOT_ATTEMPTS"] = "4"
    result = subprocess.run(["bash", str(script)], env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    calls = log.read_text().splitlines()
    assert [c for c in calls if c.startswith("sleep")] == ["sleep 30", "sleep 60", "sleep 120"]
    assert calls[-1].endswith("--request POST http://boot/b/T/cmp01/failed")
    assert not (state / "firstboot.done").exists()
    # What it waits for: an address that does not answer is reported, the plays are not run.
    log.unlink()
    (bundle / "vars" / "depends").write_text("127.0.0.1 9 keystone\n")
    env["KICKSTACK_FIRSTBOOT_WAIT"] = "120"
    result = subprocess.run(["bash", str(script)], env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    assert "waiting for keystone (127.0.0.1:9) (0 s so far, next check in 10 s)" in result.stdout
    assert "waiting for keystone (127.0.0.1:9) (60 s so far, next check in 30 s)" in result.stdout
    assert "gave up after waiting 120 s for keystone (127.0.0.1:9)" in result.stderr
    calls = log.read_text().splitlines()
    assert not [c for c in calls if c.startswith("ansible-playbook")]
    assert [c for c in calls if c.startswith("sleep")] == ["sleep 10", "sleep 20", "sleep 30", "sleep 30", "sleep 30"]
    assert calls[-1].endswith("--request POST http://boot/b/T/cmp01/failed")


def test_rerender_is_byte_identical_and_changes_nothing(standalone_render, tmp_path):
    before = {h: bundle_path(standalone_render, h).read_bytes() for h in STANDALONE_HOSTS}
    again = run_playbook("kickstart.yml", standalone_render.inventory, standalone_render.build)
    assert again.returncode == 0
    assert re.search(r"localhost\s+: ok=\d+\s+changed=0 ", again.stdout), again.stdout[-1500:]
    other = run_playbook("kickstart.yml", standalone_render.inventory, tmp_path / "other")
    assert other.returncode == 0
    for host, data in before.items():
        assert (tmp_path / "other" / "ks" / f"{host}.bundle.tgz").read_bytes() == data, host
        assert bundle_path(standalone_render, host).read_bytes() == data, host


def test_no_secret_in_ansible_output_and_bundle_diffs_hidden(standalone_render, tmp_path):
    secrets = read_secrets(standalone_render.inventory)
    run_ = run_playbook("kickstart.yml", standalone_render.inventory, tmp_path / "fresh", "--diff", "-vvv")
    assert run_.returncode == 0
    out = standalone_render.output + run_.stdout + run_.stderr
    assert "content hidden: carries a secret" in run_.stdout
    for name, value in secrets.items():
        if name != "deploy_ssh_public_key":
            assert str(value) not in out, f"secret {name} appears in Ansible's output"


def test_limit_renders_the_hosts_bundle(standalone_render, tmp_path):
    build = tmp_path / "pxe"
    result = run_playbook("kickstart.yml", standalone_render.inventory, build, "--limit", "cmp01")
    assert result.returncode == 0, result.stdout[-2000:]
    assert sorted(p.name for p in (build / "ks").iterdir()) == ["cmp01.bundle.tgz", "cmp01.ks"]
    assert (build / "ks" / "cmp01.bundle.tgz").read_bytes() == bundle_path(standalone_render, "cmp01").read_bytes()


@pytest.mark.parametrize("host", STANDALONE_HOSTS)
def test_bundle_alone_loads_the_hosts_plays(standalone_render, tmp_path, host):
    """Unpacked, with no collection but the bundle's own: the plays parse (every role and module
    resolves), and every bundled module of another collection imports with what the bundle holds
    (its module_utils)."""
    root = tmp_path / "bundle"
    with tarfile.open(bundle_path(standalone_render, host), "r:gz") as tar:
        tar.extractall(root, filter="data") if hasattr(tarfile, "data_filter") else tar.extractall(root)
    env = {**tool_env(), "ANSIBLE_CONFIG": str(root / "ansible.cfg"), "ANSIBLE_COLLECTIONS_SCAN_SYS_PATH": "false"}
    for cmd in (["--syntax-check"], ["--list-tasks"]):
        result = run([VENV_BIN / "ansible-playbook", "-c", "local", "-i", "vars/inventory.yml", "-e",
                      "@vars/host.yml", "local.yml", *cmd], cwd=root, env=env)
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    modules = sorted(str(p.relative_to(root / "collections")) for p in (root / "collections").rglob("modules/*.py"))
    names = [m[:-3].replace("/", ".") for m in modules if not m.startswith("ansible_collections/kickstack/")]
    assert names, "no module of another collection in the bundle"
    probe = ("import importlib, sys\n"
             "from ansible.utils.collection_loader._collection_finder import _AnsibleCollectionFinder\n"
             f"_AnsibleCollectionFinder(paths=[{str(root / 'collections')!r}], scan_sys_paths=False)._install()\n"
             f"for name in {names!r}:\n"
             "    mod = importlib.import_module(name)\n"
             "    assert str(mod.__file__).startswith(sys.argv[1]), (name, mod.__file__)\n")
    result = subprocess.run([VENV_BIN / "python", "-c", probe, str(root)], capture_output=True, text=True,
                            cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]


def test_bundle_is_one_tar_stream_for_gzip_and_tar(standalone_render):
    """The shared gzip member and the host's member read back as one tar stream (gzip -d too)."""
    data = bundle_path(standalone_render, "cmp01").read_bytes()
    gunzip = subprocess.run(["gzip", "-dc"], input=data, capture_output=True)
    assert gunzip.returncode == 0
    listing = subprocess.run(["tar", "-tf", "-"], input=gunzip.stdout, capture_output=True)
    assert listing.returncode == 0, listing.stderr
    assert listing.stdout.decode().split()[-1] == "vars/libvirt-pki/cmp01-server.key"
    with tarfile.open(fileobj=io.BytesIO(gunzip.stdout)) as tar:
        assert tar.getnames()[-1] == "vars/libvirt-pki/cmp01-server.key"
