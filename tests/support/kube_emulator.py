"""A Kubernetes API server for tests: kmock 0.8's ``KubernetesEmulator``, completed.

kmock's emulator is an in-memory object store behind the Kubernetes URL scheme. Out of the box
it is enough for Kopf's own unit tests, but not for real clients (Kopf's full reactor, the
``kubernetes`` client, kubectl, Ansible's ``kubernetes.core``). :class:`ClusterEmulator`
subclasses it and fills the gaps listed in ``docs/testing-emulator.md``: cluster-scoped
``/api/v1/namespaces``, typed lists, server-managed metadata (uid, resourceVersion,
creationTimestamp, generation), generateName, PUT, the patch flavours, status subresources,
finalizers, watch resumption and bookmarks, selectors, Table rendering, CRD registration.

It runs in a background thread with its own event loop, so sync tests (subprocesses such as
``ansible-playbook`` or kubectl) and async tests (Kopf in the test's loop) share one server.

Fixtures (import them, or list this module in ``pytest_plugins`` of the root conftest)::

    kube_emulator      session  KubeEmulator, started on 127.0.0.1:<free port>, Workspace CRD
                                registered; state is shared: use a namespace per test
    kubeconfig         function Path of a 0600 kubeconfig for ``kube_emulator`` (a dummy token)
    fresh_kube_emulator function  a private KubeEmulator for tests that need an empty cluster

Sync use::

    def test_x(kube_emulator: KubeEmulator, kubeconfig: Path) -> None:
        mark = kube_emulator.mark()
        subprocess.run(["ansible-playbook", ...], env={"KUBECONFIG": str(kubeconfig), ...})
        assert kube_emulator.get("apps/v1/deployments", "web", namespace="demo")
        assert not kube_emulator.writes(since=mark)   # or: only the writes you expect

Async use (any loop: the server lives in its own thread)::

    async def test_y(kube_emulator: KubeEmulator) -> None:
        kube_emulator.create("cratekeeper.dev/v1alpha1/workspaces", {...})
        await kube_emulator.until(lambda: kube_emulator.get(WS, "ws1", namespace="ns")
                                  .get("status"))

``KubeEmulator`` (thread-safe; each call hops into the server's loop and returns copies):

- ``url``, ``host``, ``port``; ``write_kubeconfig(path, namespace="default") -> Path``;
  ``connection_info() -> (server, token)`` for ``@kopf.on.login``.
- ``register_crd(CustomResource | Mapping)``: serve a custom resource (a ``CustomResource``
  spec, or a full ``CustomResourceDefinition`` manifest such as ``crds/workspace.yaml``).
  Creating a CRD through the API (kubectl, the client) registers it as well.
- ``create(resource, body)``, ``get(resource, name, namespace=None)``,
  ``list_objects(resource, namespace=None)``, ``history(resource, name, namespace=None)``:
  the stored objects, as the server holds them. ``resource`` is ``"v1/namespaces"``,
  ``"apps/v1/deployments"``, ``"cratekeeper.dev/v1alpha1/workspaces"`` (kmock notation).
- ``requests(since=0)``, ``writes(since=0)``, ``mark()``: the request log as
  :class:`RecordedRequest` values; ``mark()`` is a position to pass as ``since``.
- ``errors()``: exceptions raised inside the emulator (bugs, not API errors such as 404).
- ``wait(predicate, timeout=5.0)`` and ``await until(predicate, timeout=5.0)``: poll with a
  bounded deadline; return the first truthy value or raise ``TimeoutError``.
- ``call(fn)``: run ``fn(handler)`` in the server's loop for anything else (kmock's own API:
  ``handler.objects``, reactions such as ``handler['get /version'] << 500``).

Known limits (deliberate): no admission, defaulting, validation against schemas, OpenAPI
(kubectl needs ``--validate=false``), garbage collection by owner references, controllers
(Deployments never become ready), RBAC or authentication (any token is accepted).
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import dataclasses
import datetime
import json
import os
import re
import secrets
import threading
import time
import uuid
import warnings
from collections import deque
from collections.abc import (
    AsyncGenerator,
    AsyncIterator,
    Callable,
    Coroutine,
    Iterator,
    Mapping,
    Sequence,
)
from pathlib import Path
from typing import Any, TypeVar

import aiohttp.web
import attrs
import jsonpatch
import kmock
import pytest
import yaml
from kmock._internal import rendering  # StreamingError: the only private name we need

T = TypeVar("T")
Body = dict[str, Any]
Events = list[tuple[kmock.resource, Body]]  # (resource, watch event), in commit order

CORE_NAMESPACES = ("default", "kube-system", "kube-public", "kube-node-lease")
DUMMY_TOKEN = "kube-emulator-token"
ALL_VERBS = ("create", "delete", "deletecollection", "get", "list", "patch", "update", "watch")
WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
EVENT_LOG_SIZE = 10_000  # how far back a watch can resume (older: 410 Gone, as etcd compaction)
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
CRDS = kmock.resource("apiextensions.k8s.io", "v1", "customresourcedefinitions")
NAMESPACES = kmock.resource("", "v1", "namespaces")


# --- Errors as the API server words them (reason, code) -------------------------------------


def api_error(code: int, reason: str, message: str, **details: Any) -> kmock.KubernetesError:
    """A ``Status`` failure exactly as kube-apiserver returns it (kubectl prints the message)."""
    return kmock.KubernetesError(status=code, reason=reason, message=message, details=details)


def not_found(res: kmock.resource, name: str | None = None) -> kmock.KubernetesError:
    what = f"{res.plural}.{res.group}" if res.group else str(res.plural)
    if name is None:
        return api_error(404, "NotFound", "the server could not find the requested resource")
    return api_error(404, "NotFound", f'{what} "{name}" not found', name=name, kind=res.plural)


# --- Request parsing: the URL scheme, with /api/v1/namespaces as a resource ----------------


@dataclasses.dataclass(frozen=True)
class ApiPath:
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


# --- Patching ------------------------------------------------------------------------------

# Strategic-merge keys of the list fields that clients patch in practice (pod templates,
# services, conditions). Lists of dicts that all carry one of these keys merge by it.
MERGE_KEYS = ("name", "containerPort", "port", "mountPath", "devicePath", "type", "ip")


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch: dicts merge, ``null`` deletes, everything else replaces."""
    if not isinstance(patch, Mapping):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, Mapping) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def strategic_merge_patch(target: Any, patch: Any) -> Any:
    """A strategic-merge subset: merge patch, plus lists of keyed dicts merged by their key.

    Directives (``$patch``, ``$setElementOrder/…``, ``$retainKeys``) are dropped, not honoured.
    """
    if isinstance(patch, Mapping):
        result = dict(target) if isinstance(target, Mapping) else {}
        for key, value in patch.items():
            if key.startswith("$"):
                continue
            if value is None:
                result.pop(key, None)
            else:
                result[key] = strategic_merge_patch(result.get(key), value)
        return result
    if isinstance(patch, list) and isinstance(target, list):
        key = _merge_key(target, patch)
        if key is not None:
            merged = [dict(item) for item in target]
            for item in patch:
                index = next((i for i, old in enumerate(merged) if old[key] == item[key]), None)
                if item.get("$patch") == "delete":
                    if index is not None:
                        del merged[index]
                elif index is None:
                    merged.append(strategic_merge_patch({}, item))
                else:
                    merged[index] = strategic_merge_patch(merged[index], item)
            return merged
    return copy.deepcopy(patch)


