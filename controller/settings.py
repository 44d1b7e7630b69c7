"""The one settings object: ``CRATEKEEPER_*`` environment variables, CLI flags mapped onto it."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from controller.errors import SettingsError


def _default_cache_dir() -> Path:
    return Path.home() / ".cache" / "cratekeeper"


class Settings(BaseSettings):
    """Process-wide settings. Read once at start-up; passed down explicitly, never re-read."""

    model_config = SettingsConfigDict(env_prefix="CRATEKEEPER_", extra="ignore")

    runner: Literal["local", "docker", "kubernetes"] | None = Field(
        default=None,
        description="Where actions run: ansible-playbook here, a Docker container, or a Job. "
        "Unset: the operator (`run`) starts Kubernetes Jobs, the CLI runs ansible-playbook here; "
        "the operator runs Ansible in its own process only with an explicit `local`.",
    )
    execution_image: str = Field(
        default="ghcr.io/cratekeeper/cratekeeper-execution:0.1.0",
        description="The Ansible execution image of the docker and kubernetes runners.",
    )
    prepare_image: str = Field(
        default="ghcr.io/cratekeeper/cratekeeper:0.1.0",
        description="Init-container image of kubernetes-runner Jobs (cratekeeper and git).",
    )
    job_image_pull_secrets: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Comma-separated Secret names the kubernetes runner's job pods pull their "
        "images with (in the Workspace's namespace), unless spec.runner.imagePullSecrets is set.",
    )
    docker_network: str = Field(
        default="bridge", description="Network mode of docker-runner containers (e.g. host)."
    )
    kubeconfig: Path | None = Field(
        default=None,
        description="Management-cluster kubeconfig for `run` (in-cluster config if unset).",
    )
    namespaces: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Comma-separated namespaces `run` watches; empty: the whole cluster.",
    )
    webhook_port: int | None = Field(default=9000, description="Git push webhook receiver.")
    metrics_port: int | None = Field(default=9090, description="/metrics (and /healthz).")
    health_port: int | None = Field(default=None, description="/healthz and /readyz alone.")
    log_level: str = Field(default="INFO", description="DEBUG, INFO, WARNING or ERROR.")
    max_concurrent_runs: int = Field(
        default=4,
        ge=1,
        description="Block runs (Jobs, containers, playbooks) in flight at once across all "
        "Workspaces; Git checks never wait for them.",
    )
    max_concurrent_checks: int = Field(
        default=8,
        ge=1,
        description="Git checks (ls-remote, fetch) in flight at once across all Workspaces.",
    )
    retry_base: float = Field(
        default=10.0, gt=0, description="Seconds before the first retry of a failed revision."
    )
    retry_max: float = Field(default=600.0, gt=0, description="Longest wait between retries.")
    shutdown_grace: float = Field(
        default=300.0,
        gt=0,
        description="Seconds a tick in progress may take to finish on shutdown (the chart's "
        "terminationGracePeriodSeconds is longer).",
    )
    cache_dir: Path = Field(
        default_factory=_default_cache_dir,
        description="Where Git mirrors and pulled blocks (by digest) are cached.",
    )
    insecure_registries: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Comma-separated host[:port] allowed over plain HTTP; all others use HTTPS.",
    )
    registry_mirrors: Annotated[dict[str, str], NoDecode] = Field(
        default_factory=dict,
        description="Comma-separated registry=host[:port]: pull and push that registry's blocks "
        "through the mirror (block names and the blocks/ layout keep the original registry).",
    )
    ca_bundle: Path | None = Field(
        default=None,
        description="PEM file of the CAs that HTTPS registries are checked against (a private "
        "CA; the chart adds the system's). Git reads its own GIT_SSL_CAINFO.",
    )
    age_identity_file: Path | None = Field(
        default=None, description="File holding the age identity that decrypts *.age files."
    )
    age_identity: str | None = Field(
        default=None,
        description="The age identity itself (AGE-SECRET-KEY-1...), when no file is used.",
        repr=False,
    )
    age_passphrase: str | None = Field(
        default=None,
        description="A passphrase for passphrase-encrypted *.age files (instead of identities).",
        repr=False,
    )
    work_dir: Path | None = Field(
        default=None,
        description="Where workspaces are exported and blocks pulled for a run (default: $TMPDIR).",
    )
    allow_local_sources: bool = Field(
        default=False,
        description="Let `run` fetch file:// and path URLs (the demo, tests). Off: a Workspace "
        "could otherwise read any repository on the controller's disk, another tenant's cache "
        "included.",
    )
    max_block_size: int = Field(
        default=50 * 1024 * 1024,
        description="Largest unpacked block archive accepted from a registry, in bytes.",
    )
    blob_cache_max_bytes: int = Field(
        default=512 * 1024 * 1024,
        ge=0,
        description="Byte budget of the cache of pulled blobs (least recently used go first).",
    )

    label_selector: str | None = Field(
        default=None,
        description="Reconcile only the Workspaces whose labels match this selector (Kubernetes "
        "syntax: 'sharding.fluxcd.io/key in (shard1)', '!sharding.fluxcd.io/key' for the main "
        "shard); unset: every Workspace watched.",
    )
    shard: str | None = Field(
        default=None,
        pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$",
        description="This instance's shard name (with label_selector): Kopf's finalizer and "
        "annotations become <shard>.cratekeeper.dev/…, so instances never undo each other's. "
        "Unset for the main instance (cratekeeper.dev/…).",
    )
    leader_election: bool = Field(
        default=False,
        description="Reconcile only while holding the Lease `lease_name` (several replicas, one "
        "active); off: this process reconciles at once, alone.",
    )
    lease_name: str = Field(
        default="cratekeeper",
        description="The coordination.k8s.io Lease the replicas of one shard compete for.",
    )
    lease_namespace: str | None = Field(
        default=None,
        description="Namespace of the Lease (default: the operator's own, or the kubeconfig's).",
    )
    lease_identity: str | None = Field(
        default=None,
        description="This replica's name in the Lease (default: host name and a random suffix).",
    )
    lease_duration: float = Field(
        default=15.0,
        gt=0,
        description="Seconds a standby waits, after the holder last renewed, before it takes "
        "the Lease over: the longest hand-over after a replica dies.",
    )
    renew_deadline: float = Field(
        default=10.0,
        gt=0,
        description="Seconds the holder keeps reconciling without a successful renewal; then "
        "it stops its runs and exits (shorter than lease_duration).",
    )
    retry_period: float = Field(
        default=2.0,
        gt=0,
        description="Seconds between renewals (holder) and attempts to acquire (standby).",
    )

    @model_validator(mode="after")
    def _lease_timings(self) -> Settings:
        if not self.retry_period < self.renew_deadline < self.lease_duration:
            raise ValueError(
                "lease timings must be retry_period < renew_deadline < lease_duration, e.g. "
                "CRATEKEEPER_RETRY_PERIOD=2 CRATEKEEPER_RENEW_DEADLINE=10 "
                "CRATEKEEPER_LEASE_DURATION=15"
            )
        return self

    @field_validator("registry_mirrors", mode="before")
    @classmethod
    def _split_pairs(cls, value: object) -> object:
        if not isinstance(value, str):
            return value
        mirrors = {}
        for part in filter(None, (p.strip() for p in value.split(","))):
            registry, sep, endpoint = part.partition("=")
            if not sep or not registry.strip() or not endpoint.strip():
                raise ValueError(
                    f"{part!r} is not registry=host[:port], "
                    "e.g. registry.acme-corp.com=mirror.internal:5000"
                )
            mirrors[registry.strip()] = endpoint.strip()
        return mirrors

    @field_validator("insecure_registries", "namespaces", "job_image_pull_secrets", mode="before")
    @classmethod
    def _split_commas(cls, value: object) -> object:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value


def load_settings(**overrides: object) -> Settings:
    """Settings from the environment with ``overrides`` (CLI flags) on top, or a SettingsError
    naming the variable and what is wrong with it."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        problems = "; ".join(
            (f"CRATEKEEPER_{'_'.join(str(p) for p in err['loc']).upper()}: " if err["loc"] else "")
            + str(err["ctx"]["error"] if err["type"] == "value_error" else err["msg"])
            for err in exc.errors(include_url=False)
        )
        raise SettingsError(f"invalid settings: {problems}") from None


def env_names() -> list[str]:
    """The environment variables of the settings that are not secrets, lowercased (as
    pydantic-settings matches them: case-insensitively): what a reconcile with nothing to do
    compares with the last full one instead of validating them again (controller.cli.noop).
    Secrets (``repr=False``) are left out: they cannot fail validation, and no digest of a
    secret is kept."""
    prefix = Settings.model_config.get("env_prefix", "")
    return [
        f"{prefix}{name}".lower() for name, field in Settings.model_fields.items() if field.repr
    ]
