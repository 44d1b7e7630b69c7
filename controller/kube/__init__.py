"""The one thin, typed Kubernetes adapter outside Kopf (STYLE.md: the house).

:mod:`controller.kube.adapter` holds :class:`Kube`, the async adapter over the ``kubernetes``
client; :mod:`controller.kube.values` the frozen values it returns (:class:`Job`, :class:`Pod`,
:class:`Secret`...) and their converters from raw JSON. API failures are
:class:`~controller.errors.KubeError` (re-exported here); a missing object is ``None``.
"""

from __future__ import annotations

from controller.errors import KubeAlreadyExistsError, KubeError
from controller.kube.adapter import REQUEST_TIMEOUT, Kube, Manifest, Propagation
from controller.kube.values import Condition, ContainerState, Job, Pod, Secret

__all__ = [
    "REQUEST_TIMEOUT",
    "Condition",
    "ContainerState",
    "Job",
    "Kube",
    "KubeAlreadyExistsError",
    "KubeError",
    "Manifest",
    "Pod",
    "Propagation",
    "Secret",
]
