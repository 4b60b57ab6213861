"""Render tier for the base roles of controller and compute nodes (common, chrony, mariadb,
rabbitmq): the roles' own templates, rendered the way the template module renders them
(Ansible's Templar, trim_blocks, ansible_managed) with each role's defaults and first-found
platform vars for Fedora, EL and Debian facts, then checked by the real consumer
(tests/validators: chronyd -p, mariadbd --help --verbose, the broker's cuttlefish schema;
visudo -cf for sudoers). Broken inputs must fail the same checks.
"""

import configparser
import ipaddress
import shutil
import subprocess

import pytest
import validators
from conftest import REPO, platform_vars_files

from ansible.parsing.dataloader import DataLoader
from ansible.template import Templar, generate_ansible_template_vars, trust_as_template

ROLES = REPO / "roles"

FACTS = {
    "fedora": {"distribution": "Fedora", "distribution_major_version": "45", "os_family": "RedHat"},
    "el": {"distribution": "CentOS", "distribution_major_version": "10", "os_family": "RedHat"},
    "debian": {"distribution": "Debian", "distribution_major_version": "12", "os_family": "Debian"},
}

# What the plays (playbooks/common.yml, infra.yml) hand the roles for the lab's controller
# and compute node (inventory/lab), secrets replaced by generated-looking values.
CONTROLLER_IP = "10.60.0.11"
MGMT_CIDR = "10.60.0.0/24"
HOSTS = {"ctl01": CONTROLLER_IP, "cmp01": "10.60.0.21", "cmp02": "10.60.0.22", "stor01": "10.60.0.31"}
PARAMS = {
    "common": {"common_hostname": "ctl01", "common_domain": "lab.kickstack.test", "common_hosts": HOSTS,
               "common_profile": "controller", "common_deploy_user": "deploy",
               "common_deploy_ssh_keys": ["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKs kickstack-deploy"]},
    "chrony_server": {"chrony_role": "server", "chrony_servers": ["0.fedora.pool.ntp.org", "1.fedora.pool.ntp.org"],
                      "chrony_allow": [MGMT_CIDR], "chrony_daemon_options": ["-x"]},
    "chrony_client": {"chrony_role": "client", "chrony_servers": [CONTROLLER_IP], "chrony_allow": [MGMT_CIDR]},
    "mariadb": {"mariadb_bind_address": CONTROLLER_IP, "mariadb_client_network": MGMT_CIDR,
                "mariadb_users": [{"name": "nova", "password": "0" * 40, "databases": ["nova_api", "nova", "nova_cell0"]}]},
    "rabbitmq": {"rabbitmq_listen_address": CONTROLLER_IP, "rabbitmq_nodename_host": "ctl01",
                 "rabbitmq_users": [{"name": "nova", "password": "1" * 40, "vhost": "/nova"}]},
}


def _load(path):
    return DataLoader().load_from_file(str(path), trusted_as_template=True) or {}


def render(role, template, os_name, params, **extra):
    """Render roles/<role>/templates/<template> as the template module would on a host."""
    facts = dict(FACTS[os_name], hostname=params.get("common_hostname", "ctl01"))
    variables = {"inventory_hostname": "ctl01", "ansible_facts": facts}
    variables.update(_load(ROLES / role / "defaults" / "main.yml"))
    if (ROLES / role / "vars" / "main.yml").is_file():
        variables.update(_load(ROLES / role / "vars" / "main.yml"))
    for path in platform_vars_files(role, facts):
        variables.update(_load(path))
    variables.update(params)
    variables.update(extra)
    source = ROLES / role / "templates" / template
    variables.update(generate_ansible_template_vars(path=template, fullpath=str(source), dest_path="/etc/x"))
    templar = Templar(loader=DataLoader(), variables=variables)
    templar = templar.copy_with_new_env(searchpath=[str(source.parent)], available_variables=variables)
    return templar.template(trust_as_template(source.read_text()), escape_backslashes=False,
                            overrides={"trim_blocks": True, "lstrip_blocks": False})


def write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text)
    return path


def visudo(path):
    if shutil.which("visudo") is None:
        return ["visudo: not installed (apt-get install sudo)"]
    proc = subprocess.run(["visudo", "-cf", str(path)], capture_output=True, text=True)
    return [] if proc.returncode == 0 else [(proc.stdout + proc.stderr).strip() or f"visudo exited {proc.returncode}"]


OSES = sorted(FACTS)


@pytest.mark.parametrize("os_name", OSES)
@pytest.mark.parametrize("kind", ["chrony_server", "chrony_client"])
def test_chrony_conf(tmp_path, os_name, kind):
    text = render("chrony", "chrony.conf.j2", os_name, PARAMS[kind])
    assert text.splitlines()[:3] == ["#", "# Ansible managed", "#"]  # {{ ansible_managed | comment }}
    assert validators.chrony(write(tmp_path, "chrony.conf", text)) == []
    sources = [ln.split() for ln in text.splitlines() if ln.startswith(("server ", "pool ", "peer "))]
    if kind == "chrony_client":
        # The controller, with iburst, and nothing else; a client serves nobody.
        assert sources == [["server", CONTROLLER_IP, "iburst"]]
        assert not [ln for ln in text.splitlines() if ln.startswith(("allow", "local "))]
    else:
        assert [s[1] for s in sources] == PARAMS[kind]["chrony_servers"]
        assert f"allow {MGMT_CIDR}" in text.splitlines()


