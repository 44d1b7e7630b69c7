"""Leader election on a Lease and shard selectors: the rules, then the election against the
emulated API (real HTTP, real coordination.k8s.io Leases); processes in tests/test_ha.py."""

from __future__ import annotations

import asyncio
import socket
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml

from controller.errors import SettingsError
from controller.kube import Kube, LeaseRecord
from controller.operator.leases import Elector, Timings, claim
from controller.operator.shards import SHARD_KEY, parse_selector
from controller.settings import load_settings
from tests.support.kube_emulator import KubeEmulator

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
FAST = Timings(lease_duration=1.0, renew_deadline=0.6, retry_period=0.1)
LEASES = "coordination.k8s.io/v1/leases"

# --- the rules (pure) ----------------------------------------------------------------------


def test_a_missing_lease_is_claimed_and_a_held_one_is_left_alone_until_it_expires() -> None:
    mine = claim(None, "a", NOW, 15.0, expired=False)
    assert mine == LeaseRecord("a", 15.0, acquired=NOW, renewed=NOW, transitions=0)
    assert claim(mine, "b", NOW, 15.0, expired=False) is None
    taken = claim(mine, "b", NOW, 15.0, expired=True)
    assert taken is not None and (taken.holder, taken.transitions) == ("b", 1)


def test_the_holder_renews_without_a_transition_and_a_released_lease_is_free_at_once() -> None:
    mine = LeaseRecord("a", 15.0, acquired=NOW, renewed=NOW, transitions=3)
    later = NOW.replace(minute=1)
    renewed = claim(mine, "a", later, 15.0, expired=True)
    assert renewed == LeaseRecord("a", 15.0, acquired=NOW, renewed=later, transitions=3)
    released = LeaseRecord("", 1.0, acquired=NOW, renewed=NOW, transitions=3)
    taken = claim(released, "b", later, 15.0, expired=False)
    assert taken is not None and (taken.holder, taken.transitions) == ("b", 4)


@pytest.mark.parametrize(
    ("selector", "labels", "matches"),
    [
        (f"{SHARD_KEY} in (shard1)", {SHARD_KEY: "shard1"}, True),
        (f"{SHARD_KEY} in (shard1)", {SHARD_KEY: "shard2"}, False),
        (f"{SHARD_KEY} in (shard1)", {}, False),
        (f"!{SHARD_KEY}", {}, True),
        (f"!{SHARD_KEY}", {SHARD_KEY: "shard1"}, False),
        (f"{SHARD_KEY} notin (shard1, shard2)", {}, True),
        (f"{SHARD_KEY} notin (shard1, shard2)", {SHARD_KEY: "shard2"}, False),
        ("team=a, env!=prod", {"team": "a", "env": "dev"}, True),
        ("team==a,env!=prod", {"team": "a", "env": "prod"}, False),
        ("team", {"team": ""}, True),
        ("", {"anything": "x"}, True),
    ],
)
def test_label_selectors_read_as_kubectl_reads_them(
    selector: str, labels: dict[str, str], matches: bool
) -> None:
    assert parse_selector(selector).matches(labels) is matches


def test_an_unreadable_selector_says_where_and_how_to_write_it() -> None:
    with pytest.raises(SettingsError, match=r"cannot read it from 'in \(a\)'.*shard1"):
        parse_selector(f"{SHARD_KEY} in (shard1), in (a)")


def test_lease_timings_out_of_order_are_refused_with_an_example() -> None:
    with pytest.raises(SettingsError, match="retry_period < renew_deadline < lease_duration"):
        load_settings(lease_duration=5, renew_deadline=10)


# --- the election against the emulated API -------------------------------------------------


@pytest.fixture
def lease_namespace(kube_emulator: KubeEmulator) -> str:
    name = f"ha-{uuid.uuid4().hex[:8]}"
    kube_emulator.create("v1/namespaces", {"metadata": {"name": name}})
    return name


