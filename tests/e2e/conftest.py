"""Fixtures of the e2e tests: the cluster, and a fresh namespace per test."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from tests.e2e.cluster import Cluster, connect


@pytest.fixture(scope="session")
def cluster() -> Cluster:
    return connect()


@pytest.fixture
def namespace(cluster: Cluster) -> Iterator[str]:
    """A fresh namespace for the test's Workspaces, deleted afterwards."""
    name = f"ck-e2e-{uuid.uuid4().hex[:8]}"
    cluster.run("create", "namespace", name)
    yield name
    cluster.run("delete", "namespace", name, "--wait=false", check=False)
