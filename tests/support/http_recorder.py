"""A real local HTTP server that records every request: the forge and chat-service stand-in.

The notify tests send real HTTP to it and check what arrived -- method, path, query, headers,
body -- against each API's documentation. It answers 201 by default; a test can script other
answers (``answer(503, times=2)``: the next two requests get 503) to play a service that is
down or refuses a token. Fixture (list this module in ``pytest_plugins``)::

    http_recorder   function   an HttpRecorder on 127.0.0.1:<free port>, stopped afterwards
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest


@dataclass(frozen=True)
class Received:
    """One request as it arrived."""

    method: str
    path: str
    """The path exactly as sent (percent-encoding kept)."""
    query: dict[str, list[str]]
    headers: dict[str, str]
    """Header names lower-cased."""
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


class HttpRecorder:
    """The server; ``url`` is its base URL, ``requests`` what it received so far."""

    def __init__(self) -> None:
        self.requests: list[Received] = []
        self._answers: list[int] = []
        self._default = 201
        self._lock = threading.Lock()
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                parts = urlsplit(self.path)
                received = Received(
                    self.command,
                    parts.path,
                    parse_qs(parts.query),
                    {k.lower(): v for k, v in self.headers.items()},
                    body,
                )
                status = recorder._record(received)
                payload = b'{"id": 1}'
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            do_PUT = do_POST

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(0.05,), daemon=True
        )
        self._thread.start()

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def answer(self, status: int, *, times: int | None = None) -> None:
        """Answer ``status`` to the next ``times`` requests (None: from now on)."""
        with self._lock:
            if times is None:
                self._default, self._answers = status, []
            else:
                self._answers.extend([status] * times)

    def _record(self, received: Received) -> int:
        with self._lock:
            self.requests.append(received)
            return self._answers.pop(0) if self._answers else self._default

    def to(self, prefix: str) -> list[Received]:
        """The requests whose path starts with ``prefix``."""
        with self._lock:
            return [r for r in self.requests if r.path.startswith(prefix)]

    def wait_for(self, prefix: str, count: int = 1, timeout: float = 30.0) -> list[Received]:
        """Block (bounded) until ``count`` requests to ``prefix`` arrived; those requests."""
        deadline = time.monotonic() + timeout
        while len(found := self.to(prefix)) < count:
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"expected {count} requests to {prefix} within {timeout:g}s; got "
                    f"{[(r.method, r.path) for r in self.requests]}"
                )
            time.sleep(0.02)
        return found

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


@pytest.fixture
def http_recorder() -> Iterator[HttpRecorder]:
    recorder = HttpRecorder()
    try:
        yield recorder
    finally:
        recorder.close()
