"""The ``kubernetes`` runner: each block action as a Job, followed to its end, adopted on restart.

:mod:`~controller.runners.kubernetes.names` (names, labels, a Job's outcome),
:mod:`~controller.runners.kubernetes.layout` (the pod's paths and entry script) and
:mod:`~controller.runners.kubernetes.manifests` (the Job and Secret manifests) hold the pure
builders; :mod:`~controller.runners.kubernetes.earlier` waits for a Workspace's earlier Jobs;
:mod:`~controller.runners.kubernetes.artifacts` keeps a Workspace's artifacts in a Secret;
:mod:`~controller.runners.kubernetes.runner` holds :class:`KubernetesRunner`, which sends them
through :class:`controller.kube.Kube`. The design is written up in docs/kubernetes-runner.md.
"""

from __future__ import annotations

from controller.runners.kubernetes.layout import (
    DEFAULT_PATH,
    EVENTS_FILE,
    GIT_AUTH_DIR,
    HOME_DIR,
    MAIN,
    PREPARE,
    REGISTRY_AUTH_DIR,
    RUN_AS,
    RUN_DIR,
    RUN_SCRIPT,
    TERMINATION_LOG,
    TMP_DIR,
    TOOLS_DIR,
    WORKSPACE_DIR,
)
from controller.runners.kubernetes.manifests import (
    PodOptions,
    WorkspaceSource,
    job_manifest,
    main_env,
    prepare_args,
    secret_data,
    secret_manifest,
)
from controller.runners.kubernetes.names import (
    ANNOTATION_BLOCK_REF,
    ANNOTATION_COMMIT,
    LABEL_ACTION,
    LABEL_BLOCK,
    LABEL_JOB,
    LABEL_REVISION,
    LABEL_WORKSPACE,
    MANAGED_BY,
    RESERVED_LABELS,
    extra_labels,
    job_name,
    job_outcome,
    label_value,
    run_annotations,
    run_labels,
)
from controller.runners.kubernetes.runner import KubernetesRunner

__all__ = [
    "ANNOTATION_BLOCK_REF",
    "ANNOTATION_COMMIT",
    "DEFAULT_PATH",
    "EVENTS_FILE",
    "GIT_AUTH_DIR",
    "HOME_DIR",
    "LABEL_ACTION",
    "LABEL_BLOCK",
    "LABEL_JOB",
    "LABEL_REVISION",
    "LABEL_WORKSPACE",
    "MAIN",
    "MANAGED_BY",
    "PREPARE",
    "REGISTRY_AUTH_DIR",
    "RESERVED_LABELS",
    "RUN_AS",
    "RUN_DIR",
    "RUN_SCRIPT",
    "TERMINATION_LOG",
    "TMP_DIR",
    "TOOLS_DIR",
    "WORKSPACE_DIR",
    "KubernetesRunner",
    "PodOptions",
    "WorkspaceSource",
    "extra_labels",
    "job_manifest",
    "job_name",
    "job_outcome",
    "label_value",
    "main_env",
    "prepare_args",
    "run_annotations",
    "run_labels",
    "secret_data",
    "secret_manifest",
]
