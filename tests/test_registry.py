"""Pushing and pulling blocks against a real registry (Debian's docker-registry).

What a registry may do to us is the point of most of these tests: serve tampered blobs, hand
out archives that try to escape the block directory, or refuse us. The registry runs once per
session; each test uses its own repository so they do not see each other's tags.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import itertools
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
    RegistryAuthError,
    RegistryError,
    RegistryUnreachableError,
    UnsafeArchiveError,
)
from controller.refs import BlockRef
from controller.registry import (
    DockerConfig,
    RegistryClient,
    RegistryOptions,
    pull_block,
    push_block,
)
from controller.registry import format as fmt
from controller.registry.archive import extract_layer, pack_block
from controller.registry.auth import parse_challenge
from controller.settings import Settings
from tests.support.oci_registry import (
    PASSWORD,
    USER,
    Registry,
    RegistryProxy,
    free_port,
)

_repo_numbers = itertools.count()


# --- helpers -----------------------------------------------------------------------------


def make_block(root: Path, name: str, version: str, *, extra: dict[str, str] | None = None) -> Path:
    """A small block directory: block.poly with two actions, playbooks, a template."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "block.poly").write_text(
        f"name: {name}\n"
        f"version: {version}\n"
        "kind: generic\n"
        "config:\n  namespace: ''\n  image: ''\n"
        "actions:\n"
        "  - name: deploy\n    description: Deploy the app\n    playbook: deploy.yml\n"
        "  - name: rollback\n    playbook: rollback.yml\n"
    )
    (root / "deploy.yml").write_text("- hosts: localhost\n  tasks: []\n")
    (root / "rollback.yml").write_text("- hosts: localhost\n  tasks: []\n")
    (root / "templates").mkdir(exist_ok=True)
    (root / "templates" / "configmap.yml.j2").write_text("data: {{ block.config.image }}\n")
    hook = root / "hooks" / "check.sh"
    hook.parent.mkdir(exist_ok=True)
    hook.write_text("#!/bin/sh\necho ok\n")
    hook.chmod(0o755)
    for rel, text in (extra or {}).items():
        (root / rel).write_text(text)
    return root


def client_for(
    host: str, tmp_path: Path, *, docker_config: str | None = None, **options: object
) -> RegistryClient:
    config = DockerConfig.from_json(docker_config) if docker_config else None
    defaults: dict[str, object] = {
        "insecure_registries": (host,),
        "cache_dir": tmp_path / "cache",
        "docker_config": config,
    }
    return RegistryClient(RegistryOptions(**{**defaults, **options}))  # type: ignore[arg-type]


def new_ref(host: str, version: str = "1.0.0") -> BlockRef:
    return BlockRef.parse(f"{host}/acme/blocks/b{next(_repo_numbers)}:{version}")


def tree(root: Path) -> dict[str, bytes | str]:
    """Relative path -> bytes for files, 'dir' for directories, 'link:<target>' for symlinks."""
    found: dict[str, bytes | str] = {}
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root).as_posix()
        if path.is_symlink():
            found[rel] = f"link:{os.readlink(path)}"
        elif path.is_dir():
            found[rel] = "dir"
        else:
            found[rel] = path.read_bytes()
    return found


def block_poly(ref: BlockRef, version: str | None = None) -> bytes:
    return (
        f"name: {ref.name}\nversion: {version or ref.tag}\n"
        "actions:\n  - name: deploy\n    playbook: deploy.yml\n"
    ).encode()


def tar_of(entries: list[tuple[tarfile.TarInfo, bytes | None]]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.GNU_FORMAT) as tar:
        for info, data in entries:
            if data is not None:
                info.size = len(data)
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return buffer.getvalue()


