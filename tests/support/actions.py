"""Block actions for runner tests: a materialised workspace, a request, a tiny playbook."""

from __future__ import annotations

import shutil
import textwrap
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from controller.refs import BlockRef
from controller.registry import RegistryClient, RegistryOptions, push_block
from controller.runners.base import ActionRequest, RunPaths, StaticContract

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
REF = BlockRef.parse("registry.acme-corp.com/acme/apps/app-deploy:1.2.0")


def workspace_with_block(tmp_path: Path, block_dir: Path, ref: BlockRef = REF) -> Path:
    """A materialised workspace: the block under blocks/<registry-path>/ as Polycrate has it."""
    root = tmp_path / "ws"
    shutil.copytree(block_dir, root / "blocks" / ref.name)
    (root / "workspace.poly").write_text("name: acme-staging-1\n")
    return root


def snapshot_of(block: str, ref: BlockRef | None, config: Mapping[str, object]) -> dict[str, Any]:
    """A snapshot of the shape the runner tests read (the model builds the full one)."""
    return {
        "workspace": {"name": "acme-staging-1", "organization": "acme"},
        "block": {
            "name": block,
            "version": ref.version if ref else None,
            "config": config,
            "workdir": {"path": f"blocks/{ref.name if ref else block}"},
        },
        "action": {"name": "deploy"},
    }


def request(root: Path, kubeconfig: Path, namespace: str, **over: object) -> ActionRequest:
    """The example block's deploy at ``root``; ``over`` replaces fields (``script=[...]`` makes
    it a script action of those lines)."""
    config = {"namespace": namespace, "image": "", "replicas": 1, "port": 8080}
    lines = over.pop("script", None)
    fields: dict[str, object] = {
        "workspace": "acme-staging-1",
        "organization": "acme",
        "revision": "0" * 40,
        "block": "app",
        "ref": REF,
        "action": "deploy",
        "playbook": "deploy.yml" if lines is None else None,
        "has_script": lines is not None,
        "config": config,
        "workspace_dir": root,
        "workdir": f"blocks/{REF.name}",
        "contract": StaticContract(snapshot_of("app", REF, config), lines or ()),
        "kubeconfig": kubeconfig.read_bytes(),
        "timeout": 300.0,
    }
    fields.update(over)
    return ActionRequest(**fields)  # type: ignore[arg-type]


def a_block(tmp_path: Path, playbook: str) -> Path:
    block = tmp_path / "block"
    block.mkdir()
    (block / "play.yml").write_text(textwrap.dedent(playbook))
    return block


HEADER = """\
- hosts: localhost
  connection: local
  gather_facts: false
  vars: {ansible_python_interpreter: "{{ ansible_playbook_python }}"}
  tasks:
"""


SEED_NAME = "registry.acme-corp.com/acme/apps/app-deploy"
REFUSE = "  tasks:\n    - name: Refuse to deploy\n      ansible.builtin.fail: {msg: broken}\n"


def push_app_deploy(
    host: str, name: str, versions: Sequence[str], tmp: Path, *, broken: Sequence[str] = ()
) -> str:
    """The example app-deploy block pushed to the registry at ``host`` as
    ``host/acme/apps/<name>:<version>`` for each version (those in ``broken`` fail their
    deploy at a task named "Refuse to deploy"); the block's name."""
    block_name = f"{host}/acme/apps/{name}"
    client = RegistryClient(RegistryOptions(insecure_registries=(host,)))
    for version in versions:
        block = tmp / f"{name}-{version}"
        shutil.copytree(EXAMPLES / "blocks" / "app-deploy", block)
        poly = block / "block.poly"
        poly.write_text(
            poly.read_text()
            .replace(SEED_NAME, block_name)
            .replace("version: 1.2.0", f"version: {version}")
        )
        if version in broken:
            deploy = block / "deploy.yml"
            deploy.write_text(deploy.read_text().replace("  tasks:\n", REFUSE))
        push_block(block, BlockRef.parse(f"{block_name}:{version}"), client=client)
    return block_name


