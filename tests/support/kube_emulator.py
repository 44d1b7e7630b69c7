"""pytest fixtures for the Kubernetes emulator (``controller.sandbox.kube``).

The emulator itself is product code, shared with ``cratekeeper demo``; its usage documentation
is the docstring of ``controller/sandbox/kube/__init__.py`` and ``docs/testing-emulator.md``.
This module provides the fixtures and re-exports the names tests import from here.

Fixtures (list this module in ``pytest_plugins`` of the root conftest)::

    kube_emulator       session   KubeEmulator on 127.0.0.1:<free port>, Workspace and Alert CRDs
                                  registered; state is shared: use a namespace per test
    kubeconfig          function  Path of a 0600 kubeconfig for ``kube_emulator``
    fresh_kube_emulator function  a private KubeEmulator for tests that need an empty cluster
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from controller.sandbox.kube.cluster import ClusterEmulator
from controller.sandbox.kube.metadata import now_rfc3339
from controller.sandbox.kube.patches import MERGE_KEYS, merge_patch, strategic_merge_patch
from controller.sandbox.kube.recording import RecordedRequest
from controller.sandbox.kube.resources import (
    ALERT_CRD,
    ALERTS,
    ALL_VERBS,
    CORE_NAMESPACES,
    CRDS,
    DUMMY_TOKEN,
    EVENT_LOG_SIZE,
    NAMESPACES,
    STOP,
    WORKSPACE_CRD,
    WORKSPACES,
    WRITE_METHODS,
    Body,
    CustomResource,
    Events,
    PrinterColumn,
)
from controller.sandbox.kube.selectors import Selection, field_matcher, jsonpath, label_matcher
from controller.sandbox.kube.server import KubeEmulator, T
from controller.sandbox.kube.tables import human_age, wants_table
from controller.sandbox.kube.wire import (
    ApiPath,
    api_error,
    guess_action,
    not_found,
    parse_api_path,
    parse_request,
)

__all__ = [
    "ALERTS",
    "ALERT_CRD",
    "ALL_VERBS",
    "CORE_NAMESPACES",
    "CRDS",
    "DUMMY_TOKEN",
    "EVENT_LOG_SIZE",
    "MERGE_KEYS",
    "NAMESPACES",
    "STOP",
    "WORKSPACES",
    "WORKSPACE_CRD",
    "WRITE_METHODS",
    "ApiPath",
    "Body",
    "ClusterEmulator",
    "CustomResource",
    "Events",
    "KubeEmulator",
    "PrinterColumn",
    "RecordedRequest",
    "Selection",
    "T",
    "api_error",
    "field_matcher",
    "fresh_kube_emulator",
    "guess_action",
    "human_age",
    "jsonpath",
    "kube_emulator",
    "kubeconfig",
    "label_matcher",
    "merge_patch",
    "not_found",
    "now_rfc3339",
    "parse_api_path",
    "parse_request",
    "strategic_merge_patch",
    "wants_table",
]


@pytest.fixture(scope="session")
def kube_emulator() -> Iterator[KubeEmulator]:
    """One emulator for the session, with the Workspace CRD served. Use a namespace per test."""
    with KubeEmulator(crds=[WORKSPACE_CRD, ALERT_CRD]) as emulator:
        yield emulator


@pytest.fixture
def fresh_kube_emulator() -> Iterator[KubeEmulator]:
    """A private emulator for this test only (empty but for core namespaces, Workspaces
    and Alerts)."""
    with KubeEmulator(crds=[WORKSPACE_CRD, ALERT_CRD]) as emulator:
        yield emulator


@pytest.fixture
def kubeconfig(kube_emulator: KubeEmulator, tmp_path: Path) -> Path:
    """A 0600 kubeconfig file for ``kube_emulator`` (context namespace: default)."""
    return kube_emulator.write_kubeconfig(tmp_path / "kubeconfig.yml")
