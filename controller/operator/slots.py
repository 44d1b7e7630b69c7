"""Check slots that serve a push before the interval checks waiting beside it.

With many Workspaces the interval checks come in waves (every Workspace once per interval,
and after a start all at once); a push that arrives in a wave would otherwise wait behind
every check queued before it, seconds at 1,000 Workspaces. A waiter marked ``urgent`` (woken
by a push, a person's request or a spec change) gets the next free slot before any other
waiter; the bound on checks in flight stays the same.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import AsyncIterator


class CheckSlots:
    """At most ``size`` holders at once; urgent waiters first, each kind in arrival order."""

    def __init__(self, size: int) -> None:
        if size < 1:
            raise ValueError("a check needs at least one slot")
        self._free = size
        self._urgent: deque[asyncio.Future[None]] = deque()
        self._waiting: deque[asyncio.Future[None]] = deque()

    @contextlib.asynccontextmanager
    async def slot(self, *, urgent: bool = False) -> AsyncIterator[None]:
        """Hold a slot for the ``async with`` block."""
        await self._acquire(urgent)
        try:
            yield
        finally:
            self._release()

    @property
    def waiting(self) -> int:
        """Checks waiting for a slot (for tests and debugging)."""
        return sum(not f.done() for f in (*self._urgent, *self._waiting))

    async def _acquire(self, urgent: bool) -> None:
        if self._free > 0 and not self.waiting:
            self._free -= 1
            return
        queue = self._urgent if urgent else self._waiting
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        queue.append(future)
        try:
            await future
        except asyncio.CancelledError:
            if future.done() and not future.cancelled():
                self._release()  # handed a slot as it was cancelled: pass it on
            else:
                with contextlib.suppress(ValueError):  # already dropped by a release
                    queue.remove(future)
            raise

    def _release(self) -> None:
        for queue in (self._urgent, self._waiting):
            while queue:
                future = queue.popleft()
                if not future.done():  # a cancelled waiter is skipped
                    future.set_result(None)
                    return
        self._free += 1
