"""The init step of a ``kubernetes`` run: ``python -m controller.runners.prepare``.

It runs as the init container of the run's pod (docs/kubernetes-runner.md) and lays out the
workspace exactly as the controller does for the local runner: the workspace at the commit
(:func:`controller.source.fetch` of ``GitRef.commit`` + ``GitTree.export``), a registry block at
the digest under ``blocks/<registry-path>/`` (:func:`controller.registry.pull_block`, which
verifies the digest; a local block is already in the tree), the Workspace's kept artifacts
(from the run's Secret, :mod:`controller.runners.artifacts`), and cratekeeper's Ansible plugins
(the ``cratekeeper_events`` callback, the ``polycrate_vars`` vars plugin) for the main
container, whose image need not contain cratekeeper. A failure is printed and written to the
termination message, so the controller reports it without scraping the log.
"""

from __future__ import annotations

import argparse
import contextlib
import shutil
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from controller.errors import CratekeeperError, RunError
from controller.refs import BlockRef
from controller.registry import (
    DockerConfig,
    PulledBlock,
    RegistryClient,
    RegistryOptions,
    pull_block,
)
from controller.runners import sealed
from controller.runners.artifacts import unpack
from controller.runners.contract import CALLBACK_DIR, VARS_DIR
from controller.source import GitAuth, GitRef, fetch

CALLBACK_FILE = "cratekeeper_events.py"
VARS_FILE = "polycrate_vars.py"
SEALED_FILE = "sealed.py"
MESSAGE_LIMIT = 4096  # the kubelet keeps at most this much of a termination message


@dataclass(frozen=True)
class PrepareOptions:
    """What to lay out where, and with which credentials (all files, mounted from Secrets)."""

    repo: str
    commit: str
    block: BlockRef | None
    """The registry block to pull by digest; ``None`` when the action's block is a local or
    inline block (it is in the workspace's tree)."""
    dest: Path
    cache: Path
    path: str = ""
    tools: Path | None = None
    git_auth: Path | None = None
    docker_config: Path | None = None
    insecure_registries: tuple[str, ...] = ()
    artifacts: Path | None = None
    """The Workspace's kept artifacts (:func:`controller.runners.artifacts.pack`), laid back
    under ``dest`` when the file exists."""
    artifacts_dir: str = ""
    """The block's artifacts folder relative to ``dest``, made if missing."""
    ca_bundle: Path | None = None
    """PEM file registries' certificates are checked against (git reads ``GIT_SSL_CAINFO``)."""
    mirrors: tuple[tuple[str, str], ...] = ()
    """``(registry, endpoint)``: the operator's CRATEKEEPER_REGISTRY_MIRRORS, so the pod pulls
    from where the operator resolved the block."""
    max_block_size: int = RegistryOptions.max_block_size
    """The operator's CRATEKEEPER_MAX_BLOCK_SIZE (default: the registry client's)."""


def prepare(options: PrepareOptions) -> PulledBlock | None:
    """Export the workspace at the commit into ``dest`` and pull the block by its digest (the
    block pulled, or ``None`` for a local block)."""
    if options.block is not None and options.block.digest is None:
        raise RunError(
            f"--block {options.block} has no digest; pass REF@sha256:DIGEST so the pod runs "
            "exactly the block the controller planned"
        )
    auth = GitAuth.from_directory(options.git_auth) if options.git_auth else None
    revision = fetch(
        options.repo,
        GitRef.commit(options.commit),
        options.cache / "git",
        subpath=options.path,
        auth=auth,
    )
    revision.tree.export(options.dest)
    if options.artifacts is not None and options.artifacts.is_file():
        unpack(options.artifacts.read_bytes(), options.dest)
    if options.artifacts_dir:
        folder = PurePosixPath(options.artifacts_dir)
        if folder.is_absolute() or ".." in folder.parts:
            raise RunError(f"--artifacts-dir {folder} must be a path inside the workspace")
        (options.dest / folder).mkdir(parents=True, exist_ok=True)
    if options.tools is not None:
        install_plugins(options.tools)
    if options.block is None:
        return None
    docker_config = DockerConfig.from_file(options.docker_config) if options.docker_config else None
    client = RegistryClient(
        RegistryOptions(
            insecure_registries=options.insecure_registries,
            docker_config=docker_config,
            cache_dir=options.cache / "registry",
            ca_bundle=options.ca_bundle,
            mirrors=options.mirrors,
            max_block_size=options.max_block_size,
        )
    )
    return pull_block(options.block, options.dest, client=client)


