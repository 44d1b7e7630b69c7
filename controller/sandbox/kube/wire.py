"""The HTTP side of the API: URL paths, request parsing, and errors as kube-apiserver words them.

kmock's own parser answers HTTP 500 on ``/api/v1/namespaces``; this one treats namespaces as
the cluster-scoped resource they are and guesses PUT as a replace.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
from collections.abc import Mapping
from typing import Any

import aiohttp.web
import kmock
import yaml


def api_error(code: int, reason: str, message: str, **details: Any) -> kmock.KubernetesError:
    """A ``Status`` failure exactly as kube-apiserver returns it (kubectl prints the message)."""
    return kmock.KubernetesError(status=code, reason=reason, message=message, details=details)


def not_found(res: kmock.resource, name: str | None = None) -> kmock.KubernetesError:
    """404 for an unknown resource (no name) or for a missing object of a known one."""
    what = f"{res.plural}.{res.group}" if res.group else str(res.plural)
    if name is None:
        return api_error(404, "NotFound", "the server could not find the requested resource")
    return api_error(404, "NotFound", f'{what} "{name}" not found', name=name, kind=res.plural)


@dataclasses.dataclass(frozen=True)
class ApiPath:
    """The parts of a Kubernetes URL path; ``group is None`` means not an API path at all."""

    group: str | None = None
    version: str | None = None
    plural: str | None = None
    namespace: str | None = None
    name: str | None = None
    subresource: str | None = None


def parse_api_path(path: str) -> ApiPath:
    """Split a Kubernetes URL path; ``/api/v1/namespaces[/NAME[/status]]`` is cluster-scoped."""
    parts = [part for part in path.strip("/").split("/") if part]
    if len(parts) >= 2 and parts[0] == "api":
        group, version, rest = "", parts[1], parts[2:]
    elif len(parts) >= 3 and parts[0] == "apis":
        group, version, rest = parts[1], parts[2], parts[3:]
    elif len(parts) == 2 and parts[0] == "apis":
        return ApiPath(group=parts[1])
    else:
        return ApiPath()
    namespace = None
    ns_subresource = group == "" and len(rest) == 3 and rest[2] in {"status", "finalize"}
    if len(rest) >= 3 and rest[0] == "namespaces" and not ns_subresource:
        namespace, rest = rest[1], rest[2:]
    return ApiPath(
        group=group,
        version=version,
        plural=rest[0] if rest else None,
        namespace=namespace,
        name=rest[1] if len(rest) > 1 else None,
        subresource="/".join(rest[2:]) or None,
    )


def guess_action(api: ApiPath, method: str, query: Mapping[str, str]) -> kmock.action | None:
    """kmock's action guess, plus PUT (replace) on named objects."""
    if api.group is None:
        return None
    if method == "GET" and query.get("watch") in {"true", "1"}:
        return kmock.action.WATCH
    if api.name is None:
        return {"GET": kmock.action.LIST, "POST": kmock.action.CREATE}.get(method)
    return {
        "GET": kmock.action.FETCH,
        "PATCH": kmock.action.UPDATE,
        "PUT": kmock.action.UPDATE,
        "DELETE": kmock.action.DELETE,
    }.get(method)


async def parse_request(raw: aiohttp.web.BaseRequest, *, id: int) -> kmock.Request:
    """Read an aiohttp request into kmock's ``Request`` (JSON or YAML body, resource, action)."""
    body = await raw.read()
    text = body.decode("utf-8", errors="replace")
    data: Any = None
    if text.strip():
        try:
            data = json.loads(text)
        except ValueError:
            with contextlib.suppress(yaml.YAMLError):  # apply-patch+yaml bodies
                data = yaml.safe_load(text)
    api = parse_api_path(raw.path)
    query = dict(raw.query)
    resource = None
    if api.group is not None:
        resource = kmock.resource(group=api.group, version=api.version, plural=api.plural)
    return kmock.Request(
        id=id,
        raw_request=raw,
        url=raw.url,
        method=raw.method,
        params=query,
        headers=dict(raw.headers),
        cookies=dict(raw.cookies),
        data=data,
        body=body,
        text=text,
        action=guess_action(api, raw.method, query),
        resource=resource,
        namespace=api.namespace,
        name=api.name,
        subresource=api.subresource,
    )
