"""What the Kubernetes adapter returns: frozen values, converted from raw JSON at the edge.

The adapter reads responses as JSON, never as the ``kubernetes`` client's models; the
``*_from_json`` converters below read that untyped JSON defensively (a missing or mistyped field
becomes an empty value, never an exception), so partial objects such as a test API server serves
them convert too, and nothing untyped leaks past this module.

One exception, on purpose: a Secret value that is not base64 raises
:class:`~controller.errors.SecretInvalidError` naming the Secret and the key, never the value
(dropping the key would turn a corrupt credential into a confusing "key missing" later).
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from controller.errors import SecretInvalidError

__all__ = [
    "AlertObject",
    "Condition",
    "ContainerState",
    "Job",
    "Pod",
    "Secret",
    "Workspace",
    "alert_from_json",
    "job_from_json",
    "list_items",
    "pod_from_json",
    "secret_from_json",
    "workspace_from_json",
]


@dataclass(frozen=True)
class Condition:
    """One entry of ``status.conditions``."""

    type: str
    status: str
    reason: str = ""
    message: str = ""


@dataclass(frozen=True)
class Job:
    """The parts of a ``batch/v1`` Job that a runner follows."""

    name: str
    namespace: str
    uid: str
    labels: Mapping[str, str]
    annotations: Mapping[str, str]
    created: datetime | None
    start_time: datetime | None
    suspended: bool
    deleting: bool
    active: int
    succeeded: int
    failed: int
    conditions: tuple[Condition, ...]

    def condition(self, type_: str) -> Condition | None:
        """The condition of that type when its status is ``True``."""
        return next((c for c in self.conditions if c.type == type_ and c.status == "True"), None)


@dataclass(frozen=True)
class ContainerState:
    """One container's state from a pod's status (init or main container)."""

    name: str
    state: Literal["waiting", "running", "terminated", "unknown"]
    reason: str = ""
    message: str = ""
    exit_code: int | None = None


@dataclass(frozen=True)
class Pod:
    """The parts of a Pod a runner reads once its Job ends."""

    name: str
    namespace: str
    labels: Mapping[str, str]
    phase: str
    created: datetime | None
    init_containers: tuple[ContainerState, ...]
    containers: tuple[ContainerState, ...]

    def container(self, name: str) -> ContainerState | None:
        """The state of the (init or main) container ``name``, when the kubelet reported it."""
        both = (*self.init_containers, *self.containers)
        return next((c for c in both if c.name == name), None)


@dataclass(frozen=True)
class Secret:
    """A Secret with its data decoded; the data is never shown in a repr."""

    name: str
    namespace: str
    uid: str
    labels: Mapping[str, str]
    owner_uids: tuple[str, ...]
    data: Mapping[str, bytes] = field(repr=False)


@dataclass(frozen=True)
class Workspace:
    """A Workspace object as stored. ``spec`` and ``status`` stay JSON: the caller validates them
    (``WorkspaceSpec``, the stored-status rules), so an invalid one can still be shown. They are
    kept out of the repr (a source URL may carry credentials)."""

    name: str
    namespace: str
    uid: str
    generation: int
    resource_version: str
    labels: Mapping[str, str]
    annotations: Mapping[str, str]
    created: datetime | None
    deleting: bool
    spec: Mapping[str, Any] = field(repr=False)
    status: Mapping[str, Any] = field(repr=False)


@dataclass(frozen=True)
class AlertObject:
    """An ``Alert`` object as stored; ``spec`` stays JSON (the notifier validates it)."""

    name: str
    namespace: str
    spec: Mapping[str, Any] = field(repr=False)


# --- JSON → values -------------------------------------------------------------------------


def list_items(obj: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The ``items`` of a list response, each a dict (anything else is dropped)."""
    return [item for item in _list(obj.get("items")) if isinstance(item, dict)]


