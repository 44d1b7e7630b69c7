"""Polycrate's runtime contract as every runner gives it: environment, command, script, files.

Pure builders: given an :class:`ActionRequest` and where the runner put things
(:class:`RunPaths`), they say what the action's environment is, which command runs (from the
block's workdir) and what the snapshot and script files hold. The local, docker and kubernetes
runners differ only in the paths they pass. Polycrate's own mechanics (``cmd/actions.go``,
``cmd/workspace.go`` ``bootstrapEnvVars``) are followed where they make sense without its
container; docs/polycrate-compatibility.md ("Runtime") lists what is set, what is not, and why.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path, PurePosixPath

import yaml

from controller.errors import RunError
from controller.runners.base import ActionRequest, RunPaths

PLUGIN_DIR = Path(__file__).parent
CALLBACK_DIR = PLUGIN_DIR / "callback_plugins"
VARS_DIR = PLUGIN_DIR / "vars_plugins"
SCRIPT_HEADER = ("#!/bin/bash", "set -euo pipefail")
"""Polycrate's script header (``Action.GetExecutionScript``)."""

POLYCRATE_ANSIBLE_DEFAULTS = {
    "ANSIBLE_DISPLAY_SKIPPED_HOSTS": "False",
    "ANSIBLE_DISPLAY_OK_HOSTS": "True",
    "ANSIBLE_HOST_KEY_CHECKING": "False",
    "ANSIBLE_ACTION_WARNINGS": "False",
    "ANSIBLE_COMMAND_WARNINGS": "False",
    "ANSIBLE_LOCALHOST_WARNING": "False",
    "ANSIBLE_DEPRECATION_WARNINGS": "False",
    # Polycrate sets polycrate_vars alone, which turns Ansible's group_vars/host_vars off.
    "ANSIBLE_VARS_ENABLED": "host_group_vars,polycrate_vars",
    "ANSIBLE_RUN_VARS_PLUGINS": "start",
}
"""The ``ANSIBLE_*`` values Polycrate's ``bootstrapEnvVars`` sets that mean the same here."""

PROTECTED = frozenset(
    {
        "PATH",
        "HOME",
        "KUBECONFIG",
        "K8S_AUTH_KUBECONFIG",
        "POLYCRATE_WORKSPACE",
        "POLYCRATE_WORKSPACE_SNAPSHOT_YAML",
        "ANSIBLE_HOME",
        "ANSIBLE_REMOTE_TMP",
        "ANSIBLE_LOCAL_TEMP",
        "ANSIBLE_CALLBACK_PLUGINS",
        "ANSIBLE_CALLBACKS_ENABLED",
        "ANSIBLE_VARS_PLUGINS",
        "CRATEKEEPER_EVENTS_FILE",
    }
)
"""Variables a block's ``extraenv`` may not replace: they hold the one-workspace-one-cluster
rule, the run's private scratch and cratekeeper's own view of the run."""


def workdir(request: ActionRequest, paths: RunPaths) -> str:
    """The block's workdir as the action sees it: its working directory."""
    return paths.under_root(request.workdir)


