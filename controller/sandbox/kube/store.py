"""The object store under the API: create, update, delete with server-managed metadata.

:class:`StoreEmulator` is the bottom layer of :class:`~controller.sandbox.kube.cluster.
ClusterEmulator`: the state (objects, resourceVersion counter, event log) and the changes to
it, each returning the response body and the watch events it causes. Callers hold ``_lock``.

Every cost here is per request, never per stored object or per past event: objects are indexed
by resource and namespace (a fetch, a list of one namespace or a watch of one resource never
visits the others), each resource has its own bounded event log (a resumed watch reads only the
events it sends), and an object keeps its last ``OBJECT_HISTORY_SIZE`` versions. Write objects
through the API or :meth:`KubeEmulator.create`, not kmock's ``handler.objects``, which bypasses
the index.
"""

from __future__ import annotations

import copy
import uuid
import warnings
from collections import deque
from collections.abc import Mapping
from typing import Any

import attrs
import kmock

from controller.sandbox.kube import discovery
from controller.sandbox.kube.metadata import (
    IMMUTABLE_FIELDS,
    SERVER_FIELDS,
    generate_name,
    namespace_defaults,
    now_rfc3339,
    spec_of,
)
from controller.sandbox.kube.resources import (
    CORE_NAMESPACES,
    CRDS,
    EVENT_LOG_SIZE,
    NAMESPACES,
    OBJECT_HISTORY_SIZE,
    Body,
    CustomResource,
    Events,
)
from controller.sandbox.kube.selectors import Selection
from controller.sandbox.kube.wire import api_error, not_found

Key = tuple[Any, ...]  # (resource, namespace or None, name), as kmock keys its objects