def entry(name: str, kind: bytes = tarfile.REGTYPE, link: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = link
    info.mode = 0o644
    if kind == tarfile.CHRTYPE:
        info.devmajor, info.devminor = 1, 3
    return info


def push_raw_layer(
    client: RegistryClient, ref: BlockRef, layer: bytes, *, gzipped: bool = True
) -> str:
    """Push any tar as a block image, bypassing every check push_block makes."""
    diff_id = "sha256:" + hashlib.sha256(layer).hexdigest()
    data = gzip.compress(layer, mtime=0) if gzipped else layer
    config = json.dumps({"rootfs": {"type": "layers", "diff_ids": [diff_id]}}).encode()
    descriptors = []
    for blob, media_type in (
        (config, fmt.OCI_CONFIG),
        (data, fmt.OCI_LAYER_GZIP if gzipped else fmt.OCI_LAYER_TAR),
    ):
        digest = "sha256:" + hashlib.sha256(blob).hexdigest()
        client.upload_blob(ref.registry, ref.repository, digest, blob)
        descriptors.append({"mediaType": media_type, "size": len(blob), "digest": digest})
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": fmt.OCI_MANIFEST,
            "config": descriptors[0],
            "layers": descriptors[1:],
        }
    ).encode()
    return client.put_manifest(ref.registry, ref.repository, ref.tag, manifest, fmt.OCI_MANIFEST)


def assert_nothing_written(dest_root: Path, ref: BlockRef) -> None:
    dest = dest_root / "blocks" / ref.registry / ref.repository
    assert not dest.exists()
    leftovers = list(dest.parent.iterdir()) if dest.parent.exists() else []
    assert leftovers == [], f"temporary directories left behind: {leftovers}"


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


# --- hostile archives ------------------------------------------------------------------------

Entries = list[tuple[tarfile.TarInfo, bytes | None]]


def _hostile_cases(outside: str) -> dict[str, tuple[Entries, str]]:
    return {
        "absolute path": ([(entry(f"{outside}/escaped-abs"), b"x")], "absolute path"),
        "dot-dot": ([(entry("../../../../escaped-dotdot"), b"x")], r"contains '\.\.'"),
        "symlink to outside": (
            [(entry("evil", tarfile.SYMTYPE, "../../../../.."), None)],
            "symlink to .* outside the block",
        ),
        "absolute symlink": ([(entry("evil", tarfile.SYMTYPE, outside), None)], "outside"),
        "symlink chain": (
            [
                (entry("a", tarfile.SYMTYPE, "."), None),
                (entry("b", tarfile.SYMTYPE, "a/.."), None),
            ],
            "resolves outside the block",
        ),
        "write through symlink": (
            [
                (entry("sub", tarfile.SYMTYPE, "."), None),
                (entry("sub/escaped-through"), b"x"),
            ],
            "written through the symlink",
        ),
        "hardlink to outside": (
            [(entry("evil", tarfile.LNKTYPE, "../../../../etc/passwd"), None)],
            r"contains '\.\.'",
        ),
        "hardlink to absolute": (
            [(entry("evil", tarfile.LNKTYPE, "/etc/passwd"), None)],
            "absolute path",
        ),
        "hardlink to unknown": (
            [(entry("evil", tarfile.LNKTYPE, "not-in-archive"), None)],
            "not a file earlier in the block",
        ),
        "device file": ([(entry("null", tarfile.CHRTYPE), None)], "device file"),
        "fifo": ([(entry("pipe", tarfile.FIFOTYPE), None)], "fifo"),
    }


@pytest.mark.parametrize("case", sorted(_hostile_cases("/x")))
def test_hostile_archive_is_refused_and_nothing_is_written_outside(
    oci_registry: Registry, tmp_path: Path, case: str
) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    entries, message = _hostile_cases(str(outside))[case]
    ref = new_ref(oci_registry.host)
    client = client_for(oci_registry.host, tmp_path)
    push_raw_layer(client, ref, tar_of([(entry("block.poly"), block_poly(ref)), *entries]))

    with pytest.raises(UnsafeArchiveError, match=message):
        pull_block(ref, tmp_path / "ws", client=client)
    assert_nothing_written(tmp_path / "ws", ref)
    assert list(outside.iterdir()) == []
    assert [p for p in tmp_path.rglob("escaped*")] == []


