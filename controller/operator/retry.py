"""When a worker may try again: a failed revision's retry, and the loop's own failures.

DESIGN §4: a failed revision is retried with capped exponential backoff, keyed on its commit,
so a new commit supersedes the pending retry at once; a stalled one (an invalid workspace) is
not retried until a new commit, a spec change or a forced reconcile. Failures of the loop
itself (the Kubernetes API, an internal error) back off the same way, never in a hot loop.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass
class Retry:
    """A failure waiting for its retry (``revision`` None: the fetch itself failed)."""

    revision: str | None
    generation: int | None
    attempts: int
    due: float
    stalled: bool


class Retries:
    """The pending retry of one Workspace and its loop's consecutive failures."""

    def __init__(self, backoff: Callable[[int], float]) -> None:
        self._backoff = backoff
        self.pending: Retry | None = None
        self._loop_failures = 0

    def clear(self) -> None:
        """The revision succeeded (or is up to date): nothing to retry."""
        self.pending = None

    def drop(self, *, forced: bool, generation: int | None) -> None:
        """A forced reconcile (a person asked) or a spec change retries at once."""
        if self.pending is not None and (forced or self.pending.generation != generation):
            self.pending = None

    def wait(self, revision: str, interval: float) -> float | None:
        """Seconds before ``revision`` may be tried again; None: it may run now."""
        retry = self.pending
        if retry is None or retry.revision != revision:
            return None  # nothing failed, or a new commit: it supersedes the pending retry
        if retry.stalled:
            return interval  # only a new commit (or a forced run) helps
        left = retry.due - time.monotonic()
        return min(interval, left) if left > 0 else None

    def failed(self, revision: str | None, generation: int | None, stalled: bool) -> float:
        """Remember a failure; the seconds until its retry is due."""
        previous = self.pending
        attempts = previous.attempts + 1 if previous and previous.revision == revision else 1
        delay = self._backoff(attempts)
        self.pending = Retry(revision, generation, attempts, time.monotonic() + delay, stalled)
        return delay

    def loop_failed(self) -> float:
        """The loop failed (the API, an internal error); the seconds until the next tick."""
        self._loop_failures += 1
        return self._backoff(self._loop_failures + 1)

    def loop_succeeded(self) -> None:
        self._loop_failures = 0
