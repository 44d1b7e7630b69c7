"""Pushes for Workspaces this replica does not reconcile, passed on through the API.

A Service sends a push to any ready replica: a standby (leader election) or, with shards,
another instance. Such a replica checks the signature as the active one would (the
Workspace's webhook Secret, read afresh), then sets :data:`PUSHED_AT` on the Workspace; the
replica that reconciles it sees the change on its watch and checks the source at once (not
forced, as a direct push). Unsigned requests never cause a write; fresh reads for names no
worker serves are bounded (:data:`READS_PER_SECOND`), and so is what is cached.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from datetime import UTC, datetime

from controller.api.spec import PUSHED_AT
from controller.errors import CratekeeperError
from controller.kube import Kube
from controller.operator.state import WEBHOOK_SECRET_ANNOTATION
from controller.operator.webhook import TOKEN_KEY

log = logging.getLogger(__name__)

READS_PER_SECOND = 5.0
"""Fresh Workspace reads per second for pushes to Workspaces no worker here serves."""
TOKEN_TTL = 30.0
CACHED = 256
"""Tokens kept (the least recently used go first)."""

Key = tuple[str, str]


class Relay:
    """Checks and passes on pushes for Workspaces served elsewhere (``namespaces``: the ones
    this operator watches; None: every namespace)."""

    def __init__(self, kube: Kube, namespaces: list[str] | None) -> None:
        self.kube = kube
        self.namespaces = set(namespaces) if namespaces else None
        self._tokens: OrderedDict[Key, tuple[bytes | None, float]] = OrderedDict()
        self._allowance = READS_PER_SECOND
        self._last = time.monotonic()
        self._tasks: set[asyncio.Task[None]] = set()

    async def secret(self, namespace: str, name: str) -> bytes | None:
        """The Workspace's webhook token; None: none, not watched here, or not asked now."""
        if self.namespaces is not None and namespace not in self.namespaces:
            return None
        key = (namespace, name)
        cached = self._tokens.get(key)
        if cached is not None and cached[1] > time.monotonic():
            self._tokens.move_to_end(key)
            return cached[0]
        if not self._take():
            return None
        try:
            workspace = await self.kube.get_workspace(namespace, name)
            annotations = workspace.annotations if workspace else {}
            secret_name = annotations.get(WEBHOOK_SECRET_ANNOTATION)
            secret = await self.kube.get_secret(namespace, secret_name) if secret_name else None
        except CratekeeperError:
            return None
        token = (secret.data.get(TOKEN_KEY, b"") if secret else b"").strip() or None
        self._tokens[key] = (token, time.monotonic() + TOKEN_TTL)
        while len(self._tokens) > CACHED:
            self._tokens.popitem(last=False)
        return token

    def pass_on(self, namespace: str, name: str) -> bool:
        """Annotate the Workspace (in the background); True: accepted."""
        task = asyncio.get_running_loop().create_task(self._annotate(namespace, name))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return True

    async def _annotate(self, namespace: str, name: str) -> None:
        now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        patch = {"metadata": {"annotations": {PUSHED_AT: now}}}
        try:
            await self.kube.patch_workspace(namespace, name, patch)
        except CratekeeperError as exc:
            log.warning(f"cannot pass a push for {namespace}/{name} on: {exc}")

    def _take(self) -> bool:
        """A token bucket of :data:`READS_PER_SECOND`."""
        now = time.monotonic()
        elapsed, self._last = now - self._last, now
        self._allowance = min(READS_PER_SECOND, self._allowance + elapsed * READS_PER_SECOND)
        if self._allowance < 1.0:
            return False
        self._allowance -= 1.0
        return True
