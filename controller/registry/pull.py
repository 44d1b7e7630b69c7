"""``cratekeeper blocks pull`` and the pipeline's pulls: a block image into a workspace.

One pull costs one manifest request with the caller's credentials (none when the same client
just resolved the tag), then only the blobs the cache does not hold. The cache is shared by
every tenant of an operator, so it serves a blob only under a manifest that this client's own
credentials were checked against (issue 10 point 9): knowing a digest is not access to it.

Content is proven by the OCI digests (manifest, blobs, ``rootfs.diff_ids``) and our own
checksum label; a mismatch there is refused. Polycrate's md5 label is only compared: it lives
in the config the manifest digest covers, so a mismatch cannot mean tampering, only that our
reading of gosimple/hashdir differs from it; the pull goes on and carries a note
(docs/decisions.md, "Polycrate's md5 label is compared, not enforced").
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import BinaryIO

from controller.errors import (
    ArtifactNotFoundError,
    DigestMismatchError,
    RegistryError,
    UnsafeArchiveError,
)
from controller.refs import BlockRef
from controller.registry import format as fmt
from controller.registry.archive import Flattener
from controller.registry.block_file import check_matches, load_block
from controller.registry.cache import BlobCache
from controller.registry.checksum import ALGORITHM, polycrate_md5
from controller.registry.client import Manifest, RegistryClient
from controller.registry.image import Descriptor, ImageConfig, block_descriptors, read_config
from controller.registry.options import RegistryOptions
from controller.workspace import BlockFile, block_dir

log = logging.getLogger(__name__)
_TOKEN = re.compile(r"[0-9A-Za-z:._-]{1,80}")


@dataclass(frozen=True)
class PulledBlock:
    """A block unpacked into a workspace, and the manifest digest it came from."""

    path: Path
    digest: str
    block: BlockFile
    ref: BlockRef  # the requested reference, with the resolved digest filled in
    notes: tuple[str, ...] = ()
    """What a person should know about this pull that is not an error (a Polycrate checksum
    label cratekeeper does not reproduce); each was also logged as a warning."""


def pull_block(
    ref: BlockRef, dest_root: Path, *, client: RegistryClient, resolved: str | None = None
) -> PulledBlock:
    """Pull ``ref`` into ``<dest_root>/blocks/<registry>/<path>/``, as Polycrate lays it out.

    ``resolved`` is the manifest digest the caller already got for ``ref`` from
    ``client.head_manifest`` (the pipeline resolves every pin before planning): then no second
    HEAD is made. The digest must equal ``ref.digest`` when the reference pins one. Every blob
    is verified against its descriptor, the layers are flattened in order (whiteouts honoured)
    into a temporary directory next to the destination, and that replaces the destination
    only when the archive was safe and its block.poly names the requested block and version.
    A Polycrate checksum label that differs from ours is a note, logged as a warning.
    """
    options = client.options
    with contextlib.ExitStack() as stack:
        if options.cache_dir is not None:
            cache = BlobCache(options.cache_dir / "oci", max_bytes=options.cache_max_bytes)
        else:
            cache = BlobCache(Path(stack.enter_context(tempfile.TemporaryDirectory())))
        manifest = _manifest(client, cache, ref, resolved)
        config_desc, layers = block_descriptors(manifest.json(), manifest.media_type, ref)
        stack.enter_context(cache.using(config_desc.digest, *(d.digest for d in layers)))
        config = read_config(
            _blob(client, cache, ref, config_desc).read_bytes(), config_desc.digest
        )
        paths = [_blob(client, cache, ref, desc) for desc in layers]
        dest = dest_root / block_dir(ref)
        block, notes = _install(list(zip(paths, layers, strict=True)), dest, ref, config, options)
    for note in notes:
        log.warning("%s", note)
    return PulledBlock(
        path=dest,
        digest=manifest.digest,
        block=block,
        ref=BlockRef(ref.registry, ref.repository, ref.tag, manifest.digest),
        notes=notes,
    )


def _manifest(
    client: RegistryClient, cache: BlobCache, ref: BlockRef, resolved: str | None
) -> Manifest:
    """The manifest, checked with this client's credentials before the cache may serve it.

    Costs one request at most: none when this client already saw the digest (the pipeline's
    HEAD to plan), a GET by digest when the manifest is not cached (the GET is the check), a
    HEAD otherwise.
    """
    registry, repository = ref.registry, ref.repository
    if ref.digest and resolved and resolved != ref.digest:
        raise DigestMismatchError(
            f"{ref}: the tag resolved to {resolved}, but the reference pins {ref.digest}"
        )
    digest = ref.digest or resolved or client.resolved(registry, repository, ref.tag)
    if digest is not None and not client.verified(registry, repository, digest):
        if cache.lookup(digest) is None:
            return _get(client, cache, ref, digest)
        _head(client, ref, digest)
    if digest is None:
        digest = _head(client, ref, ref.tag)
    cached = cache.lookup(digest)
    if cached is not None:
        body = cached.read_bytes()
        return Manifest(body, _declared_type(body), digest)
    return _get(client, cache, ref, digest)


def _head(client: RegistryClient, ref: BlockRef, reference: str) -> str:
    found = client.head_manifest(ref.registry, ref.repository, reference)
    if found is None:
        if ref.digest:
            raise ArtifactNotFoundError(
                f"block {ref} not found: registry {ref.registry} has no manifest {ref.digest} "
                f"in {ref.repository}"
            )
        raise ArtifactNotFoundError(
            f"block {ref} not found: registry {ref.registry} has no tag {ref.tag!r} in "
            f"{ref.repository}; push it with 'cratekeeper blocks push DIR {ref}'"
        )
    return found


def _get(client: RegistryClient, cache: BlobCache, ref: BlockRef, digest: str) -> Manifest:
    manifest = client.get_manifest(ref.registry, ref.repository, digest)  # hashes to digest
    cache.store(manifest.digest, lambda handle: _write(handle, manifest.body))
    return manifest


def _declared_type(body: bytes) -> str:
    try:
        value = json.loads(body).get("mediaType", "")
    except (ValueError, AttributeError):
        return ""
    return value if isinstance(value, str) else ""


def _blob(client: RegistryClient, cache: BlobCache, ref: BlockRef, desc: Descriptor) -> Path:
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
    return cache.fetch(
        desc.digest,
        desc.size,
        lambda handle: client.download_blob(
            ref.registry, ref.repository, desc.digest, desc.size, handle
        ),
    )


def _install(
    layers: list[tuple[Path, Descriptor]],
    dest: Path,
    ref: BlockRef,
    config: ImageConfig,
    options: RegistryOptions,
) -> tuple[BlockFile, tuple[str, ...]]:
    """Flatten into a sibling temp dir, check it, then swap it in for ``dest``; the block and
    the pull's notes."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{dest.name}.pulling-", dir=dest.parent))
    try:
        flattener = Flattener(staging, limit=options.max_block_size)
        diff_ids = []
        for path, desc in layers:
            with path.open("rb") as stream:
                gzipped = desc.media_type in fmt.GZIP_LAYER_TYPES
                diff_ids.append(flattener.add_layer(stream, gzipped=gzipped))
        block_layer = flattener.finish()
        _check_digests(ref, diff_ids, config)
        where = f"blocks/{ref.name}/{fmt.BLOCK_FILE}"
        block = load_block(staging / fmt.BLOCK_FILE, where=where)
        label_version = config.labels.get(fmt.LABEL_VERSION)
        check_matches(block, ref, where, pulled=True, label_version=label_version)
        note = _polycrate_checksum_note(ref, staging, block_layer, config.labels)
        staging.chmod(0o755)
        _swap_into_place(staging, dest)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return block, () if note is None else (note,)


