"""What to fetch and with which credentials: ``spec.source.ref`` and ``secretRef`` as values."""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from controller.errors import SourceError

__all__ = ["GitAuth", "GitRef", "RefKind"]

_FULL_SHA = re.compile(r"^(?:[0-9a-f]{40}|[0-9a-f]{64})$")


class RefKind(StrEnum):
    """What a :class:`GitRef` names, as in ``spec.source.ref``."""

    BRANCH = "branch"
    TAG = "tag"
    COMMIT = "commit"


@dataclass(frozen=True)
class GitRef:
    """One of ``spec.source.ref``'s choices: a branch, a tag or a full commit SHA."""

    kind: RefKind
    name: str

    @classmethod
    def branch(cls, name: str) -> GitRef:
        """A branch, followed as it moves (``main``, not ``refs/heads/main``)."""
        return cls(RefKind.BRANCH, name)

    @classmethod
    def tag(cls, name: str) -> GitRef:
        """A tag; annotated tags are peeled to their commit."""
        return cls(RefKind.TAG, name)

    @classmethod
    def commit(cls, sha: str) -> GitRef:
        """A pinned commit; it must be the full SHA so it can be checked without the network."""
        return cls(RefKind.COMMIT, sha.lower())

    def __post_init__(self) -> None:
        """Refuse names Git would read as options, and abbreviated commit pins."""
        if not self.name or self.name.startswith("-") or any(c.isspace() for c in self.name):
            raise SourceError(f"invalid Git {self.kind.value} name {self.name!r}")
        if self.kind is RefKind.COMMIT and not _FULL_SHA.match(self.name):
            raise SourceError(
                f"commit {self.name!r} is not a full SHA; pin the complete 40-character commit id"
            )

    @property
    def remote_name(self) -> str:
        """The full ref name on the remote (``refs/heads/main``); a commit is its own SHA."""
        if self.kind is RefKind.BRANCH:
            return f"refs/heads/{self.name}"
        if self.kind is RefKind.TAG:
            return f"refs/tags/{self.name}"
        return self.name

    def __str__(self) -> str:
        return f"{self.kind.value} {self.name!r}"


@dataclass(frozen=True)
class GitAuth:
    """Credentials as files (the operator mounts the Workspace's ``secretRef`` Secret as files).

    HTTPS uses ``username``/``password`` (a token works as the password); SSH uses ``identity``
    (a private key) and ``known_hosts``. Host keys are always checked: an SSH remote without a
    ``known_hosts`` file is refused.
    """

    username_file: Path | None = None
    password_file: Path | None = None
    identity_file: Path | None = None
    known_hosts_file: Path | None = None

    @classmethod
    def from_directory(cls, directory: Path) -> GitAuth:
        """Credentials from a mounted Secret, using Flux's key names.

        Keys: ``username``, ``password``, ``identity``, ``known_hosts``; missing ones are unset.
        """

        def present(name: str) -> Path | None:
            path = directory / name
            return path if path.is_file() else None

        return cls(
            username_file=present("username"),
            password_file=present("password"),
            identity_file=present("identity"),
            known_hosts_file=present("known_hosts"),
        )
