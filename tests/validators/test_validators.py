"""Each validator accepts a known-good file and rejects known-bad ones.

The tools come from scripts/install-validators; a missing tool makes a
validator return a problem, so these tests fail (never skip) without them.
Only the checks that need namespaces skip, and only when not root.
"""

import os
import subprocess
import textwrap

import pytest

from . import (
    chrony,
    cluster_conf,
    corosync,
    dnsmasq,
    drbd,
    libvirtd_conf,
    libvirtd_semantic,
    lvmconfig,
    mariadb_cnf,
    nova_conf,
    nova_conf_report,
    qemu_conf,
    rabbitmq_conf,
    virtqemud_conf,
)

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="needs root for namespaces and mounts")


@pytest.fixture
def write(tmp_path):
    """Write a dedented inline sample to tmp_path and return its path."""

    def _write(text, name="sample.conf"):
        path = tmp_path / name
        path.write_text(textwrap.dedent(text).lstrip("\n"))
        return str(path)

    return _write


# ---------------------------------------------------------------- tool missing


def test_missing_tool_is_a_problem_not_a_pass(write, monkeypatch):
    path = write("server 192.0.2.1 iburst\n")
    monkeypatch.setenv("PATH", "/nonexistent")
    problems = chrony(path)
    assert problems and "not installed" in problems[0]


# ---------------------------------------------------------------- chrony

CHRONY_GOOD = """
    server 192.0.2.10 iburst
    driftfile /var/lib/chrony/drift
    makestep 1.0 3
    rtcsync
    allow 192.0.2.0/24
    local stratum 10
"""


def test_chrony_good(write):
    assert chrony(write(CHRONY_GOOD)) == []


@pytest.mark.parametrize("bad", ["serverr 192.0.2.10 iburst\n", "makestep abc\n", "maxupdateskew abc\n"])
def test_chrony_bad(write, bad):
    assert chrony(write(CHRONY_GOOD + bad))


# ---------------------------------------------------------------- MariaDB

MY_GOOD = """
    [mysqld]
    user = mysql
    bind-address = 192.0.2.10
    max_connections = 4096
    innodb_buffer_pool_size = 256M
    character-set-server = utf8mb4
    collation-server = utf8mb4_general_ci
    skip-name-resolve
"""


def test_mariadb_good(write):
    # `user = mysql` on a host without that user: the trap of running mariadbd as root
    assert mariadb_cnf(write(MY_GOOD, "my.cnf")) == []


@pytest.mark.parametrize(
    "bad",
    ["max_connectionz = 500\n", "innodb_buffer_pool_size = lots\n", "skip-foo\n"],
    ids=["unknown-variable", "bad-value", "unknown-option"],
)
def test_mariadb_bad(write, bad):
    assert mariadb_cnf(write(MY_GOOD + bad, "my.cnf"))


# ---------------------------------------------------------------- RabbitMQ

RABBIT_GOOD = """
    listeners.tcp.default = 5672
    listeners.ssl.default = 5671
    default_vhost = /
    default_user = openstack
    default_pass = s3cret
    loopback_users.guest = true
    vm_memory_high_watermark.relative = 0.4
    disk_free_limit.absolute = 2GB
    heartbeat = 60
    log.dir = /var/log/rabbitmq
    log.file.level = info
    ssl_options.cacertfile = /etc/pki/rabbitmq/ca.pem
    ssl_options.certfile = /etc/pki/rabbitmq/cert.pem
    ssl_options.keyfile = /etc/pki/rabbitmq/key.pem
    ssl_options.verify = verify_peer
    ssl_options.fail_if_no_peer_cert = true
    management.tcp.port = 15672
    management.tcp.ip = 127.0.0.1
    cluster_formation.peer_discovery_backend = rabbit_peer_discovery_classic_config
    cluster_formation.classic_config.nodes.1 = rabbit@ctl1
"""


def test_rabbitmq_good(write):
    assert rabbitmq_conf(write(RABBIT_GOOD, "rabbitmq.conf")) == []


