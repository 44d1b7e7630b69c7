"""Ctrl-C and SIGTERM for a foreground program that must clean up: stop once, then say so.

The demo starts a registry process, emulated API servers, Kopf and a temporary directory;
Python's defaults would raise ``KeyboardInterrupt`` anywhere (possibly between starting a child
process and remembering it), and SIGTERM would end the process with nothing cleaned up. Kopf,
run in the main thread, also takes both signals for itself and stops the operator, leaving the
program that hosts it waiting. A :class:`Stopper` owns both signals instead: the first asks to
stop (the program checks :meth:`Stopper.check` between steps, or awaits the event it gets from
:meth:`Stopper.attach` in its loop); any later one only prints that cleanup is under way.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import threading
from types import FrameType
from typing import Any

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Stopped(Exception):
    """A stop was requested by a signal (raised by :meth:`Stopper.check`)."""


class Stopper:
    """The process's SIGINT/SIGTERM handler while a program runs (install, then restore)."""

    def __init__(self) -> None:
        self.signal: signal.Signals | None = None
        self._event: asyncio.Event | None = None
        self._previous: dict[signal.Signals, Any] = {}

    @property
    def requested(self) -> bool:
        """Whether a stop was asked for."""
        return self.signal is not None

    def install(self) -> None:
        """Take SIGINT and SIGTERM for this process (call again after an event loop closes:
        closing a loop resets the signals it handled to their defaults)."""
        if threading.current_thread() is not threading.main_thread():
            return  # only the main thread can take signals; elsewhere the defaults stay
        for sig in SIGNALS:
            previous = signal.signal(sig, self._on_signal)
            self._previous.setdefault(sig, previous)

    def restore(self) -> None:
        """Give the signals back to whoever had them before :meth:`install` — unless a stop
        was asked for: then the program is ending, and a second signal must stay harmless to
        the last instruction (one that arrived during cleanup may still be pending: handing
        SIGINT back to Python would raise ``KeyboardInterrupt`` at exit), so both stay
        ignored."""
        for sig, previous in self._previous.items():
            signal.signal(sig, signal.SIG_IGN if self.requested else previous)
        self._previous.clear()

    def attach(self, loop: asyncio.AbstractEventLoop) -> asyncio.Event:
        """Handle the signals in ``loop`` (again, after Kopf took them); the stop event."""
        if self._event is None:
            self._event = asyncio.Event()
            if self.requested:
                self._event.set()
        if threading.current_thread() is not threading.main_thread():
            return self._event
        for sig in SIGNALS:
            loop.add_signal_handler(sig, self._request, sig)
        return self._event

    def check(self) -> None:
        """Raise :class:`Stopped` if a stop was asked for (call between steps)."""
        if self.signal is not None:
            raise Stopped(self.signal.name)

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        self._request(signal.Signals(signum))

    def _request(self, sig: signal.Signals) -> None:
        # os.write, not print: a signal can arrive while print is writing to the same stream.
        if self.signal is not None:
            os.write(sys.stderr.fileno(), b"Already stopping: cleaning up, please wait.\n")
            return
        self.signal = sig
        os.write(sys.stderr.fileno(), f"\n{sig.name}: stopping and cleaning up.\n".encode())
        if self._event is not None:
            self._event.set()
