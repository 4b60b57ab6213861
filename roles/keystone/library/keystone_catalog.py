#!/usr/bin/python
# Copyright: kickstack developers
# Apache-2.0
"""Keep keystone's projects, service users, role assignments, services and endpoints as declared."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: keystone_catalog
short_description: Declare projects, service users, role assignments, services and endpoints in keystone
description:
  - Talks to the identity API v3 with the standard library only (no openstacksdk on the node).
  - Reads first and writes only what differs, so C(changed) is true only when keystone was changed.
  - In check mode nothing is written; C(changes) lists what would be done.
  - A user's password is checked by logging in as the user; it is reset only when that fails.
options:
  auth_url:
    description: Identity API v3 URL, for example C(http://10.60.0.11:5000/v3).
    type: str
    required: true
  login_user:
    description: Administrator that performs the changes (needs the admin role on I(login_project)).
    type: str
    required: true
  login_password:
    description: Password of I(login_user).
    type: str
    required: true
  login_project:
    description: Project the administrator's token is scoped to.
    type: str
    default: admin
  domain_id:
    description: Domain of every project and user handled here.
    type: str
    default: default
  region:
    description: Region of the endpoints (created when missing).
    type: str
    default: RegionOne
  projects:
    description: Projects that must exist, as C({name, description}).
    type: list
    elements: dict
    default: []
  users:
    description: >-
      Users that must exist, as C({name, password, project, roles}); each gets I(roles) (default admin and
      service) on I(project).
    type: list
    elements: dict
    default: []
  services:
    description: >-
      Services with their endpoints, as C({name, type, description, public_url, internal_url, admin_url});
      an empty I(internal_url) means I(public_url), an empty I(admin_url) means I(internal_url).
    type: list
    elements: dict
    default: []
  timeout:
    description: Seconds to wait for each API request.
    type: int
    default: 30
"""

RETURN = r"""
changes:
  description: What was changed (or, in check mode, would be), one line each; no secret appears.
  returned: always
  type: list
  elements: str
"""

import json
from urllib.error import HTTPError
from urllib.parse import urlencode

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.urls import open_url

INTERFACES = ("public", "internal", "admin")


# A service user's roles unless it names its own: admin on the service project, and `service`,
# which keystonemiddleware requires of a service token (service_token_roles_required, on by
# default) before it accepts a call one service makes on a user's behalf.
SERVICE_ROLES = ["admin", "service"]


class KeystoneError(Exception):
    pass


