"""Watch streams: resume from a resourceVersion, initial events and bookmarks, timeouts.

:class:`WatchEmulator` adds to the store what watching clients (Kopf, client-go, kubectl
``-w``) rely on: events since the given ``resourceVersion`` from a bounded event log (older
ones answer 410 Expired, as after etcd compaction), ``sendInitialEvents`` with the
``initial-events-end`` bookmark, ``timeoutSeconds``, and a prompt end at shutdown.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import time
from collections import deque
from collections.abc import AsyncGenerator, AsyncIterator

import attrs
import kmock
from kmock._internal import rendering

from controller.sandbox.kube.resources import STOP, Body
from controller.sandbox.kube.selectors import Selection
from controller.sandbox.kube.store import StoreEmulator


def _expired(since: str) -> Body:
    """The ERROR event of a watch that asks for a resourceVersion no longer in the log."""
    return {
        "type": "ERROR",
        "object": {
            "apiVersion": "v1",
            "kind": "Status",
            "status": "Failure",
            "code": 410,
            "reason": "Expired",
            "message": f"too old resource version: {since}",
        },
    }


@attrs.define(kw_only=True)
class WatchEmulator(StoreEmulator):
    """The store, watchable as kube-apiserver's watch endpoints are."""

    async def _serve_watch(self, request: kmock.Request) -> kmock.Payload:  # type: ignore[override]
        assert request.resource is not None
        self._info(request.resource)
        # kubectl and client-go refuse watch streams that are not application/json.
        return rendering.Response(
            headers={"Content-Type": "application/json"}, payload=self._watch(request)
        )

    async def _watch(self, request: kmock.Request) -> AsyncIterator[Body | bytes]:
        """Events since ``resourceVersion`` (or the current state as ADDED), then live ones."""
        yield b""  # send the headers now, even if nothing happens for a while
        assert request.resource is not None
        res, params = request.resource, request.params
        selection = Selection.of(request)
        since = params.get("resourceVersion") or "0"
        initial_events = params.get("sendInitialEvents") == "true"
        timeout = float(params["timeoutSeconds"]) if params.get("timeoutSeconds") else None
        deadline = None if timeout is None else time.monotonic() + timeout
        bus = self._buses[res]
        async with self._lock:
            marker = await bus.mark()
            backlog = self._backlog(res, selection, since, initial_events=initial_events)
        stream: AsyncGenerator[Body, None] = bus.stream(since=marker)  # type: ignore[assignment]
        try:
            for event in backlog:
                yield event
            if backlog and backlog[0]["type"] == "ERROR":
                return
            while True:
                remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
                try:
                    event = await asyncio.wait_for(anext(stream), timeout=remaining)
                except TimeoutError:
                    return
                if event is STOP:
                    return
                if selection.matches(event["object"]):
                    yield event
        finally:
            await stream.aclose()
            with contextlib.suppress(ValueError):
                await bus.unmark(marker)

    def _backlog(
        self, res: kmock.resource, selection: Selection, since: str, *, initial_events: bool
    ) -> list[Body]:
        """What a new watch sends before live events (call holding the lock)."""
        backlog: list[Body]
        log = self._event_logs.get(res, deque())
        if since == "0" or initial_events:
            backlog = [
                {"type": "ADDED", "object": copy.deepcopy(obj)}
                for obj in self._select(res, selection)
            ]
        elif not since.isdigit() or (log and int(since) < log[0][0] - 1 and len(log) == log.maxlen):
            backlog = [_expired(since)]
        else:
            newer = []  # newest first: stop at the first event the client has seen
            for rv, event in reversed(log):
                if rv <= int(since):
                    break
                if selection.matches(event["object"]):
                    newer.append(copy.deepcopy(event))
            backlog = newer[::-1]
        if initial_events:
            backlog.append(
                {
                    "type": "BOOKMARK",
                    "object": {
                        "apiVersion": f"{res.group}/{res.version}" if res.group else res.version,
                        "kind": self._info(res).kind,
                        "metadata": {
                            "resourceVersion": str(self._rv),
                            "annotations": {"k8s.io/initial-events-end": "true"},
                        },
                    },
                }
            )
        return backlog

    async def shutdown_streams(self) -> None:
        """End every open watch stream (the server is about to stop)."""
        for bus in list(self._buses.values()):
            await bus.put(STOP)
