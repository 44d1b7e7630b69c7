"""Pipeline outcome → the next ``WorkspaceStatus`` (pure).

Status never lies (Flux's rule): ``lastAppliedRevision`` moves only when every run of a
revision succeeded; a block's recorded version moves only when its own run succeeded; a
failure is recorded in the history and the block's phase, never over the last good state.
Status is computed, not accumulated (STYLE 14): history holds one entry per (revision, result),
updated by retries; when a revision is applied every block's phase is that revision's; a
condition's reason names the step that failed (fetch, validate, pull, run).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING

from controller.api.status import (
    BlockStatus,
    Change,
    Condition,
    HistoryEntry,
    RunResultName,
    WorkspaceStatus,
)
from controller.errors import CratekeeperError, KubeconfigError, RegistryError, WorkspaceError

if TYPE_CHECKING:  # the planner (and the workspace model under it) only where it is used:
    from controller.plan import AppliedBlock, Run  # a no-op reconcile never plans

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
    error: CratekeeperError | None = None
    """Why the run could not start or finish when the runner did not say (a pull failure,
    the runner refused): its reason names the failed step instead of ``RunFailed``."""
    log_tail: tuple[str, ...] = ()
    """The last lines of the run's output, redacted (kept in the newest history entry)."""

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
    """The source ref the revision was resolved for (``branch:main``; for a checkout, what
    ``--ref`` names there), None when unknown."""
    reapply: bool = False
    """Every block ran again because a person asked (not a change in Git)."""
    correction: bool = False
    """The drifted blocks ran again at the applied revision (``spec.drift.correct``)."""
    notes: Sequence[str] = ()
    """What a person should know about the removals (an uninstall that could not run, why
    one failed): added to the history entry's message, and to Ready's when it applied."""

    @property
    def succeeded(self) -> bool:
        return (
            self.error is None and all(r.succeeded for r in self.runs) and not self.removed_failed
        )


def applied_blocks(status: WorkspaceStatus) -> list[AppliedBlock]:
    """The applied state the planner compares against."""
    from controller.plan import AppliedBlock

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
        log_tail=list(outcome.log_tail),
    )


# Errors a retry cannot fix: only a new commit (or spec change) can. Tampered block content
# (a digest that does not match, an unsafe archive) stays tampered however often it is pulled.
STALLING_REASONS = frozenset(
    {
        "InvalidWorkspace",
        "InvalidBlock",
        "InvalidReference",
        "KubeconfigInvalid",
        "DigestMismatch",
        "UnsafeBlockArchive",
        "StatusUnreadable",
    }
)
APPLIED = "Applied"
"""``Stalled=False`` after a revision is applied."""
RETRYING = "ProgressingWithRetry"
"""``Stalled=False`` after a failure a retry may fix (Flux's reason for a pending retry)."""


@dataclass(frozen=True)
class Failure:
    """Why a reconcile did not apply its revision: the reason of the step that failed, the
    human message, and whether only a new commit (or spec change) can help."""

    reason: str
    message: str
    stalled: bool
    error: CratekeeperError | None = None
    hint: str = "fix the workspace and push a new commit"
    """What helps when ``stalled``."""


def stalls(error: CratekeeperError | None, reason: str) -> bool:
    """Whether retrying cannot help: a stalling reason, or an error marked not retryable."""
    return reason in STALLING_REASONS or (error is not None and not error.retryable)


def _hint(error: CratekeeperError | None) -> str:
    """What helps when ``error`` stalls the Workspace."""
    if isinstance(error, RegistryError):
        return "push the block again from its source (or pin another version) and commit that"
    return "fix the workspace and push a new commit"


def failure(outcome: ReconcileOutcome) -> Failure | None:
    """The failure of ``outcome`` (None when it applied its revision or was up to date)."""
    if outcome.up_to_date or outcome.succeeded:
        return None
    if outcome.error is not None:
        error = outcome.error
        return Failure(error.reason, str(error), stalls(error, error.reason), error, _hint(error))
    failed = [r for r in outcome.runs if not r.succeeded]
    if failed:
        ran = failed[0]
        if ran.error is not None:
            reason = ran.error.reason
        else:
            reason = {"timedOut": "RunTimedOut"}.get(ran.status, "RunFailed")
        message = ran.message or f"{ran.run.block} {ran.run.action} {ran.status}"
        return Failure(reason, message, stalls(ran.error, reason), ran.error, _hint(ran.error))
    message = "uninstall failed for: " + ", ".join(outcome.removed_failed)
    return Failure("UninstallFailed", message, False)


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