@pytest.mark.parametrize(
    "bad",
    [
        "listners.tcp.default = 5672\n",
        "heartbeet = 60\n",
        "heartbeat = sixty\n",
        "vm_memory_high_watermark.relative = high\n",
        "ssl_options.verify = maybe\n",
        "listeners.tcp.default 5672\n",
    ],
    ids=["misspelled-key", "misspelled-key2", "not-integer", "not-float", "bad-enum", "syntax"],
)
def test_rabbitmq_bad(write, bad):
    problems = rabbitmq_conf(write(RABBIT_GOOD + bad, "rabbitmq.conf"))
    assert problems


def test_rabbitmq_host_files(write):
    # with the broker's host-dependent validators, the (absent) cert files are errors
    assert rabbitmq_conf(write(RABBIT_GOOD, "rabbitmq.conf"), host_files=True)


# ---------------------------------------------------------------- libvirt

LIBVIRTD_GOOD = """
    listen_tls = 1
    listen_tcp = 0
    unix_sock_group = "libvirt"
    unix_sock_ro_perms = "0777"
    unix_sock_rw_perms = "0770"
    auth_unix_ro = "none"
    auth_unix_rw = "none"
    auth_tls = "none"
    tls_allowed_dn_list = ["CN=compute1.example.org", "CN=compute2.example.org"]
    max_clients = 5000
    log_outputs = "3:journald"
"""

QEMU_GOOD = """
    user = "libvirt-qemu"
    group = "libvirt-qemu"
    dynamic_ownership = 1
    vnc_listen = "0.0.0.0"
    vnc_tls = 1
    default_tls_x509_cert_dir = "/etc/pki/qemu"
    migrate_tls_force = 1
    security_driver = "selinux"
"""


def test_libvirtd_conf_good(write):
    assert libvirtd_conf(write(LIBVIRTD_GOOD, "libvirtd.conf")) == []


@pytest.mark.parametrize("bad", ["listen_tls = yes\n", "max_clients = many\n", "listen_tlz = 1\n"])
def test_libvirtd_conf_bad(write, bad):
    assert libvirtd_conf(write(LIBVIRTD_GOOD + bad, "libvirtd.conf"))


def test_virtqemud_conf(write):
    good = 'unix_sock_group = "libvirt"\nunix_sock_rw_perms = "0770"\nauth_unix_rw = "none"\n'
    assert virtqemud_conf(write(good, "virtqemud.conf")) == []
    assert virtqemud_conf(write(good + "unix_sock_rw_perms = 0770\n", "virtqemud.conf"))


def test_qemu_conf(write):
    assert qemu_conf(write(QEMU_GOOD, "qemu.conf")) == []
    assert qemu_conf(write(QEMU_GOOD + "vnc_tls = true\n", "qemu.conf"))
    assert qemu_conf(write(QEMU_GOOD + "no_such_setting = 1\n", "qemu.conf"))


@needs_root
def test_libvirtd_semantic_good(write):
    assert libvirtd_semantic(write(LIBVIRTD_GOOD, "libvirtd.conf")) == []


@needs_root
@pytest.mark.parametrize(
    "old,new",
    [
        ("max_clients = 5000", 'max_clients = "lots"'),
        ('unix_sock_group = "libvirt"', 'unix_sock_group = "nosuchgroup"'),
        ("listen_tls = 1", "listen_tls = yes"),
    ],
    ids=["string-for-int", "unknown-group", "syntax"],
)
def test_libvirtd_semantic_bad(write, old, new):
    # replace, not append: libvirt takes the first of duplicate keys
    assert libvirtd_semantic(write(LIBVIRTD_GOOD.replace(old, new), "libvirtd.conf"))


# ---------------------------------------------------------------- nova

