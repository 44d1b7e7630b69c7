"""One error hierarchy for cratekeeper.

Every error carries a machine-readable ``reason`` (used verbatim as the reason of a status
condition) and a human message that says what to fix. Messages never contain secrets:
callers pass redacted URLs and never include file contents of credentials or kubeconfigs.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar


class CratekeeperError(Exception):
    """Base of every error cratekeeper raises on purpose."""

    reason: ClassVar[str] = "Error"
    retryable: ClassVar[bool] = True
    """False when trying the same thing again cannot succeed (tampered content, an unsafe
    archive): the status stalls instead of retrying with backoff."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


@dataclass(frozen=True)
class Problem:
    """One thing wrong (or suspicious) in a workspace file, located by file and line."""

    file: str
    line: int | None
    message: str
    severity: str = "error"  # "error" or "warning"

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        prefix = "warning: " if self.severity == "warning" else ""
        return f"{where}: {prefix}{self.message}"


class SettingsError(CratekeeperError):
    """A CRATEKEEPER_* variable or command-line flag has an invalid value."""

    reason = "InvalidSettings"


class WorkspaceError(CratekeeperError):
    """The workspace (workspace.poly, block.poly, kubeconfig layout) is invalid."""

    reason = "InvalidWorkspace"

    def __init__(self, problems: Sequence[Problem] | str) -> None:
        if isinstance(problems, str):
            problems = [Problem(file="workspace", line=None, message=problems)]
        self.problems: tuple[Problem, ...] = tuple(problems)
        super().__init__("; ".join(str(p) for p in self.problems))


class BlockError(WorkspaceError):
    """A block.poly is invalid, or does not match the reference it was pulled by."""

    reason = "InvalidBlock"


class InvalidReferenceError(CratekeeperError, ValueError):
    """A ``from:`` value that is not a pinned block reference (the message says what to write)."""

    reason = "InvalidReference"


class KubeconfigError(CratekeeperError):
    """The workspace does not hold exactly one kubeconfig where cratekeeper expects it."""

    reason = "KubeconfigInvalid"


class DecryptionError(CratekeeperError):
    """An age-encrypted file could not be decrypted (missing or wrong identity)."""

    reason = "DecryptionFailed"


class SourceError(CratekeeperError):
    """Fetching the workspace from Git failed."""

    reason = "GitFetchFailed"


class GitUnreachableError(SourceError):
    reason = "GitUnreachable"


class GitAuthError(SourceError):
    reason = "GitAuthenticationFailed"


class GitRefNotFoundError(SourceError):
    reason = "GitRefNotFound"


class GitHistoryRewrittenError(SourceError):
    reason = "GitHistoryRewritten"


class GitTimeoutError(SourceError):
    """A Git command did not finish in time (it and its children were killed)."""

    reason = "GitTimedOut"


class StatusUnreadableError(CratekeeperError):
    """A recorded status (a Workspace's ``.status``, a state file) does not validate in a part
    a reconcile needs: nothing runs until a person repairs it."""

    reason = "StatusUnreadable"


class RegistryError(CratekeeperError):
    """Pushing or pulling a block from an OCI registry failed (every pull failure is one)."""

    reason = "PullFailed"


class RegistryUnreachableError(RegistryError):
    reason = "RegistryUnreachable"


class RegistryAuthError(RegistryError):
    reason = "RegistryAuthenticationFailed"


class ArtifactNotFoundError(RegistryError):
    reason = "BlockNotFound"


class DigestMismatchError(RegistryError):
    """Content does not hash to what the manifest, config or labels say: tampered or corrupt."""

    reason = "DigestMismatch"
    retryable = False


class UnsafeArchiveError(RegistryError):
    reason = "UnsafeBlockArchive"
    retryable = False


class BlockMismatchError(RegistryError):
    """The pulled artifact's block.poly names another block or version than its reference."""

    reason = "BlockMismatch"
    retryable = False


class RunError(CratekeeperError):
    """Running a block action failed."""

    reason = "RunFailed"


class ArtifactsError(RunError):
    """A block's kept artifacts cannot be kept (over the size budget) or laid back (unsafe or
    unreadable archive)."""

    reason = "ArtifactsNotKept"


class KubeError(RunError):
    """The Kubernetes API refused a request or could not be reached (``controller.kube``).

    ``status`` is the HTTP status when the API server answered (None when it could not be
    reached), ``api_reason`` the ``reason`` of its ``Status`` object (e.g. ``Forbidden``).
    """

    reason = "KubernetesApiError"

    def __init__(self, message: str, *, status: int | None = None, api_reason: str = "") -> None:
        super().__init__(message)
        self.status = status
        self.api_reason = api_reason


class KubeAlreadyExistsError(KubeError):
    """A create found an object of that name (HTTP 409, reason ``AlreadyExists``)."""

    reason = "KubernetesObjectExists"


class KubeLoginError(KubeError):
    """No usable cluster configuration: no kubeconfig and not in a pod, a kubeconfig that cannot
    be loaded, or credentials (an exec plugin, a token refresh) that cannot be obtained."""

    reason = "KubernetesLoginFailed"


class LeaseLostError(CratekeeperError):
    """The active replica could not renew its Lease within the renew deadline: it stops its
    runs and exits, so the replica that takes over never works beside it."""

    reason = "LeaseLost"


class SecretNotFoundError(CratekeeperError):
    """A Secret named in the Workspace's spec is missing, or lacks the key it needs."""

    reason = "SecretNotFound"


class SecretInvalidError(CratekeeperError):
    """A Secret holds a value that cannot be used as it is (the message names the key, never
    the value)."""

    reason = "SecretInvalid"


class NotifyError(CratekeeperError):
    """A commit status or an alert could not be delivered (the forge or chat service is down,
    refused the token, or a notification Secret is missing). Never fails a run; the message
    names the channel and the Secret, never a token or a webhook URL."""

    reason = "NotificationFailed"


class InternalError(CratekeeperError):
    """Something failed that cratekeeper did not expect (a bug, a full disk): the details are
    in the controller's log; the message names only the exception type (it may hold secrets)."""

    reason = "InternalError"
