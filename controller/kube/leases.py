"""``coordination.k8s.io/v1`` Leases as values: what leader election reads and writes.

A Lease's spec is the leader-election record of client-go's ``resourcelock``: who holds it,
for how long, when it was acquired and last renewed, and how often it changed hands. The
``resource_version`` is kept so that a write is conditional on the object read (optimistic
concurrency: two standbys taking over at once cannot both win).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

__all__ = ["Lease", "LeaseRecord", "lease_from_json", "lease_manifest"]


@dataclass(frozen=True)
class LeaseRecord:
    """The spec of a Lease: an empty ``holder`` means nobody holds it (released)."""

    holder: str
    duration: float
    acquired: datetime | None = None
    renewed: datetime | None = None
    transitions: int = 0


@dataclass(frozen=True)
class Lease:
    """A stored Lease: its record and the resourceVersion a replace must match."""

    name: str
    namespace: str
    resource_version: str
    record: LeaseRecord


def lease_from_json(obj: Mapping[str, Any]) -> Lease:
    """The Lease of raw JSON; missing or mistyped fields become empty values."""
    meta = obj.get("metadata") if isinstance(obj.get("metadata"), Mapping) else {}
    spec = obj.get("spec") if isinstance(obj.get("spec"), Mapping) else {}
    assert isinstance(meta, Mapping) and isinstance(spec, Mapping)
    duration = spec.get("leaseDurationSeconds")
    transitions = spec.get("leaseTransitions")
    return Lease(
        name=str(meta.get("name") or ""),
        namespace=str(meta.get("namespace") or ""),
        resource_version=str(meta.get("resourceVersion") or ""),
        record=LeaseRecord(
            holder=str(spec.get("holderIdentity") or ""),
            duration=float(duration) if isinstance(duration, int | float) else 0.0,
            acquired=_time(spec.get("acquireTime")),
            renewed=_time(spec.get("renewTime")),
            transitions=transitions if isinstance(transitions, int) else 0,
        ),
    )


def lease_manifest(
    namespace: str, name: str, record: LeaseRecord, resource_version: str | None = None
) -> dict[str, Any]:
    """The Lease to create (no ``resource_version``) or to replace (the one read)."""
    metadata: dict[str, Any] = {"name": name, "namespace": namespace}
    if resource_version:
        metadata["resourceVersion"] = resource_version
    spec: dict[str, Any] = {
        "holderIdentity": record.holder,
        # The API's field is whole seconds (at least 1).
        "leaseDurationSeconds": max(1, round(record.duration)),
        "leaseTransitions": record.transitions,
    }
    if record.acquired is not None:
        spec["acquireTime"] = _micro_time(record.acquired)
    if record.renewed is not None:
        spec["renewTime"] = _micro_time(record.renewed)
    return {
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": metadata,
        "spec": spec,
    }


def _micro_time(value: datetime) -> str:
    """Kubernetes' MicroTime: RFC 3339 in UTC with microseconds."""
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _time(value: object) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
