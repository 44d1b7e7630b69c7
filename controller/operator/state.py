"""The operator's shared state: the running workers, and what the webhook and cleanup need.

Kopf-free, so the handlers stay a thin mapping and this part can be tested on its own.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

from controller.api.spec import GROUP
from controller.errors import CratekeeperError
from controller.kube import Kube
from controller.operator.events import EventSink
from controller.operator.shared import Shared
from controller.operator.webhook import TOKEN_KEY
from controller.operator.worker import WorkspaceWorker
from controller.runners.kubernetes import MANAGED_BY, label_value
from controller.source.cache import remove_cached
from controller.source.remote import credential_free

WEBHOOK_SECRET_ANNOTATION = f"{GROUP}/webhook-secret"
WORKSPACE_LABEL = f"{GROUP}/workspace"
TOKEN_TTL = 30.0
"""Seconds a webhook token is kept, so unauthenticated requests do not each cost a GET."""
MISSING_TTL = 2.0
"""Seconds "no such Secret or key" is kept: a Secret created a moment ago counts soon."""
LOOKUP_INTERVAL = 1.0
"""At most one fresh read of a Workspace's annotations per this many seconds (see
:meth:`OperatorState.webhook_secret`)."""

Key = tuple[str, str]


def cleanup_labels(name: str) -> dict[str, str]:
    """The labels of the Jobs and Secrets runs make for Workspace ``name``."""
    return {MANAGED_BY: "cratekeeper", WORKSPACE_LABEL: label_value(name)}


class OperatorState:
    """Workers by ``(namespace, name)``, the Kubernetes adapter, and readiness."""

    def __init__(self, shared: Shared, kube: Kube) -> None:
        self.shared = shared
        self.kube = kube
        self.workers: dict[Key, WorkspaceWorker] = {}
        self.watching = False
        self.logged_in = False
        # (namespace, name) -> (Secret name, token or None, when it expires)
        self._tokens: dict[Key, tuple[str, bytes | None, float]] = {}
        self._looked_up: dict[Key, float] = {}  # when each Workspace was last read afresh
        self._tasks: dict[Key, asyncio.Task[object]] = {}  # the task each worker runs in

    def ready(self) -> bool:
        return self.watching and self.logged_in

    def start_worker(
        self,
        namespace: str,
        name: str,
        snapshot: Callable[[], dict[str, Any]],
        events: EventSink,
        log: Callable[[str], None],
    ) -> WorkspaceWorker:
        worker = WorkspaceWorker(namespace, name, self.shared, snapshot, events, log)
        self.workers[namespace, name] = worker
        try:
            task = asyncio.current_task()
        except RuntimeError:  # no loop running (a unit test builds workers outside one)
            task = None
        if task is not None:
            self._tasks[namespace, name] = task
        return worker

    def drop(self, worker: WorkspaceWorker) -> None:
        key = (worker.namespace, worker.name)
        if self.workers.get(key) is worker:
            del self.workers[key]
            self._tasks.pop(key, None)
            self._tokens.pop(key, None)
            self._looked_up.pop(key, None)

    def abandon(self) -> list[asyncio.Task[object]]:
        """Cancel every worker at once, runs included (the local runner kills its playbook;
        a Job keeps running for the next holder to adopt): leadership was lost, and waiting
        for runs to finish would let two replicas work side by side. The cancelled tasks."""
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        return tasks

    def observe(self, namespace: str, name: str, body: dict[str, Any]) -> None:
        worker = self.workers.get((namespace, name))
        if worker is not None:
            worker.observe(body)

    def trigger(self, namespace: str, name: str, ref: str | None = None) -> bool:
        """Reconcile now (a webhook push, naming ``ref`` when its body did); False when no
        worker serves that Workspace.

        Not forced: a push (to any branch) must not cut a failing revision's backoff short;
        a new commit supersedes the pending retry anyway (it is keyed on the commit).
        """
        worker = self.workers.get((namespace, name))
        if worker is None:
            return False
        worker.pushed(ref)
        return True

    async def webhook_secret(self, namespace: str, name: str) -> bytes | None:
        """The token of the Workspace's webhook Secret; None when there is none to check
        (or the API cannot say: the receiver answers the same bare 404).

        The annotation comes from the watch; one added a moment ago may not have arrived yet,
        so when the watched body has none the Workspace is read afresh (at most once per
        :data:`LOOKUP_INTERVAL` per Workspace, so unauthenticated requests cannot turn into a
        stream of API calls).
        """
        key = (namespace, name)
        worker = self.workers.get(key)
        if worker is None or not self.logged_in:
            return None
        secret_name = worker.annotation(WEBHOOK_SECRET_ANNOTATION)
        if not secret_name:
            secret_name = await self._annotation_now(namespace, name)
        if not secret_name:
            return None
        cached = self._tokens.get(key)
        if cached is not None and cached[0] == secret_name and cached[2] > time.monotonic():
            return cached[1]
        try:
            secret = await self.kube.get_secret(namespace, secret_name)
        except CratekeeperError:
            return None  # not cached: the next push asks again
        token = (secret.data.get(TOKEN_KEY, b"") if secret else b"").strip() or None
        ttl = TOKEN_TTL if token else MISSING_TTL
        self._tokens[key] = (secret_name, token, time.monotonic() + ttl)
        return token

    async def _annotation_now(self, namespace: str, name: str) -> str | None:
        """The webhook annotation as the API holds it now (None: none, or not asked again)."""
        key = (namespace, name)
        now = time.monotonic()
        if now - self._looked_up.get(key, -LOOKUP_INTERVAL) < LOOKUP_INTERVAL:
            return None
        self._looked_up[key] = now
        try:
            found = await self.kube.get_workspace(namespace, name)
        except CratekeeperError:
            return None
        return found.annotations.get(WEBHOOK_SECRET_ANNOTATION) if found else None

    async def cleanup(self, namespace: str, name: str, source_url: str | None = None) -> list[str]:
        """Delete the Jobs and Secrets the Workspace's runs left, and the Git cache of its
        ``source_url`` when no other Workspace of the namespace uses it; what was deleted."""
        self.shared.metrics.forget(namespace, name)
        labels = cleanup_labels(name)
        jobs = await self.kube.delete_jobs(namespace, labels)
        secrets = await self.kube.delete_secrets(namespace, labels)
        removed = [f"job/{n}" for n in jobs] + [f"secret/{n}" for n in secrets]
        if source_url and await self._unused_elsewhere(namespace, name, source_url):
            cache_dir = self.shared.settings.cache_dir / "git" / namespace
            git_dir = await asyncio.to_thread(remove_cached, cache_dir, source_url)
            if git_dir is not None:
                removed.append(f"git cache {git_dir.name}")
        return removed

    async def _unused_elsewhere(self, namespace: str, name: str, url: str) -> bool:
        """True when no other Workspace of ``namespace`` names ``url`` (the same repository
        without a password); False when that cannot be read (the cache is kept)."""
        try:
            others = await self.kube.list_workspaces(namespace)
        except CratekeeperError:
            return False
        mine = credential_free(url)
        return not any(
            credential_free(str(w.spec.get("source", {}).get("url", ""))) == mine
            for w in others
            if w.name != name
        )
