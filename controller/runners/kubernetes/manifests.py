"""Pure builders of the ``kubernetes`` runner: the Job and Secret manifests (names and labels
are :mod:`controller.runners.kubernetes.names`).

Nothing here talks to a cluster: each function takes values (an :class:`ActionRequest`, the
pod's knobs, where the workspace comes from) and returns manifests (dicts), so they are
tested as plain data. :mod:`controller.runners.kubernetes.runner` sends what they make. The
paths and names they lay out are :mod:`controller.runners.kubernetes.layout`; the layout
(volumes, containers, the order Job → Secret → resume) is written up in
docs/kubernetes-runner.md.
"""

from __future__ import annotations

import base64
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from controller.kube import Job
from controller.runners.artifacts import KEPT, pack
from controller.runners.base import ActionRequest
from controller.runners.contract import (
    action_env,
    command,
    script_text,
    snapshot_text,
    workdir,
)

# Re-exported (imported from here by .collect and the e2e test):
from controller.runners.kubernetes.layout import ARTIFACTS_KEY as ARTIFACTS_KEY
from controller.runners.kubernetes.layout import (
    CA_DIR,
    CA_KEY,
    DEFAULT_PATH,
    EVENTS_FILE,
    GIT_AUTH_DIR,
    HOME_DIR,
    KEPT_DIR,
    KEPT_KEY,
    PATHS,
    PREPARE,
    REGISTRY_AUTH_DIR,
    RUN_AS,
    RUN_DIR,
    RUN_SCRIPT,
    SCRIPT_FILE,
    TERMINATION_LOG,
    TMP_DIR,
    TOOLS_DIR,
    WORKSPACE_DIR,
)
from controller.runners.kubernetes.layout import MAIN as MAIN
from controller.runners.kubernetes.names import (
    LABEL_JOB,
    run_annotations,
    run_labels,
)


@dataclass(frozen=True)
class WorkspaceSource:
    """Where the pod fetches from: the Workspace's ``spec.source`` and ``spec.registry``."""

    url: str
    path: str = ""
    git_secret: str | None = None
    """Secret with ``username``/``password`` or ``identity``/``known_hosts`` (Flux's keys)."""
    registry_secret: str | None = None
    """Secret of type ``kubernetes.io/dockerconfigjson`` (key ``.dockerconfigjson``)."""


@dataclass(frozen=True)
class PodOptions:
    """The pod-level knobs: images, service account, resources, lifetime."""

    image: str
    """The Ansible execution image (the main container)."""
    prepare_image: str
    """An image with cratekeeper and git (the init container)."""
    service_account_name: str | None = None
    image_pull_secrets: tuple[str, ...] = ()
    """Secrets in the Job's namespace that the kubelet pulls both images with."""
    resources: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    ttl_seconds_after_finished: int = 3600
    insecure_registries: tuple[str, ...] = ()
    path: str = DEFAULT_PATH
    """``PATH`` of the main container (action_env replaces the image's environment)."""
    ca_bundle: bytes | None = field(default=None, repr=False)
    """PEM bundle the init container checks HTTPS Git servers and registries against, instead
    of the image's CAs (the chart's bundle holds the system CAs and the private ones)."""
    registry_mirrors: tuple[tuple[str, str], ...] = ()
    """``(registry, endpoint)``: the init container pulls through the operator's mirrors."""
    max_block_size: int | None = None
    """The operator's largest unpacked block; None: prepare's default."""
    termination_grace_seconds: int = 10
    """The pod's terminationGracePeriodSeconds: at least the operator's shutdown grace."""


def secret_data(
    request: ActionRequest,
    env: Mapping[str, str] | None = None,
    *,
    ca_bundle: bytes | None = None,
    artifacts_key: bytes | None = None,
) -> dict[str, str]:
    """The run's Secret ``data``: the decrypted kubeconfig, the snapshot, a script action's
    rendered script (which may quote secret config too) and the Workspace's kept artifacts
    (bounded by :data:`controller.runners.artifacts.MAX_PACKED`), for prepare to lay back.
    ``env`` (the main container's, :func:`main_env`) goes into the snapshot as ``env``;
    ``artifacts_key`` (:func:`controller.runners.sealed.new_key`) is :data:`ARTIFACTS_KEY`."""
    data = {
        "kubeconfig": request.kubeconfig,
        "snapshot.yml": snapshot_text(request, PATHS, env).encode(),
    }
    script = script_text(request, PATHS)
    if script is not None:
        data["script.sh"] = script.encode()
    if (request.workspace_dir / KEPT).is_dir():  # what the pipeline laid back: to the pod
        data[KEPT_KEY] = pack(request.workspace_dir)
    if ca_bundle is not None:
        data[CA_KEY] = ca_bundle
    if artifacts_key is not None:
        data[ARTIFACTS_KEY] = artifacts_key
    return {key: base64.b64encode(value).decode() for key, value in data.items()}


