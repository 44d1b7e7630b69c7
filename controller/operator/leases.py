"""Leader election on a ``coordination.k8s.io`` Lease: one active replica per shard.

The replicas of one shard compete for one Lease (``settings.lease_name``). The holder renews
it every ``retry_period``; a standby tries as often and takes it over only when the record it
sees has not changed for ``lease_duration`` seconds by its *own* clock (as client-go does: no
trust in the other replica's clock). Every write is conditional on the resourceVersion read,
so two standbys cannot both win. A holder that cannot renew for ``renew_deadline`` seconds
gives up (the caller stops its runs and exits) before a standby can take over; a holder that
stops cleanly releases the Lease, so the next one takes over at once.

Kopf-free and I/O only through :class:`~controller.kube.Kube`; the decision is the pure
:func:`claim`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime

from controller.errors import CratekeeperError, KubeError
from controller.kube import Kube, Lease, LeaseRecord

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Timings:
    """client-go's three leader-election durations, in seconds."""

    lease_duration: float = 15.0
    renew_deadline: float = 10.0
    retry_period: float = 2.0


def default_identity() -> str:
    """The pod's name (its host name) and a random suffix: a restarted process is a new
    holder, so it never mistakes the Lease of its previous life for its own."""
    return f"{socket.gethostname()}_{uuid.uuid4().hex[:8]}"


def claim(
    current: LeaseRecord | None, me: str, now: datetime, duration: float, *, expired: bool
) -> LeaseRecord | None:
    """The record to write to hold the Lease, or None when another replica holds it.

    ``expired``: the record has not changed for its ``duration`` as this replica observed it.
    A released Lease (no holder) is free at once.
    """
    if current is None:
        return LeaseRecord(me, duration, acquired=now, renewed=now)
    if current.holder == me:
        return replace(current, duration=duration, renewed=now)
    if current.holder and not expired:
        return None
    return LeaseRecord(me, duration, acquired=now, renewed=now, transitions=current.transitions + 1)


class Elector:
    """Acquires, renews and releases one Lease for this process."""

    def __init__(
        self,
        kube: Kube,
        namespace: str,
        name: str,
        identity: str,
        timings: Timings,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.kube = kube
        self.namespace = namespace
        self.name = name
        self.identity = identity
        self.timings = timings
        self.leading = False
        self._clock = clock
        self._observed: tuple[LeaseRecord, float] | None = None  # record, when it was first seen
        self._renewed_at = 0.0  # our clock, when our last successful write was sent

    async def try_once(self) -> bool:
        """One attempt to acquire or renew; True when this replica holds the Lease now."""
        sent = self._clock()
        lease = await self.kube.get_lease(self.namespace, self.name)
        record = None if lease is None else lease.record
        if record is not None and (self._observed is None or self._observed[0] != record):
            self._observed = (record, sent)
        expired = self._observed is not None and (
            sent - self._observed[1] >= self.timings.lease_duration
        )
        now = datetime.now(UTC)
        wanted = claim(record, self.identity, now, self.timings.lease_duration, expired=expired)
        if wanted is None:
            self.leading = False
            return False
        try:
            written = await self._write(lease, wanted)
        except KubeError as exc:
            if exc.status != 409:  # 409: another replica wrote first; not an error
                raise
            self.leading = False
            return False
        self._observed = (written.record, sent)
        self._renewed_at = sent
        if not self.leading:
            log.info(f"holding Lease {self.namespace}/{self.name} as {self.identity}")
        self.leading = True
        return True

    async def acquire(self, stop: asyncio.Event | None = None) -> bool:
        """Wait until this replica holds the Lease (True), or ``stop`` is set (False)."""
        waiting_logged = False
        while stop is None or not stop.is_set():
            try:
                if await self.try_once():
                    return True
            except CratekeeperError as exc:
                log.warning(f"cannot read or write Lease {self.namespace}/{self.name}: {exc}")
            if not waiting_logged:
                holder = self._observed[0].holder if self._observed else "?"
                log.info(f"standing by: Lease {self.namespace}/{self.name} is held by {holder}")
                waiting_logged = True
            await _wait(stop, self.timings.retry_period)
        return False

    async def keep(self) -> None:
        """Renew every ``retry_period`` while leading; return when ``renew_deadline`` passed
        without a successful renewal (or another replica holds the Lease): leadership is lost."""
        while True:
            await asyncio.sleep(self.timings.retry_period)
            try:
                budget = self._renewed_at + self.timings.renew_deadline - self._clock()
                held = await asyncio.wait_for(self.try_once(), timeout=max(0.1, budget))
            except (CratekeeperError, TimeoutError) as exc:
                log.warning(f"cannot renew Lease {self.namespace}/{self.name}: {exc}")
                held = True  # not known to be lost: the deadline decides
            if not self.leading or not held:
                return
            if self._clock() - self._renewed_at >= self.timings.renew_deadline:
                self.leading = False
                return

    async def release(self) -> None:
        """Give the Lease up (no holder), so a standby takes over at once; best effort."""
        if not self.leading:
            return
        self.leading = False
        try:
            lease = await self.kube.get_lease(self.namespace, self.name)
            if lease is None or lease.record.holder != self.identity:
                return
            now = datetime.now(UTC)
            free = replace(lease.record, holder="", duration=1.0, renewed=now)
            await self.kube.replace_lease(lease, free)
            log.info(f"released Lease {self.namespace}/{self.name}")
        except CratekeeperError as exc:  # it expires on its own
            log.warning(f"cannot release Lease {self.namespace}/{self.name}: {exc}")

    async def _write(self, lease: Lease | None, record: LeaseRecord) -> Lease:
        if lease is None:
            # AlreadyExists (409) when another replica created it first: treated as a conflict.
            return await self.kube.create_lease(self.namespace, self.name, record)
        return await self.kube.replace_lease(lease, record)


async def _wait(stop: asyncio.Event | None, seconds: float) -> None:
    if stop is None:
        await asyncio.sleep(seconds)
        return
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), timeout=seconds)
