"""A block's own block.poly against the reference it is pushed or pulled as.

Polycrate's normal ``name`` has no registry host (``acme/apps/app-deploy``; its
``mapDockerTag`` treats a first path component with a dot as the registry), so a name matches
a reference by path: ``acme/apps/app-deploy`` and ``registry.acme-corp.com/acme/apps/app-deploy``
both name ``registry.acme-corp.com/acme/apps/app-deploy:1.2.0``; a name with another host or
another path is another block.
"""

from __future__ import annotations

from pathlib import Path

from controller.errors import BlockError, BlockMismatchError, Problem
from controller.refs import BlockRef
from controller.workspace import BlockFile, parse_block


def load_block(path: Path, *, where: str) -> BlockFile:
    """Parse the block.poly at ``path``; ``where`` is how messages name it."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise BlockError(
            [Problem(where, None, "file not found; every block carries a block.poly")]
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise BlockError([Problem(where, None, f"cannot read it ({exc})")]) from None
    return parse_block(text, file=where)


def names_block(name: str, ref: BlockRef) -> bool:
    """True when a block.poly ``name`` is the block ``ref`` points at (see the module doc)."""
    first, _, rest = name.partition("/")
    if rest and _is_host(first):
        return first == ref.registry and rest == ref.repository
    return name == ref.repository


def _is_host(component: str) -> bool:
    return "." in component or ":" in component or component == "localhost"


def check_matches(
    block: BlockFile,
    ref: BlockRef,
    where: str,
    *,
    pulled: bool,
    label_version: str | None = None,
) -> None:
    """Raise unless ``block`` is ``ref``'s block and version (and agrees with the image label).

    A pushed directory that does not match is the user's :class:`BlockError`; a pulled one is
    a :class:`BlockMismatchError` (a registry failure: the artifact is not what the tag says).
    """
    problems: list[str] = []
    if not names_block(block.name, ref):
        problems.append(
            f"name is {block.name!r}, but the reference is {ref}; the block name must be "
            f"{ref.repository!r} (or {ref.name!r})"
        )
    if block.version != ref.tag:
        problems.append(
            f"version is {block.version!r}, but the reference pins {ref.tag!r}; they must be equal"
        )
    if label_version is not None and label_version != block.version:
        problems.append(
            f"version {block.version!r} differs from the image label "
            f"polycrate.block.version={label_version!r}; the artifact is inconsistent"
        )
    if not problems:
        return
    if pulled:
        raise BlockMismatchError(f"{where}: " + "; ".join(problems))
    raise BlockError([Problem(where, None, message) for message in problems])
