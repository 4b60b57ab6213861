"""Keystone on the cloud scenario (role keystone on ctl01): the identity API on the management
address only, fernet keys private to keystone, the admin and service users, the catalog."""

import json
import os

import pytest

CTL, CTL_IP = "ctl01", os.environ.get("KICKSTACK_TEST_CTL_IP", "10.60.0.11")
AUTH_URL = f"http://{CTL_IP}:5000/v3"

# Password login with the standard library; prints the HTTP status and, on success, the
# token's project, roles and catalog as JSON.
LOGIN = r'''
import json, sys, urllib.error, urllib.request
url, user, password, project = sys.argv[1:5]
auth = {"identity": {"methods": ["password"], "password": {"user": {
    "name": user, "domain": {"id": "default"}, "password": password}}}}
if project:
    auth["scope"] = {"project": {"name": project, "domain": {"id": "default"}}}
req = urllib.request.Request(url + "/auth/tokens", data=json.dumps({"auth": auth}).encode(),
                             headers={"Content-Type": "application/json"})
try:
    with urllib.request.urlopen(req, timeout=30) as resp:
        token = json.load(resp)["token"]
        print(json.dumps({"status": resp.status, "project": token.get("project", {}).get("name"),
                          "roles": sorted(r["name"] for r in token.get("roles", [])),
                          "catalog": token.get("catalog", [])}))
except urllib.error.HTTPError as err:
    print(json.dumps({"status": err.code}))
'''


@pytest.fixture
def controller(host):
    if host.backend.get_hostname() != CTL:
        pytest.skip(f"runs on {CTL}")
    return host


@pytest.fixture(scope="module")
def secrets(host):
    return host.ansible.get_variables()["kickstack_secrets"]


def login(host, user, password, project=""):
    return json.loads(host.check_output("python3 -c %s %s %s %s %s", LOGIN, AUTH_URL, user, password, project))


def test_keystone_listens_on_the_management_ip_only(controller):
    out = controller.check_output("ss -tlnH 'sport = :5000'")
    assert sorted({line.split()[3].rsplit(":", 1)[0] for line in out.splitlines() if line.strip()}) == [CTL_IP]
    assert controller.service("keystone").is_running
    assert controller.service("keystone").is_enabled


def test_keystone_files_are_private(controller):
    conf = controller.file("/etc/keystone/keystone.conf")
    assert (conf.user, conf.group, conf.mode) == ("root", "keystone", 0o640)
    for repo in ("/etc/keystone/fernet-keys", "/etc/keystone/credential-keys"):
        d = controller.file(repo)
        assert (d.user, d.mode) == ("keystone", 0o700), repo
        keys = controller.check_output(f"find {repo} -type f -printf '%u %m %f\\n'").splitlines()
        assert keys and all(k.startswith("keystone 600 ") for k in keys), keys


def test_admin_gets_a_token_with_the_catalog(controller, secrets):
    token = login(controller, "admin", secrets["keystone_admin_password"], "admin")
    assert token["status"] == 201 and "admin" in token["roles"]
    endpoints = {(svc["type"], ep["interface"]): ep["url"] for svc in token["catalog"] for ep in svc["endpoints"]}
    for interface in ("public", "internal", "admin"):
        assert endpoints[("identity", interface)] == AUTH_URL
        assert endpoints[("compute", interface)] == f"http://{CTL_IP}:8774/v2.1"
        assert endpoints[("placement", interface)] == f"http://{CTL_IP}:8778"
        assert endpoints[("image", interface)] == f"http://{CTL_IP}:9292"
        assert endpoints[("network", interface)] == f"http://{CTL_IP}:9696"


@pytest.mark.parametrize("user", ["nova", "placement", "glance", "neutron"])
def test_service_users_have_admin_on_the_service_project(controller, secrets, user):
    token = login(controller, user, secrets[f"keystone_{user}_password"], "service")
    assert token["status"] == 201 and token["project"] == "service" and "admin" in token["roles"], token
    assert login(controller, user, "wrong-password", "service")["status"] == 401
    # A service user has no business in the admin project.
    assert login(controller, user, secrets[f"keystone_{user}_password"], "admin")["status"] == 401
