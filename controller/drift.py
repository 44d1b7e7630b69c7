"""Drift detection: each applied block's action in Ansible check mode (docs/drift.md).

What Flux and Argo CD do for manifests, for Ansible blocks: :func:`check_drift` runs the action
of every applied block with ``--check --diff`` against the workspace's cluster, at the applied
revision and the applied block digest (never the Git head), and reports per block whether a
task would change something (drift), nothing would (in sync), or check mode cannot say (a
script action; a task that fails in check mode). :func:`drifted_condition` turns the report
into the ``Drifted`` condition (pure). Nothing here records a revision: a drift check never
touches ``lastAppliedRevision``; a correction is an ordinary reconcile of the drifted blocks
(``PipelineContext.correct``).
"""

from __future__ import annotations

import asyncio
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

from controller.api.status import Condition, WorkspaceStatus
from controller.changelog import CHANGELOG_FILE
from controller.errors import CratekeeperError
from controller.pipeline import PipelineContext, Progress, lay_back, load_secrets, unexpected
from controller.pipeline.runs import Shared, prepare, request
from controller.plan import Run, SecretConfigs
from controller.runners.base import redact, redactions
from controller.secrets import config_hash_key, read_kubeconfig
from controller.source import GitTree, Revision
from controller.status import set_condition
from controller.workspace import Workspace, read_workspace

BlockState = Literal["InSync", "Drifted", "CheckModeUnsupported", "CheckFailed"]
DRIFT_DETECTED = "DriftDetected"
NO_DRIFT = "NoDrift"
CHECK_MODE_UNSUPPORTED = "CheckModeUnsupported"
CHECK_FAILED = "DriftCheckFailed"
CORRECTED = "DriftCorrected"


@dataclass(frozen=True)
class BlockDrift:
    """One applied block's check: its state, the tasks that would change, or why not known."""

    block: str
    state: BlockState
    tasks: tuple[str, ...] = ()
    why: str = ""
    diff: tuple[str, ...] = ()
    """The check run's log tail (redacted): ``--diff`` shows what would change."""
    changelog: str | None = field(default=None, repr=False)
    """The block's ``CHANGELOG.poly``, when it ships one (previews show its entries)."""

    def describe(self) -> str:
        """One line for a condition message or an event."""
        if self.state == "Drifted":
            return f"block {self.block}: " + ", ".join(f"task {t!r}" for t in self.tasks)
        return f"block {self.block}: {self.why}" if self.why else f"block {self.block}"


@dataclass(frozen=True)
class DriftReport:
    """Every applied block's check at one applied revision."""

    revision: str
    blocks: tuple[BlockDrift, ...]
    finished: datetime
    error: CratekeeperError | None = None
    """Why no block could be checked (the applied revision's workspace cannot be read)."""

    def having(self, *states: BlockState) -> tuple[BlockDrift, ...]:
        return tuple(b for b in self.blocks if b.state in states)

    @property
    def drifted(self) -> tuple[BlockDrift, ...]:
        return self.having("Drifted")


def drifted_condition(report: DriftReport) -> tuple[str, str, str]:
    """``(status, reason, message)`` of the ``Drifted`` condition for ``report``.

    Drift found is True (naming blocks and tasks, and any block check mode could not judge);
    otherwise a block check mode cannot judge makes it Unknown, never False."""
    short = report.revision[:12]
    unknown = report.having("CheckModeUnsupported", "CheckFailed")
    if report.drifted:
        message = f"drift at applied revision {short}: " + "; ".join(
            b.describe() for b in report.drifted
        )
        if unknown:
            message += "; not checked: " + "; ".join(b.describe() for b in unknown)
        return "True", DRIFT_DETECTED, message
    if report.error is not None:
        return "Unknown", CHECK_FAILED, f"drift check of {short} failed: {report.error}"
    if unknown:
        reason = CHECK_MODE_UNSUPPORTED if report.having("CheckModeUnsupported") else CHECK_FAILED
        return (
            "Unknown",
            reason,
            "check mode cannot tell: " + "; ".join(b.describe() for b in unknown),
        )
    return "False", NO_DRIFT, f"every applied block matches revision {short}"


def with_drifted(
    status: WorkspaceStatus,
    state: str,
    reason: str,
    message: str,
    now: datetime,
    generation: int | None,
) -> WorkspaceStatus:
    """``status`` with its ``Drifted`` condition set (the rest unchanged)."""
    conditions: list[Condition] = set_condition(
        status.conditions, "Drifted", state, reason, message, now, generation
    )
    return status.model_copy(update={"conditions": conditions})


def applied_tree(revision: Revision, applied: str) -> GitTree:
    """The workspace as applied: ``applied`` read from the fetched repository."""
    return GitTree(revision.tree.git_dir, applied, revision.tree.subpath)


