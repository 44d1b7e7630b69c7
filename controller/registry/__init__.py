"""OCI registry access for blocks: push, pull, verify, cache by digest, unpack safely.

The artifact format (Polycrate's) is described in docs/block-artifacts.md. Typical use::

    client = RegistryClient(RegistryOptions.from_settings(settings, docker_config=path))
    digest = push_block(Path("blocks/app"), BlockRef.parse(REF), client=client)
    pulled = pull_block(BlockRef.parse(REF), workspace_root, client=client)
"""

from controller.registry.auth import Credentials, DockerConfig
from controller.registry.cache import cache_size
from controller.registry.client import RegistryClient
from controller.registry.options import RegistryOptions
from controller.registry.pull import PulledBlock, pull_block
from controller.registry.push import push_block

__all__ = [
    "Credentials",
    "DockerConfig",
    "PulledBlock",
    "RegistryClient",
    "RegistryOptions",
    "cache_size",
    "pull_block",
    "push_block",
]
