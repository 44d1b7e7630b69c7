"""Kept block artifacts: packed reproducibly, bounded, laid back safely, stored per Workspace."""

from __future__ import annotations

import asyncio
import io
import os
import tarfile
from pathlib import Path

import pytest

from controller.errors import ArtifactsError
from controller.runners.artifacts import KEPT, MAX_PACKED, DirectoryStore, pack, unpack


def tree(root: Path, files: dict[str, bytes]) -> Path:
    for name, data in files.items():
        path = root / KEPT / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return root


def test_a_packed_tree_is_laid_back_file_for_file(tmp_path: Path) -> None:
    files = {"infra/inventory.yml": b"all: {hosts: {web1: {}}}\n", "app/out/notes.txt": b"x"}
    data = pack(tree(tmp_path / "a", files))
    assert sorted(unpack(data, tmp_path / "b")) == sorted(files)
    for name, content in files.items():
        assert (tmp_path / "b" / KEPT / name).read_bytes() == content


def test_an_unchanged_tree_packs_to_the_same_bytes(tmp_path: Path) -> None:
    root = tree(tmp_path, {"infra/inventory.yml": b"all: {}\n"})
    first = pack(root)
    os.utime(root / KEPT / "infra/inventory.yml", (1, 1))
    assert pack(root) == first


def test_no_artifacts_pack_to_an_empty_archive(tmp_path: Path) -> None:
    assert unpack(pack(tmp_path), tmp_path / "out") == []


def test_links_are_not_kept(tmp_path: Path) -> None:
    root = tree(tmp_path, {"infra/inventory.yml": b"all: {}\n"})
    (root / KEPT / "infra" / "passwd").symlink_to("/etc/passwd")
    assert unpack(pack(root), tmp_path / "out") == ["infra/inventory.yml"]


def test_a_tree_over_the_budget_is_refused_naming_the_largest_file(tmp_path: Path) -> None:
    root = tree(tmp_path, {"big/blob.bin": os.urandom(MAX_PACKED + 1), "small/a": b"a"})
    with pytest.raises(ArtifactsError, match=r"big/blob\.bin .*nothing new was kept"):
        pack(root)


def crafted(*members: tuple[tarfile.TarInfo, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for info, data in members:
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


@pytest.mark.parametrize("name", ["../escape", "/etc/cron.d/x", "a/../../b"])
def test_unpack_refuses_paths_outside_the_tree(tmp_path: Path, name: str) -> None:
    with pytest.raises(ArtifactsError, match="not a path inside"):
        unpack(crafted((tarfile.TarInfo(name), b"x")), tmp_path)
    assert not (tmp_path.parent / "escape").exists()


def test_unpack_refuses_links_and_devices(tmp_path: Path) -> None:
    link = tarfile.TarInfo("infra/passwd")
    link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
    with pytest.raises(ArtifactsError, match="not a file or a folder"):
        unpack(crafted((link, b"")), tmp_path)
    device = tarfile.TarInfo("infra/null")
    device.type = tarfile.CHRTYPE
    with pytest.raises(ArtifactsError, match="not a file or a folder"):
        unpack(crafted((device, b"")), tmp_path)


def test_unpack_does_not_write_through_a_link_in_the_workspace(tmp_path: Path) -> None:
    (tmp_path / KEPT / "infra").mkdir(parents=True)
    (tmp_path / KEPT / "infra" / "inventory.yml").symlink_to(tmp_path / "outside")
    with pytest.raises(ArtifactsError, match="is a link"):
        unpack(crafted((tarfile.TarInfo("infra/inventory.yml"), b"x")), tmp_path)
    assert not (tmp_path / "outside").exists()


def test_garbage_is_an_artifacts_error_not_a_crash(tmp_path: Path) -> None:
    with pytest.raises(ArtifactsError, match="cannot be laid back"):
        unpack(b"not a tar", tmp_path)


def test_the_directory_store_keeps_the_last_save_private(tmp_path: Path) -> None:
    store = DirectoryStore(tmp_path / "state" / "artifacts.tar.gz")
    assert asyncio.run(store.load()) is None
    asyncio.run(store.save(b"one"))
    asyncio.run(store.save(b"two"))
    assert asyncio.run(store.load()) == b"two"
    assert (store.path.stat().st_mode & 0o777) == 0o600
    assert sorted(p.name for p in store.path.parent.iterdir()) == ["artifacts.tar.gz"]
