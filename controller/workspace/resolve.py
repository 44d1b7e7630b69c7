"""Block resolution: which block each instance of ``workspace.poly`` is, with its ``from:``
chain resolved to the end (pure, given the parsed files).

Polycrate's rules (``cmd/workspace.go``, ``cmd/blocks.go``, its docs on dynamic blocks):

- ``from: REGISTRY/PATH:TAG`` pins a registry block (a tag is required, never ``latest``);
- ``from: NAME`` inherits from another instance of ``workspace.poly`` or a local block (a
  ``blocks/**/block.poly`` whose ``name`` is NAME); no ``from:`` and a local block of the
  instance's name is that local block; otherwise the instance is an inline block and must
  define its own ``actions``;
- a child inherits config, actions, workdir and inventory from its parent; config merges
  parent < child, actions are replaced by name; cycles are errors.

Every problem is a :class:`~controller.errors.Problem` located in ``workspace.poly``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from controller.errors import InvalidReferenceError, Problem
from controller.refs import BlockRef
from controller.workspace.merge import deep_merge
from controller.workspace.models import ActionSpec, BlockFile, BlockInstance, WorkspaceFile

DEFAULT_REGISTRY = "cargo.ayedo.cloud"
WORKSPACE_FILE = "workspace.poly"
Source = Literal["registry", "local", "inline"]
LineOf = Callable[[Sequence[str | int]], int | None]


@dataclass(frozen=True)
class LocalBlock:
    """A block folder of the workspace repository (``blocks/<path>/block.poly``)."""

    name: str
    dir: str
    file: BlockFile
    digest: str = ""
    """Content hash of every file under ``dir`` (the code the block runs)."""


@dataclass(frozen=True)
class ResolvedBlock:
    """One instance of the workspace, resolved through its ``from:`` chain."""

    name: str
    source: Source
    ref: BlockRef | None
    version: str | None
    kind: str
    labels: Mapping[str, str]
    config: Mapping[str, Any] = field(repr=False)
    """block.poly defaults < parent chain < instance config (registry defaults come with the
    pull; secrets.poly is merged last, by the pipeline)."""
    actions: tuple[ActionSpec, ...]
    workdir: str
    """The folder actions run in, relative to the workspace root ('' is the root; a registry
    block's folder is known once it is pulled)."""
    inventory_from: str
    inventory_file: str
    chain: tuple[str, ...]
    """Names along the ``from:`` chain, this instance first."""
    folders: tuple[str, ...]
    """Local block folders whose content the instance runs (for change detection)."""
    definition: Mapping[str, Any] = field(repr=False, default_factory=dict)
    """The workspace.poly entries of the chain without their config (for change detection)."""

    @property
    def pin(self) -> str:
        """What the status records as ``from``: the registry reference, else the chain."""
        return str(self.ref) if self.ref else " < ".join(self.chain)

    def action(self, name: str) -> ActionSpec | None:
        """The resolved action called ``name``."""
        return next((a for a in self.actions if a.name == name), None)


def _registry_like(value: str) -> bool:
    first = value.split("/", 1)[0]
    return ":" in value or "@" in value or "." in first or first == "localhost"


def registry_hint(name: str) -> str:
    """A pin suggestion for a short name, with Polycrate's default registry."""
    return f"{DEFAULT_REGISTRY}/{name.split(':')[0]}:VERSION"


@dataclass
class _Resolver:
    ws: WorkspaceFile
    local: Mapping[str, LocalBlock]
    line_of: LineOf
    folders: Mapping[str, str | None] = field(default_factory=dict)
    """Every ``blocks/**`` folder with a block.poly: the name it declares (``None``: the file
    has errors, already reported)."""
    problems: list[Problem] = field(default_factory=list)
    done: dict[str, ResolvedBlock | None] = field(default_factory=dict)

    def error(self, path: Sequence[str | int], message: str) -> None:
        self.problems.append(Problem(WORKSPACE_FILE, self.line_of(path), message))

    def index(self, name: str) -> int:
        return next(i for i, b in enumerate(self.ws.blocks) if b.name == name)

    def resolve(self, name: str, seen: tuple[str, ...] = ()) -> ResolvedBlock | None:
        if name in seen:
            cycle = " -> ".join((*seen[seen.index(name) :], name))
            self.error(("blocks", self.index(seen[0]), "from"), f"from: chain is a cycle: {cycle}")
            return None
        if name not in self.done:
            self.done[name] = self._instance(self.ws.blocks[self.index(name)], seen)
        return self.done[name]

    def _instance(self, inst: BlockInstance, seen: tuple[str, ...]) -> ResolvedBlock | None:
        i = self.index(inst.name)
        label = f"blocks[{i}] ({inst.name!r})"
        parent: ResolvedBlock | None = None
        if inst.from_ is not None and _registry_like(inst.from_):
            try:
                ref = BlockRef.parse(inst.from_)
            except InvalidReferenceError as exc:
                self.error(("blocks", i, "from"), f"blocks[{i}].from: {exc}")
                return None
            parent = _registry(ref, inst.name)
        elif inst.from_ is not None:
            target = inst.from_
            if target != inst.name and self.ws.instance(target) is not None:
                parent = self.resolve(target, (*seen, inst.name))
                if parent is None:
                    return None
            elif target in self.local:
                parent = self._local(self.local[target], (*seen, inst.name), ("blocks", i, "from"))
            elif self._broken(target):
                return None
            else:
                self.error(
                    ("blocks", i, "from"),
                    f"blocks[{i}].from: {target!r} names no block of this workspace (no "
                    f"instance in {WORKSPACE_FILE}, no blocks/**/block.poly with that name"
                    f"{self._misnamed(target)}); a registry block must be pinned as "
                    f"REGISTRY/PATH:VERSION, e.g. {registry_hint(target)}",
                )
                return None
        elif inst.name in self.local:
            parent = self._local(self.local[inst.name], (*seen,), ("blocks", i, "name"))
        elif self._broken(inst.name):
            return None
        elif not inst.actions:
            self.error(
                ("blocks", i, "name"),
                f"{label}: has no from:, no local block blocks/{inst.name}/block.poly and no "
                f"actions of its own; pin a registry block with from: REGISTRY/PATH:VERSION "
                f"(e.g. {registry_hint(inst.name)}) or define its actions",
            )
            return None
        if parent is None and inst.from_ is not None:
            return None
        return self._overlay(inst, parent)

    def _broken(self, name: str) -> bool:
        """True when ``blocks/<name>/block.poly`` exists but has errors (already reported)."""
        folder = f"blocks/{name}"
        return folder in self.folders and self.folders[folder] is None

    def _misnamed(self, name: str) -> str:
        declared = self.folders.get(f"blocks/{name}")
        if declared is None:
            return ""
        return f"; blocks/{name}/block.poly names itself {declared!r}"

    def _local(
        self, block: LocalBlock, seen: tuple[str, ...], where: tuple[str | int, ...]
    ) -> ResolvedBlock | None:
        parent: ResolvedBlock | None = None
        file = block.file
        if file.from_:
            if _registry_like(file.from_):
                self.error(
                    where,
                    f"{block.dir}/block.poly: from: {file.from_!r}: a local block inheriting "
                    "from a registry block is not supported; pin the registry block in "
                    f"{WORKSPACE_FILE} instead",
                )
                return None
            if file.from_ in seen or file.from_ == block.name:
                self.error(where, f"from: chain is a cycle through {block.name!r}")
                return None
            if file.from_ not in self.local:
                self.error(
                    where,
                    f"{block.dir}/block.poly: from: {file.from_!r} names no local block",
                )
                return None
            parent = self._local(self.local[file.from_], (*seen, block.name), where)
            if parent is None:
                return None
        base = _merge_shape(parent, file, block.name, block.dir)
        return ResolvedBlock(
            name=block.name,
            source="local",
            ref=None,
            version=file.version or (parent.version if parent else None),
            kind=base["kind"],
            labels=base["labels"],
            config=base["config"],
            actions=base["actions"],
            workdir=block.dir,
            inventory_from=base["inventory_from"],
            inventory_file=base["inventory_file"],
            chain=(block.name, *(parent.chain if parent else ())),
            folders=(block.dir, *(parent.folders if parent else ())),
        )

    def _overlay(self, inst: BlockInstance, parent: ResolvedBlock | None) -> ResolvedBlock:
        base = _merge_shape(parent, inst, inst.name, None)
        own = inst.model_dump(mode="json", by_alias=True, exclude={"config"}, exclude_defaults=True)
        definition = {**(parent.definition if parent else {}), inst.name: own}
        return ResolvedBlock(
            name=inst.name,
            source=parent.source if parent else "inline",
            ref=parent.ref if parent else None,
            version=parent.version if parent else inst.version,
            kind=base["kind"],
            labels=base["labels"],
            config=base["config"],
            actions=base["actions"],
            workdir=parent.workdir if parent else "",
            inventory_from=base["inventory_from"],
            inventory_file=base["inventory_file"],
            chain=(inst.name, *(parent.chain if parent and parent.chain != (inst.name,) else ())),
            folders=parent.folders if parent else (),
            definition=definition,
        )


def _registry(ref: BlockRef, name: str) -> ResolvedBlock:
    return ResolvedBlock(
        name=name,
        source="registry",
        ref=ref,
        version=ref.tag,
        kind="generic",
        labels={},
        config={},
        actions=(),
        workdir="",
        inventory_from="",
        inventory_file="",
        chain=(),
        folders=(),
    )


def _merge_shape(
    parent: ResolvedBlock | None, child: BlockFile | BlockInstance, name: str, folder: str | None
) -> dict[str, Any]:
    """The child's fields over the parent's: config deep-merged, actions replaced by name."""
    actions = {a.name: a for a in (parent.actions if parent else ())}
    for action in child.actions:
        actions[action.name] = action
    return {
        "kind": child.kind if child.kind != "generic" or parent is None else parent.kind,
        "labels": {**(parent.labels if parent else {}), **child.labels},
        "config": deep_merge(parent.config if parent else {}, child.config),
        "actions": tuple(actions.values()),
        "inventory_from": child.inventory.from_ or (parent.inventory_from if parent else ""),
        "inventory_file": child.inventory.filename or (parent.inventory_file if parent else ""),
    }


def resolve_blocks(
    ws: WorkspaceFile,
    local: Mapping[str, LocalBlock],
    line_of: LineOf = lambda _: None,
    folders: Mapping[str, str | None] | None = None,
) -> tuple[tuple[ResolvedBlock, ...], list[Problem]]:
    """Every instance resolved (in workspace order) and the problems found (none resolved
    when any is an error). ``folders`` (every block folder and the name its block.poly
    declares, ``None`` when it has errors) sharpens the messages."""
    resolver = _Resolver(ws, local, line_of, folders or {})
    blocks = tuple(b for b in (resolver.resolve(inst.name) for inst in ws.blocks) if b)
    problems = list(dict.fromkeys(resolver.problems))
    return (blocks if not problems else ()), problems
