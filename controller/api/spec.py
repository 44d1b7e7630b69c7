"""``Workspace.spec`` (DESIGN §3): where the workspace lives and how to apply it."""

from __future__ import annotations

import re
from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

GROUP = "cratekeeper.dev"
VERSION = "v1alpha1"
PLURAL = "workspaces"
KIND = "Workspace"
SHORT_NAMES = ("ws",)
REQUESTED_AT = f"{GROUP}/requested-at"
"""Annotation: reconcile now (any new value); answered in ``status.lastHandledReconcileAt``."""
REAPPLY_AT = f"{GROUP}/reapply-at"
"""Annotation: run every block of the current revision again (any new value); answered in
``status.lastHandledReapplyAt`` once that succeeded."""
PUSHED_AT = f"{GROUP}/pushed-at"
"""Annotation: a signed push arrived at a replica that does not reconcile this Workspace (a
standby, another shard); the one that does checks the source at once (not forced)."""

_DURATION = re.compile(r"^([0-9]+(\.[0-9]+)?(ms|s|m|h))+$")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(text: str) -> float:
    """A Go/Flux-style duration (``1m30s``, ``5m``, ``1h``) in seconds."""
    if not _DURATION.match(text):
        raise ValueError(f"{text!r} is not a duration; write e.g. 30s, 5m or 1h30m")
    return sum(
        float(n) * _UNITS[u] for n, _, u in re.findall(r"([0-9]+(\.[0-9]+)?)(ms|s|m|h)", text)
    )


class _Model(BaseModel):
    model_config = ConfigDict(populate_by_name=True, extra="forbid", frozen=True)


class SecretRef(_Model):
    """A Secret in the Workspace's namespace."""

    name: str = Field(min_length=1, description="Name of the Secret.")


class GitRefSpec(_Model):
    """Exactly one of branch, tag or commit."""

    branch: str | None = Field(default=None, description="Follow this branch.")
    tag: str | None = Field(default=None, description="Apply this tag.")
    commit: str | None = Field(
        default=None, pattern=r"^[0-9a-f]{40}$", description="Apply this full commit SHA."
    )

    @model_validator(mode="after")
    def _exactly_one(self) -> GitRefSpec:
        given = [k for k in ("branch", "tag", "commit") if getattr(self, k)]
        if len(given) != 1:
            raise ValueError("set exactly one of branch, tag or commit")
        return self


Duration = Annotated[str, Field(pattern=_DURATION.pattern)]


class SourceSpec(_Model):
    """The Git repository holding the workspace."""

    url: str = Field(
        pattern=r"^(https?|ssh|git|file)://.+|^[A-Za-z0-9._-]+@[A-Za-z0-9.-]+:.+$",
        description="Repository URL: https://, ssh://, git://, or scp-like git@host:path.",
    )
    ref: GitRefSpec = Field(default_factory=lambda: GitRefSpec(branch="main"))
    path: str = Field(default="", description="Folder of the workspace inside the repository.")
    secret_ref: SecretRef | None = Field(
        default=None,
        alias="secretRef",
        description="Secret with username/password (HTTPS) or identity/known_hosts (SSH).",
    )
    interval: Duration = Field(default="5m", description="How often to poll the repository.")

    @field_validator("url")
    @classmethod
    def _no_password(cls, value: str) -> str:
        # A password in the URL would be copied into Job specs, events and logs.
        if "://" in value and urlsplit(value).password is not None:
            raise ValueError(
                "the URL carries a password; put credentials in a Secret named by "
                "spec.source.secretRef (keys username and password) and remove them from the URL"
            )
        return value

    @field_validator("interval")
    @classmethod
    def _positive(cls, value: str) -> str:
        if parse_duration(value) <= 0:
            raise ValueError("interval must be longer than 0s")
        return value


class RegistrySpec(_Model):
    secret_ref: SecretRef | None = Field(
        default=None, alias="secretRef", description="Secret with a .dockerconfigjson key."
    )


class DecryptionSpec(_Model):
    secret_ref: SecretRef | None = Field(
        default=None,
        alias="secretRef",
        description="Secret with an age identity (identity.agekey) or a passphrase.",
    )


class ResourcesSpec(_Model):
    limits: dict[str, str] = Field(default_factory=dict)
    requests: dict[str, str] = Field(default_factory=dict)


