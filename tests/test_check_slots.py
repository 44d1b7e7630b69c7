"""Check slots (controller/operator/slots.py): a check asked for (a push, a person) is served
before the interval checks waiting beside it, and the bound on checks in flight holds."""

from __future__ import annotations

import asyncio

import pytest

from controller.operator.slots import CheckSlots


async def _hold(
    slots: CheckSlots, order: list[str], name: str, urgent: bool, gate: asyncio.Event
) -> None:
    async with slots.slot(urgent=urgent):
        order.append(name)
        await gate.wait()


def test_a_pushed_check_goes_before_the_interval_checks_already_waiting() -> None:
    async def scenario() -> list[str]:
        slots, order, gate = CheckSlots(1), [], asyncio.Event()
        tasks = [asyncio.create_task(_hold(slots, order, "first", False, gate))]
        await asyncio.sleep(0)
        for i in range(3):
            tasks.append(asyncio.create_task(_hold(slots, order, f"tick-{i}", False, gate)))
        await asyncio.sleep(0)
        tasks.append(asyncio.create_task(_hold(slots, order, "push", True, gate)))
        await asyncio.sleep(0)
        assert (order, slots.waiting) == (["first"], 4)
        gate.set()
        await asyncio.gather(*tasks)
        return order

    assert asyncio.run(scenario()) == ["first", "push", "tick-0", "tick-1", "tick-2"]


def test_no_more_checks_than_slots_are_in_flight_and_a_cancelled_waiter_loses_no_slot() -> None:
    async def scenario() -> int:
        slots, peak, inside = CheckSlots(2), 0, 0

        async def check(delay: float) -> None:
            nonlocal peak, inside
            async with slots.slot(urgent=delay > 0.01):
                inside += 1
                peak = max(peak, inside)
                await asyncio.sleep(delay)
                inside -= 1

        tasks = [asyncio.create_task(check(0.01 + (i % 3) * 0.01)) for i in range(12)]
        await asyncio.sleep(0.005)
        tasks[-1].cancel()  # waiting: its turn must pass to the next
        results = await asyncio.gather(*tasks, return_exceptions=True)
        assert sum(isinstance(r, asyncio.CancelledError) for r in results) == 1
        async with asyncio.timeout(1):  # every slot came back
            async with slots.slot(), slots.slot():
                pass
        return peak

    assert asyncio.run(scenario()) == 2


def test_check_slots_need_at_least_one() -> None:
    with pytest.raises(ValueError, match="at least one"):
        CheckSlots(0)
