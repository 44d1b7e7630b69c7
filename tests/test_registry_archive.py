"""Hostile block archives: nothing escapes the block directory, nothing fills the disk."""

from __future__ import annotations

import io
import os
import tarfile
from pathlib import Path

import pytest

from controller.errors import (
    UnsafeArchiveError,
)
from controller.registry import (
    pull_block,
)
from controller.registry.archive import extract_layer
from tests.support.oci_registry import (
    Registry,
)
from tests.support.registry_blocks import (
    assert_nothing_written,
    block_poly,
    client_for,
    entry,
    new_ref,
    push_raw_layer,
    tar_of,
)

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
