"""What the cluster says it serves: /version, API resource lists, and the effect of a CRD."""

from __future__ import annotations

from collections.abc import Iterable

import kmock

from controller.sandbox.kube.metadata import now_rfc3339
from controller.sandbox.kube.resources import ALL_VERBS, Body

# One entry per version of a CRD: the resource, how to serve it (None: stop serving it),
# and its printer columns.
ServedVersion = tuple[kmock.resource, kmock.ResourceInfo | None, list[Body]]


def server_version() -> Body:
    """The ``/version`` answer: a recent Kubernetes, marked as kmock's."""
    return {
        "major": "1",
        "minor": "33",
        "gitVersion": "v1.33.0+kmock",
        "gitTreeState": "clean",
        "gitCommit": "0" * 40,
        "buildDate": "2025-04-23T00:00:00Z",
        "goVersion": "go1.24.2",
        "compiler": "gc",
        "platform": "linux/amd64",
    }


def api_resource_list(
    group: str | None,
    version: str | None,
    served: Iterable[tuple[kmock.resource, kmock.ResourceInfo]],
) -> Body:
    """The ``APIResourceList`` of one group/version, subresources included.

    kmock says groupVersion "/v1" for the core group (kubectl then finds no kinds at all)
    and gives subresources the short names and verbs of their parent.
    """
    entries: list[Body] = []
    for res, info in sorted(served, key=lambda pair: str(pair[0].plural)):
        kind = info.kind or str(res.plural).capitalize()
        entries.append(
            {
                "name": res.plural,
                "kind": kind,
                "namespaced": bool(info.namespaced),
                "singularName": info.singular or kind.lower(),
                "verbs": sorted(info.verbs),
                "shortNames": sorted(info.shortnames),
                "categories": sorted(info.categories),
            }
        )
        entries.extend(
            {
                "name": f"{res.plural}/{sub}",
                "kind": kind,
                "singularName": "",
                "namespaced": bool(info.namespaced),
                "verbs": ["get", "patch", "update"],
            }
            for sub in sorted(info.subresources)
        )
    return {
        "apiVersion": "v1",
        "kind": "APIResourceList",
        "groupVersion": f"{group}/{version}" if group else version,
        "resources": entries,
    }


def crd_status(crd: Body) -> Body:
    """The status the apiextensions controller gives a new CRD: names accepted, established."""
    names = crd.get("spec", {}).get("names", {})
    return {
        "acceptedNames": names,
        "storedVersions": [
            v["name"] for v in crd.get("spec", {}).get("versions", []) if v.get("storage")
        ],
        "conditions": [
            {
                "type": t,
                "status": "True",
                "reason": r,
                "lastTransitionTime": now_rfc3339(),
                "message": m,
            }
            for t, r, m in (
                ("NamesAccepted", "NoConflicts", "no conflicts found"),
                (
                    "Established",
                    "InitialNamesAccepted",
                    "the initial names have been accepted",
                ),
            )
        ],
    }


def served_versions(crd: Body, *, deleted: bool) -> list[ServedVersion]:
    """The custom resources a stored (or just deleted) CRD makes the cluster serve."""
    spec = crd.get("spec", {})
    names = spec.get("names", {})
    result: list[ServedVersion] = []
    for version in spec.get("versions", []):
        cr = kmock.resource(spec.get("group"), version["name"], names.get("plural"))
        if deleted or not version.get("served", True):
            result.append((cr, None, []))
            continue
        info = kmock.ResourceInfo(
            namespaced=spec.get("scope", "Namespaced") == "Namespaced",
            kind=names.get("kind"),
            singular=names.get("singular") or str(names.get("kind", "")).lower(),
            verbs=set(ALL_VERBS),
            shortnames=set(names.get("shortNames", [])),
            categories=set(names.get("categories", [])),
            subresources=set(version.get("subresources", {})),
        )
        result.append((cr, info, list(version.get("additionalPrinterColumns", []))))
    return result
