"""A run's output as lines: cut safely from any byte stream, redacted, the last ones kept."""

from __future__ import annotations

import codecs
from collections import deque
from collections.abc import Iterable

from controller.runners.base import OutputHandler, redact

LOG_TAIL_LINES = 100
MAX_LINE = 16 * 1024  # characters kept of one output line (a debug of a huge var is one line)
CUT = " … (line cut by cratekeeper)"


class LineSplitter:
    """Whole lines from a byte stream cut anywhere (even inside a UTF-8 sequence); a line
    longer than :data:`MAX_LINE` is cut there and the rest of it dropped, so no output can
    exhaust memory or a buffer."""

    def __init__(self) -> None:
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._pending = ""
        self._dropping = False  # inside the rest of a line that was already cut

    def feed(self, chunk: bytes) -> list[str]:
        text = self._decoder.decode(chunk)
        lines: list[str] = []
        while text:
            head, newline, text = text.partition("\n")
            if not self._dropping:
                self._pending += head
                if len(self._pending) > MAX_LINE:
                    lines.append(self._pending[:MAX_LINE] + CUT)
                    self._pending, self._dropping = "", True
                    continue
            if newline:
                if not self._dropping:
                    lines.append(self._pending)
                self._pending, self._dropping = "", False
        return lines

    def close(self) -> list[str]:
        rest = self._pending + self._decoder.decode(b"", final=True)
        self._pending, self._dropping = "", False
        return [rest[:MAX_LINE] + CUT if len(rest) > MAX_LINE else rest] if rest else []


class LogTail:
    """The last :data:`LOG_TAIL_LINES` lines of a run's output, redacted as they arrive."""

    def __init__(self, secrets: Iterable[str], on_output: OutputHandler | None = None) -> None:
        self._secrets = sorted(set(secrets), key=len, reverse=True)
        self._lines: deque[str] = deque(maxlen=LOG_TAIL_LINES)
        self._on_output = on_output

    def add(self, line: str) -> None:
        clean = redact(line.rstrip("\n"), self._secrets)
        self._lines.append(clean)
        if self._on_output is not None:
            self._on_output(clean)

    @property
    def lines(self) -> tuple[str, ...]:
        return tuple(self._lines)
