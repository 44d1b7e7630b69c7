"""Pushing and pulling blocks against a real registry (Debian's docker-registry).

What a registry may do to us is the point of most of these tests: serve tampered blobs, hand
out wrong blocks, or drop the connection. The registry runs once per session; each test uses
its own repository so they do not see each other's tags. Hostile archives:
test_registry_archive.py; authentication: test_registry_auth.py; Polycrate-pushed blocks:
test_registry_polycrate.py; the cache: test_registry_cache.py.
"""

from __future__ import annotations

import io
import json
import os
import tarfile
from collections.abc import Callable
from pathlib import Path

import pytest
import requests

from controller.errors import (
    ArtifactNotFoundError,
    BlockError,
    BlockMismatchError,
    DigestMismatchError,
    RegistryError,
    RegistryUnreachableError,
    UnsafeArchiveError,
)
from controller.refs import BlockRef
from controller.registry import (
    RegistryClient,
    RegistryOptions,
    pull_block,
    push_block,
)
from controller.registry import format as fmt
from controller.registry.archive import pack_block
from tests.support.oci_registry import (
    Registry,
    RegistryProxy,
)
from tests.support.registry_blocks import (
    assert_nothing_written,
    block_poly,
    client_for,
    entry,
    make_block,
    new_ref,
    push_raw_layer,
    tar_of,
    tree,
)

# --- round trip and format ----------------------------------------------------------------


def test_pushed_block_pulls_back_identical_into_polycrate_layout(
    oci_registry: Registry, tmp_path: Path
) -> None:
    ref = new_ref(oci_registry.host)
    source = make_block(tmp_path / "src", ref.name, ref.tag)
    client = client_for(oci_registry.host, tmp_path)

    digest = push_block(source, ref, client=client)
    pulled = pull_block(ref, tmp_path / "ws", client=client)

    expected_dir = tmp_path / "ws" / "blocks" / oci_registry.host / "acme" / "blocks"
    assert pulled.path == expected_dir / ref.repository.rsplit("/", 1)[1]
    assert pulled.digest == digest
    assert pulled.ref.digest == digest
    assert (pulled.block.name, pulled.block.version) == (ref.name, ref.tag)
    assert [a.name for a in pulled.block.actions] == ["deploy", "rollback"]
    assert tree(pulled.path) == tree(source)
    assert os.access(pulled.path / "hooks" / "check.sh", os.X_OK)


def test_push_writes_version_and_latest_tags_in_polycrate_image_format(
    oci_registry: Registry, tmp_path: Path
) -> None:
    ref = new_ref(oci_registry.host, "2.3.4")
    client = client_for(oci_registry.host, tmp_path)
    digest = push_block(make_block(tmp_path / "src", ref.name, ref.tag), ref, client=client)

    base = f"{oci_registry.url}/v2/{ref.repository}"
    assert sorted(requests.get(f"{base}/tags/list", timeout=5).json()["tags"]) == [
        "2.3.4",
        "latest",
    ]
    for tag in ("2.3.4", "latest"):
        response = requests.get(
            f"{base}/manifests/{tag}", headers={"Accept": fmt.DOCKER_MANIFEST}, timeout=5
        )
        assert response.headers["Docker-Content-Digest"] == digest
    manifest = response.json()
    assert manifest["mediaType"] == fmt.DOCKER_MANIFEST
    assert manifest["config"]["mediaType"] == fmt.DOCKER_CONFIG
    assert [layer["mediaType"] for layer in manifest["layers"]] == [fmt.DOCKER_LAYER_GZIP]
    config = requests.get(f"{base}/blobs/{manifest['config']['digest']}", timeout=5).json()
    assert config["config"]["Labels"][fmt.LABEL_VERSION] == "2.3.4"
    assert config["config"]["Labels"][fmt.LABEL_CHECKSUM] == config["rootfs"]["diff_ids"][0]
    layer = requests.get(f"{base}/blobs/{manifest['layers'][0]['digest']}", timeout=5).content
    with tarfile.open(fileobj=io.BytesIO(layer), mode="r:gz") as tar:
        names = tar.getnames()
    assert "block.poly" in names
    assert "templates/configmap.yml.j2" in names
    assert not any(name.startswith(("/", "./")) for name in names)


def test_pushing_the_same_directory_twice_gives_the_same_digest(
    oci_registry: Registry, tmp_path: Path
) -> None:
    ref = new_ref(oci_registry.host)
    source = make_block(tmp_path / "src", ref.name, ref.tag)
    client = client_for(oci_registry.host, tmp_path)
    first = push_block(source, ref, client=client)
    os.utime(source / "deploy.yml", (0, 1_000_000))  # timestamps are not content
    assert push_block(source, ref, client=client) == first


