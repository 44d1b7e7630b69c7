"""``reconcile`` and ``blocks push|pull``: commands that change clusters or registries."""

from __future__ import annotations

import argparse
import re
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from controller.cli.flags import add_registry_flags as _add_registry_flags
from controller.cli.state import exclusive, load_state, save_state
from controller.errors import CratekeeperError
from controller.settings import Settings, load_settings
from controller.source import GitRef, Revision, fetch, local_ref, local_revision
from controller.source.applied import previous_revision, ref_label
from controller.status import ReconcileOutcome, failure, is_applied, record

# The pipeline, the registry client and the runners are imported where they are used: a
# reconcile with nothing to do (the commit is applied) never needs them, and costs one
# ls-remote plus this process's start-up (issue 11 point 3; tests/test_cli_startup.py).
if TYPE_CHECKING:
    from controller.api.status import WorkspaceStatus
    from controller.registry import RegistryClient
    from controller.runners.base import Runner


def _settings(args: argparse.Namespace) -> Settings:
    """Environment settings with the command's flags mapped on top."""
    env = load_settings()
    update: dict[str, object] = {}
    if getattr(args, "insecure_registry", None):
        update["insecure_registries"] = [*env.insecure_registries, *args.insecure_registry]
    if getattr(args, "registry_mirror", None):
        flags = load_settings(registry_mirrors=",".join(args.registry_mirror))
        update["registry_mirrors"] = {**env.registry_mirrors, **flags.registry_mirrors}
    if getattr(args, "age_identity_file", None):
        update["age_identity_file"] = Path(args.age_identity_file)
    for flag, field in (
        ("runner", "runner"),
        ("image", "execution_image"),
        ("docker_network", "docker_network"),
    ):
        if getattr(args, flag, None):
            update[field] = getattr(args, flag)
    return env.model_copy(update=update)


def _registry(args: argparse.Namespace, settings: Settings) -> RegistryClient:
    """The CLI's registry client: a ``--docker-config`` may name credential helpers (the
    operator never runs those)."""
    from controller.registry import DockerConfig, RegistryClient, RegistryOptions
    from controller.registry.helpers import run_helper

    config = None
    if getattr(args, "docker_config", None):
        config = DockerConfig.from_file(Path(args.docker_config), helpers=run_helper)
    return RegistryClient(RegistryOptions.from_settings(settings, docker_config=config))


def _cmd_push(args: argparse.Namespace) -> int:
    from controller.refs import BlockRef
    from controller.registry import push_block

    settings = _settings(args)
    ref = BlockRef.parse(args.ref)
    digest = push_block(Path(args.dir), ref, client=_registry(args, settings), force=args.force)
    print(f"pushed {ref.name}:{ref.tag}@{digest}")
    return 0


def _cmd_pull(args: argparse.Namespace) -> int:
    from controller.refs import BlockRef
    from controller.registry import pull_block

    settings = _settings(args)
    pulled = pull_block(BlockRef.parse(args.ref), Path(args.dest), client=_registry(args, settings))
    print(f"pulled {pulled.ref} into {pulled.path}")
    return 0


_SHA = re.compile(r"^[0-9a-f]{40}$")


def _git_ref(text: str) -> GitRef:
    if _SHA.match(text):
        return GitRef.commit(text)
    if text.startswith("refs/tags/"):
        return GitRef.tag(text.removeprefix("refs/tags/"))
    return GitRef.branch(text.removeprefix("refs/heads/"))


def _revision(
    args: argparse.Namespace, settings: Settings, state: WorkspaceStatus
) -> tuple[Revision, str | None]:
    """The revision to apply and its ref label; a local checkout's ref is what ``--ref``
    names there (HEAD's branch by default), so rewritten history is refused as for a URL."""
    if Path(args.source).is_dir():
        checkout, rev = Path(args.source), args.ref or "HEAD"
        ref = local_ref(checkout, rev)
        previous = previous_revision(state, ref)
        return local_revision(checkout, rev, args.subpath, previous=previous), ref_label(ref)
    ref = _git_ref(args.ref or "main")
    revision = fetch(
        args.source,
        ref,
        settings.cache_dir / "git",
        subpath=args.subpath,
        previous=previous_revision(state, ref),
    )
    return revision, ref_label(ref)


