"""Pipeline outcome → the next ``WorkspaceStatus`` (pure).

Status never lies (Flux's rule): ``lastAppliedRevision`` moves only when every run of a
revision succeeded; a block's recorded version moves only when its own run succeeded; a
failure is recorded in the history and the block's phase, never over the last good state.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

from controller.api.status import (
    BlockStatus,
    Change,
    Condition,
    HistoryEntry,
    RunResultName,
    WorkspaceStatus,
)
from controller.errors import CratekeeperError, KubeconfigError, WorkspaceError
from controller.plan import AppliedBlock, Run

DEFAULT_HISTORY_LIMIT = 10

_RESULT_NAMES: dict[str, RunResultName] = {
    "succeeded": "Succeeded",
    "failed": "Failed",
    "timedOut": "TimedOut",
}


@dataclass(frozen=True)
class RunOutcome:
    """One planned run and how it ended (``status`` as the runner reported it)."""

    run: Run
    status: str
    digest: str | None
    finished: datetime
    job_name: str | None = None
    message: str = ""

    @property
    def succeeded(self) -> bool:
        return self.status == "succeeded"


@dataclass(frozen=True)
class ReconcileOutcome:
    """Everything one reconcile of one revision did."""

    revision: str
    subject: str
    author: str
    action: str
    started: datetime
    finished: datetime
    up_to_date: bool = False
    error: CratekeeperError | None = None
    runs: Sequence[RunOutcome] = ()
    removed: Sequence[AppliedBlock] = ()
    removed_failed: Sequence[str] = field(default_factory=tuple)
    ref: str | None = None
    """The source ref the revision was fetched for (``branch:main``), None for a checkout."""

    @property
    def succeeded(self) -> bool:
        return (
            self.error is None and all(r.succeeded for r in self.runs) and not self.removed_failed
        )


def applied_blocks(status: WorkspaceStatus) -> list[AppliedBlock]:
    """The applied state the planner compares against."""
    return [AppliedBlock(b.name, b.from_, b.digest, b.config_hash) for b in status.blocks]


def _change(outcome: RunOutcome) -> Change:
    run = outcome.run
    return Change(
        block=run.block,
        from_=run.from_,
        to=run.to,
        reason=run.reason,
        rollback=run.rollback,
        result=_RESULT_NAMES.get(outcome.status, "Failed"),
    )


# Errors a retry cannot fix: only a new commit (or spec change) can.
STALLING_REASONS = frozenset(
    {"InvalidWorkspace", "InvalidBlock", "InvalidReference", "KubeconfigInvalid"}
)


def set_condition(
    conditions: list[Condition],
    kind: str,
    state: str,
    reason: str,
    message: str,
    now: datetime,
    generation: int | None,
) -> list[Condition]:
    """Conditions with ``kind`` set; ``lastTransitionTime`` moves only when status flips."""
    old = next((c for c in conditions if c.type == kind), None)
    moved = old is None or old.status != state
    new = Condition.model_validate(
        {
            "type": kind,
            "status": state,
            "reason": reason,
            "message": message,
            "lastTransitionTime": now if moved or old is None else old.last_transition_time,
            "observedGeneration": generation,
        }
    )
    return [*(c for c in conditions if c.type != kind), new]


def _summary(outcome: ReconcileOutcome) -> tuple[str, str]:
    """Reason and message of a failed outcome, for the Ready condition."""
    if outcome.error is not None:
        return outcome.error.reason, str(outcome.error)
    failed = [r for r in outcome.runs if not r.succeeded]
    if failed:
        ran = failed[0]
        reason = {"timedOut": "RunTimedOut"}.get(ran.status, "RunFailed")
        return reason, ran.message or f"{ran.run.block} {ran.run.action} {ran.status}"
    return "UninstallFailed", "uninstall failed for: " + ", ".join(outcome.removed_failed)


def conditions_after(
    status: WorkspaceStatus, outcome: ReconcileOutcome, generation: int | None = None
) -> list[Condition]:
    """Ready, Reconciling and Stalled, computed once from the outcome of a reconcile."""
    now = outcome.finished
    conds = list(status.conditions)
    applied = outcome.up_to_date or outcome.succeeded
    if applied:
        short = (status.last_applied_revision if outcome.up_to_date else outcome.revision) or ""
        conds = set_condition(
            conds,
            "Ready",
            "True",
            "Succeeded",
            f"Applied revision {short[:12] or outcome.revision[:12]}",
            now,
            generation,
        )
        conds = set_condition(conds, "Stalled", "False", "Succeeded", "", now, generation)
    else:
        reason, message = _summary(outcome)
        conds = set_condition(conds, "Ready", "False", reason, message, now, generation)
        stalled = reason in STALLING_REASONS
        conds = set_condition(
            conds,
            "Stalled",
            "True" if stalled else "False",
            reason,
            "fix the workspace and push a new commit" if stalled else "",
            now,
            generation,
        )
    return set_condition(conds, "Reconciling", "False", "Idle", "", now, generation)


def record(
    status: WorkspaceStatus,
    outcome: ReconcileOutcome,
    history_limit: int = DEFAULT_HISTORY_LIMIT,
    generation: int | None = None,
) -> WorkspaceStatus:
    """The status after ``outcome``, conditions included; the input is not modified."""
    new = _record(status, outcome, history_limit)
    new.conditions = conditions_after(status, outcome, generation)
    new.observed_generation = generation
    return new


def _record(
    status: WorkspaceStatus, outcome: ReconcileOutcome, history_limit: int
) -> WorkspaceStatus:
    new = status.model_copy(deep=True)
    new.last_fetched_revision = outcome.revision
    if outcome.up_to_date:
        # The applied commit is what this ref points at now (the ref may have just switched).
        new.last_applied_ref = outcome.ref
        return new
    new.last_attempted_revision = outcome.revision
    blocks = {b.name: b for b in new.blocks}
    for ran in outcome.runs:
        run = ran.run
        if ran.succeeded:
            blocks[run.block] = BlockStatus(
                name=run.block,
                from_=run.to,
                version=run.ref.version,
                digest=ran.digest,
                config_hash=run.config_hash,
                phase="Applied",
                last_run=ran.finished,
            )
        elif run.block in blocks:
            blocks[run.block] = blocks[run.block].model_copy(
                update={"phase": "Failed", "last_run": ran.finished}
            )
    for gone in outcome.removed:
        if gone.name not in outcome.removed_failed:
            blocks.pop(gone.name, None)
    new.blocks = list(blocks.values())
    if outcome.succeeded:
        new.last_applied_revision = outcome.revision
        new.last_applied_ref = outcome.ref
    if outcome.runs or outcome.error or outcome.removed:
        result: RunResultName = "Succeeded"
        if isinstance(outcome.error, WorkspaceError | KubeconfigError):
            result = "Invalid"
        elif outcome.error is not None:
            result = "Failed"
        elif not outcome.succeeded:
            failed = [r for r in outcome.runs if not r.succeeded]
            result = _RESULT_NAMES.get(failed[0].status, "Failed") if failed else "Failed"
        message = (
            str(outcome.error)
            if outcome.error
            else "; ".join(r.message for r in outcome.runs if r.message)
        )
        entry = HistoryEntry(
            revision=outcome.revision,
            subject=outcome.subject,
            author=outcome.author,
            changes=[_change(r) for r in outcome.runs],
            action=outcome.action,
            result=result,
            message=message,
            started=outcome.started,
            finished=outcome.finished,
            job_names=[r.job_name for r in outcome.runs if r.job_name],
        )
        new.history = [entry, *new.history][:history_limit]
    return new
