# -*- coding: utf-8 -*-
# Documentation stub: the work is done by the action plugin of the same name, on the controller.

DOCUMENTATION = r"""
---
module: preflight
short_description: Validate the whole kickstack inventory and build the site model
description:
  - Reads the site-wide and every host's C(kickstack_*) variables in one pass on the controller.
  - "Fails before any host is touched, listing every problem as C(host: field: message)."
  - On success sets the fact C(kickstack_model) (no secret values in it).
options:
  platforms:
    description: Supported OS releases, name to platform data (family, major, ksversion, install tree).
    type: dict
    required: true
  required_secrets:
    description: Profile (or C(all)) to the names of C(kickstack_secrets) keys a site with such hosts needs.
    type: dict
    default: {}
  require_pxe:
    description: Whether the site must have its boot server (false for configuring already installed nodes only).
    type: bool
    default: true
  converge:
    description: Keep the facts only the converge plays read (drbd, cluster, hosts_entries); provisioning turns it off.
    type: bool
    default: true
author: kickstack developers
"""

EXAMPLES = r"""
- name: Validate the inventory
  kickstack.core.preflight:
    platforms: "{{ __preflight_platforms }}"
    required_secrets: "{{ __preflight_required_secrets }}"
"""

RETURN = r"""
problems:
  description: "Every problem found, as C(host: field: message)."
  returned: failure
  type: list
  elements: str
"""

if __name__ == "__main__":
    raise SystemExit("kickstack.core.preflight runs as an action plugin on the controller")
