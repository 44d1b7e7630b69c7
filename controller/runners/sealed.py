"""A Job's ``artifacts/blocks/`` tree, sealed for the trip out of its pod through the pod log.

The kubernetes runner's pod cannot write to the Workspace's artifacts Secret; what it can do is
print. After the action, the main container's entry script runs this file as a script
(:func:`main`; prepare copies it to the tools folder, since the execution image has no
cratekeeper, only Ansible's Python, whose ``cryptography`` it uses): it packs the tree as
:func:`controller.runners.artifacts.pack` does (a reproducible gzip tar of files and folders,
at most :data:`MAX_PACKED` bytes), encrypts it with AES-256-GCM under the run's random key
(``artifacts.key`` of the run's Secret, a memory-backed volume; the Job's name is the
associated data, so a block of another run is refused) and prints it base64-encoded between
:data:`BEGIN` and :data:`END` lines. The log then holds only ciphertext.

The runner splits the block off the log (:func:`split_log`: it never reaches the log tail,
the status or ``cratekeeper logs``), opens it with the key (:func:`open_block`), and lays the
tree back into the export with :func:`controller.runners.artifacts.unpack` (which refuses
anything unsafe), so the pipeline keeps it as it keeps the local runner's.

Only the standard library at import time (this file runs alone in the pod); ``cryptography``
is imported where it is used.
"""

from __future__ import annotations

import base64
import binascii
import gzip
import io
import os
import re
import secrets
import sys
import tarfile
from collections.abc import Iterable
from pathlib import Path

BEGIN = "cratekeeper-artifacts-begin"
END = "cratekeeper-artifacts-end"
MAX_PACKED = 512 * 1024
"""As :data:`controller.runners.artifacts.MAX_PACKED` (a test keeps them equal)."""
KEY_BYTES = 32  # AES-256
NONCE_BYTES = 12
TAG_BYTES = 16
LINE = 4000
"""Base64 characters per log line (container runtimes split lines past 16 KiB)."""
_TOO_LARGE = re.compile(
    r"cratekeeper: artifacts/blocks/ packs to (\d+) bytes, over the \d+ bytes cratekeeper "
    r"keeps \(largest: (.*)\); not brought back"
)


def new_key() -> bytes:
    """A fresh random 256-bit key for one run."""
    return secrets.token_bytes(KEY_BYTES)


def pack_tree(base: Path) -> bytes:
    """``base`` as a reproducible gzip tar of its files and folders (links and special files
    are left out), as :func:`controller.runners.artifacts.pack` packs it."""
    buffer = io.BytesIO()
    with (
        gzip.GzipFile(fileobj=buffer, mode="wb", mtime=0) as gz,
        tarfile.open(fileobj=gz, mode="w", format=tarfile.PAX_FORMAT) as tar,
    ):
        for path in sorted(base.rglob("*")) if base.is_dir() else ():
            if path.is_symlink() or not (path.is_file() or path.is_dir()):
                continue
            info = tarfile.TarInfo(path.relative_to(base).as_posix())
            info.mtime, info.uid, info.gid, info.uname, info.gname = 0, 0, 0, "", ""
            if path.is_dir():
                info.type, info.mode = tarfile.DIRTYPE, 0o755
                tar.addfile(info)
                continue
            info.size, info.mode = path.stat().st_size, 0o644
            with path.open("rb") as handle:
                tar.addfile(info, handle)
    return buffer.getvalue()


def seal(data: bytes, key: bytes, run_id: str) -> list[str]:
    """The log lines carrying ``data`` encrypted under ``key`` for the run ``run_id``."""
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    nonce = secrets.token_bytes(NONCE_BYTES)
    text = base64.b64encode(nonce + AESGCM(key).encrypt(nonce, data, run_id.encode())).decode()
    body = [text[i : i + LINE] for i in range(0, len(text), LINE)]
    return [f"{BEGIN} {run_id}", *body, f"{END} {run_id}"]


