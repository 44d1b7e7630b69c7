"""fetch → parse → plan → pull → run → record, for one workspace, with no Kopf (DESIGN §4).

:func:`reconcile` takes a resolved :class:`~controller.source.Revision` and the current status
and returns what happened; :func:`controller.status.record` turns that into the next status.
Blocking work (Git export, registry I/O) runs in threads so the operator's loop never blocks.

Every planned run is prepared before the first one starts (registry blocks pulled, the action
found, prompts refused unless allowed, script templates rendered), so a workspace that cannot
run fails before it changes anything. Runs then go in plan order; the first failure stops the
rest (unless the selected workflow has ``allow_failure``). Kept artifacts are laid back into
the export before the first run and saved after each successful one. Once every run has
succeeded, blocks that left the workspace run their ``uninstall`` (:mod:`.removed`).
"""

from __future__ import annotations

import asyncio
import logging
import tempfile
import traceback
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from controller.api.status import WorkspaceStatus
from controller.errors import CratekeeperError, InternalError, WorkspaceError
from controller.pipeline.loading import lay_back, load_secrets
from controller.pipeline.removed import Removals, uninstall_removed
from controller.pipeline.runs import Prepared, Shared, failed, prepare, run_prepared
from controller.plan import Plan, Run, SecretConfigs, plan
from controller.registry import RegistryClient
from controller.runners.artifacts import ArtifactStore, pack
from controller.runners.base import OutputHandler, Runner
from controller.secrets import AgeKeys, config_hash_key, read_kubeconfig
from controller.source import Revision
from controller.source.applied import (  # re-exported: callers import them from here too
    previous_revision as previous_revision,
)
from controller.source.applied import ref_label as ref_label
from controller.status import ReconcileOutcome, RunOutcome, applied_blocks, is_applied
from controller.workspace import Workspace, read_workspace

log = logging.getLogger(__name__)
Progress = Callable[[str], None]
Planned = Callable[[Run], Awaitable[None]]


@dataclass(frozen=True)
class PipelineContext:
    """The collaborators and knobs of a reconcile."""

    runner: Runner
    registry: RegistryClient
    keys: AgeKeys
    action: str = "deploy"
    timeout: float = 1800.0
    work_dir: Path | None = None
    on_output: OutputHandler | None = None
    ref: str | None = None
    """The source ref this revision was fetched for (:func:`ref_label`), or ``None`` for a
    local checkout; recorded as ``lastAppliedRef`` when the revision is applied."""
    workflow: str | None = None
    """``spec.workflow``: changed blocks run in this workflow's order and actions."""
    allow_prompted_actions: bool = False
    """``spec.allowPromptedActions``: run actions (workflows, steps) that have a prompt."""
    artifacts: ArtifactStore | None = None
    """Where this Workspace's kept ``artifacts/blocks/`` live between runs (DESIGN §2): laid
    back into the export before the first run, saved after each successful one."""
    reapply: bool = False
    """Run every block of the revision again, applied or not (the re-apply request)."""
    correct: frozenset[str] = frozenset()
    """With ``reapply``: run only these blocks again, a drift correction (controller.drift)."""
    on_planned: Planned | None = None
    """Told the plan's first run as soon as the plan has one, before the export and the pulls
    (the operator says at once that the run waits for a slot, when every slot is taken)."""


def _now() -> datetime:
    return datetime.now(UTC)


def _resolve_digests(ws: Workspace, client: RegistryClient) -> dict[str, str]:
    """Tag → manifest digest of every registry block (one HEAD request each)."""
    digests = {}
    for block in ws.blocks:
        ref = block.ref
        if ref is None:
            continue
        digest = ref.digest or client.head_manifest(ref.registry, ref.repository, ref.tag)
        if digest:
            digests[block.name] = digest
    return digests


async def reconcile(
    revision: Revision,
    status: WorkspaceStatus,
    ctx: PipelineContext,
    progress: Progress = lambda _: None,
) -> ReconcileOutcome:
    """Apply ``revision`` on top of ``status``; never raises for a bad workspace or a failed run."""
    started = _now()

    def outcome(**kwargs: object) -> ReconcileOutcome:
        return ReconcileOutcome(
            revision=revision.sha,
            subject=revision.subject,
            author=revision.author,
            action=f"workflow {ctx.workflow}" if ctx.workflow else ctx.action,
            started=started,
            finished=_now(),
            ref=ctx.ref,
            reapply=ctx.reapply,
            correction=bool(ctx.correct),
            **kwargs,  # type: ignore[arg-type]
        )

    if is_applied(status, revision.sha) and not ctx.reapply:
        progress(f"revision {revision.sha[:12]} is already applied: nothing to do")
        return outcome(up_to_date=True)
    try:
        return await _reconcile(revision, status, ctx, progress, outcome)
    except CratekeeperError as exc:  # e.g. Git timing out while exporting the tree
        progress(f"revision {revision.sha[:12]}: {exc.reason}: {exc}")
        return outcome(error=exc)
    except Exception as exc:  # a bug or the machine (disk full): a failed attempt, not a crash
        error = unexpected(exc, f"reconciling {revision.sha[:12]}")
        progress(f"revision {revision.sha[:12]}: {error.reason}: {error}")
        return outcome(error=error)


def unexpected(exc: BaseException, doing: str) -> InternalError:
    """An InternalError for ``exc``; its traceback goes to the log without the exception's
    message (which may quote a secret), the error names only its type."""
    log.error(
        "unexpected %s while %s:\n%s",
        type(exc).__name__,
        doing,
        "".join(traceback.format_tb(exc.__traceback__)),
    )
    return InternalError(f"unexpected {type(exc).__name__} while {doing}; see the controller's log")


