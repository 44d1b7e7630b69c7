"""Kept block artifacts: packed reproducibly, bounded, laid back safely, stored per Workspace."""

from __future__ import annotations

import asyncio
import io
import os
import shutil
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from controller.cli import main
from controller.errors import ArtifactsError
from controller.kube import Kube
from controller.runners.artifacts import KEPT, MAX_PACKED, DirectoryStore, pack, unpack
from controller.runners.kubernetes.artifacts import SecretStore, artifacts_secret_name
from tests.support.actions import push_playbook_block
from tests.support.gitrepo import GitRepo
from tests.support.kube_emulator import KubeEmulator
from tests.support.oci_registry import Registry


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


# --- the operator's store: one Secret per Workspace, on the emulated API -------------------


@pytest.fixture
def kube(kubeconfig: Path) -> Iterator[Kube]:
    client = Kube.from_kubeconfig(kubeconfig)
    yield client
    client.close()


def test_the_secret_store_keeps_one_labelled_secret_per_workspace(
    tmp_path: Path, kube_emulator: KubeEmulator, kube: Kube
) -> None:
    namespace = "ck-artifacts"
    kube_emulator.create("v1/namespaces", {"metadata": {"name": namespace}})
    root = tree(tmp_path, {"infra/inventory.yml": b"all: {hosts: {web1: {}}}\n"})
    store = SecretStore(kube, namespace, "acme-staging")

    async def scenario() -> tuple[bytes | None, bytes | None, bytes | None]:
        before = await store.load()
        await store.save(pack(root))
        first = await store.load()
        (root / KEPT / "infra/inventory.yml").write_bytes(b"all: {hosts: {web2: {}}}\n")
        await store.save(pack(root))  # the Secret exists: replaced, not a second one
        return before, first, await store.load()

    before, first, last = asyncio.run(scenario())
    assert before is None and first is not None and last is not None
    unpack(last, tmp_path / "out")
    assert b"web2" in (tmp_path / "out" / KEPT / "infra/inventory.yml").read_bytes()
    secret = kube_emulator.get(
        "v1/secrets", "cratekeeper-artifacts-acme-staging", namespace=namespace
    )
    assert secret is not None
    assert secret["metadata"]["labels"] == {
        "app.kubernetes.io/managed-by": "cratekeeper",
        "cratekeeper.dev/workspace": "acme-staging",
    }
    assert list(secret["data"]) == ["artifacts.tar.gz"]


def test_a_long_workspace_name_still_gives_a_valid_secret_name() -> None:
    name = artifacts_secret_name("w" * 253)
    assert len(name) <= 253 and name.startswith("cratekeeper-artifacts-www")
    assert name != artifacts_secret_name("w" * 252 + "x")


# --- end to end: one block's artifacts reach the next, and the next revision ---------------

PRODUCER = """\
- hosts: localhost
  connection: local
  gather_facts: false
  tasks:
    - ansible.builtin.copy:
        dest: "{{ lookup('env', 'POLYCRATE_WORKSPACE') }}/artifacts/blocks/producer/inventory.yml"
        content: "all: {hosts: {web-{{ block.config.serial }}: {}}}\\n"
        mode: "0600"
"""
CONSUMER = """\
- hosts: localhost
  connection: local
  gather_facts: false
  tasks:
    - ansible.builtin.copy:
        dest: "{{ lookup('env', 'POLYCRATE_WORKSPACE') }}/artifacts/blocks/consumer/seen.txt"
        content: "{{ lookup('file', lookup('env', 'POLYCRATE_WORKSPACE')
                   + '/artifacts/blocks/producer/inventory.yml') }} round {{ block.config.round }}"
        mode: "0600"
"""


def test_a_blocks_artifacts_reach_the_next_block_and_later_revisions(
    tmp_path: Path, oci_registry: Registry, kubeconfig: Path
) -> None:
    producer = push_playbook_block(oci_registry.host, "producer", PRODUCER, tmp_path)
    consumer = push_playbook_block(oci_registry.host, "consumer", CONSUMER, tmp_path)
    repo = GitRepo(tmp_path / "ws")
    (repo.path / "artifacts/secrets").mkdir(parents=True)
    shutil.copy(kubeconfig, repo.path / "artifacts/secrets/kubeconfig.yml")

    def workspace(round_: int) -> str:
        (repo.path / "workspace.poly").write_text(
            "name: acme-artifacts\norganization: acme\nblocks:\n"
            f"  - {{name: producer, from: '{producer}', config: {{serial: 1}}}}\n"
            f"  - {{name: consumer, from: '{consumer}', config: {{round: {round_}}}}}\n"
        )
        return repo.commit(f"round {round_}")

    state = tmp_path / "ws.json"
    args = ["reconcile", str(repo.path), "--state", str(state)]
    args += ["--insecure-registry", oci_registry.host]
    workspace(1)
    assert main(args) == 0
    workspace(2)  # only the consumer changed: it runs alone, in a fresh export
    assert main(args) == 0
    kept = state.with_name("ws.artifacts.tar.gz")
    unpack(kept.read_bytes(), tmp_path / "kept")
    seen = (tmp_path / "kept" / KEPT / "consumer/seen.txt").read_text()
    assert seen == "all: {hosts: {web-1: {}}} round 2"
