"""The model's half of the runtime contract: the snapshot and the rendered script of one run,
built from the resolved workspace (a :class:`~controller.runners.base.RunContract`).

The runner calls it once it knows where it put things (:class:`RunPaths`); the pipeline
renders every script once before anything runs (:func:`preflight`), so a line that cannot be
rendered fails the reconcile before the first action, never half-way or half-rendered.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from controller.errors import RunError
from controller.runners.base import RunPaths
from controller.workspace.snapshot import SnapshotInput, build_snapshot
from controller.workspace.templates import TemplateError, render_script

PREFLIGHT = RunPaths(
    root="/workspace",
    kubeconfig="/workspace/artifacts/secrets/kubeconfig.yml",
    snapshot="/run/cratekeeper/snapshot.yml",
)
"""Stand-in paths for the render before the run (the real ones differ per runner)."""


class ModelContract:
    """The snapshot and script of one run of one block action."""

    def __init__(self, data: SnapshotInput, script: Sequence[str] | None, where: str) -> None:
        self._data = data
        self._script = tuple(script or ())
        self._where = where

    def snapshot(self, paths: RunPaths) -> Mapping[str, Any]:
        return build_snapshot(
            self._data, root=paths.root, kubeconfig=paths.kubeconfig, snapshot_file=paths.snapshot
        )

    def script(self, paths: RunPaths) -> tuple[str, ...]:
        if not self._script:
            return ()
        context = build_snapshot(
            self._data,
            root=paths.root,
            kubeconfig=paths.kubeconfig,
            snapshot_file=paths.snapshot,
            with_env=True,  # script lines may read {{ .env.X }}
        )
        try:
            return render_script(self._script, context, self._where)
        except TemplateError as exc:
            raise RunError(str(exc)) from None

    def preflight(self) -> None:
        """Render everything once with stand-in paths; a :class:`RunError` says what fails."""
        self.snapshot(PREFLIGHT)
        self.script(PREFLIGHT)

    def __repr__(self) -> str:
        return f"ModelContract({self._where})"  # the snapshot holds decrypted secrets
