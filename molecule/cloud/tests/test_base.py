"""Base services of the cloud scenario (roles common, chrony, mariadb, rabbitmq), checked on
the running containers: ctl01 (controller) and cmp01 (compute), as molecule.yml defines them."""

import json
import os
import shlex
import subprocess
import time

import pytest

# The environment may point the tests at a development copy of the lab on another subnet.
CTL, CTL_IP = "ctl01", os.environ.get("KICKSTACK_TEST_CTL_IP", "10.60.0.11")
CMP, CMP_IP = "cmp01", os.environ.get("KICKSTACK_TEST_CMP_IP", "10.60.0.21")
MGMT_CIDR = os.environ.get("KICKSTACK_TEST_MGMT_CIDR", "10.60.0.0/24")
# The lab's bridge namespace (tests/harness/nspawn.py: ks-<lab>-br) owns the nodes' default
# gateway, so an address added there reaches the nodes from outside the management network.
BRIDGE_NETNS = f"ks-{os.environ.get('KICKSTACK_TEST_LAB', 'cloud')}-br"
DOMAIN = "lab.kickstack.test"
# An address outside the management network, added to ctl01's loopback for one test.
FOREIGN_IP = "198.51.100.11"


def on(host, name):
    if host.backend.get_hostname() != name:
        pytest.skip(f"runs on {name}")


@pytest.fixture(scope="module")
def secrets(host):
    return host.ansible.get_variables()["kickstack_secrets"]


def listeners(host, port, proto="t"):
    out = host.check_output(f"ss -{proto}lnH 'sport = :{port}'")
    return sorted({line.split()[3].rsplit(":", 1)[0].strip("[]") for line in out.splitlines() if line.strip()})


# ----------------------------------------------------------------------------- common
def test_hosts_file_lists_every_node(host):
    for name, ip in ((CTL, CTL_IP), (CMP, CMP_IP)):
        assert host.check_output(f"getent hosts {name}").split()[:2] == [ip, f"{name}.{DOMAIN}"]
    assert host.check_output("hostname -f") == f"{host.backend.get_hostname()}.{DOMAIN}"


def test_deploy_user(host):
    user = host.user("deploy")
    assert user.exists
    keys = host.file("/home/deploy/.ssh/authorized_keys")
    assert keys.exists and keys.mode & 0o077 == 0 and keys.user == "deploy"
    sudoers = host.file("/etc/sudoers.d/kickstack-deploy")
    assert sudoers.mode == 0o440 and sudoers.user == "root"
    assert host.run("visudo -cf /etc/sudoers.d/kickstack-deploy").rc == 0
    assert host.run("sudo -n -u deploy sudo -n true").rc == 0


# ----------------------------------------------------------------------------- chrony
def test_chrony_client_follows_the_controller_only(host):
    on(host, CMP)
    assert host.service("chrony").is_running
    deadline = time.monotonic() + 90
    while True:
        sources = [ln.split() for ln in host.check_output("chronyc -n sources").splitlines() if ln[:1] == "^"]
        assert [s[1] for s in sources] == [CTL_IP], sources
        ntpdata = host.check_output(f"chronyc -n ntpdata {CTL_IP}")
        valid_rx = int(next(ln.split(":")[1] for ln in ntpdata.splitlines() if ln.startswith("Total valid RX")))
        if valid_rx > 0 and sources[0][0] in ("^*", "^+"):
            break
        assert time.monotonic() < deadline, f"no usable reply from {CTL_IP}: {sources}\n{ntpdata}"
        time.sleep(5)
    # chronyd runs with -x here (no CAP_SYS_TIME); the drop-in says so.
    assert "-x" in host.check_output("systemctl show -p ExecStart chrony")


def test_chrony_server_serves_the_management_network(host):
    on(host, CTL)
    assert host.service("chrony").is_running
    conf = host.file("/etc/chrony/chrony.conf").content_string
    assert f"allow {MGMT_CIDR}" in conf.splitlines()


# ----------------------------------------------------------------------------- mariadb
def test_mariadb_listens_on_the_management_ip_only(host):
    on(host, CTL)
    assert listeners(host, 3306) == [CTL_IP]


def mysql(host, user, password, sql, *, database="", bind=""):
    cmd = "MYSQL_PWD=%s mysql --connect-timeout=5 -h %s -u %s -N -B -e %s"
    args = [password, CTL_IP, user, sql]
    if bind:
        cmd += " --bind-address=%s"
        args.append(bind)
    if database:
        cmd += " %s"
        args.append(database)
    return host.run(cmd, *args)


