# -*- coding: utf-8 -*-
"""Inventory plugin kickstack.core.yaml: Ansible's YAML inventory, without the copy.

ansible.builtin.yaml reads the file with the loader's cache off and then deep-copies what it
read before walking it; that copy protects nothing (no one else holds the data) and costs
more than the parse itself for a large site (about 4 s for 1000 hosts with every host's
variables in hosts.yml). This plugin reads the file the same way (same YAML loader, vault
and template trust) and walks it with the same code; it only skips the copy.
"""

from __future__ import annotations

DOCUMENTATION = """
    name: yaml
    short_description: YAML inventory files, read like ansible.builtin.yaml but faster for large sites.
    description:
        - Same format and behaviour as ansible.builtin.yaml (groups with hosts, vars and children).
        - Enable it ahead of ansible.builtin.yaml in the inventory enable_plugins list.
    options:
      yaml_extensions:
        description: list of 'valid' extensions for files containing YAML
        type: list
        elements: string
        default: ['.yaml', '.yml', '.json']
        env:
          - name: ANSIBLE_YAML_FILENAME_EXT
          - name: ANSIBLE_INVENTORY_PLUGIN_EXTS
        ini:
          - key: yaml_valid_extensions
            section: defaults
          - section: inventory_plugin_yaml
            key: yaml_valid_extensions
"""

EXAMPLES = """
# ansible.cfg
# [inventory]
# enable_plugins = ansible.builtin.host_list, kickstack.core.yaml, ansible.builtin.yaml, ansible.builtin.ini
"""

import gc
from collections.abc import MutableMapping

from ansible.errors import AnsibleParserError
from ansible.plugins.inventory import BaseInventoryPlugin
from ansible.plugins.inventory.yaml import InventoryModule as BuiltinYaml


class InventoryModule(BuiltinYaml):

    NAME = "kickstack.core.yaml"

    def parse(self, inventory, loader, path, cache=True):
        # The parse makes millions of small objects that all live on: the cyclic garbage
        # collector would walk them again and again for nothing (for 10 000 hosts that costs
        # more than the parse). It is off while parsing; afterwards what the parse made is
        # frozen (gc.freeze: kept out of later collections, which then stay cheap). The
        # inventory lives as long as the process, so nothing is lost by not collecting it.
        enabled = gc.isenabled()
        gc.disable()
        try:
            self._parse(inventory, loader, path)
        finally:
            gc.freeze()
            if enabled:
                gc.enable()

    def _parse(self, inventory, loader, path):
        BaseInventoryPlugin.parse(self, inventory, loader, path)
        self.set_options()

        try:
            # unsafe=True: hand back the data as parsed, without the deep copy.
            data = self.loader.load_from_file(path, cache="none", unsafe=True, trusted_as_template=True)
        except Exception as exc:
            raise AnsibleParserError(exc)

        if not data:
            raise AnsibleParserError("Parsed empty YAML file")
        if not isinstance(data, MutableMapping):
            raise AnsibleParserError(f"YAML inventory has invalid structure, it should be a dictionary, got: {type(data)}")
        if data.get("plugin"):
            raise AnsibleParserError("Plugin configuration YAML file, not YAML inventory")
        for group_name in data:
            self._parse_group(group_name, data[group_name])
