"""Commit statuses on GitHub, GitLab and Gitea/Forgejo: where the repository lives, and the
request each forge documents (pure; :mod:`controller.notify.http` sends them).

- GitHub: ``POST {api}/repos/{owner}/{repo}/statuses/{sha}``, ``Authorization: Bearer``,
  ``Accept: application/vnd.github+json``; JSON ``state`` (pending|success|failure|error),
  ``description``, ``context``, ``target_url``.
- GitLab: ``POST {api}/projects/{url-encoded path}/statuses/{sha}``, ``PRIVATE-TOKEN``;
  ``state`` (pending|running|success|failed|canceled), ``name``, ``description``.
- Gitea/Forgejo: ``POST {api}/repos/{owner}/{repo}/statuses/{sha}``,
  ``Authorization: token …``; ``state`` (pending|success|error|failure|warning), ``context``,
  ``description``, ``target_url``.

Sources are cited in docs/notifications.md.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Literal
from urllib.parse import quote, urlsplit

from controller.api.spec import CommitStatusSpec, ForgeProvider
from controller.errors import NotifyError
from controller.notify.http import Request

State = Literal["pending", "success", "failure"]
"""What cratekeeper says about a revision: attempting it, applied, not applied."""

_STATES: dict[ForgeProvider, dict[State, str]] = {
    "github": {"pending": "pending", "success": "success", "failure": "failure"},
    # GitLab's "pending" means "not started"; a status is only sent when a run starts.
    "gitlab": {"pending": "running", "success": "success", "failure": "failed"},
    "gitea": {"pending": "pending", "success": "success", "failure": "failure"},
}
DESCRIPTION_LIMIT: dict[ForgeProvider, int] = {"github": 140, "gitlab": 255, "gitea": 140}
"""Characters of ``description`` each API takes (GitHub refuses longer ones with 422)."""

_SCP = re.compile(r"^(?:[^@/]+@)?(?P<host>[^:/]+):(?P<path>.+)$")


@dataclass(frozen=True)
class Forge:
    """Where commit statuses of one repository go."""

    provider: ForgeProvider
    api_url: str
    repository: str
    """``owner/repo`` (GitLab: the project's full path)."""


def _host_and_path(url: str) -> tuple[str, str] | None:
    """The host and repository path of a clone URL (https, ssh, git, or scp-like)."""
    if "://" in url:
        parts = urlsplit(url)
        if parts.scheme == "file" or not parts.hostname:
            return None
        host, path = parts.hostname, parts.path
    else:
        match = _SCP.match(url)
        if match is None:
            return None
        host, path = match["host"], match["path"]
    path = path.strip("/")
    path = path.removesuffix(".git")
    return (host.lower(), path) if path else None


def _guess(host: str) -> ForgeProvider | None:
    if host in ("github.com", "www.github.com"):
        return "github"
    if host == "gitlab.com" or host.startswith("gitlab."):
        return "gitlab"
    if host == "codeberg.org" or host.startswith(("gitea.", "forgejo.")):
        return "gitea"
    return None


def _api_root(provider: ForgeProvider, host: str) -> str:
    if provider == "github":
        # github.com's API has a host of its own; GitHub Enterprise Server serves /api/v3.
        return "https://api.github.com" if host == "github.com" else f"https://{host}/api/v3"
    if provider == "gitlab":
        return f"https://{host}/api/v4"
    return f"https://{host}/api/v1"


def forge_of(source_url: str, spec: CommitStatusSpec) -> Forge:
    """The forge and repository of ``source_url``, with what ``spec`` gives explicitly on
    top; a :class:`NotifyError` that says what to set when it cannot be derived."""
    found = _host_and_path(source_url)
    host, path = found if found else (None, None)
    provider = spec.provider or (_guess(host) if host else None)
    if provider is None:
        raise NotifyError(
            "spec.notify.commitStatus: cannot tell the forge from spec.source.url; set "
            "provider (github, gitlab or gitea) and apiURL"
        )
    api_url = spec.api_url or (_api_root(provider, host) if host else None)
    repository = spec.repository or path
    if api_url is None or not repository or "/" not in repository:
        raise NotifyError(
            "spec.notify.commitStatus: cannot tell the API or the repository from "
            "spec.source.url; set apiURL and repository (owner/repo)"
        )
    return Forge(provider, api_url.rstrip("/"), repository)


def context_of(name: str) -> str:
    """The status context (GitLab: name) that names the Workspace."""
    return f"cratekeeper/{name}"


def clip(text: str, limit: int) -> str:
    """``text`` within ``limit`` characters, an ellipsis marking a cut."""
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def status_request(
    forge: Forge,
    sha: str,
    state: State,
    *,
    context: str,
    description: str,
    token: str,
    target_url: str | None = None,
) -> Request:
    """The documented request that sets ``state`` on commit ``sha``."""
    label = f"commit status on {forge.provider} ({forge.repository})"
    text = clip(description, DESCRIPTION_LIMIT[forge.provider])
    wire = _STATES[forge.provider][state]
    body: dict[str, str] = {"state": wire, "description": text}
    if forge.provider == "gitlab":
        body["name"] = context
        if target_url:
            body["target_url"] = target_url
        project = quote(forge.repository, safe="")
        url = f"{forge.api_url}/projects/{project}/statuses/{sha}"
        headers = {"PRIVATE-TOKEN": token}
    else:
        body["context"] = context
        if target_url:
            body["target_url"] = target_url
        owner_repo = "/".join(quote(p, safe="") for p in forge.repository.split("/", 1))
        url = f"{forge.api_url}/repos/{owner_repo}/statuses/{sha}"
        if forge.provider == "github":
            headers = {
                "Authorization": f"Bearer {token}",
                "Accept": "application/vnd.github+json",
                "X-GitHub-Api-Version": "2022-11-28",
            }
        else:
            headers = {"Authorization": f"token {token}", "Accept": "application/json"}
    headers["Content-Type"] = "application/json"
    return Request(url, json.dumps(body).encode(), headers, label)
