"""Ansible vars plugin: the Polycrate snapshot as variables, as Polycrate's ``polycrate_vars``.

Polycrate enables a vars plugin of this name (``ANSIBLE_VARS_ENABLED=polycrate_vars``) that
loads the YAML file named by ``POLYCRATE_WORKSPACE_SNAPSHOT_YAML``, so that a script action's
own ``ansible-playbook`` (run without ``-e @snapshot``) sees ``block``, ``workspace`` and
``action`` too. This is cratekeeper's implementation of the same behaviour: a missing file is
an error (the run's contract is broken), an empty one gives no variables.
"""

from __future__ import annotations

import os
from typing import Any

from ansible.errors import AnsibleParserError
from ansible.plugins.vars import BaseVarsPlugin

DOCUMENTATION = """
    name: polycrate_vars
    short_description: Loads the Polycrate workspace snapshot as variables
    requirements:
        - Enabled in configuration (ANSIBLE_VARS_ENABLED)
    description:
        - Loads the YAML file named by POLYCRATE_WORKSPACE_SNAPSHOT_YAML as variables.
    options:
      stage:
        ini:
          - key: stage
            section: vars_polycrate_vars
        env:
          - name: ANSIBLE_VARS_PLUGIN_STAGE
    extends_documentation_fragment:
      - vars_plugin_staging
"""


class VarsModule(BaseVarsPlugin):
    REQUIRES_ENABLED = True

    def get_vars(self, loader: Any, path: Any, entities: Any, cache: bool = True) -> Any:
        super().get_vars(loader, path, entities)
        snapshot = os.environ.get("POLYCRATE_WORKSPACE_SNAPSHOT_YAML")
        if not snapshot:
            return {}
        if not os.path.isfile(snapshot):  # noqa: PTH113 - Ansible's plugins use os.path
            raise AnsibleParserError(f"polycrate_vars: snapshot file not found: {snapshot}")
        data = loader.load_from_file(snapshot, cache="all" if cache else "none")
        return data if isinstance(data, dict) else {}
