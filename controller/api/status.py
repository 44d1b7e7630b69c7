"""``Workspace.status`` (DESIGN §3): what was fetched, attempted and applied, per block.

The same model is the state file of ``cratekeeper reconcile --state FILE``, so the CLI and the
operator record exactly the same facts.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, computed_field

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

    def __str__(self) -> str:
        old = self.from_.rsplit(":", 1)[-1] if self.from_ else "(new)"
        return f"{self.block}: {old} → {self.to.rsplit(':', 1)[-1]}" + (
            " (rollback)" if self.rollback else ""
        )


class HistoryEntry(_Model):
    """One attempt to apply one revision."""

    revision: str
    subject: str = ""
    author: str = ""
    changes: list[Change] = Field(default_factory=list)
    action: str = "deploy"
    result: RunResultName
    message: str = ""
    started: datetime
    finished: datetime
    job_names: list[str] = Field(default_factory=list, alias="jobNames")


class Condition(_Model):
    """A Kubernetes-convention condition (``metav1.Condition``)."""

    type: Literal["Ready", "Reconciling", "Stalled"]
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
