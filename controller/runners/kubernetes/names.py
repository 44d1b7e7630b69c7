"""Names, labels and outcomes of the ``kubernetes`` runner's Jobs (pure).

A Job's name is deterministic from the Workspace object's identity, the commit, the block and
the action (so a restarted controller adopts it); its labels let the runner, the operator's
clean-up and :mod:`~controller.runners.kubernetes.earlier` find a Workspace's Jobs.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping

from controller.kube import Job
from controller.runners.base import ActionRequest, RunStatus

MANAGED_BY = "app.kubernetes.io/managed-by"
LABEL_WORKSPACE = "cratekeeper.dev/workspace"
LABEL_BLOCK = "cratekeeper.dev/block"
LABEL_ACTION = "cratekeeper.dev/action"
LABEL_REVISION = "cratekeeper.dev/revision"
LABEL_JOB = "cratekeeper.dev/job"
ANNOTATION_COMMIT = "cratekeeper.dev/commit"
ANNOTATION_BLOCK_REF = "cratekeeper.dev/block-ref"

_NAME_LIMIT = 63  # a DNS-1123 label: the Job name is also its pods' job-name label value
_HASH_LENGTH = 10


# --- names and labels (pure) -------------------------------------------------------------


def _dns_part(text: str) -> str:
    return re.sub(r"-+", "-", re.sub(r"[^a-z0-9-]", "-", text.lower())).strip("-")


def job_name(workspace: str, commit: str, block: str, action: str, *, namespace: str = "") -> str:
    """``ck-<workspace>-<block>-<action>-<hash10>``: stable, a DNS-1123 label of ≤ 63 chars.

    ``workspace`` is the Workspace object's name (its identity, with ``namespace``: two
    Workspaces whose ``workspace.poly`` names collide never share a Job name). The hash covers
    the inputs exactly, so shortened or sanitised names never collide in practice; the readable
    part is cut from its longest piece first.
    """
    inputs = (namespace, workspace, commit, block, action)
    digest = hashlib.sha256("\0".join(inputs).encode()).hexdigest()
    parts = [p for p in map(_dns_part, (workspace, block, action)) if p]
    room = _NAME_LIMIT - len("ck--") - _HASH_LENGTH
    while parts and len("-".join(parts)) > room:
        longest = max(range(len(parts)), key=lambda i: len(parts[i]))
        parts[longest] = parts[longest][:-1].rstrip("-")
        parts = [p for p in parts if p]
    return "-".join(["ck", *parts, digest[:_HASH_LENGTH]])


def label_value(text: str) -> str:
    """``text`` as a valid label value (≤ 63 of ``[A-Za-z0-9_.-]``, alphanumeric at both ends)."""
    return re.sub(r"[^A-Za-z0-9_.-]", "-", text)[:63].strip("-_.")


def run_labels(request: ActionRequest) -> dict[str, str]:
    """The labels of a run's Job, pod and Secret (values shortened; annotations keep it all)."""
    return {
        MANAGED_BY: "cratekeeper",
        LABEL_WORKSPACE: label_value(request.workspace),
        LABEL_BLOCK: label_value(request.block),
        LABEL_ACTION: label_value(request.action),
        LABEL_REVISION: request.revision[:12],
    }


def run_annotations(request: ActionRequest) -> dict[str, str]:
    """The annotations of a run's Job, pod and Secret: its exact inputs, unshortened."""
    return {ANNOTATION_COMMIT: request.revision, ANNOTATION_BLOCK_REF: request.pin}


RESERVED_LABELS = frozenset({MANAGED_BY, LABEL_JOB})
"""Labels the runner relies on (adoption, finding the pod): callers may not set them."""


def extra_labels(labels: Mapping[str, str]) -> dict[str, str]:
    """Caller's labels for a run's objects, values made valid (:func:`label_value`).

    They are merged over :func:`run_labels`, so they may replace e.g. ``cratekeeper.dev/workspace``
    (the operator sets it to the Workspace object's name), but not :data:`RESERVED_LABELS`.
    """
    reserved = sorted(RESERVED_LABELS.intersection(labels))
    if reserved:
        raise ValueError(f"the kubernetes runner sets {', '.join(reserved)} itself")
    return {key: label_value(value) for key, value in labels.items()}


# --- reading results (pure) --------------------------------------------------------------


def job_outcome(job: Job) -> RunStatus | None:
    """How a Job ended, from its conditions; None while it runs."""
    failed = job.condition("Failed")
    if failed is not None:
        return "timedOut" if failed.reason == "DeadlineExceeded" else "failed"
    if job.condition("Complete") is not None:
        return "succeeded"
    return None
