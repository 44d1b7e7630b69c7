"""Sending commit statuses and alerts off the reconcile path.

The worker calls :meth:`Notifier.started` when a revision's first run starts and
:meth:`Notifier.finished` once its outcome is recorded; both return at once. The sending runs
in background tasks: Secrets are read at send time (a rotated token takes effect on the next
notification), requests go through :func:`controller.notify.http.send` (bounded retries, one
timeout) in a thread, and a failure is counted (``on_failure``) and logged by channel and
Secret name, never with a token or a webhook URL. Notifications of one Workspace go out in the
order they were asked for, so a ``success`` never lands before the ``pending`` it replaces.
Alerts go to the channels of ``spec.notify.alerts`` and to the namespace's ``Alert`` objects
that select the Workspace (listed, with the Workspace's labels, when there is news to send).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Protocol

from pydantic import ValidationError

from controller.api.alert import ALERT_KIND, AlertResourceSpec, selected
from controller.api.spec import AlertSpec, WorkspaceSpec, parse_duration
from controller.api.status import HistoryEntry
from controller.errors import NotifyError
from controller.kube import AlertObject, KubeError, Secret, Workspace
from controller.notify.alerts import Notice, alert_request
from controller.notify.events import commit_state, describe, notices
from controller.notify.forges import State, context_of, forge_of, status_request
from controller.notify.http import DEFAULT_POLICY, Policy, Request, send
from controller.notify.ratelimit import RateLimiter
from controller.status import Failure, ReconcileOutcome

TOKEN_KEY = "token"  # noqa: S105 (a key name, not a secret)
ADDRESS_KEY = "address"

log = logging.getLogger("cratekeeper.notify")

FailureCounter = Callable[[str, str, str], None]
"""``(namespace, name, channel)`` of a notification that could not be delivered."""


class SecretReader(Protocol):
    """Reads a Secret (:meth:`controller.kube.Kube.get_secret`)."""

    async def get_secret(self, namespace: str, name: str) -> Secret | None: ...


class AlertReader(Protocol):
    """Lists a namespace's Alerts and reads a Workspace's labels (:class:`controller.kube.Kube`)."""

    async def list_alerts(self, namespace: str) -> list[AlertObject]: ...

    async def get_workspace(self, namespace: str, name: str) -> Workspace | None: ...


Key = tuple[str, str]


class Notifier:
    """The commit statuses and alerts of every Workspace of one operator."""

    def __init__(
        self,
        secrets: SecretReader,
        *,
        policy: Policy = DEFAULT_POLICY,
        on_failure: FailureCounter = lambda *_: None,
        limiter: RateLimiter | None = None,
        alerts: AlertReader | None = None,
    ) -> None:
        self._secrets = secrets
        self._cluster = alerts
        self._policy = policy
        self._on_failure = on_failure
        self._limiter = limiter or RateLimiter()
        self._tasks: set[asyncio.Task[None]] = set()
        self._last: dict[Key, asyncio.Task[None]] = {}

    # what the worker calls

    def started(self, namespace: str, name: str, spec: WorkspaceSpec, sha: str, text: str) -> None:
        """A run of revision ``sha`` starts: commit status ``pending``."""
        self._commit_status(namespace, name, spec, sha, "pending", text)

    def finished(
        self,
        namespace: str,
        name: str,
        spec: WorkspaceSpec,
        outcome: ReconcileOutcome,
        entry: HistoryEntry | None,
        failed: Failure | None,
    ) -> None:
        """An outcome was recorded: the commit status of its revision, its alerts in
        ``spec.notify.alerts``, and those of the namespace's Alerts that select it."""
        state = commit_state(outcome)
        if state is not None:
            self._commit_status(
                namespace, name, spec, outcome.revision, state, describe(entry, failed)
            )
        self._dispatch(namespace, name, spec, notices(namespace, name, outcome, entry, failed))

    def drifted(
        self, namespace: str, name: str, spec: WorkspaceSpec, revision: str, message: str
    ) -> None:
        """A drift check found the cluster changed from the applied ``revision``: DriftFound,
        to ``spec.notify.alerts`` and the namespace's Alerts that select the Workspace."""
        notice = Notice(
            kind="DriftFound",
            namespace=namespace,
            name=name,
            revision=revision,
            reason="DriftDetected",
            message=message,
        )
        self._dispatch(namespace, name, spec, [notice])

    def _dispatch(
        self, namespace: str, name: str, spec: WorkspaceSpec, found: list[Notice]
    ) -> None:
        """Send each notice to the Workspace's own alerts that take its kind (rate-limited),
        then to the namespace's Alerts."""
        for notice in found:
            for index, alert in enumerate(spec.notify.alerts):
                if notice.kind not in alert.events:
                    continue
                key = (namespace, name, index, alert.type, alert.secret_ref.name)
                if self._limiter.allow((*key, notice.kind, notice.revision), _window(alert)):
                    self._alert(namespace, name, alert, index, notice)
        self._cluster_alerts(namespace, name, found)

    async def aclose(self, timeout: float = 10.0) -> None:
        """Let notifications in flight finish (for at most ``timeout`` seconds), then stop."""
        pending = set(self._tasks)
        if not pending:
            return
        _, late = await asyncio.wait(pending, timeout=timeout)
        for task in late:
            task.cancel()
        for task in late:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def idle(self) -> None:
        """Wait until every notification asked for so far is sent or given up (tests)."""
        while self._tasks:
            await asyncio.wait(set(self._tasks))

    # the sending

    def _commit_status(
        self, namespace: str, name: str, spec: WorkspaceSpec, sha: str, state: State, text: str
    ) -> None:
        config = spec.notify.commit_status
        if config is None:
            return
        try:
            forge = forge_of(spec.source.url, config)
        except NotifyError as exc:
            self._failed(namespace, name, "forge", str(exc))
            return

        async def job() -> None:
            token = await self._key(
                namespace, config.secret_ref.name, TOKEN_KEY, "spec.notify.commitStatus"
            )
            request = status_request(
                forge,
                sha,
                state,
                context=context_of(name),
                description=text,
                token=token.decode().strip(),
            )
            await self._send(request)

        self._schedule(namespace, name, forge.provider, job)

    def _alert(
        self, namespace: str, name: str, alert: AlertSpec, index: int, notice: Notice
    ) -> None:
        where = f"spec.notify.alerts[{index}]"

        async def job() -> None:
            await self._deliver(namespace, alert, where, notice, signed=alert.type == "webhook")

        self._schedule(namespace, name, alert.type, job)

    def _cluster_alerts(self, namespace: str, name: str, found: list[Notice]) -> None:
        """Send ``found`` to every Alert of the namespace that selects this Workspace."""
        cluster = self._cluster
        if cluster is None or not found:
            return

        async def job() -> None:
            try:
                stored = await cluster.list_alerts(namespace)
                workspace = await cluster.get_workspace(namespace, name) if stored else None
            except KubeError as exc:
                raise NotifyError(f"Alerts of namespace {namespace}: {exc}") from exc
            labels = workspace.labels if workspace is not None else {}
            for obj in stored:
                where = f"Alert {namespace}/{obj.name}"
                try:
                    spec = AlertResourceSpec.model_validate(obj.spec)
                except ValidationError as exc:
                    self._failed(namespace, name, "alert", f"{where}: {_first_error(exc)}")
                    continue
                channel = spec.channel()
                for notice in found:
                    if not selected(spec, labels, notice.kind):
                        continue
                    key = (namespace, name, ALERT_KIND, obj.name, notice.kind, notice.revision)
                    if not self._limiter.allow(key, _window(channel)):
                        continue
                    try:
                        await self._deliver(namespace, channel, where, notice, signed=spec.signed)
                    except NotifyError as exc:
                        self._failed(namespace, name, channel.type, str(exc))

        self._schedule(namespace, name, "alert", job)

    async def _deliver(
        self, namespace: str, alert: AlertSpec, where: str, notice: Notice, *, signed: bool
    ) -> None:
        """Send ``notice`` to one channel: its URL (and HMAC key) read from the Secret now."""
        address = await self._key(namespace, alert.secret_ref.name, ADDRESS_KEY, where)
        token = None
        if signed:
            token = await self._key(namespace, alert.secret_ref.name, TOKEN_KEY, where)
        label = f"{alert.type} alert ({where}, Secret {alert.secret_ref.name})"
        url = address.decode().strip()
        if not url.startswith(("https://", "http://")):
            raise NotifyError(
                f"{label}: key {ADDRESS_KEY!r} is not an http(s) URL; put the webhook URL there"
            )
        await self._send(alert_request(alert.type, notice, url, token, label))

    async def _key(self, namespace: str, secret: str, key: str, where: str) -> bytes:
        found = await self._secrets.get_secret(namespace, secret)
        if found is None:
            raise NotifyError(
                f"{where}: Secret {namespace}/{secret} not found; create it in the "
                "Workspace's namespace or fix secretRef"
            )
        value = found.data.get(key, b"").strip()
        if not value:
            raise NotifyError(f"{where}: Secret {namespace}/{secret} has no key {key!r}")
        return value

    async def _send(self, request: Request) -> None:
        await asyncio.to_thread(send, request, self._policy)

    def _schedule(
        self, namespace: str, name: str, channel: str, job: Callable[[], Awaitable[None]]
    ) -> None:
        key = (namespace, name)
        previous = self._last.get(key)

        async def run() -> None:
            if previous is not None:  # keep the order the worker asked in
                await asyncio.wait([previous])
            try:
                await job()
            except asyncio.CancelledError:
                raise
            except NotifyError as exc:
                self._failed(namespace, name, channel, str(exc))
            except Exception as exc:  # never let a notification take the operator down
                # Only the type: the message could hold a URL or a token.
                self._failed(namespace, name, channel, f"internal error {type(exc).__name__}")

        task = asyncio.get_running_loop().create_task(run())
        self._tasks.add(task)
        self._last[key] = task
        task.add_done_callback(lambda done: self._done(key, done))

    def _done(self, key: Key, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if self._last.get(key) is task:
            del self._last[key]

    def _failed(self, namespace: str, name: str, channel: str, problem: str) -> None:
        self._on_failure(namespace, name, channel)
        log.warning("notification for %s/%s not delivered: %s", namespace, name, problem)


def _window(alert: AlertSpec) -> float:
    return parse_duration(alert.window)


def _first_error(exc: ValidationError) -> str:
    """Where an Alert's spec is wrong and why (pydantic's own text would quote the input)."""
    error = exc.errors()[0]
    where = ".".join(str(p) for p in ("spec", *error["loc"]))
    return f"{where}: {error['msg']}; fix the Alert (docs/notifications.md)"
