"""The ``kubernetes`` runner: one Job per (workspace, commit, block, action), adopted on restart.

:class:`KubernetesRunner` sends the manifests of :mod:`controller.runners.kubernetes.manifests`
through :class:`controller.kube.Kube` and follows the Job by polling it. The pod's init container
(``python -m controller.runners.prepare``) fetches the workspace at the commit and the block at
the digest into an emptyDir; the main container runs the action there with the
environment of :func:`controller.runners.contract.action_env`. The counts come back structured,
through the main container's termination message (the ``cratekeeper_events`` stats line, read
by :func:`controller.runners.events.parse_events`); the log tail is read from the pod log and
redacted like the local runner's (:mod:`.pod`), and the Job's artifacts come back sealed at
its end (:mod:`.collect`). The design is written up in docs/kubernetes-runner.md.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any, Literal

from controller.api.spec import WorkspaceSpec
from controller.errors import ArtifactsError, KubeAlreadyExistsError, KubeError, RunError
from controller.kube import Job, Kube
from controller.runners.base import (
    ActionRequest,
    OutputHandler,
    RunResult,
    RunStatus,
    redactions,
)
from controller.runners.events import parse_events
from controller.runners.kubernetes.collect import bring_back
from controller.runners.kubernetes.earlier import wait_for_earlier
from controller.runners.kubernetes.layout import DEFAULT_PATH
from controller.runners.kubernetes.manifests import (
    PodOptions,
    WorkspaceSource,
    job_manifest,
    main_env,
    secret_manifest,
)
from controller.runners.kubernetes.names import (
    ANNOTATION_COMMIT,
    LABEL_WORKSPACE,
    MANAGED_BY,
    extra_labels,
    job_name,
    job_outcome,
    label_value,
)
from controller.runners.kubernetes.pod import read_result
from controller.runners.output import LogTail
from controller.runners.sealed import new_key

_Ending = Literal["succeeded", "failed", "timedOut", "deadline", "deleted"]


class KubernetesRunner:
    """Runs each action as a Job in ``namespace`` and follows it to the end.

    ``labels`` are merged over :func:`~controller.runners.kubernetes.manifests.run_labels` on
    each Job, its pod and its Secret (values shortened to label syntax by
    :func:`~controller.runners.kubernetes.manifests.label_value`); the operator passes
    ``{"cratekeeper.dev/workspace": <Workspace object name>}`` so that deleting a Workspace
    finds its Jobs. ``app.kubernetes.io/managed-by`` and ``cratekeeper.dev/job`` are the
    runner's own: passing them is a ``ValueError``.

    Cancelling :meth:`run` leaves the Job running on purpose: the next controller adopts it.
    """

    def __init__(
        self,
        kube: Kube,
        namespace: str,
        image: str,
        *,
        source: WorkspaceSource,
        prepare_image: str | None = None,
        service_account_name: str | None = None,
        image_pull_secrets: Sequence[str] = (),
        resources: Mapping[str, Mapping[str, str]] | None = None,
        ttl_seconds_after_finished: int = 3600,
        insecure_registries: Sequence[str] = (),
        path: str = DEFAULT_PATH,
        ca_bundle: bytes | None = None,
        registry_mirrors: Mapping[str, str] | None = None,
        max_block_size: int | None = None,
        termination_grace_seconds: int = 10,
        labels: Mapping[str, str] = {},
        poll_interval: float = 2.0,
        deadline_grace: float = 60.0,
        delete_timeout: float = 60.0,
    ) -> None:
        self._kube = kube
        self._namespace = namespace
        self._source = source
        self._labels = extra_labels(labels)
        self._workspace_object = labels.get(LABEL_WORKSPACE)
        self._options = PodOptions(
            image=image,
            prepare_image=prepare_image or image,
            service_account_name=service_account_name,
            image_pull_secrets=tuple(image_pull_secrets),
            resources=dict(resources or {}),
            ttl_seconds_after_finished=ttl_seconds_after_finished,
            insecure_registries=tuple(insecure_registries),
            path=path,
            ca_bundle=ca_bundle,
            registry_mirrors=tuple(sorted((registry_mirrors or {}).items())),
            max_block_size=max_block_size,
            termination_grace_seconds=termination_grace_seconds,
        )
        self._poll = poll_interval
        self._grace = deadline_grace
        self._delete_timeout = delete_timeout

    @classmethod
    def for_workspace(
        cls,
        kube: Kube,
        namespace: str,
        spec: WorkspaceSpec,
        *,
        default_image: str,
        default_image_pull_secrets: Sequence[str] = (),
        labels: Mapping[str, str] = {},
        **knobs: Any,
    ) -> KubernetesRunner:
        """The runner a Workspace asks for: its ``spec.runner``, source and registry Secrets.

        ``knobs`` are the other keyword arguments of the constructor (``prepare_image``,
        ``poll_interval``...); ``spec.runner`` decides the image, service account, resources
        and pull secrets (its list replaces ``default_image_pull_secrets`` when not empty).
        """
        git = spec.source.secret_ref
        registry = spec.registry.secret_ref
        return cls(
            kube,
            namespace,
            spec.runner.image or default_image,
            source=WorkspaceSource(
                url=spec.source.url,
                path=spec.source.path,
                git_secret=git.name if git else None,
                registry_secret=registry.name if registry else None,
            ),
            service_account_name=spec.runner.service_account_name,
            image_pull_secrets=[s.name for s in spec.runner.image_pull_secrets]
            or default_image_pull_secrets,
            resources={
                "limits": spec.runner.resources.limits,
                "requests": spec.runner.resources.requests,
            },
            labels=labels,
            **knobs,
        )

    async def run(
        self, request: ActionRequest, on_output: OutputHandler | None = None
    ) -> RunResult:
        """Create (or adopt) the run's Job, follow it, and read its result and log tail.

        A failing, timed-out or vanished run is a :class:`RunResult`, not an exception; so is
        a run whose artifacts did not come back (over the bound, lost, refused: ``failed``,
        with an :class:`~controller.errors.ArtifactsError` as its ``error``). Problems
        of the infrastructure raise :class:`~controller.errors.RunError` subclasses only, never
        the ``kubernetes`` client's exceptions:

        - :class:`~controller.errors.KubeError` (reason ``KubernetesApiError``): the API
          refused or could not be reached while creating, resuming, replacing or deleting the
          Job or its Secret (the API server's reason and message included; see
          :mod:`controller.kube.adapter`). Passing failures while following the Job are retried
          until its deadline; failing to read the pod or its log becomes a note in the tail.
        - :class:`~controller.errors.RunError` (reason ``RunFailed``): a registry block has no
          digest;
          a Job of the run's name exists that cratekeeper did not make for this commit; the Job
          keeps changing under us; an earlier Job stays in deletion past ``delete_timeout``.
        """
        if request.ref is not None and request.ref.digest is None and request.digest:
            # A tag pin: the pod pulls the digest the pipeline pulled, not what the tag is now.
            request = replace(request, ref=replace(request.ref, digest=request.digest))
        if request.ref is not None and request.ref.digest is None:
            raise RunError(
                f"block {request.ref} has no digest; the kubernetes runner pulls blocks by digest "
                "so the pod runs exactly what was planned"
            )
        tail = LogTail(redactions(request), on_output)
        notes: list[str] = []
        name = self.job_name(request)
        await self._wait_for_earlier(request, name, notes)
        started = datetime.now(UTC)
        job, adopted = await self._start(request, name, notes)
        if adopted:
            started = job.created or started
        ending = await self._follow(request, job, adopted=adopted)
        exit_code, message, sealed = await read_result(
            self._kube, self._namespace, name, tail, notes
        )
        status: RunStatus
        if ending == "deadline":
            await self._kube.delete_job(self._namespace, name, propagation="Background")
            notes.append(f"cratekeeper: stopped Job {name} after the {request.timeout:g}s timeout")
            status = "timedOut"
        elif ending == "deleted":
            notes.append(f"cratekeeper: Job {name} was deleted before it finished")
            status = "failed"
        else:
            status = ending
            if status == "timedOut":
                notes.append(
                    f"cratekeeper: Job {name} ran past activeDeadlineSeconds "
                    f"({request.timeout:g}s) and was stopped"
                )
        events = parse_events(message)
        kept = await bring_back(
            self._kube, self._namespace, name, request, sealed, events.artifacts_written, tail.lines
        )
        lost = kept if isinstance(kept, ArtifactsError) else None
        if kept is not None:
            notes.append(f"cratekeeper: {kept}" if lost else str(kept))
        for note in notes:
            tail.add(note)
        result = RunResult.ended(status, events, tail, started, exit_code, name)
        if lost is not None and result.succeeded:
            # As the local runner's: later runs would miss what this one wrote (DESIGN §2).
            return replace(result, status="failed", failure_reason=str(lost), error=lost)
        return result

    def workspace_object(self, request: ActionRequest) -> str:
        """The Workspace object the runs belong to: the ``cratekeeper.dev/workspace`` label the
        caller gave (the operator: the object's name), else the ``workspace.poly`` name."""
        return self._workspace_object or request.workspace

    def job_name(self, request: ActionRequest) -> str:
        """The run's Job name, from the Workspace object's identity (namespace and name).

        A check-mode run (drift, preview) repeats at the same revision: its name carries the
        second it starts, so it never adopts an earlier check's (or the apply's) finished Job."""
        revision, action = request.revision, request.action
        if request.check:
            revision, action = f"{revision}@{int(time.time())}", f"{action}-check"
        return job_name(
            self.workspace_object(request),
            revision,
            request.block,
            action,
            namespace=self._namespace,
        )

    async def _wait_for_earlier(self, request: ActionRequest, name: str, notes: list[str]) -> None:
        """Issue 10 point 6: this Workspace's other running Jobs end first (:mod:`.earlier`)."""
        await wait_for_earlier(
            self._kube,
            self._namespace,
            {
                MANAGED_BY: "cratekeeper",
                LABEL_WORKSPACE: label_value(self.workspace_object(request)),
            },
            name,
            timeout=request.timeout + self._grace,
            poll=self._poll,
            notes=notes,
        )

    async def _start(self, request: ActionRequest, name: str, notes: list[str]) -> tuple[Job, bool]:
        """Adopt the run's Job when a previous controller started it, else create it; resume it.

        Look first, create second: adopting costs no write at all, and an ``AlreadyExists`` on
        create (another controller was quicker) means adopt too, never a second Job. A running
        or succeeded Job is followed; a failed one is an earlier attempt of this run and this
        call its retry, so it is deleted and created anew.
        """
        manifest = job_manifest(request, name, self._options, self._source, labels=self._labels)
        for _ in range(3):
            existing = await self._kube.get_job(self._namespace, name)
            if existing is None:
                try:
                    job, adopted = await self._kube.create_job(self._namespace, manifest), False
                except KubeAlreadyExistsError:
                    continue  # created between our get and our create: look again, adopt it
            else:
                _check_ours(existing, request)
                earlier = job_outcome(existing)
                if existing.deleting or earlier in ("failed", "timedOut"):
                    notes.append(f"cratekeeper: replaced Job {name}, which had {earlier or 'gone'}")
                    await self._delete_and_wait(name)
                    continue
                job, adopted = existing, True
                notes.append(f"cratekeeper: adopted Job {name}, started by an earlier controller")
            if job.suspended:
                await self._ensure_secret(request, job)
                job = await self._kube.patch_job(
                    self._namespace, name, {"spec": {"suspend": False}}
                )
            return job, adopted
        raise RunError(
            f"Job {self._namespace}/{name} keeps changing while cratekeeper starts it; "
            "is another controller running for this Workspace?"
        )

    async def _ensure_secret(self, request: ActionRequest, job: Job) -> None:
        """The run's Secret, owned by ``job``; a stale one of an earlier Job is replaced."""
        env = main_env(request, self._options)
        manifest = secret_manifest(
            request,
            job,
            labels=self._labels,
            env=env,
            ca_bundle=self._options.ca_bundle,
            artifacts_key=new_key(),
        )
        try:
            await self._kube.create_secret(self._namespace, manifest)
            return
        except KubeAlreadyExistsError:
            current = await self._kube.get_secret(self._namespace, job.name)
        if current is not None and job.uid in current.owner_uids:
            return
        # Owned by a deleted Job the garbage collector has not reached yet: it would take the
        # Secret away under the new Job, so replace it now.
        await self._kube.delete_secret(self._namespace, job.name)
        await self._kube.create_secret(self._namespace, manifest)

    async def _delete_and_wait(self, name: str) -> None:
        await self._kube.delete_job(self._namespace, name, propagation="Background")
        deadline = time.monotonic() + self._delete_timeout
        while await self._kube.get_job(self._namespace, name) is not None:
            if time.monotonic() > deadline:
                raise RunError(
                    f"Job {self._namespace}/{name} is still being deleted after "
                    f"{self._delete_timeout:g}s; check its finalizers"
                )
            await asyncio.sleep(self._poll)

    async def _follow(self, request: ActionRequest, job: Job, *, adopted: bool) -> _Ending:
        """Poll the Job until it ends or our own deadline (the timeout plus a grace) passes.

        An adopted Job keeps the deadline it started with (by the API server's clock, so a
        skew shifts it by that much: the grace absorbs it); a new one starts counting now.
        """
        budget = request.timeout + self._grace
        since = (job.start_time or job.created) if adopted else None
        spent = (datetime.now(UTC) - since).total_seconds() if since else 0.0
        deadline = time.monotonic() + min(budget, max(0.0, budget - spent))
        current: Job | None = job
        while True:
            if current is None:
                return "deleted"
            outcome = job_outcome(current)
            if outcome is not None:
                return outcome
            if time.monotonic() >= deadline:
                return "deadline"
            await asyncio.sleep(self._poll)
            try:
                current = await self._kube.get_job(self._namespace, job.name)
            except KubeError:
                continue  # a passing API failure: keep following until the deadline


def _check_ours(job: Job, request: ActionRequest) -> None:
    """Refuse to adopt a Job of the name that cratekeeper did not create for this run."""
    if (
        job.labels.get(MANAGED_BY) != "cratekeeper"
        or job.annotations.get(ANNOTATION_COMMIT) != request.revision
    ):
        raise RunError(
            f"Job {job.namespace}/{job.name} exists but was not created by cratekeeper for "
            f"commit {request.revision[:12]}; delete it so the run can start"
        )
