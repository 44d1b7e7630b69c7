"""The request handler: kmock's ``KubernetesEmulator`` with the API semantics clients rely on.

:class:`ClusterEmulator` is the top of three layers (:mod:`.store` keeps objects,
:mod:`.watch` streams their changes); this one turns HTTP requests into store changes and
renders stored state as lists, objects, Tables and discovery documents.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping

import aiohttp.web
import attrs
import kmock
from kmock._internal import rendering  # StreamingError: the only private name we need

from controller.sandbox.kube import discovery
from controller.sandbox.kube.dispatch import react, trim
from controller.sandbox.kube.patches import apply_patch, check_precondition
from controller.sandbox.kube.resources import REQUEST_LOG_SIZE, Body, Events
from controller.sandbox.kube.selectors import Selection
from controller.sandbox.kube.tables import render_table, wants_table
from controller.sandbox.kube.watch import WatchEmulator
from controller.sandbox.kube.wire import api_error, not_found, parse_request


@attrs.define(kw_only=True)
class ClusterEmulator(WatchEmulator):
    """kmock's emulator with the API semantics that real clients rely on.

    State changes happen in :meth:`_handle` (as in kmock) before the reactions run, so kmock's
    DSL (``handler['get /version'] << 500``) still overrides any response; the default
    (fallback) reactions then render the stored state. The request log keeps the last
    ``request_log`` requests (``None``: all); a request costs the same however many came before.
    """

    request_log: int | None = REQUEST_LOG_SIZE
    _dropped_requests: int = attrs.field(default=0, init=False)
    _results: dict[int, Body] = attrs.field(factory=dict, init=False)
    _internal_errors: list[BaseException] = attrs.field(factory=list, init=False)

    # Replaces RawHandler.__call__ to parse URLs with our parser (kmock's crashes with HTTP 500
    # on /api/v1/namespaces), to keep API errors (404, 409) out of `errors`, and to bound the log.
    async def __call__(self, raw_request: aiohttp.web.BaseRequest) -> aiohttp.web.StreamResponse:
        raw_response: aiohttp.web.StreamResponse | None = None
        try:
            self._dropped_requests += trim(self._requests, self.request_log)
            position = self._dropped_requests + len(self._requests)
            request = await parse_request(raw_request, id=position)
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
            # Not KubernetesEmulator._handle: it would apply kmock's own (naive) mutations; and
            # not RawHandler._handle, which replays the whole request log for every request.
            return await react(self, request, limit=self.request_log)
        finally:
            self._results.pop(id(request), None)

    def _mutate(
        self, request: kmock.Request, res: kmock.resource, info: kmock.ResourceInfo
    ) -> tuple[Body, Events]:
        """Apply a write request to the store (under the lock); the body and the events."""
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
            check_precondition(current, desired)
        else:
            desired = apply_patch(current, request.data, content_type)
        return self._update(res, info, key, current, desired, request.subresource, dry_run)

    # --- reading: the fallback reactions ---------------------------------------------------

    async def _serve_server_version(self, request: kmock.Request) -> kmock.Payload:
        return discovery.server_version()

    async def _serve_version(self, request: kmock.Request) -> kmock.Payload:
        assert request.resource is not None
        group, version = request.resource.group, request.resource.version
        served = [
            res
            for res in self._get_resources()
            if res.group == group and res.version == version and res.plural
        ]
        if not served and group != "":
            raise not_found(request.resource)
        return discovery.api_resource_list(
            group, version, [(res, self.resources[res]) for res in served]
        )

    async def _serve_list(self, request: kmock.Request) -> kmock.Payload:
        assert request.resource is not None
        info = self._info(request.resource)
        async with self._lock:
            items = copy.deepcopy(self._select(request.resource, Selection.of(request)))
            rv = str(self._rv)
        items.sort(key=lambda o: (o["metadata"].get("namespace") or "", o["metadata"]["name"]))
        res = request.resource
        if wants_table(request):
            return render_table(res, items, rv, self._printer_columns.get(res))
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
            res = request.resource
            return render_table(res, [obj], rv, self._printer_columns.get(res))
        return obj

    # --- writing: the response bodies that _handle computed --------------------------------

    async def _serve_create(self, request: kmock.Request) -> kmock.Payload:
        return rendering.Response(status=201, payload=self._results[id(request)])

    async def _serve_update(self, request: kmock.Request) -> kmock.Payload:
        return self._results[id(request)]

    async def _serve_delete(self, request: kmock.Request) -> kmock.Payload:
        return self._results[id(request)]