def _merge_key(target: list[Any], patch: list[Any]) -> str | None:
    items = target + patch
    if not items or not all(isinstance(item, Mapping) for item in items):
        return None
    return next((key for key in MERGE_KEYS if all(key in item for item in items)), None)


# --- Selectors -----------------------------------------------------------------------------

_LABEL_REQ = re.compile(
    r"^\s*(?P<neg>!)?\s*(?P<key>[A-Za-z0-9_./-]+)\s*"
    r"(?:(?P<op>==|=|!=)\s*(?P<value>[A-Za-z0-9_.-]*)|\s+(?P<set>in|notin)\s*\((?P<values>[^)]*)\))?"
    r"\s*$"
)


def _split_selector(selector: str) -> list[str]:
    """Split on commas outside ``in (a, b)`` parentheses."""
    parts, depth, current = [], 0, ""
    for char in selector:
        depth += {"(": 1, ")": -1}.get(char, 0)
        if char == "," and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += char
    return [part for part in [*parts, current] if part.strip()]


def label_matcher(selector: str) -> Callable[[Mapping[str, str]], bool]:
    """Compile a label selector (``a=b,c!=d,e in (f,g),!h,i``) to a predicate on labels."""
    requirements: list[tuple[str, str, set[str]]] = []  # (operator, key, values)
    for part in _split_selector(selector):
        match = _LABEL_REQ.match(part)
        if match is None:
            raise api_error(400, "BadRequest", f"unable to parse requirement: {part!r}")
        values = {v.strip() for v in (match["values"] or "").split(",") if v.strip()}
        if match["value"] is not None:
            values = {match["value"]}
        operator = "!" if match["neg"] else match["op"] or match["set"] or "exists"
        requirements.append((operator, match["key"], values))

    def matches(labels: Mapping[str, str]) -> bool:
        for operator, key, values in requirements:
            value = labels.get(key)
            ok = {
                "!": key not in labels,
                "exists": key in labels,
                "=": value in values,
                "==": value in values,
                "in": value in values,
                "!=": value not in values,
                "notin": value not in values,
            }[operator]
            if not ok:
                return False
        return True

    return matches


def field_matcher(selector: str) -> Callable[[Mapping[str, Any]], bool]:
    """Compile a field selector (``metadata.name=x,status.phase!=y``) to a predicate."""
    checks: list[Callable[[Mapping[str, Any]], bool]] = []
    for part in _split_selector(selector):
        negate = "!=" in part
        path, _, value = part.partition("!=" if negate else "==" if "==" in part else "=")
        keys = path.strip().split(".")

        def check(
            obj: Mapping[str, Any],
            keys: list[str] = keys,
            value: str = value.strip(),
            negate: bool = negate,
        ) -> bool:
            found: Any = obj
            for key in keys:
                found = found.get(key) if isinstance(found, Mapping) else None
            return (str(found if found is not None else "") == value) != negate

        checks.append(check)
    return lambda obj: all(check(obj) for check in checks)


@dataclasses.dataclass(frozen=True)
class Selection:
    """Which objects a list/watch request asks for."""

    namespace: str | None = None
    name: str | None = None
    labels: Callable[[Mapping[str, str]], bool] = lambda _: True
    fields: Callable[[Mapping[str, Any]], bool] = lambda _: True

    @classmethod
    def of(cls, request: kmock.Request) -> Selection:
        return cls(
            namespace=request.namespace,
            name=request.name,
            labels=label_matcher(request.params.get("labelSelector", "")),
            fields=field_matcher(request.params.get("fieldSelector", "")),
        )

    def matches(self, obj: Mapping[str, Any]) -> bool:
        meta = obj.get("metadata", {})
        return (
            (self.namespace is None or meta.get("namespace") == self.namespace)
            and (self.name is None or meta.get("name") == self.name)
            and self.labels(meta.get("labels") or {})
            and self.fields(obj)
        )


