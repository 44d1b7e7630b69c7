"""Block actions for runner tests: a materialised workspace, a request, a tiny playbook."""

from __future__ import annotations

import shutil
import textwrap
from collections.abc import Sequence
from pathlib import Path

from controller.refs import BlockRef
from controller.registry import RegistryClient, RegistryOptions, push_block
from controller.runners.base import ActionRequest, StaticContract

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
REF = BlockRef.parse("registry.acme-corp.com/acme/apps/app-deploy:1.2.0")


def workspace_with_block(tmp_path: Path, block_dir: Path, ref: BlockRef = REF) -> Path:
    """A materialised workspace: the block under blocks/<registry-path>/ as Polycrate has it."""
    root = tmp_path / "ws"
    shutil.copytree(block_dir, root / "blocks" / ref.name)
    (root / "workspace.poly").write_text("name: acme-staging-1\n")
    return root


def snapshot_of(block: str, ref: BlockRef | None, config: dict[str, object]) -> dict[str, object]:
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
