# -*- coding: utf-8 -*-
"""Inventory plugin kickstack.core.yaml: Ansible's YAML inventory, without the copy.

ansible.builtin.yaml reads the file with the loader's cache off and then deep-copies what it
read before walking it; that copy protects nothing (no one else holds the data) and costs
more than the parse itself for a large site (about 4 s for 1000 hosts with every host's
variables in hosts.yml). This plugin walks the parsed file with the same code but skips the copy,
and reads plain files (no vault, no custom tags) with libyaml's safe loader instead of
Ansible's YAML constructor, which tags every value with its source position: 2 to 4 times
faster for a large hosts.yml. Strings are marked trusted for templating, as Ansible's
loader marks inventory strings, and duplicate keys are reported the way
DUPLICATE_YAML_DICT_KEY says. A file with a vault or another custom tag, or one the fast
loader refuses, is read by Ansible's loader (whose error message the operator then sees).
What the fast path gives up is the line number in messages about a templating error in a
value read from the file.
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

from ansible import constants as C
from ansible.errors import AnsibleParserError
from ansible.plugins.inventory import BaseInventoryPlugin
from ansible.plugins.inventory.yaml import InventoryModule as BuiltinYaml
from ansible.template import trust_as_template
from ansible.utils.display import Display

try:
    import yaml
    from yaml import CSafeLoader as _SafeLoader
except ImportError:  # no libyaml: Ansible's loader only
    _SafeLoader = None

if _SafeLoader is not None:
    class _FastLoader(_SafeLoader):
        """libyaml's safe loader that reports duplicate mapping keys like Ansible's does."""

        def construct_mapping(self, node, deep=False):
            mapping = super().construct_mapping(node, deep)
            if len(mapping) != len(node.value):
                seen = set()
                for key_node, _value in node.value:
                    key = self.construct_object(key_node, deep=deep)
                    if key in seen:
                        msg = (f"Found duplicate mapping key {key!r} in {self.name}, line "
                               f"{key_node.start_mark.line + 1}.")
                        mode = C.config.get_config_value("DUPLICATE_YAML_DICT_KEY")
                        if mode == "error":
                            raise AnsibleParserError(msg)
                        if mode == "warn":
                            Display().warning(f"{msg} Using last defined value only.")
                    seen.add(key)
            return mapping


def _trust_strings(value):
    """value with every string marked trusted for templating (in place for containers), as
    Ansible's loader marks the strings of inventory files (an untrusted string would show as
    unsafe in ansible-inventory's output, and would not be templated)."""
    if isinstance(value, str):
        return trust_as_template(value)
    if isinstance(value, dict):
        for key, item in value.items():
            if isinstance(item, (str, dict, list)):
                value[key] = _trust_strings(item)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            if isinstance(item, (str, dict, list)):
                value[index] = _trust_strings(item)
    return value


def _load_fast(path):
    """The file's data through libyaml, or None when Ansible's loader must read it."""
    if _SafeLoader is None:
        return None
    with open(path, "rb") as handle:
        text = handle.read()
    if text.lstrip().startswith(b"$ANSIBLE_VAULT") or b"!" in text and (b"!vault" in text or b"!unsafe" in text):
        return None
    loader = _FastLoader(text)
    loader.name = path
    try:
        data = loader.get_single_data()
    except yaml.YAMLError:
        return None
    finally:
        loader.dispose()
    return _trust_strings(data)


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
            data = _load_fast(path)
            if data is None:
                # unsafe=True: hand back the data as parsed, without the deep copy.
                data = self.loader.load_from_file(path, cache="none", unsafe=True, trusted_as_template=True)
        except AnsibleParserError:
            raise
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
