# -*- coding: utf-8 -*-
# Documentation stub: the work is done by the action plugin of the same name, on the controller.

DOCUMENTATION = r"""
---
module: pxe_render
short_description: Render kickstarts, PXE boot entries and the boot server configuration in bulk
description:
  - Compiles each template once and renders it in-process for every host of C(kickstack_model),
    so a thousand hosts take seconds rather than a template task per file.
  - Every value is quoted for the format it lands in (kickstart arguments, %packages lines, shell
    and JSON in %post, GRUB words, kernel arguments, dnsmasq fields) or refused. A refusal names
    the host, the field and the file, and nothing is written; a host or MAC that cannot be a
    plain file name, or an output path leaving I(dest), is refused the same way.
  - Writes a file only when its content or mode differs, removes files of hosts no longer in the
    inventory, and supports check and diff mode. Files carrying a secret are written 0600 and never
    shown in a diff.
options:
  model:
    description:
      - The site model set by M(kickstack.core.preflight).
      - Defaults to the fact C(kickstack_model) of the host the task runs on, read without templating.
    type: dict
  preflight:
    description:
      - Options of M(kickstack.core.preflight) (C(platforms), C(required_secrets), C(require_pxe)).
      - When set, the whole inventory is checked and the model built in this task instead of read
        from a fact; any problem fails the task before a file is written.
    type: dict
  hosts:
    description:
      - Render the files of these inventory hosts only, plus the shared dnsmasq configuration and
        index (which list every host); no file is removed. An empty list is an error.
    type: list
    elements: str
  template_dir:
    description: Directory holding C(kickstart/) and C(pxe/) templates.
    type: path
    required: true
  bundle_source:
    description:
      - The checkout whose C(playbooks/), C(roles/) and C(collections/) go into the bundle of each host
        with kickstack_delivery standalone (default the parent of I(template_dir)). Not read when no
        host is standalone.
    type: path
  dest:
    description: Build directory to write into.
    type: path
    required: true
  context:
    description: Extra variables given to every template (per-family package lists, ports, URLs).
    type: dict
    default: {}
author: kickstack developers
"""

EXAMPLES = r"""
- name: Render the PXE tree
  kickstack.core.pxe_render:
    template_dir: "{{ playbook_dir }}/../templates"
    dest: build/pxe
"""

RETURN = r"""
changed_files:
  description: Files written (or that would be written in check mode), relative to dest.
  returned: always
  type: list
  elements: str
removed_files:
  description: Stale files of hosts no longer in the inventory.
  returned: always
  type: list
  elements: str
index:
  description: One line per installed host, as in index.txt.
  returned: always
  type: list
  elements: str
"""

if __name__ == "__main__":
    raise SystemExit("kickstack.core.pxe_render runs as an action plugin on the controller")
