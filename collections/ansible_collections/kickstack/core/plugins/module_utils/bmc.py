# -*- coding: utf-8 -*-
"""A host's BMC (kickstack_bmc), defined once and used twice: by playbooks/reinstall.yml to
network-boot the host once and power-cycle it, and by the storage pair's fence devices, which
take their connection parameters from the BMC of the node they fence.

fence_params() is the one derivation of a fence device's agent parameters; the model checks
the result (model.py) and the kickstack.core.fence_devices filter gives it to the cluster role.
Parameters a device sets itself win over derived ones (under any of their names), so a
device can add options (e.g. ``method: cycle``) or replace one. The derived names and order are the ones the agents'
pacemaker parameters use (ip, ipport, username, password, ...).
"""

from __future__ import annotations

from typing import Any, Dict, Optional

# The agents that can take their connection from kickstack_bmc, and the BMC protocol each speaks.
FENCE_AGENT_PROTOCOL = {
    "fence_redfish": "redfish",
    "fence_ipmilan": "ipmi",
    "fence_ipmilanplus": "ipmi",
}


# Names of one fence agent parameter (fence-agents accepts each of them).
_ALIASES = (
    frozenset({"ip", "ipaddr"}),
    frozenset({"ipport"}),
    frozenset({"username", "login"}),
    frozenset({"password", "passwd", "password_script", "passwd_script"}),
    frozenset({"ssl_insecure", "ssl-insecure", "notls"}),
)


def fence_params(agent: str, bmc: Optional[Dict[str, Any]], params: Optional[Dict[str, Any]]) -> Dict[str, Any]:
    """The device's agent parameters: derived from the fenced host's BMC (when the agent speaks
    the BMC's protocol), then the device's own params on top."""
    derived: Dict[str, Any] = {}
    if isinstance(bmc, dict) and FENCE_AGENT_PROTOCOL.get(agent) == bmc.get("protocol"):
        derived["ip"] = bmc["address"]
        if bmc.get("port") is not None:
            derived["ipport"] = bmc["port"]
        if bmc["protocol"] == "redfish":
            if bmc.get("verify_tls") is False:
                derived["ssl_insecure"] = 1
            derived["username"] = bmc["username"]
            derived["password"] = bmc["password"]
            if bmc.get("systems_uri"):
                derived["systems_uri"] = bmc["systems_uri"]
        else:
            derived["username"] = bmc["username"]
            derived["password"] = bmc["password"]
            derived["lanplus"] = 1
    own = params or {}
    # A parameter the device sets itself, under any of its names (cman's agents take the old
    # ones: ipaddr, login, passwd), replaces the derived one.
    given = {alias for name in own for group in _ALIASES if name in group for alias in group} | set(own)
    out = {k: v for k, v in derived.items() if k not in given}
    out.update(own)
    return out


def redfish_resource_id(bmc: Dict[str, Any]) -> Optional[str]:
    """The Redfish Id of the host's ComputerSystem (the last part of systems_uri), or None when
    the BMC manages one system and systems_uri is not given."""
    uri = bmc.get("systems_uri")
    return uri.rstrip("/").rsplit("/", 1)[-1] if uri else None
