"""``cratekeeper blocks push``: a block directory to a registry, as Polycrate pushes it."""

from __future__ import annotations

from pathlib import Path

from controller.errors import RegistryError
from controller.refs import BlockRef
from controller.registry import format as fmt
from controller.registry.archive import pack_block
from controller.registry.block_file import check_matches, load_block
from controller.registry.checksum import ALGORITHM, polycrate_md5
from controller.registry.client import RegistryClient
from controller.registry.image import Descriptor, config_json, manifest_json, sha256


def push_block(
    block_dir: Path,
    ref: BlockRef,
    *,
    client: RegistryClient,
    also_latest: bool = True,
    force: bool = False,
) -> str:
    """Push ``block_dir`` as ``ref`` (and ``:latest``, as Polycrate does); return the digest.

    Refuses a directory whose block.poly names another block or version than ``ref``, and a
    version tag that already holds different content (versions are immutable; ``force``
    overrides that). Pushing the same content again is a no-op with the same digest.
    """
    if ref.digest:
        raise RegistryError(
            f"push to a tag, not a digest: use {ref.name}:{ref.tag} (the digest is the result)"
        )
    block_file = block_dir / fmt.BLOCK_FILE
    block = load_block(block_file, where=str(block_file))
    check_matches(block, ref, str(block_file), pulled=False)

    layer = pack_block(block_dir, limit=client.options.max_block_size)
    labels = {
        fmt.LABEL_VERSION: ref.tag,
        fmt.LABEL_POLYCRATE_CHECKSUM: polycrate_md5(block_dir),
        fmt.LABEL_POLYCRATE_CHECKSUM_ALGO: ALGORITHM,
        fmt.LABEL_NAME: ref.name,
        fmt.LABEL_CHECKSUM: layer.diff_id,
    }
    config = config_json(labels, layer.diff_id)
    config_desc = Descriptor(fmt.DOCKER_CONFIG, sha256(config), len(config))
    layer_desc = Descriptor(fmt.DOCKER_LAYER_GZIP, layer.digest, len(layer.data))
    manifest = manifest_json(config_desc, [layer_desc])
    digest = sha256(manifest)

    existing = client.head_manifest(ref.registry, ref.repository, ref.tag)
    if existing is not None and existing != digest and not force:
        raise RegistryError(
            f"{ref} already exists with other content ({existing}); block versions are "
            f"immutable: raise 'version' in {block_file}, or push with --force to replace it"
        )
    client.upload_blob(ref.registry, ref.repository, config_desc.digest, config)
    client.upload_blob(ref.registry, ref.repository, layer.digest, layer.data)
    tags = [ref.tag, fmt.LATEST] if also_latest else [ref.tag]
    for tag in tags:
        client.put_manifest(ref.registry, ref.repository, tag, manifest, fmt.DOCKER_MANIFEST)
    return digest