# --- Table rendering (kubectl get) ---------------------------------------------------------

_JSONPATH_TOKEN = re.compile(
    r"\.(?P<key>[A-Za-z0-9_-]+)|\[(?P<index>-?\d+|\*)\]|\['(?P<qkey>[^']+)'\]"
    r'|\[\?\(@\.(?P<fpath>[A-Za-z0-9_.-]+)\s*==\s*["\'](?P<fvalue>[^"\']*)["\']\)\]'
)


def jsonpath(obj: Any, path: str) -> list[Any]:
    """Evaluate the JSONPath subset used by printer columns: ``.a.b``, ``[0]``, ``[*]``,
    ``['a.b']`` and ``[?(@.type=="Ready")]``."""
    values = [obj]
    for token in _JSONPATH_TOKEN.finditer(path.strip().lstrip("$")):
        found: list[Any] = []
        for value in values:
            if token["key"] or token["qkey"]:
                if isinstance(value, Mapping) and (token["key"] or token["qkey"]) in value:
                    found.append(value[token["key"] or token["qkey"]])
            elif token["index"] and isinstance(value, list):
                if token["index"] == "*":
                    found.extend(value)
                elif -len(value) <= int(token["index"]) < len(value):
                    found.append(value[int(token["index"])])
            elif token["fpath"] and isinstance(value, list):
                for item in value:
                    probe = jsonpath(item, "." + token["fpath"])
                    if probe and str(probe[0]) == token["fvalue"]:
                        found.append(item)
        values = found
    return values


def human_age(timestamp: str | None, now: datetime.datetime) -> str:
    """``kubectl``'s short age format: 42s, 5m, 3h, 2d."""
    if not timestamp:
        return "<unknown>"
    then = datetime.datetime.fromisoformat(timestamp.replace("Z", "+00:00"))
    seconds = max(0, int((now - then).total_seconds()))
    for unit, size, limit in (("s", 1, 120), ("m", 60, 3600), ("h", 3600, 48 * 3600)):
        if seconds < limit:
            return f"{seconds // size}{unit}"
    return f"{seconds // 86400}d"


def wants_table(request: kmock.Request) -> bool:
    return "as=Table" in request.headers.get("Accept", "")


def now_rfc3339() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# --- The emulator --------------------------------------------------------------------------


