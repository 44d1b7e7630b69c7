"""``cratekeeper blocks push`` and ``blocks pull``: block directories to and from registries."""

from __future__ import annotations

import contextlib
import hashlib
import json
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from controller.errors import (
    ArtifactNotFoundError,
    BlockError,
    DigestMismatchError,
    Problem,
    RegistryError,
    UnsafeArchiveError,
)
from controller.refs import BlockRef
from controller.registry import format as fmt
from controller.registry.archive import extract_layer, pack_block
from controller.registry.cache import BlobCache
from controller.registry.client import Manifest, RegistryClient
from controller.workspace import BlockFile, block_dir, parse_block


@dataclass(frozen=True)
class PulledBlock:
    """A block unpacked into a workspace, and the manifest digest it came from."""

    path: Path
    digest: str
    block: BlockFile
    ref: BlockRef  # the requested reference, with the resolved digest filled in


@dataclass(frozen=True)
class _Descriptor:
    media_type: str
    digest: str
    size: int


# --- push --------------------------------------------------------------------------------


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
    block = _load_block(block_file, where=str(block_file))
    problems = _mismatches(block, ref, str(block_file))
    if problems:
        raise BlockError(problems)

    layer = pack_block(block_dir, limit=client.options.max_block_size)
    config = _config_json(block.name, block.version, layer.diff_id)
    config_digest = _sha256(config)
    manifest = _json_bytes(
        {
            "schemaVersion": 2,
            "mediaType": fmt.DOCKER_MANIFEST,
            "config": {
                "mediaType": fmt.DOCKER_CONFIG,
                "size": len(config),
                "digest": config_digest,
            },
            "layers": [
                {
                    "mediaType": fmt.DOCKER_LAYER_GZIP,
                    "size": len(layer.data),
                    "digest": layer.digest,
                }
            ],
        }
    )
    digest = _sha256(manifest)

    existing = client.head_manifest(ref.registry, ref.repository, ref.tag)
    if existing is not None and existing != digest and not force:
        raise RegistryError(
            f"{ref} already exists with other content ({existing}); block versions are "
            f"immutable: raise 'version' in {block_file}, or push with --force to replace it"
        )
    client.upload_blob(ref.registry, ref.repository, config_digest, config)
    client.upload_blob(ref.registry, ref.repository, layer.digest, layer.data)
    tags = [ref.tag, fmt.LATEST] if also_latest else [ref.tag]
    for tag in tags:
        client.put_manifest(ref.registry, ref.repository, tag, manifest, fmt.DOCKER_MANIFEST)
    return digest


def _config_json(name: str, version: str, diff_id: str) -> bytes:
    return _json_bytes(
        {
            # A block runs anywhere; the platform fields are there because image tools
            # (crane, skopeo, registry UIs) expect them in an image config.
            "architecture": "amd64",
            "os": "linux",
            "config": {
                "Labels": {
                    fmt.LABEL_VERSION: version,
                    fmt.LABEL_NAME: name,
                    fmt.LABEL_CHECKSUM: diff_id,
                }
            },
            "rootfs": {"type": "layers", "diff_ids": [diff_id]},
        }
    )


# --- pull --------------------------------------------------------------------------------


def pull_block(ref: BlockRef, dest_root: Path, *, client: RegistryClient) -> PulledBlock:
    """Pull ``ref`` into ``<dest_root>/blocks/<registry>/<path>/``, as Polycrate lays it out.

    Resolves the tag to a manifest digest (which must equal ``ref.digest`` when given),
    verifies every blob against its descriptor, caches blobs by digest, and unpacks into a
    temporary directory next to the destination that replaces it only when the archive was
    safe and its block.poly names the requested block and version.
    """
    options = client.options
    with contextlib.ExitStack() as stack:
        if options.cache_dir is not None:
            cache = BlobCache(options.cache_dir / "oci")
        else:
            cache = BlobCache(Path(stack.enter_context(tempfile.TemporaryDirectory())))
        manifest = _fetch_manifest(client, cache, ref)
        config_desc, layer_desc = _block_descriptors(manifest, ref)
        config_path = _fetch_blob(client, cache, ref, config_desc)
        labels, diff_ids = _read_config(config_path, config_desc.digest)
        layer_path = _fetch_blob(client, cache, ref, layer_desc)
        dest = dest_root / block_dir(ref)
        block = _install(
            layer_path, layer_desc, dest, ref, labels, diff_ids, options.max_block_size
        )
    return PulledBlock(
        path=dest,
        digest=manifest.digest,
        block=block,
        ref=BlockRef(ref.registry, ref.repository, ref.tag, manifest.digest),
    )