def _check_digests(ref: BlockRef, diff_ids: list[str], config: ImageConfig) -> None:
    """The unpacked layers against the config's ``rootfs.diff_ids`` and our checksum label."""
    if config.diff_ids and config.diff_ids != diff_ids:
        raise DigestMismatchError(
            f"{ref}: the unpacked layers hash to {', '.join(diff_ids)}, but the image config's "
            f"rootfs.diff_ids say {', '.join(config.diff_ids)}"
        )
    ours = config.labels.get(fmt.LABEL_CHECKSUM)
    if ours is not None and ours != diff_ids[-1]:
        raise DigestMismatchError(
            f"{ref}: the block layer hashes to {diff_ids[-1]}, but the image label "
            f"{fmt.LABEL_CHECKSUM} says {ours}"
        )


def _polycrate_checksum_note(
    ref: BlockRef, root: Path, block_layer: frozenset[PurePosixPath], labels: dict[str, str]
) -> str | None:
    """Polycrate's checksum label compared over what the block layer unpacked: ``None`` when it
    matches or is absent, else the note saying so.

    Never a refusal, whatever the algorithm: the label is part of the config, which the manifest
    digest covers, so a difference cannot mean tampering; it means our reading of hashdir's
    md5 differs from Polycrate's, or Polycrate hashed another state of the directory.
    """
    expected = labels.get(fmt.LABEL_POLYCRATE_CHECKSUM)
    if expected is None:
        return None
    label = f"block {ref}: its Polycrate checksum label {fmt.LABEL_POLYCRATE_CHECKSUM}"
    verified = "content verified by its OCI digests"
    algorithm = labels.get(fmt.LABEL_POLYCRATE_CHECKSUM_ALGO, ALGORITHM)
    if algorithm != ALGORITHM:
        return (
            f"{label} ({_shown(expected)}) is made with {_shown(algorithm)}, which cratekeeper "
            f"does not compute (only {ALGORITHM!r}): not checked; {verified}"
        )
    try:
        actual = polycrate_md5(root, only=block_layer)
    except RegistryError as exc:
        return f"{label} ({_shown(expected)}) not checked: {exc}; {verified}"
    if actual == expected.lower():
        return None
    return (
        f"{label} says {_shown(expected)}, cratekeeper computes {actual} over the unpacked block "
        f"directory; pulled anyway, {verified} (docs/block-artifacts.md, 'Polycrate's checksum')"
    )


def _shown(label: str) -> str:
    """A label value fit for a log line: a plain token as is, anything else quoted and cut."""
    return label if _TOKEN.fullmatch(label) else repr(label[:80])


def _swap_into_place(staging: Path, dest: Path) -> None:
    """Replace ``dest`` by ``staging``: two renames in one directory, never a half-written dest."""
    if dest.exists() or dest.is_symlink():
        retired = Path(tempfile.mkdtemp(prefix=f".{dest.name}.old-", dir=dest.parent))
        dest.replace(retired / "block")
        staging.replace(dest)
        shutil.rmtree(retired, ignore_errors=True)
    else:
        staging.replace(dest)


def _write(handle: BinaryIO, data: bytes) -> None:
    handle.write(data)
