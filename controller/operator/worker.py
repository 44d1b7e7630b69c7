"""One Workspace's reconcile loop: when to fetch, when to run, what to write (no Kopf here).

A worker lives as long as Kopf's daemon for its Workspace. Each tick fetches the source,
decides whether the pipeline must run, and writes the resulting status as a merge patch, or
nothing at all when nothing changed. Between ticks it sleeps until the interval elapses, a
failed revision's retry is due, or something wakes it (a spec change, the requested-at
annotation, a webhook push).

Rules it keeps (DESIGN §4): one run per workspace at a time (the loop is serial) and a global
limit across workspaces (a shared semaphore); a failed revision is retried with capped
exponential backoff, a stalled one (invalid workspace) only when a new commit, a spec change
or a forced reconcile arrives; a new commit supersedes a pending retry at once (the bookkeeping
is :mod:`controller.operator.retry`). A result that could not be stored stays pending in memory
and is written before anything else happens, so a revision recorded as applied never runs again.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal, Protocol

from pydantic import ValidationError

from controller.api.spec import REQUESTED_AT, WorkspaceSpec, parse_duration
from controller.api.status import Salvaged, WorkspaceStatus
from controller.errors import CratekeeperError, RegistryError, SourceError
from controller.kube import Workspace as KubeWorkspace
from controller.operator import stored
from controller.operator.config import OperatorConfig
from controller.operator.metrics import OperatorMetrics
from controller.operator.retry import Retries
from controller.operator.secrets import RunSecrets, SecretReader, secret_files
from controller.pipeline import PipelineContext, previous_revision, reconcile, ref_label
from controller.registry import RegistryClient, RegistryOptions
from controller.runners.base import ActionRequest, OutputHandler, Runner, RunResult
from controller.secrets import AgeKeys
from controller.settings import Settings
from controller.source import GitRef, Revision, fetch
from controller.status import Failure, ReconcileOutcome, changed, failure, record, set_condition

EventType = Literal["Normal", "Warning"]
RunnerFactory = Callable[[str, str, WorkspaceSpec], Runner]
"""``(namespace, name, spec)`` of a Workspace → the runner of its next reconcile."""


class EventSink(Protocol):
    """Posts a Kubernetes Event on the Workspace (Kopf's ``kopf.event`` in production)."""

    def __call__(self, type: EventType, reason: str, message: str) -> None: ...


class StatusWriter(SecretReader, Protocol):
    """Reads Secrets and merge-patches Workspace status (:class:`controller.kube.Kube`)."""

    async def patch_workspace_status(
        self, namespace: str, name: str, status: Mapping[str, Any]
    ) -> KubeWorkspace | None:
        """Merge-patch the status; the stored Workspace (None: it is gone)."""
        ...


@dataclass
class Shared:
    """What every worker of one operator shares."""

    settings: Settings
    config: OperatorConfig
    api: StatusWriter
    metrics: OperatorMetrics
    runner_factory: RunnerFactory
    base_keys: AgeKeys = field(default_factory=AgeKeys)
    slots: asyncio.Semaphore = field(default_factory=lambda: asyncio.Semaphore(4))


INTERNAL_ERROR = "an internal error interrupted the reconcile; the operator's log names it"


def git_ref(spec: WorkspaceSpec) -> GitRef:
    ref = spec.source.ref
    if ref.commit:
        return GitRef.commit(ref.commit)
    if ref.tag:
        return GitRef.tag(ref.tag)
    return GitRef.branch(ref.branch or "main")


class _AnnouncingRunner:
    """The runner, announcing the first run of a reconcile before it starts."""

    def __init__(self, inner: Runner, on_start: Callable[[ActionRequest], Awaitable[None]]) -> None:
        self._inner = inner
        self._on_start = on_start
        self._started = False

    async def run(
        self, request: ActionRequest, on_output: OutputHandler | None = None
    ) -> RunResult:
        if not self._started:
            self._started = True
            await self._on_start(request)
        return await self._inner.run(request, on_output)


Event = tuple[EventType, str, str]


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
        self._wake = asyncio.Event()
        self._forced = False
        self._stopping = False
        self._retries = Retries(shared.config.backoff)
        self.ticks = 0  # completed ticks (for tests and debugging)
        # The status as we last stored it (and its resourceVersion): the watch may not have
        # brought it back yet.
        self._written: dict[str, Any] | None = None
        self._written_version: int | None = None
        # A status (and its events) the API did not take yet: written before anything else.
        self._pending: tuple[WorkspaceStatus, Sequence[Event]] | None = None
        body = snapshot()
        self._generation = body.get("metadata", {}).get("generation")
        self._requested = self._requested_at(body)

    # signals

    @staticmethod
    def _requested_at(body: Mapping[str, Any]) -> str | None:
        value = (body.get("metadata", {}).get("annotations") or {}).get(REQUESTED_AT)
        return str(value) if value is not None else None

    def annotation(self, key: str) -> str | None:
        """An annotation of the Workspace as last seen."""
        value = (self._snapshot().get("metadata", {}).get("annotations") or {}).get(key)
        return str(value) if value is not None else None

    def wake(self, *, force: bool) -> None:
        """Reconcile now; ``force`` (a person asked) also skips a pending retry's backoff."""
        self._forced = self._forced or force
        self._wake.set()

    def stop(self) -> None:
        """Finish the tick in progress (a run completes and is recorded), then exit."""
        self._stopping = True
        self._wake.set()

    def observe(self, body: Mapping[str, Any]) -> None:
        """A watch event: wake on a spec change or a new requested-at annotation."""
        generation = body.get("metadata", {}).get("generation")
        requested = self._requested_at(body)
        if generation != self._generation:
            self._generation = generation
            self.wake(force=True)
        if requested != self._requested:
            self._requested = requested
            self.wake(force=True)

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
        if self._pending is not None:  # a last try, or the next operator runs it again
            with contextlib.suppress(CratekeeperError):
                await self._write(*self._pending, flush=True)

    async def _sleep(self, delay: float | None) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), timeout=delay)
        self._wake.clear()

    def _stored(self, body: Mapping[str, Any]) -> dict[str, Any]:
        return stored.stored_status(body, self._written, self._written_version)

    async def tick(self) -> float | None:
        """One pass; the seconds until the next one (None: only when woken)."""
        self._wake.clear()
        if self._pending is not None:  # never reconcile on top of a result not yet stored
            await self._write(*self._pending, flush=True)
        body = self._snapshot()
        generation = body.get("metadata", {}).get("generation")
        forced, self._forced = self._forced, False
        raw = self._stored(body)
        salvaged = stored.read_status(raw)
        if not salvaged.readable:  # never start over from a partial read: stop, run nothing
            await self._unreadable(raw, salvaged, generation)
            return self._interval(body)  # look again: a person's repair wakes nothing
        status = salvaged.status
        try:
            spec = WorkspaceSpec.model_validate(body.get("spec") or {})
        except ValidationError as exc:
            message = "invalid spec: " + "; ".join(
                f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()
            )
            new = stored.failed_status(status, "InvalidSpec", message, generation, stalled=True)
            await self._write(new, [("Warning", "InvalidSpec", message)])
            return None
        self._shared.metrics.observe(self.namespace, self.name, status, suspended=spec.suspend)
        if spec.suspend:
            return None  # suspended: no runs and no writes; a spec change wakes us
        interval = parse_duration(spec.source.interval)
        self._retries.drop(forced=forced, generation=generation)
        async with self._shared.slots:
            return await self._attempt(spec, status, generation, interval)

    async def _attempt(
        self, spec: WorkspaceSpec, status: WorkspaceStatus, generation: int | None, interval: float
    ) -> float:
        shared = self._shared
        labels = (self.namespace, self.name)
        started = time.monotonic()
        try:
            async with secret_files(shared.api, self.namespace, spec, shared.base_keys) as secrets:
                revision = await self._fetch(spec, status, secrets)
                wait = self._retries.wait(revision.sha, interval)
                if wait is not None:
                    return wait
                outcome = await self._reconcile(spec, revision, status, secrets)
        except CratekeeperError as exc:
            shared.metrics.fetch_errors.labels(*labels, exc.reason).inc()
            delay = self._retries.failed(None, generation, stalled=False)
            new = stored.failed_status(status, exc.reason, str(exc), generation, stalled=False)
            await self._write(new, [("Warning", exc.reason, str(exc))])
            return min(interval, delay)
        if outcome.up_to_date:
            self._retries.clear()
            await self._write(record(status, outcome, spec.history_limit, generation))
            return interval
        shared.metrics.reconcile_duration.labels(*labels).observe(time.monotonic() - started)
        return await self._finish(spec, outcome, generation, interval)

    async def _fetch(
        self, spec: WorkspaceSpec, status: WorkspaceStatus, secrets: RunSecrets
    ) -> Revision:
        source = spec.source
        settings = self._shared.settings
        if not settings.allow_local_sources and _is_local(source.url):
            raise SourceError(
                f"spec.source.url {source.url!r} is a path on the controller's own disk; "
                "use a Git server URL (CRATEKEEPER_ALLOW_LOCAL_SOURCES enables it for demos)"
            )
        return await asyncio.to_thread(
            fetch,
            source.url,
            git_ref(spec),
            # One cache per namespace: a commit cached for one tenant is never served to
            # another without a fetch that checks that tenant's own credentials.
            settings.cache_dir / "git" / self.namespace,
            subpath=source.path,
            auth=secrets.git_auth,
            previous=previous_revision(status, git_ref(spec)),
        )

    async def _reconcile(
        self,
        spec: WorkspaceSpec,
        revision: Revision,
        status: WorkspaceStatus,
        secrets: RunSecrets,
    ) -> ReconcileOutcome:
        shared = self._shared
        if revision.sha not in (status.last_fetched_revision, status.last_applied_revision):
            self._events(
                "Normal",
                "NewRevision",
                f"new revision {revision.sha[:12]} {revision.subject!r} by {revision.author}",
            )

        async def run_started(request: ActionRequest) -> None:
            """Reconciling=True, written only when a run really starts."""
            conds = set_condition(
                status.conditions,
                "Reconciling",
                "True",
                "Progressing",
                f"applying revision {revision.sha[:12]}",
                datetime.now(UTC),
                status.observed_generation,
            )
            message = (
                f"applying revision {revision.sha[:12]}: {request.block} "
                f"{request.action} ({request.pin})"
            )
            try:
                await self._write(
                    status.model_copy(update={"conditions": conds}),
                    [("Normal", "RunStarted", message)],
                )
            except CratekeeperError as exc:  # advisory: the run goes on, its result counts
                self._pending = None
                self._log(f"cannot record that {self.namespace}/{self.name} started: {exc}")

        registry = RegistryClient(
            RegistryOptions.from_settings(shared.settings, docker_config=secrets.docker_config)
        )
        ctx = PipelineContext(
            runner=_AnnouncingRunner(
                shared.runner_factory(self.namespace, self.name, spec), run_started
            ),
            registry=registry,
            keys=secrets.keys,
            action=spec.action,
            timeout=parse_duration(spec.runner.timeout),
            work_dir=shared.config.work_dir,
            ref=ref_label(git_ref(spec)),
        )
        return await reconcile(revision, status, ctx, self._log)

    async def _finish(
        self,
        spec: WorkspaceSpec,
        outcome: ReconcileOutcome,
        generation: int | None,
        interval: float,
    ) -> float:
        shared = self._shared
        labels = (self.namespace, self.name)
        # On top of what is stored now: the run-start write may have moved Reconciling.
        base = stored.status_of(self._stored(self._snapshot()))
        new = record(base, outcome, spec.history_limit, generation)
        recorded = bool(outcome.runs or outcome.error or outcome.removed)  # record() adds one
        entry = new.history[0] if recorded and new.history else None
        changes = ", ".join(str(c) for c in entry.changes) if entry else ""
        short = outcome.revision[:12]
        events: list[Event]
        if outcome.succeeded:
            self._retries.clear()
            if outcome.runs:
                shared.metrics.runs.labels(*labels, "Succeeded").inc()
            shared.metrics.last_applied.labels(*labels).set(outcome.finished.timestamp())
            detail = f": {changes}" if changes else " (no block changed)"
            events = [("Normal", "RunSucceeded", f"applied {short}{detail}")]
            delay = interval
        else:
            failed = failure(outcome) or Failure("RunFailed", "", stalled=False)
            if isinstance(failed.error, RegistryError):
                shared.metrics.pull_errors.labels(*labels, failed.reason).inc()
            shared.metrics.runs.labels(*labels, entry.result if entry else "Failed").inc()
            stalled = failed.stalled
            delay = min(interval, self._retries.failed(outcome.revision, generation, stalled))
            kind = "ValidationFailed" if stalled else "RunFailed"
            detail = f" ({changes})" if changes else ""
            text = f"{short} not applied{detail}: {failed.reason}: {failed.message}"
            events = [("Warning", kind, text)]
        # A retry that failed as the attempt before updates its history entry: no new event.
        await self._write(new, events if changed(base, new) else ())
        return delay

    @staticmethod
    def _interval(body: Mapping[str, Any]) -> float | None:
        """``spec.source.interval`` in seconds; None when the spec does not say (or is bad)."""
        try:
            spec = WorkspaceSpec.model_validate(body.get("spec") or {})
            return parse_duration(spec.source.interval)
        except ValueError:  # pydantic's ValidationError included
            return None

    async def _unreadable(
        self, raw: Mapping[str, Any], salvaged: Salvaged, generation: int | None
    ) -> None:
        """Stalled, reason StatusUnreadable: only the conditions are written, so the fields a
        person must repair (and the history) stay as they are."""
        patch = stored.unreadable_patch(raw, salvaged, generation)
        if not patch:
            return
        result = await self._shared.api.patch_workspace_status(self.namespace, self.name, patch)
        if result is not None:
            self._written = dict(result.status)
            self._written_version = stored.resource_version(
                {"metadata": {"resourceVersion": result.resource_version}}
            )
        self._events("Warning", "StatusUnreadable", stored.unreadable_message(salvaged))

    async def _internal_error(self) -> None:
        """Ready=False, reason InternalError, unless a recorded result still waits to be stored
        (it must not be replaced); best effort."""
        if self._pending is not None:
            return
        body = self._snapshot()
        generation = body.get("metadata", {}).get("generation")
        salvaged = stored.read_status(self._stored(body))
        if not salvaged.readable:
            return  # rewriting it from a partial read would lose what a person must repair
        new = stored.failed_status(
            salvaged.status, "InternalError", INTERNAL_ERROR, generation, False
        )
        try:
            await self._write(new, [("Warning", "InternalError", INTERNAL_ERROR)])
        except Exception as exc:
            self._pending = None
            self._log(f"cannot record the internal error: {type(exc).__name__}")

    async def _write(
        self, new: WorkspaceStatus, events: Sequence[Event] = (), *, flush: bool = False
    ) -> None:
        """Patch the status when it differs from what is stored; post ``events`` only then.

        When the patch fails, ``new`` stays pending: the next tick writes it first (``flush``;
        its events are due even when the failed patch was stored after all).
        """
        current = self._stored(self._snapshot())
        patch = stored.merge_patch(current, new.dump())
        if not patch:
            self._pending = None
            for kind, reason, message in events if flush else ():
                self._events(kind, reason, message)
            return
        self._pending = (new, tuple(events))
        result = await self._shared.api.patch_workspace_status(self.namespace, self.name, patch)
        self._pending = None
        if result is None:  # the Workspace is gone
            self._written, self._written_version = dict(new.dump()), None
        else:
            self._written = dict(result.status)
            self._written_version = stored.resource_version(
                {"metadata": {"resourceVersion": result.resource_version}}
            )
        self._shared.metrics.observe(self.namespace, self.name, new)
        for kind, reason, message in events:
            self._events(kind, reason, message)


def _is_local(url: str) -> bool:
    """A ``file://`` URL (the spec's pattern admits no plain paths)."""
    return url.lower().startswith("file:")