def conditions_after(
    status: WorkspaceStatus, outcome: ReconcileOutcome, generation: int | None = None
) -> list[Condition]:
    """Ready, Reconciling and Stalled, computed once from the outcome of a reconcile."""
    now = outcome.finished
    conds = list(status.conditions)
    failed = failure(outcome)
    if failed is None:
        short = (status.last_applied_revision if outcome.up_to_date else outcome.revision) or ""
        message = f"Applied revision {short[:12] or outcome.revision[:12]}"
        message = "; ".join([message, *outcome.notes])
        conds = set_condition(conds, "Ready", "True", "Succeeded", message, now, generation)
        conds = set_condition(conds, "Stalled", "False", APPLIED, message, now, generation)
    else:
        conds = failed_conditions(conds, failed, now, generation)
    return set_condition(conds, "Reconciling", "False", "Idle", "", now, generation)


def failed_conditions(
    conditions: list[Condition], failed: Failure, now: datetime, generation: int | None
) -> list[Condition]:
    """Ready=False with the failed step's reason; Stalled says whether a retry will come."""
    conds = set_condition(
        conditions, "Ready", "False", failed.reason, failed.message, now, generation
    )
    if failed.stalled:
        return set_condition(
            conds,
            "Stalled",
            "True",
            failed.reason,
            f"retrying cannot help: {failed.hint}",
            now,
            generation,
        )
    return set_condition(
        conds, "Stalled", "False", RETRYING, f"{failed.reason}: will retry", now, generation
    )


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
    new.blocks = _blocks(new.blocks, outcome)
    if outcome.succeeded:
        new.last_applied_revision = outcome.revision
        new.last_applied_ref = outcome.ref
    if outcome.runs or outcome.error or outcome.removed:
        new.history = _history(new.history, _entry(outcome), history_limit)
    return new


def _blocks(recorded: Sequence[BlockStatus], outcome: ReconcileOutcome) -> list[BlockStatus]:
    """The block records after ``outcome``: a block moves only when its own run succeeded; when
    the revision is applied every block is that revision's (a block that failed before and
    was not run again is back at its applied pin, which is the revision's)."""
    blocks = {b.name: b for b in recorded}
    for ran in outcome.runs:
        run = ran.run
        if ran.succeeded:
            blocks[run.block] = BlockStatus(
                name=run.block,
                from_=run.to,
                version=run.version,
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
    if outcome.succeeded:
        return [b.model_copy(update={"phase": "Applied"}) for b in blocks.values()]
    return list(blocks.values())


def _entry(outcome: ReconcileOutcome) -> HistoryEntry:
    """The history entry of one attempt."""
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
        else "; ".join([*(r.message for r in outcome.runs if r.message), *outcome.notes])
    )
    return HistoryEntry(
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
        reapply=outcome.reapply,
        correction=outcome.correction,
        last_attempt=outcome.started,
    )


def _history(
    history: Sequence[HistoryEntry], entry: HistoryEntry, limit: int
) -> list[HistoryEntry]:
    """``entry`` added newest first, or merged into the entry of the same (revision, result)
    among the newest entries of that revision (a retry): its attempt count, last attempt,
    finish time, message, changes and jobs are the latest; its first start stays."""
    same_revision = 0
    while same_revision < len(history) and history[same_revision].revision == entry.revision:
        same_revision += 1
    for i, old in enumerate(history[:same_revision]):
        key = (entry.result, entry.action, entry.reapply, entry.correction)
        if (old.result, old.action, old.reapply, old.correction) == key:
            merged = entry.model_copy(update={"started": old.started, "attempts": old.attempts + 1})
            return _logs_of_newest([merged, *history[:i], *history[i + 1 :]][:limit])
    return _logs_of_newest([entry, *history][:limit])


def _logs_of_newest(history: list[HistoryEntry]) -> list[HistoryEntry]:
    """Log tails only in the newest entry: the status stays small however long the history."""
    return history[:1] + [
        e.model_copy(update={"changes": [c.model_copy(update={"log_tail": []}) for c in e.changes]})
        if any(c.log_tail for c in e.changes)
        else e
        for e in history[1:]
    ]


def is_applied(status: WorkspaceStatus, revision: str) -> bool:
    """Whether ``revision`` is applied and nothing was attempted since: then there is
    nothing to do. After a failed attempt of another revision, the applied one (back by a
    force-push or a reset) is reconciled again, since the failed attempt may have moved
    some of its blocks."""
    return status.last_applied_revision == revision and (
        status.last_attempted_revision in (None, revision)
    )


def changed(before: WorkspaceStatus, after: WorkspaceStatus) -> bool:
    """Whether ``after`` tells something new, worth an event: another applied revision, a new
    history entry (a new revision or result) or another Ready status or reason. A retry that
    failed the same way as the attempt before changes the status (its attempt count), but
    not in this sense."""
    return _news(before) != _news(after)


def _news(status: WorkspaceStatus) -> tuple[object, ...]:
    head = status.history[0] if status.history else None
    ready = status.condition("Ready")
    return (
        status.last_applied_revision,
        (head.revision, head.result) if head else None,
        (ready.status, ready.reason) if ready else None,
    )
