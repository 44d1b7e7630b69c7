"""The file formats cratekeeper reads, as pydantic models: ``workspace.poly``, ``block.poly``,
``secrets.poly`` (DESIGN §2, docs/polycrate-compatibility.md).

The models follow Polycrate's own structs (``cmd/workspace.go``, ``cmd/blocks.go``,
``cmd/actions.go``, ``cmd/workflows.go``): a block instance in ``workspace.poly`` has the shape
of a block (it may define ``actions`` itself: an inline block), ``from:`` names a local block
or pins a registry block, and an action has exactly one of ``playbook`` or ``script``. Which
keys are honoured, refused or ignored is decided in :mod:`controller.workspace.keys`.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

# Polycrate's ``metadata_name`` rule (its docs quote the regex; cmd/utils.go applies it to
# workspace, action and workflow names).
METADATA_NAME = r"^[a-zA-Z]+([-/_]?[a-zA-Z0-9_]+)+$"
# Block names: local names and registry paths with '/', the registry host (with a port) allowed
# in the first segment, as Polycrate's ``block_name`` validator accepts them.
BLOCK_NAME = (
    r"^[A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?(?::[0-9]{1,5})?"
    r"(?:/[A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?)*$"
)

MetadataName = Annotated[str, Field(pattern=METADATA_NAME, max_length=253)]
BlockName = Annotated[str, Field(pattern=BLOCK_NAME, max_length=253)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True, populate_by_name=True)


class Prompt(_Model):
    """A confirmation a person gives before the action runs (Polycrate asks on the terminal)."""

    message: str = ""


class ActionSpec(_Model):
    """One action of a block: exactly one of ``playbook`` or ``script``."""

    name: MetadataName
    description: str = ""
    playbook: str | None = Field(
        default=None, min_length=1, description="Playbook path relative to the block workdir."
    )
    script: list[str] | None = Field(
        default=None, description="Shell lines, rendered as Go templates against the snapshot."
    )
    prompt: Prompt | None = None
    interactive: bool = False
    alias: list[str] = Field(default_factory=list)
    labels: dict[str, str] = Field(default_factory=dict)
    config: dict[str, Any] = Field(default_factory=dict)
    block: str = ""

    @field_validator("playbook")
    @classmethod
    def _inside_block(cls, value: str | None) -> str | None:
        if value is not None and (value.startswith("/") or ".." in value.split("/")):
            raise ValueError(
                f"{value!r} leaves the block directory; give a path relative to the block, "
                "e.g. deploy.yml"
            )
        return value

    @model_validator(mode="after")
    def _one_of(self) -> ActionSpec:
        if (self.playbook is None) == (self.script is None):
            both = "both" if self.playbook is not None else "neither"
            raise ValueError(
                f"action {self.name!r} has {both} 'playbook' and 'script'; "
                "give exactly one: playbook: install.yml, or script: [a list of shell lines]"
            )
        if self.script is not None and not self.script:
            raise ValueError(f"action {self.name!r}: 'script' is empty; give at least one line")
        return self

    @property
    def prompted(self) -> bool:
        """True when a person must confirm the action before it runs."""
        return bool(self.prompt and self.prompt.message)


class InventorySpec(_Model):
    """``inventory``: where Ansible's inventory comes from (Polycrate's BlockInventory)."""

    from_: str = Field(default="", alias="from", description="A block whose artifacts hold it.")
    filename: str = Field(default="", description="File name (default inventory.yml).")
    path: str = ""

    @field_validator("filename")
    @classmethod
    def _plain_name(cls, value: str) -> str:
        if "/" in value or value in (".", ".."):
            raise ValueError(f"{value!r} is not a file name; write e.g. inventory.yml")
        return value


class KubeconfigSpec(_Model):
    """``kubeconfig``: refused when set (one workspace = one cluster, DESIGN §1)."""

    from_: str = Field(default="", alias="from")
    filename: str = ""
    path: str = ""

    @property
    def is_set(self) -> bool:
        return bool(self.from_ or self.filename or self.path)


class _BlockShape(_Model):
    """What a block and a block instance share (Polycrate's ``Block`` struct)."""

    description: str = ""
    kind: str = "generic"
    labels: dict[str, str] = Field(default_factory=dict)
    config: dict[str, Any] = Field(default_factory=dict)
    actions: list[ActionSpec] = Field(default_factory=list)
    inventory: InventorySpec = Field(default_factory=InventorySpec)
    kubeconfig: KubeconfigSpec = Field(default_factory=KubeconfigSpec)

    @field_validator("actions", mode="before")
    @classmethod
    def _a_list(cls, value: object) -> object:
        if isinstance(value, dict):
            raise ValueError(
                "actions is a mapping (the format of Polycrate before 0.8); write a list: "
                "actions: [{name: install, script: [...]}]"
            )
        return value

    def action(self, name: str) -> ActionSpec | None:
        """The action called ``name``, if defined here."""
        return next((a for a in self.actions if a.name == name), None)


class BlockFile(_BlockShape):
    """``block.poly``: a block's name, optional version, config defaults and actions."""

    name: BlockName = Field(description="Block name; a registry path for pushed blocks.")
    version: str | None = Field(default=None, min_length=1, description="Needed only to push.")
    from_: str | None = Field(default=None, alias="from", description="A parent block.")


class BlockInstance(_BlockShape):
    """One entry of ``workspace.poly``'s ``blocks``: a block used by the workspace.

    With ``from: REGISTRY/PATH:TAG`` a registry block, with ``from: NAME`` (or no ``from:``
    and a local ``blocks/<name>/block.poly``) a local block, otherwise an inline block that
    must define its own ``actions``.
    """

    name: BlockName = Field(description="Instance name, unique in the workspace.")
    from_: str | None = Field(default=None, alias="from", min_length=1)
    version: str | None = None


class WorkflowStep(_Model):
    """One step of a workflow: an action of a block."""

    name: MetadataName
    block: str = Field(min_length=1, description="A block instance of the workspace.")
    action: str = Field(min_length=1, description="An action of that block.")
    description: str = ""
    prompt: Prompt | None = None


class Workflow(_Model):
    """``workflows[]``: actions of blocks run in order."""

    name: MetadataName
    description: str = ""
    prompt: Prompt | None = None
    allow_failure: bool = False
    steps: list[WorkflowStep] = Field(default_factory=list)


class WorkspaceFile(_Model):
    """``workspace.poly``: the workspace's name, its blocks (in run order) and workflows."""

    name: MetadataName = Field(description="Workspace name; by convention the cluster's.")
    organization: str = ""
    description: str = ""
    labels: dict[str, str] = Field(default_factory=dict)
    config: dict[str, Any] = Field(default_factory=dict)
    blocks: list[BlockInstance] = Field(default_factory=list)
    workflows: list[Workflow] = Field(default_factory=list)
    extraenv: list[str] = Field(
        default_factory=list, description="KEY=value lines added to every action's environment."
    )
    extramounts: list[str] = Field(default_factory=list)
    inventory: InventorySpec = Field(default_factory=InventorySpec)
    kubeconfig: KubeconfigSpec = Field(default_factory=KubeconfigSpec)

    @field_validator("extraenv")
    @classmethod
    def _key_value(cls, value: list[str]) -> list[str]:
        for line in value:
            key, eq, _ = line.partition("=")
            if not eq or not key.replace("_", "a").isalnum() or key[0].isdigit():
                raise ValueError(
                    f'{line.split("=")[0]!r} is not KEY=value; write e.g. - "MY_VAR=value"'
                )
        return value

    def instance(self, name: str) -> BlockInstance | None:
        """The block instance called ``name``."""
        return next((b for b in self.blocks if b.name == name), None)

    def workflow(self, name: str) -> Workflow | None:
        """The workflow called ``name``."""
        return next((w for w in self.workflows if w.name == name), None)

    def env(self) -> dict[str, str]:
        """``extraenv`` as a mapping."""
        return dict(line.split("=", 1) for line in self.extraenv)


class SecretBlock(_Model):
    """One entry of ``secrets.poly``'s ``blocks``: secret config of one block instance."""

    name: BlockName = Field(description="A block instance named in workspace.poly.")
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