def test_nova_connects_from_the_compute_node_to_its_databases_only(host, secrets):
    on(host, CMP)
    res = mysql(host, "nova", secrets["mariadb_nova_password"], "SHOW DATABASES")
    assert res.rc == 0, res.stderr
    assert sorted(res.stdout.split()) == ["information_schema", "nova", "nova_api", "nova_cell0"]
    assert mysql(host, "nova", secrets["mariadb_nova_password"], "SELECT 1", database="nova_cell0").rc == 0
    denied = mysql(host, "nova", secrets["mariadb_nova_password"], "SELECT 1", database="placement")
    assert denied.rc != 0 and "denied" in denied.stderr
    placement = mysql(host, "placement", secrets["mariadb_placement_password"], "SELECT 1", database="placement")
    assert placement.rc == 0, placement.stderr
    assert mysql(host, "placement", secrets["mariadb_placement_password"], "SELECT 1", database="nova").rc != 0
    keystone = mysql(host, "keystone", secrets["mariadb_keystone_password"], "SHOW DATABASES")
    assert keystone.rc == 0 and sorted(keystone.stdout.split()) == ["information_schema", "keystone"], keystone.stderr
    assert mysql(host, "nova", "wrong-password", "SELECT 1").rc != 0


# MariaDB answers a client whose address matches no account with error 1130 in its very
# first packet, before any login.
MYSQL_GREETING = r'''
import socket, sys
s = socket.create_connection((sys.argv[1], 3306), timeout=10, source_address=(sys.argv[2], 0))
print(s.recv(4096)[4:].decode("latin-1"))
'''


def test_mariadb_refuses_clients_outside_the_management_network(host):
    on(host, CTL)
    ns = ["ip", "netns", "exec", BRIDGE_NETNS]
    subprocess.run(["ip", "-n", BRIDGE_NETNS, "addr", "add", f"{FOREIGN_IP}/32", "dev", "br0"], check=True)
    try:
        foreign = subprocess.run([*ns, "python3", "-c", MYSQL_GREETING, CTL_IP, FOREIGN_IP],
                                 capture_output=True, text=True, timeout=30)
    finally:
        subprocess.run(["ip", "-n", BRIDGE_NETNS, "addr", "del", f"{FOREIGN_IP}/32", "dev", "br0"], check=False)
    assert f"Host '{FOREIGN_IP}' is not allowed to connect" in foreign.stdout, foreign.stdout + foreign.stderr
    # From inside the management network (ctl01's own address) the server greets.
    greeting = host.run("python3 -c %s %s %s", MYSQL_GREETING, CTL_IP, CTL_IP).stdout
    assert "MariaDB" in greeting and "not allowed" not in greeting
    # The refusal above covers every account: each service user exists for the management
    # network only.
    net, prefix = MGMT_CIDR.split("/")
    mask = ".".join(str((0xFFFFFFFF << (32 - int(prefix)) >> s) & 0xFF) for s in (24, 16, 8, 0))
    for user in ("keystone", "nova", "placement"):
        hosts = host.check_output("mysql -N -B -e %s", f"SELECT Host FROM mysql.user WHERE User = '{user}'").split()
        assert hosts == [f"{net}/{mask}"], (user, hosts)


def test_mariadb_root_by_socket_only_and_no_leftovers(host):
    on(host, CTL)
    users = host.check_output("mysql -N -B -e %s", "SELECT CONCAT(User, '@', Host) FROM mysql.user").split()
    assert "root@localhost" in users
    assert not [u for u in users if u.startswith("@") or (u.startswith("root@") and u != "root@localhost")], users
    plugin = host.check_output("mysql -N -B -e %s",
                               "SELECT JSON_VALUE(Priv, '$.plugin') FROM mysql.global_priv WHERE User='root'")
    assert plugin == "unix_socket"
    assert "test" not in host.check_output("mysql -N -B -e 'SHOW DATABASES'").split()
    # TCP as root is refused even on the controller itself.
    assert host.run("mysql -h %s -u root -e 'SELECT 1'", CTL_IP).rc != 0


# ---------------------------------------------------------------------------- rabbitmq
def test_rabbitmq_listens_on_the_management_ip_only(host):
    on(host, CTL)
    assert listeners(host, 5672) == [CTL_IP]
    assert listeners(host, 25672) == [CTL_IP]
    assert listeners(host, 4369) == sorted(["127.0.0.1", CTL_IP])


