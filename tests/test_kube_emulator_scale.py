"""The emulated API serves a thousand Workspaces without slowing per request (issue 11 point 6).

Cost is counted, never timed: the server thread's function calls per request (``sys.setprofile``
in the server's own thread), which grow with the request log, the stored objects or the event
log when a request scans them, and stay flat when it does not.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from types import FrameType
from typing import Any

import pytest
import requests

from tests.support.kube_emulator import WORKSPACE_CRD, WORKSPACES, ClusterEmulator, KubeEmulator

N = 1000
SPACES = 10  # the thousand Workspaces live in ns-0 .. ns-9
BASE = "/apis/cratekeeper.dev/v1alpha1"
MERGE_PATCH = {"Content-Type": "application/merge-patch+json"}


def workspace(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "cratekeeper.dev/v1alpha1",
        "kind": "Workspace",
        "metadata": {"name": name, "labels": {"team": "a"}},
        "spec": {"source": {"url": f"git://127.0.0.1/{name}", "ref": {"branch": "main"}}},
    }


class Client:
    """Raw HTTP on one kept-alive connection, so a request costs the same each time."""

    def __init__(self, emulator: KubeEmulator) -> None:
        self.url = emulator.url
        self.session = requests.Session()

    def __call__(self, method: str, path: str, body: Any = None, **kwargs: Any) -> Any:
        response = self.session.request(method, self.url + path, json=body, timeout=30, **kwargs)
        assert response.status_code < 300, response.text
        if kwargs.get("params", {}).get("watch"):
            return [json.loads(line) for line in response.text.splitlines() if line.strip()]
        return response.json()


def calls_in_server(emulator: KubeEmulator, request: Callable[[], object]) -> int:
    """How many functions the server's thread calls while ``request`` is served."""
    count = 0

    def profile(frame: FrameType, event: str, arg: object) -> None:
        nonlocal count
        if event in ("call", "c_call"):
            count += 1

    def install(_: ClusterEmulator) -> None:
        sys.setprofile(profile)  # type: ignore[arg-type]  # the thread of the server's loop

    def remove(_: ClusterEmulator) -> None:
        sys.setprofile(None)

    emulator.call(install)
    try:
        request()
    finally:
        emulator.call(remove)
    return count


@pytest.fixture
def emulator() -> Iterator[KubeEmulator]:
    with KubeEmulator(crds=[WORKSPACE_CRD]) as server:
        yield server


def measure(emulator: KubeEmulator, client: Client, round_: int) -> dict[str, int]:
    """The calls of each kind of request an operator makes, against the namespace ``small``."""
    rv = int(client("GET", f"{BASE}/namespaces/small/workspaces")["metadata"]["resourceVersion"])
    status = {"status": {"observedGeneration": round_}}
    requests_: dict[str, Callable[[], object]] = {
        "discovery": lambda: client("GET", BASE),
        "fetch": lambda: client("GET", f"{BASE}/namespaces/small/workspaces/w-0"),
        "list one namespace": lambda: client("GET", f"{BASE}/namespaces/small/workspaces"),
        "create": lambda: client(
            "POST", f"{BASE}/namespaces/writes/workspaces", workspace(f"c-{round_}")
        ),
        "status patch": lambda: client(
            "PATCH", f"{BASE}/namespaces/small/workspaces/w-0/status", status, headers=MERGE_PATCH
        ),
        "resumed watch": lambda: client(
            "GET",
            f"{BASE}/namespaces/small/workspaces",
            params={"watch": "1", "resourceVersion": str(rv), "timeoutSeconds": "0"},
        ),
    }
    return {name: calls_in_server(emulator, send) for name, send in requests_.items()}


def test_a_thousand_workspaces_cost_no_more_per_request_than_five(
    emulator: KubeEmulator,
) -> None:
    client = Client(emulator)
    for name in ("small", "writes", *(f"ns-{i}" for i in range(SPACES))):
        client("POST", "/api/v1/namespaces", {"metadata": {"name": name}})
    for i in range(5):
        client("POST", f"{BASE}/namespaces/small/workspaces", workspace(f"w-{i}"))
    measure(emulator, client, 0)  # warm up: first-use costs (caches, lazy imports)
    few = measure(emulator, client, 1)

    for i in range(N):  # a thousand more objects, requests and watch events
        client("POST", f"{BASE}/namespaces/ns-{i % SPACES}/workspaces", workspace(f"w-{i}"))
    assert len(client("GET", f"{BASE}/workspaces")["items"]) == N + 5 + 2
    everything = client("GET", f"{BASE}/workspaces", params={"watch": "1", "timeoutSeconds": "0"})
    assert len(everything) == N + 5 + 2 and {e["type"] for e in everything} == {"ADDED"}
    selected = client("GET", f"{BASE}/workspaces", params={"labelSelector": "team=a"})
    assert len(selected["items"]) == N + 5 + 2
    many = measure(emulator, client, 2)

    grown = {name: (few[name], many[name]) for name in few if many[name] > few[name] * 1.2 + 50}
    assert grown == {}, f"calls per request grew with {N} workspaces (before, after): {grown}"
    assert emulator.errors() == []


def test_the_request_log_keeps_the_latest_requests_and_says_when_one_is_gone() -> None:
    with KubeEmulator(request_log=5) as emulator:
        client = Client(emulator)
        for _ in range(30):
            client("GET", "/version")
        mark = emulator.mark()
        assert mark == 30
        client("GET", "/api/v1/namespaces")
        assert [str(r) for r in emulator.requests(since=mark)] == ["GET /api/v1/namespaces"]
        with pytest.raises(LookupError, match="no longer in the log"):
            emulator.requests(since=0)
        assert emulator.call(lambda h: len(h._requests)) <= 2 * 5 + 1


def test_kmock_reactions_still_override_and_history_slices_see_the_log(
    emulator: KubeEmulator,
) -> None:
    client = Client(emulator)
    emulator.call(lambda h: h["get /version"][:1] << 418)  # only the first GET /version
    emulator.call(lambda h: h["get /api"] << {"kind": "APIVersions", "versions": ["v9"]})
    first = client.session.get(emulator.url + "/version", timeout=10)
    second = client.session.get(emulator.url + "/version", timeout=10)
    assert (first.status_code, second.status_code) == (418, 200)
    assert client("GET", "/api")["versions"] == ["v9"]
    assert client("GET", "/api/v1/namespaces/default")["metadata"]["name"] == "default"


def test_workspaces_listed_by_namespace_stay_in_their_namespace(emulator: KubeEmulator) -> None:
    client = Client(emulator)
    for name in ("a", "b"):
        client("POST", "/api/v1/namespaces", {"metadata": {"name": name}})
        client("POST", f"{BASE}/namespaces/{name}/workspaces", workspace(f"in-{name}"))
    names = [
        o["metadata"]["name"] for o in client("GET", f"{BASE}/namespaces/a/workspaces")["items"]
    ]
    assert names == ["in-a"]
    client("DELETE", "/api/v1/namespaces/a")
    assert emulator.list_objects(WORKSPACES, namespace="a") == []
    assert [o["metadata"]["name"] for o in emulator.list_objects(WORKSPACES)] == ["in-b"]
    client("POST", "/api/v1/namespaces", {"metadata": {"name": "a"}})
    client("POST", f"{BASE}/namespaces/a/workspaces", workspace("in-a"))  # the same name again
    assert len(emulator.history(WORKSPACES, "in-a", namespace="a")) == 4  # created, gone, again
