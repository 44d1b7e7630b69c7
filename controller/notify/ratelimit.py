"""At most one alert per (Workspace, channel, event kind, revision) in a window.

A failing revision is retried with backoff for as long as it fails; without this, every retry
would post to the channel again. The limiter is in memory: a restarted operator may send one
more alert per revision, which is the right side to err on.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Hashable

MAX_KEYS = 10_000
"""Keys remembered at most (the oldest are forgotten first), so memory stays bounded."""


class RateLimiter:
    """``allow(key, window)`` is True at most once per ``window`` seconds for each key."""

    def __init__(
        self, clock: Callable[[], float] = time.monotonic, max_keys: int = MAX_KEYS
    ) -> None:
        self._clock = clock
        self._max = max_keys
        self._sent: OrderedDict[Hashable, float] = OrderedDict()

    def allow(self, key: Hashable, window: float) -> bool:
        """Whether an alert under ``key`` may go out now (and if so, remember that it did)."""
        now = self._clock()
        last = self._sent.get(key)
        if last is not None and now - last < window:
            return False
        self._sent[key] = now
        self._sent.move_to_end(key)
        while len(self._sent) > self._max:
            self._sent.popitem(last=False)
        return True
