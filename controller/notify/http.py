"""The one HTTP client for forges and chat services: one timeout and one retry policy.

Every commit status and alert goes through :func:`send`. A request is retried (with growing
pauses) when the service could not be reached, timed out, or answered 429 or 5xx; any other
answer is final. Nothing here ever puts a URL, a header or a body into an error message or a
log line: a Slack webhook URL is itself a secret, and the headers carry tokens. Errors name the
channel only (``label``), and say what the service answered.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import requests

from controller.errors import NotifyError

RETRYABLE_STATUS = frozenset({408, 425, 429, 500, 502, 503, 504})
USER_AGENT = "cratekeeper-notify"


@dataclass(frozen=True)
class Request:
    """One POST to a forge or chat service (built by pure functions, sent by :func:`send`)."""

    url: str
    body: bytes
    headers: Mapping[str, str] = field(default_factory=dict)
    label: str = "notification"
    """What the request is for, as errors and logs may name it (never the URL)."""

    def __repr__(self) -> str:  # a dataclass repr would print the URL and the token
        return f"Request({self.label})"


@dataclass(frozen=True)
class Policy:
    """How hard to try: ``attempts`` tries, each with ``timeout`` seconds, ``backoff``
    seconds before the second try, doubling after; ``ca_bundle`` is the PEM file HTTPS is
    checked against (``CRATEKEEPER_CA_BUNDLE``: a self-hosted forge behind a private CA), the
    system's default when None."""

    attempts: int = 3
    timeout: float = 10.0
    backoff: float = 1.0
    ca_bundle: str | None = None


DEFAULT_POLICY = Policy()


def send(
    request: Request,
    policy: Policy = DEFAULT_POLICY,
    *,
    session: requests.Session | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> int:
    """POST ``request`` (blocking; call it through ``asyncio.to_thread``); the HTTP status of
    the accepted answer, or a :class:`NotifyError` after the last try."""
    http = session or _session()
    headers = {"User-Agent": USER_AGENT, **request.headers}
    problem = ""
    try:
        for attempt in range(policy.attempts):
            if attempt:
                sleep(policy.backoff * 2 ** (attempt - 1))
            try:
                answer = http.post(
                    request.url,
                    data=request.body,
                    headers=headers,
                    timeout=policy.timeout,
                    allow_redirects=False,  # a redirect would carry the token elsewhere
                    verify=policy.ca_bundle or True,
                    proxies=requests.utils.get_environ_proxies(request.url),
                )
            except requests.Timeout:
                problem = f"no answer within {policy.timeout:g}s"
                continue
            except requests.RequestException as exc:
                # The exception's text holds the URL: only its type is safe to show.
                problem = f"cannot connect ({type(exc).__name__})"
                continue
            if answer.status_code < 300:
                return answer.status_code
            problem = f"HTTP {answer.status_code}{_hint(answer.status_code)}"
            if answer.status_code not in RETRYABLE_STATUS:
                break
    finally:
        if session is None:
            http.close()
    raise NotifyError(f"{request.label}: {problem}")


def _session() -> requests.Session:
    """A session that takes nothing from the environment but the proxy settings (passed per
    request): no ``.netrc`` credentials, no ``REQUESTS_CA_BUNDLE`` (the policy says)."""
    session = requests.Session()
    session.trust_env = False
    return session


def _hint(status: int) -> str:
    if status in (401, 403):
        return " (the token is refused: check the Secret and the token's scopes)"
    if status == 404:
        return " (wrong URL or repository, or the token cannot see the repository)"
    return ""