def secret_manifest(
    request: ActionRequest,
    owner: Job,
    *,
    labels: Mapping[str, str] = {},
    env: Mapping[str, str] | None = None,
    ca_bundle: bytes | None = None,
    artifacts_key: bytes | None = None,
) -> dict[str, Any]:
    """The run's Secret, owned by its Job so that it is collected with it.

    ``labels`` (see :func:`extra_labels`) are merged over :func:`run_labels`, as on the Job;
    ``ca_bundle`` is :attr:`PodOptions.ca_bundle`; ``artifacts_key`` see :func:`secret_data`.
    """
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {
            "name": owner.name,
            "labels": {**run_labels(request), **labels, LABEL_JOB: owner.name},
            "annotations": run_annotations(request),
            "ownerReferences": [
                {
                    "apiVersion": "batch/v1",
                    "kind": "Job",
                    "name": owner.name,
                    "uid": owner.uid,
                    "controller": True,
                }
            ],
        },
        "type": "Opaque",
        "immutable": True,
        "data": secret_data(request, env, ca_bundle=ca_bundle, artifacts_key=artifacts_key),
    }


def prepare_args(request: ActionRequest, source: WorkspaceSource, options: PodOptions) -> list[str]:
    """The init container's arguments to ``python -m controller.runners.prepare``."""
    args = [
        *("--repo", source.url, "--commit", request.revision, "--path", source.path),
        *("--dest", WORKSPACE_DIR, "--tools", TOOLS_DIR),
        *("--cache", f"{TMP_DIR}/cache", "--termination-log", TERMINATION_LOG),
    ]
    if request.ref is not None:  # a local block is in the workspace's own tree
        args += ["--block", str(request.ref)]
    args += ["--artifacts", f"{KEPT_DIR}/{KEPT_KEY}", "--artifacts-dir", request.artifacts_dir]
    if source.git_secret:
        args += ["--git-auth", GIT_AUTH_DIR]
    if source.registry_secret:
        args += ["--docker-config", f"{REGISTRY_AUTH_DIR}/config.json"]
    for host in options.insecure_registries:
        args += ["--insecure-registry", host]
    if options.ca_bundle is not None:
        args += ["--ca-bundle", f"{CA_DIR}/{CA_KEY}"]
    for registry, endpoint in options.registry_mirrors:
        args += ["--registry-mirror", f"{registry}={endpoint}"]
    if options.max_block_size is not None:
        args += ["--max-block-size", str(options.max_block_size)]
    return args


def main_env(request: ActionRequest, options: PodOptions) -> dict[str, str]:
    """The main container's environment: the local runner's, with the pod's paths (and the
    block's artifacts folder, for :data:`RUN_SCRIPT`'s count, and where it finds the sealer and
    the run's artifacts key; the run id, the Job's name, is added by :func:`job_manifest`)."""
    env = action_env(
        request,
        PATHS,
        home=HOME_DIR,
        events_file=EVENTS_FILE,
        path=options.path,
        plugins=TOOLS_DIR,
        in_container=True,
        script=SCRIPT_FILE if request.has_script else None,
    )
    env["CRATEKEEPER_ARTIFACTS_DIR"] = PATHS.under_root(request.artifacts_dir)
    env["CRATEKEEPER_ARTIFACTS_KEY"] = f"{RUN_DIR}/{ARTIFACTS_KEY}"
    env["CRATEKEEPER_SEALER"] = f"{TOOLS_DIR}/sealed.py"
    return env