def action_env(
    request: ActionRequest,
    paths: RunPaths,
    *,
    home: str,
    events_file: str,
    path: str,
    plugins: str,
    in_container: bool,
    script: str | None = None,
) -> dict[str, str]:
    """The complete environment of the action: nothing from the controller leaks in.

    ``plugins`` is the directory holding cratekeeper's ``callback_plugins/`` and
    ``vars_plugins/`` as the action sees it; ``script`` the script file of a script action.
    Ansible's scratch (``ANSIBLE_REMOTE_TMP``, ``ANSIBLE_LOCAL_TEMP``: AnsiballZ files carry
    module arguments) lives under the run's private ``home``, removed with the run.
    """
    env = {
        "PATH": path,
        "HOME": home,
        "LANG": "C.UTF-8",
        "PYTHONUNBUFFERED": "1",
        **POLYCRATE_ANSIBLE_DEFAULTS,
        "ANSIBLE_HOME": f"{home}/.ansible",
        "ANSIBLE_REMOTE_TMP": f"{home}/.ansible/tmp",
        "ANSIBLE_LOCAL_TEMP": f"{home}/.ansible/tmp/local",
        "ANSIBLE_ROLES_PATH": f"{home}/.ansible/roles:/usr/share/ansible/roles:/etc/ansible/roles",
        "ANSIBLE_NOCOLOR": "1",
        "ANSIBLE_RETRY_FILES_ENABLED": "0",
        "ANSIBLE_INVENTORY_UNPARSED_WARNING": "0",
        "ANSIBLE_CALLBACK_PLUGINS": f"{plugins}/callback_plugins",
        "ANSIBLE_CALLBACKS_ENABLED": "cratekeeper_events",
        "ANSIBLE_VARS_PLUGINS": f"{plugins}/vars_plugins",
        "CRATEKEEPER_EVENTS_FILE": events_file,
        "KUBECONFIG": paths.kubeconfig,
        "K8S_AUTH_KUBECONFIG": paths.kubeconfig,
        "POLYCRATE_WORKSPACE": paths.root,
        "POLYCRATE_WORKSPACE_SNAPSHOT_YAML": paths.snapshot,
        "POLYCRATE_BLOCK": request.block,
        "POLYCRATE_BLOCK_WORKDIR": workdir(request, paths),
        "POLYCRATE_ACTION": request.action,
        "POLYCRATE_FORCE": "0",
        "IN_CI": "true",
        "IN_CONTAINER": "1" if in_container else "0",
    }
    inventory = request.inventory_file
    if inventory is not None:
        env["ANSIBLE_INVENTORY"] = paths.under_root(inventory)
    if (request.workspace_dir / "id_rsa").is_file():  # Polycrate's default sshPrivateKey
        env["ANSIBLE_PRIVATE_KEY_FILE"] = env["ANSIBLE_SSH_PRIVATE_KEY_FILE"] = paths.under_root(
            "id_rsa"
        )
    if script is not None:
        env["POLYCRATE_RUNTIME_SCRIPT_PATH"] = script
    env.update(extra_env(request))
    return env


def extra_env(request: ActionRequest) -> dict[str, str]:
    """The block's ``extraenv``; replacing a variable cratekeeper relies on is an error."""
    refused = sorted(PROTECTED.intersection(request.extraenv))
    if refused:
        raise RunError(
            f"block {request.block!r}: extraenv may not set {', '.join(refused)}: cratekeeper "
            "sets them for every run (the workspace kubeconfig, the run's private scratch); "
            "remove them from extraenv"
        )
    return {str(key): str(value) for key, value in request.extraenv.items()}


def command(
    request: ActionRequest, paths: RunPaths, *, ansible_playbook: str, script: str
) -> list[str]:
    """What runs, from the block's workdir: ``ansible-playbook -e @SNAPSHOT PLAYBOOK`` for a
    playbook action (Polycrate's ``saveAnsibleScript``; ``--check --diff`` in check mode),
    ``bash SCRIPT`` for a script."""
    if request.playbook is not None:
        check = ["--check", "--diff"] if request.check else []
        return [ansible_playbook, *check, "-e", f"@{paths.snapshot}", request.playbook]
    return ["/bin/bash", script]


def script_text(request: ActionRequest, paths: RunPaths) -> str | None:
    """The script file of a script action (Polycrate's header, then the rendered lines, run
    in order: the first failing line fails the run); ``None`` for a playbook action."""
    if not request.has_script:
        return None
    lines = request.contract.script(paths)
    if not lines:
        raise RunError(
            f"block {request.block!r} action {request.action!r}: the script has no lines; "
            "give the action a script or a playbook"
        )
    return "\n".join((*SCRIPT_HEADER, *lines)) + "\n"


def snapshot_text(
    request: ActionRequest, paths: RunPaths, env: Mapping[str, str] | None = None
) -> str:
    """The snapshot file's content (``-e @…`` and ``POLYCRATE_WORKSPACE_SNAPSHOT_YAML``).

    Polycrate's snapshot carries the action's environment as ``env`` (the transaction log
    shows it); when the model's snapshot has none, the runner's ``env`` is added."""
    snapshot = dict(request.contract.snapshot(paths))
    if env is not None and "env" not in snapshot:
        snapshot["env"] = dict(sorted(env.items()))
    return yaml.safe_dump(_plain(snapshot), sort_keys=False)


def _plain(value: object) -> object:
    """Mappings and sequences as plain dicts and lists, so safe_dump takes them."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, PurePosixPath | Path):
        return str(value)
    return value
