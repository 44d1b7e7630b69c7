"""One Workspace's drift checks (``spec.drift``): when they are due, and what they record.

A check runs only in a tick that found the applied revision is the Git head (nothing to apply),
at most once per ``spec.drift.interval`` counted from the last apply or check, with the
operator's run slots like any run. It writes the ``Drifted`` condition (an event when that
changes), counts drifted blocks in ``cratekeeper_drift_detected_total``, and with
``spec.drift.correct`` re-applies the drifted blocks at the applied revision: an ordinary
reconcile of those blocks, recorded in history as a correction. A check itself never moves
``lastAppliedRevision`` (controller.drift).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta

from controller.api.spec import WorkspaceSpec, parse_duration
from controller.api.status import WorkspaceStatus
from controller.drift import (
    CORRECTED,
    DRIFT_DETECTED,
    DriftReport,
    check_drift,
    drifted_condition,
    with_drifted,
)
from controller.operator import events
from controller.operator.events import Event, EventType
from controller.operator.secrets import RunSecrets
from controller.operator.shared import Shared
from controller.operator.wiring import SlottedRunner, registry_client
from controller.operator.writer import StatusWriter
from controller.pipeline import PipelineContext, reconcile, ref_label
from controller.source import Revision
from controller.source.spec import git_ref
from controller.status import failure, record


async def _quiet(_: object) -> None:
    """A drift check announces no run start: it applies nothing."""


class DriftWatch:
    """The drift checks of one Workspace (its worker calls :meth:`tick`)."""

    def __init__(
        self,
        namespace: str,
        name: str,
        shared: Shared,
        writer: StatusWriter,
        log: Callable[[str], None] = lambda _: None,
    ) -> None:
        self.namespace = namespace
        self.name = name
        self._shared = shared
        self._writer = writer
        self._log = log
        self._checked: tuple[str, datetime] | None = None
        self.checks = 0  # completed checks (for tests)

    def due_in(self, spec: WorkspaceSpec, status: WorkspaceStatus, now: datetime) -> float | None:
        """Seconds until the next check of the applied revision (≤ 0: due); None: drift off."""
        if spec.drift is None or not status.last_applied_revision:
            return None
        every = timedelta(seconds=parse_duration(spec.drift.interval))
        applied = [
            e.finished
            for e in status.history
            if e.revision == status.last_applied_revision and e.result == "Succeeded"
        ]
        since = max(applied, default=None)
        if self._checked is not None and self._checked[0] == status.last_applied_revision:
            since = max(since or self._checked[1], self._checked[1])
        if since is None:
            return 0.0
        return (since + every - now).total_seconds()

    def is_due(self, spec: WorkspaceSpec) -> bool:
        """Whether a check of the applied revision (as the writer has it stored) is due now."""
        wait = self.due_in(spec, self._writer.stored(), datetime.now(UTC))
        return wait is not None and wait <= 0

    async def tick(
        self,
        spec: WorkspaceSpec,
        revision: Revision,
        secrets: RunSecrets,
        generation: int | None,
    ) -> float | None:
        """Check for drift when due (``revision`` is the applied one); seconds until the next
        check, or None when drift detection is off."""
        status = self._writer.stored()
        if spec.drift is None and status.condition("Drifted") is not None:
            # Drift detection turned off: a Drifted condition from before would lie.
            kept = [c for c in status.conditions if c.type != "Drifted"]
            await self._writer.write(status.model_copy(update={"conditions": kept}))
        wait = self.due_in(spec, status, datetime.now(UTC))
        if wait is None or wait > 0 or spec.drift is None:
            return wait
        ctx = self._context(spec, secrets)
        report = await check_drift(revision, status, ctx, self._log)
        self._checked = (revision.sha, report.finished)
        self.checks += 1
        await self._record(spec, revision.sha, report, generation)
        if report.drifted and spec.drift.correct:
            await self._correct(spec, revision, report, ctx, generation)
        return parse_duration(spec.drift.interval)

    def _context(self, spec: WorkspaceSpec, secrets: RunSecrets) -> PipelineContext:
        shared = self._shared
        runner = shared.runner_factory(self.namespace, self.name, spec)
        return PipelineContext(
            runner=SlottedRunner(runner, shared.run_slots, _quiet, _quiet),
            registry=registry_client(shared.settings, secrets.docker_config),
            keys=secrets.keys,
            action=spec.action,
            timeout=parse_duration(spec.runner.timeout),
            work_dir=shared.config.work_dir,
            ref=ref_label(git_ref(spec)),
            workflow=spec.workflow,
            allow_prompted_actions=spec.allow_prompted_actions,
            artifacts=(shared.artifacts(self.namespace, self.name) if shared.artifacts else None),
        )

    async def _record(
        self, spec: WorkspaceSpec, sha: str, report: DriftReport, generation: int | None
    ) -> None:
        state, reason, message = drifted_condition(report)
        for block in report.drifted:
            self._shared.metrics.drift_detected.labels(self.namespace, self.name, block.block).inc()
        kind: EventType = "Warning" if state != "False" else "Normal"
        news: list[Event] = [(kind, reason, message)]
        new = with_drifted(
            self._writer.stored(), state, reason, message, report.finished, generation
        )
        await self._writer.write(new, news)
        self._log(f"drift check of {self.namespace}/{self.name}: {reason}: {message}")
        if report.drifted and self._shared.notifier is not None:  # once recorded, as outcomes
            self._shared.notifier.drifted(self.namespace, self.name, spec, sha, message)

    async def _correct(
        self,
        spec: WorkspaceSpec,
        revision: Revision,
        report: DriftReport,
        ctx: PipelineContext,
        generation: int | None,
    ) -> None:
        """Re-apply the drifted blocks at the applied revision (spec.drift.correct)."""
        blocks = frozenset(b.block for b in report.drifted)
        base = self._writer.stored()
        fix = replace(ctx, reapply=True, correct=blocks)
        outcome = await reconcile(revision, base, fix, self._log)
        base = self._writer.stored()
        new = record(base, outcome, spec.history_limit, generation)
        entry = new.history[0] if new.history else None
        failed = failure(outcome)
        labels = (self.namespace, self.name)
        self._shared.metrics.runs.labels(*labels, entry.result if entry else "Failed").inc()
        news = [events.outcome(outcome, entry, failed)]
        if failed is None:
            names = ", ".join(sorted(blocks))
            message = f"re-applied the drifted blocks at {revision.sha[:12]}: {names}"
            new = with_drifted(new, "False", CORRECTED, message, outcome.finished, generation)
            news.append(("Normal", CORRECTED, message))
        await self._writer.write(new, news)


__all__ = ["DRIFT_DETECTED", "DriftWatch"]