def test_push_refuses_to_overwrite_a_version_with_other_content(
    oci_registry: Registry, tmp_path: Path
) -> None:
    ref = new_ref(oci_registry.host)
    source = make_block(tmp_path / "src", ref.name, ref.tag)
    client = client_for(oci_registry.host, tmp_path)
    first = push_block(source, ref, client=client)
    (source / "deploy.yml").write_text("- hosts: localhost\n  tasks: [{debug: {msg: new}}]\n")

    with pytest.raises(RegistryError, match="immutable"):
        push_block(source, ref, client=client)
    assert push_block(source, ref, client=client, force=True) != first


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("name", "registry.acme-corp.com/acme/other", "name is"),
        ("version", "9.9.9", "version is '9.9.9'"),
    ],
)
def test_push_refuses_a_directory_whose_block_poly_does_not_match_the_reference(
    oci_registry: Registry, tmp_path: Path, field: str, value: str, message: str
) -> None:
    ref = new_ref(oci_registry.host)
    name, version = (value, ref.tag) if field == "name" else (ref.name, value)
    source = make_block(tmp_path / "src", name, version)
    client = client_for(oci_registry.host, tmp_path)

    with pytest.raises(BlockError, match=message) as caught:
        push_block(source, ref, client=client)
    assert "block.poly" in str(caught.value)
    head = requests.head(f"{oci_registry.url}/v2/{ref.repository}/manifests/{ref.tag}", timeout=5)
    assert head.status_code == 404


def test_push_refuses_a_block_directory_containing_a_symlink(tmp_path: Path) -> None:
    source = make_block(tmp_path / "src", "registry.acme-corp.com/acme/x", "1.0.0")
    (source / "shortcut.yml").symlink_to("deploy.yml")
    with pytest.raises(BlockError, match=r"shortcut\.yml: is a symlink"):
        pack_block(source, limit=1 << 20)


# --- pull: resolution, cache, pins ---------------------------------------------------------


def test_pulling_a_cached_digest_downloads_no_blob(
    oci_registry: Registry,
    registry_proxy: Callable[..., RegistryProxy],
    tmp_path: Path,
) -> None:
    proxy = registry_proxy()
    ref = new_ref(proxy.host)
    client = client_for(proxy.host, tmp_path)
    push_block(make_block(tmp_path / "src", ref.name, ref.tag), ref, client=client)

    proxy.requests.clear()
    first = pull_block(ref, tmp_path / "ws1", client=client)
    assert len(proxy.blob_downloads()) == 2  # config and layer

    proxy.requests.clear()
    second = pull_block(ref, tmp_path / "ws2", client=client_for(proxy.host, tmp_path))
    assert proxy.blob_downloads() == []
    assert proxy.requests == [("HEAD", f"/v2/{ref.repository}/manifests/{ref.tag}")]
    assert second.digest == first.digest
    assert tree(second.path) == tree(first.path)

    proxy.requests.clear()
    pinned = BlockRef(ref.registry, ref.repository, ref.tag, first.digest)
    pull_block(pinned, tmp_path / "ws3", client=client_for(proxy.host, tmp_path))
    # Everything is cached, but the cache is no permission: one HEAD with this client's own
    # credentials checks the pinned manifest before the cache may serve it.
    assert proxy.requests == [("HEAD", f"/v2/{ref.repository}/manifests/{first.digest}")]


def test_pull_by_digest_pin_gets_exactly_that_manifest(
    oci_registry: Registry, tmp_path: Path
) -> None:
    ref = new_ref(oci_registry.host)
    client = client_for(oci_registry.host, tmp_path, cache_dir=None)
    digest = push_block(make_block(tmp_path / "src", ref.name, ref.tag), ref, client=client)

    pulled = pull_block(
        BlockRef(ref.registry, ref.repository, ref.tag, digest), tmp_path / "ws", client=client
    )
    assert pulled.digest == digest

    other = "sha256:" + "0" * 64
    with pytest.raises(ArtifactNotFoundError):
        pull_block(
            BlockRef(ref.registry, ref.repository, ref.tag, other), tmp_path / "ws2", client=client
        )


def test_missing_tag_is_artifact_not_found(oci_registry: Registry, tmp_path: Path) -> None:
    ref = new_ref(oci_registry.host)
    client = client_for(oci_registry.host, tmp_path)
    with pytest.raises(ArtifactNotFoundError, match=r"no tag '1\.0\.0'"):
        pull_block(ref, tmp_path / "ws", client=client)
    assert_nothing_written(tmp_path / "ws", ref)


def test_pulled_block_poly_must_name_the_requested_block_and_version(
    oci_registry: Registry, tmp_path: Path
) -> None:
    ref = new_ref(oci_registry.host)
    client = client_for(oci_registry.host, tmp_path)
    layer = tar_of(
        [(entry("block.poly"), block_poly(ref, version="9.9.9")), (entry("deploy.yml"), b"[]")]
    )
    push_raw_layer(client, ref, layer)
    with pytest.raises(BlockMismatchError, match=r"version is '9\.9\.9'.*pins '1\.0\.0'") as err:
        pull_block(ref, tmp_path / "ws", client=client)
    assert err.value.reason == "BlockMismatch"
    assert isinstance(err.value, RegistryError)  # a pull failure, not an invalid workspace
    assert_nothing_written(tmp_path / "ws", ref)


