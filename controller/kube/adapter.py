"""The Kubernetes adapter: :class:`Kube`, async methods over the synchronous ``kubernetes`` client.

Every call goes through a thread (:mod:`controller.kube.calls`); callers send plain manifests
(dicts) and get back the frozen values of :mod:`controller.kube.values`. A missing object is
``None`` (or ``False`` for a delete), never an exception; every failure is a
:class:`~controller.errors.KubeError` (see :mod:`controller.kube.calls`).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Mapping
from pathlib import Path
from typing import Any, Literal

import kubernetes

from controller.api.alert import ALERT_PLURAL
from controller.api.spec import GROUP, PLURAL, VERSION
from controller.errors import KubeError
from controller.kube.calls import call, get, selector, translated
from controller.kube.config import Cluster, Credentials, load_cluster
from controller.kube.lease_calls import LeaseCalls
from controller.kube.values import (
    AlertObject,
    Job,
    Pod,
    Secret,
    Workspace,
    alert_from_json,
    job_from_json,
    list_items,
    pod_from_json,
    secret_from_json,
    workspace_from_json,
)

__all__ = ["MERGE_PATCH", "REQUEST_TIMEOUT", "Kube", "Labels", "Manifest", "Propagation"]

Manifest = Mapping[str, Any]
"""A Kubernetes object as JSON: what the pure builders make and the adapter sends."""

Labels = Mapping[str, str] | str
"""Labels every object must carry (``{"a": "1"}``), or a label selector string (``"a=1,b"``)."""

REQUEST_TIMEOUT = 30.0
MERGE_PATCH = "application/merge-patch+json"
Propagation = Literal["Background", "Foreground", "Orphan"]


class Kube(LeaseCalls):
    """A connection to one API server; every method is async and returns plain values (the
    Lease methods come from :class:`~controller.kube.lease_calls.LeaseCalls`)."""

    def __init__(self, cluster: Cluster, *, request_timeout: float = REQUEST_TIMEOUT) -> None:
        self.cluster = cluster
        self._api: Any = kubernetes.client.ApiClient(cluster.configuration)
        self._batch: Any = kubernetes.client.BatchV1Api(self._api)
        self._core: Any = kubernetes.client.CoreV1Api(self._api)
        self._custom: Any = kubernetes.client.CustomObjectsApi(self._api)
        self._coordination: Any = kubernetes.client.CoordinationV1Api(self._api)
        self._timeout = request_timeout

    @classmethod
    def connect(cls, kubeconfig: Path | str | None = None, *, context: str | None = None) -> Kube:
        """The cluster of ``kubeconfig``, else ``$KUBECONFIG``, ``~/.kube/config``, in-cluster
        (:mod:`controller.kube.config`); :class:`~controller.errors.KubeLoginError` if none."""
        return cls(load_cluster(kubeconfig, context=context))

    @classmethod
    def from_kubeconfig(cls, path: Path | str, *, context: str | None = None) -> Kube:
        """The cluster of one kubeconfig file (its current context by default)."""
        return cls.connect(path, context=context)

    @property
    def namespace(self) -> str:
        """The default namespace: the kubeconfig context's, or the pod's own."""
        return self.cluster.namespace

    def credentials(self) -> Credentials:
        """What Kopf logs in with: this client's own configuration, refreshed when due."""
        return self.cluster.credentials()

    def close(self) -> None:
        """Release the connection pool."""
        self._api.close()

    # workspaces

    async def get_workspace(self, namespace: str, name: str) -> Workspace | None:
        found = await self._get(
            f"Workspace {namespace}/{name}",
            self._custom.get_namespaced_custom_object,
            GROUP,
            VERSION,
            namespace,
            PLURAL,
            name,
        )
        return None if found is None else workspace_from_json(found)

    async def list_workspaces(
        self, namespace: str | None, label_selector: Labels | None = None
    ) -> list[Workspace]:
        """The Workspaces of ``namespace`` (None: of every namespace), sorted by namespace/name."""
        labels = selector(label_selector)
        extra = {"label_selector": labels} if labels else {}
        if namespace is None:
            found = await self._call(
                "Workspaces in all namespaces",
                self._custom.list_cluster_custom_object,
                GROUP,
                VERSION,
                PLURAL,
                **extra,
            )
        else:
            found = await self._call(
                f"Workspaces in {namespace}",
                self._custom.list_namespaced_custom_object,
                GROUP,
                VERSION,
                namespace,
                PLURAL,
                **extra,
            )
        items = [workspace_from_json(item) for item in list_items(found)]
        return sorted(items, key=lambda w: (w.namespace, w.name))

    async def patch_workspace(self, namespace: str, name: str, patch: Manifest) -> Workspace | None:
        """Merge-patch (RFC 7386) a Workspace's ``metadata``/``spec``; None when it is gone."""
        found = await self._get(
            f"Workspace {namespace}/{name}",
            self._custom.patch_namespaced_custom_object,
            GROUP,
            VERSION,
            namespace,
            PLURAL,
            name,
            dict(patch),
            _content_type=MERGE_PATCH,
        )
        return None if found is None else workspace_from_json(found)

    async def patch_workspace_status(
        self, namespace: str, name: str, status: Manifest
    ) -> Workspace | None:
        """Merge-patch the ``status`` subresource with ``{"status": status}`` (a key set to None
        is removed); the stored Workspace, None when it is gone."""
        found = await self._get(
            f"the status of Workspace {namespace}/{name}",
            self._custom.patch_namespaced_custom_object_status,
            GROUP,
            VERSION,
            namespace,
            PLURAL,
            name,
            {"status": dict(status)},
            _content_type=MERGE_PATCH,
        )
        return None if found is None else workspace_from_json(found)

    async def watch_workspace(
        self, namespace: str, name: str, *, interval: float = 1.0
    ) -> AsyncIterator[Workspace | None]:
        """The Workspace now, then each stored change (a new resourceVersion), polled every
        ``interval`` seconds; ends after yielding None (it is gone)."""
        seen: str | None = None
        while True:
            current = await self.get_workspace(namespace, name)
            if current is None:
                yield None
                return
            if current.resource_version != seen:
                seen = current.resource_version
                yield current
            await asyncio.sleep(interval)

    async def wait_for_workspace(
        self,
        namespace: str,
        name: str,
        predicate: Callable[[Workspace | None], bool],
        *,
        timeout: float,
        interval: float = 1.0,
    ) -> Workspace | None:
        """The first state of the Workspace that ``predicate`` accepts (None: gone);
        :class:`TimeoutError` after ``timeout`` seconds."""
        async with asyncio.timeout(timeout):
            async for current in self.watch_workspace(namespace, name, interval=interval):
                if predicate(current):
                    return current
        raise TimeoutError(f"Workspace {namespace}/{name} is gone")  # pragma: no cover

    # alerts

    async def list_alerts(self, namespace: str) -> list[AlertObject]:
        """The Alerts (cratekeeper.dev) of ``namespace``, sorted by name; none when the Alert
        CRD is not installed (a 404)."""
        found = await self._get(
            f"Alerts in {namespace}",
            self._custom.list_namespaced_custom_object,
            GROUP,
            VERSION,
            namespace,
            ALERT_PLURAL,
        )
        items = list_items(found) if found is not None else []
        return sorted((alert_from_json(i) for i in items), key=lambda a: a.name)

    # jobs

    async def create_job(self, namespace: str, manifest: Manifest) -> Job:
        """Create a Job; :class:`KubeAlreadyExistsError` when one of that name exists."""
        what = f"Job {namespace}/{manifest['metadata']['name']}"
        return job_from_json(
            await self._call(what, self._batch.create_namespaced_job, namespace, manifest)
        )

    async def get_job(self, namespace: str, name: str) -> Job | None:
        found = await self._get(
            f"Job {namespace}/{name}", self._batch.read_namespaced_job, name, namespace
        )
        return None if found is None else job_from_json(found)

    async def list_jobs(self, namespace: str, labels: Labels) -> list[Job]:
        """The Jobs carrying all of ``labels``."""
        found = await self._call(
            f"Jobs in {namespace}",
            self._batch.list_namespaced_job,
            namespace,
            label_selector=selector(labels),
        )
        return [job_from_json(item) for item in list_items(found)]

    async def patch_job(self, namespace: str, name: str, patch: Manifest) -> Job:
        """Patch a Job (a strategic merge patch, e.g. ``{"spec": {"suspend": False}}``)."""
        what = f"Job {namespace}/{name}"
        return job_from_json(
            await self._call(what, self._batch.patch_namespaced_job, name, namespace, patch)
        )

    async def delete_job(
        self, namespace: str, name: str, *, propagation: Propagation = "Background"
    ) -> bool:
        """Delete a Job (its pods follow by ``propagation``); False when it was not there."""
        found = await self._get(
            f"Job {namespace}/{name}",
            self._batch.delete_namespaced_job,
            name,
            namespace,
            propagation_policy=propagation,
        )
        return found is not None

    async def delete_jobs(self, namespace: str, labels: Labels) -> list[str]:
        """Delete every Job carrying ``labels`` (pods follow); the names deleted."""
        deleted = []
        for job in await self.list_jobs(namespace, labels):
            if await self.delete_job(namespace, job.name):
                deleted.append(job.name)
        return deleted

    # secrets

    async def create_secret(self, namespace: str, manifest: Manifest) -> Secret:
        """Create a Secret; :class:`KubeAlreadyExistsError` when one of that name exists."""
        what = f"Secret {namespace}/{manifest['metadata']['name']}"
        return secret_from_json(
            await self._call(what, self._core.create_namespaced_secret, namespace, manifest)
        )

    async def replace_secret(self, namespace: str, manifest: Manifest) -> Secret:
        """Replace a Secret's content (labels and data) with ``manifest``; a KubeError with
        status 404 when there is no such Secret."""
        name = manifest["metadata"]["name"]
        return secret_from_json(
            await self._call(
                f"Secret {namespace}/{name}",
                self._core.replace_namespaced_secret,
                name,
                namespace,
                manifest,
            )
        )

    async def get_secret(self, namespace: str, name: str) -> Secret | None:
        """The Secret, its data decoded (:class:`~controller.errors.SecretInvalidError` when a
        value is not base64); None when there is no such Secret."""
        found = await self._get(
            f"Secret {namespace}/{name}", self._core.read_namespaced_secret, name, namespace
        )
        return None if found is None else secret_from_json(found)

    async def list_secret_names(self, namespace: str, labels: Labels) -> list[str]:
        """The names of the Secrets carrying ``labels`` (their data is not decoded)."""
        found = await self._call(
            f"Secrets in {namespace}",
            self._core.list_namespaced_secret,
            namespace,
            label_selector=selector(labels),
        )
        return [str((item.get("metadata") or {}).get("name", "")) for item in list_items(found)]

    async def delete_secret(self, namespace: str, name: str) -> bool:
        found = await self._get(
            f"Secret {namespace}/{name}", self._core.delete_namespaced_secret, name, namespace
        )
        return found is not None

    async def delete_secrets(self, namespace: str, labels: Labels) -> list[str]:
        """Delete every Secret carrying ``labels``; the names deleted."""
        deleted = []
        for name in await self.list_secret_names(namespace, labels):
            if await self.delete_secret(namespace, name):
                deleted.append(name)
        return deleted

    # pods

    async def list_pods(self, namespace: str, labels: Labels) -> list[Pod]:
        """The pods carrying all of ``labels``."""
        found = await self._call(
            f"pods in {namespace}",
            self._core.list_namespaced_pod,
            namespace,
            label_selector=selector(labels),
        )
        return [pod_from_json(item) for item in list_items(found)]

    async def read_pod_log(
        self, namespace: str, pod: str, *, container: str, tail_lines: int | None = None
    ) -> str | None:
        """A container's log (its last ``tail_lines`` lines); None when it cannot be read."""

        def read() -> str:
            response = self._core.read_namespaced_pod_log(
                pod,
                namespace,
                container=container,
                tail_lines=tail_lines,
                _preload_content=False,
                _request_timeout=self._timeout,
            )
            return bytes(response.data).decode("utf-8", errors="replace")

        try:
            return await asyncio.to_thread(translated, f"log of pod {namespace}/{pod}", read)
        except KubeError as exc:
            if exc.status in (400, 404):  # pod gone, or the container never started
                return None
            raise

    # plumbing

    async def _call(
        self, what: str, method: Callable[..., Any], *args: Any, **kwargs: Any
    ) -> dict[str, Any]:
        return await call(what, self._timeout, method, *args, **kwargs)

    async def _get(
        self, what: str, method: Callable[..., Any], *args: Any, **kwargs: Any
    ) -> dict[str, Any] | None:
        return await get(what, self._timeout, method, *args, **kwargs)