@attrs.define(kw_only=True)
class ClusterEmulator(kmock.KubernetesEmulator):
    """kmock's emulator with the API semantics that real clients rely on.

    State changes happen in :meth:`_handle` (as in kmock) before the reactions run, so kmock's
    DSL (``handler['get /version'] << 500``) still overrides any response; the default
    (fallback) reactions then render the stored state.
    """

    _rv: int = attrs.field(default=1000, init=False)
    _event_log: deque[tuple[int, kmock.resource, Body]] = attrs.field(
        factory=lambda: deque(maxlen=EVENT_LOG_SIZE), init=False
    )
    _results: dict[int, Body] = attrs.field(factory=dict, init=False)
    _printer_columns: dict[kmock.resource, list[Body]] = attrs.field(factory=dict, init=False)
    _internal_errors: list[BaseException] = attrs.field(factory=list, init=False)

    def __attrs_post_init__(self) -> None:
        super().__attrs_post_init__()
        with warnings.catch_warnings():  # kmock uses the deprecated importlib.resources API
            warnings.simplefilter("ignore", DeprecationWarning)
            self.resources.load_bundled()  # discovery of the built-in kinds (a recent K3s)
        for name in CORE_NAMESPACES:
            self._commit_create(NAMESPACES, None, {"metadata": {"name": name}})
        self._event_log.clear()

    # Replaces RawHandler.__call__ only to parse URLs with our parser (kmock's crashes with
    # HTTP 500 on /api/v1/namespaces) and to keep API errors (404, 409) out of `errors`.
    async def __call__(self, raw_request: aiohttp.web.BaseRequest) -> aiohttp.web.StreamResponse:
        raw_response: aiohttp.web.StreamResponse | None = None
        try:
            request = await parse_request(raw_request, id=len(self._requests))
            self._requests.append(request)
            try:
                return await self._handle(request)
            except rendering.StreamingError as e:
                raw_response = e.args[0]
                raise e.__cause__ or e from None
        except kmock.KubernetesError as e:
            if raw_response is None or not raw_response.prepared:
                return await self._render_error(e)
            await self._stream_error(e, raw_response)
            return raw_response
        except Exception as e:
            self._internal_errors.append(e)
            if raw_response is None or not raw_response.prepared:
                return await self._render_error(e)
            await self._stream_error(e, raw_response)
            return raw_response

    async def _render_error(self, exc: Exception) -> aiohttp.web.StreamResponse:
        if isinstance(exc, kmock.KubernetesError):  # a clean Status, no traceback in details
            status: Body = {
                "apiVersion": "v1",
                "kind": "Status",
                "metadata": {},
                "status": "Failure",
                "code": exc.status,
                "reason": exc.reason,
                "message": exc.message,
                "details": exc.details or {},
            }
            return aiohttp.web.json_response(status, status=exc.status)
        return await super()._render_error(exc)

    async def _handle(self, request: kmock.Request) -> aiohttp.web.StreamResponse:
        res = request.resource
        mutating = {kmock.action.CREATE, kmock.action.UPDATE, kmock.action.DELETE}
        if res is not None and res.plural and request.action in mutating:
            info = self._info(res)
            async with self._lock:
                body, events = self._mutate(request, res, info)
                for event_res, event in events:
                    await self._publish(event_res, event)
            self._results[id(request)] = body
        try:
            # Skip KubernetesEmulator._handle: it would apply kmock's own (naive) mutations.
            return await super(kmock.KubernetesEmulator, self)._handle(request)
        finally:
            self._results.pop(id(request), None)

    # --- state changes (sync, under the lock; return the response body and the events) ---

    def _mutate(
        self, request: kmock.Request, res: kmock.resource, info: kmock.ResourceInfo
    ) -> tuple[Body, Events]:
        dry_run = "dryRun" in request.params
        content_type = request.headers.get("Content-Type", "").split(";")[0].strip()
        if request.action == kmock.action.CREATE:
            if not isinstance(request.data, Mapping):
                raise api_error(400, "BadRequest", "the request body must be a JSON object")
            return self._create(res, info, request.namespace, request.data, dry_run=dry_run)
        assert request.name is not None  # UPDATE/DELETE are only guessed for named URLs
        key = (res, request.namespace if info.namespaced else None, request.name)
        current = self._current(key)
        if request.action == kmock.action.DELETE:
            if current is None:
                raise not_found(res, request.name)
            return self._delete(res, key, current, dry_run=dry_run)
        if request.subresource not in {None, "status"}:
            raise api_error(404, "NotFound", f"subresource {request.subresource!r} is not served")
        if request.subresource == "status" and "status" not in info.subresources:
            raise not_found(res, request.name)
        if current is None:
            if content_type == "application/apply-patch+yaml":  # server-side apply creates
                return self._create(res, info, request.namespace, request.data, dry_run=dry_run)
            raise not_found(res, request.name)
        if request.method == "PUT":
            if not isinstance(request.data, Mapping):
                raise api_error(400, "BadRequest", "the request body must be a JSON object")
            desired = copy.deepcopy(dict(request.data))
            self._check_precondition(current, desired)
        else:
            desired = self._patched(current, request.data, content_type)
        return self._update(res, info, key, current, desired, request.subresource, dry_run)

    def _patched(self, current: Body, patch: Any, content_type: str) -> Body:
        if content_type == "application/json-patch+json":
            try:
                return dict(jsonpatch.apply_patch(current, patch, in_place=False))
            except (jsonpatch.JsonPatchException, jsonpatch.JsonPointerException) as e:
                # Kopf's optimistic concurrency: a failed `test` op must be 422, not 500.
                raise api_error(422, "Invalid", f"the JSON patch cannot be applied: {e}") from e
        if not isinstance(patch, Mapping):
            raise api_error(400, "BadRequest", "the patch body must be a JSON object")
        self._check_precondition(current, patch)
        if content_type == "application/merge-patch+json":
            return dict(merge_patch(current, patch))
        if content_type in {
            "application/strategic-merge-patch+json",
            "application/apply-patch+yaml",
        }:
            return dict(strategic_merge_patch(current, patch))
        raise api_error(415, "UnsupportedMediaType", f"the patch type {content_type!r} is unknown")

    @staticmethod
    def _check_precondition(current: Body, desired: Mapping[str, Any]) -> None:
        expected = (desired.get("metadata") or {}).get("resourceVersion")
        if expected and expected != current["metadata"]["resourceVersion"]:
            raise api_error(
                409,
                "Conflict",
                f'Operation cannot be fulfilled on "{current["metadata"]["name"]}": the object '
                "has been modified; please apply your changes to the latest version and try again",
            )

    def _create(
        self,
        res: kmock.resource,
        info: kmock.ResourceInfo,
        url_namespace: str | None,
        data: Mapping[str, Any],
        *,
        dry_run: bool = False,
    ) -> tuple[Body, Events]:
        obj: Body = copy.deepcopy(dict(data))
        meta: Body = obj.setdefault("metadata", {})
        if info.namespaced:
            namespace = url_namespace or meta.get("namespace") or None
            if url_namespace and meta.get("namespace") not in {None, url_namespace}:
                raise api_error(
                    400,
                    "BadRequest",
                    "the namespace of the object does not match the namespace on the request",
                )
            if namespace is None:
                raise api_error(404, "NotFound", "a namespace is required for namespaced kinds")
            meta["namespace"] = namespace
        else:
            namespace = None
            meta.pop("namespace", None)
        if not meta.get("name"):
            if not meta.get("generateName"):
                raise api_error(
                    422,
                    "Invalid",
                    "metadata.name: Required value: name or generateName is required",
                )
            alphabet = "bcdfghjklmnpqrstvwxz2456789"
            meta["name"] = meta["generateName"] + "".join(
                secrets.choice(alphabet) for _ in range(5)
            )
        key = (res, namespace, meta["name"])
        if self._current(key) is not None:
            raise api_error(
                409,
                "AlreadyExists",
                f'{res.plural} "{meta["name"]}" already exists',
                name=meta["name"],
                kind=res.plural,
            )
        obj.setdefault("apiVersion", f"{res.group}/{res.version}" if res.group else res.version)
        obj.setdefault("kind", info.kind)
        for server_field in (
            "uid",
            "resourceVersion",
            "creationTimestamp",
            "deletionTimestamp",
            "generation",
            "managedFields",
        ):
            meta.pop(server_field, None)
        meta["uid"] = str(uuid.uuid4())
        meta["creationTimestamp"] = now_rfc3339()
        if res.group:  # generation: apps, batch, CRDs and custom resources; not core v1
            meta["generation"] = 1
        if "status" in info.subresources:
            obj.pop("status", None)
        self._defaults_on_create(res, obj)
        if dry_run:
            meta["resourceVersion"] = str(self._rv)
            return obj, []
        return obj, [(res, self._commit_create(res, namespace, obj))]

    def _commit_create(self, res: kmock.resource, namespace: str | None, obj: Body) -> Body:
        """Store a new object (already validated) and return its ADDED event."""
        meta = obj.setdefault("metadata", {})
        meta.setdefault("uid", str(uuid.uuid4()))
        meta.setdefault("creationTimestamp", now_rfc3339())
        if res == NAMESPACES:
            self._defaults_on_create(res, obj)
        self._rv += 1
        meta["resourceVersion"] = str(self._rv)
        key = (res, namespace, meta["name"])
        if key in self._objects:
            self._objects[key].create(obj)  # continues the history after a deletion
        else:
            self._objects[key] = obj
        self._after_write(res, obj, deleted=False)
        return {"type": "ADDED", "object": copy.deepcopy(obj)}

    def _defaults_on_create(self, res: kmock.resource, obj: Body) -> None:
        meta = obj.setdefault("metadata", {})
        if res == NAMESPACES:
            meta.setdefault("labels", {})["kubernetes.io/metadata.name"] = meta["name"]
            obj.setdefault("apiVersion", "v1")
            obj.setdefault("kind", "Namespace")
            obj["spec"] = {"finalizers": ["kubernetes"]}
            obj["status"] = {"phase": "Active"}
        if res == CRDS:
            names = obj.get("spec", {}).get("names", {})
            obj["status"] = {
                "acceptedNames": names,
                "storedVersions": [
                    v["name"] for v in obj.get("spec", {}).get("versions", []) if v.get("storage")
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

    def _update(
        self,
        res: kmock.resource,
        info: kmock.ResourceInfo,
        key: tuple[Any, ...],
        current: Body,
        desired: Body,
        subresource: str | None,
        dry_run: bool,
    ) -> tuple[Body, Events]:
        if subresource == "status":  # the status endpoint changes the status only
            new = copy.deepcopy(current)
            if "status" in desired:
                new["status"] = desired["status"]
            else:
                new.pop("status", None)
        else:
            new = copy.deepcopy(desired)
            if "status" in info.subresources:  # ... and the main endpoint never changes it
                if "status" in current:
                    new["status"] = copy.deepcopy(current["status"])
                else:
                    new.pop("status", None)
        meta = new.setdefault("metadata", {})
        old_meta = current["metadata"]
        for immutable in (
            "name",
            "namespace",
            "uid",
            "creationTimestamp",
            "generation",
            "resourceVersion",
            "deletionTimestamp",
        ):
            if immutable in old_meta:
                meta[immutable] = old_meta[immutable]
            else:
                meta.pop(immutable, None)
        for top in ("apiVersion", "kind"):
            new[top] = current.get(top, new.get(top))
        if new == current:  # a no-op write: no new resourceVersion, no event (as etcd)
            return current, []
        if "generation" in meta and _spec_of(new) != _spec_of(current):
            meta["generation"] += 1
        if dry_run:
            return new, []
        if meta.get("deletionTimestamp") and not meta.get("finalizers"):
            return self._remove(res, key, new)
        self._rv += 1
        meta["resourceVersion"] = str(self._rv)
        self._objects[key].history.append(new)
        self._after_write(res, new, deleted=False)
        return new, [(res, {"type": "MODIFIED", "object": copy.deepcopy(new)})]

    def _delete(
        self, res: kmock.resource, key: tuple[Any, ...], current: Body, *, dry_run: bool
    ) -> tuple[Body, Events]:
        if dry_run:
            return current, []
        meta = current["metadata"]
        if meta.get("finalizers"):
            if meta.get("deletionTimestamp"):
                return current, []
            new = copy.deepcopy(current)
            new["metadata"]["deletionTimestamp"] = now_rfc3339()
            self._rv += 1
            new["metadata"]["resourceVersion"] = str(self._rv)
            self._objects[key].history.append(new)
            return new, [(res, {"type": "MODIFIED", "object": copy.deepcopy(new)})]
        body, events = self._remove(res, key, current)
        if res == NAMESPACES:  # no namespace controller: its content goes at once
            for other_key, obj in list(self._objects.items()):
                if other_key[1] == meta["name"] and not obj.deleted:
                    events += self._delete(other_key[0], other_key, obj.raw, dry_run=False)[1]
        return body, events

    def _remove(self, res: kmock.resource, key: tuple[Any, ...], last: Body) -> tuple[Body, Events]:
        gone = copy.deepcopy(last)
        self._rv += 1
        gone["metadata"]["resourceVersion"] = str(self._rv)
        self._objects[key].history.append(gone)
        self._objects[key].delete()
        self._after_write(res, gone, deleted=True)
        return gone, [(res, {"type": "DELETED", "object": copy.deepcopy(gone)})]

    def _after_write(self, res: kmock.resource, obj: Body, *, deleted: bool) -> None:
        """Side effects of CRDs: serve (or stop serving) the custom resource they define."""
        if res != CRDS:
            return
        spec = obj.get("spec", {})
        names = spec.get("names", {})
        for version in spec.get("versions", []):
            cr = kmock.resource(spec.get("group"), version["name"], names.get("plural"))
            if deleted or not version.get("served", True):
                self.resources.pop(cr, None)
                self._printer_columns.pop(cr, None)
                continue
            self.resources[cr] = kmock.ResourceInfo(
                namespaced=spec.get("scope", "Namespaced") == "Namespaced",
                kind=names.get("kind"),
                singular=names.get("singular") or str(names.get("kind", "")).lower(),
                verbs=set(ALL_VERBS),
                shortnames=set(names.get("shortNames", [])),
                categories=set(names.get("categories", [])),
                subresources=set(version.get("subresources", {})),
            )
            self._printer_columns[cr] = list(version.get("additionalPrinterColumns", []))

    async def _publish(self, res: kmock.resource, event: Body) -> None:
        rv = int(event["object"]["metadata"]["resourceVersion"])
        self._event_log.append((rv, res, event))
        await self._buses[res].put(event)

    # --- reading -----------------------------------------------------------------------

    def _info(self, res: kmock.resource) -> kmock.ResourceInfo:
        if res not in self.resources:
            raise not_found(res)
        return self.resources[res]

    def _current(self, key: tuple[Any, ...]) -> Body | None:
        if key in self._objects and not self._objects[key].deleted:
            raw: Body = self._objects[key].raw
            return raw
        return None

    def _select(self, res: kmock.resource, selection: Selection) -> list[Body]:
        return [
            obj.raw
            for (r, _, _), obj in self._objects.items()
            if r == res and not obj.deleted and selection.matches(obj.raw)
        ]

    async def _serve_server_version(self, request: kmock.Request) -> kmock.Payload:
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

    async def _serve_version(self, request: kmock.Request) -> kmock.Payload:
        # kmock says groupVersion "/v1" for the core group (kubectl then finds no kinds at
        # all) and gives subresources the short names and verbs of their parent.
        assert request.resource is not None
        group, version = request.resource.group, request.resource.version
        served = [
            res
            for res in self._get_resources()
            if res.group == group and res.version == version and res.plural
        ]
        if not served and group != "":
            raise not_found(request.resource)
        entries: list[Body] = []
        for res in sorted(served, key=lambda r: str(r.plural)):
            info = self.resources[res]
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

    async def _serve_list(self, request: kmock.Request) -> kmock.Payload:
        assert request.resource is not None
        info = self._info(request.resource)
        async with self._lock:
            items = copy.deepcopy(self._select(request.resource, Selection.of(request)))
            rv = str(self._rv)
        items.sort(key=lambda o: (o["metadata"].get("namespace") or "", o["metadata"]["name"]))
        if wants_table(request):
            return self._table(request.resource, info, items, rv)
        res = request.resource
        return {
            "apiVersion": f"{res.group}/{res.version}" if res.group else res.version,
            "kind": f"{info.kind}List",
            "metadata": {"resourceVersion": rv},
            "items": items,
        }

    async def _serve_fetch(self, request: kmock.Request) -> kmock.Payload:
        assert request.resource is not None and request.name is not None
        info = self._info(request.resource)
        if request.subresource not in {None, "status"}:
            raise api_error(404, "NotFound", f"subresource {request.subresource!r} is not served")
        key = (request.resource, request.namespace if info.namespaced else None, request.name)
        async with self._lock:
            obj = copy.deepcopy(self._current(key))
            rv = str(self._rv)
        if obj is None:
            raise not_found(request.resource, request.name)
        if wants_table(request):
            return self._table(request.resource, info, [obj], rv)
        return obj

    async def _serve_create(self, request: kmock.Request) -> kmock.Payload:
        return rendering.Response(status=201, payload=self._results[id(request)])

    async def _serve_update(self, request: kmock.Request) -> kmock.Payload:
        return self._results[id(request)]

    async def _serve_delete(self, request: kmock.Request) -> kmock.Payload:
        return self._results[id(request)]

    async def _serve_watch(self, request: kmock.Request) -> kmock.Payload:  # type: ignore[override]
        assert request.resource is not None
        self._info(request.resource)
        # kubectl and client-go refuse watch streams that are not application/json.
        return rendering.Response(
            headers={"Content-Type": "application/json"}, payload=self._watch(request)
        )

    async def _watch(self, request: kmock.Request) -> AsyncIterator[Body | bytes]:
        """Events since ``resourceVersion`` (or the current state as ADDED), then live ones."""
        yield b""  # send the headers now, even if nothing happens for a while
        assert request.resource is not None
        res, params = request.resource, request.params
        selection = Selection.of(request)
        since = params.get("resourceVersion") or "0"
        initial_events = params.get("sendInitialEvents") == "true"
        timeout = float(params["timeoutSeconds"]) if params.get("timeoutSeconds") else None
        deadline = None if timeout is None else time.monotonic() + timeout
        bus = self._buses[res]
        async with self._lock:
            marker = await bus.mark()
            backlog: list[Body]
            if since == "0" or initial_events:
                backlog = [
                    {"type": "ADDED", "object": copy.deepcopy(obj)}
                    for obj in self._select(res, selection)
                ]
            elif not since.isdigit() or (
                self._event_log
                and int(since) < self._event_log[0][0] - 1
                and len(self._event_log) == self._event_log.maxlen
            ):
                backlog = [
                    {
                        "type": "ERROR",
                        "object": {
                            "apiVersion": "v1",
                            "kind": "Status",
                            "status": "Failure",
                            "code": 410,
                            "reason": "Expired",
                            "message": f"too old resource version: {since}",
                        },
                    }
                ]
            else:
                backlog = [
                    copy.deepcopy(event)
                    for rv, r, event in self._event_log
                    if r == res and rv > int(since) and selection.matches(event["object"])
                ]
            if initial_events:
                backlog.append(
                    {
                        "type": "BOOKMARK",
                        "object": {
                            "apiVersion": f"{res.group}/{res.version}"
                            if res.group
                            else res.version,
                            "kind": self._info(res).kind,
                            "metadata": {
                                "resourceVersion": str(self._rv),
                                "annotations": {"k8s.io/initial-events-end": "true"},
                            },
                        },
                    }
                )
        stream: AsyncGenerator[Body, None] = bus.stream(since=marker)  # type: ignore[assignment]
        try:
            for event in backlog:
                yield event
            if backlog and backlog[0]["type"] == "ERROR":
                return
            while True:
                remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
                try:
                    event = await asyncio.wait_for(anext(stream), timeout=remaining)
                except TimeoutError:
                    return
                if event is STOP:
                    return
                if selection.matches(event["object"]):
                    yield event
        finally:
            await stream.aclose()
            with contextlib.suppress(ValueError):
                await bus.unmark(marker)

    def _table(
        self, res: kmock.resource, info: kmock.ResourceInfo, items: list[Body], rv: str
    ) -> Body:
        now = datetime.datetime.now(datetime.UTC)
        columns = [
            {
                "name": "Name",
                "type": "string",
                "format": "name",
                "priority": 0,
                "description": "Name must be unique within a namespace.",
            }
        ]
        custom = self._printer_columns.get(res)
        if custom is None and res == NAMESPACES:
            custom = [{"name": "Status", "type": "string", "jsonPath": ".status.phase"}]
        custom = list(custom or [])
        if not any(col["name"].lower() == "age" for col in custom):
            custom.append(
                {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"}
            )
        for col in custom:
            columns.append(
                {
                    "name": col["name"],
                    "type": "string",
                    "format": "",
                    "priority": col.get("priority", 0),
                    "description": col.get("description", ""),
                }
            )

        def cell(obj: Body, col: Body) -> Any:
            values = jsonpath(obj, col["jsonPath"])
            if col.get("type") == "date":
                return human_age(values[0] if values else None, now)
            return ", ".join(str(v) for v in values) if values else "<none>"

        return {
            "apiVersion": "meta.k8s.io/v1",
            "kind": "Table",
            "metadata": {"resourceVersion": rv},
            "columnDefinitions": columns,
            "rows": [
                {
                    "cells": [obj["metadata"]["name"], *(cell(obj, col) for col in custom)],
                    "object": {
                        "apiVersion": "meta.k8s.io/v1",
                        "kind": "PartialObjectMetadata",
                        "metadata": obj["metadata"],
                    },
                }
                for obj in items
            ],
        }

    # --- API for tests (call in the server's loop; KubeEmulator does that) ------------------

    def register_crd(self, crd: CustomResource | Mapping[str, Any]) -> Body:
        """Store a CRD (a ``CustomResource`` or a manifest) and serve its resource."""
        manifest = crd.manifest() if isinstance(crd, CustomResource) else copy.deepcopy(dict(crd))
        name = manifest["metadata"]["name"]
        current = self._current((CRDS, None, name))
        if current is not None:
            self._remove(CRDS, (CRDS, None, name), current)
        return self._create(CRDS, self._info(CRDS), None, manifest)[0]

    async def shutdown_streams(self) -> None:
        for bus in list(self._buses.values()):
            await bus.put(STOP)


def _spec_of(obj: Mapping[str, Any]) -> dict[str, Any]:
    """What `metadata.generation` counts: everything but metadata and status."""
    return {key: value for key, value in obj.items() if key not in {"metadata", "status"}}


# --- Running it: a thread with its own loop ------------------------------------------------


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
        return self.method in WRITE_METHODS

    def __str__(self) -> str:
        query = "&".join(f"{k}={v}" for k, v in self.query.items())
        return f"{self.method} {self.path}{'?' + query if query else ''}"


def _record(index: int, request: kmock.Request) -> RecordedRequest:
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


class KubeEmulator:
    """A :class:`ClusterEmulator` served on 127.0.0.1 from a background thread."""

    def __init__(self, *, crds: Sequence[CustomResource | Mapping[str, Any]] = ()) -> None:
        self._crds = list(crds)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, name="kube-emulator", daemon=True)
        self._ready = threading.Event()
        self._stopping: asyncio.Event | None = None
        self._handler: ClusterEmulator | None = None
        self._port: int | None = None
        self._failure: BaseException | None = None

    # lifecycle

    def start(self) -> KubeEmulator:
        self._thread.start()
        if not self._ready.wait(timeout=30) or self._failure is not None:
            raise RuntimeError("the Kubernetes emulator did not start") from self._failure
        return self

    def stop(self) -> None:
        if self._stopping is not None and self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._stopping.set)
        self._thread.join(timeout=30)

    def __enter__(self) -> KubeEmulator:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        try:
            self._loop.run_until_complete(self._serve())
        finally:
            self._loop.close()

    async def _serve(self) -> None:
        self._stopping = asyncio.Event()
        try:
            handler = ClusterEmulator()
            for crd in self._crds:
                handler.register_crd(crd)
            # Not kmock.Server: it swaps aiohttp's resolver process-wide (for its DNS
            # interception), which breaks when emulators in other threads stop out of order.
            async with handler:
                runner = aiohttp.web.ServerRunner(
                    aiohttp.web.Server(handler), handle_signals=False, shutdown_timeout=2.0
                )
                await runner.setup()
                try:
                    site = aiohttp.web.TCPSite(runner, "127.0.0.1", 0)
                    await site.start()
                    self._handler, self._port = handler, runner.addresses[0][1]
                    self._ready.set()
                    await self._stopping.wait()
                    await handler.shutdown_streams()
                finally:
                    await runner.cleanup()
        except BaseException as e:
            self._failure = e
            raise
        finally:
            self._ready.set()

    # addresses and credentials

    @property
    def host(self) -> str:
        return "127.0.0.1"

    @property
    def port(self) -> int:
        assert self._port is not None, "start() the emulator first"
        return self._port

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def connection_info(self) -> tuple[str, str]:
        """``(server, token)``: what ``kopf.ConnectionInfo`` needs."""
        return self.url, DUMMY_TOKEN

    def write_kubeconfig(self, path: Path | str, *, namespace: str = "default") -> Path:
        """Write a kubeconfig (mode 0600) whose only context points at this emulator."""
        path = Path(path)
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "kube-emulator", "cluster": {"server": self.url}}],
            "users": [{"name": "tester", "user": {"token": DUMMY_TOKEN}}],
            "contexts": [
                {
                    "name": "kube-emulator",
                    "context": {
                        "cluster": "kube-emulator",
                        "user": "tester",
                        "namespace": namespace,
                    },
                }
            ],
            "current-context": "kube-emulator",
        }
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as file:
            yaml.safe_dump(config, file, sort_keys=False)
        path.chmod(0o600)  # if it existed with wider permissions
        return path

    # crossing into the server's thread

    def call(self, fn: Callable[[ClusterEmulator], T], timeout: float = 10.0) -> T:
        """Run ``fn(handler)`` in the server's loop (where kmock's state lives)."""

        async def run() -> T:
            assert self._handler is not None
            return fn(self._handler)

        return self._submit(run(), timeout)

    def _submit(self, coro: Coroutine[Any, Any, T], timeout: float) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    # state

    def register_crd(self, crd: CustomResource | Mapping[str, Any]) -> None:
        async def run() -> None:
            assert self._handler is not None
            async with self._handler._lock:
                self._handler.register_crd(crd)

        self._submit(run(), 10.0)

    def create(self, resource: str, body: Mapping[str, Any], namespace: str | None = None) -> Body:
        """Create an object as a client would (server metadata, watch events); return it."""

        async def run() -> Body:
            handler = self._handler
            assert handler is not None
            res = kmock.resource(resource)
            async with handler._lock:
                obj, events = handler._create(res, handler._info(res), namespace, body)
                for event_res, event in events:
                    await handler._publish(event_res, event)
            return copy.deepcopy(obj)

        return self._submit(run(), 10.0)

    def get(self, resource: str, name: str, namespace: str | None = None) -> Body | None:
        """The stored object (a copy), or None if absent or deleted."""
        res = kmock.resource(resource)
        return self.call(lambda h: copy.deepcopy(h._current((res, namespace, name))))

    def list_objects(self, resource: str, namespace: str | None = None) -> list[Body]:
        res = kmock.resource(resource)
        return self.call(lambda h: copy.deepcopy(h._select(res, Selection(namespace=namespace))))

    def history(self, resource: str, name: str, namespace: str | None = None) -> list[Body | None]:
        """Every stored version of an object, oldest first; None marks a deletion."""
        res = kmock.resource(resource)

        def versions(handler: ClusterEmulator) -> list[Body | None]:
            if (res, namespace, name) not in handler.objects:
                return []
            history = handler.objects[res, namespace, name].history
            return [None if v is None else copy.deepcopy(v.raw) for v in history]

        return self.call(versions)

    # requests

    def mark(self) -> int:
        """A position in the request log, for ``requests(since=...)``."""
        return self.call(lambda h: len(h._requests))

    def requests(self, since: int = 0) -> list[RecordedRequest]:
        return self.call(lambda h: [_record(i, r) for i, r in enumerate(h._requests) if i >= since])

    def writes(self, since: int = 0) -> list[RecordedRequest]:
        """Requests that could change state (POST, PUT, PATCH, DELETE)."""
        return [request for request in self.requests(since) if request.is_write]

    def errors(self) -> list[BaseException]:
        """Exceptions inside the emulator (its bugs; API errors such as 404 are not here)."""
        return self.call(lambda h: list(h._internal_errors))

    # polling

    def wait(
        self, predicate: Callable[[], T | None], timeout: float = 5.0, interval: float = 0.02
    ) -> T:
        """Poll ``predicate`` until it returns something truthy; raise TimeoutError after."""
        deadline = time.monotonic() + timeout
        while True:
            result = predicate()
            if result:
                return result
            if time.monotonic() > deadline:
                raise TimeoutError(f"not true within {timeout}s: {predicate}")
            time.sleep(interval)

    async def until(
        self, predicate: Callable[[], T | None], timeout: float = 5.0, interval: float = 0.02
    ) -> T:
        """The async twin of :meth:`wait` (the predicate runs in a worker thread)."""
        deadline = time.monotonic() + timeout
        while True:
            result = await asyncio.to_thread(predicate)
            if result:
                return result
            if time.monotonic() > deadline:
                raise TimeoutError(f"not true within {timeout}s: {predicate}")
            await asyncio.sleep(interval)


# --- pytest fixtures -----------------------------------------------------------------------


@pytest.fixture(scope="session")
def kube_emulator() -> Iterator[KubeEmulator]:
    """One emulator for the session, with the Workspace CRD served. Use a namespace per test."""
    with KubeEmulator(crds=[WORKSPACE_CRD]) as emulator:
        yield emulator


@pytest.fixture
def fresh_kube_emulator() -> Iterator[KubeEmulator]:
    """A private emulator for this test only (empty but for core namespaces and Workspaces)."""
    with KubeEmulator(crds=[WORKSPACE_CRD]) as emulator:
        yield emulator


@pytest.fixture
def kubeconfig(kube_emulator: KubeEmulator, tmp_path: Path) -> Path:
    """A 0600 kubeconfig file for ``kube_emulator`` (context namespace: default)."""
    return kube_emulator.write_kubeconfig(tmp_path / "kubeconfig.yml")
