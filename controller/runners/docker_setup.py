"""The docker runner's setup: the engine client, the image's ``PATH``, the container user, and
the workspace's containers a run must wait for.

Kept apart from :mod:`controller.runners.docker` (the run itself) so each file has one job.
"""

from __future__ import annotations

import os
import re
import time
from typing import Any

import docker
import docker.errors

from controller.errors import RunError
from controller.runners.base import ActionRequest

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
NONROOT_USER = "65532:65532"
"""The container user when the controller runs as root (distroless's ``nonroot``)."""
_USER = re.compile(r"^(\d+)(?::(\d+))?$")
LABEL = "cratekeeper.dev/runner"
"""Every container of this runner carries ``cratekeeper.dev/runner=docker`` (the other labels
use the kubernetes runner's keys)."""


def env_path(image: Any) -> str:
    """``PATH`` as the image sets it (the runner replaces the container's environment)."""
    for item in image.attrs.get("Config", {}).get("Env") or []:
        if str(item).startswith("PATH="):
            return str(item)[len("PATH=") :]
    return DEFAULT_PATH


def explain(exc: docker.errors.DockerException) -> str:
    """The engine's own explanation of a failure, else the exception's text."""
    explanation = getattr(exc, "explanation", None)
    return str(explanation or exc)


def engine_client(base_url: str | None) -> Any:
    """A Docker SDK client for ``base_url``, else the environment's engine (``DOCKER_HOST``)."""
    try:
        if base_url:
            return docker.DockerClient(base_url=base_url)
        return docker.from_env()
    except docker.errors.DockerException as exc:
        raise RunError(
            f"docker runner: cannot reach the Docker engine: {explain(exc)}; set "
            "DOCKER_HOST or the runner's base URL (unix:///var/run/docker.sock)"
        ) from None


def container_ids(user: str | None) -> tuple[int, int]:
    """The container's ``(uid, gid)``: numeric, non-root, readable files for it guaranteed."""
    own_uid, own_gid = os.geteuid(), os.getegid()
    if user is None:
        if own_uid == 0:
            uid, gid = (int(part) for part in NONROOT_USER.split(":"))
            return uid, gid
        return own_uid, own_gid
    match = _USER.match(user)
    if match is None:
        raise RunError(
            f"docker runner: user {user!r} must be numeric UID or UID:GID (such as 65532:65532), "
            "so the run's files can be handed to it"
        )
    uid = int(match[1])
    gid = int(match[2]) if match[2] is not None else uid
    if uid == 0:
        raise RunError("docker runner: the action must not run as root; choose a UID above 0")
    if own_uid not in (0, uid):
        raise RunError(
            f"docker runner: user {uid} differs from the controller's uid {own_uid}; a non-root "
            "controller can only share its own 0600 files: leave user unset or run as that uid"
        )
    return uid, gid


def wait_for_earlier(client: Any, request: ActionRequest) -> list[str]:
    """This workspace's containers still running (a controller that died left them: they
    are not adopted, their run directory is gone) end before the next run starts, so
    two playbooks never run side by side against one cluster; notes for the log tail."""
    filters = {
        "label": [f"{LABEL}=docker", f"cratekeeper.dev/workspace={request.workspace}"],
        "status": "running",
    }
    notes: list[str] = []
    deadline = time.monotonic() + request.timeout
    for container in client.containers.list(filters=filters):
        notes.append(
            f"cratekeeper: container {container.name} of this workspace was still running "
            "(started by an earlier controller): waited for it to end"
        )
        try:
            container.wait(timeout=max(1.0, deadline - time.monotonic()))
        except docker.errors.NotFound:
            continue
        except (docker.errors.DockerException, OSError):  # OSError: the wait timed out
            raise RunError(
                f"docker runner: container {container.name} of workspace "
                f"{request.workspace} still runs after {request.timeout:g}s; cratekeeper "
                "does not start a second run beside it (stop it to start now)"
            ) from None
    return notes
