"""The one thin, typed Kubernetes adapter outside Kopf (STYLE.md: the house; DESIGN §6).

:mod:`controller.kube.config` decides which cluster (explicit kubeconfig, ``$KUBECONFIG``,
``~/.kube/config``, in-cluster) and gives Kopf the same credentials;
:mod:`controller.kube.adapter` holds :class:`Kube`, the async adapter over the ``kubernetes``
client (Workspaces, Alerts, Jobs, Secrets, pods, logs, Leases);
:mod:`controller.kube.values` the frozen values it returns and their converters from raw JSON
(:mod:`controller.kube.leases`: Leases); :mod:`controller.kube.calls` the one way a call is
made and its failures translated. API failures are :class:`~controller.errors.KubeError`
(re-exported here); a missing object is ``None``.
"""

from __future__ import annotations

from controller.errors import KubeAlreadyExistsError, KubeError, KubeLoginError
from controller.kube.adapter import (
    MERGE_PATCH,
    REQUEST_TIMEOUT,
    Kube,
    Labels,
    Manifest,
    Propagation,
)
from controller.kube.config import Cluster, Credentials, load_cluster
from controller.kube.leases import Lease, LeaseRecord
from controller.kube.values import (
    AlertObject,
    Condition,
    ContainerState,
    Job,
    Pod,
    Secret,
    Workspace,
)

__all__ = [
    "MERGE_PATCH",
    "REQUEST_TIMEOUT",
    "AlertObject",
    "Cluster",
    "Condition",
    "ContainerState",
    "Credentials",
    "Job",
    "Kube",
    "KubeAlreadyExistsError",
    "KubeError",
    "KubeLoginError",
    "Labels",
    "Lease",
    "LeaseRecord",
    "Manifest",
    "Pod",
    "Propagation",
    "Secret",
    "Workspace",
    "load_cluster",
]
