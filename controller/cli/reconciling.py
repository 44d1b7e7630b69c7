"""The full ``cratekeeper reconcile``: settings and state file validated, the revision fetched,
then nothing to do or the pipeline, and the outcome recorded.

After it, the state's lock keeps what a reconcile with nothing to do needs to know without
this module's imports (:mod:`controller.cli.noop`).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from controller.cli.configured import registry_for, runner_for, settings_for
from controller.cli.noop import (
    NoopRecord,
    StateLock,
    applied_line,
    digest,
    git_ref,
    inputs,
    progress_printer,
    revision_line,
    up_to_date_line,
)
from controller.cli.state import load_state, save_state
from controller.settings import Settings, env_names
from controller.source import Revision, fetch, local_ref, local_revision
from controller.source.applied import previous_revision, ref_label
from controller.status import ReconcileOutcome, failure, is_applied, record

# The pipeline, the registry client and the runners are imported where they are used: a
# reconcile with nothing to do (the commit is applied) never needs them.
if TYPE_CHECKING:
    from controller.api.status import WorkspaceStatus


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
    ref = git_ref(args.ref or "main")
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


def reconcile_locked(args: argparse.Namespace, state_path: Path, lock: StateLock) -> int:
    """One reconcile of the workspace whose state is ``state_path`` (its lock held)."""
    settings = settings_for(args)
    state = load_state(state_path)
    progress = progress_printer()
    revision, ref = _revision(args, settings, state)
    progress(revision_line(revision.sha, revision.subject, revision.author))
    if is_applied(state, revision.sha):
        outcome = up_to_date(revision, args.action, ref)
        progress(up_to_date_line(revision.sha))
    else:
        outcome = _apply(args, settings, state, state_path, revision, ref, progress)
    recorded = record(state, outcome)
    written = save_state(state_path, recorded)
    lock.keep(_noop_record(args, settings, recorded, written, revision, ref))
    if outcome.up_to_date or outcome.succeeded:
        progress(applied_line(revision.sha, state_path))
        return 0
    failed = failure(outcome)
    reason = failed.reason if failed else "RunFailed"  # the failed step: pull, run, ...
    print(f"error: {reason}: revision {revision.sha[:12]} was not applied", file=sys.stderr)
    if outcome.error:
        print(f"error: {outcome.error}", file=sys.stderr)
    elif failed is not None:  # a run failed: say why (already redacted by the pipeline)
        print(f"error: {failed.message}", file=sys.stderr)
    return 1


def _noop_record(
    args: argparse.Namespace,
    settings: Settings,
    state: WorkspaceStatus,
    written: bytes,
    revision: Revision,
    ref: str | None,
) -> NoopRecord | None:
    """What lets the next reconcile of a URL at ``revision`` stop after its ``ls-remote``:
    only when that reconcile would find ``revision`` applied and record exactly ``state``
    again (None otherwise, and for a local checkout)."""
    if Path(args.source).is_dir() or not is_applied(state, revision.sha):
        return None
    if record(state, up_to_date(revision, args.action, ref)).dump() != state.dump():
        return None
    names = env_names()
    return NoopRecord(
        inputs=inputs(args, names),
        settings=names,
        state=digest(written),
        cacheDir=str(settings.cache_dir / "git"),
        revision=revision.sha,
        subject=revision.subject,
        author=revision.author,
    )


def up_to_date(revision: Revision, action: str, ref: str | None) -> ReconcileOutcome:
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
        runner=runner_for(settings),
        registry=registry_for(args, settings),
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