NOVA_CONTROLLER = """
    [DEFAULT]
    transport_url = rabbit://nova:s3cret@192.0.2.10:5672/
    my_ip = 192.0.2.10
    state_path = /var/lib/nova
    log_dir = /var/log/nova

    [api_database]
    connection = mysql+pymysql://nova:s3cret@192.0.2.10/nova_api
    max_pool_size = 10

    [database]
    connection = mysql+pymysql://nova:s3cret@192.0.2.10/nova
    connection_recycle_time = 3600

    [keystone_authtoken]
    www_authenticate_uri = http://192.0.2.10:5000/
    auth_url = http://192.0.2.10:5000/
    memcached_servers = 192.0.2.10:11211
    auth_type = password
    project_domain_name = Default
    user_domain_name = Default
    project_name = service
    username = nova
    password = s3cret

    [placement]
    region_name = RegionOne
    auth_type = password
    auth_url = http://192.0.2.10:5000/v3
    project_domain_name = Default
    user_domain_name = Default
    project_name = service
    username = placement
    password = s3cret

    [scheduler]
    discover_hosts_in_cells_interval = 300
    workers = 2

    [conductor]
    workers = 2

    [vnc]
    enabled = true
    server_listen = $my_ip
    server_proxyclient_address = $my_ip
    novncproxy_host = 0.0.0.0
    novncproxy_port = 6080

    [glance]
    valid_interfaces = internal

    [oslo_concurrency]
    lock_path = /var/lib/nova/tmp
"""

NOVA_COMPUTE = """
    [DEFAULT]
    transport_url = rabbit://nova:s3cret@192.0.2.10:5672/
    my_ip = 192.0.2.31
    compute_driver = libvirt.LibvirtDriver
    state_path = /var/lib/nova
    instances_path = /var/lib/nova/instances

    [libvirt]
    virt_type = qemu
    cpu_mode = none
    live_migration_scheme = tls
    live_migration_inbound_addr = 192.0.2.31
    live_migration_with_native_tls = true
    live_migration_permit_auto_converge = true

    [vnc]
    enabled = true
    server_listen = 0.0.0.0
    server_proxyclient_address = $my_ip
    novncproxy_base_url = http://192.0.2.10:6080/vnc_auto.html

    [placement]
    region_name = RegionOne
    auth_type = password
    auth_url = http://192.0.2.10:5000/v3
    project_domain_name = Default
    user_domain_name = Default
    project_name = service
    username = placement
    password = s3cret

    [oslo_concurrency]
    lock_path = /var/lib/nova/tmp
"""


def test_nova_controller_good(write):
    assert nova_conf_report(write(NOVA_CONTROLLER, "nova.conf"), service="controller") == ([], [])


def test_nova_compute_good(write):
    assert nova_conf_report(write(NOVA_COMPUTE, "nova.conf"), service="compute") == ([], [])


@pytest.mark.parametrize(
    "group,line,expect",
    [
        ("conductor", "workers = abc", "[conductor] workers = abc"),
        ("libvirt", "virt_type = vmwaree", "vmwaree"),
        ("vnc", "novncproxy_port = 99999", "65535"),
        ("vnc", "enabled = maybe", "boolean"),
        ("libvirt", "live_migration_inbound_addr = not a host!", "host"),
        ("DEFAULT", "my_ipp = 192.0.2.31", "unknown option"),
        ("DEFAULT", "osapi_compute_workers = 4", "unknown option"),  # gone with eventlet API in nova 34
        ("keystone_authtoken", "usernme = nova", "unknown option"),
        ("placment", "auth_url = http://192.0.2.10:5000/v3", "unknown group"),
    ],
)
def test_nova_bad(write, group, line, expect):
    text = textwrap.dedent(NOVA_CONTROLLER) + f"\n[{group}]\n{line}\n"
    problems = nova_conf(write(text, "nova.conf"))
    assert problems
    assert any(expect in p for p in problems), problems


def test_nova_deprecated_alias_is_accepted_with_a_warning(write):
    text = textwrap.dedent(NOVA_COMPUTE) + "\n[DEFAULT]\nrpc_thread_pool_size = 64\n"
    path = write(text, "nova.conf")
    with pytest.warns(UserWarning, match="rpc_thread_pool_size is a deprecated name"):
        assert nova_conf(path) == []
    assert nova_conf(path, strict=True)


def test_nova_auth_plugin_alias_in_keystone_authtoken(write):
    text = textwrap.dedent(NOVA_CONTROLLER).replace("username = nova", "user_name = nova")
    problems, notes = nova_conf_report(write(text, "nova.conf"), service="controller")
    assert problems == []
    assert notes == ["[keystone_authtoken] user_name is a deprecated name: use [keystone_authtoken] username"]


