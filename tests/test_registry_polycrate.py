"""Blocks as the real ``polycrate blocks push`` writes them, against the real registry.

Polycrate (cmd/oci.go ``WrapOCIImage``) pulls its configured base image, appends one layer made
by ``layerFromDir`` (a ``filepath.Walk`` of the block directory: a ``.`` entry, relative names,
permission bits, directories and regular files only) with go-containerregistry's
``mutate.AppendLayers``, adds the block's labels and ``polycrate.block.version`` to the config
and pushes ``:<version>`` and ``:latest``. Its block.poly ``name`` has no registry host. The
images here are built the same way, byte for byte where it matters, and pushed to the real
Debian docker-registry.
"""

from __future__ import annotations

import io
import json
import logging
import shutil
import tarfile
from collections.abc import Callable
from pathlib import Path, PurePosixPath

import pytest

from controller.cli import main
from controller.errors import BlockMismatchError, DigestMismatchError, UnsafeArchiveError
from controller.refs import BlockRef
from controller.registry import format as fmt
from controller.registry import pull_block, push_block
from controller.registry.archive import extract_layer
from controller.registry.checksum import polycrate_md5
from tests.support.actions import EXAMPLES, SEED_NAME
from tests.support.gitrepo import GitRepo
from tests.support.kube_emulator import KubeEmulator
from tests.support.oci_registry import (
    Registry,
    RegistryProxy,
    go_layer,
    polycrate_layer,
    push_polycrate_image,
)
from tests.support.registry_blocks import (
    assert_nothing_written,
    client_for,
    make_block,
    new_ref,
    tree,
)


def polycrate_block(root: Path, ref: BlockRef, *, name: str | None = None) -> Path:
    """A block directory the Polycrate way: ``name`` without the registry host."""
    return make_block(root, name or ref.repository, ref.tag)


BASE = go_layer([("etc", None), ("etc/base-release", b"scratch-ish base\n")])


def polycrate_labels(block: Path, ref: BlockRef) -> dict[str, str]:
    return {
        "polycrate.block.version": ref.tag,
        fmt.LABEL_POLYCRATE_CHECKSUM: polycrate_md5(block),
        fmt.LABEL_POLYCRATE_CHECKSUM_ALGO: "md5",
    }


# --- Polycrate-pushed blocks ---------------------------------------------------------------


@pytest.mark.parametrize("oci_manifest", [False, True], ids=["docker-manifest", "oci-manifest"])
def test_polycrate_pushed_two_layer_block_pulls_and_is_ready_to_run(
    oci_registry: Registry, tmp_path: Path, oci_manifest: bool, caplog: pytest.LogCaptureFixture
) -> None:
    ref = new_ref(oci_registry.host)
    client = client_for(oci_registry.host, tmp_path)
    src = polycrate_block(tmp_path / "src", ref)
    digest = push_polycrate_image(
        client,
        ref,
        [BASE, polycrate_layer(src)],
        polycrate_labels(src, ref),
        oci_manifest=oci_manifest,
    )

    with caplog.at_level(logging.WARNING, logger="controller.registry.pull"):
        pulled = pull_block(ref, tmp_path / "ws", client=client)

    assert (pulled.notes, caplog.messages) == ((), [])  # the md5 label matches: nothing to say
    assert pulled.digest == digest
    assert pulled.path == tmp_path / "ws" / "blocks" / ref.registry / ref.repository
    assert pulled.block.name == ref.repository  # Polycrate's registry-less name is accepted
    deploy = pulled.block.action("deploy")
    assert deploy is not None and deploy.playbook is not None
    assert (pulled.path / deploy.playbook).is_file()
    assert (pulled.path / "hooks" / "check.sh").stat().st_mode & 0o111  # still executable
    # Flattened in order, exactly as Polycrate's pull does: the base's files come along.
    assert (pulled.path / "etc" / "base-release").read_bytes() == b"scratch-ish base\n"
    assert {k: v for k, v in tree(pulled.path).items() if not k.startswith("etc")} == tree(src)


def test_block_name_with_its_registry_host_also_matches(
    oci_registry: Registry, tmp_path: Path
) -> None:
    ref = new_ref(oci_registry.host)
    client = client_for(oci_registry.host, tmp_path)
    src = polycrate_block(tmp_path / "src", ref, name=ref.name)
    push_polycrate_image(client, ref, [polycrate_layer(src)], polycrate_labels(src, ref))
    assert pull_block(ref, tmp_path / "ws", client=client).block.name == ref.name


