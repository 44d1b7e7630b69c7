"""Running the emulator: a background thread with its own loop, and a thread-safe handle.

:class:`KubeEmulator` serves a :class:`~controller.sandbox.kube.cluster.ClusterEmulator` on
127.0.0.1 so that sync code (subprocesses such as ``ansible-playbook`` or kubectl) and async
code (Kopf in another loop) share one server; every call hops into the server's loop and
returns copies.
"""

from __future__ import annotations

import asyncio
import copy
import os
import threading
import time
from collections.abc import Callable, Coroutine, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import aiohttp.web
import kmock
import yaml

from controller.sandbox.kube.cluster import ClusterEmulator
from controller.sandbox.kube.recording import RecordedRequest, record
from controller.sandbox.kube.resources import (
    DUMMY_TOKEN,
    REQUEST_LOG_SIZE,
    Body,
    CustomResource,
)
from controller.sandbox.kube.selectors import Selection

T = TypeVar("T")


class KubeEmulator:
    """A :class:`ClusterEmulator` served on 127.0.0.1 from a background thread."""

    def __init__(
        self,
        *,
        crds: Sequence[CustomResource | Mapping[str, Any]] = (),
        request_log: int | None = REQUEST_LOG_SIZE,
    ) -> None:
        """``request_log``: how many of the latest requests :meth:`requests` can return
        (``None``: all, growing without bound; ``0``: none, as the demo wants)."""
        self._crds = list(crds)
        self._request_log = request_log
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, name="kube-emulator", daemon=True)
        self._ready = threading.Event()
        self._stopping: asyncio.Event | None = None
        self._handler: ClusterEmulator | None = None
        self._port: int | None = None
        self._failure: BaseException | None = None

    # lifecycle

    def start(self) -> KubeEmulator:
        """Start serving; return once the port is bound (or raise RuntimeError)."""
        self._thread.start()
        if not self._ready.wait(timeout=30) or self._failure is not None:
            raise RuntimeError("the Kubernetes emulator did not start") from self._failure
        return self

    def stop(self) -> None:
        """End watch streams, stop serving, and join the thread."""
        if self._stopping is not None and self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._stopping.set)
        self._thread.join(timeout=30)

    def __enter__(self) -> KubeEmulator:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        try:
            self._loop.run_until_complete(self._serve())
        finally:
            self._loop.close()

    async def _serve(self) -> None:
        self._stopping = asyncio.Event()
        try:
            handler = ClusterEmulator(request_log=self._request_log)
            for crd in self._crds:
                handler.register_crd(crd)
            # Not kmock.Server: it swaps aiohttp's resolver process-wide (for its DNS
            # interception), which breaks when emulators in other threads stop out of order.
            async with handler:
                runner = aiohttp.web.ServerRunner(
                    aiohttp.web.Server(handler), handle_signals=False, shutdown_timeout=2.0
                )
                await runner.setup()
                try:
                    site = aiohttp.web.TCPSite(runner, "127.0.0.1", 0)
                    await site.start()
                    self._handler, self._port = handler, runner.addresses[0][1]
                    self._ready.set()
                    await self._stopping.wait()
                    await handler.shutdown_streams()
                finally:
                    await runner.cleanup()
        except BaseException as e:
            self._failure = e
            raise
        finally:
            self._ready.set()

    # addresses and credentials

    @property
    def host(self) -> str:
        return "127.0.0.1"

    @property
    def port(self) -> int:
        assert self._port is not None, "start() the emulator first"
        return self._port

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def connection_info(self) -> tuple[str, str]:
        """``(server, token)``: what ``kopf.ConnectionInfo`` needs."""
        return self.url, DUMMY_TOKEN

    def write_kubeconfig(self, path: Path | str, *, namespace: str = "default") -> Path:
        """Write a kubeconfig (mode 0600) whose only context points at this emulator."""
        path = Path(path)
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "kube-emulator", "cluster": {"server": self.url}}],
            "users": [{"name": "tester", "user": {"token": DUMMY_TOKEN}}],
            "contexts": [
                {
                    "name": "kube-emulator",
                    "context": {
                        "cluster": "kube-emulator",
                        "user": "tester",
                        "namespace": namespace,
                    },
                }
            ],
            "current-context": "kube-emulator",
        }
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as file:
            yaml.safe_dump(config, file, sort_keys=False)
        path.chmod(0o600)  # if it existed with wider permissions
        return path

    # crossing into the server's thread

    def call(self, fn: Callable[[ClusterEmulator], T], timeout: float = 10.0) -> T:
        """Run ``fn(handler)`` in the server's loop (where kmock's state lives)."""

        async def run() -> T:
            assert self._handler is not None
            return fn(self._handler)

        return self._submit(run(), timeout)

    def _submit(self, coro: Coroutine[Any, Any, T], timeout: float) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    # state

    def register_crd(self, crd: CustomResource | Mapping[str, Any]) -> None:
        """Serve a custom resource (a ``CustomResource`` or a full CRD manifest)."""

        async def run() -> None:
            assert self._handler is not None
            async with self._handler._lock:
                self._handler.register_crd(crd)

        self._submit(run(), 10.0)

    def create(self, resource: str, body: Mapping[str, Any], namespace: str | None = None) -> Body:
        """Create an object as a client would (server metadata, watch events); return it."""

        async def run() -> Body:
            handler = self._handler
            assert handler is not None
            res = kmock.resource(resource)
            async with handler._lock:
                obj, events = handler._create(res, handler._info(res), namespace, body)
                for event_res, event in events:
                    await handler._publish(event_res, event)
            return copy.deepcopy(obj)

        return self._submit(run(), 10.0)

    def get(self, resource: str, name: str, namespace: str | None = None) -> Body | None:
        """The stored object (a copy), or None if absent or deleted."""
        res = kmock.resource(resource)
        return self.call(lambda h: copy.deepcopy(h._current((res, namespace, name))))

    def list_objects(self, resource: str, namespace: str | None = None) -> list[Body]:
        """The stored objects of ``resource`` (copies), in one namespace or all."""
        res = kmock.resource(resource)
        return self.call(lambda h: copy.deepcopy(h._select(res, Selection(namespace=namespace))))

    def history(self, resource: str, name: str, namespace: str | None = None) -> list[Body | None]:
        """Every stored version of an object, oldest first; None marks a deletion."""
        res = kmock.resource(resource)

        def versions(handler: ClusterEmulator) -> list[Body | None]:
            if (res, namespace, name) not in handler.objects:
                return []
            history = handler.objects[res, namespace, name].history
            return [None if v is None else copy.deepcopy(v.raw) for v in history]

        return self.call(versions)

    # requests

    def mark(self) -> int:
        """A position in the request log, for ``requests(since=...)``."""
        return self.call(lambda h: h._dropped_requests + len(h._requests))

    def requests(self, since: int = 0) -> list[RecordedRequest]:
        """The request log from position ``since`` on; LookupError if the log no longer
        reaches back that far (it keeps the last ``request_log`` requests)."""

        def recorded(handler: ClusterEmulator) -> list[RecordedRequest]:
            first = handler._dropped_requests
            if since < first:
                raise LookupError(
                    f"request {since} is no longer in the log (it keeps the last "
                    f"{handler.request_log}): take mark() later, or start the emulator with "
                    "a larger request_log"
                )
            kept = handler._requests[since - first :]
            return [record(since + i, r) for i, r in enumerate(kept)]

        return self.call(recorded)

    def writes(self, since: int = 0) -> list[RecordedRequest]:
        """Requests that could change state (POST, PUT, PATCH, DELETE)."""
        return [request for request in self.requests(since) if request.is_write]

    def errors(self) -> list[BaseException]:
        """Exceptions inside the emulator (its bugs; API errors such as 404 are not here)."""
        return self.call(lambda h: list(h._internal_errors))

    # polling

    def wait(
        self, predicate: Callable[[], T | None], timeout: float = 5.0, interval: float = 0.02
    ) -> T:
        """Poll ``predicate`` until it returns something truthy; raise TimeoutError after."""
        deadline = time.monotonic() + timeout
        while True:
            result = predicate()
            if result:
                return result
            if time.monotonic() > deadline:
                raise TimeoutError(f"not true within {timeout}s: {predicate}")
            time.sleep(interval)

    async def until(
        self, predicate: Callable[[], T | None], timeout: float = 5.0, interval: float = 0.02
    ) -> T:
        """The async twin of :meth:`wait` (the predicate runs in a worker thread)."""
        deadline = time.monotonic() + timeout
        while True:
            result = await asyncio.to_thread(predicate)
            if result:
                return result
            if time.monotonic() > deadline:
                raise TimeoutError(f"not true within {timeout}s: {predicate}")
            await asyncio.sleep(interval)
