"""The webhook cannot be held open (issue 10 point 12): the body is read in bounded time and size
before any signature check, a client that hangs up leaves no traceback, and a webhook Secret
annotated (or created) a moment ago is honoured."""

from __future__ import annotations

import asyncio
import base64
import logging
import socket
import time
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from controller.kube import Kube
from controller.operator.config import OperatorConfig
from controller.operator.metrics import OperatorMetrics
from controller.operator.shared import Shared
from controller.operator.state import MISSING_TTL, WEBHOOK_SECRET_ANNOTATION, OperatorState
from controller.operator.webhook import webhook_app
from controller.settings import Settings
from tests.support.kube_emulator import WORKSPACES, KubeEmulator
from tests.support.recording_runner import RecordingRunner

HEAD = b"POST /hook/ns/ws HTTP/1.1\r\nHost: x\r\nX-Gitlab-Token: tok\r\n"


class Lookups:
    """The receiver's token lookup, counting calls (a signature check needs one)."""

    def __init__(self) -> None:
        self.calls = 0

    async def __call__(self, namespace: str, name: str) -> bytes | None:
        self.calls += 1
        return b"tok"


@asynccontextmanager
async def receiver(lookups: Lookups, **limits: Any) -> AsyncIterator[int]:
    runner = web.AppRunner(
        webhook_app(lookups, lambda ns, name, ref: True, **limits),
        access_log=None,
        handle_signals=False,
    )
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield int(runner.addresses[0][1])
    finally:
        await runner.cleanup()


def exchange(port: int, data: bytes, *, then: Callable[[socket.socket], bytes]) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as conn:
        conn.sendall(data)
        return then(conn)


def answer(conn: socket.socket) -> bytes:
    return conn.recv(4096)


def test_a_body_that_trickles_is_cut_off_with_408_before_any_signature_check() -> None:
    lookups = Lookups()

    async def scenario() -> tuple[bytes, float]:
        async with receiver(lookups, body_timeout=0.3) as port:
            started = time.monotonic()
            reply = await asyncio.to_thread(
                exchange, port, HEAD + b"Content-Length: 100\r\n\r\n0123456789", then=answer
            )
            return reply, time.monotonic() - started

    reply, took = asyncio.run(scenario())
    assert reply.startswith(b"HTTP/1.1 408") and took < 5
    assert lookups.calls == 0


def test_a_body_over_the_limit_is_refused_without_reading_it() -> None:
    lookups = Lookups()

    async def scenario() -> tuple[bytes, bytes]:
        async with receiver(lookups, max_body=1024) as port:
            declared = await asyncio.to_thread(
                exchange, port, HEAD + b"Content-Length: 2000000\r\n\r\n", then=answer
            )
            chunked = (
                HEAD + b"Transfer-Encoding: chunked\r\n\r\n800\r\n" + b"x" * 2048 + b"\r\n0\r\n\r\n"
            )
            streamed = await asyncio.to_thread(exchange, port, chunked, then=answer)
            return declared, streamed

    declared, streamed = asyncio.run(scenario())
    assert declared.startswith(b"HTTP/1.1 413") and streamed.startswith(b"HTTP/1.1 413")
    assert lookups.calls == 0


def test_a_client_that_hangs_up_mid_body_leaves_no_traceback(
    caplog: pytest.LogCaptureFixture,
) -> None:
    lookups = Lookups()
    caplog.set_level(logging.DEBUG)

    async def scenario() -> None:
        async with receiver(lookups) as port:
            await asyncio.to_thread(
                exchange, port, HEAD + b"Content-Length: 1000\r\n\r\n0123", then=lambda _: b""
            )
            await asyncio.sleep(0.3)  # the server notices the hang-up

    asyncio.run(scenario())
    assert [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info] == []
    assert lookups.calls == 0


# --- a Secret named a moment ago -----------------------------------------------------------


def served(kube: Kube, namespace: str, tmp_path: Path, body: dict[str, Any]) -> OperatorState:
    """An operator's state with a worker for ``namespace/ws`` whose watched body is ``body``."""
    shared = Shared(
        settings=Settings(cache_dir=tmp_path / "cache"),
        config=OperatorConfig(),
        api=kube,
        metrics=OperatorMetrics(),
        runner_factory=RecordingRunner().factory,  # nothing runs here
    )
    state = OperatorState(shared, kube)
    state.logged_in = True
    state.start_worker(namespace, "ws", lambda: body, lambda *_: None, lambda _: None)
    return state


def test_a_webhook_annotation_added_a_moment_ago_is_honoured(
    kube_emulator: KubeEmulator, kubeconfig: Path, tmp_path: Path
) -> None:
    namespace = f"hook-{uuid.uuid4().hex[:8]}"
    kube_emulator.create("v1/namespaces", {"metadata": {"name": namespace}})
    annotated = {
        "metadata": {"name": "ws", "annotations": {WEBHOOK_SECRET_ANNOTATION: "hook"}},
        "spec": {"source": {"url": "https://git.example/ws.git"}},
    }
    kube_emulator.create(WORKSPACES, annotated, namespace)
    kube = Kube.from_kubeconfig(kubeconfig)

    async def scenario() -> list[bytes | None]:
        # The watch has not brought the annotation yet: the worker's body is the one before it.
        state = served(kube, namespace, tmp_path, {"metadata": {"name": "ws", "annotations": {}}})
        tokens = [await state.webhook_secret(namespace, "ws")]  # the Secret is not there yet
        token = base64.b64encode(b"t0ken").decode()
        kube_emulator.create(
            "v1/secrets", {"metadata": {"name": "hook"}, "data": {"token": token}}, namespace
        )
        tokens.append(await state.webhook_secret(namespace, "ws"))  # "missing" is remembered
        await asyncio.sleep(MISSING_TTL + 0.2)
        tokens.append(await state.webhook_secret(namespace, "ws"))
        return tokens

    mark = kube_emulator.mark()
    try:
        assert asyncio.run(scenario()) == [None, None, b"t0ken"]
    finally:
        kube.close()
    reads = [r for r in kube_emulator.requests(since=mark) if r.resource == WORKSPACES]
    assert 1 <= len(reads) <= 2  # at most one fresh read of the Workspace per second