def artifacts_path(state_path: Path) -> Path:
    """The kept block artifacts of the workspace whose state is ``state_path``: beside it."""
    return state_path.with_name(f"{state_path.stem}.artifacts.tar.gz")


def _cmd_reconcile(args: argparse.Namespace) -> int:
    state_path = Path(args.state)
    with exclusive(state_path):
        return _reconcile_locked(args, state_path)


def _reconcile_locked(args: argparse.Namespace, state_path: Path) -> int:
    settings = _settings(args)
    state = load_state(state_path)
    start = time.monotonic()

    def progress(message: str) -> None:
        print(f"[{time.monotonic() - start:6.1f}s] {message}", flush=True)

    revision, ref = _revision(args, settings, state)
    progress(f"revision {revision.sha[:12]} {revision.subject!r} by {revision.author}")
    if is_applied(state, revision.sha):
        outcome = _up_to_date(revision, args.action, ref)
        progress(f"revision {revision.sha[:12]} is already applied: nothing to do")
    else:
        outcome = _apply(args, settings, state, state_path, revision, ref, progress)
    save_state(state_path, record(state, outcome))
    if outcome.up_to_date or outcome.succeeded:
        progress(f"applied {revision.sha[:12]}; state in {state_path}")
        return 0
    failed = failure(outcome)
    reason = failed.reason if failed else "RunFailed"  # the failed step: pull, run, ...
    print(f"error: {reason}: revision {revision.sha[:12]} was not applied", file=sys.stderr)
    if outcome.error:
        print(f"error: {outcome.error}", file=sys.stderr)
    elif failed is not None:  # a run failed: say why (already redacted by the pipeline)
        print(f"error: {failed.message}", file=sys.stderr)
    return 1


def _up_to_date(revision: Revision, action: str, ref: str | None) -> ReconcileOutcome:
    """The outcome the pipeline gives an applied revision (its first step), without the
    pipeline: nothing runs, so nothing of the pipeline is imported."""
    now = datetime.now(UTC)
    return ReconcileOutcome(
        revision=revision.sha,
        subject=revision.subject,
        author=revision.author,
        action=action,
        started=now,
        finished=now,
        ref=ref,
        up_to_date=True,
    )


def _apply(
    args: argparse.Namespace,
    settings: Settings,
    state: WorkspaceStatus,
    state_path: Path,
    revision: Revision,
    ref: str | None,
    progress: Callable[[str], None],
) -> ReconcileOutcome:
    """The pipeline on ``revision``: something may run."""
    import asyncio

    from controller.pipeline import PipelineContext, reconcile
    from controller.runners.artifacts import DirectoryStore
    from controller.secrets import AgeKeys

    ctx = PipelineContext(
        runner=_runner(settings),
        registry=_registry(args, settings),
        keys=AgeKeys.from_sources(
            settings.age_identity_file, settings.age_identity, settings.age_passphrase
        ),
        action=args.action,
        timeout=args.timeout,
        work_dir=settings.work_dir,
        on_output=(lambda line: print(f"         | {line}", flush=True)) if args.verbose else None,
        ref=ref,
        workflow=args.workflow,
        allow_prompted_actions=args.allow_prompted_actions,
        artifacts=DirectoryStore(artifacts_path(state_path)),
    )
    return asyncio.run(reconcile(revision, state, ctx, progress))


def _runner(settings: Settings) -> Runner:
    """The runner the settings ask for (the kubernetes runner belongs to the operator)."""
    if settings.runner == "docker":
        from controller.runners.docker import DockerRunner  # the docker SDK: only when asked

        return DockerRunner(settings.execution_image, network_mode=settings.docker_network)
    if settings.runner in (None, "local"):  # the CLI's default: ansible-playbook here
        from controller.runners.local import LocalRunner

        return LocalRunner()
    raise CratekeeperError(
        "the kubernetes runner runs inside the operator (cratekeeper run); "
        "use --runner local or --runner docker here"
    )


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