def job_from_json(obj: Mapping[str, Any]) -> Job:
    meta, spec, status = (
        _dict(obj.get("metadata")),
        _dict(obj.get("spec")),
        _dict(obj.get("status")),
    )
    return Job(
        name=_str(meta.get("name")),
        namespace=_str(meta.get("namespace")),
        uid=_str(meta.get("uid")),
        labels=_strings(meta.get("labels")),
        annotations=_strings(meta.get("annotations")),
        created=_time(meta.get("creationTimestamp")),
        start_time=_time(status.get("startTime")),
        suspended=spec.get("suspend") is True,
        deleting=bool(meta.get("deletionTimestamp")),
        active=_int(status.get("active")),
        succeeded=_int(status.get("succeeded")),
        failed=_int(status.get("failed")),
        conditions=tuple(
            Condition(
                type=_str(c.get("type")),
                status=_str(c.get("status")),
                reason=_str(c.get("reason")),
                message=_str(c.get("message")),
            )
            for c in map(_dict, _list(status.get("conditions")))
        ),
    )


def pod_from_json(obj: Mapping[str, Any]) -> Pod:
    meta, status = _dict(obj.get("metadata")), _dict(obj.get("status"))
    return Pod(
        name=_str(meta.get("name")),
        namespace=_str(meta.get("namespace")),
        labels=_strings(meta.get("labels")),
        phase=_str(status.get("phase")),
        created=_time(meta.get("creationTimestamp")),
        init_containers=tuple(
            map(_container, map(_dict, _list(status.get("initContainerStatuses"))))
        ),
        containers=tuple(map(_container, map(_dict, _list(status.get("containerStatuses"))))),
    )


def secret_from_json(obj: Mapping[str, Any]) -> Secret:
    """The Secret with its ``data`` decoded; :class:`SecretInvalidError` on a value that is not
    base64 (the message names the key, never the value)."""
    meta = _dict(obj.get("metadata"))
    data: dict[str, bytes] = {}
    for key, value in _dict(obj.get("data")).items():
        try:
            data[str(key)] = base64.b64decode(_str(value), validate=True)
        except (binascii.Error, ValueError):
            where = f"{_str(meta.get('namespace'))}/{_str(meta.get('name'))}"
            raise SecretInvalidError(
                f"Secret {where}: the value of key {str(key)!r} is not base64; "
                "recreate it with `kubectl create secret generic ... --from-file`"
            ) from None
    return Secret(
        name=_str(meta.get("name")),
        namespace=_str(meta.get("namespace")),
        uid=_str(meta.get("uid")),
        labels=_strings(meta.get("labels")),
        owner_uids=tuple(
            _str(ref.get("uid")) for ref in map(_dict, _list(meta.get("ownerReferences")))
        ),
        data=data,
    )


def workspace_from_json(obj: Mapping[str, Any]) -> Workspace:
    meta = _dict(obj.get("metadata"))
    return Workspace(
        name=_str(meta.get("name")),
        namespace=_str(meta.get("namespace")),
        uid=_str(meta.get("uid")),
        generation=_int(meta.get("generation")),
        resource_version=_str(meta.get("resourceVersion")),
        labels=_strings(meta.get("labels")),
        annotations=_strings(meta.get("annotations")),
        created=_time(meta.get("creationTimestamp")),
        deleting=bool(meta.get("deletionTimestamp")),
        spec=_dict(obj.get("spec")),
        status=_dict(obj.get("status")),
    )


def alert_from_json(obj: Mapping[str, Any]) -> AlertObject:
    meta = _dict(obj.get("metadata"))
    return AlertObject(
        name=_str(meta.get("name")),
        namespace=_str(meta.get("namespace")),
        spec=_dict(obj.get("spec")),
    )


def _container(obj: Mapping[str, Any]) -> ContainerState:
    state = _dict(obj.get("state"))
    name = _str(obj.get("name"))
    if "terminated" in state:
        done = _dict(state["terminated"])
        code = done.get("exitCode")
        return ContainerState(
            name,
            "terminated",
            _str(done.get("reason")),
            _str(done.get("message")),
            code if isinstance(code, int) else None,
        )
    if "waiting" in state:
        waiting = _dict(state["waiting"])
        return ContainerState(
            name, "waiting", _str(waiting.get("reason")), _str(waiting.get("message"))
        )
    if "running" in state:
        return ContainerState(name, "running")
    return ContainerState(name, "unknown")


def _dict(value: object) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _list(value: object) -> list[Any]:
    return value if isinstance(value, list) else []


def _str(value: object) -> str:
    return value if isinstance(value, str) else ""


def _int(value: object) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def _strings(value: object) -> dict[str, str]:
    return {str(k): str(v) for k, v in _dict(value).items()}


def _time(value: object) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
