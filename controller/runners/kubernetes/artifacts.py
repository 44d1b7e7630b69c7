"""The operator's :class:`~controller.runners.artifacts.ArtifactStore`: one Secret per Workspace.

The packed ``artifacts/blocks/`` tree (:func:`controller.runners.artifacts.pack`, at most 512
KiB: a Secret holds 1 MiB) is the Secret's one key, :data:`KEY`. The Secret carries
``app.kubernetes.io/managed-by=cratekeeper`` and ``cratekeeper.dev/workspace=<Workspace
object name>``, the labels by which deleting the Workspace removes what cratekeeper made.
A Secret, not a ConfigMap: a block's artifacts may hold credentials it produced.
"""

from __future__ import annotations

import base64
import hashlib
from typing import Any

from controller.errors import KubeAlreadyExistsError
from controller.kube import Kube
from controller.runners.kubernetes.names import (
    LABEL_WORKSPACE,
    MANAGED_BY,
    label_value,
)

KEY = "artifacts.tar.gz"
PREFIX = "cratekeeper-artifacts-"
_NAME_LIMIT = 253


def artifacts_secret_name(workspace: str) -> str:
    """``cratekeeper-artifacts-<Workspace object name>``, hashed short past 253 characters."""
    name = f"{PREFIX}{workspace}"
    if len(name) <= _NAME_LIMIT:
        return name
    digest = hashlib.sha256(workspace.encode()).hexdigest()[:10]
    return f"{name[: _NAME_LIMIT - 11].rstrip('-.')}-{digest}"


class SecretStore:
    """Kept artifacts of the Workspace object ``workspace`` in ``namespace``."""

    def __init__(self, kube: Kube, namespace: str, workspace: str) -> None:
        self._kube = kube
        self.namespace = namespace
        self.workspace = workspace
        self.name = artifacts_secret_name(workspace)
        self._last: bytes | None = None  # what the Secret holds, as far as this store knows

    async def load(self) -> bytes | None:
        secret = await self._kube.get_secret(self.namespace, self.name)
        self._last = secret.data.get(KEY) if secret is not None else None
        return self._last

    async def save(self, data: bytes) -> None:
        """Create or replace the Secret; an unchanged tree (packs are reproducible) costs no
        write."""
        if data == self._last:
            return
        manifest = self.manifest(data)
        try:
            await self._kube.create_secret(self.namespace, manifest)
        except KubeAlreadyExistsError:
            await self._kube.replace_secret(self.namespace, manifest)
        self._last = data

    def manifest(self, data: bytes) -> dict[str, Any]:
        """The Secret holding ``data``."""
        return {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {
                "name": self.name,
                "labels": {
                    MANAGED_BY: "cratekeeper",
                    LABEL_WORKSPACE: label_value(self.workspace),
                },
            },
            "type": "Opaque",
            "data": {KEY: base64.b64encode(data).decode()},
        }