def test_one_replica_holds_the_lease_and_a_standby_takes_over_once_it_expires(
    kube_emulator: KubeEmulator, kubeconfig: Path, lease_namespace: str
) -> None:
    async def scenario() -> tuple[float, dict[str, object]]:
        kube = Kube.from_kubeconfig(kubeconfig)
        try:
            first = Elector(kube, lease_namespace, "shard", "first", FAST)
            second = Elector(kube, lease_namespace, "shard", "second", FAST)
            assert await first.acquire()
            assert not await second.try_once()  # held, and just renewed
            # The holder dies (it renews no more): the standby waits a lease duration.
            loop = asyncio.get_running_loop()
            started = loop.time()
            assert await asyncio.wait_for(second.acquire(), timeout=5)
            waited = loop.time() - started
            assert not await first.try_once() and not first.leading
            lease = kube_emulator.get(LEASES, "shard", namespace=lease_namespace) or {}
            return waited, lease["spec"]
        finally:
            kube.close()

    waited, spec = asyncio.run(scenario())
    assert FAST.lease_duration * 0.9 <= waited < FAST.lease_duration + 1.0
    assert spec["holderIdentity"] == "second"
    assert spec["leaseTransitions"] == 1


def test_a_released_lease_is_taken_over_at_once(
    kube_emulator: KubeEmulator, kubeconfig: Path, lease_namespace: str
) -> None:
    slow = Timings(lease_duration=30.0, renew_deadline=20.0, retry_period=0.1)

    async def scenario() -> float:
        kube = Kube.from_kubeconfig(kubeconfig)
        try:
            first = Elector(kube, lease_namespace, "shard", "first", slow)
            second = Elector(kube, lease_namespace, "shard", "second", slow)
            assert await first.acquire()
            assert not await second.try_once()
            await first.release()
            loop = asyncio.get_running_loop()
            started = loop.time()
            assert await asyncio.wait_for(second.acquire(), timeout=5)
            return loop.time() - started
        finally:
            kube.close()

    assert asyncio.run(scenario()) < 1.0  # not the 30 s lease duration


def test_two_standbys_taking_over_at_once_elect_exactly_one(
    kube_emulator: KubeEmulator, kubeconfig: Path, lease_namespace: str
) -> None:
    async def scenario() -> list[bool]:
        kube = Kube.from_kubeconfig(kubeconfig)
        try:
            electors = [Elector(kube, lease_namespace, "race", f"r{i}", FAST) for i in range(4)]
            return list(await asyncio.gather(*(e.try_once() for e in electors)))
        finally:
            kube.close()

    assert sorted(asyncio.run(scenario())) == [False, False, False, True]


def test_a_holder_that_cannot_renew_gives_up_within_the_renew_deadline(
    kube_emulator: KubeEmulator, kubeconfig: Path, lease_namespace: str, tmp_path: Path
) -> None:
    # The holder's view of the API after a partition: a kubeconfig whose server refuses.
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed_port = sock.getsockname()[1]
    config = yaml.safe_load(kubeconfig.read_text())
    config["clusters"][0]["cluster"]["server"] = f"http://127.0.0.1:{closed_port}"
    partitioned = tmp_path / "partitioned.yaml"
    partitioned.write_text(yaml.safe_dump(config))

    async def scenario() -> float:
        kube = Kube.from_kubeconfig(kubeconfig)
        cut_off = Kube.from_kubeconfig(partitioned)
        try:
            holder = Elector(kube, lease_namespace, "shard", "holder", FAST)
            assert await holder.acquire()
            holder.kube = cut_off
            loop = asyncio.get_running_loop()
            started = loop.time()
            await asyncio.wait_for(holder.keep(), timeout=5)
            assert not holder.leading
            return loop.time() - started
        finally:
            kube.close()
            cut_off.close()

    gave_up = asyncio.run(scenario())
    assert gave_up < FAST.lease_duration  # before any standby could take over
