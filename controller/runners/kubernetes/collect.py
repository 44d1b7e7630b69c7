"""Bringing a Job's artifacts back: its sealed block opened and laid into the export.

The main container prints the ``artifacts/blocks/`` tree sealed under the run's key at the end
of its log (:mod:`controller.runners.sealed`); the runner splits the block off the log and
:func:`bring_back` opens it with the key from the run's Secret and lays the tree into the
export with :func:`controller.runners.artifacts.unpack` (safe and bounded), where the pipeline
keeps it after a successful run exactly as it keeps the local runner's.

Artifacts the Job wrote that do not come back (the tree was over the bound, the block is
missing, or it does not open with the run's key) are an ``ArtifactsError``, as the local
runner's over-the-bound tree is: the runner fails a run that otherwise succeeded with it, since
later blocks and revisions would miss what it wrote.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from controller.errors import ArtifactsError, KubeError
from controller.kube import Kube
from controller.runners.artifacts import over_budget, unpack
from controller.runners.base import ActionRequest
from controller.runners.kubernetes.manifests import ARTIFACTS_KEY
from controller.runners.sealed import open_block, too_large


async def bring_back(
    kube: Kube,
    namespace: str,
    name: str,
    request: ActionRequest,
    sealed: str | None,
    written: int,
    log: Sequence[str],
) -> str | ArtifactsError | None:
    """Lay the Job ``name``'s sealed artifacts into ``request.workspace_dir``.

    The log line that says what came back; an :class:`ArtifactsError` saying why what the Job
    wrote was not kept (``log``: the pod log's lines, where the sealer names a tree over the
    bound); None when nothing was written and nothing is missing. Never raises."""
    if sealed is None:
        over = too_large(log)
        if over is not None:
            return over_budget(*over, where="the Job's ")
        if not written:
            return None
        return ArtifactsError(
            f"the Job wrote {written} file(s) under {request.artifacts_dir}/ but its log holds "
            "no sealed artifacts (the log is gone or sealing failed: see the Job's log); "
            "nothing new was kept (docs/kubernetes-runner.md, Artifacts)"
        )
    try:
        secret = await kube.get_secret(namespace, name)
        key = secret.data.get(ARTIFACTS_KEY) if secret is not None else None
        if key is None:
            raise ValueError(f"the run's Secret {name}, which holds the key, is gone")
        data = open_block(sealed, key, name)
        files = await asyncio.to_thread(unpack, data, request.workspace_dir)
    except (ValueError, ArtifactsError, KubeError) as exc:
        return ArtifactsError(f"the Job's artifacts were not kept: {exc}")
    return f"cratekeeper: brought back {len(files)} artifact file(s) from the Job"