def test_repull_replaces_the_block_and_a_failed_pull_keeps_the_old_one(
    oci_registry: Registry, tmp_path: Path
) -> None:
    ref = new_ref(oci_registry.host)
    client = client_for(oci_registry.host, tmp_path)
    old = make_block(tmp_path / "old", ref.name, ref.tag, extra={"stale.yml": "old\n"})
    push_block(old, ref, client=client)
    pulled = pull_block(ref, tmp_path / "ws", client=client)
    assert (pulled.path / "stale.yml").exists()

    new_ref_ = BlockRef(ref.registry, ref.repository, "1.1.0")
    push_block(make_block(tmp_path / "new", ref.name, "1.1.0"), new_ref_, client=client)
    pulled = pull_block(new_ref_, tmp_path / "ws", client=client)
    assert not (pulled.path / "stale.yml").exists()
    assert pulled.block.version == "1.1.0"

    broken = BlockRef(ref.registry, ref.repository, "1.2.0")
    push_raw_layer(client, broken, tar_of([(entry("/abs"), b"x")]))
    with pytest.raises(UnsafeArchiveError):
        pull_block(broken, tmp_path / "ws", client=client)
    # the 1.1.0 block is still there, untouched, and no staging directory is left
    assert tree(pulled.path) == tree(tmp_path / "new")
    assert sorted(p.name for p in pulled.path.parent.iterdir()) == [pulled.path.name]


# --- integrity ------------------------------------------------------------------------------


def test_tampered_layer_blob_is_a_digest_mismatch(oci_registry: Registry, tmp_path: Path) -> None:
    ref = new_ref(oci_registry.host)
    client = client_for(oci_registry.host, tmp_path)
    unique = {"unique.txt": f"{ref}\n"}  # no other test shares this layer blob
    push_block(make_block(tmp_path / "src", ref.name, ref.tag, extra=unique), ref, client=client)
    manifest = requests.get(
        f"{oci_registry.url}/v2/{ref.repository}/manifests/{ref.tag}",
        headers={"Accept": fmt.DOCKER_MANIFEST},
        timeout=5,
    ).json()
    layer_digest = manifest["layers"][0]["digest"]
    blob = oci_registry.blob_file(layer_digest)
    data = bytearray(blob.read_bytes())
    data[len(data) // 2] ^= 0xFF
    blob.write_bytes(bytes(data))

    with pytest.raises(DigestMismatchError, match=layer_digest):
        pull_block(ref, tmp_path / "ws", client=client)
    assert_nothing_written(tmp_path / "ws", ref)
    assert not (tmp_path / "cache" / "oci" / "blobs" / "sha256" / layer_digest[7:]).exists()


def test_tampered_manifest_is_a_digest_mismatch(oci_registry: Registry, tmp_path: Path) -> None:
    ref = new_ref(oci_registry.host)
    client = client_for(oci_registry.host, tmp_path)
    unique = {"unique.txt": f"{ref}\n"}
    digest = push_block(
        make_block(tmp_path / "src", ref.name, ref.tag, extra=unique), ref, client=client
    )
    blob = oci_registry.blob_file(digest)
    body = blob.read_bytes()
    size = json.loads(body)["layers"][0]["size"]
    forged = str(size + 1 if size % 10 != 9 else size - 1).encode()  # same length
    head, _, tail = body.rpartition(b'"size":%d,' % size)
    blob.write_bytes(head + b'"size":' + forged + b"," + tail)
    assert blob.read_bytes() != body

    with pytest.raises(DigestMismatchError, match="manifest"):
        pull_block(ref, tmp_path / "ws", client=client)
    with pytest.raises(DigestMismatchError):
        pull_block(
            BlockRef(ref.registry, ref.repository, ref.tag, digest),
            tmp_path / "ws",
            client=client_for(oci_registry.host, tmp_path / "fresh"),
        )
    assert_nothing_written(tmp_path / "ws", ref)


def test_a_connection_dropped_mid_blob_is_an_unreachable_registry(tmp_path: Path) -> None:
    """A registry that promises 1000 bytes and hangs up after 10 (a real socket)."""
    import socket
    import threading

    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]

    def serve() -> None:
        conn, _ = server.accept()
        with conn:
            conn.recv(65536)
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n0123456789")

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    host = f"127.0.0.1:{port}"
    client = RegistryClient(RegistryOptions(insecure_registries=(host,)))
    digest = "sha256:" + "0" * 64
    with (tmp_path / "blob").open("wb") as dest, pytest.raises(RegistryUnreachableError) as caught:
        client.download_blob(host, "acme/app", digest, 1000, dest)
    assert "dropped the connection while sending blob" in str(caught.value)
    thread.join(timeout=5)
    server.close()
