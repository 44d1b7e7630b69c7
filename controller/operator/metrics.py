"""Prometheus metrics (its own registry) and the probe endpoints, served on the metrics port."""

from __future__ import annotations

from collections.abc import Callable

from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.metrics import MetricWrapperBase

from controller.api.status import WorkspaceStatus

_LABELS = ("namespace", "name")
# The conditions the status carries (Suspended also straight from spec.suspend when the caller
# knows it): the dashboard counts Workspaces by them and the alert rules fire on them
# (charts/cratekeeper/dashboards/, templates/prometheusrule.yaml).
CONDITIONS = ("Ready", "Reconciling", "Stalled", "Suspended", "Drifted")


class OperatorMetrics:
    """What the operator counts; one instance per operator, with its own registry."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
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