CONTRACT_PLAY = """\
- hosts: localhost
  connection: local
  gather_facts: false
  vars:
    ansible_python_interpreter: "{{ ansible_playbook_python }}"
    names: [POLYCRATE_WORKSPACE, POLYCRATE_WORKSPACE_SNAPSHOT_YAML, POLYCRATE_BLOCK,
            POLYCRATE_BLOCK_WORKDIR, POLYCRATE_ACTION, ANSIBLE_INVENTORY,
            ANSIBLE_HOST_KEY_CHECKING, ANSIBLE_REMOTE_TMP, ANSIBLE_LOCAL_TEMP, HOME,
            KUBECONFIG, K8S_AUTH_KUBECONFIG, EXTRA_FROM_BLOCK, CRATEKEEPER_TEST_LEAK]
  tasks:
    - ansible.builtin.copy:
        dest: "{{ lookup('env', 'POLYCRATE_WORKSPACE') }}/artifacts/blocks/app/seen.json"
        mode: "0600"
        content: >-
          {{ {'cwd': lookup('pipe', 'pwd'),
              'env': dict(names | zip(query('env', *names, default=''))),
              'snapshot_file': lookup('file', lookup('env', 'POLYCRATE_WORKSPACE_SNAPSHOT_YAML'))
                               | from_yaml,
              'vars': {'block': block, 'workspace': workspace, 'action': action}} | to_json }}
"""
"""A playbook that writes what it sees (cwd, environment, snapshot file, variables) to
``artifacts/blocks/app/seen.json``: every runner must give it the same."""


class PathsContract:
    """A contract whose snapshot says where the runner put things (as the model's does)."""

    def __init__(self, config: dict[str, object], script: Sequence[str] = ()) -> None:
        self._config, self._script = config, tuple(script)

    def snapshot(self, paths: RunPaths) -> Mapping[str, Any]:
        snapshot = snapshot_of("app", REF, self._config)
        snapshot["workspace"] = {"name": "acme-staging-1", "path": paths.root}
        snapshot["block"]["workdir"] = {"path": paths.under_root(f"blocks/{REF.name}")}
        return snapshot

    def script(self, paths: RunPaths) -> tuple[str, ...]:
        return self._script


def contract_workspace(tmp_path: Path) -> Path:
    """A workspace with :data:`CONTRACT_PLAY` as the block's play.yml and an inventory."""
    block = a_block(tmp_path, CONTRACT_PLAY)
    root = workspace_with_block(tmp_path, block)
    (root / "inventory.yml").write_text(
        "all:\n  hosts:\n    localhost: {ansible_connection: local}\n"
    )
    return root


def contract_request(root: Path, kubeconfig: Path, **over: object) -> ActionRequest:
    config = {"namespace": "ns1"}
    fields: dict[str, object] = {
        "playbook": "play.yml",
        "config": config,
        "contract": PathsContract(config),
        "extraenv": {"EXTRA_FROM_BLOCK": "yes"},
    }
    fields.update(over)
    return request(root, kubeconfig, "ns1", **fields)


def check_contract(seen: dict[str, Any], root: str) -> None:
    """What :data:`CONTRACT_PLAY` saw is Polycrate's runtime contract, the workspace at
    ``root`` (as the action sees it)."""
    workdir = f"{root}/blocks/{REF.name}"
    env = seen["env"]
    assert seen["cwd"] == workdir
    assert env["POLYCRATE_WORKSPACE"] == root
    assert env["POLYCRATE_BLOCK_WORKDIR"] == workdir
    assert (env["POLYCRATE_BLOCK"], env["POLYCRATE_ACTION"]) == ("app", "deploy")
    assert env["ANSIBLE_INVENTORY"] == f"{root}/inventory.yml"
    assert env["ANSIBLE_HOST_KEY_CHECKING"] == "False"
    assert env["ANSIBLE_REMOTE_TMP"].startswith(env["HOME"] + "/")
    assert env["ANSIBLE_LOCAL_TEMP"].startswith(env["HOME"] + "/")
    assert env["KUBECONFIG"] == env["K8S_AUTH_KUBECONFIG"] != ""
    assert env["EXTRA_FROM_BLOCK"] == "yes"
    assert env["CRATEKEEPER_TEST_LEAK"] == ""  # nothing of the controller's environment
    snapshot = seen["snapshot_file"]
    assert snapshot["workspace"]["path"] == root
    assert snapshot["block"]["workdir"]["path"] == workdir
    assert snapshot["env"]["POLYCRATE_BLOCK_WORKDIR"] == workdir  # the env, as Polycrate's has
    assert seen["vars"]["block"] == snapshot["block"]  # -e @snapshot: the same variables
    assert seen["vars"]["block"]["config"] == {"namespace": "ns1"}


def push_playbook_block(host: str, name: str, playbook: str, tmp: Path) -> str:
    """A block with one ``deploy`` action (``playbook``) pushed to ``host`` as 1.0.0; its pin."""
    block_name = f"{host}/acme/tests/{name}"
    block = tmp / name
    block.mkdir()
    (block / "block.poly").write_text(
        f"name: {block_name}\nversion: 1.0.0\nactions:\n  - {{name: deploy, playbook: play.yml}}\n"
    )
    (block / "play.yml").write_text(playbook)
    client = RegistryClient(RegistryOptions(insecure_registries=(host,)))
    push_block(block, BlockRef.parse(f"{block_name}:1.0.0"), client=client, also_latest=False)
    return f"{block_name}:1.0.0"
