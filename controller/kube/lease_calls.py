"""The Lease calls of :class:`~controller.kube.adapter.Kube` (leader election, coordination.k8s.io).

A base class Kube inherits, so the Lease methods stay Kube's; the Lease values and manifests
are :mod:`controller.kube.leases` (pure).
"""

from __future__ import annotations

from typing import Any

from controller.kube.calls import call, get
from controller.kube.leases import Lease, LeaseRecord, lease_from_json, lease_manifest


class LeaseCalls:
    """Read, create and replace Leases through the client Kube sets up."""

    _coordination: Any
    _timeout: float

    async def get_lease(self, namespace: str, name: str) -> Lease | None:
        found = await get(
            f"Lease {namespace}/{name}",
            self._timeout,
            self._coordination.read_namespaced_lease,
            name,
            namespace,
        )
        return None if found is None else lease_from_json(found)

    async def create_lease(self, namespace: str, name: str, record: LeaseRecord) -> Lease:
        """Create the Lease; :class:`KubeAlreadyExistsError` when another replica was first."""
        manifest = lease_manifest(namespace, name, record)
        return lease_from_json(
            await call(
                f"Lease {namespace}/{name}",
                self._timeout,
                self._coordination.create_namespaced_lease,
                namespace,
                manifest,
            )
        )

    async def replace_lease(self, lease: Lease, record: LeaseRecord) -> Lease:
        """Write ``record`` over the Lease as read; a KubeError with status 409 when it changed
        since (another replica wrote first)."""
        manifest = lease_manifest(lease.namespace, lease.name, record, lease.resource_version)
        return lease_from_json(
            await call(
                f"Lease {lease.namespace}/{lease.name}",
                self._timeout,
                self._coordination.replace_namespaced_lease,
                lease.name,
                lease.namespace,
                manifest,
            )
        )
