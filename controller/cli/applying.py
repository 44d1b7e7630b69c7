"""``reconcile`` and ``blocks push|pull``: commands that change clusters or registries."""

from __future__ import annotations

import argparse
from pathlib import Path

from controller.cli.flags import add_registry_flags as _add_registry_flags
from controller.cli.noop import exclusive, shortcut

# Everything heavier is imported where it is used: a reconcile of a URL with nothing to do
# (the commit is applied) stops after one ls-remote, before the settings, the state file's
# models, the pipeline, the registry client or the runners are imported (issue 11 point 3;
# tests/test_cli_startup.py).


def _cmd_push(args: argparse.Namespace) -> int:
    from controller.cli.configured import registry_for, settings_for
    from controller.refs import BlockRef
    from controller.registry import push_block

    settings = settings_for(args)
    ref = BlockRef.parse(args.ref)
    digest = push_block(Path(args.dir), ref, client=registry_for(args, settings), force=args.force)
    print(f"pushed {ref.name}:{ref.tag}@{digest}")
    return 0


def _cmd_pull(args: argparse.Namespace) -> int:
    from controller.cli.configured import registry_for, settings_for
    from controller.refs import BlockRef
    from controller.registry import pull_block

    settings = settings_for(args)
    client = registry_for(args, settings)
    pulled = pull_block(BlockRef.parse(args.ref), Path(args.dest), client=client)
    print(f"pulled {pulled.ref} into {pulled.path}")
    return 0


def _cmd_reconcile(args: argparse.Namespace) -> int:
    state_path = Path(args.state)
    with exclusive(state_path) as lock:
        if shortcut(args, state_path, lock):  # nothing to do, told after one ls-remote
            return 0
        from controller.cli.reconciling import reconcile_locked

        return reconcile_locked(args, state_path, lock)


def add_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register reconcile and blocks push|pull."""
    p = sub.add_parser(
        "reconcile",
        help="one pass of the pipeline for one workspace (reconcile workspace NAME: the "
        "operator's)",
        epilog="examples: cratekeeper reconcile . --state state.json   |   cratekeeper reconcile "
        "workspace acme-staging-1 -n gitops (asks the operator; see `reconcile workspace "
        "--help`; a checkout named workspace: ./workspace)",
    )
    p.add_argument("source", metavar="PATH_OR_URL", help="a local Git checkout or a Git URL")
    p.add_argument("--ref", help="revision (local) or branch/refs/tags/X/SHA (URL)")
    p.add_argument("--path", dest="subpath", default="", help="workspace folder in the repo")
    p.add_argument(
        "--runner", choices=("local", "docker"), help="where actions run (default: local)"
    )
    p.add_argument("--image", help="execution image of the docker runner")
    p.add_argument("--docker-network", help="docker runner network mode (default: bridge)")
    p.add_argument("--state", default="cratekeeper-state.json", help="the applied-state file")
    p.add_argument("--action", default="deploy", help="the action each changed block runs")
    p.add_argument(
        "--workflow",
        help="run changed blocks in this workflow's order and actions (workspace.poly)",
    )
    p.add_argument(
        "--allow-prompted-actions",
        action="store_true",
        help="run actions, workflows and steps that have a prompt: (refused otherwise)",
    )
    p.add_argument("--timeout", type=float, default=1800.0, help="seconds per action run")
    p.add_argument("--age-identity-file", help="age identity for *.age files")
    p.add_argument("-v", "--verbose", action="store_true", help="stream the Ansible output")
    _add_registry_flags(p)
    p.set_defaults(func=_cmd_reconcile)

    blocks = sub.add_parser("blocks", help="push and pull blocks").add_subparsers(
        dest="blocks_command", required=True
    )
    p = blocks.add_parser(
        "push",
        help="push a block folder as REF",
        epilog="example: cratekeeper blocks push blocks/app-deploy "
        "registry.acme-corp.com/acme/apps/app-deploy:1.2.0",
    )
    p.add_argument("dir", help="the block folder (holding block.poly)")
    p.add_argument("ref", help="registry/path:version, matching block.poly")
    p.add_argument(
        "--force",
        action="store_true",
        help="replace a version tag that holds different content (versions should be immutable)",
    )
    _add_registry_flags(p)
    p.set_defaults(func=_cmd_push)
    p = blocks.add_parser(
        "pull",
        help="pull REF into DEST/blocks/<registry-path>/",
        epilog="example: cratekeeper blocks pull registry.acme-corp.com/acme/apps/app-deploy:1.2.0",
    )
    p.add_argument("ref", help="registry/path:version[@sha256:...] to pull")
    p.add_argument("dest", nargs="?", default=".", help="the workspace root (default: .)")
    _add_registry_flags(p)
    p.set_defaults(func=_cmd_pull)
