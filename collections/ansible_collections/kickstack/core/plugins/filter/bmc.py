# -*- coding: utf-8 -*-
"""``fence_devices``: the storage pair's fence devices with their agent parameters complete,
each derived from the BMC (kickstack_bmc) of the host it fences with the device's own params
on top (module_utils/bmc.py). Used by playbooks/cluster.yml; the values carry passwords, so
the cluster role handles them as secrets."""

from __future__ import annotations

from ansible_collections.kickstack.core.plugins.module_utils.bmc import fence_params


def _plain(value):
    if isinstance(value, dict) or hasattr(value, "items"):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def fence_devices(devices, hostvars):
    out = []
    for dev in devices:
        target = dev["host"]
        bmc = None
        if target in hostvars:
            bmc = hostvars[target].get("kickstack_bmc")
        out.append({"name": dev["name"], "agent": dev["agent"], "host": target,
                    "params": fence_params(dev["agent"], _plain(bmc) if bmc else None,
                                           _plain(dev.get("params") or {}))})
    return out


class FilterModule:
    def filters(self):
        return {"fence_devices": fence_devices}
