"""A Workspace's earlier Jobs end before its next run starts (issue 10 point 6, DESIGN §5).

Adoption finds only the Job of the same name, and the name hashes the commit: if the branch
moved while the controller was down, the next run has another name, and starting it would put
a second playbook beside the first against the same cluster (and lose the first's result).
So before a run, the Workspace's Jobs are listed by label and every one still running is
followed to its end; its outcome goes to the run's log tail.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping

from controller.errors import RunError
from controller.kube import Kube
from controller.runners.kubernetes.names import (
    ANNOTATION_COMMIT,
    LABEL_BLOCK,
    job_outcome,
)


async def wait_for_earlier(
    kube: Kube,
    namespace: str,
    selector: Mapping[str, str],
    name: str,
    *,
    timeout: float,
    poll: float,
    notes: list[str],
) -> None:
    """Wait until no Job matching ``selector`` but ``name`` runs; say so in ``notes``.

    A suspended Job never started (a controller died before resuming it): it is deleted. Jobs
    still running after ``timeout`` seconds stop this run with a :class:`RunError`, so the
    pipeline retries later instead of starting a second run beside them.
    """
    deadline = time.monotonic() + timeout
    followed: dict[str, str] = {}
    while True:
        jobs = await kube.list_jobs(namespace, selector)
        earlier = [
            job
            for job in jobs
            if job.name != name and not job.deleting and job_outcome(job) is None
        ]
        for job in earlier:
            if job.suspended:
                notes.append(f"cratekeeper: deleted Job {job.name}, left suspended (it never ran)")
                await kube.delete_job(namespace, job.name, propagation="Background")
            elif job.name not in followed:
                commit = job.annotations.get(ANNOTATION_COMMIT, "")[:12] or "?"
                followed[job.name] = commit
                notes.append(
                    f"cratekeeper: Job {job.name} of this Workspace (commit {commit}, block "
                    f"{job.labels.get(LABEL_BLOCK, '?')}) was still running: waited for it"
                )
        running = [job.name for job in earlier if not job.suspended]
        if not running:
            for job_name, commit in sorted(followed.items()):
                ended = next((job for job in jobs if job.name == job_name), None)
                how = (job_outcome(ended) if ended is not None else None) or "gone"
                notes.append(f"cratekeeper: earlier Job {job_name} (commit {commit}) ended: {how}")
            return
        if time.monotonic() >= deadline:
            raise RunError(
                f"Job(s) {', '.join(running)} of this Workspace still run after {timeout:g}s; "
                "cratekeeper never starts a second run beside one: it retries later (delete "
                "them to start now)"
            )
        await asyncio.sleep(poll)