@attrs.define(kw_only=True)
class StoreEmulator(kmock.KubernetesEmulator):
    """kmock's emulator with objects stored as kube-apiserver stores them."""

    _rv: int = attrs.field(default=1000, init=False)
    _event_logs: dict[kmock.resource, deque[tuple[int, Body]]] = attrs.field(
        factory=dict, init=False
    )
    # resource -> namespace (None: cluster-scoped) -> the keys of its live objects, in order
    _index: dict[kmock.resource, dict[str | None, dict[Key, None]]] = attrs.field(
        factory=dict, init=False
    )
    _printer_columns: dict[kmock.resource, list[Body]] = attrs.field(factory=dict, init=False)

    def __attrs_post_init__(self) -> None:
        super().__attrs_post_init__()
        with warnings.catch_warnings():  # kmock uses the deprecated importlib.resources API
            warnings.simplefilter("ignore", DeprecationWarning)
            self.resources.load_bundled()  # discovery of the built-in kinds (a recent K3s)
        for name in CORE_NAMESPACES:
            self._commit_create(NAMESPACES, None, {"metadata": {"name": name}})
        self._event_logs.clear()

    # --- reading ---------------------------------------------------------------------------

    def _info(self, res: kmock.resource) -> kmock.ResourceInfo:
        if res not in self.resources:
            raise not_found(res)
        return self.resources[res]

    def _current(self, key: Key) -> Body | None:
        if key in self._objects and not self._objects[key].deleted:
            raw: Body = self._objects[key].raw
            return raw
        return None

    def _get_resources(self) -> list[kmock.resource]:
        # kmock adds the resource of every stored object, a scan of all objects per discovery
        # request; here every stored object is of a served (declared) resource already.
        return kmock.KubernetesScaffold._get_resources(self)

    def _select(self, res: kmock.resource, selection: Selection) -> list[Body]:
        spaces = self._index.get(res, {})
        if selection.namespace is not None:
            keys: list[Key] = list(spaces.get(selection.namespace, {}))
        else:
            keys = [key for space in spaces.values() for key in space]
        if selection.name is not None:
            keys = [key for key in keys if key[2] == selection.name]
        found = (self._current(key) for key in keys)
        return [obj for obj in found if obj is not None and selection.matches(obj)]

    # --- writing ---------------------------------------------------------------------------

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
            meta["name"] = generate_name(meta["generateName"])
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
        for server_field in SERVER_FIELDS:
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
        self._index.setdefault(res, {}).setdefault(namespace, {})[key] = None
        self._after_write(res, obj, deleted=False)
        return {"type": "ADDED", "object": copy.deepcopy(obj)}

    def _defaults_on_create(self, res: kmock.resource, obj: Body) -> None:
        obj.setdefault("metadata", {})
        if res == NAMESPACES:
            namespace_defaults(obj)
        if res == CRDS:
            obj["status"] = discovery.crd_status(obj)

    def _update(
        self,
        res: kmock.resource,
        info: kmock.ResourceInfo,
        key: Key,
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
        for immutable in IMMUTABLE_FIELDS:
            if immutable in old_meta:
                meta[immutable] = old_meta[immutable]
            else:
                meta.pop(immutable, None)
        for top in ("apiVersion", "kind"):
            new[top] = current.get(top, new.get(top))
        if new == current:  # a no-op write: no new resourceVersion, no event (as etcd)
            return current, []
        if "generation" in meta and spec_of(new) != spec_of(current):
            meta["generation"] += 1
        if dry_run:
            return new, []
        if meta.get("deletionTimestamp") and not meta.get("finalizers"):
            return self._remove(res, key, new)
        self._rv += 1
        meta["resourceVersion"] = str(self._rv)
        self._append_version(key, new)
        self._after_write(res, new, deleted=False)
        return new, [(res, {"type": "MODIFIED", "object": copy.deepcopy(new)})]

    def _delete(
        self, res: kmock.resource, key: Key, current: Body, *, dry_run: bool
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
            self._append_version(key, new)
            return new, [(res, {"type": "MODIFIED", "object": copy.deepcopy(new)})]
        body, events = self._remove(res, key, current)
        if res == NAMESPACES:  # no namespace controller: its content goes at once
            for spaces in list(self._index.values()):
                for other_key in list(spaces.get(meta["name"], {})):
                    obj = self._current(other_key)
                    if obj is not None:
                        events += self._delete(other_key[0], other_key, obj, dry_run=False)[1]
        return body, events

    def _remove(self, res: kmock.resource, key: Key, last: Body) -> tuple[Body, Events]:
        gone = copy.deepcopy(last)
        self._rv += 1
        gone["metadata"]["resourceVersion"] = str(self._rv)
        self._append_version(key, gone)
        self._objects[key].delete()
        self._index.get(res, {}).get(key[1], {}).pop(key, None)
        self._after_write(res, gone, deleted=True)
        return gone, [(res, {"type": "DELETED", "object": copy.deepcopy(gone)})]

    def _append_version(self, key: Key, version: Body) -> None:
        """Record a new version of an object, keeping the last ``OBJECT_HISTORY_SIZE``."""
        history = self._objects[key].history
        history.append(version)
        if len(history) > 2 * OBJECT_HISTORY_SIZE:  # in chunks: constant cost per write
            del history[: len(history) - OBJECT_HISTORY_SIZE]

    def _after_write(self, res: kmock.resource, obj: Body, *, deleted: bool) -> None:
        """Side effects of CRDs: serve (or stop serving) the custom resource they define."""
        if res != CRDS:
            return
        for cr, info, columns in discovery.served_versions(obj, deleted=deleted):
            if info is None:
                self.resources.pop(cr, None)
                self._printer_columns.pop(cr, None)
            else:
                self.resources[cr] = info
                self._printer_columns[cr] = columns

    async def _publish(self, res: kmock.resource, event: Body) -> None:
        rv = int(event["object"]["metadata"]["resourceVersion"])
        if res not in self._event_logs:
            self._event_logs[res] = deque(maxlen=EVENT_LOG_SIZE)
        self._event_logs[res].append((rv, event))
        await self._buses[res].put(event)

    # --- API for tests and the demo (call in the server's loop, holding the lock) -------------

    def register_crd(self, crd: CustomResource | Mapping[str, Any]) -> Body:
        """Store a CRD (a ``CustomResource`` or a manifest) and serve its resource."""
        manifest = crd.manifest() if isinstance(crd, CustomResource) else copy.deepcopy(dict(crd))
        name = manifest["metadata"]["name"]
        current = self._current((CRDS, None, name))
        if current is not None:
            self._remove(CRDS, (CRDS, None, name), current)
        return self._create(CRDS, self._info(CRDS), None, manifest)[0]