class Keystone:
    def __init__(self, module):
        self.module = module
        self.url = module.params["auth_url"].rstrip("/")
        self.timeout = module.params["timeout"]
        self.check = module.check_mode
        self.changes = []
        self.token = None

    # ------------------------------------------------------------------ HTTP
    def request(self, method, path, body=None, token=True, ok=(200, 201, 204)):
        """(status, headers, decoded body) of one request; statuses outside ok raise."""
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if token:
            headers["X-Auth-Token"] = self.token
        data = json.dumps(body) if body is not None else None
        try:
            resp = open_url(self.url + path, method=method, data=data, headers=headers,
                            timeout=self.timeout, follow_redirects="none")
            status, raw, hdrs = resp.getcode(), resp.read(), resp.headers
        except HTTPError as err:
            status, raw, hdrs = err.code, err.read() if err.fp else b"", err.headers
        except Exception as err:  # connection refused, timeout, DNS: report, never hang
            raise KeystoneError(f"{method} {self.url}{path}: {err}")
        if status not in ok:
            detail = raw.decode("utf-8", "replace")[:300]
            raise KeystoneError(f"{method} {self.url}{path}: HTTP {status}: {detail}")
        return status, hdrs, (json.loads(raw) if raw else {})

    def password_auth(self, user, password, project=None):
        """Token of user (domain-scoped lookup by name), or None when keystone refuses the password."""
        ident = {"methods": ["password"], "password": {"user": {
            "name": user, "domain": {"id": self.module.params["domain_id"]}, "password": password}}}
        auth = {"identity": ident}
        if project:
            auth["scope"] = {"project": {"name": project, "domain": {"id": self.module.params["domain_id"]}}}
        status, hdrs, _ = self.request("POST", "/auth/tokens", {"auth": auth}, token=False, ok=(201, 401))
        return hdrs.get("X-Subject-Token") if status == 201 else None

    def find(self, collection, key, **query):
        """Every item of collection (e.g. "projects") matching query."""
        _, _, body = self.request("GET", f"/{collection}?{urlencode(query)}")
        return body[key]

    def one(self, collection, key, **query):
        found = self.find(collection, key, **query)
        if len(found) > 1:
            raise KeystoneError(f"more than one of {collection} match {query}")
        return found[0] if found else None

    def change(self, what, method, path, body=None):
        """Record a change and perform it unless in check mode; returns the API's answer or {}."""
        self.changes.append(what)
        if self.check:
            return {}
        return self.request(method, path, body)[2]

    # ----------------------------------------------------------- resources
    def region(self, name):
        status, _, _ = self.request("GET", f"/regions/{name}", ok=(200, 404))
        if status == 404:
            self.change(f"region {name} created", "POST", "/regions", {"region": {"id": name}})

    def project(self, spec):
        domain = self.module.params["domain_id"]
        found = self.one("projects", "projects", name=spec["name"], domain_id=domain)
        if found:
            return found["id"]
        body = {"project": {"name": spec["name"], "domain_id": domain, "enabled": True,
                            "description": spec.get("description") or ""}}
        made = self.change(f"project {spec['name']} created", "POST", "/projects", body)
        return made.get("project", {}).get("id")

    def role_id(self, name):
        found = self.one("roles", "roles", name=name)
        if found:
            return found["id"]
        made = self.change(f"role {name} created", "POST", "/roles", {"role": {"name": name}})
        return made.get("role", {}).get("id")

    def user(self, spec, project_ids):
        domain = self.module.params["domain_id"]
        name, password = spec["name"], spec["password"]
        project_id = project_ids.get(spec.get("project")) if spec.get("project") else None
        found = self.one("users", "users", name=name, domain_id=domain)
        if not found:
            body = {"user": {"name": name, "domain_id": domain, "password": password, "enabled": True}}
            if project_id:
                body["user"]["default_project_id"] = project_id
            made = self.change(f"user {name} created", "POST", "/users", body)
            user_id = made.get("user", {}).get("id")
        else:
            user_id = found["id"]
            if not found.get("enabled", True):
                self.change(f"user {name} enabled", "PATCH", f"/users/{user_id}", {"user": {"enabled": True}})
            if self.password_auth(name, password) is None:
                self.change(f"user {name}: password reset", "PATCH", f"/users/{user_id}",
                            {"user": {"password": password}})
        for role in spec.get("roles") or SERVICE_ROLES:
            role_id = self.role_id(role)
            if not (user_id and project_id and role_id):  # created just now in check mode
                self.changes.append(f"user {name}: role {role} on {spec.get('project')} granted")
                continue
            path = f"/projects/{project_id}/users/{user_id}/roles/{role_id}"
            status, _, _ = self.request("HEAD", path, ok=(200, 204, 404))
            if status == 404:
                self.change(f"user {name}: role {role} on {spec.get('project')} granted", "PUT", path)

    def service(self, spec, region):
        candidates = [s for s in self.find("services", "services", type=spec["type"])
                      if s.get("name") == spec["name"]]
        if len(candidates) > 1:
            raise KeystoneError(f"more than one service {spec['name']} of type {spec['type']}")
        if candidates:
            service_id = candidates[0]["id"]
        else:
            body = {"service": {"name": spec["name"], "type": spec["type"], "enabled": True,
                                "description": spec.get("description") or ""}}
            made = self.change(f"service {spec['name']} ({spec['type']}) created", "POST", "/services", body)
            service_id = made.get("service", {}).get("id")
        existing = self.find("endpoints", "endpoints", service_id=service_id) if service_id else []
        internal = spec.get("internal_url") or spec["public_url"]
        urls = {"public": spec["public_url"], "internal": internal, "admin": spec.get("admin_url") or internal}
        for interface in INTERFACES:
            url = urls[interface]
            mine = [e for e in existing if e["interface"] == interface and e.get("region_id") == region]
            label = f"endpoint {spec['name']} {interface}"
            if not mine:
                body = {"endpoint": {"service_id": service_id, "interface": interface, "url": url,
                                     "region_id": region, "enabled": True}}
                self.change(f"{label} created: {url}", "POST", "/endpoints", body)
                continue
            for extra in mine[1:]:
                self.change(f"{label}: duplicate {extra['url']} removed", "DELETE", f"/endpoints/{extra['id']}")
            if mine[0]["url"] != url or not mine[0].get("enabled", True):
                self.change(f"{label}: {mine[0]['url']} -> {url}", "PATCH", f"/endpoints/{mine[0]['id']}",
                            {"endpoint": {"url": url, "enabled": True}})

    def run(self):
        p = self.module.params
        self.token = self.password_auth(p["login_user"], p["login_password"], p["login_project"])
        if self.token is None:
            raise KeystoneError(f"keystone refused the login of {p['login_user']} on project {p['login_project']}")
        self.region(p["region"])
        project_ids = {spec["name"]: self.project(spec) for spec in p["projects"]}
        for spec in p["users"]:
            if spec.get("project") and spec["project"] not in project_ids:
                found = self.one("projects", "projects", name=spec["project"], domain_id=p["domain_id"])
                if not found:
                    raise KeystoneError(f"user {spec['name']}: project {spec['project']} does not exist")
                project_ids[spec["project"]] = found["id"]
            self.user(spec, project_ids)
        for spec in p["services"]:
            self.service(spec, p["region"])


def main():
    module = AnsibleModule(
        argument_spec={
            "auth_url": {"type": "str", "required": True},
            "login_user": {"type": "str", "required": True},
            "login_password": {"type": "str", "required": True, "no_log": True},
            "login_project": {"type": "str", "default": "admin"},
            "domain_id": {"type": "str", "default": "default"},
            "region": {"type": "str", "default": "RegionOne"},
            "projects": {"type": "list", "elements": "dict", "default": [], "options": {
                "name": {"type": "str", "required": True},
                "description": {"type": "str", "default": ""},
            }},
            "users": {"type": "list", "elements": "dict", "default": [], "options": {
                "name": {"type": "str", "required": True},
                "password": {"type": "str", "required": True, "no_log": True},
                "project": {"type": "str"},
                "roles": {"type": "list", "elements": "str", "default": SERVICE_ROLES},
            }},
            "services": {"type": "list", "elements": "dict", "default": [], "options": {
                "name": {"type": "str", "required": True},
                "type": {"type": "str", "required": True},
                "description": {"type": "str", "default": ""},
                "public_url": {"type": "str", "required": True},
                "internal_url": {"type": "str", "default": ""},
                "admin_url": {"type": "str", "default": ""},
            }},
            "timeout": {"type": "int", "default": 30},
        },
        supports_check_mode=True,
    )
    keystone = Keystone(module)
    try:
        keystone.run()
    except KeystoneError as err:
        module.fail_json(msg=str(err), changes=keystone.changes)
    module.exit_json(changed=bool(keystone.changes), changes=keystone.changes)


if __name__ == "__main__":
    main()
