"""The kubeconfig rule, ``secrets.poly`` and age decryption (DESIGN §1, §2).

A workspace manages exactly one cluster, so it holds exactly one kubeconfig, at
``artifacts/secrets/kubeconfig.yml`` or, age-encrypted, ``artifacts/secrets/kubeconfig.yml.age``.
None, both, or any other kubeconfig-looking file is an error, never a guess.

Secret block config lives next to ``workspace.poly`` in ``secrets.poly`` or, age-encrypted with
the same identities, ``secrets.poly.age`` (at most one of them). This module finds and decrypts
it; :func:`controller.workspace.check_secrets` parses the text.

Plaintext only ever lives in memory here and, for a run, in a 0600 file on a memory-backed
filesystem when one exists (``/dev/shm``), removed when the run ends. No message in this
module ever includes file contents.

The config hash key: a block whose secret config changed must run again, so the status records
a hash that covers the secrets. A plain SHA-256 of a low-entropy secret (a short password) is
reversed by guessing, by anyone who may read the Workspace status; so that hash is an HMAC
(:func:`controller.plan.config_hash`) keyed by :func:`config_hash_key`, derived from the
decrypted kubeconfig. That key exists in every workspace, is the same for the operator and the
CLI, is never stored, and is secret from status readers: whoever holds the kubeconfig holds the
cluster the secrets are deployed to (and, in an encrypted workspace, the identities that open
secrets.poly.age too). Rotating the kubeconfig changes the key, so blocks with secrets run once
more (reason ``config``): the price of keeping no key of our own. A kubeconfig without any
credential (exec plugins only) makes a weaker key; its exact bytes must still be guessed.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import pyrage

from controller.errors import DecryptionError, KubeconfigError, Problem, WorkspaceError
from controller.tree import Tree, read_files

KUBECONFIG = "artifacts/secrets/kubeconfig.yml"
KUBECONFIG_AGE = KUBECONFIG + ".age"
SECRETS_POLY = "secrets.poly"
SECRETS_POLY_AGE = SECRETS_POLY + ".age"
_HASH_KEY_CONTEXT = b"cratekeeper config-hash key v1\0"

_KUBECONFIG_NAME = re.compile(r"(kubeconfig|kube[-_.]?config)", re.IGNORECASE)
_KUBECONFIG_CONTENT = re.compile(rb"^kind:\s*[\"']?Config[\"']?\s*$", re.MULTILINE)
_CLUSTERS = re.compile(rb"^clusters:", re.MULTILINE)
_IGNORED_DIRS = ("blocks/", ".git/")
_SCAN_LIMIT = 1024 * 1024
_SCANNED_SUFFIXES = (".yml", ".yaml", ".json", "")


@dataclass(frozen=True)
class KubeconfigLocation:
    """Where the workspace's kubeconfig is, and whether it is age-encrypted."""

    path: str
    encrypted: bool


@dataclass(frozen=True)
class AgeKeys:
    """What may decrypt ``*.age`` files: age identities and/or a passphrase (never logged)."""

    identities: tuple[str, ...] = field(default=(), repr=False)
    passphrase: str | None = field(default=None, repr=False)

    @classmethod
    def from_sources(
        cls,
        identity_file: Path | None = None,
        identity: str | None = None,
        passphrase: str | None = None,
    ) -> AgeKeys:
        """Collect identities from a file (age's identity-file format) and/or a literal value."""
        lines: list[str] = []
        if identity_file is not None:
            try:
                lines += identity_file.read_text().splitlines()
            except OSError as exc:
                raise DecryptionError(
                    f"cannot read the age identity file {identity_file}: {exc.strerror}; "
                    "check CRATEKEEPER_AGE_IDENTITY_FILE"
                ) from None
        if identity:
            lines += identity.splitlines()
        keys = tuple(ln.strip() for ln in lines if ln.strip() and not ln.lstrip().startswith("#"))
        return cls(keys, passphrase or None)


def _kubeconfig_named(relpath: str) -> bool:
    """Named like one: ``*kubeconfig*``, ``kube-config``, ``.kube/config``..."""
    path = PurePosixPath(relpath)
    return bool(_KUBECONFIG_NAME.search(path.name)) or path.parts[-2:] == (".kube", "config")


def _kubeconfig_content(content: bytes) -> bool:
    """A YAML/JSON file's content that reads like a kubeconfig."""
    return bool(_KUBECONFIG_CONTENT.search(content) and _CLUSTERS.search(content))


def find_kubeconfig(tree: Tree) -> KubeconfigLocation:
    """Apply the kubeconfig rule; raise :class:`KubeconfigError` saying what to change."""
    files = tree.files()
    present = set(files)
    plain, encrypted = KUBECONFIG in present, KUBECONFIG_AGE in present
    candidates = [
        f
        for f in files
        if f not in (KUBECONFIG, KUBECONFIG_AGE) and not f.startswith(_IGNORED_DIRS)
    ]
    scanned = [
        f
        for f in candidates
        if not _kubeconfig_named(f) and PurePosixPath(f).suffix in _SCANNED_SUFFIXES
    ]
    contents = read_files(tree, scanned, _SCAN_LIMIT)  # one Git process for all, not one each
    others = [
        f
        for f in candidates
        if _kubeconfig_named(f) or (f in contents and _kubeconfig_content(contents[f]))
    ]
    if others:
        raise KubeconfigError(
            f"found another kubeconfig-like file: {', '.join(others)}; a workspace manages "
            f"exactly one cluster, whose kubeconfig must be {KUBECONFIG} (or {KUBECONFIG_AGE}): "
            "move it there or remove it"
        )
    if plain and encrypted:
        raise KubeconfigError(
            f"both {KUBECONFIG} and {KUBECONFIG_AGE} exist; keep exactly one "
            "(remove the plaintext file if the workspace is encrypted)"
        )
    if not plain and not encrypted:
        raise KubeconfigError(
            f"no kubeconfig: add the target cluster's kubeconfig as {KUBECONFIG} "
            f"(or age-encrypted as {KUBECONFIG_AGE})"
        )
    return KubeconfigLocation(KUBECONFIG_AGE if encrypted else KUBECONFIG, encrypted)


