"""``Workspace.status`` (DESIGN §3): what was fetched, attempted and applied, per block.

The same model is the state file of ``cratekeeper reconcile --state FILE``, so the CLI and the
operator record exactly the same facts.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, computed_field

BlockPhase = Literal["Applied", "Failed", "Pending"]
RunResultName = Literal["Succeeded", "Failed", "TimedOut", "Invalid"]


class _Model(BaseModel):
    model_config = ConfigDict(populate_by_name=True, extra="ignore")


class BlockStatus(_Model):
    """The last applied state of one block instance."""

    name: str
    from_: str = Field(alias="from", description="The full pinned reference that was applied.")
    version: str
    digest: str | None = None
    config_hash: str = Field(alias="configHash")
    phase: BlockPhase = "Applied"
    last_run: datetime | None = Field(default=None, alias="lastRun")


class Change(_Model):
    """One block's change within a revision: ``old → new``."""

    block: str
    from_: str | None = Field(default=None, alias="from")
    to: str
    reason: str
    rollback: bool = False
    result: RunResultName | None = None
    log_tail: list[str] = Field(
        default_factory=list,
        alias="logTail",
        description="The last lines of the run's output, secrets redacted (newest entry only).",
    )

    def __str__(self) -> str:
        old = self.from_.rsplit(":", 1)[-1] if self.from_ else "(new)"
        note = (
            " (rollback)" if self.rollback else " (re-applied)" if self.reason == "reapply" else ""
        )
        return f"{self.block}: {old} → {self.to.rsplit(':', 1)[-1]}{note}"


class HistoryEntry(_Model):
    """One (revision, result): the attempts to apply a revision that ended the same way.

    A retry that ends like the attempt before updates the entry (``attempts``,
    ``lastAttempt``, ``finished``, ``message``) instead of adding one, so a failing revision
    retried with backoff never pushes the record of promotions and rollbacks out.
    """

    revision: str
    subject: str = ""
    author: str = ""
    changes: list[Change] = Field(default_factory=list)
    action: str = "deploy"
    result: RunResultName
    message: str = ""
    started: datetime = Field(description="When the first attempt started.")
    finished: datetime = Field(description="When the last attempt finished.")
    job_names: list[str] = Field(default_factory=list, alias="jobNames")
    reapply: bool = Field(
        default=False,
        description="A person asked to run every block of this revision again (the re-apply "
        "annotation): not a change in Git.",
    )
    correction: bool = Field(
        default=False,
        description="A drift correction (spec.drift.correct): the blocks found drifted ran "
        "again at the applied revision.",
    )
    attempts: int = Field(default=1, ge=1, description="Attempts that ended with this result.")
    last_attempt: datetime | None = Field(
        default=None, alias="lastAttempt", description="When the last attempt started."
    )


class Condition(_Model):
    """A Kubernetes-convention condition (``metav1.Condition``)."""

    type: Literal["Ready", "Reconciling", "Stalled", "Suspended", "Drifted"]
    status: Literal["True", "False", "Unknown"]
    reason: str
    message: str = ""
    last_transition_time: datetime = Field(alias="lastTransitionTime")
    observed_generation: int | None = Field(default=None, alias="observedGeneration")


