"""What Git said, made safe and useful: redact credentials, and name the failure's cause.

:func:`redact` is for anything that may reach a log, an event or a status message;
:func:`classify` turns a failed network command's (redacted) stderr into the
:class:`~controller.errors.SourceError` that says what to fix.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from controller.errors import GitAuthError, GitUnreachableError, SourceError

__all__ = ["classify", "redact"]

_USERINFO = re.compile(r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*://)[^/@\s]*@")

_UNREACHABLE = (
    "could not resolve host",
    "could not resolve hostname",
    "failed to connect",
    "connection refused",
    "connection timed out",
    "operation timed out",
    "no route to host",
    "network is unreachable",
    "unable to look up",
    "unable to connect",
    "connection reset",
    "connection closed by remote host",
    "temporary failure in name resolution",
    "name or service not known",
)
_AUTH = (
    "authentication failed",
    "permission denied",
    "could not read username",
    "could not read password",
    "terminal prompts disabled",
    "http 401",
    "http 403",
    "the requested url returned error: 401",
    "the requested url returned error: 403",
    "invalid username or password",
)
_NOT_FOUND = (
    "repository not found",
    "not found",
    "does not appear to be a git repository",
    "access denied or repository not exported",
    "no such repository",
)


def classify(display: str, stderr: str) -> SourceError:
    """Turn a failed Git command's (redacted) stderr into an error that says what to fix."""
    text = stderr.lower()
    detail = stderr.strip().splitlines()[-1] if stderr.strip() else "no output"
    if "host key verification failed" in text or "no matching host key" in text:
        return GitAuthError(
            f"the SSH host key of {display} is not in the known_hosts file; add the server's "
            f"key (ssh-keyscan, verified out of band) to the Secret's known_hosts ({detail})"
        )
    if any(marker in text for marker in _AUTH):
        return GitAuthError(
            f"authentication to {display} failed; check the username/password (token) or SSH "
            f"identity in spec.source.secretRef and its access to the repository ({detail})"
        )
    if any(marker in text for marker in _UNREACHABLE):
        return GitUnreachableError(
            f"cannot reach {display}; check the host name, port, network policy and that the "
            f"Git server is up ({detail})"
        )
    if any(marker in text for marker in _NOT_FOUND):
        return SourceError(
            f"no Git repository at {display} (or no access to it); check spec.source.url ({detail})"
        )
    return SourceError(f"git failed for {display}: {detail}")


def redact(text: str, secrets: Sequence[str] = ()) -> str:
    """``text`` with any ``user:password@`` of a URL, and each of ``secrets``, replaced by ``***``.

    Use it on anything that may reach a log, an event or a status message.
    """
    text = _USERINFO.sub(lambda m: f"{m.group('scheme')}***@", text)
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return text