def decrypt_age(ciphertext: bytes, keys: AgeKeys, what: str) -> bytes:
    """Decrypt an age file with identities or a passphrase; errors never include plaintext."""
    if not keys.identities and not keys.passphrase:
        raise DecryptionError(
            f"{what} is age-encrypted but no age identity is configured; set "
            "CRATEKEEPER_AGE_IDENTITY_FILE (or the Workspace's spec.decryption.secretRef)"
        )
    identities = []
    for i, line in enumerate(keys.identities, start=1):
        try:
            identities.append(pyrage.x25519.Identity.from_str(line))
        except pyrage.IdentityError:
            raise DecryptionError(
                f"age identity #{i} is not a valid identity (expected AGE-SECRET-KEY-1...); "
                "check the identity file"
            ) from None
    if identities:
        with contextlib.suppress(pyrage.DecryptError):
            return bytes(pyrage.decrypt(ciphertext, identities))
    if keys.passphrase:
        with contextlib.suppress(pyrage.DecryptError):
            return bytes(pyrage.passphrase.decrypt(ciphertext, keys.passphrase))
    raise DecryptionError(
        f"cannot decrypt {what}: none of the configured age identities (or the passphrase) "
        "matches it, or the file is corrupt; encrypt it to the controller's recipient"
    )


def read_kubeconfig(tree: Tree, keys: AgeKeys) -> bytes:
    """The workspace's kubeconfig in plaintext (decrypted if needed), kept in memory only."""
    location = find_kubeconfig(tree)
    data = tree.read_bytes(location.path)
    if data is None:  # pragma: no cover - find_kubeconfig saw it
        raise KubeconfigError(f"{location.path} disappeared while reading it")
    if location.encrypted:
        return decrypt_age(data, keys, location.path)
    return data


def find_secrets_poly(tree: Tree) -> str | None:
    """``secrets.poly``, ``secrets.poly.age`` or ``None``; both is a :class:`WorkspaceError`."""
    plain = tree.read_bytes(SECRETS_POLY) is not None
    encrypted = tree.read_bytes(SECRETS_POLY_AGE) is not None
    if plain and encrypted:
        raise WorkspaceError(
            [
                Problem(
                    SECRETS_POLY,
                    None,
                    f"both {SECRETS_POLY} and {SECRETS_POLY_AGE} exist; keep exactly one "
                    "(remove the plaintext file if the workspace is encrypted)",
                )
            ]
        )
    if encrypted:
        return SECRETS_POLY_AGE
    return SECRETS_POLY if plain else None


def read_secrets_poly(tree: Tree, keys: AgeKeys) -> tuple[str, str] | None:
    """``(file, plaintext)`` of the workspace's secrets.poly (decrypted in memory), if any."""
    path = find_secrets_poly(tree)
    if path is None:
        return None
    data = tree.read_bytes(path)
    if data is None:  # pragma: no cover - find_secrets_poly saw it
        raise WorkspaceError([Problem(path, None, "disappeared while reading it")])
    if path == SECRETS_POLY_AGE:
        data = decrypt_age(data, keys, path)
    return path, data.decode("utf-8", errors="replace")


def secret_values(config: object) -> tuple[str, ...]:
    """Every scalar of a secret config as text to redact from logs (at least 4 characters).

    Numbers count (a PIN is a secret too); a multi-line value also gives each of its lines,
    since logs are redacted line by line, and its JSON-escaped form when that differs.
    """
    found: set[str] = set()

    def walk(node: object) -> None:
        if isinstance(node, dict):
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)
        elif isinstance(node, str | int | float) and not isinstance(node, bool):
            text = str(node)
            escaped = json.dumps(text, ensure_ascii=False)[1:-1]
            for candidate in (text, escaped, *(ln.strip() for ln in text.splitlines())):
                if len(candidate) >= 4:
                    found.add(candidate)

    walk(config)
    return tuple(sorted(found, key=lambda v: (-len(v), v)))


def config_hash_key(kubeconfig: bytes) -> bytes:
    """The HMAC key of config hashes that cover secrets (see the module docstring)."""
    return hashlib.sha256(_HASH_KEY_CONTEXT + kubeconfig).digest()


def write_private(path: Path, data: bytes) -> Path:
    """``data`` in a new file at ``path`` that only this user may read (0600).

    ``O_EXCL`` with ``O_NOFOLLOW``: an existing file or a planted symlink is an error
    (``FileExistsError``), never overwritten or followed. The one writer of decrypted material
    and credentials to disk; callers put ``path`` in a private directory and remove it after use.
    """
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
    return path


def _private_dir() -> str | None:
    # mkstemp creates the file O_EXCL with mode 0600, so a shared tmpfs is safe here.
    shm = Path("/dev/shm")  # noqa: S108
    return str(shm) if shm.is_dir() and os.access(shm, os.W_OK) else None


@contextlib.contextmanager
def kubeconfig_file(content: bytes) -> Iterator[Path]:
    """A 0600 file holding ``content`` (memory-backed where possible), removed afterwards."""
    fd, name = tempfile.mkstemp(prefix="cratekeeper-kubeconfig-", dir=_private_dir())
    path = Path(name)
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(content)
        yield path
    finally:
        path.unlink(missing_ok=True)