def _security_context() -> dict[str, Any]:
    return {
        "runAsNonRoot": True,
        "runAsUser": RUN_AS,
        "runAsGroup": RUN_AS,
        "privileged": False,
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def _mount(name: str, path: str, *, read_only: bool = False) -> dict[str, Any]:
    return {"name": name, "mountPath": path, "readOnly": read_only}


def _env_list(env: Mapping[str, str]) -> list[dict[str, str]]:
    return [{"name": key, "value": value} for key, value in sorted(env.items())]


def job_manifest(
    request: ActionRequest,
    name: str,
    options: PodOptions,
    source: WorkspaceSource,
    *,
    labels: Mapping[str, str] = {},
) -> dict[str, Any]:
    """The run's Job, created suspended: the runner resumes it once its Secret exists.

    ``labels`` (see :func:`extra_labels`) are merged over :func:`run_labels` on the Job and its
    pod; the pod also gets :data:`LABEL_JOB`, by which the runner finds it.
    """
    resources = {k: dict(v) for k, v in options.resources.items() if v}
    common = {
        "securityContext": _security_context(),
        "resources": resources,
        "terminationMessagePath": TERMINATION_LOG,
        "terminationMessagePolicy": "File",
    }
    scratch = [_mount("tmp", TMP_DIR), _mount("home", HOME_DIR)]
    prepare_mounts = [
        *scratch,
        _mount("workspace", WORKSPACE_DIR),
        _mount("tools", TOOLS_DIR),
        _mount("kept", KEPT_DIR, read_only=True),
    ]
    volumes: list[dict[str, Any]] = [
        {"name": "workspace", "emptyDir": {}},
        {"name": "tmp", "emptyDir": {}},
        {"name": "home", "emptyDir": {}},
        {"name": "tools", "emptyDir": {}},
        # Secret volumes are tmpfs: the decrypted kubeconfig never touches the node's disk.
        {"name": "run", "secret": {"secretName": name, "defaultMode": 0o440}},
        # prepare sees the kept artifacts of the run's Secret, never its kubeconfig.
        {
            "name": "kept",
            "secret": {
                "secretName": name,
                "defaultMode": 0o440,
                "optional": True,
                "items": [{"key": KEPT_KEY, "path": KEPT_KEY}],
            },
        },
    ]
    if source.git_secret:
        prepare_mounts.append(_mount("git-auth", GIT_AUTH_DIR, read_only=True))
        volumes.append(
            {"name": "git-auth", "secret": {"secretName": source.git_secret, "defaultMode": 0o440}}
        )
    prepare_env = {"HOME": HOME_DIR, "LANG": "C.UTF-8", "PYTHONDONTWRITEBYTECODE": "1"}
    if options.ca_bundle is not None:
        prepare_mounts.append(_mount("ca", CA_DIR, read_only=True))
        volumes.append(
            {
                "name": "ca",
                "secret": {
                    "secretName": name,
                    "defaultMode": 0o444,
                    "items": [{"key": CA_KEY, "path": CA_KEY}],
                },
            }
        )
        prepare_env["GIT_SSL_CAINFO"] = f"{CA_DIR}/{CA_KEY}"  # git's own; the registry: --ca-bundle
    if source.registry_secret:
        prepare_mounts.append(_mount("registry-auth", REGISTRY_AUTH_DIR, read_only=True))
        volumes.append(
            {
                "name": "registry-auth",
                "secret": {
                    "secretName": source.registry_secret,
                    "defaultMode": 0o440,
                    "items": [{"key": ".dockerconfigjson", "path": "config.json"}],
                },
            }
        )
    prepare = {
        "name": PREPARE,
        "image": options.prepare_image,
        "command": ["python", "-m", "controller.runners.prepare"],
        "args": prepare_args(request, source, options),
        "workingDir": TMP_DIR,
        "env": _env_list(prepare_env),
        "volumeMounts": prepare_mounts,
        **common,
    }
    main = {
        "name": MAIN,
        "image": options.image,
        "command": ["/bin/sh", "-c", RUN_SCRIPT, "cratekeeper-run"],
        "args": command(request, PATHS, ansible_playbook="ansible-playbook", script=SCRIPT_FILE),
        "workingDir": workdir(request, PATHS),
        "env": _env_list({**main_env(request, options), "CRATEKEEPER_RUN_ID": name}),
        "volumeMounts": [
            *scratch,
            _mount("workspace", WORKSPACE_DIR),
            _mount("tools", TOOLS_DIR, read_only=True),
            _mount("run", RUN_DIR, read_only=True),
        ],
        **common,
    }
    pod_spec: dict[str, Any] = {
        "restartPolicy": "Never",
        "automountServiceAccountToken": options.service_account_name is not None,
        "enableServiceLinks": False,
        "terminationGracePeriodSeconds": options.termination_grace_seconds,
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": RUN_AS,
            "runAsGroup": RUN_AS,
            "fsGroup": RUN_AS,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "initContainers": [prepare],
        "containers": [main],
        "volumes": volumes,
    }
    if options.service_account_name:
        pod_spec["serviceAccountName"] = options.service_account_name
    if options.image_pull_secrets:
        pod_spec["imagePullSecrets"] = [{"name": n} for n in options.image_pull_secrets]
    labels, annotations = {**run_labels(request), **labels}, run_annotations(request)
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name, "labels": labels, "annotations": annotations},
        "spec": {
            "suspend": True,
            "backoffLimit": 0,
            "activeDeadlineSeconds": max(1, math.ceil(request.timeout)),
            "ttlSecondsAfterFinished": options.ttl_seconds_after_finished,
            "template": {
                "metadata": {"labels": {**labels, LABEL_JOB: name}, "annotations": annotations},
                "spec": pod_spec,
            },
        },
    }