def _fetch_manifest(client: RegistryClient, cache: BlobCache, ref: BlockRef) -> Manifest:
    digest = ref.digest or client.head_manifest(ref.registry, ref.repository, ref.tag)
    if digest is None and not ref.digest:
        raise ArtifactNotFoundError(
            f"block {ref} not found: registry {ref.registry} has no tag {ref.tag!r} in "
            f"{ref.repository}; push it with 'cratekeeper blocks push DIR {ref}'"
        )
    if digest is not None:
        cached = cache.lookup(digest)
        if cached is not None:
            body = cached.read_bytes()
            return Manifest(body, _declared_type(body), digest)
    manifest = client.get_manifest(ref.registry, ref.repository, digest or ref.tag)
    if digest is not None and manifest.digest != digest:
        # The tag moved between HEAD and GET, or the registry is lying about one of them.
        raise DigestMismatchError(
            f"manifest of {ref} hashes to {manifest.digest}, but the registry reported {digest}"
        )
    cache.store(manifest.digest, lambda handle: _write(handle, manifest.body))
    return manifest


def _declared_type(body: bytes) -> str:
    try:
        value = json.loads(body).get("mediaType", "")
    except (ValueError, AttributeError):
        return ""
    return value if isinstance(value, str) else ""


def _block_descriptors(manifest: Manifest, ref: BlockRef) -> tuple[_Descriptor, _Descriptor]:
    document = manifest.json()
    media_type = document.get("mediaType") or manifest.media_type
    if media_type in (fmt.OCI_INDEX, fmt.DOCKER_MANIFEST_LIST) or "manifests" in document:
        raise RegistryError(
            f"{ref} is a multi-platform image index, not a block; a block is one image with one "
            "layer (see docs/block-artifacts.md)"
        )
    if media_type and media_type not in fmt.MANIFEST_TYPES:
        raise RegistryError(f"{ref} has manifest type {media_type!r}, which is not a block image")
    if document.get("schemaVersion") != 2:
        raise RegistryError(f"{ref} has a manifest schemaVersion other than 2")
    config = _descriptor(document.get("config"), f"{ref} config")
    layers = document.get("layers")
    if not isinstance(layers, list) or len(layers) != 1:
        count = len(layers) if isinstance(layers, list) else 0
        raise RegistryError(
            f"{ref} has {count} layers; a Polycrate block image has exactly one "
            "(the block directory on a scratch base)"
        )
    layer = _descriptor(layers[0], f"{ref} layer")
    if config.media_type not in fmt.CONFIG_TYPES:
        raise RegistryError(f"{ref} has config type {config.media_type!r}, not an image config")
    if layer.media_type not in fmt.LAYER_TYPES:
        raise RegistryError(
            f"{ref} has layer type {layer.media_type!r}; a block layer is a (gzip) tar"
        )
    return config, layer


def _descriptor(value: object, what: str) -> _Descriptor:
    if not isinstance(value, dict):
        raise RegistryError(f"{what}: missing descriptor in the manifest")
    media_type, digest, size = value.get("mediaType"), value.get("digest"), value.get("size")
    if (
        not isinstance(media_type, str)
        or not isinstance(digest, str)
        or not digest.startswith("sha256:")
        or len(digest) != 71
        or not isinstance(size, int)
        or size < 0
    ):
        raise RegistryError(f"{what}: malformed descriptor (mediaType, sha256 digest, size)")
    return _Descriptor(media_type, digest, size)


def _fetch_blob(client: RegistryClient, cache: BlobCache, ref: BlockRef, desc: _Descriptor) -> Path:
    limit = (
        fmt.MAX_CONFIG_SIZE
        if desc.media_type in fmt.CONFIG_TYPES
        # gzip can grow incompressible data a little; more than that cannot unpack within limit
        else client.options.max_block_size + client.options.max_block_size // 100 + 65536
    )
    if desc.size > limit:
        raise UnsafeArchiveError(
            f"{ref}: blob {desc.digest} is {desc.size} bytes, more than the limit of {limit} "
            "(CRATEKEEPER_MAX_BLOCK_SIZE); refusing to download it"
        )
    cached = cache.lookup(desc.digest, desc.size)
    if cached is not None:
        return cached
    return cache.store(
        desc.digest,
        lambda handle: client.download_blob(
            ref.registry, ref.repository, desc.digest, desc.size, handle
        ),
    )