class RunnerSpec(_Model):
    """How the Ansible job runs."""

    image: str | None = Field(default=None, description="Execution image; the chart's default.")
    service_account_name: str | None = Field(
        default=None,
        alias="serviceAccountName",
        description="Service account of the job pod; none (no token) when unset.",
    )
    timeout: Duration = Field(default="30m", description="A run past this is stopped.")
    resources: ResourcesSpec = Field(default_factory=ResourcesSpec)
    image_pull_secrets: list[SecretRef] = Field(
        default_factory=list,
        alias="imagePullSecrets",
        description="Secrets (in this namespace) the job pod pulls its images with; "
        "replaces the operator's default list (CRATEKEEPER_JOB_IMAGE_PULL_SECRETS) when set.",
    )


class DriftSpec(_Model):
    """Drift detection (docs/drift.md): each applied block's action in Ansible check mode."""

    interval: Duration = Field(
        default="1h",
        description="How often every applied block's action runs in check mode "
        "(--check --diff) against the cluster, at the applied revision and block digest.",
    )
    correct: bool = Field(
        default=False,
        description="Re-apply the blocks found drifted (recorded in history as a correction); "
        "false: only report (the Drifted condition, an event, a metric).",
    )

    @field_validator("interval")
    @classmethod
    def _positive(cls, value: str) -> str:
        if parse_duration(value) <= 0:
            raise ValueError("interval must be longer than 0s")
        return value


ForgeProvider = Literal["github", "gitlab", "gitea"]
AlertType = Literal["slack", "teams", "webhook"]
EventKind = Literal["RunFailed", "RunSucceeded", "RollbackApplied", "DriftFound", "Stalled"]
EVENT_KINDS: tuple[EventKind, ...] = (
    "RunFailed",
    "RunSucceeded",
    "RollbackApplied",
    "DriftFound",
    "Stalled",
)


class CommitStatusSpec(_Model):
    """A commit status on the forge for each revision attempted (docs/notifications.md)."""

    secret_ref: SecretRef = Field(
        alias="secretRef", description="Secret with the forge API token (key token)."
    )
    provider: ForgeProvider | None = Field(
        default=None,
        description="github, gitlab or gitea (Forgejo too); derived from spec.source.url's "
        "host when unset (github.com, gitlab.*, gitea.*, forgejo.*, codeberg.org).",
    )
    api_url: str | None = Field(
        default=None,
        alias="apiURL",
        pattern=r"^https?://[^/@\s]+(/.*)?$",
        description="The forge's API root (GitHub Enterprise: https://HOST/api/v3, GitLab: "
        "https://HOST/api/v4, Gitea: https://HOST/api/v1); derived from the source URL's host "
        "when unset.",
    )
    repository: str | None = Field(
        default=None,
        pattern=r"^[^/\s]+(/[^/\s]+)+$",
        description="owner/repo (GitLab: group/subgroup/project); the source URL's path when "
        "unset.",
    )


class AlertSpec(_Model):
    """One alert channel: which events go where (docs/notifications.md)."""

    type: AlertType = Field(description="slack, teams or webhook (JSON, HMAC-SHA256 signed).")
    secret_ref: SecretRef = Field(
        alias="secretRef",
        description="Secret with the webhook URL (key address); for type webhook also the "
        "HMAC key (key token).",
    )
    events: list[EventKind] = Field(
        default_factory=lambda: list(EVENT_KINDS),
        min_length=1,
        description="The event kinds sent (default: all).",
    )
    window: Duration = Field(
        default="1h",
        description="At most one alert per event kind and revision in this window, so a "
        "retry loop never floods the channel.",
    )


class NotifySpec(_Model):
    """Who hears about this Workspace's runs."""

    commit_status: CommitStatusSpec | None = Field(default=None, alias="commitStatus")
    alerts: list[AlertSpec] = Field(default_factory=list)


class WorkspaceSpec(_Model):
    """What a Workspace asks for."""

    source: SourceSpec
    registry: RegistrySpec = Field(default_factory=RegistrySpec)
    decryption: DecryptionSpec = Field(default_factory=DecryptionSpec)
    action: str = Field(default="deploy", min_length=1, description="Action run per change.")
    workflow: str | None = Field(
        default=None,
        min_length=1,
        description="A workflow of workspace.poly: changed blocks run in its order and actions.",
    )
    allow_prompted_actions: bool = Field(
        default=False,
        alias="allowPromptedActions",
        description="Run actions, workflows and steps that have a prompt: (a person would "
        "confirm them in Polycrate); off, such a run is refused.",
    )
    runner: RunnerSpec = Field(default_factory=RunnerSpec)
    drift: DriftSpec | None = Field(
        default=None, description="Drift detection; none (off) when unset."
    )
    notify: NotifySpec = Field(
        default_factory=NotifySpec, description="Commit statuses on the forge and alerts."
    )
    suspend: bool = Field(default=False, description="Stop applying; status stays as it is.")
    history_limit: int = Field(
        default=10, ge=1, le=100, alias="historyLimit", description="History entries kept."
    )
