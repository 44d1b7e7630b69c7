"""The request log as plain values, detached from kmock's live request objects."""

from __future__ import annotations

import copy
import dataclasses
from typing import Any

import kmock

from controller.sandbox.kube.resources import WRITE_METHODS


@dataclasses.dataclass(frozen=True)
class RecordedRequest:
    """One request the emulator received, detached from kmock's live objects."""

    index: int
    method: str
    path: str
    query: dict[str, str]
    action: str | None
    resource: str | None  # "group/version/plural", "v1/namespaces"
    namespace: str | None
    name: str | None
    subresource: str | None
    content_type: str
    data: Any

    @property
    def is_write(self) -> bool:
        """Whether the request could change state (POST, PUT, PATCH, DELETE)."""
        return self.method in WRITE_METHODS

    def __str__(self) -> str:
        query = "&".join(f"{k}={v}" for k, v in self.query.items())
        return f"{self.method} {self.path}{'?' + query if query else ''}"


def record(index: int, request: kmock.Request) -> RecordedRequest:
    """Copy what a test asserts on out of a kmock request (the ``index``-th of the log)."""
    res = request.resource
    return RecordedRequest(
        index=index,
        method=str(request.method.value),
        path=request.url.path,
        query=dict(request.params),
        action=request.action.value if request.action is not None else None,
        resource=None
        if res is None or res.plural is None
        else "/".join(part for part in (res.group, res.version, res.plural) if part),
        namespace=request.namespace,
        name=request.name,
        subresource=request.subresource,
        content_type=request.headers.get("Content-Type", ""),
        data=copy.deepcopy(request.data),
    )