def test_nova_deprecated_alias_is_type_checked(write):
    text = textwrap.dedent(NOVA_COMPUTE) + "\n[DEFAULT]\nrpc_thread_pool_size = many\n"
    with pytest.warns(UserWarning):
        assert nova_conf(write(text, "nova.conf"))


def test_nova_service_requirements(write):
    problems = nova_conf(write(NOVA_COMPUTE, "nova.conf"), service="controller")
    assert "[api_database] connection: required for the controller but not set" in problems


def test_nova_syntax_error(write):
    assert nova_conf(write(NOVA_COMPUTE + "\nthis is not ini\n", "nova.conf"))


# ---------------------------------------------------------------- dnsmasq

DNSMASQ_GOOD = """
    port=0
    interface=eth1
    bind-interfaces
    dhcp-range=192.0.2.100,192.0.2.200,255.255.255.0,12h
    dhcp-host=52:54:00:12:34:56,ctl1,192.0.2.10
    dhcp-match=set:efi-x86_64,option:client-arch,7
    dhcp-boot=tag:efi-x86_64,grubx64.efi
    dhcp-boot=pxelinux.0
    enable-tftp
    tftp-root=/srv/tftp
"""


def test_dnsmasq_good(write):
    assert dnsmasq(write(DNSMASQ_GOOD, "dnsmasq.conf")) == []


@pytest.mark.parametrize("bad", ["dhcp-range=192.0.2.100,notanip,12h\n", "bogus-option=1\n"])
def test_dnsmasq_bad(write, bad):
    assert dnsmasq(write(DNSMASQ_GOOD + bad, "dnsmasq.conf"))


# ---------------------------------------------------------------- LVM

LVM_GOOD = """
    devices {
        filter = [ "a|^/dev/drbd.*|", "r|.*|" ]
        write_cache_state = 0
    }
    global {
        use_lvmlockd = 1
    }
    activation {
        volume_list = [ "vg_shared" ]
    }
"""


def test_lvmconfig_good(write):
    assert lvmconfig(write(LVM_GOOD, "lvm.conf")) == []


@pytest.mark.parametrize(
    "bad",
    [
        "global {\n\tbogus_setting = 1\n}\n",
        "devices {\n\tfilter = 3\n}\n",
        "global {\n\tuse_lvmlockd = 1\n",
    ],
    ids=["unknown-key", "wrong-type", "syntax"],
)
def test_lvmconfig_bad(write, bad):
    assert lvmconfig(write(LVM_GOOD + bad, "lvm.conf"))


# ---------------------------------------------------------------- DRBD

DRBD84 = """
    global { usage-count no; }
    common {
        net { protocol C; allow-two-primaries yes; after-sb-0pri discard-zero-changes;
              after-sb-1pri discard-secondary; after-sb-2pri disconnect; }
        disk { fencing resource-and-stonith; }
        startup { become-primary-on both; }
        handlers { fence-peer "/usr/lib/drbd/crm-fence-peer.sh";
                   after-resync-target "/usr/lib/drbd/crm-unfence-peer.sh"; }
    }
    resource r0 {
        device /dev/drbd0;
        disk /dev/vdb;
        meta-disk internal;
        on stor1 { address 192.0.2.21:7789; }
        on stor2 { address 192.0.2.22:7789; }
    }
"""

DRBD9 = """
    resource r0 {
        device /dev/drbd0;
        disk /dev/vdb;
        meta-disk internal;
        net { protocol C; allow-two-primaries yes; fencing resource-and-stonith; }
        options { auto-promote yes; }
        handlers { fence-peer "/usr/lib/drbd/crm-fence-peer.9.sh";
                   unfence-peer "/usr/lib/drbd/crm-unfence-peer.9.sh"; }
        on stor1 { address 192.0.2.21:7789; node-id 0; }
        on stor2 { address 192.0.2.22:7789; node-id 1; }
        connection-mesh { hosts stor1 stor2; }
    }
"""


def test_drbd84_good(write):
    # neither address is local here: `-d up` does not insist, unlike `dump`
    path = write(DRBD84, "r0.res")
    assert drbd(path, "stor1") == []
    assert drbd(path, "stor2") == []


