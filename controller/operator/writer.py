"""The stored-status writer of one Workspace: what is stored, what to patch, what is pending.

The watch may not have brought our last write back yet, so the writer remembers what it wrote
(and the resourceVersion the API gave it) and reads "the stored status" through
:func:`controller.operator.stored.stored_status`. A write is a merge patch of the difference,
or nothing at all; events go out only with a patch that changed something. A status the API
did not take stays *pending*: :meth:`StatusWriter.flush` writes it before anything else
happens, so a revision recorded as applied is never run again.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

from controller.api.status import WorkspaceStatus
from controller.kube import Secret, Workspace
from controller.operator import stored
from controller.operator.events import Event, EventSink


class WorkspaceApi(Protocol):
    """What a worker asks of the API (:class:`controller.kube.Kube` in production)."""

    async def get_secret(self, namespace: str, name: str) -> Secret | None: ...

    async def patch_workspace_status(
        self, namespace: str, name: str, status: Mapping[str, Any]
    ) -> Workspace | None:
        """Merge-patch the status; the stored Workspace (None: it is gone)."""
        ...


class StatusWriter:
    """Writes one Workspace's status; ``snapshot()`` is its latest body as the watch saw it."""

    def __init__(
        self,
        api: WorkspaceApi,
        namespace: str,
        name: str,
        snapshot: Callable[[], dict[str, Any]],
        events: EventSink,
        on_written: Callable[[WorkspaceStatus], None] = lambda _: None,
    ) -> None:
        self._api = api
        self._on_written = on_written
        self._namespace = namespace
        self._name = name
        self._snapshot = snapshot
        self._events = events
        self._written: dict[str, Any] | None = None
        self._written_version: int | None = None
        self._pending: tuple[WorkspaceStatus, Sequence[Event]] | None = None

    @property
    def pending(self) -> bool:
        """A status (and its events) the API has not taken yet."""
        return self._pending is not None

    def forget_pending(self) -> None:
        """Give up on the pending status (an advisory write that failed)."""
        self._pending = None

    def stored_raw(self, body: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """The status as the API holds it (of ``body``, else of the latest snapshot)."""
        body = self._snapshot() if body is None else body
        return stored.stored_status(body, self._written, self._written_version)

    def stored(self, body: Mapping[str, Any] | None = None) -> WorkspaceStatus:
        """:meth:`stored_raw` as our model (what validates of it: :func:`stored.status_of`)."""
        return stored.status_of(self.stored_raw(body))

    async def flush(self) -> None:
        """Write the pending status, if any (its events are due even when the failed patch was
        stored after all)."""
        if self._pending is not None:
            await self.write(*self._pending, flush=True)

    async def write(
        self, new: WorkspaceStatus, events: Sequence[Event] = (), *, flush: bool = False
    ) -> None:
        """Patch the status when it differs from what is stored; post ``events`` only then.

        When the patch fails (a :class:`~controller.errors.KubeError` propagates), ``new`` stays
        pending.
        """
        patch = stored.merge_patch(self.stored_raw(), new.dump())
        if not patch:
            self._pending = None
            for kind, reason, message in events if flush else ():
                self._events(kind, reason, message)
            return
        self._pending = (new, tuple(events))
        await self.patch(patch, written=new.dump())
        self._pending = None
        self._on_written(new)
        for kind, reason, message in events:
            self._events(kind, reason, message)

    async def patch(
        self, patch: Mapping[str, Any], *, written: Mapping[str, Any] | None = None
    ) -> None:
        """Send a merge patch of the status as it is and remember what is stored now
        (``written``: what to remember when the Workspace is gone)."""
        result = await self._api.patch_workspace_status(self._namespace, self._name, patch)
        if result is None:  # the Workspace is gone
            if written is not None:
                self._written, self._written_version = dict(written), None
        else:
            self._written = dict(result.status)
            self._written_version = _version(result.resource_version)


def _version(value: str) -> int | None:
    """A resourceVersion as a number (the API server hands out etcd revisions)."""
    return stored.resource_version({"metadata": {"resourceVersion": value}})