def split_log(log: str, run_id: str | None = None) -> tuple[list[str], str | None]:
    """The log's lines without any sealed block (an unended one runs to the end of the log),
    and the body of the last complete block of ``run_id`` (None: there is none)."""
    kept: list[str] = []
    body: list[str] | None = None
    found: str | None = None
    owner: str | None = None
    for line in log.splitlines():
        if body is None:
            if line.startswith(f"{BEGIN} "):
                body, owner = [], line[len(BEGIN) + 1 :].strip()
            else:
                kept.append(line)
        elif line.startswith(f"{END} "):
            if run_id is not None and owner == run_id == line[len(END) + 1 :].strip():
                found = "".join(body)
            body = None
        else:
            body.append(line.strip())
    return kept, found


def open_block(body: str, key: bytes, run_id: str) -> bytes:
    """The packed tree of a sealed block; ``ValueError`` when it is too large, not base64, or
    was not sealed with ``key`` for ``run_id`` (tampered, truncated, another run's)."""
    from cryptography.exceptions import InvalidTag
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    limit = (MAX_PACKED + NONCE_BYTES + TAG_BYTES) * 4 // 3 + 4
    if len(body) > limit:
        raise ValueError(f"the sealed artifacts are {len(body)} characters, over {limit}")
    try:
        raw = base64.b64decode(body, validate=True)
    except binascii.Error as exc:
        raise ValueError(f"the sealed artifacts are not base64: {exc}") from None
    if len(raw) < NONCE_BYTES + TAG_BYTES:
        raise ValueError("the sealed artifacts are truncated")
    try:
        return AESGCM(key).decrypt(raw[:NONCE_BYTES], raw[NONCE_BYTES:], run_id.encode())
    except InvalidTag:
        raise ValueError(
            "the sealed artifacts do not decrypt with this run's key (tampered or truncated)"
        ) from None


def too_large_line(size: int, largest: str) -> str:
    """What the sealer prints (stderr, so into the pod log) for a tree over :data:`MAX_PACKED`;
    :func:`too_large` reads it back."""
    return (
        f"cratekeeper: artifacts/blocks/ packs to {size} bytes, over the {MAX_PACKED} bytes "
        f"cratekeeper keeps (largest: {largest}); not brought back"
    )


def too_large(lines: Iterable[str]) -> tuple[int, str] | None:
    """The packed size and the largest files of the last :func:`too_large_line` in a log's
    ``lines``, or None when the sealer printed none."""
    found = None
    for line in lines:
        match = _TOO_LARGE.fullmatch(line.strip())
        if match:
            found = int(match[1]), match[2]
    return found


def _largest(base: Path) -> str:
    sizes = sorted(
        (p.stat().st_size, p.relative_to(base).as_posix())
        for p in base.rglob("*")
        if p.is_file() and not p.is_symlink()
    )
    return ", ".join(f"{name} ({size} bytes)" for size, name in sizes[-3:])


def main() -> int:
    """In the pod, after the action: print the sealed ``artifacts/blocks/`` tree.

    Reads ``CRATEKEEPER_ARTIFACTS_KEY`` (the key file), ``CRATEKEEPER_RUN_ID`` and
    ``POLYCRATE_WORKSPACE``; prints nothing when there is no tree; over :data:`MAX_PACKED`
    says so on stderr (:func:`too_large_line`) and prints no block (the runner then fails the
    run: nothing new is kept).
    """
    key = Path(os.environ["CRATEKEEPER_ARTIFACTS_KEY"]).read_bytes()
    run_id = os.environ["CRATEKEEPER_RUN_ID"]
    base = Path(os.environ.get("POLYCRATE_WORKSPACE", "/workspace")) / "artifacts" / "blocks"
    if not base.is_dir():
        return 0
    data = pack_tree(base)
    if len(data) > MAX_PACKED:
        print(too_large_line(len(data), _largest(base)), file=sys.stderr)
        return 0
    sys.stdout.write("\n".join(seal(data, key, run_id)) + "\n")
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
