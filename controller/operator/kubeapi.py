"""The few Kubernetes calls the operator makes beside Kopf's: read Secrets, patch status, clean up.

A small async client over aiohttp, authenticated with the same :class:`Connection` Kopf logs in
with, so the operator never holds two notions of "the cluster". Values cross this edge as plain
dicts; nothing from here reaches a log with a Secret's contents.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import json
import os
import ssl
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp
import yaml

from controller.api.spec import GROUP, PLURAL, VERSION
from controller.errors import CratekeeperError
from controller.operator.secrets import SecretInvalidError

SERVICE_ACCOUNT = Path("/var/run/secrets/kubernetes.io/serviceaccount")
MERGE_PATCH = "application/merge-patch+json"


class KubeApiError(CratekeeperError):
    """The Kubernetes API refused or failed a request the operator needed."""

    reason = "KubernetesApiError"


@dataclass(frozen=True)
class Connection:
    """Where the API server is and how to authenticate (the fields of a kubeconfig user)."""

    server: str
    token: str | None = field(default=None, repr=False)
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    ca_path: str | None = None
    ca_data: bytes | None = field(default=None, repr=False)
    certificate_path: str | None = None
    certificate_data: bytes | None = field(default=None, repr=False)
    private_key_path: str | None = None
    private_key_data: bytes | None = field(default=None, repr=False)
    insecure: bool = False
    default_namespace: str | None = None

    def headers(self) -> dict[str, str]:
        if self.token:
            return {"Authorization": f"Bearer {self.token}"}
        if self.username is not None:
            pair = f"{self.username}:{self.password or ''}".encode()
            return {"Authorization": "Basic " + base64.b64encode(pair).decode()}
        return {}

    def ssl_context(self) -> ssl.SSLContext | bool:
        """TLS settings for aiohttp: ``True`` (system CAs), a context, or ``False`` (insecure)."""
        if not self.server.startswith("https://"):
            return True
        if self.insecure:
            return False
        context = ssl.create_default_context(
            cafile=self.ca_path,
            cadata=self.ca_data.decode() if self.ca_data else None,
        )
        if self.certificate_path or self.certificate_data:
            with (
                _material(self.certificate_path, self.certificate_data) as cert,
                _material(self.private_key_path, self.private_key_data) as key,
            ):
                assert cert is not None  # the branch above: a path or data
                context.load_cert_chain(cert, key)
        return context


@contextlib.contextmanager
def _material(path: str | None, data: bytes | None) -> Iterator[str | None]:
    """A file holding ``data`` for the ``ssl`` module (0600, removed right after loading)."""
    if path or data is None:
        yield path
        return
    fd, name = tempfile.mkstemp(prefix="cratekeeper-tls-")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        yield name
    finally:
        Path(name).unlink(missing_ok=True)


def _b64(value: object) -> bytes | None:
    return base64.b64decode(str(value)) if value else None


def connection_from_kubeconfig(path: Path, context: str | None = None) -> Connection:
    """The connection of ``context`` (default: current) in a kubeconfig file.

    Tokens, basic auth and client certificates (files or inline data) are understood; exec and
    auth-provider plugins are not (run the operator in-cluster, or use a token).
    """
    config = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    name = context or config.get("current-context")
    by_name = {
        kind: {item["name"]: item.get(kind[:-1], {}) for item in config.get(kind) or []}
        for kind in ("contexts", "clusters", "users")
    }
    ctx = by_name["contexts"].get(name, {})
    cluster = by_name["clusters"].get(ctx.get("cluster"), {})
    user = by_name["users"].get(ctx.get("user"), {})
    if not cluster.get("server"):
        raise KubeApiError(f"kubeconfig {path}: context {name!r} has no cluster server")
    token = user.get("token")
    if user.get("tokenFile"):
        token = Path(user["tokenFile"]).read_text().strip()
    return Connection(
        server=str(cluster["server"]).rstrip("/"),
        token=token,
        username=user.get("username"),
        password=user.get("password"),
        ca_path=cluster.get("certificate-authority"),
        ca_data=_b64(cluster.get("certificate-authority-data")),
        certificate_path=user.get("client-certificate"),
        certificate_data=_b64(user.get("client-certificate-data")),
        private_key_path=user.get("client-key"),
        private_key_data=_b64(user.get("client-key-data")),
        insecure=bool(cluster.get("insecure-skip-tls-verify", False)),
        default_namespace=ctx.get("namespace"),
    )


def workspace_path(namespace: str, name: str, subresource: str = "") -> str:
    path = f"/apis/{GROUP}/{VERSION}/namespaces/{quote(namespace)}/{PLURAL}/{quote(name)}"
    return path + (f"/{subresource}" if subresource else "")


class KubeApi:
    """An async client for the operator's own calls; :meth:`connect` before use."""

    def __init__(self, timeout: float = 30.0) -> None:
        self._connection: Connection | None = None
        self._session: aiohttp.ClientSession | None = None
        self._timeout = aiohttp.ClientTimeout(total=timeout)

    @property
    def connected(self) -> bool:
        return self._connection is not None

    def connect(self, connection: Connection) -> None:
        """Use ``connection`` from now on (called again when Kopf re-authenticates)."""
        self._connection = connection
        if self._session is not None:
            session, self._session = self._session, None
            # Close later: a request may still be using it.
            self._closing = session

    async def close(self) -> None:
        for session in (self._session, getattr(self, "_closing", None)):
            if session is not None:
                await session.close()
        self._session = None

    async def _request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str] | None = None,
        payload: Any = None,
        content_type: str | None = None,
    ) -> tuple[int, Any]:
        conn = self._connection
        if conn is None:
            raise KubeApiError("not logged in to the Kubernetes API yet")
        if self._session is None:
            connector = aiohttp.TCPConnector(ssl=conn.ssl_context())
            self._session = aiohttp.ClientSession(connector=connector, timeout=self._timeout)
        headers = {**conn.headers(), "Accept": "application/json"}
        if content_type:
            headers["Content-Type"] = content_type
        try:
            async with self._session.request(
                method, conn.server + path, params=params, json=payload, headers=headers
            ) as response:
                return response.status, _json_or_none(await response.text())
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise KubeApiError(
                f"cannot reach the Kubernetes API at {conn.server}: {exc.__class__.__name__}"
            ) from None

    @staticmethod
    def _check(status: int, body: Any, what: str) -> None:
        if status >= 400:
            message = body.get("message", "") if isinstance(body, dict) else ""
            raise KubeApiError(f"{what}: HTTP {status} {message}".rstrip())

    async def read_secret(self, namespace: str, name: str) -> dict[str, bytes] | None:
        """The decoded data of a Secret, or None if it does not exist."""
        status, body = await self._request(
            "GET", f"/api/v1/namespaces/{quote(namespace)}/secrets/{quote(name)}"
        )
        if status == 404:
            return None
        # The message never includes the body: it could hold the Secret's data.
        self._check(status, None, f"reading Secret {namespace}/{name}")
        return secret_data(namespace, name, body)

    async def patch_status(
        self, namespace: str, name: str, patch: Mapping[str, Any]
    ) -> dict[str, Any] | None:
        """Merge-patch the Workspace's status subresource; the stored object, None if gone."""
        status, body = await self._request(
            "PATCH",
            workspace_path(namespace, name, "status"),
            payload={"status": dict(patch)},
            content_type=MERGE_PATCH,
        )
        if status == 404:
            return None
        self._check(status, body, f"patching the status of Workspace {namespace}/{name}")
        return dict(body) if isinstance(body, dict) else {}

    async def delete_labelled(
        self, api_prefix: str, plural: str, namespace: str, selector: str
    ) -> list[str]:
        """Delete every object of ``plural`` matching ``selector``; the names deleted."""
        base = f"{api_prefix}/namespaces/{quote(namespace)}/{plural}"
        status, body = await self._request("GET", base, params={"labelSelector": selector})
        if status == 404:
            return []
        self._check(status, body, f"listing {plural} in {namespace}")
        names = [
            str(item["metadata"]["name"])
            for item in (body.get("items") or [] if isinstance(body, dict) else [])
        ]
        for name in names:
            status, body = await self._request(
                "DELETE",
                f"{base}/{quote(name)}",
                params={"propagationPolicy": "Background"},
            )
            if status != 404:
                self._check(status, body, f"deleting {plural} {namespace}/{name}")
        return names


def secret_data(namespace: str, name: str, body: Any) -> dict[str, bytes]:
    """The decoded ``data`` and ``stringData`` of Secret ``body``.

    A value that is not base64 raises :class:`SecretInvalidError` naming the key, never the
    value (it is the secret).
    """
    data = body.get("data") or {} if isinstance(body, dict) else {}
    strings = body.get("stringData") or {} if isinstance(body, dict) else {}
    decoded = {}
    for key, value in data.items():
        try:
            decoded[str(key)] = base64.b64decode(str(value))
        except (binascii.Error, ValueError):
            raise SecretInvalidError(
                f"Secret {namespace}/{name}: key {key!r} is not valid base64"
            ) from None
    decoded.update({str(k): str(v).encode() for k, v in strings.items()})
    return decoded


def _json_or_none(text: str) -> Any:
    if not text:
        return None
    try:
        return json.loads(text)
    except ValueError:
        return None