def _read_config(path: Path, digest: str) -> tuple[dict[str, str], list[str]]:
    try:
        document = json.loads(path.read_bytes())
    except (ValueError, UnicodeDecodeError):
        raise RegistryError(f"image config {digest} is not valid JSON") from None
    if not isinstance(document, dict):
        raise RegistryError(f"image config {digest} is not a JSON object")
    inner = document.get("config") or {}
    labels = inner.get("Labels") or {} if isinstance(inner, dict) else {}
    rootfs = document.get("rootfs") or {}
    diff_ids = rootfs.get("diff_ids") or [] if isinstance(rootfs, dict) else []
    return (
        {str(k): str(v) for k, v in labels.items()} if isinstance(labels, dict) else {},
        [str(d) for d in diff_ids] if isinstance(diff_ids, list) else [],
    )


def _install(
    layer_path: Path,
    layer: _Descriptor,
    dest: Path,
    ref: BlockRef,
    labels: dict[str, str],
    diff_ids: list[str],
    limit: int,
) -> BlockFile:
    """Unpack into a sibling temp dir, check it, then swap it in for ``dest``."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{dest.name}.pulling-", dir=dest.parent))
    try:
        with layer_path.open("rb") as stream:
            diff_id = extract_layer(
                stream, staging, gzipped=layer.media_type in fmt.GZIP_LAYER_TYPES, limit=limit
            )
        claims = {"rootfs.diff_ids": diff_ids[0] if diff_ids else None}
        claims[f"label {fmt.LABEL_CHECKSUM}"] = labels.get(fmt.LABEL_CHECKSUM)
        for source, expected in claims.items():
            if expected is not None and expected != diff_id:
                raise DigestMismatchError(
                    f"{ref}: the unpacked layer hashes to {diff_id}, but the image config's "
                    f"{source} says {expected}"
                )
        where = f"blocks/{ref.name}/{fmt.BLOCK_FILE}"
        block = _load_block(staging / fmt.BLOCK_FILE, where=where)
        problems = _mismatches(block, ref, where)
        label_version = labels.get(fmt.LABEL_VERSION)
        if label_version is not None and label_version != block.version:
            problems.append(
                Problem(
                    where,
                    None,
                    f"version {block.version!r} differs from the image label "
                    f"{fmt.LABEL_VERSION}={label_version!r}; the artifact is inconsistent",
                )
            )
        if problems:
            raise BlockError(problems)
        staging.chmod(0o755)
        _swap_into_place(staging, dest)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return block


def _swap_into_place(staging: Path, dest: Path) -> None:
    """Replace ``dest`` by ``staging``: two renames in one directory, never a half-written dest."""
    if dest.exists() or dest.is_symlink():
        retired = Path(tempfile.mkdtemp(prefix=f".{dest.name}.old-", dir=dest.parent))
        dest.replace(retired / "block")
        staging.replace(dest)
        shutil.rmtree(retired, ignore_errors=True)
    else:
        staging.replace(dest)


# --- block.poly --------------------------------------------------------------------------


def _load_block(path: Path, *, where: str) -> BlockFile:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise BlockError(
            [Problem(where, None, "file not found; every block carries a block.poly")]
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise BlockError([Problem(where, None, f"cannot read it ({exc})")]) from None
    return parse_block(text, file=where)


def _mismatches(block: BlockFile, ref: BlockRef, where: str) -> list[Problem]:
    problems: list[Problem] = []
    if block.name != ref.name:
        problems.append(
            Problem(
                where,
                None,
                f"name is {block.name!r}, but the reference is {ref}; "
                f"the block name must be {ref.name!r}",
            )
        )
    if block.version != ref.tag:
        problems.append(
            Problem(
                where,
                None,
                f"version is {block.version!r}, but the reference pins {ref.tag!r}; "
                f"they must be equal",
            )
        )
    return problems


def _write(handle: BinaryIO, data: bytes) -> None:
    handle.write(data)


def _json_bytes(document: object) -> bytes:
    return json.dumps(document, separators=(",", ":"), sort_keys=False).encode("utf-8")


def _sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()
