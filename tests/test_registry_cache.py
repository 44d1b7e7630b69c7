"""The blob cache: shared by tenants but never their permission, bounded, one download per blob.

Against the real registry (Debian docker-registry), with the recording proxy to count requests.
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

import pytest

from controller.errors import DigestMismatchError, RegistryAuthError
from controller.refs import BlockRef
from controller.registry import cache_size, pull_block, push_block
from controller.registry.cache import BlobCache
from tests.support.oci_registry import Registry, RegistryProxy
from tests.support.registry_blocks import (
    assert_nothing_written,
    client_for,
    make_block,
    new_ref,
    tree,
)


def _blob(data: bytes) -> tuple[str, Callable[[BinaryIO], None]]:
    def write(handle: BinaryIO) -> None:
        handle.write(data)

    return "sha256:" + hashlib.sha256(data).hexdigest(), write


# --- tenancy -------------------------------------------------------------------------------


def test_a_cached_block_is_not_served_to_a_tenant_whose_credentials_the_registry_refuses(
    oci_registry_basic_auth: Registry, tmp_path: Path
) -> None:
    registry = oci_registry_basic_auth
    ref = new_ref(registry.host)
    shared = tmp_path / "operator-cache"  # one cache for every namespace of an operator
    owner = client_for(
        registry.host, tmp_path, docker_config=registry.docker_config(), cache_dir=shared
    )
    digest = push_block(make_block(tmp_path / "src", ref.name, ref.tag), ref, client=owner)
    pull_block(ref, tmp_path / "ws-owner", client=owner)  # now every blob is cached

    pinned = BlockRef(ref.registry, ref.repository, ref.tag, digest)
    for name, config in {
        "no credentials": None,
        "wrong password": registry.docker_config(password="guessed"),
    }.items():
        stranger = client_for(registry.host, tmp_path, docker_config=config, cache_dir=shared)
        with pytest.raises(RegistryAuthError):
            pull_block(pinned, tmp_path / f"ws-{name}", client=stranger)
        assert_nothing_written(tmp_path / f"ws-{name}", ref)


# --- one HEAD per block --------------------------------------------------------------------


def test_each_block_to_run_costs_one_registry_head(
    oci_registry: Registry, registry_proxy: Callable[..., RegistryProxy], tmp_path: Path
) -> None:
    proxy = registry_proxy()
    ref = new_ref(proxy.host)
    push_block(
        make_block(tmp_path / "src", ref.name, ref.tag),
        ref,
        client=client_for(proxy.host, tmp_path),
    )
    heads = f"/v2/{ref.repository}/manifests/{ref.tag}"

    # The pipeline: resolve every pin (to plan), then pull what runs, passing the digest.
    for n, passes_digest in enumerate((True, False)):
        client = client_for(proxy.host, tmp_path / f"c{n}")
        proxy.requests.clear()
        digest = client.head_manifest(ref.registry, ref.repository, ref.tag)
        resolved = digest if passes_digest else None
        pulled = pull_block(ref, tmp_path / f"ws{n}", client=client, resolved=resolved)
        assert pulled.digest == digest
        assert [r for r in proxy.requests if r[0] == "HEAD"] == [("HEAD", heads)]


def test_a_digest_pin_with_a_cold_cache_needs_no_head_the_get_is_the_check(
    oci_registry: Registry, registry_proxy: Callable[..., RegistryProxy], tmp_path: Path
) -> None:
    proxy = registry_proxy()
    ref = new_ref(proxy.host)
    client = client_for(proxy.host, tmp_path / "pusher")
    digest = push_block(make_block(tmp_path / "src", ref.name, ref.tag), ref, client=client)
    proxy.requests.clear()
    pinned = BlockRef(ref.registry, ref.repository, ref.tag, digest)
    pull_block(pinned, tmp_path / "ws", client=client_for(proxy.host, tmp_path / "pod"))
    manifest_requests = [r for r in proxy.requests if "/manifests/" in r[1]]
    assert manifest_requests == [("GET", f"/v2/{ref.repository}/manifests/{digest}")]


def test_a_resolved_digest_that_is_not_the_pinned_one_is_a_mismatch(
    oci_registry: Registry, tmp_path: Path
) -> None:
    ref = new_ref(oci_registry.host)
    client = client_for(oci_registry.host, tmp_path)
    digest = push_block(make_block(tmp_path / "src", ref.name, ref.tag), ref, client=client)
    pinned = BlockRef(ref.registry, ref.repository, ref.tag, digest)
    with pytest.raises(DigestMismatchError, match="pins"):
        pull_block(pinned, tmp_path / "ws", client=client, resolved="sha256:" + "1" * 64)


# --- single flight -------------------------------------------------------------------------


def test_concurrent_first_pulls_of_one_block_download_each_blob_once(
    oci_registry: Registry, registry_proxy: Callable[..., RegistryProxy], tmp_path: Path
) -> None:
    proxy = registry_proxy()
    ref = new_ref(proxy.host)
    src = make_block(tmp_path / "src", ref.name, ref.tag, extra={"big.bin": "x" * 2_000_000})
    push_block(src, ref, client=client_for(proxy.host, tmp_path / "pusher"))
    proxy.requests.clear()

    start = threading.Barrier(4)
    results: list[Path] = []
    errors: list[BaseException] = []

    def pull(n: int) -> None:
        client = client_for(proxy.host, tmp_path)  # one cache dir, one client per thread
        start.wait()
        try:
            results.append(pull_block(ref, tmp_path / f"ws{n}", client=client).path)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=pull, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert len(proxy.blob_downloads()) == 2  # config and layer, once each
    assert all(tree(path) == tree(src) for path in results)


# --- bounded, least recently used ----------------------------------------------------------


def test_the_blob_cache_keeps_to_its_budget_dropping_the_least_recently_used(
    tmp_path: Path,
) -> None:
    cache = BlobCache(tmp_path / "oci", max_bytes=250)
    blobs = [_blob(bytes([n]) * 100) for n in range(3)]
    for n, (digest, write) in enumerate(blobs[:2]):
        cache.store(digest, write)
        os.utime(cache.path(digest), (1000 + n, 1000 + n))
    assert cache.lookup(blobs[0][0]) is not None  # used again: now the most recent
    cache.store(*blobs[2])

    assert cache.lookup(blobs[1][0]) is None  # the least recently used went
    assert cache.lookup(blobs[0][0]) is not None
    assert cache.lookup(blobs[2][0]) is not None
    assert cache_size(tmp_path / "oci") == 200


def test_eviction_never_removes_a_blob_a_pull_is_using(tmp_path: Path) -> None:
    cache = BlobCache(tmp_path / "oci", max_bytes=150)
    first, second = _blob(b"a" * 100), _blob(b"b" * 100)
    cache.store(*first)
    with cache.using(first[0]):
        cache.store(*second)  # over budget, but the only candidate is in use
        assert cache.lookup(first[0]) is not None
    assert cache_size(tmp_path / "oci") == 200
    cache.store(*_blob(b"c" * 10))
    assert cache_size(tmp_path / "oci") <= 150


def test_pulls_respect_the_configured_budget(oci_registry: Registry, tmp_path: Path) -> None:
    client = client_for(oci_registry.host, tmp_path, cache_max_bytes=1)
    cache = BlobCache(tmp_path / "cache" / "oci")
    layers = []
    for n in range(2):
        ref = new_ref(oci_registry.host)
        digest = push_block(make_block(tmp_path / f"src{n}", ref.name, ref.tag), ref, client=client)
        pull_block(ref, tmp_path / f"ws{n}", client=client)
        layer_list = client.get_manifest(ref.registry, ref.repository, digest).json()["layers"]
        assert isinstance(layer_list, list)
        layers.append(layer_list[0]["digest"])
    assert not cache.path(layers[0]).exists()  # the first block's layer made room
