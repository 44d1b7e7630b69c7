"""What the emulated cluster serves: constants, CRD specs, and the Workspace resource."""

from __future__ import annotations

import dataclasses
from typing import Any

import kmock

Body = dict[str, Any]
Events = list[tuple[kmock.resource, Body]]  # (resource, watch event), in commit order

CORE_NAMESPACES = ("default", "kube-system", "kube-public", "kube-node-lease")
DUMMY_TOKEN = "kube-emulator-token"  # noqa: S105 -- not a secret: any token is accepted
ALL_VERBS = ("create", "delete", "deletecollection", "get", "list", "patch", "update", "watch")
WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
EVENT_LOG_SIZE = 10_000  # events per resource a watch can resume from (older: 410 Gone)
REQUEST_LOG_SIZE = 10_000  # requests kept for tests to read (KubeEmulator.requests)
OBJECT_HISTORY_SIZE = 1_000  # versions kept per object (KubeEmulator.history)
STOP = {"type": "__STOP__"}  # put on every bus at shutdown, so watch streams end promptly


@dataclasses.dataclass(frozen=True)
class PrinterColumn:
    """One ``additionalPrinterColumns`` entry of a CRD version (as ``kubectl get`` shows)."""

    name: str
    json_path: str
    type: str = "string"
    priority: int = 0
    description: str = ""


@dataclasses.dataclass(frozen=True)
class CustomResource:
    """The parts of a CustomResourceDefinition that the emulator serves."""

    group: str
    version: str
    plural: str
    kind: str
    scope: str = "Namespaced"
    subresources: tuple[str, ...] = ("status",)
    short_names: tuple[str, ...] = ()
    singular: str | None = None
    printer_columns: tuple[PrinterColumn, ...] = ()

    def manifest(self) -> Body:
        """Render a minimal ``apiextensions.k8s.io/v1`` CRD for this resource."""
        version: Body = {
            "name": self.version,
            "served": True,
            "storage": True,
            "schema": {
                "openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
            },
            "subresources": {sub: {} for sub in self.subresources},
            "additionalPrinterColumns": [
                {
                    "name": col.name,
                    "type": col.type,
                    "jsonPath": col.json_path,
                    "priority": col.priority,
                    "description": col.description,
                }
                for col in self.printer_columns
            ],
        }
        return {
            "apiVersion": "apiextensions.k8s.io/v1",
            "kind": "CustomResourceDefinition",
            "metadata": {"name": f"{self.plural}.{self.group}"},
            "spec": {
                "group": self.group,
                "scope": self.scope,
                "names": {
                    "plural": self.plural,
                    "singular": self.singular or self.kind.lower(),
                    "kind": self.kind,
                    "listKind": f"{self.kind}List",
                    "shortNames": list(self.short_names),
                },
                "versions": [version],
            },
        }


WORKSPACE_CRD = CustomResource(
    group="cratekeeper.dev",
    version="v1alpha1",
    plural="workspaces",
    kind="Workspace",
    short_names=("ws",),
    printer_columns=(
        PrinterColumn("Ready", '.status.conditions[?(@.type=="Ready")].status'),
        PrinterColumn("Revision", ".status.lastAppliedRevision"),
        PrinterColumn("Age", ".metadata.creationTimestamp", type="date"),
    ),
)
WORKSPACES = "cratekeeper.dev/v1alpha1/workspaces"
ALERT_CRD = CustomResource(
    group="cratekeeper.dev",
    version="v1alpha1",
    plural="alerts",
    kind="Alert",
    subresources=(),
    printer_columns=(PrinterColumn("Provider", ".spec.provider"),),
)
ALERTS = "cratekeeper.dev/v1alpha1/alerts"
CRDS = kmock.resource("apiextensions.k8s.io", "v1", "customresourcedefinitions")
NAMESPACES = kmock.resource("", "v1", "namespaces")
