"""Prometheus metrics (its own registry) and the probe endpoints, served on the metrics port."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from pathlib import Path

from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.metrics import MetricWrapperBase

from controller.api.status import WorkspaceStatus
from controller.registry.cache import cache_size

_LABELS = ("namespace", "name")
# The conditions the status carries (Suspended also straight from spec.suspend when the caller
# knows it): the dashboard counts Workspaces by them and the alert rules fire on them
# (charts/cratekeeper/dashboards/, templates/prometheusrule.yaml).
CONDITIONS = ("Ready", "Reconciling", "Stalled", "Suspended", "Drifted")
CACHE_REFRESH = 60.0
"""Seconds between two measurements of the caches on disk (a walk of the Git cache)."""


class OperatorMetrics:
    """What the operator counts; one instance per operator, with its own registry."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.cache_bytes = Gauge(
            "cratekeeper_cache_bytes",
            "Bytes on disk of the operator's caches: git (the mirrors), blobs (pulled blocks; "
            "kept within CRATEKEEPER_BLOB_CACHE_MAX_BYTES). Measured once a minute.",
            ("cache",),
            registry=self.registry,
        )
        self.reconcile_duration = Histogram(
            "cratekeeper_reconcile_duration_seconds",
            "Time from fetch to recorded status of one reconcile attempt.",
            _LABELS,
            buckets=(0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800),
            registry=self.registry,
        )
        self.runs = Counter(
            "cratekeeper_runs_total",
            "Reconciles that ran or tried to run block actions, by result.",
            (*_LABELS, "result"),
            registry=self.registry,
        )
        self.last_applied = Gauge(
            "cratekeeper_last_successful_apply_timestamp_seconds",
            "Unix time of the last reconcile that applied a revision.",
            _LABELS,
            registry=self.registry,
        )
        self.fetch_errors = Counter(
            "cratekeeper_fetch_errors_total",
            "Failed fetches of the workspace repository, by reason.",
            (*_LABELS, "reason"),
            registry=self.registry,
        )
        self.pull_errors = Counter(
            "cratekeeper_pull_errors_total",
            "Failed registry look-ups or pulls of blocks, by reason.",
            (*_LABELS, "reason"),
            registry=self.registry,
        )
        self.notification_failures = Counter(
            "cratekeeper_notification_failures_total",
            "Commit statuses and alerts that could not be delivered, by channel "
            "(github, gitlab, gitea, forge, slack, teams, webhook).",
            (*_LABELS, "channel"),
            registry=self.registry,
        )
        self.drift_detected = Counter(
            "cratekeeper_drift_detected_total",
            "Drift checks (spec.drift) that found a block drifted, by block.",
            (*_LABELS, "block"),
            registry=self.registry,
        )
        self.conditions = Gauge(
            "cratekeeper_workspace_condition",
            "1 when the Workspace's condition is True, else 0 (Suspended: spec.suspend).",
            (*_LABELS, "condition"),
            registry=self.registry,
        )

    def observe(
        self,
        namespace: str,
        name: str,
        status: WorkspaceStatus,
        *,
        suspended: bool | None = None,
    ) -> None:
        """Gauges from a status read or written: its conditions, and its last successful apply
        from the history, so a restarted operator shows both before its next run."""
        for kind in CONDITIONS:
            condition = status.condition(kind)
            true = condition is not None and condition.status == "True"
            self.conditions.labels(namespace, name, kind).set(1 if true else 0)
        if suspended is not None:
            self.conditions.labels(namespace, name, "Suspended").set(1 if suspended else 0)
        applied = [e.finished for e in status.history if e.result == "Succeeded"]
        if applied:
            self.last_applied.labels(namespace, name).set(max(applied).timestamp())

    def _labelled(self) -> list[tuple[MetricWrapperBase, tuple[str, ...]]]:
        return [
            (self.reconcile_duration, _LABELS),
            (self.runs, (*_LABELS, "result")),
            (self.last_applied, _LABELS),
            (self.fetch_errors, (*_LABELS, "reason")),
            (self.pull_errors, (*_LABELS, "reason")),
            (self.notification_failures, (*_LABELS, "channel")),
            (self.drift_detected, (*_LABELS, "block")),
            (self.conditions, (*_LABELS, "condition")),
        ]

    def forget(self, namespace: str, name: str) -> None:
        """Drop every series of a deleted Workspace, so its counters do not linger forever."""
        for metric, names in self._labelled():
            series = {
                tuple(sample.labels[n] for n in names)
                for family in metric.collect()
                for sample in family.samples
                if sample.labels.get("namespace") == namespace
                and sample.labels.get("name") == name
                and all(n in sample.labels for n in names)
            }
            for values in series:
                metric.remove(*values)

    def measure_caches(self, cache_dir: Path) -> None:
        """Set ``cratekeeper_cache_bytes`` from the disk (blocking: a walk of the caches)."""
        self.cache_bytes.labels("git").set(_bytes_under(cache_dir / "git"))
        self.cache_bytes.labels("blobs").set(cache_size(cache_dir / "oci"))

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


def metrics_app(metrics: OperatorMetrics, ready: Callable[[], bool]) -> web.Application:
    """``/metrics``, ``/healthz`` (the process serves) and ``/readyz`` (Kopf is watching)."""

    async def serve_metrics(_: web.Request) -> web.Response:
        response = web.Response(body=metrics.exposition())
        response.content_type = CONTENT_TYPE_LATEST.split(";")[0]
        response.charset = "utf-8"
        return response

    async def healthz(_: web.Request) -> web.Response:
        return web.Response(text="ok")

    async def readyz(_: web.Request) -> web.Response:
        return web.Response(text="ok") if ready() else web.Response(status=503, text="starting")

    app = web.Application()
    app.router.add_get("/metrics", serve_metrics)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    return app


async def refresh_cache_sizes(
    metrics: OperatorMetrics, cache_dir: Path, every: float = CACHE_REFRESH
) -> None:
    """Measure the caches now and every ``every`` seconds (off the event loop), until cancelled:
    a scrape never walks the disk."""
    while True:
        await asyncio.to_thread(metrics.measure_caches, cache_dir)
        await asyncio.sleep(every)


def _bytes_under(root: Path) -> int:
    """Bytes of the files under ``root`` (0 when it does not exist; files vanishing meanwhile,
    as a fetch replaces packs, are skipped)."""
    total = 0
    for folder, _, files in os.walk(root):
        for name in files:
            try:
                total += (Path(folder) / name).lstat().st_size
            except FileNotFoundError:
                continue
    return total
