# -*- coding: utf-8 -*-
"""Filters for service configuration files, shared by the OpenStack roles.

- ``ini``: a dict of sections ({section: {key: value}}) as an INI file body. None, "" and []
  are left out (the service keeps its own default); booleans are written true/false and lists
  comma-separated, as oslo.config reads them. A section, key or value that would break
  out of its line (a newline or another control character, brackets or "=" in a name) is an
  error, never a new key or section in the file.
- ``db_url``: an SQLAlchemy URL for MariaDB (mysql+pymysql://user:password@host/name?charset=utf8),
  user and password percent-encoded.
- ``amqp_url``: an oslo.messaging transport URL (rabbit://user:password@host:port/vhost), user
  and password percent-encoded.
- ``openstack_cloud``: one cloud of a clouds.yaml (openstacksdk's layout) for a user and project.
- ``keystone_auth``: the options of a keystoneauth password section ([keystone_authtoken],
  [placement], [service_user], ...) for a service user of the service project.
"""

from __future__ import annotations

import re
from urllib.parse import quote

from ansible.errors import AnsibleFilterError
from ansible_collections.kickstack.core.plugins.module_utils.quoting import CONTROL_RE as _CONTROL

_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.:-]*")
_HOST = re.compile(r"[A-Za-z0-9][A-Za-z0-9.-]*|\[[0-9A-Fa-f:.]+\]")


def _value(section, key, value):
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return ",".join(_value(section, key, v) for v in value)
    if isinstance(value, dict):
        raise AnsibleFilterError(f"ini: [{section}] {key}: a mapping is not an INI value")
    text = str(value)
    if _CONTROL.search(text):
        raise AnsibleFilterError(f"ini: [{section}] {key}: the value holds a newline or another control "
                                 "character, which would start a new line of the file")
    return text


def ini(conf):
    """{section: {key: value}} -> INI text (see the module docstring)."""
    if not isinstance(conf, dict):
        raise AnsibleFilterError(f"ini: expected a mapping of sections, got {type(conf).__name__}")
    out = []
    for section, keys in conf.items():
        if not isinstance(section, str) or not _NAME.fullmatch(section):
            raise AnsibleFilterError(f"ini: section name {section!r}: letters, digits and _ . : - only")
        if not isinstance(keys, dict):
            raise AnsibleFilterError(f"ini: [{section}]: expected a mapping of keys, got {type(keys).__name__}")
        out.append(f"\n[{section}]")
        for key, value in keys.items():
            if not isinstance(key, str) or not _NAME.fullmatch(key):
                raise AnsibleFilterError(f"ini: [{section}] key {key!r}: letters, digits and _ . : - only")
            if value is None or (isinstance(value, (str, list, tuple)) and len(value) == 0):
                continue
            out.append(f"{key} = {_value(section, key, value)}")
    return "\n".join(out) + "\n"


def _credentials(kind, user, password):
    for name, item in (("user", user), ("password", password)):
        if not isinstance(item, str) or not item:
            raise AnsibleFilterError(f"{kind}: the {name} must be a non-empty string")
    return f"{quote(user, safe='')}:{quote(password, safe='')}"


def _host(kind, host):
    if not isinstance(host, str) or not _HOST.fullmatch(host):
        raise AnsibleFilterError(f"{kind}: host {host!r} is not a host name or address")
    return host


def db_url(user, password, host, database, driver="mysql+pymysql", query="charset=utf8"):
    """user | kickstack.core.db_url(password, host, database) -> SQLAlchemy URL."""
    if not isinstance(database, str) or not _NAME.fullmatch(database):
        raise AnsibleFilterError(f"db_url: database name {database!r}: letters, digits and _ . : - only")
    url = f"{driver}://{_credentials('db_url', user, password)}@{_host('db_url', host)}/{database}"
    return f"{url}?{query}" if query else url


def amqp_url(user, password, host, port, vhost):
    """user | kickstack.core.amqp_url(password, host, port, vhost) -> oslo.messaging URL.

    The virtual host is the URL's path after the first "/", so "/nova" gives "...:5672//nova"."""
    if not isinstance(vhost, str) or _CONTROL.search(vhost) or "?" in vhost or "#" in vhost:
        raise AnsibleFilterError(f"amqp_url: virtual host {vhost!r} is not usable in a URL")
    try:
        port = int(port)
    except (TypeError, ValueError):
        raise AnsibleFilterError(f"amqp_url: port {port!r} is not a number") from None
    if not 0 < port < 65536:
        raise AnsibleFilterError(f"amqp_url: port {port} is out of range")
    return f"rabbit://{_credentials('amqp_url', user, password)}@{_host('amqp_url', host)}:{port}/{vhost}"


def keystone_auth(user, password, auth_url, region=None, project="service", domain="Default", **extra):
    """user | kickstack.core.keystone_auth(password, auth_url[, region]) -> {option: value}.

    No region leaves region_name out (a section such as [service_user] has none). Keyword
    arguments add options (e.g. valid_interfaces='internal', www_authenticate_uri=...)."""
    _credentials("keystone_auth", user, password)
    if not isinstance(auth_url, str) or not re.fullmatch(r"https?://[^\s]+", auth_url):
        raise AnsibleFilterError(f"keystone_auth: auth_url {auth_url!r} is not an http(s) URL")
    return {"auth_type": "password", "auth_url": auth_url, **({"region_name": region} if region else {}),
            "project_domain_name": domain, "user_domain_name": domain, "project_name": project,
            "username": user, "password": password, **extra}


def openstack_cloud(user, password, auth_url, region, project, domain="Default"):
    """user | kickstack.core.openstack_cloud(password, auth_url, region, project) -> a clouds.yaml entry."""
    auth = keystone_auth(user, password, auth_url, project=project, domain=domain)
    del auth["auth_type"]
    return {"auth": auth, "auth_type": "password", "region_name": region, "identity_api_version": 3,
            "interface": "public"}


class FilterModule:
    def filters(self):
        return {"ini": ini, "db_url": db_url, "amqp_url": amqp_url, "keystone_auth": keystone_auth,
                "openstack_cloud": openstack_cloud}