def test_rabbitmq_users(host):
    on(host, CTL)
    users = {u["user"] for u in json.loads(host.check_output("rabbitmqctl -q list_users --formatter json"))}
    assert users == {"nova", "neutron"}
    # each user on its own vhost only
    for vhost, user in (("/nova", "nova"), ("/neutron", "neutron")):
        perms = json.loads(host.check_output(f"rabbitmqctl -q list_permissions -p {vhost} --formatter json"))
        assert [p["user"] for p in perms] == [user], (vhost, perms)
    assert host.run("rabbitmqctl authenticate_user guest guest").rc != 0
    assert host.check_output("rabbitmqctl -q eval 'node().'") == f"rabbit@{CTL}"


# AMQP 0-9-1 PLAIN login with the standard library only: prints "ok" when the broker answers
# Connection.Start-Ok with Connection.Tune, "refused" when it closes the connection.
AMQP_LOGIN = r'''
import socket, struct, sys
host, user, password, vhost = sys.argv[1:5]
s = socket.create_connection((host, 5672), timeout=10)
def frame():
    try:
        return read_frame()
    except ConnectionError:
        return None
def read_frame():
    head = b""
    while len(head) < 7:
        chunk = s.recv(7 - len(head))
        if not chunk:
            return None
        head += chunk
    ftype, chan, size = struct.unpack(">BHI", head)
    body = b""
    while len(body) < size + 1:
        chunk = s.recv(size + 1 - len(body))
        if not chunk:
            return None
        body += chunk
    return ftype, body[:-1]
def method(cls, mid, args):
    payload = struct.pack(">HH", cls, mid) + args
    s.sendall(struct.pack(">BHI", 1, 0, len(payload)) + payload + b"\xce")
def shortstr(v):
    return struct.pack(">B", len(v)) + v
def longstr(v):
    return struct.pack(">I", len(v)) + v
s.sendall(b"AMQP\x00\x00\x09\x01")
f = frame()
assert f and struct.unpack(">HH", f[1][:4]) == (10, 10), f  # Connection.Start
response = b"\x00" + user.encode() + b"\x00" + password.encode()
method(10, 11, struct.pack(">I", 0) + shortstr(b"PLAIN") + longstr(response) + shortstr(b"en_US"))
f = frame()
if f and struct.unpack(">HH", f[1][:4]) == (10, 30):  # Connection.Tune
    print("ok")
else:
    print("refused")
'''


def amqp_login(host, user, password):
    return host.check_output("python3 -c %s %s %s %s /nova", AMQP_LOGIN, CTL_IP, user, password)


def test_amqp_refuses_guest_and_accepts_nova_from_the_compute_node(host, secrets):
    on(host, CMP)
    assert amqp_login(host, "guest", "guest") == "refused"
    assert amqp_login(host, "nova", "wrong-password") == "refused"
    assert amqp_login(host, "nova", secrets["rabbitmq_nova_password"]) == "ok"


# ----------------------------------------------------------------------------- secrets
def test_no_secret_in_a_world_readable_file(host, secrets):
    values = [v for k, v in secrets.items()
              if isinstance(v, str) and len(v) >= 16 and k not in ("deploy_ssh_public_key", "root_password_hash")]
    assert values
    patterns = " ".join(f"-e {shlex.quote(v)}" for v in values)
    found = host.run(f"grep -rlsF {patterns} /etc /root /home /opt /srv /usr/local /var/lib /var/log /tmp /run")
    leaks = []
    for path in found.stdout.split():
        f = host.file(path)
        if f.mode & 0o004:
            leaks.append(f"{path} {oct(f.mode)}")
    assert not leaks, leaks
    if host.backend.get_hostname() == CTL:
        for path, mode in (("/etc/rabbitmq/rabbitmq.conf", 0o640), ("/var/lib/rabbitmq/.erlang.cookie", 0o400)):
            assert host.file(path).mode == mode, path


def test_no_secret_in_the_ansible_output(host, secrets):
    """Every play of this run (create, converge, idempotence) is logged to ANSIBLE_LOG_PATH
    (molecule.yml); no generated secret may appear in it."""
    from conftest import RUN_LOG as log

    on(host, CTL)
    assert log and os.path.isfile(log), "molecule.yml sets ANSIBLE_LOG_PATH for the provisioner"
    with open(log, encoding="utf-8", errors="replace") as fh:
        text = fh.read()
    assert "PLAY [Keystone]" in text and "PLAY [Nova compute]" in text, "the log does not hold the converge run"
    values = {k: v for k, v in secrets.items()
              if isinstance(v, str) and len(v) >= 16 and k not in ("deploy_ssh_public_key", "root_password_hash")}
    assert values
    leaked = sorted(k for k, v in values.items() if v in text)
    assert not leaked, f"secrets in the Ansible output: {leaked}"
