"""Standalone delivery (molecule.yml: kickstack_lab.delivery): ctl01 and cmp01 were installed
from their kickstarts' %post (tests/harness/nspawn.py install) and configured themselves on
first boot from their bundles (create.yml: tasks/standalone.yml, which also checked that a bundle is
refused from another address and with a used token). What the node keeps of it."""


def test_bundle_is_root_only(host):
    bundle = host.file("/var/lib/kickstack/bundle")
    assert bundle.is_directory and bundle.user == "root" and bundle.mode == 0o700
    assert host.run("find /var/lib/kickstack/bundle ! -user root -o -type f -perm /077 -o -type d -perm /077").stdout == ""
    env = host.file("/etc/kickstack/firstboot.env")
    assert env.user == "root" and env.mode == 0o600
    assert host.file("/var/lib/kickstack/firstboot.done").exists


def test_first_boot_succeeded_once_and_is_disabled(host):
    unit = host.service("kickstack-firstboot")
    assert not unit.is_enabled and not unit.is_running
    journal = host.check_output("journalctl -u kickstack-firstboot --no-pager -o cat")
    assert "this node is configured" in journal
    assert journal.count("PLAY RECAP") == 1, "the first boot needed more than one attempt"
    assert "failed=0" in journal.split("PLAY RECAP", 1)[1]


def secrets_in(host, text):
    """Names (never values) of the lab's secrets found in text; the public key is no secret."""
    secrets = host.ansible.get_variables()["kickstack_secrets"]
    return sorted(name for name, value in secrets.items()
                  if isinstance(value, str) and len(value) >= 8 and value in text and name != "deploy_ssh_public_key")


def test_no_secret_in_the_journal(host):
    """The first boot's Ansible logs its module calls to the journal: never a secret's value."""
    found = secrets_in(host, host.check_output("journalctl --no-pager -o cat"))
    assert not found, f"secrets in the journal of {host.backend.get_hostname()}: {found}"


def test_provisioned_marker_says_standalone(host):
    assert '"mode":"standalone"' in host.file("/etc/kickstack/provisioned.json").content_string.replace(" ", "")