async def check_drift(
    revision: Revision,
    status: WorkspaceStatus,
    ctx: PipelineContext,
    progress: Progress = lambda _: None,
) -> DriftReport:
    """Check every applied block of ``status`` at ``revision`` (the applied one) in check mode,
    each pinned by its applied digest; never raises for a block (that is its state)."""
    applied = {b.name: b for b in status.blocks if b.phase == "Applied"}

    def runs(ws: Workspace) -> list[Run | BlockDrift]:
        resolved = {b.name: b for b in ws.blocks}
        workflow = ws.file.workflow(ctx.workflow) if ctx.workflow else None
        actions: dict[str, str] = {}
        for step in workflow.steps if workflow else ():  # a block's first step is its apply
            actions.setdefault(step.block, step.action)
        found: list[Run | BlockDrift] = []
        for name, block in applied.items():
            if name not in resolved:
                why = "not in the applied revision's workspace.poly"
                found.append(BlockDrift(name, "CheckFailed", why=why))
                continue
            at = resolved[name]
            if at.ref is not None:  # pinned by the digest that was applied, when known
                at = replace(at, ref=replace(at.ref, digest=block.digest or at.ref.digest))
            action = actions.get(name, ctx.action)
            found.append(Run(name, action, block.from_, at.pin, "version", False, at, "", None))
        return found

    return await check_blocks(revision, runs, ctx, progress)


async def check_blocks(
    revision: Revision,
    runs: Callable[[Workspace], Sequence[Run | BlockDrift]] | Sequence[Run],
    ctx: PipelineContext,
    progress: Progress = lambda _: None,
) -> DriftReport:
    """``runs`` (or those a function picks from the workspace at ``revision``) in check mode,
    against the cluster of that revision's kubeconfig: drift checks and ``plan --preview``."""
    try:
        return await _check(revision, runs, ctx, progress)
    except CratekeeperError as exc:
        return DriftReport(revision.sha, (), datetime.now(UTC), exc)
    except Exception as exc:  # a bug or the machine: the check failed, the operator lives on
        return DriftReport(
            revision.sha, (), datetime.now(UTC), unexpected(exc, "checking in check mode")
        )


async def _check(
    revision: Revision,
    runs: Callable[[Workspace], Sequence[Run | BlockDrift]] | Sequence[Run],
    ctx: PipelineContext,
    progress: Progress,
) -> DriftReport:
    ws = await asyncio.to_thread(read_workspace, revision.tree)
    kubeconfig = await asyncio.to_thread(read_kubeconfig, revision.tree, ctx.keys)
    found = await asyncio.to_thread(load_secrets, revision.tree, ws.file, ctx.keys)
    secrets = SecretConfigs(
        found.block_configs() if found else {}, config_hash_key(kubeconfig) if found else b""
    )
    todo = runs(ws) if callable(runs) else runs
    results: list[BlockDrift] = []
    if ctx.work_dir is not None:
        ctx.work_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="cratekeeper-check-", dir=ctx.work_dir) as tmp:
        root = Path(tmp)
        await asyncio.to_thread(revision.tree.export, root)
        await lay_back(ctx.artifacts, root, progress)
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
            workspace_secrets=found.config if found else {},
        )
        for run in todo:
            checked = run if isinstance(run, BlockDrift) else await check_block(run, shared)
            results.append(checked)
    return DriftReport(revision.sha, tuple(results), datetime.now(UTC))


async def check_block(run: Run, shared: Shared) -> BlockDrift:
    """One block's action in check mode (a registry block pinned by digest when known)."""
    name, action = run.block, run.action
    hide: Sequence[str] = shared.hidden
    try:
        prepared = await prepare(shared, run)
        notes = shared.root / prepared.view.workdir / CHANGELOG_FILE
        changelog = notes.read_text(errors="replace") if notes.is_file() else None
        if prepared.action.script is not None:
            why = f"action {action!r} is a script: scripts have no check mode"
            return BlockDrift(name, "CheckModeUnsupported", why=why, changelog=changelog)
        req = replace(request(shared, prepared), check=True)
        hide = tuple(sorted(set(redactions(req)), key=len, reverse=True))
        shared.progress(f"checking {name} {action} at {run.to} in check mode")
        result = await shared.runner.run(req, shared.on_output)
    except CratekeeperError as exc:
        return BlockDrift(name, "CheckFailed", why=redact(f"{exc.reason}: {exc}", hide))
    except Exception as exc:
        error = unexpected(exc, f"checking {name} for drift")
        return BlockDrift(name, "CheckFailed", why=str(error))
    tail = tuple(redact(line, hide) for line in result.log_tail)
    if not result.succeeded:
        where = f"task {result.failed_task!r} fails" if result.failed_task else "the run fails"
        why = redact(f"{where} in check mode ({result.status})", hide)
        return BlockDrift(name, "CheckModeUnsupported", why=why, diff=tail, changelog=changelog)
    if result.changed_tasks:
        tasks = tuple(redact(t, hide) for t in result.changed_tasks)
        return BlockDrift(name, "Drifted", tasks=tasks, diff=tail, changelog=changelog)
    return BlockDrift(name, "InSync", diff=tail, changelog=changelog)
