"""Smoke checks on the nspawn test hosts (molecule verifier: testinfra)."""


def test_systemd_is_pid1(host):
    assert host.file("/proc/1/comm").content_string.strip() == "systemd"
    state = host.run("systemctl is-system-running").stdout.strip()
    assert state in ("running", "degraded"), state


def test_hostname(host):
    assert host.check_output("hostname") == host.backend.get_hostname()


def test_other_nodes_pingable(host):
    me = host.backend.get_hostname()
    peers = [h for h in host.ansible.get_variables()["groups"]["all"] if h != me]
    assert peers, "the scenario has a single node"
    for peer in peers:
        # /etc/hosts holds the lab addresses, so this goes across the bridge.
        cmd = host.run("ping -c 1 -W 2 %s", peer)
        assert cmd.rc == 0, f"{me} cannot ping {peer}: {cmd.stdout}{cmd.stderr}"