@pytest.mark.parametrize("os_name", OSES)
def test_chrony_broken_input_fails(tmp_path, os_name):
    bad = dict(PARAMS["chrony_server"], chrony_servers=["ntp.example.net maxpoll"])
    assert validators.chrony(write(tmp_path, "server.conf", render("chrony", "chrony.conf.j2", os_name, bad)))
    bad = dict(PARAMS["chrony_server"], chrony_makestep="sometimes")
    assert validators.chrony(write(tmp_path, "makestep.conf", render("chrony", "chrony.conf.j2", os_name, bad)))


@pytest.mark.parametrize("os_name", OSES)
def test_chrony_daemon_options_dropin(os_name):
    text = render("chrony", "override.conf.j2", os_name, PARAMS["chrony_server"])
    lines = text.splitlines()
    assert "ConditionCapability=" in lines  # -x needs no CAP_SYS_TIME
    assert lines[-1].startswith("ExecStart=") and lines[-1].endswith(" -x")
    assert lines[-2] == "ExecStart="


@pytest.mark.parametrize("os_name", OSES)
def test_mariadb_cnf(tmp_path, os_name):
    text = render("mariadb", "kickstack.cnf.j2", os_name, PARAMS["mariadb"])
    assert validators.mariadb_cnf(write(tmp_path, "kickstack.cnf", text)) == []
    assert f"bind-address = {CONTROLLER_IP}" in text.splitlines()


def test_mariadb_broken_input_fails(tmp_path):
    bad = dict(PARAMS["mariadb"], mariadb_character_set="no-such-charset")
    assert validators.mariadb_cnf(write(tmp_path, "bad.cnf", render("mariadb", "kickstack.cnf.j2", "fedora", bad)))


def test_mariadb_client_host_pattern():
    # The role turns the management CIDR into MariaDB's NETWORK/NETMASK host pattern.
    for cidr, pattern in (("10.60.0.0/24", "10.60.0.0/255.255.255.0"), ("172.16.0.0/12", "172.16.0.0/255.240.0.0"),
                          ("192.168.7.128/25", "192.168.7.128/255.255.255.128")):
        params = dict(PARAMS["mariadb"], mariadb_client_network=cidr)
        variables = _load(ROLES / "mariadb" / "vars" / "main.yml")
        variables.update(params)
        templar = Templar(loader=DataLoader(), variables=variables)
        assert templar.template(trust_as_template("{{ __mariadb_client_host }}")).strip() == pattern


@pytest.mark.parametrize("os_name", OSES)
def test_rabbitmq_conf(tmp_path, os_name):
    text = render("rabbitmq", "rabbitmq.conf.j2", os_name, PARAMS["rabbitmq"])
    assert validators.rabbitmq_conf(write(tmp_path, "rabbitmq.conf", text)) == []
    assert f"listeners.tcp.1 = {CONTROLLER_IP}:5672" in text.splitlines()
    env = render("rabbitmq", "rabbitmq-env.conf.j2", os_name, PARAMS["rabbitmq"])
    assert "NODENAME=rabbit@ctl01" in env.splitlines()
    assert subprocess.run(["sh", "-n", write(tmp_path, "rabbitmq-env.conf", env)]).returncode == 0


def test_rabbitmq_broken_input_fails(tmp_path):
    bad = dict(PARAMS["rabbitmq"], rabbitmq_port="amqp")
    assert validators.rabbitmq_conf(write(tmp_path, "bad.conf", render("rabbitmq", "rabbitmq.conf.j2", "debian", bad)))


@pytest.mark.parametrize("os_name", OSES)
def test_sudoers(tmp_path, os_name):
    text = render("common", "sudoers.j2", os_name, PARAMS["common"])
    assert visudo(write(tmp_path, "sudoers", text)) == []
    assert "deploy ALL=(ALL) NOPASSWD: ALL" in text.splitlines()


def test_sudoers_broken_input_fails(tmp_path):
    bad = dict(PARAMS["common"], common_deploy_user="deploy ALL")
    assert visudo(write(tmp_path, "sudoers", render("common", "sudoers.j2", "fedora", bad)))


@pytest.mark.parametrize("os_name", OSES)
def test_hosts(os_name):
    text = render("common", "hosts.j2", os_name, PARAMS["common"])
    entries = {}
    for line in text.splitlines():
        if line.strip() and not line.startswith("#"):
            ip, *names = line.split()
            ipaddress.ip_address(ip)  # raises on a malformed address
            for name in names:
                assert name == "localhost" or name not in entries, f"{name} listed twice"
                entries[name] = ip
    for name, ip in HOSTS.items():
        assert entries[name] == ip and entries[f"{name}.lab.kickstack.test"] == ip
    # RabbitMQ's and MariaDB's host names must not resolve to loopback.
    assert "127.0.1.1" not in text


@pytest.mark.parametrize("os_name", ["el", "fedora", "debian"])
def test_repos(os_name):
    facts = FACTS[os_name]
    text = render("common", "repos.repo.j2", os_name, PARAMS["common"])
    layered = {}
    for path in platform_vars_files("common", facts):
        layered.update(_load(path))
    repos = layered.get("__common_repos", [])
    parser = configparser.ConfigParser(interpolation=None)
    parser.read_string(text)
    assert len(parser.sections()) == len(repos)
    if os_name == "el":
        assert repos, "EL needs the RDO repository"
        for section in parser.sections():
            assert parser[section]["gpgcheck"] == "1"
            assert parser[section]["baseurl"].startswith("https://") and "/10-stream/" in parser[section]["baseurl"]
