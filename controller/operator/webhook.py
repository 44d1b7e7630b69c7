"""The Git push receiver: ``POST /hook/<namespace>/<name>``, signatures checked per Workspace.

The Workspace names its webhook Secret in the annotation ``cratekeeper.dev/webhook-secret``
(key ``token``). A request is accepted when it carries one of:

- GitHub: ``X-Hub-Signature-256: sha256=<hex HMAC-SHA256 of the body>``
- Gitea/Forgejo: ``X-Gitea-Signature: <hex HMAC-SHA256 of the body>``
- GitLab: ``X-Gitlab-Token: <the token>``

Everything else (unknown Workspace, no Secret, wrong or missing signature, the Kubernetes API
failing while the Secret is read) gets the same bare 404, so the endpoint tells an attacker
nothing about which Workspaces exist.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Awaitable, Callable, Mapping

from aiohttp import web

MAX_BODY = 1024 * 1024
TOKEN_KEY = "token"  # noqa: S105 (a key name, not a secret)

SecretLookup = Callable[[str, str], Awaitable[bytes | None]]
Trigger = Callable[[str, str], bool]


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


def webhook_app(secret_of: SecretLookup, trigger: Trigger) -> web.Application:
    """The receiver; ``secret_of(ns, name)`` is the Workspace's token (None: not served)."""

    async def receive(request: web.Request) -> web.Response:
        namespace = request.match_info["namespace"]
        name = request.match_info["name"]
        body = await request.read()
        secret = await secret_of(namespace, name)
        if secret is None or not verify(request.headers, body, secret):
            return web.Response(status=404)
        if not trigger(namespace, name):
            return web.Response(status=404)
        return web.Response(status=202)

    app = web.Application(client_max_size=MAX_BODY)
    app.router.add_post("/hook/{namespace}/{name}", receive)
    return app