class WorkspaceStatus(_Model):
    """What cratekeeper knows of one workspace; ``lastAppliedRevision`` moves only on success."""

    observed_generation: int | None = Field(default=None, alias="observedGeneration")
    conditions: list[Condition] = Field(default_factory=list)
    last_fetched_revision: str | None = Field(default=None, alias="lastFetchedRevision")
    last_attempted_revision: str | None = Field(default=None, alias="lastAttemptedRevision")
    last_applied_revision: str | None = Field(default=None, alias="lastAppliedRevision")
    last_applied_ref: str | None = Field(
        default=None,
        alias="lastAppliedRef",
        description=(
            "The source ref lastAppliedRevision was applied from (branch:NAME, tag:NAME or "
            "commit:SHA): a new commit must descend from lastAppliedRevision only while the "
            "ref stays the same."
        ),
    )
    last_handled_reconcile_at: str | None = Field(
        default=None,
        alias="lastHandledReconcileAt",
        description="The value of the cratekeeper.dev/requested-at annotation last answered "
        "(Flux's convention): a reconcile ran after that request.",
    )
    last_handled_reapply_at: str | None = Field(
        default=None,
        alias="lastHandledReapplyAt",
        description="The value of the cratekeeper.dev/reapply-at annotation last answered: "
        "every block of the revision then current ran again and succeeded.",
    )
    blocks: list[BlockStatus] = Field(default_factory=list)
    history: list[HistoryEntry] = Field(default_factory=list)

    @computed_field(  # type: ignore[prop-decorator]
        alias="lastAppliedShortRevision",
        description="The last applied commit, short (REVISION column).",
    )
    @property
    def last_applied_short_revision(self) -> str | None:
        return self.last_applied_revision[:12] if self.last_applied_revision else None

    @computed_field(  # type: ignore[prop-decorator]
        alias="blocksSummary", description="Blocks applied / blocks recorded (BLOCKS column)."
    )
    @property
    def blocks_summary(self) -> str:
        return f"{sum(b.phase == 'Applied' for b in self.blocks)}/{len(self.blocks)}"

    def condition(self, kind: str) -> Condition | None:
        """The condition of type ``kind``, if set."""
        return next((c for c in self.conditions if c.type == kind), None)

    def dump(self) -> dict[str, object]:
        """JSON-ready, with the CRD's camelCase names."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)


# Fields a reconcile cannot do without: dropping one would run applied blocks again (or let
# rewritten history through), so when one does not validate, nothing runs.
_ESSENTIAL = ("lastAppliedRevision", "lastAppliedRef", "lastAttemptedRevision")
# Fields of a block record that only describe it: when one does not validate it is left out.
_BLOCK_DESCRIPTIVE = ("phase", "lastRun")


@dataclass(frozen=True)
class Salvaged:
    """A stored status read field by field: what validated, and what did not."""

    status: WorkspaceStatus
    dropped: tuple[str, ...] = ()
    """Parts that did not validate and are left out (a history entry, a condition)."""
    unreadable: tuple[str, ...] = ()
    """Parts that did not validate and cannot be left out (``lastAppliedRevision``, a block):
    reconciling on top of the rest would run applied blocks again, so nothing may run."""

    @property
    def readable(self) -> bool:
        return not self.unreadable


def salvage_status(raw: object) -> Salvaged:
    """``raw`` (a stored ``.status`` or a state file) as a :class:`WorkspaceStatus`, never
    empty because one part is invalid (a hand edit, a newer version's value): each field,
    block, history entry and condition is kept when it validates on its own."""
    if raw is None:
        return Salvaged(WorkspaceStatus())
    if not isinstance(raw, dict):
        return Salvaged(WorkspaceStatus(), unreadable=("status (not an object)",))
    try:
        return Salvaged(WorkspaceStatus.model_validate(raw))
    except ValidationError:
        pass
    kept: dict[str, object] = {}
    dropped: list[str] = []
    unreadable: list[str] = []
    for name, field in WorkspaceStatus.model_fields.items():
        key = field.alias or name
        if key not in raw:
            continue
        value = raw[key]
        if key in ("blocks", "history", "conditions"):
            items, bad = _items(key, value)
            kept[key] = items
            (unreadable if key == "blocks" else dropped).extend(bad)
        elif _valid({key: value}):
            kept[key] = value
        else:
            (unreadable if key in _ESSENTIAL else dropped).append(key)
    status = WorkspaceStatus.model_validate(kept)
    return Salvaged(status, tuple(dropped), tuple(unreadable))


def _valid(fields: dict[str, object]) -> bool:
    try:
        WorkspaceStatus.model_validate(fields)
    except ValidationError:
        return False
    return True


def _items(key: str, value: object) -> tuple[list[object], list[str]]:
    """The entries of list field ``key`` that validate, and the names of those that do not
    (a block whose descriptive fields are invalid is kept without them, phase ``Pending``:
    its pin is known, its state is not)."""
    if not isinstance(value, list):
        return [], [key]
    kept: list[object] = []
    bad: list[str] = []
    for i, item in enumerate(value):
        if _valid({key: [item]}):
            kept.append(item)
            continue
        if key == "blocks" and isinstance(item, dict):
            bare = {k: v for k, v in item.items() if k not in _BLOCK_DESCRIPTIVE}
            if _valid({key: [{**bare, "phase": "Pending"}]}):
                kept.append({**bare, "phase": "Pending"})
                continue
        bad.append(f"{key}[{i}]")
    return kept, bad