def test_archive_larger_than_the_limit_is_refused_on_the_uncompressed_stream(
    oci_registry: Registry, tmp_path: Path
) -> None:
    ref = new_ref(oci_registry.host)
    client = client_for(oci_registry.host, tmp_path, max_block_size=1 << 20)
    bomb = tar_of([(entry("block.poly"), block_poly(ref)), (entry("zeros"), bytes(4 << 20))])
    push_raw_layer(client, ref, bomb)  # compresses to a few KiB: the descriptor looks harmless

    with pytest.raises(UnsafeArchiveError, match="more than the limit of 1048576 bytes"):
        pull_block(ref, tmp_path / "ws", client=client)
    assert_nothing_written(tmp_path / "ws", ref)


def test_symlinks_inside_the_block_are_kept(oci_registry: Registry, tmp_path: Path) -> None:
    ref = new_ref(oci_registry.host)
    client = client_for(oci_registry.host, tmp_path)
    layer = tar_of(
        [
            (entry("./"), None),
            (entry("./block.poly"), block_poly(ref)),
            (entry("deploy.yml"), b"[]"),
            (entry("current.yml", tarfile.SYMTYPE, "deploy.yml"), None),
            (entry("copy.yml", tarfile.LNKTYPE, "deploy.yml"), None),
        ]
    )
    push_raw_layer(client, ref, layer, gzipped=False)
    pulled = pull_block(ref, tmp_path / "ws", client=client)
    assert os.readlink(pulled.path / "current.yml") == "deploy.yml"
    assert (pulled.path / "copy.yml").read_bytes() == b"[]"


def test_extraction_stops_at_the_limit_whatever_the_headers_claim(tmp_path: Path) -> None:
    big = tar_of([(entry("a"), bytes(300_000))])
    with pytest.raises(UnsafeArchiveError, match="more than the limit"):
        extract_layer(io.BytesIO(big), tmp_path, gzipped=False, limit=100_000)


# --- authentication and transport ----------------------------------------------------------


@pytest.mark.parametrize("form", ["auth", "username/password"])
def test_basic_auth_registry_accepts_docker_config_credentials(
    oci_registry_basic_auth: Registry, tmp_path: Path, form: str
) -> None:
    host = oci_registry_basic_auth.host
    config = (
        oci_registry_basic_auth.docker_config()
        if form == "auth"
        else json.dumps({"auths": {f"http://{host}/v1/": {"username": USER, "password": PASSWORD}}})
    )
    ref = new_ref(host)
    client = client_for(host, tmp_path, docker_config=config)
    digest = push_block(make_block(tmp_path / "src", ref.name, ref.tag), ref, client=client)
    assert pull_block(ref, tmp_path / "ws", client=client).digest == digest


def test_wrong_credentials_are_an_auth_error_that_never_shows_the_password(
    oci_registry_basic_auth: Registry, tmp_path: Path
) -> None:
    host = oci_registry_basic_auth.host
    wrong = "wrong-Pa55word-xyz"
    client = client_for(
        host, tmp_path, docker_config=oci_registry_basic_auth.docker_config(USER, wrong)
    )
    with pytest.raises(RegistryAuthError, match="rejected the credentials") as caught:
        pull_block(new_ref(host), tmp_path / "ws", client=client)
    assert wrong not in str(caught.value)
    assert PASSWORD not in str(caught.value)


def test_anonymous_pull_from_a_protected_registry_says_which_credentials_are_missing(
    oci_registry_basic_auth: Registry, tmp_path: Path
) -> None:
    host = oci_registry_basic_auth.host
    with pytest.raises(RegistryAuthError, match=f"'auths' entry for {host}"):
        pull_block(new_ref(host), tmp_path / "ws", client=client_for(host, tmp_path))


def test_bearer_token_registry_round_trip(
    oci_registry: Registry, registry_proxy: Callable[..., RegistryProxy], tmp_path: Path
) -> None:
    proxy = registry_proxy(bearer=(USER, PASSWORD))
    ref = new_ref(proxy.host)
    client = client_for(proxy.host, tmp_path, docker_config=proxy.docker_config(USER, PASSWORD))
    digest = push_block(make_block(tmp_path / "src", ref.name, ref.tag), ref, client=client)
    assert pull_block(ref, tmp_path / "ws", client=client).digest == digest
    assert 0 < proxy.token_requests <= 4  # tokens are reused, not fetched per request


