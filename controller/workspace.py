"""The files cratekeeper reads: ``workspace.poly``, ``secrets.poly`` and ``block.poly`` (DESIGN §2).

Models are pydantic; parsing goes through :mod:`controller.yamldoc` so every problem is
reported with its file and line. All problems of a file are collected, not only the first.
Unknown keys are reported as *warnings* (Polycrate knows keys cratekeeper ignores, e.g.
``workflows``): they never fail validation, but they are never silently dropped either.

``secrets.poly`` has the shape of ``workspace.poly`` (``blocks: [{name, config}]`` and an
optional top-level ``config``); its problems never quote a value of the file, only keys and
block names, because its values are secrets. Reading it (and decrypting ``secrets.poly.age``)
is :mod:`controller.secrets`' job; this module only parses text.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from controller.errors import BlockError, InvalidReferenceError, Problem, WorkspaceError
from controller.refs import BlockRef
from controller.tree import Tree, read_text
from controller.yamldoc import YamlDoc, load_yaml

WORKSPACE_FILE = "workspace.poly"
SECRETS_FILE = "secrets.poly"
BLOCK_FILE = "block.poly"

Name = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")]


class _Model(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True, populate_by_name=True)


class BlockInstance(_Model):
    """One entry of ``workspace.poly``'s ``blocks``: a pinned block with per-workspace config."""

    name: Name = Field(description="Instance name, unique in the workspace.")
    from_: BlockRef = Field(
        alias="from", description="Pinned reference: registry/path:tag[@sha256:digest]."
    )
    config: dict[str, Any] = Field(
        default_factory=dict, description="Deep-merged over the block's own config defaults."
    )
    description: str = ""

    @field_validator("from_", mode="before")
    @classmethod
    def _parse_ref(cls, value: object) -> BlockRef:
        if isinstance(value, BlockRef):
            return value
        if not isinstance(value, str):
            raise InvalidReferenceError(
                f"expected a string such as registry.acme-corp.com/acme/apps/app-deploy:1.2.0, "
                f"got {value!r}"
            )
        return BlockRef.parse(value)


class WorkspaceFile(_Model):
    """``workspace.poly``: the workspace's name and its pinned blocks, in run order."""

    name: Name = Field(description="Workspace name; by convention the target cluster's name.")
    organization: str = ""
    description: str = ""
    config: dict[str, Any] = Field(default_factory=dict)
    blocks: list[BlockInstance] = Field(default_factory=list)


class SecretBlock(_Model):
    """One entry of ``secrets.poly``'s ``blocks``: secret config of one block instance."""

    name: Name = Field(description="A block instance named in workspace.poly.")
    config: dict[str, Any] = Field(
        default_factory=dict,
        repr=False,
        description="Deep-merged over the instance's workspace.poly config (secrets win).",
    )


class SecretsFile(_Model):
    """``secrets.poly`` (or the decrypted ``secrets.poly.age``): config that is not in Git
    in plaintext, merged last: block defaults < workspace.poly config < secrets.poly."""

    config: dict[str, Any] = Field(
        default_factory=dict,
        repr=False,
        description="Merged over workspace.poly's top-level config (which no action sees).",
    )
    blocks: list[SecretBlock] = Field(default_factory=list)

    def block_config(self, name: str) -> dict[str, Any]:
        """The secret config of block instance ``name`` (empty when it has none)."""
        return next((dict(b.config) for b in self.blocks if b.name == name), {})

    def block_configs(self) -> dict[str, dict[str, Any]]:
        """Every instance's secret config, by instance name (instances without one omitted)."""
        return {b.name: dict(b.config) for b in self.blocks if b.config}


class ActionSpec(_Model):
    """One action of a block: a name and the playbook it runs (relative to the block)."""

    name: Name
    playbook: str = Field(min_length=1, description="Playbook path relative to the block dir.")
    description: str = ""

    @field_validator("playbook")
    @classmethod
    def _inside_block(cls, value: str) -> str:
        if value.startswith("/") or ".." in value.split("/"):
            raise ValueError(
                f"{value!r} leaves the block directory; give a path relative to the block, "
                "e.g. deploy.yml"
            )
        return value


class BlockFile(_Model):
    """``block.poly``: what a pulled block is, its config defaults and its actions."""

    name: str = Field(min_length=1, description="registry/path of the block, without tag.")
    version: str = Field(min_length=1)
    kind: str = "generic"
    description: str = ""
    config: dict[str, Any] = Field(default_factory=dict)
    actions: list[ActionSpec] = Field(default_factory=list)

    def action(self, name: str) -> ActionSpec | None:
        """The action called ``name``, if the block defines it."""
        return next((a for a in self.actions if a.name == name), None)


