"""The one error the sandbox raises on purpose: a part of the demo cannot run here."""

from __future__ import annotations

from controller.errors import CratekeeperError


class SandboxUnavailable(CratekeeperError):
    """A sandbox server (the local registry, the emulated cluster) cannot be started."""

    reason = "SandboxUnavailable"
