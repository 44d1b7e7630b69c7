"""The Kubernetes adapter: :class:`Kube`, async methods over the synchronous ``kubernetes`` client.

Every call goes through :func:`asyncio.to_thread`; callers send plain manifests (dicts) and get
back the frozen values of :mod:`controller.kube.values`. Responses are read as raw JSON
(``_preload_content=False``), never deserialised into the client's models.

Every failure of a call becomes a :class:`~controller.errors.KubeError` (or
:class:`~controller.errors.KubeAlreadyExistsError`) naming what was asked for: an API error
(with the server's ``reason`` and ``message``), arguments the client refuses, an unreachable
server, a credential plugin that fails, an answer that is not JSON. Nothing of the client's
own exceptions escapes. A missing object is ``None`` (or ``False`` for a delete), never an
exception.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Literal

import kubernetes
import pydantic
import urllib3

from controller.errors import KubeAlreadyExistsError, KubeError
from controller.kube.values import (
    Job,
    Pod,
    Secret,
    job_from_json,
    list_items,
    pod_from_json,
    secret_from_json,
)

__all__ = ["REQUEST_TIMEOUT", "Kube", "Manifest", "Propagation"]

Manifest = Mapping[str, Any]
"""A Kubernetes object as JSON: what the pure builders make and the adapter sends."""

REQUEST_TIMEOUT = 30.0
Propagation = Literal["Background", "Foreground", "Orphan"]


class Kube:
    """A connection to one API server; every method is async and returns plain values."""

    def __init__(self, api_client: object, *, request_timeout: float = REQUEST_TIMEOUT) -> None:
        self._api: Any = api_client
        self._batch: Any = kubernetes.client.BatchV1Api(api_client)
        self._core: Any = kubernetes.client.CoreV1Api(api_client)
        self._timeout = request_timeout

    @classmethod
    def from_kubeconfig(cls, path: Path | str, *, context: str | None = None) -> Kube:
        """A client for the cluster of a kubeconfig file (its current context by default)."""
        try:
            new_client: Any = kubernetes.config.new_client_from_config  # untyped upstream
            api = new_client(config_file=str(path), context=context, persist_config=False)
        except (kubernetes.config.ConfigException, OSError, ValueError) as exc:
            raise KubeError(f"cannot use kubeconfig {path}: {exc}") from None
        return cls(api)

    @classmethod
    def in_cluster(cls) -> Kube:
        """A client with the pod's service account (the operator running in its cluster)."""
        configuration = kubernetes.client.Configuration()
        load: Any = kubernetes.config.load_incluster_config  # untyped upstream
        try:
            load(client_configuration=configuration)
        except kubernetes.config.ConfigException as exc:
            raise KubeError(
                f"not running in a cluster ({exc}); pass a kubeconfig (--kubeconfig)"
            ) from None
        return cls(kubernetes.client.ApiClient(configuration))

    @classmethod
    def connect(cls, kubeconfig: Path | None = None) -> Kube:
        """From ``kubeconfig`` when given, else the in-cluster service account."""
        return cls.from_kubeconfig(kubeconfig) if kubeconfig else cls.in_cluster()

    def close(self) -> None:
        """Release the connection pool."""
        self._api.close()

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

    async def list_jobs(self, namespace: str, labels: Mapping[str, str]) -> list[Job]:
        """The Jobs carrying all of ``labels``."""
        found = await self._call(
            f"Jobs in {namespace}",
            self._batch.list_namespaced_job,
            namespace,
            label_selector=_selector(labels),
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

    # secrets

    async def create_secret(self, namespace: str, manifest: Manifest) -> Secret:
        """Create a Secret; :class:`KubeAlreadyExistsError` when one of that name exists."""
        what = f"Secret {namespace}/{manifest['metadata']['name']}"
        return secret_from_json(
            await self._call(what, self._core.create_namespaced_secret, namespace, manifest)
        )

    async def get_secret(self, namespace: str, name: str) -> Secret | None:
        found = await self._get(
            f"Secret {namespace}/{name}", self._core.read_namespaced_secret, name, namespace
        )
        return None if found is None else secret_from_json(found)

    async def read_secret_data(self, namespace: str, name: str) -> dict[str, bytes] | None:
        """A Secret's data, decoded; None when there is no such Secret."""
        secret = await self.get_secret(namespace, name)
        return None if secret is None else dict(secret.data)

    async def delete_secret(self, namespace: str, name: str) -> bool:
        found = await self._get(
            f"Secret {namespace}/{name}", self._core.delete_namespaced_secret, name, namespace
        )
        return found is not None

    # pods

    async def list_pods(self, namespace: str, labels: Mapping[str, str]) -> list[Pod]:
        """The pods carrying all of ``labels``."""
        found = await self._call(
            f"pods in {namespace}",
            self._core.list_namespaced_pod,
            namespace,
            label_selector=_selector(labels),
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
            return await asyncio.to_thread(_translated, f"log of pod {namespace}/{pod}", read)
        except KubeError as exc:
            if exc.status in (400, 404):  # pod gone, or the container never started
                return None
            raise

    # plumbing

    async def _call(
        self, what: str, method: Callable[..., Any], *args: Any, **kwargs: Any
    ) -> dict[str, Any]:
        def call() -> dict[str, Any]:
            response = method(
                *args, _preload_content=False, _request_timeout=self._timeout, **kwargs
            )
            try:
                decoded = json.loads(response.data or b"{}")
            except ValueError:
                raise KubeError(f"{what}: the Kubernetes API answered with invalid JSON") from None
            return decoded if isinstance(decoded, dict) else {}

        return await asyncio.to_thread(_translated, what, call)

    async def _get(
        self, what: str, method: Callable[..., Any], *args: Any, **kwargs: Any
    ) -> dict[str, Any] | None:
        """:meth:`_call` where "not found" is a value (None), not an error."""
        try:
            return await self._call(what, method, *args, **kwargs)
        except KubeError as exc:
            if exc.status == 404:
                return None
            raise


def _translated(what: str, call: Callable[[], Any]) -> Any:
    """Run ``call``; every client, credential and network failure becomes a :class:`KubeError`."""
    try:
        return call()
    except kubernetes.client.ApiException as exc:
        status, api_reason, message = _api_failure(exc)
        kind = (
            KubeAlreadyExistsError if status == 409 and api_reason == "AlreadyExists" else KubeError
        )
        raise kind(f"{what}: {message}", status=status, api_reason=api_reason) from None
    except (kubernetes.client.exceptions.OpenApiException, pydantic.ValidationError) as exc:
        # The client refuses arguments before sending them: its own ApiValueError...,
        # and, in recent releases, pydantic validation of every API method's parameters.
        raise KubeError(f"{what}: the Kubernetes client refused the request: {exc}") from None
    except kubernetes.config.ConfigException as exc:
        # Raised mid-request when a kubeconfig's exec plugin or token refresh fails.
        raise KubeError(f"{what}: cannot get Kubernetes credentials: {exc}") from None
    except (urllib3.exceptions.HTTPError, OSError) as exc:
        raise KubeError(f"{what}: cannot reach the Kubernetes API: {exc}") from None


def _api_failure(exc: Any) -> tuple[int | None, str, str]:
    """(HTTP status, the Status ``reason``, the Status ``message``) of an ApiException."""
    status = exc.status if isinstance(exc.status, int) else None
    try:
        body = json.loads(exc.body or "{}")
    except (TypeError, ValueError):
        body = {}
    if not isinstance(body, dict):
        body = {}
    reason = str(body.get("reason") or exc.reason or "")
    message = str(body.get("message") or f"HTTP {status} {exc.reason or ''}".strip())
    return status, reason, message


def _selector(labels: Mapping[str, str]) -> str:
    return ",".join(f"{key}={value}" for key, value in sorted(labels.items()))