@pytest.mark.parametrize(
    "name",
    ["acme/blocks/another", "other.example.com/{repository}", "{repository}/sub"],
    ids=["other-path", "other-registry", "longer-path"],
)
def test_a_block_poly_naming_another_block_is_refused(
    oci_registry: Registry, tmp_path: Path, name: str
) -> None:
    ref = new_ref(oci_registry.host)
    client = client_for(oci_registry.host, tmp_path)
    src = polycrate_block(tmp_path / "src", ref, name=name.format(repository=ref.repository))
    push_polycrate_image(client, ref, [BASE, polycrate_layer(src)], {})
    with pytest.raises(BlockMismatchError, match="the block name must be") as err:
        pull_block(ref, tmp_path / "ws", client=client)
    assert not err.value.retryable
    assert_nothing_written(tmp_path / "ws", ref)


def test_an_md5_label_we_do_not_reproduce_is_a_warning_and_the_block_still_pulls(
    oci_registry: Registry, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The label lives in the config the manifest digest covers: a difference cannot be
    tampering, only our reading of hashdir or another state of the directory Polycrate hashed."""
    ref = new_ref(oci_registry.host)
    client = client_for(oci_registry.host, tmp_path)
    src = polycrate_block(tmp_path / "src", ref)
    labels = polycrate_labels(src, ref)
    (src / "NOTES.md").write_text("written after Polycrate hashed the directory\n")
    push_polycrate_image(client, ref, [BASE, polycrate_layer(src)], labels)

    with caplog.at_level(logging.WARNING, logger="controller.registry.pull"):
        pulled = pull_block(ref, tmp_path / "ws", client=client)

    assert (pulled.path / "NOTES.md").is_file()
    expected, actual = labels[fmt.LABEL_POLYCRATE_CHECKSUM], polycrate_md5(src)
    (note,) = pulled.notes
    for part in (str(ref), expected, actual, "content verified by its OCI digests"):
        assert part in note
    assert [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING] == [note]


def test_a_checksum_algorithm_other_than_md5_is_not_checked_and_says_so(
    oci_registry: Registry, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    ref = new_ref(oci_registry.host)
    client = client_for(oci_registry.host, tmp_path)
    src = polycrate_block(tmp_path / "src", ref)
    labels = {**polycrate_labels(src, ref), fmt.LABEL_POLYCRATE_CHECKSUM_ALGO: "sha256"}
    push_polycrate_image(client, ref, [polycrate_layer(src)], labels)
    with caplog.at_level(logging.WARNING, logger="controller.registry.pull"):
        pulled = pull_block(ref, tmp_path / "ws", client=client)
    (note,) = pulled.notes
    assert "made with sha256" in note and "not checked" in note
    assert note in caplog.messages


def test_a_checksum_that_cannot_be_computed_is_noted_and_the_block_still_pulls(
    oci_registry: Registry, tmp_path: Path
) -> None:
    """Polycrate never pushes a symlink, another tool may: hashdir could not hash through one
    to a directory, so neither do we, and that is no reason to refuse the block."""
    ref = new_ref(oci_registry.host)
    client = client_for(oci_registry.host, tmp_path)
    poly = f"name: {ref.repository}\nversion: {ref.tag}\nactions: []\n".encode()
    layer = io.BytesIO()
    with tarfile.open(fileobj=layer, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        info = tarfile.TarInfo("block.poly")
        info.size = len(poly)
        tar.addfile(info, io.BytesIO(poly))
        directory = tarfile.TarInfo("templates")
        directory.type = tarfile.DIRTYPE
        tar.addfile(directory)
        link = tarfile.TarInfo("current")
        link.type, link.linkname = tarfile.SYMTYPE, "templates"
        tar.addfile(link)
    labels = {fmt.LABEL_POLYCRATE_CHECKSUM: "0" * 32, fmt.LABEL_POLYCRATE_CHECKSUM_ALGO: "md5"}
    push_polycrate_image(client, ref, [layer.getvalue()], labels)

    (note,) = pull_block(ref, tmp_path / "ws", client=client).notes
    assert "not checked" in note and "symlink to a directory" in note


def test_a_wrong_cratekeeper_checksum_label_is_refused_and_nothing_is_written(
    oci_registry: Registry, tmp_path: Path
) -> None:
    ref = new_ref(oci_registry.host)
    client = client_for(oci_registry.host, tmp_path)
    src = polycrate_block(tmp_path / "src", ref)
    wrong = "sha256:" + "0" * 64
    labels = {**polycrate_labels(src, ref), fmt.LABEL_CHECKSUM: wrong}
    push_polycrate_image(client, ref, [BASE, polycrate_layer(src)], labels)

    with pytest.raises(DigestMismatchError, match=fmt.LABEL_CHECKSUM) as err:
        pull_block(ref, tmp_path / "ws", client=client)
    assert err.value.reason == "DigestMismatch"
    assert not err.value.retryable  # we know how we compute it: a mismatch is tampering
    assert_nothing_written(tmp_path / "ws", ref)


def test_cratekeeper_pushes_polycrates_labels_and_a_layer_polycrate_can_unpack(
    oci_registry: Registry, tmp_path: Path
) -> None:
    ref = new_ref(oci_registry.host)
    client = client_for(oci_registry.host, tmp_path)
    src = polycrate_block(tmp_path / "src", ref)
    digest = push_block(src, ref, client=client)

    manifest = client.get_manifest(ref.registry, ref.repository, digest).json()
    config_desc = manifest["config"]
    assert isinstance(config_desc, dict)
    body = io.BytesIO()
    client.download_blob(
        ref.registry, ref.repository, config_desc["digest"], config_desc["size"], body
    )
    labels = json.loads(body.getvalue())["config"]["Labels"]
    assert labels[fmt.LABEL_VERSION] == ref.tag
    assert labels[fmt.LABEL_POLYCRATE_CHECKSUM] == polycrate_md5(src)
    assert labels[fmt.LABEL_POLYCRATE_CHECKSUM_ALGO] == "md5"
    assert manifest["mediaType"] == fmt.DOCKER_MANIFEST  # what crane.Pull reads
    assert client.head_manifest(ref.registry, ref.repository, "latest") == digest
    assert tree(pull_block(ref, tmp_path / "ws", client=client).path) == tree(src)


# --- whiteouts and layer order -------------------------------------------------------------


def test_later_layers_win_and_whiteouts_delete_what_the_layers_below_wrote(
    oci_registry: Registry, tmp_path: Path
) -> None:
    ref = new_ref(oci_registry.host)
    client = client_for(oci_registry.host, tmp_path)
    poly = f"name: {ref.repository}\nversion: {ref.tag}\nactions: []\n".encode()
    base = go_layer(
        [
            ("old.yml", b"stale"),
            ("docs", None),
            ("docs/a.md", b"a"),
            ("docs/keep", None),
            ("docs/keep/x", b"x"),
            ("deploy.yml", b"v1"),
            ("gone", None),
            ("gone/deep.txt", b"d"),
            ("was-dir", None),
            ("was-dir/f", b"f"),
        ]
    )
    middle = go_layer(
        [
            (".wh.old.yml", b""),
            ("docs", None),
            ("docs/.wh..wh..opq", b""),
            ("docs/b.md", b"b"),
            (".wh.gone", b""),
            ("was-dir", b"now a file"),
        ]
    )
    top = go_layer([("block.poly", poly), ("deploy.yml", b"v2")])
    push_polycrate_image(client, ref, [base, middle, top], {})

    pulled = pull_block(ref, tmp_path / "ws", client=client)
    assert tree(pulled.path) == {
        "block.poly": poly,
        "deploy.yml": b"v2",
        "docs": "dir",
        "docs/b.md": b"b",
        "was-dir": b"now a file",
    }


def test_a_whiteout_late_in_its_layer_still_spares_what_that_layer_wrote(
    oci_registry: Registry, tmp_path: Path
) -> None:
    ref = new_ref(oci_registry.host)
    client = client_for(oci_registry.host, tmp_path)
    poly = f"name: {ref.repository}\nversion: {ref.tag}\nactions: []\n".encode()
    base = go_layer([("docs", None), ("docs/a.md", b"a"), ("docs/sub", None), ("docs/sub/y", b"y")])
    top = io.BytesIO()
    with tarfile.open(fileobj=top, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for name, data in (("block.poly", poly), ("docs/b.md", b"b"), ("docs/sub/x", b"x")):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        link = tarfile.TarInfo("docs/link")
        link.type, link.linkname = tarfile.SYMTYPE, "b.md"
        tar.addfile(link)
        tar.addfile(tarfile.TarInfo("docs/.wh..wh..opq"), io.BytesIO(b""))
    push_polycrate_image(client, ref, [base, top.getvalue()], {})

    pulled = pull_block(ref, tmp_path / "ws", client=client)
    assert tree(pulled.path) == {
        "block.poly": poly,
        "docs": "dir",
        "docs/b.md": b"b",
        "docs/link": "link:b.md",
        "docs/sub": "dir",
        "docs/sub/x": b"x",
    }


@pytest.mark.parametrize(
    "whiteout",
    ["../.wh.x", ".wh..", "link/.wh.target"],
    ids=["dotdot-path", "whiteout-of-dotdot", "through-symlink"],
)
def test_hostile_whiteouts_are_refused(
    oci_registry: Registry, tmp_path: Path, whiteout: str
) -> None:
    ref = new_ref(oci_registry.host)
    client = client_for(oci_registry.host, tmp_path)
    base = io.BytesIO()
    with tarfile.open(fileobj=base, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        link = tarfile.TarInfo("link")
        link.type, link.linkname = tarfile.SYMTYPE, "."
        tar.addfile(link)
    top = go_layer([(whiteout, b"")])
    push_polycrate_image(client, ref, [base.getvalue(), top], {})
    with pytest.raises(UnsafeArchiveError) as err:
        pull_block(ref, tmp_path / "ws", client=client)
    assert not err.value.retryable
    assert_nothing_written(tmp_path / "ws", ref)


def test_the_size_limit_counts_every_layer_together(oci_registry: Registry, tmp_path: Path) -> None:
    ref = new_ref(oci_registry.host)
    client = client_for(oci_registry.host, tmp_path, max_block_size=300_000)
    src = polycrate_block(tmp_path / "src", ref)
    big = [(go_layer([(f"pad{n}", bytes(120_000))])) for n in range(3)]
    push_polycrate_image(client, ref, [*big, polycrate_layer(src)], {})
    with pytest.raises(UnsafeArchiveError, match="limit of 300000 bytes"):
        pull_block(ref, tmp_path / "ws", client=client)
    assert_nothing_written(tmp_path / "ws", ref)


def test_diff_ids_that_do_not_match_the_layers_are_a_digest_mismatch(
    oci_registry: Registry, tmp_path: Path
) -> None:
    ref = new_ref(oci_registry.host)
    client = client_for(oci_registry.host, tmp_path)
    src = polycrate_block(tmp_path / "src", ref)
    layers = [BASE, polycrate_layer(src)]
    push_polycrate_image(client, ref, layers[::-1], {})  # rootfs lists them in another order
    manifest = (
        client_for(ref.registry, tmp_path)
        .get_manifest(ref.registry, ref.repository, ref.tag)
        .json()
    )
    layer_list = manifest["layers"]
    assert isinstance(layer_list, list)
    manifest["layers"] = layer_list[::-1]
    body = json.dumps(manifest).encode()
    client.put_manifest(ref.registry, ref.repository, ref.tag, body, fmt.DOCKER_MANIFEST)
    with pytest.raises(DigestMismatchError, match=r"rootfs\.diff_ids"):
        pull_block(ref, tmp_path / "ws", client=client)


def test_layers_of_older_polycrate_releases_with_go_file_mode_bits_unpack(tmp_path: Path) -> None:
    """Before Mode().Perm(), layerFromDir wrote int64(info.Mode()): a directory's mode carries
    Go's ModeDir bit (1 << 31), which archive/tar can only encode in GNU base-256."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.GNU_FORMAT) as tar:
        for name, mode, data in (
            (".", (1 << 31) | 0o755, None),
            ("hooks", (1 << 31) | 0o755, None),
            ("hooks/run.sh", 0o755, b"#!/bin/sh\n"),
        ):
            info = tarfile.TarInfo(name)
            info.mode = mode
            if data is None:
                info.type = tarfile.DIRTYPE
                tar.addfile(info)
            else:
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    dest = tmp_path / "out"
    dest.mkdir()
    extract_layer(io.BytesIO(buffer.getvalue()), dest, gzipped=False, limit=1 << 20)
    assert (dest / "hooks").is_dir()
    assert (dest / "hooks" / "run.sh").stat().st_mode & 0o777 == 0o755


# --- the checksum itself -------------------------------------------------------------------


def test_polycrate_checksum_covers_paths_contents_and_order_but_not_modes(tmp_path: Path) -> None:
    a = make_block(tmp_path / "a", "acme/x", "1.0.0")
    b = make_block(tmp_path / "b", "acme/x", "1.0.0")
    assert polycrate_md5(a) == polycrate_md5(b)
    (b / "deploy.yml").chmod(0o700)
    assert polycrate_md5(a) == polycrate_md5(b)
    (b / "deploy.yml").write_text("- hosts: localhost\n  tasks: [] \n")
    assert polycrate_md5(a) != polycrate_md5(b)
    (b / "deploy.yml").write_bytes((a / "deploy.yml").read_bytes())
    (b / "rollback.yml").rename(b / "rollback2.yml")
    assert polycrate_md5(a) != polycrate_md5(b)
    only = {PurePosixPath("block.poly")}
    assert polycrate_md5(a, only=only) == polycrate_md5(b, only=only)


# --- end to end: a Polycrate-pushed block deploys ------------------------------------------


def test_reconcile_deploys_a_polycrate_pushed_block_with_one_registry_head(
    oci_registry: Registry,
    registry_proxy: Callable[..., RegistryProxy],
    kube_emulator: KubeEmulator,
    kubeconfig: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The example app block, named and pushed as `polycrate blocks push` does, applied by
    `cratekeeper reconcile` with real Git, the real registry, real Ansible, emulated cluster;
    the registry sees one HEAD for the one block that runs (issue 11 point 1). Its md5 label
    is one cratekeeper does not reproduce: the block still runs, and the progress says so."""
    proxy = registry_proxy()
    ref = BlockRef.parse(f"{proxy.host}/acme/apps/app-deploy-polycrate:1.2.0")
    block = tmp_path / "block"
    shutil.copytree(EXAMPLES / "blocks" / "app-deploy", block)
    poly = block / "block.poly"
    poly.write_text(poly.read_text().replace(SEED_NAME, ref.repository))  # no registry host
    client = client_for(proxy.host, tmp_path)
    labels = {**polycrate_labels(block, ref), fmt.LABEL_POLYCRATE_CHECKSUM: "9ef21c10" * 4}
    digest = push_polycrate_image(client, ref, [BASE, polycrate_layer(block)], labels)

    repo = GitRepo(tmp_path / "acme-production-1")
    shutil.copytree(EXAMPLES / "acme-production-1", repo.path, dirs_exist_ok=True)
    ws = repo.path / "workspace.poly"
    ws.write_text(ws.read_text().replace(f"{SEED_NAME}:1.1.0", str(ref)))
    shutil.copy(kubeconfig, repo.path / "artifacts/secrets/kubeconfig.yml")
    repo.commit("acme-production-1 on a Polycrate-pushed app-deploy")
    state = tmp_path / "state.json"
    proxy.requests.clear()

    code = main(
        ["reconcile", str(repo.path), "--state", str(state), "--insecure-registry", ref.registry]
    )

    out = capsys.readouterr().out
    assert code == 0, out
    (note,) = [line for line in out.splitlines() if fmt.LABEL_POLYCRATE_CHECKSUM in line]
    assert "9ef21c10" * 4 in note and "content verified by its OCI digests" in note
    namespace = "acme-app-acme-production-1"
    deployment = kube_emulator.get("apps/v1/deployments", "acme-app", namespace=namespace)
    assert deployment is not None
    image = deployment["spec"]["template"]["spec"]["containers"][0]["image"]
    assert image == "ghcr.io/acme/myapp:1.2.0"
    (applied,) = json.loads(state.read_text())["blocks"]
    assert (applied["version"], applied["digest"], applied["phase"]) == ("1.2.0", digest, "Applied")
    heads = [path for method, path in proxy.requests if method == "HEAD"]
    assert heads == [f"/v2/{ref.repository}/manifests/{ref.tag}"]
