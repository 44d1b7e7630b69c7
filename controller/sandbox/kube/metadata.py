"""Server-managed metadata: timestamps, generated names, what generation counts, defaults."""

from __future__ import annotations

import datetime
import secrets
from collections.abc import Mapping
from typing import Any

from controller.sandbox.kube.resources import Body

# Fields a client may send but the server owns: dropped on create, kept from the stored
# object on update.
SERVER_FIELDS = (
    "uid",
    "resourceVersion",
    "creationTimestamp",
    "deletionTimestamp",
    "generation",
    "managedFields",
)
IMMUTABLE_FIELDS = (
    "name",
    "namespace",
    "uid",
    "creationTimestamp",
    "generation",
    "resourceVersion",
    "deletionTimestamp",
)
_NAME_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"  # as the apiserver's generateName suffix


def now_rfc3339() -> str:
    """The current UTC time as Kubernetes timestamps are written (second precision)."""
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def generate_name(prefix: str) -> str:
    """``metadata.generateName`` resolved: the prefix plus five random characters."""
    return prefix + "".join(secrets.choice(_NAME_ALPHABET) for _ in range(5))


def spec_of(obj: Mapping[str, Any]) -> dict[str, Any]:
    """What `metadata.generation` counts: everything but metadata and status."""
    return {key: value for key, value in obj.items() if key not in {"metadata", "status"}}


def namespace_defaults(obj: Body) -> None:
    """Fill in what the namespace controller would: the name label, finalizer, Active phase."""
    meta = obj.setdefault("metadata", {})
    meta.setdefault("labels", {})["kubernetes.io/metadata.name"] = meta["name"]
    obj.setdefault("apiVersion", "v1")
    obj.setdefault("kind", "Namespace")
    obj["spec"] = {"finalizers": ["kubernetes"]}
    obj["status"] = {"phase": "Active"}
