"""One call to the API server: off the event loop, answered as JSON, failures as one hierarchy.

Responses are read as raw JSON (``_preload_content=False``), never deserialised into the
client's models. Every failure becomes a :class:`~controller.errors.KubeError` naming what was
asked for: an API error (with the server's ``reason`` and ``message``), arguments the client
refuses, an unreachable server, an answer that is not JSON; a credential plugin that fails is a
:class:`~controller.errors.KubeLoginError`; a create that finds the name taken a
:class:`~controller.errors.KubeAlreadyExistsError`. Nothing of the client's own exceptions
escapes.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Mapping
from typing import Any

import kubernetes
import pydantic
import urllib3

from controller.errors import KubeAlreadyExistsError, KubeError, KubeLoginError

__all__ = ["call", "get", "selector"]


async def call(
    what: str, timeout: float, method: Callable[..., Any], *args: Any, **kwargs: Any
) -> dict[str, Any]:
    """``method(*args, **kwargs)`` in a thread; its JSON answer (a dict, ``{}`` when empty)."""

    def send() -> dict[str, Any]:
        response = method(*args, _preload_content=False, _request_timeout=timeout, **kwargs)
        try:
            decoded = json.loads(response.data or b"{}")
        except ValueError:
            raise KubeError(f"{what}: the Kubernetes API answered with invalid JSON") from None
        return decoded if isinstance(decoded, dict) else {}

    return await asyncio.to_thread(translated, what, send)


async def get(
    what: str, timeout: float, method: Callable[..., Any], *args: Any, **kwargs: Any
) -> dict[str, Any] | None:
    """:func:`call` where "not found" is a value (None), not an error."""
    try:
        return await call(what, timeout, method, *args, **kwargs)
    except KubeError as exc:
        if exc.status == 404:
            return None
        raise


def translated(what: str, send: Callable[[], Any]) -> Any:
    """Run ``send``; every client, credential and network failure becomes a :class:`KubeError`."""
    try:
        return send()
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
        raise KubeLoginError(f"{what}: cannot get Kubernetes credentials: {exc}") from None
    except (urllib3.exceptions.HTTPError, OSError) as exc:
        raise KubeError(f"{what}: cannot reach the Kubernetes API: {exc}") from None


def selector(labels: Mapping[str, str] | str | None) -> str | None:
    """A label selector: ``{"a": "1"}`` → ``"a=1"``; a string is one already."""
    if labels is None or isinstance(labels, str):
        return labels or None
    return ",".join(f"{key}={value}" for key, value in sorted(labels.items())) or None


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
