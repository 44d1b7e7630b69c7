"""One Workspace's reconcile loop: when to fetch, when to run, what to record (no Kopf here).

A worker lives as long as Kopf's daemon for its Workspace. Each tick fetches the source,
decides whether the pipeline must run, and records the result through its
:class:`~controller.operator.writer.StatusWriter` (a merge patch, or nothing when nothing
changed). Between ticks it sleeps until the interval elapses, a failed revision's retry is due,
or something wakes it (a spec change, the requested-at annotation, a webhook push).

Rules it keeps (DESIGN §4): one run per workspace at a time (the loop is serial); global limits
across workspaces on runs (run slots, held only while a block's action runs) and, separately,
on Git checks (check slots), so a check never queues behind runs; a failed revision is retried
with capped exponential backoff, a stalled one (invalid workspace) only when a new commit, a
spec change or a forced reconcile arrives; a new commit supersedes a pending retry at once (the
bookkeeping is :mod:`controller.operator.retry`). A result that could not be stored stays
pending and is written before anything else happens, so a revision recorded as applied never
runs again.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from pydantic import ValidationError

from controller.api.spec import PUSHED_AT, REAPPLY_AT, WorkspaceSpec, parse_duration
from controller.api.status import Salvaged, WorkspaceStatus
from controller.errors import CratekeeperError, GitAuthError, RegistryError
from controller.notify.events import pending_description
from controller.operator import events, requests, stored
from controller.operator.drift import DriftWatch
from controller.operator.events import EventSink
from controller.operator.retry import Retries
from controller.operator.secrets import GitCredentials, RunSecrets, held_secrets, secret_files
from controller.operator.shared import Shared
from controller.operator.wiring import SlottedRunner, registry_client
from controller.operator.writer import StatusWriter
from controller.pipeline import PipelineContext, previous_revision, reconcile, ref_label
from controller.runners.base import ActionRequest
from controller.source import GitAuth, Revision, fetch
from controller.source.spec import check_fetchable, git_ref
from controller.status import (
    Failure,
    ReconcileOutcome,
    changed,
    failure,
    is_applied,
    record,
    set_condition,
)

INTERNAL_ERROR = "an internal error interrupted the reconcile; the operator's log names it"


class WorkspaceWorker:
    """The loop of one Workspace; ``snapshot()`` returns its latest body as a plain dict."""

    def __init__(
        self,
        namespace: str,
        name: str,
        shared: Shared,
        snapshot: Callable[[], dict[str, Any]],
        events: EventSink,
        log: Callable[[str], None] = lambda _: None,
    ) -> None:
        self.namespace = namespace
        self.name = name
        self._shared = shared
        self._snapshot = snapshot
        self._events = events
        self._log = log
        self._writer = StatusWriter(
            shared.api,
            namespace,
            name,
            snapshot,
            events,
            on_written=lambda status: shared.metrics.observe(namespace, name, status),
        )
        self._wake = asyncio.Event()
        self._forced = False
        self._pushed_refs: set[str] = set()  # refs signed pushes named since the last fetch
        self._woken = False  # this tick was asked for (a push, a person, a spec change)
        self._stopping = False
        self._retries = Retries(shared.config.backoff)
        self._drift = DriftWatch(namespace, name, shared, self._writer, log)
        self._git = GitCredentials(shared.api, namespace)  # an idle check reads no Secret
        self.ticks = 0  # completed ticks (for tests and debugging)
        body = snapshot()
        self._generation = body.get("metadata", {}).get("generation")
        self._requested = requests.requested_at(body)
        self._reapply = requests.annotation(body, REAPPLY_AT)
        self._pushed = requests.annotation(body, PUSHED_AT)

    # signals

    def annotation(self, key: str) -> str | None:
        """An annotation of the Workspace as last seen."""
        value = (self._snapshot().get("metadata", {}).get("annotations") or {}).get(key)
        return str(value) if value is not None else None

    def wake(self, *, force: bool) -> None:
        """Reconcile now; ``force`` (a person asked) also skips a pending retry's backoff."""
        self._forced = self._forced or force
        self._wake.set()

    def pushed(self, ref: str | None) -> None:
        """A signed push (not forced); ``ref``: the ref it named, so that a push for ours is
        fetched at once, without the ``ls-remote`` before (``fetch(moved=True)``)."""
        if ref is not None:
            self._pushed_refs.add(ref)
        self.wake(force=False)

    def stop(self) -> None:
        """Finish the tick in progress (a run completes and is recorded), then exit."""
        self._stopping = True
        self._wake.set()

    def observe(self, body: Mapping[str, Any]) -> None:
        """A watch event: wake on a spec change or a new requested-at or reapply-at annotation."""
        generation = body.get("metadata", {}).get("generation")
        requested = requests.requested_at(body)
        reapply = requests.annotation(body, REAPPLY_AT)
        if generation != self._generation:
            self._generation = generation
            self.wake(force=True)
        if (requested, reapply) != (self._requested, self._reapply):
            self._requested, self._reapply = requested, reapply
            self.wake(force=True)
        pushed = requests.annotation(body, PUSHED_AT)
        if pushed != self._pushed:  # a push another replica received (operator/relay.py)
            self._pushed = pushed
            self.wake(force=False)

    # the loop

    async def run(self) -> None:
        """Tick until stopped; a tick in progress always completes."""
        while not self._stopping:
            try:
                delay = await self.tick()
                self._retries.loop_succeeded()
            except CratekeeperError as exc:  # the Kubernetes API failed: try again later
                self._log(f"reconcile of {self.namespace}/{self.name} failed: {exc}")
                delay = self._retries.loop_failed()
            except Exception as exc:  # a bug or the host (disk full): the daemon must live on
                # Only the type: the message could hold a Secret's contents.
                self._log(
                    f"reconcile of {self.namespace}/{self.name} failed: internal error "
                    f"{type(exc).__name__}"
                )
                await self._internal_error()
                delay = self._retries.loop_failed()
            self.ticks += 1
            if not self._stopping:
                await self._sleep(delay)
        self._git.close()
        with contextlib.suppress(CratekeeperError):  # a last try, or the next operator does it
            await self._writer.flush()

    async def _sleep(self, delay: float | None) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), timeout=delay)
        self._woken = self._wake.is_set()  # else the interval (or a retry) came round
        self._wake.clear()

    async def tick(self) -> float | None:
        """One pass; the seconds until the next one (None: only when woken)."""
        self._wake.clear()
        await self._writer.flush()  # never reconcile on top of a result not yet stored
        body = self._snapshot()
        generation = body.get("metadata", {}).get("generation")
        forced, self._forced = self._forced, False
        raw = self._writer.stored_raw(body)
        salvaged = stored.read_status(raw)
        if not salvaged.readable:  # never start over from a partial read: stop, run nothing
            await self._unreadable(raw, salvaged, generation)
            return requests.source_interval(body)  # look again: a person's repair wakes nothing
        status = salvaged.status
        try:
            spec = WorkspaceSpec.model_validate(body.get("spec") or {})
        except ValidationError as exc:
            message = "invalid spec: " + "; ".join(
                f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()
            )
            new = stored.failed_status(status, "InvalidSpec", message, generation, stalled=True)
            await self._writer.write(new, [("Warning", "InvalidSpec", message)])
            await self._acknowledge()
            return None
        self._shared.metrics.observe(self.namespace, self.name, status, suspended=spec.suspend)
        if spec.suspend:  # no runs; the status says so; a spec change wakes us
            await self._writer.write(*requests.suspend(status, generation))
            return None
        if requests.is_suspended(status):
            status, news = requests.resume(status, generation)
            await self._writer.write(status, news)
        interval = parse_duration(spec.source.interval)
        self._retries.drop(forced=forced, generation=generation)
        reapply = requests.reapply_requested(status, body)
        delay = await self._attempt(spec, status, generation, interval, reapply)
        await self._acknowledge()
        return delay

    async def _acknowledge(self) -> None:
        """Answer the requested-at annotation last seen (after the result is stored, so who
        waits for the answer reads that result)."""
        await self._writer.write(*requests.acknowledge(self._writer.stored(), self._requested))

    async def _attempt(
        self,
        spec: WorkspaceSpec,
        status: WorkspaceStatus,
        generation: int | None,
        interval: float,
        reapply: str | None = None,
    ) -> float:
        shared = self._shared
        labels = (self.namespace, self.name)
        started = time.monotonic()
        try:
            fresh = not self._git.cached
            git_auth = await self._git.auth(spec)
            try:
                revision = await self._fetch(spec, status, git_auth)
            except GitAuthError:
                if fresh:
                    raise
                self._git.forget()  # rotated since it was read: read it again, once
                git_auth = await self._git.auth(spec)
                revision = await self._fetch(spec, status, git_auth)
            wait = self._retries.wait(revision.sha, interval)
            if wait is not None:
                return wait
            # The other Secrets only when a run is due: an idle check reads none of them.
            due = not is_applied(status, revision.sha) or reapply or self._drift.is_due(spec)
            async with (
                secret_files(shared.api, self.namespace, spec, shared.base_keys, git_auth=git_auth)
                if due
                else held_secrets(git_auth, shared.base_keys)
            ) as secrets:
                outcome = await self._reconcile(spec, revision, status, secrets, bool(reapply))
                if outcome.up_to_date:  # in sync with Git: is the cluster still? (spec.drift)
                    self._retries.clear()
                    await self._writer.write(
                        record(status, outcome, spec.history_limit, generation)
                    )
                    drift = await self._drift.tick(spec, revision, secrets, generation)
                    return interval if drift is None else min(interval, max(drift, 1.0))
        except CratekeeperError as exc:
            shared.metrics.fetch_errors.labels(*labels, exc.reason).inc()
            delay = self._retries.failed(None, generation, stalled=False)
            new = stored.failed_status(status, exc.reason, str(exc), generation, stalled=False)
            await self._writer.write(new, [("Warning", exc.reason, str(exc))])
            return min(interval, delay)
        shared.metrics.reconcile_duration.labels(*labels).observe(time.monotonic() - started)
        return await self._finish(spec, outcome, generation, interval, reapply)

    async def _fetch(
        self, spec: WorkspaceSpec, status: WorkspaceStatus, git_auth: GitAuth | None
    ) -> Revision:
        source = spec.source
        settings = self._shared.settings
        check_fetchable(source.url, allow_local=settings.allow_local_sources)
        # A push named our ref: it moved (most likely), so fetch without asking ls-remote first.
        moved = git_ref(spec).remote_name in self._pushed_refs
        self._pushed_refs.clear()
        # Never a run slot: checks do not queue behind runs; an asked-for check goes before
        # the interval checks waiting (at 1,000 Workspaces a sweep queues hundreds).
        async with self._shared.check_slots.slot(urgent=self._woken):
            return await asyncio.to_thread(
                fetch,
                source.url,
                git_ref(spec),
                # One cache per namespace: a commit cached for one tenant is never served to
                # another without a fetch that checks that tenant's own credentials.
                settings.cache_dir / "git" / self.namespace,
                subpath=source.path,
                auth=git_auth,
                previous=previous_revision(status, git_ref(spec)),
                moved=moved,
            )

    async def _reconcile(
        self,
        spec: WorkspaceSpec,
        revision: Revision,
        status: WorkspaceStatus,
        secrets: RunSecrets,
        reapply: bool = False,
    ) -> ReconcileOutcome:
        shared = self._shared
        if revision.sha not in (status.last_fetched_revision, status.last_applied_revision):
            self._events(*events.new_revision(revision))

        generation = status.observed_generation

        async def reconciling(reason: str, message: str, event: events.Event, what: str) -> None:
            """Reconciling=True (advisory: the run goes on, its result counts)."""
            now = datetime.now(UTC)
            conds = set_condition(
                status.conditions, "Reconciling", "True", reason, message, now, generation
            )
            try:
                await self._writer.write(status.model_copy(update={"conditions": conds}), [event])
            except CratekeeperError as exc:
                self._writer.forget_pending()
                self._log(f"cannot record that {self.namespace}/{self.name} {what}: {exc}")

        async def run_queued(step: events.Step) -> None:
            """Every run slot is taken: say so at once (checked and planned, the run waits)."""
            message = f"revision {revision.sha[:12]} waits for a run slot"
            event = events.run_queued(revision.sha, step)
            await reconciling("Queued", message, event, "waits for a run slot")

        async def run_started(request: ActionRequest) -> None:
            """Written only when a run really starts."""
            message = f"applying revision {revision.sha[:12]}"
            event = events.run_started(revision.sha, request)
            await reconciling("Progressing", message, event, "started")
            if shared.notifier is not None:
                text = pending_description(request.block, request.pin)
                shared.notifier.started(self.namespace, self.name, spec, revision.sha, text)

        runner = SlottedRunner(
            shared.runner_factory(self.namespace, self.name, spec),
            shared.run_slots,
            run_queued,
            run_started,
        )
        ctx = PipelineContext(
            runner=runner,
            on_planned=runner.planned,
            registry=registry_client(shared.settings, secrets.docker_config),
            keys=secrets.keys,
            action=spec.action,
            timeout=parse_duration(spec.runner.timeout),
            work_dir=shared.config.work_dir,
            ref=ref_label(git_ref(spec)),
            reapply=reapply,
            artifacts=shared.artifacts(self.namespace, self.name) if shared.artifacts else None,
            workflow=spec.workflow,
            allow_prompted_actions=spec.allow_prompted_actions,
        )
        return await reconcile(revision, status, ctx, self._log)

    async def _finish(
        self,
        spec: WorkspaceSpec,
        outcome: ReconcileOutcome,
        generation: int | None,
        interval: float,
        reapply: str | None = None,
    ) -> float:
        metrics = self._shared.metrics
        labels = (self.namespace, self.name)
        # On top of what is stored now: the run-start write may have moved Reconciling.
        base = self._writer.stored()
        new = record(base, outcome, spec.history_limit, generation)
        if reapply is not None and outcome.succeeded:  # answered; a failed one is retried
            new.last_handled_reapply_at = reapply
        recorded = bool(outcome.runs or outcome.error or outcome.removed)  # record() adds one
        entry = new.history[0] if recorded and new.history else None
        failed: Failure | None = None
        if outcome.succeeded:
            self._retries.clear()
            if outcome.runs:
                metrics.runs.labels(*labels, "Succeeded").inc()
            metrics.last_applied.labels(*labels).set(outcome.finished.timestamp())
            delay = interval
        else:
            failed = failure(outcome) or Failure("RunFailed", "", stalled=False)
            if isinstance(failed.error, RegistryError):
                metrics.pull_errors.labels(*labels, failed.reason).inc()
            metrics.runs.labels(*labels, entry.result if entry else "Failed").inc()
            retry = self._retries.failed(outcome.revision, generation, failed.stalled)
            delay = min(interval, retry)
        # A retry that failed as the attempt before updates its history entry: no new event.
        news = [events.outcome(outcome, entry, failed)] if changed(base, new) else []
        await self._writer.write(new, news)
        if self._shared.notifier is not None:  # once recorded: what people hear is stored
            self._shared.notifier.finished(self.namespace, self.name, spec, outcome, entry, failed)
        return delay

    async def _unreadable(
        self, raw: Mapping[str, Any], salvaged: Salvaged, generation: int | None
    ) -> None:
        """Stalled, reason StatusUnreadable: only the conditions are written, so the fields a
        person must repair (and the history) stay as they are."""
        patch = stored.unreadable_patch(raw, salvaged, generation)
        if not patch:
            return
        await self._writer.patch(patch)
        self._events("Warning", "StatusUnreadable", stored.unreadable_message(salvaged))

    async def _internal_error(self) -> None:
        """Ready=False, reason InternalError, unless a recorded result still waits to be stored
        (it must not be replaced); best effort."""
        if self._writer.pending:
            return
        body = self._snapshot()
        generation = body.get("metadata", {}).get("generation")
        salvaged = stored.read_status(self._writer.stored_raw(body))
        if not salvaged.readable:
            return  # rewriting it from a partial read would lose what a person must repair
        new = stored.failed_status(
            salvaged.status, "InternalError", INTERNAL_ERROR, generation, False
        )
        try:
            await self._writer.write(new, [("Warning", "InternalError", INTERNAL_ERROR)])
        except Exception as exc:
            self._writer.forget_pending()
            self._log(f"cannot record the internal error: {type(exc).__name__}")