def _plan(ws: Workspace, status: WorkspaceStatus, ctx: PipelineContext, **kw: Any) -> Plan:
    if ctx.workflow and ws.file.workflow(ctx.workflow) is None:
        known = ", ".join(w.name for w in ws.file.workflows) or "none"
        raise WorkspaceError(
            f"spec.workflow is {ctx.workflow!r}, but workspace.poly has no such workflow "
            f"(its workflows: {known}); name one of them or remove spec.workflow"
        )
    return plan(
        ws,
        applied_blocks(status),
        action=ctx.action,
        workflow=ctx.workflow,
        reapply=ctx.reapply,
        **kw,
    )


async def _reconcile(
    revision: Revision,
    status: WorkspaceStatus,
    ctx: PipelineContext,
    progress: Progress,
    outcome: Callable[..., ReconcileOutcome],
) -> ReconcileOutcome:
    try:
        ws = await asyncio.to_thread(read_workspace, revision.tree)
        kubeconfig = await asyncio.to_thread(read_kubeconfig, revision.tree, ctx.keys)
        found = await asyncio.to_thread(load_secrets, revision.tree, ws.file, ctx.keys)
        digests = await asyncio.to_thread(_resolve_digests, ws, ctx.registry)
        secrets = SecretConfigs(
            found.block_configs() if found else {}, config_hash_key(kubeconfig) if found else b""
        )
        the_plan = _plan(ws, status, ctx, digests=digests, secrets=secrets)
        if ctx.correct:  # a drift correction runs the drifted blocks only
            drifted = tuple(r for r in the_plan.runs if r.block in ctx.correct)
            the_plan = replace(the_plan, runs=drifted, removed=())
    except CratekeeperError as exc:
        progress(f"revision {revision.sha[:12]}: {exc.reason}: {exc}")
        return outcome(error=exc)
    for name in the_plan.unscheduled:
        progress(f"{name} changed, but workflow {ctx.workflow!r} does not run it")
    if the_plan.empty:
        progress(f"revision {revision.sha[:12]}: every block is up to date")
        return outcome()
    if the_plan.runs and ctx.on_planned is not None:
        await ctx.on_planned(the_plan.runs[0])
    if ctx.work_dir is not None:
        ctx.work_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="cratekeeper-ws-", dir=ctx.work_dir) as tmp:
        root = Path(tmp)
        await asyncio.to_thread(revision.tree.export, root)
        try:
            await lay_back(ctx.artifacts, root, progress)
        except CratekeeperError as exc:
            progress(f"revision {revision.sha[:12]}: {exc.reason}: {exc}")
            return outcome(error=exc)
        shared = Shared(
            ws=ws,
            root=root,
            revision=revision.sha,
            kubeconfig=kubeconfig,
            secrets=secrets,
            runner=ctx.runner,
            registry=ctx.registry,
            progress=progress,
            unexpected=unexpected,
            timeout=ctx.timeout,
            on_output=ctx.on_output,
            allow_prompted=ctx.allow_prompted_actions,
            workflow=ctx.workflow,
            workspace_secrets=found.config if found else {},
        )
        runs, removals = await _execute(the_plan, shared, ctx, revision, status)
    return outcome(
        runs=runs,
        removed=the_plan.removed,
        removed_failed=removals.failed,
        notes=removals.notes,
    )


async def _keep(ran: RunOutcome, store: ArtifactStore | None, shared: Shared) -> RunOutcome:
    """After a successful run, keep the export's artifacts/blocks/ for later runs; a tree over
    the budget fails the run (the next block must not read stale artifacts)."""
    if store is None or not ran.succeeded:
        return ran
    try:
        await store.save(await asyncio.to_thread(pack, shared.root))
    except CratekeeperError as exc:
        shared.progress(f"{ran.run.block}: {exc.reason}: {exc}")
        return replace(ran, status="failed", message=f"{ran.run.block}: {exc}", error=exc)
    return ran


async def _prepare_all(shared: Shared, the_plan: Plan) -> list[Prepared] | RunOutcome:
    """Every run prepared, or the outcome of the first that cannot be."""
    ready = []
    for run in the_plan.runs:
        try:
            ready.append(await prepare(shared, run))
        except CratekeeperError as exc:
            shared.progress(f"{run.block}: {exc.reason}: {exc}")
            return failed(run, exc, shared.hidden, run.digest)
    return ready


async def _execute(
    the_plan: Plan,
    shared: Shared,
    ctx: PipelineContext,
    revision: Revision,
    status: WorkspaceStatus,
) -> tuple[list[RunOutcome], Removals]:
    """Runs in plan order; the first failure stops the rest (a workflow may allow failure);
    once all succeeded, the removed blocks' uninstalls (:mod:`.removed`)."""
    ready = await _prepare_all(shared, the_plan)
    not_run = Removals(tuple(a.name for a in the_plan.removed))
    if isinstance(ready, RunOutcome):
        return [ready], not_run
    workflow = shared.ws.file.workflow(ctx.workflow) if ctx.workflow else None
    go_on = bool(workflow and workflow.allow_failure)
    done: list[RunOutcome] = []
    for prepared in ready:
        ran = await _keep(await run_prepared(shared, prepared), ctx.artifacts, shared)
        done.append(ran)
        if not ran.succeeded and not go_on:
            return done, not_run
    if not all(r.succeeded for r in done):
        return done, not_run
    if not the_plan.removed:
        return done, Removals()
    removals = await uninstall_removed(
        the_plan.removed, shared, revision.tree, status, ctx.keys, ctx.artifacts, ctx.work_dir
    )
    return done, removals
