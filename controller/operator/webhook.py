"""The Git push receiver: ``POST /hook/<namespace>/<name>``, signatures checked per Workspace.

The Workspace names its webhook Secret in the annotation ``cratekeeper.dev/webhook-secret``
(key ``token``). A request is accepted when it carries one of:

- GitHub: ``X-Hub-Signature-256: sha256=<hex HMAC-SHA256 of the body>``
- Gitea/Forgejo: ``X-Gitea-Signature: <hex HMAC-SHA256 of the body>``
- GitLab: ``X-Gitlab-Token: <the token>``

A signed push names its ref in the body (``"ref": "refs/heads/main"``, the same key in all
three forges' push events): the receiver hands it on, so the check of a push for the
Workspace's own ref can fetch at once, without an ``ls-remote`` first. A body without one wakes
the Workspace all the same.

Everything else (unknown Workspace, no Secret, wrong or missing signature, the Kubernetes API
failing while the Secret is read) gets the same bare 404, so the endpoint tells an attacker
nothing about which Workspaces exist.

The body is read first, bounded in size (:data:`MAX_BODY`: 413) and in time
(:data:`BODY_TIMEOUT`: 408), so a client cannot hold a receiver open by trickling bytes; a client
that hangs up mid-body is simply dropped (no traceback in the log).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
from collections.abc import Awaitable, Callable, Mapping

from aiohttp import web

MAX_BODY = 1024 * 1024
BODY_TIMEOUT = 10.0
"""Seconds a client has to send the whole body."""
TOKEN_KEY = "token"  # noqa: S105 (a key name, not a secret)

SecretLookup = Callable[[str, str], Awaitable[bytes | None]]
Trigger = Callable[[str, str, str | None], bool]
"""``(namespace, name, pushed ref or None)`` → whether a worker (or the relay) took it."""


def _hmac_hex(secret: bytes, body: bytes) -> str:
    return hmac.new(secret, body, hashlib.sha256).hexdigest()


def verify(headers: Mapping[str, str], body: bytes, secret: bytes) -> bool:
    """Whether the request is signed (GitHub, Gitea) or tokened (GitLab) with ``secret``."""
    if not secret:
        return False
    github = headers.get("X-Hub-Signature-256")
    if github is not None:
        scheme, _, signature = github.partition("=")
        return scheme == "sha256" and hmac.compare_digest(
            signature.strip().lower(), _hmac_hex(secret, body)
        )
    gitea = headers.get("X-Gitea-Signature") or headers.get("X-Forgejo-Signature")
    if gitea is not None:
        return hmac.compare_digest(gitea.strip().lower(), _hmac_hex(secret, body))
    gitlab = headers.get("X-Gitlab-Token")
    if gitlab is not None:
        return hmac.compare_digest(gitlab.encode(), secret)
    return False


def pushed_ref(body: bytes) -> str | None:
    """The ref a push event names (``refs/heads/…``, ``refs/tags/…``), if its body says."""
    try:
        event = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return None
    ref = event.get("ref") if isinstance(event, dict) else None
    return ref if isinstance(ref, str) and ref.startswith("refs/") else None


def webhook_app(
    secret_of: SecretLookup,
    trigger: Trigger,
    *,
    max_body: int = MAX_BODY,
    body_timeout: float = BODY_TIMEOUT,
) -> web.Application:
    """The receiver; ``secret_of(ns, name)`` is the Workspace's token (None: not served)."""

    async def receive(request: web.Request) -> web.Response:
        namespace = request.match_info["namespace"]
        name = request.match_info["name"]
        if (request.content_length or 0) > max_body:
            return web.Response(status=413)
        try:
            async with asyncio.timeout(body_timeout):
                body = await request.read()
        except TimeoutError:
            return web.Response(status=408)
        except web.HTTPRequestEntityTooLarge:  # no Content-Length (chunked), and too long
            return web.Response(status=413)
        except ConnectionError:  # the client hung up mid-body: nobody to answer
            return web.Response(status=400)
        secret = await secret_of(namespace, name)
        if secret is None or not verify(request.headers, body, secret):
            return web.Response(status=404)
        if not trigger(namespace, name, pushed_ref(body)):
            return web.Response(status=404)
        return web.Response(status=202)

    app = web.Application(client_max_size=max_body)
    app.router.add_post("/hook/{namespace}/{name}", receive)
    return app
