"""Block references: ``registry/path:tag[@sha256:digest]``, always pinned.

The grammar follows the OCI distribution reference (lower-case path components separated by
``.``, ``_``, ``__`` or dashes), with two cratekeeper rules on top: the registry host is always
explicit (no implicit Docker Hub), and the tag is always present and never ``latest``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import semver

from controller.errors import InvalidReferenceError

EXAMPLE = "registry.acme-corp.com/acme/apps/app-deploy:1.2.0"

_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_HOST = (
    r"(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?(?:\.[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)*)"
)
_REF = re.compile(
    rf"^(?P<registry>{_HOST}(?::[0-9]{{1,5}})?)"
    rf"/(?P<repository>{_COMPONENT}(?:/{_COMPONENT})*)"
    r"(?::(?P<tag>[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}))?"
    r"(?:@(?P<digest>sha256:[a-f0-9]{64}))?$"
)


@dataclass(frozen=True, order=True)
class BlockRef:
    """A pinned block reference, e.g. ``registry.acme-corp.com/acme/apps/app-deploy:1.2.0``."""

    registry: str
    repository: str
    tag: str
    digest: str | None = None

    @classmethod
    def parse(cls, text: str) -> BlockRef:
        """Parse and check a ``from:`` value; the error says what to write instead."""
        match = _REF.match(text)
        if match is None:
            raise InvalidReferenceError(
                f"{text!r} is not a block reference; expected REGISTRY/PATH:TAG[@sha256:DIGEST], "
                f"e.g. {EXAMPLE}"
            )
        registry = match["registry"]
        if "." not in registry and ":" not in registry and registry != "localhost":
            raise InvalidReferenceError(
                f"{text!r} has no registry host; write the full reference, e.g. {EXAMPLE}"
            )
        tag = match["tag"]
        if tag is None:
            raise InvalidReferenceError(
                f"{text!r} has no tag; pin a version such as {text.split('@')[0]}:1.2.0"
            )
        if tag == "latest":
            raise InvalidReferenceError(
                f"{text!r} uses ':latest', which is not a pin; pin a version such as "
                f"{registry}/{match['repository']}:1.2.0"
            )
        return cls(registry, match["repository"], tag, match["digest"])

    @property
    def name(self) -> str:
        """The block's name without version: ``registry/path`` (what block.poly calls ``name``)."""
        return f"{self.registry}/{self.repository}"

    @property
    def version(self) -> str:
        """The pinned version: the tag."""
        return self.tag

    def __str__(self) -> str:
        digest = f"@{self.digest}" if self.digest else ""
        return f"{self.name}:{self.tag}{digest}"


def is_downgrade(old: str, new: str) -> bool:
    """True when both tags are semantic versions (an optional leading ``v``) and new < old."""
    try:
        return _semver(new) < _semver(old)
    except ValueError:
        return False


def _semver(tag: str) -> semver.Version:
    return semver.Version.parse(tag.removeprefix("v"), optional_minor_and_patch=True)
