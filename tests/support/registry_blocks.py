"""Blocks and images for the registry tests: block folders, raw layers, clients, trees.

Each test uses its own repository (``new_ref``) so tests sharing the session's registry never
see each other's tags.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import itertools
import json
import os
import tarfile
from pathlib import Path

from controller.refs import BlockRef
from controller.registry import DockerConfig, RegistryClient, RegistryOptions
from controller.registry import format as fmt

_repo_numbers = itertools.count()


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