# --- validation --------------------------------------------------------------------------


def _describe(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _dotted(loc: Sequence[str | int]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "document"


def _entry_name(value: object, path: Sequence[str | int]) -> str | None:
    for part in path:
        if isinstance(value, dict) and isinstance(part, str):
            value = value.get(part)
        elif isinstance(value, list) and isinstance(part, int) and part < len(value):
            value = value[part]
        else:
            return None
    name = value.get("name") if isinstance(value, dict) else None
    return name if isinstance(name, str) else None


def _problems_from(exc: ValidationError, doc: YamlDoc, *, quote: bool = True) -> list[Problem]:
    """Located problems of a validation error; ``quote=False`` never repeats a value."""
    problems = []
    for err in exc.errors(include_url=False):
        loc = [("from" if p == "from_" else p) for p in err["loc"]]
        where = _dotted(loc)
        kind = err["type"]
        if kind == "missing":
            parent = loc[:-1]
            name = _entry_name(doc.value, parent)
            label = _dotted(parent) + (f" ({name!r})" if name else "")
            message = f"{label}: required key {loc[-1]!r} is missing"
        elif kind == "string_pattern_mismatch":
            what = _describe(err["input"]) if quote else "the value"
            message = (
                f"{where}: {what} is not a valid name; use letters, digits, "
                "'.', '_' or '-' (at most 63 characters), starting with a letter or digit"
            )
        elif not quote:
            message = f"{where}: {err['msg'].lower()} (the value is not shown: it may be secret)"
        elif kind == "value_error":
            message = f"{where}: {err['ctx']['error']}"
        elif kind == "string_type" and isinstance(err["input"], int | float):
            message = (
                f"{where}: expected a string, got the number {err['input']!r}; "
                f'quote it: "{err["input"]}"'
            )
        else:
            message = f"{where}: {err['msg'].lower()}, got {_describe(err['input'])}"
        problems.append(Problem(doc.file, doc.line_of(loc), message))
    return problems


def _unknown_keys(
    doc: YamlDoc, model: type[BaseModel], value: object, path: tuple[str | int, ...]
) -> list[Problem]:
    """Warnings for keys the model does not know, recursing into nested model lists."""
    if not isinstance(value, dict):
        return []
    known = {f.alias or n: f for n, f in model.model_fields.items()}
    problems = []
    for key, sub in value.items():
        field = known.get(key)
        if field is None:
            problems.append(
                Problem(
                    doc.file,
                    doc.line_of((*path, key)),
                    f"{_dotted((*path, key))}: unknown key is ignored by cratekeeper "
                    f"(known keys: {', '.join(sorted(known))})",
                    severity="warning",
                )
            )
            continue
        item = getattr(field.annotation, "__args__", (None,))[0]
        if isinstance(sub, list) and isinstance(item, type) and issubclass(item, BaseModel):
            for i, entry in enumerate(sub):
                problems += _unknown_keys(doc, item, entry, (*path, key, i))
    return problems


def _duplicates(doc: YamlDoc, key: str, what: str) -> list[Problem]:
    """Entries of the list ``key`` that reuse a ``name`` (checked on the raw document)."""
    items = doc.value.get(key) if isinstance(doc.value, dict) else None
    if not isinstance(items, list):
        return []
    seen: set[str] = set()
    problems = []
    for i, item in enumerate(items):
        name = item.get("name") if isinstance(item, dict) else None
        if not isinstance(name, str):
            continue
        if name in seen:
            problems.append(
                Problem(
                    doc.file,
                    doc.line_of((key, i, "name")),
                    f"{key}[{i}].name: {what} {name!r} is defined twice; names must be unique",
                )
            )
        seen.add(name)
    return problems


Check = Callable[[YamlDoc], list[Problem]]
"""A check of the raw document (a mapping), beyond what the model validates."""


def _parse(
    text: str,
    file: str,
    model: type[_Model],
    unique: tuple[str, str],
    *,
    check: Check | None = None,
    quote: bool = True,
) -> tuple[_Model | None, list[Problem]]:
    """Load, validate and collect every problem, sorted by line; ``None`` if any is an error.

    ``check`` adds problems found on the raw document; ``quote=False`` keeps values out of
    the messages (``secrets.poly``).
    """
    parsed, problems = _parse_unsorted(text, file, model, unique, check, quote)
    problems.sort(key=lambda p: p.line or 0)
    if any(p.severity == "error" for p in problems):
        parsed = None
    return parsed, problems


def _parse_unsorted(
    text: str,
    file: str,
    model: type[_Model],
    unique: tuple[str, str],
    check: Check | None,
    quote: bool,
) -> tuple[_Model | None, list[Problem]]:
    doc, problems = load_yaml(text, file)
    if doc is None:
        return None, problems
    if not isinstance(doc.value, dict):
        got = "an empty file" if doc.value is None else f"a {type(doc.value).__name__}"
        return None, [*problems, Problem(file, 1, f"expected a mapping of keys, got {got}")]
    problems += _unknown_keys(doc, model, doc.value, ())
    problems += _duplicates(doc, *unique)
    if check is not None:
        problems += check(doc)
    try:
        return model.model_validate(doc.value), problems
    except ValidationError as exc:
        return None, problems + _problems_from(exc, doc, quote=quote)


def _known_blocks(names: Collection[str], workspace_file: str) -> Check:
    """Every ``blocks[].name`` of ``secrets.poly`` must be an instance of ``workspace.poly``."""

    def check(doc: YamlDoc) -> list[Problem]:
        items = doc.value.get("blocks")
        if not isinstance(items, list):
            return []
        problems = []
        for i, item in enumerate(items):
            name = item.get("name") if isinstance(item, dict) else None
            if isinstance(name, str) and name not in names:
                problems.append(
                    Problem(
                        doc.file,
                        doc.line_of(("blocks", i, "name")),
                        f"blocks[{i}].name: block {name!r} is not in {workspace_file}; "
                        f"secrets may only configure the workspace's block instances "
                        f"({', '.join(sorted(names)) or 'none'}): fix the name or remove the entry",
                    )
                )
        return problems

    return check


def check_workspace(
    text: str, file: str = WORKSPACE_FILE
) -> tuple[WorkspaceFile | None, list[Problem]]:
    """Parse ``workspace.poly``: the model (``None`` when invalid) and every problem found."""
    parsed, problems = _parse(text, file, WorkspaceFile, ("blocks", "block instance"))
    return (parsed if isinstance(parsed, WorkspaceFile) else None), problems


def check_block(text: str, file: str = BLOCK_FILE) -> tuple[BlockFile | None, list[Problem]]:
    """Parse ``block.poly``: the model (``None`` when invalid) and every problem found."""
    parsed, problems = _parse(text, file, BlockFile, ("actions", "action"))
    return (parsed if isinstance(parsed, BlockFile) else None), problems


def check_secrets(
    text: str, file: str = SECRETS_FILE, workspace: WorkspaceFile | None = None
) -> tuple[SecretsFile | None, list[Problem]]:
    """Parse ``secrets.poly`` text: the model (``None`` when invalid) and every problem found.

    With ``workspace``, a block name it does not hold is an error. No message quotes a value.
    """
    check = _known_blocks([b.name for b in workspace.blocks], WORKSPACE_FILE) if workspace else None
    parsed, problems = _parse(
        text, file, SecretsFile, ("blocks", "secret block"), check=check, quote=False
    )
    return (parsed if isinstance(parsed, SecretsFile) else None), problems


def parse_secrets(
    text: str, file: str = SECRETS_FILE, workspace: WorkspaceFile | None = None
) -> SecretsFile:
    """Parse ``secrets.poly`` text or raise :class:`WorkspaceError` listing every error."""
    parsed, problems = check_secrets(text, file, workspace)
    if parsed is None:
        raise WorkspaceError([p for p in problems if p.severity == "error"])
    return parsed


def parse_workspace(text: str, file: str = WORKSPACE_FILE) -> WorkspaceFile:
    """Parse ``workspace.poly`` or raise :class:`WorkspaceError` listing every error."""
    parsed, problems = check_workspace(text, file)
    if parsed is None:
        raise WorkspaceError([p for p in problems if p.severity == "error"])
    return parsed


def parse_block(text: str, file: str = BLOCK_FILE) -> BlockFile:
    """Parse ``block.poly`` or raise :class:`BlockError` listing every error."""
    parsed, problems = check_block(text, file)
    if parsed is None:
        raise BlockError([p for p in problems if p.severity == "error"])
    return parsed


def load_workspace(tree: Tree) -> WorkspaceFile:
    """Read and parse ``workspace.poly`` from a workspace tree."""
    text = read_text(tree, WORKSPACE_FILE)
    if text is None:
        raise WorkspaceError(
            [Problem(WORKSPACE_FILE, None, "file not found; a workspace needs a workspace.poly")]
        )
    return parse_workspace(text)


def block_dir(ref: BlockRef) -> str:
    """Where a pulled block lives in the workspace, as Polycrate lays it out."""
    return f"blocks/{ref.name}"
