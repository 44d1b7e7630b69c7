"""Bringing a Job's artifacts back: its sealed block opened and laid into the export.

The main container prints the ``artifacts/blocks/`` tree sealed under the run's key at the end
of its log (:mod:`controller.runners.sealed`); the runner splits the block off the log and
:func:`bring_back` opens it with the key from the run's Secret and lays the tree into the
export with :func:`controller.runners.artifacts.unpack` (safe and bounded), where the pipeline
keeps it after a successful run exactly as it keeps the local runner's.
"""

from __future__ import annotations

import asyncio

from controller.errors import ArtifactsError, KubeError
from controller.kube import Kube
from controller.runners.artifacts import unpack
from controller.runners.base import ActionRequest
from controller.runners.kubernetes.manifests import ARTIFACTS_KEY
from controller.runners.sealed import open_block


async def bring_back(
    kube: Kube,
    namespace: str,
    name: str,
    request: ActionRequest,
    sealed: str | None,
    written: int,
) -> str | None:
    """Lay the Job ``name``'s sealed artifacts into ``request.workspace_dir``; the log line
    that says what came back (None: nothing was written, nothing is missing). A missing or
    refused block keeps nothing new and says so: never an exception, never another status."""
    if sealed is None:
        if not written:
            return None
        return (
            f"cratekeeper: the Job wrote {written} file(s) under {request.artifacts_dir}/ but "
            "its log holds no sealed artifacts; nothing new was kept "
            "(docs/kubernetes-runner.md, Artifacts)"
        )
    try:
        secret = await kube.get_secret(namespace, name)
        key = secret.data.get(ARTIFACTS_KEY) if secret is not None else None
        if key is None:
            raise ValueError(f"the run's Secret {name}, which holds the key, is gone")
        data = open_block(sealed, key, name)
        files = await asyncio.to_thread(unpack, data, request.workspace_dir)
    except (ValueError, ArtifactsError, KubeError) as exc:
        return f"cratekeeper: the Job's artifacts were not kept: {exc}"
    return f"cratekeeper: brought back {len(files)} artifact file(s) from the Job"