def install_plugins(tools: Path) -> Path:
    """Copy cratekeeper's Ansible plugins (the ``cratekeeper_events`` callback, the
    ``polycrate_vars`` vars plugin) to ``<tools>/callback_plugins/`` and
    ``<tools>/vars_plugins/``, and :mod:`controller.runners.sealed` (the main container seals
    the Job's artifacts with it) to ``<tools>/sealed.py``; return ``tools``."""
    for source, folder, name in (
        (CALLBACK_DIR, "callback_plugins", CALLBACK_FILE),
        (VARS_DIR, "vars_plugins", VARS_FILE),
    ):
        target = tools / folder
        target.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source / name, target / name)
    shutil.copyfile(sealed.__file__, tools / SEALED_FILE)
    return tools


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m controller.runners.prepare",
        description="Lay out a workspace at a commit and a block at a digest for one run.",
    )
    parser.add_argument("--repo", required=True, help="Git URL of the workspace repository")
    parser.add_argument("--commit", required=True, help="full commit SHA to export")
    parser.add_argument("--path", default="", help="the workspace's folder in the repository")
    parser.add_argument(
        "--block", help="REGISTRY/PATH:TAG@sha256:DIGEST (none: the block is in the workspace)"
    )
    parser.add_argument("--dest", required=True, type=Path, help="where to lay it out")
    parser.add_argument("--cache", type=Path, help="Git and blob cache (default: DEST/../cache)")
    parser.add_argument("--tools", type=Path, help="where to put the Ansible callback")
    parser.add_argument("--git-auth", type=Path, help="directory of the Git credential files")
    parser.add_argument("--docker-config", type=Path, help="docker config JSON for registries")
    parser.add_argument(
        "--insecure-registry", action="append", default=[], help="host[:port] over plain HTTP"
    )
    parser.add_argument("--artifacts", type=Path, help="kept artifacts to lay back, if present")
    parser.add_argument("--artifacts-dir", default="", help="the block's artifacts folder")
    parser.add_argument("--ca-bundle", type=Path, help="PEM file of CAs for HTTPS registries")
    parser.add_argument(
        "--registry-mirror",
        action="append",
        default=[],
        metavar="REGISTRY=HOST[:PORT]",
        help="pull REGISTRY's blocks through this mirror (repeatable)",
    )
    parser.add_argument(
        "--max-block-size",
        type=int,
        default=RegistryOptions.max_block_size,
        help="largest unpacked block accepted, in bytes",
    )
    parser.add_argument("--termination-log", type=Path, help="write a failure message here")
    return parser


def options_from(args: argparse.Namespace) -> PrepareOptions:
    """The parsed command line as options (the block reference is checked here)."""
    return PrepareOptions(
        repo=args.repo,
        commit=args.commit,
        block=BlockRef.parse(args.block) if args.block else None,
        dest=args.dest,
        cache=args.cache or args.dest.parent / "cache",
        path=args.path,
        tools=args.tools,
        git_auth=args.git_auth,
        docker_config=args.docker_config,
        insecure_registries=tuple(args.insecure_registry),
        artifacts=args.artifacts,
        artifacts_dir=args.artifacts_dir,
        ca_bundle=args.ca_bundle,
        mirrors=tuple(_mirror(pair) for pair in args.registry_mirror),
        max_block_size=args.max_block_size,
    )


def _mirror(pair: str) -> tuple[str, str]:
    registry, sep, endpoint = pair.partition("=")
    if not sep or not registry or not endpoint:
        raise RunError(
            f"--registry-mirror {pair!r} is not REGISTRY=HOST[:PORT], "
            "e.g. registry.acme-corp.com=mirror.internal:5000"
        )
    return registry, endpoint


def main(argv: Sequence[str] | None = None) -> int:
    """Run the step; 0 on success, 1 with the reason on stderr and in the termination log."""
    args = _parser().parse_args(argv)
    termination_log: Path | None = args.termination_log
    try:
        options = options_from(args)
        pulled = prepare(options)
    except CratekeeperError as exc:
        message = f"{exc.reason}: {exc}"
        print(f"cratekeeper prepare: {message}", file=sys.stderr)
        if termination_log is not None:
            with contextlib.suppress(OSError):
                termination_log.write_bytes(message.encode()[:MESSAGE_LIMIT])
        return 1
    block = f" and {pulled.ref}" if pulled is not None else ""
    print(f"cratekeeper prepare: workspace at {options.commit[:12]}{block} ready in {options.dest}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
