"""Tempest, OpenStack's own integration suite, against the cloud scenario (runs from this
machine, from the venv scripts/build-tempest makes). Configured for this cloud: keystone,
glance, nova under TCG, no network for instances (tests/tempest/README.md); the test image is
the smoke image (scripts/build-smoke-image) as a kernel, a ramdisk and a machine image. Prints
how many tests ran, passed and were skipped; any failure fails the scenario."""

import os
import re
import subprocess
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]
CTL, CTL_IP = "ctl01", os.environ.get("KICKSTACK_TEST_CTL_IP", "10.60.0.11")
OS = "openstack --os-cloud kickstack"
WORK = "/var/tmp/kickstack-tempest"


def _build(script):
    out = subprocess.run([REPO / "scripts" / script], capture_output=True, text=True, check=False)
    assert out.returncode == 0, out.stderr[-3000:]
    return Path(out.stdout.splitlines()[-1])


def _id(host, cmd):
    return host.check_output(f"{OS} {cmd} -f value -c id").strip()


@pytest.fixture
def cloud(host):
    """The admin's view of the cloud with two flavors and a bootable image, removed afterwards."""
    if host.backend.get_hostname() != CTL:
        pytest.skip(f"runs on {CTL}")
    image = _build("build-smoke-image")
    host.check_output(f"install -d -m 0700 {WORK}")
    for name in ("vmlinuz", "initrd.img"):
        result = host.ansible("copy", f"src={image / name} dest={WORK}/{name} mode=0600", check=False)
        assert not result.get("failed"), result
    host.check_output(f"truncate --size=1M {WORK}/root.img")
    made = {}
    try:
        made["kernel"] = _id(host, f"image create kickstack-tempest-kernel --public --disk-format aki "
                                   f"--container-format aki --file {WORK}/vmlinuz")
        made["ramdisk"] = _id(host, f"image create kickstack-tempest-ramdisk --public --disk-format ari "
                                    f"--container-format ari --file {WORK}/initrd.img")
        made["image"] = _id(host, f"image create kickstack-tempest --public --disk-format ami --container-format ami "
                                  f"--file {WORK}/root.img --property kernel_id={made['kernel']} "
                                  f"--property ramdisk_id={made['ramdisk']} --property os_command_line=console=ttyS0")
        made["flavor"] = _id(host, "flavor create kickstack-tempest --ram 256 --disk 1 --vcpus 1")
        made["flavor_alt"] = _id(host, "flavor create kickstack-tempest-alt --ram 320 --disk 1 --vcpus 1")
        yield made
    finally:
        for key in ("flavor", "flavor_alt"):
            if key in made:
                host.run(f"{OS} flavor delete {made[key]}")
        for key in ("image", "kernel", "ramdisk"):
            if key in made:
                host.run(f"{OS} image delete {made[key]}")
        host.run(f"rm -rf {WORK}")


def _tempest_conf(workspace, admin_password, ids):
    lock = workspace / "lock"
    lock.mkdir(exist_ok=True)
    return textwrap.dedent(f"""\
        [DEFAULT]
        log_file = {workspace / 'tempest.log'}

        [oslo_concurrency]
        lock_path = {lock}

        [auth]
        use_dynamic_credentials = true
        admin_username = admin
        admin_password = {admin_password}
        admin_project_name = admin
        admin_domain_name = Default

        [identity]
        uri_v3 = http://{CTL_IP}:5000/v3
        auth_version = v3
        region = RegionOne
        v3_endpoint_type = public

        [service_available]
        glance = true
        nova = true
        neutron = false
        cinder = false
        swift = false

        [compute]
        image_ref = {ids['image']}
        image_ref_alt = {ids['image']}
        flavor_ref = {ids['flavor']}
        flavor_ref_alt = {ids['flavor_alt']}
        min_microversion = 2.37
        max_microversion = latest
        build_timeout = 300
        min_compute_nodes = 1

        [compute-feature-enabled]
        console_output = true
        resize = false
        cold_migration = false
        live_migration = false
        vnc_console = false
        spice_console = false
        serial_console = false
        rescue = false
        interface_attach = false
        change_password = false
        personality = false
        config_drive = false
        metadata_service = false
        shelve = false
        snapshot = false
        suspend = true
        pause = true

        [validation]
        run_validation = false

        [image-feature-enabled]
        import_image = false
        """)


def test_tempest_selection_passes(host, cloud, tmp_path, capsys):
    venv = _build("build-tempest")
    password = host.ansible.get_variables()["kickstack_secrets"]["keystone_admin_password"]
    workspace = tmp_path / "tempest"
    env = {"PATH": f"{venv / 'bin'}:/usr/bin:/bin", "HOME": str(tmp_path), "LC_ALL": "C.UTF-8"}
    init = subprocess.run([venv / "bin" / "tempest", "init", workspace], capture_output=True, text=True,
                          env=env, timeout=300, check=False)
    assert init.returncode == 0, init.stdout + init.stderr
    conf = workspace / "etc" / "tempest.conf"
    conf.write_text(_tempest_conf(workspace, password, cloud))
    conf.chmod(0o600)
    run = subprocess.run([venv / "bin" / "tempest", "run", "--concurrency", "2",
                          "--include-list", REPO / "tests" / "tempest" / "include-list.txt"],
                         capture_output=True, text=True, env=env, cwd=workspace, timeout=2400, check=False)
    output = run.stdout + run.stderr
    totals = dict(re.findall(r"^ - (Passed|Skipped|Expected Fail|Unexpected Success|Failed): (\d+)$", output, re.M))
    counts = {k: int(v) for k, v in totals.items()}
    ran = counts.get("Passed", 0) + counts.get("Failed", 0)
    with capsys.disabled():  # into molecule's output, where tests/test_scenarios.py picks it up
        print(f"\ntempest: {ran} ran, {counts.get('Passed', 0)} passed, {counts.get('Failed', 0)} failed, "
              f"{counts.get('Skipped', 0)} skipped (selection: tests/tempest/include-list.txt)")
    failures = re.findall(r"^\{\d+\} (\S+) \[[\d.]+s\] \.\.\. FAILED$", output, re.M)
    assert run.returncode == 0 and counts.get("Failed", 0) == 0, (
        f"tempest failures: {failures}\n" + output[-8000:].replace(password, "****"))
    assert counts.get("Passed", 0) >= 80, f"too few tests ran: {counts}\n" + output[-3000:].replace(password, "****")
