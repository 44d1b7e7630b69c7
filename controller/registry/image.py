"""Block images as JSON: reading a manifest and config, writing the ones cratekeeper pushes.

Pure functions over bytes and dicts; no I/O. The format is Polycrate's (docs/block-artifacts.md):
an ordinary image whose layers, flattened in order, are the block directory.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field

from controller.errors import RegistryError
from controller.refs import BlockRef
from controller.registry import format as fmt


@dataclass(frozen=True)
class Descriptor:
    """A blob as a manifest points at it: media type, sha256 digest and size."""

    media_type: str
    digest: str
    size: int


@dataclass(frozen=True)
class ImageConfig:
    """What cratekeeper reads from an image config: its labels and layer diff_ids."""

    labels: dict[str, str] = field(default_factory=dict)
    diff_ids: list[str] = field(default_factory=list)


def block_descriptors(
    document: dict[str, object], media_type: str, ref: BlockRef
) -> tuple[Descriptor, list[Descriptor]]:
    """The config and layer descriptors of a block image manifest; refuses what is no block.

    ``media_type`` is the one the registry served (the manifest's own ``mediaType`` wins).
    """
    declared = document.get("mediaType") or media_type
    if declared in (fmt.OCI_INDEX, fmt.DOCKER_MANIFEST_LIST) or "manifests" in document:
        raise RegistryError(
            f"{ref} is a multi-platform image index, not a block; a block is one image "
            "(see docs/block-artifacts.md)"
        )
    if declared and declared not in fmt.MANIFEST_TYPES:
        raise RegistryError(f"{ref} has manifest type {declared!r}, which is not a block image")
    if document.get("schemaVersion") != 2:
        raise RegistryError(f"{ref} has a manifest schemaVersion other than 2")
    config = _descriptor(document.get("config"), f"{ref} config")
    if config.media_type not in fmt.CONFIG_TYPES:
        raise RegistryError(f"{ref} has config type {config.media_type!r}, not an image config")
    raw_layers = document.get("layers")
    if not isinstance(raw_layers, list) or not raw_layers:
        raise RegistryError(f"{ref} has no layers; a block image has at least the block layer")
    if len(raw_layers) > fmt.MAX_LAYERS:
        raise RegistryError(
            f"{ref} has {len(raw_layers)} layers, more than the {fmt.MAX_LAYERS} a block image "
            "may have (a base image plus the block)"
        )
    layers = [_descriptor(item, f"{ref} layer {n}") for n, item in enumerate(raw_layers)]
    for n, layer in enumerate(layers):
        if layer.media_type not in fmt.LAYER_TYPES:
            raise RegistryError(
                f"{ref} layer {n} has type {layer.media_type!r}; a block layer is a (gzip) tar"
            )
    return config, layers


def _descriptor(value: object, what: str) -> Descriptor:
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
    return Descriptor(media_type, digest, size)


def read_config(body: bytes, digest: str) -> ImageConfig:
    """Labels and diff_ids of an image config; anything else in it is ignored."""
    try:
        document = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise RegistryError(f"image config {digest} is not valid JSON") from None
    if not isinstance(document, dict):
        raise RegistryError(f"image config {digest} is not a JSON object")
    inner = document.get("config") or {}
    labels = (inner.get("Labels") or {}) if isinstance(inner, dict) else {}
    rootfs = document.get("rootfs") or {}
    diff_ids = (rootfs.get("diff_ids") or []) if isinstance(rootfs, dict) else []
    return ImageConfig(
        {str(k): str(v) for k, v in labels.items()} if isinstance(labels, dict) else {},
        [str(d) for d in diff_ids] if isinstance(diff_ids, list) else [],
    )


def config_json(labels: dict[str, str], diff_id: str) -> bytes:
    """The config of a block image cratekeeper pushes (one layer on an empty base)."""
    return json_bytes(
        {
            # A block runs anywhere; the platform fields are there because image tools
            # (crane, skopeo, registry UIs) expect them in an image config.
            "architecture": "amd64",
            "os": "linux",
            "config": {"Labels": labels},
            "rootfs": {"type": "layers", "diff_ids": [diff_id]},
        }
    )


def manifest_json(config: Descriptor, layers: list[Descriptor]) -> bytes:
    """A Docker v2 schema 2 manifest, the type go-containerregistry writes (as Polycrate)."""
    return json_bytes(
        {
            "schemaVersion": 2,
            "mediaType": fmt.DOCKER_MANIFEST,
            "config": _as_json(config),
            "layers": [_as_json(layer) for layer in layers],
        }
    )


def _as_json(desc: Descriptor) -> dict[str, object]:
    return {"mediaType": desc.media_type, "size": desc.size, "digest": desc.digest}


def json_bytes(document: object) -> bytes:
    return json.dumps(document, separators=(",", ":"), sort_keys=False).encode("utf-8")


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()