def test_bearer_token_registry_with_wrong_password_is_an_auth_error(
    oci_registry: Registry, registry_proxy: Callable[..., RegistryProxy], tmp_path: Path
) -> None:
    proxy = registry_proxy(bearer=(USER, PASSWORD))
    client = client_for(proxy.host, tmp_path, docker_config=proxy.docker_config(USER, "nope-x1"))
    with pytest.raises(RegistryAuthError, match="token service") as caught:
        pull_block(new_ref(proxy.host), tmp_path / "ws", client=client)
    assert "nope-x1" not in str(caught.value)


def test_closed_port_is_registry_unreachable(tmp_path: Path) -> None:
    host = f"127.0.0.1:{free_port()}"
    with pytest.raises(RegistryUnreachableError, match="connection refused"):
        pull_block(new_ref(host), tmp_path / "ws", client=client_for(host, tmp_path))


def test_registry_not_listed_as_insecure_is_spoken_to_over_https(
    oci_registry: Registry, tmp_path: Path
) -> None:
    client = client_for(oci_registry.host, tmp_path, insecure_registries=())
    with pytest.raises(RegistryUnreachableError, match="CRATEKEEPER_INSECURE_REGISTRIES"):
        pull_block(new_ref(oci_registry.host), tmp_path / "ws", client=client)


def test_options_come_from_settings(tmp_path: Path) -> None:
    settings = Settings(
        insecure_registries=["127.0.0.1:5000", "registry.local"],
        cache_dir=tmp_path,
        max_block_size=1234,
    )
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"auths": {"registry.local": {"auth": "dTpw"}}}))
    options = RegistryOptions.from_settings(settings, docker_config=config)
    assert options.is_insecure("127.0.0.1:5000")
    assert options.is_insecure("registry.local:8443")  # a bare host covers every port
    assert not options.is_insecure("127.0.0.1:5001")
    assert (options.cache_dir, options.max_block_size) == (tmp_path, 1234)
    credentials = options.credentials("registry.local:8443")
    assert credentials is not None
    assert (credentials.username, credentials.password) == ("u", "p")
    assert "p'" not in repr(options)


# --- docker config and challenges (no registry) --------------------------------------------


def test_docker_config_reads_auth_and_username_password_forms() -> None:
    config = DockerConfig.from_json(
        json.dumps(
            {
                "auths": {
                    "https://registry.acme-corp.com/v1/": {"auth": "YWxpY2U6cDpzcw=="},
                    "ghcr.io": {"username": "bob", "password": "pw"},
                    "token.example.com": {"identitytoken": "refresh"},
                }
            }
        )
    )
    alice = config.for_registry("registry.acme-corp.com")
    assert alice is not None
    assert (alice.username, alice.password) == ("alice", "p:ss")
    bob = config.for_registry("ghcr.io")
    assert bob is not None
    assert (bob.username, bob.password) == ("bob", "pw")
    assert config.for_registry("unknown.example.com") is None
    assert "p:ss" not in repr(config)


@pytest.mark.parametrize(
    "text", ["{not json", '{"auths": []}', '{"auths": {"h": {"auth": "!!notbase64"}}}']
)
def test_broken_docker_config_is_an_auth_error_that_quotes_no_content(text: str) -> None:
    with pytest.raises(RegistryAuthError) as caught:
        DockerConfig.from_json(text)
    assert "notbase64" not in str(caught.value)


def test_bearer_challenge_is_parsed() -> None:
    challenge = parse_challenge(
        'Bearer realm="https://auth.example.com/token",service="registry.example.com",'
        'scope="repository:acme/app:pull,push"'
    )
    assert challenge is not None
    assert challenge.scheme == "bearer"
    assert challenge.params == {
        "realm": "https://auth.example.com/token",
        "service": "registry.example.com",
        "scope": "repository:acme/app:pull,push",
    }


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