def test_drbd84_bad(write):
    assert drbd(write(DRBD84.replace("protocol C", "protocol Q"), "r0.res"), "stor1")
    assert drbd(write(DRBD84, "r0.res"), "stor3")  # not a node of the resource
    assert drbd(write(DRBD9, "r0.res"), "stor1")  # 9 syntax on the 8.4 driver


def test_drbd9(write):
    assert drbd(write(DRBD9, "r0.res"), "stor1", version="9") == []
    assert drbd(write(DRBD84, "r0.res"), "stor1", version="9")  # fencing in disk{} is 8.4


# ---------------------------------------------------------------- corosync

COROSYNC_GOOD = """
    totem {
        version: 2
        cluster_name: kickstack
        transport: knet
        crypto_cipher: aes256
        crypto_hash: sha256
    }
    nodelist {
        node {
            ring0_addr: 192.0.2.21
            name: stor1
            nodeid: 1
        }
        node {
            ring0_addr: 192.0.2.22
            name: stor2
            nodeid: 2
        }
    }
    quorum {
        provider: corosync_votequorum
        two_node: 1
    }
    logging {
        to_logfile: yes
        logfile: /var/log/cluster/corosync.log
        to_syslog: yes
        timestamp: on
    }
"""


def _netns():
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    return {ln.split()[0] for ln in out.splitlines() if ln.strip()}


@needs_root
def test_corosync_good(write):
    before = _netns()
    assert corosync(write(COROSYNC_GOOD, "corosync.conf"), "192.0.2.21") == []
    assert corosync(write(COROSYNC_GOOD, "corosync.conf"), "192.0.2.22") == []
    assert _netns() == before  # the throwaway namespaces are gone


@needs_root
@pytest.mark.parametrize(
    "old,new",
    [
        ("transport: knet", "transport: bogus"),
        ("nodeid: 2", "nodeid: 1"),
        ("version: 2", "version: 2\n\ttoken: abc"),
    ],
    ids=["bad-transport", "duplicate-nodeid", "not-integer"],
)
def test_corosync_bad(write, old, new):
    assert corosync(write(COROSYNC_GOOD.replace(old, new), "corosync.conf"), "192.0.2.21")


@needs_root
def test_corosync_local_ip_not_in_nodelist(write):
    assert corosync(write(COROSYNC_GOOD, "corosync.conf"), "192.0.2.99")


# ---------------------------------------------------------------- cluster.conf

CLUSTER_RNG = """
    <grammar xmlns="http://relaxng.org/ns/structure/1.0"
             datatypeLibrary="http://www.w3.org/2001/XMLSchema-datatypes">
      <start>
        <element name="cluster">
          <attribute name="name"/>
          <attribute name="config_version"><data type="positiveInteger"/></attribute>
          <element name="cman">
            <optional>
              <attribute name="two_node"><choice><value>0</value><value>1</value></choice></attribute>
            </optional>
            <optional><attribute name="expected_votes"><data type="positiveInteger"/></attribute></optional>
          </element>
          <element name="clusternodes">
            <oneOrMore>
              <element name="clusternode">
                <attribute name="name"/>
                <attribute name="nodeid"><data type="positiveInteger"/></attribute>
                <empty/>
              </element>
            </oneOrMore>
          </element>
        </element>
      </start>
    </grammar>
"""

CLUSTER_GOOD = """
    <?xml version="1.0"?>
    <cluster name="kickstack" config_version="1">
      <cman two_node="1" expected_votes="1"/>
      <clusternodes>
        <clusternode name="stor1" nodeid="1"/>
        <clusternode name="stor2" nodeid="2"/>
      </clusternodes>
    </cluster>
"""


def test_cluster_conf(write):
    schema = write(CLUSTER_RNG, "cluster.rng")
    assert cluster_conf(write(CLUSTER_GOOD, "cluster.conf"), schema) == []
    assert cluster_conf(write(CLUSTER_GOOD.replace('nodeid="2"', 'nodeid="two"'), "cluster.conf"), schema)
    assert cluster_conf(write(CLUSTER_GOOD.replace("<cman ", "<cmann "), "cluster.conf"), schema)
    assert cluster_conf(write(CLUSTER_GOOD.replace("</cluster>", ""), "cluster.conf"), schema)
