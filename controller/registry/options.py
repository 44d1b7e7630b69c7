"""How to reach registries: plain-HTTP hosts, mirrors, credentials, cache and limits."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from controller.registry.auth import Credentials, DockerConfig

if TYPE_CHECKING:
    from controller.settings import Settings

_DEFAULT_MAX_BLOCK_SIZE = 50 * 1024 * 1024


@dataclass(frozen=True)
class RegistryOptions:
    """How to reach registries: plain-HTTP hosts, credentials, cache and size limit."""

    insecure_registries: tuple[str, ...] = ()
    docker_config: DockerConfig | None = field(default=None, repr=False)
    cache_dir: Path | None = None
    max_block_size: int = _DEFAULT_MAX_BLOCK_SIZE
    cache_max_bytes: int | None = None
    """Byte budget of the blob cache (least recently used blobs go first); None: unbounded."""
    timeout: float = 30.0
    mirrors: tuple[tuple[str, str], ...] = ()
    """``(registry, endpoint)`` pairs: requests for ``registry`` go to ``endpoint`` instead
    (an air-gapped mirror, or the demo's local registry); names and paths stay the same."""
    ca_bundle: Path | None = None
    """PEM file of the CAs that HTTPS registries' certificates are checked against (a private
    CA); the system's CAs when unset."""

    @classmethod
    def from_settings(
        cls, settings: Settings, *, docker_config: Path | DockerConfig | None = None
    ) -> RegistryOptions:
        """Options from the process settings; ``docker_config`` is a file or a parsed config."""
        if isinstance(docker_config, Path):
            docker_config = DockerConfig.from_file(docker_config)
        return cls(
            insecure_registries=tuple(settings.insecure_registries),
            docker_config=docker_config,
            cache_dir=settings.cache_dir,
            max_block_size=settings.max_block_size,
            cache_max_bytes=settings.blob_cache_max_bytes,
            mirrors=tuple(sorted(settings.registry_mirrors.items())),
            ca_bundle=settings.ca_bundle,
        )

    def endpoint(self, registry: str) -> str:
        """The ``host[:port]`` that serves ``registry`` (its mirror, or itself)."""
        return dict(self.mirrors).get(registry, registry)

    def is_insecure(self, netloc: str) -> bool:
        """True for ``host[:port]`` listed as plain HTTP (a bare host covers every port)."""
        host = netloc.rsplit(":", 1)[0] if netloc.count(":") == 1 else netloc
        return netloc in self.insecure_registries or host in self.insecure_registries

    def credentials(self, registry: str) -> Credentials | None:
        """Credentials for the host that serves ``registry``."""
        if self.docker_config is None:
            return None
        return self.docker_config.for_registry(self.endpoint(registry))
