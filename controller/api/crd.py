"""The Workspace CustomResourceDefinition, rendered from the spec and status models.

``crds/workspace.yaml`` is this module's output (``python -m controller.api.crd``), and
``crds/alert.yaml`` that of ``python -m controller.api.crd alert`` (controller/api/alert.py);
tests check that the committed files equal the rendering, so the models stay the one source.

Kubernetes accepts only *structural* schemas: every node has a ``type``, no ``$ref``, no
``anyOf``/``oneOf`` carrying types, no ``additionalProperties: false`` (the API server prunes
unknown fields instead). Pydantic's JSON schema is turned into that shape here: references
are inlined, ``X | None`` becomes an optional ``X``, and default factories become defaults so
the API server fills them in as the operator would.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from typing import Any

import yaml
from pydantic import BaseModel
from pydantic.json_schema import GenerateJsonSchema, JsonSchemaMode, JsonSchemaValue
from pydantic_core import core_schema

from controller.api.alert import ALERT_KIND, ALERT_PLURAL, AlertResourceSpec
from controller.api.spec import GROUP, KIND, PLURAL, SHORT_NAMES, VERSION, WorkspaceSpec
from controller.api.status import WorkspaceStatus

Schema = dict[str, Any]

READY = '.status.conditions[?(@.type=="Ready")]'

PRINTER_COLUMNS: tuple[Schema, ...] = (
    {"name": "Ready", "type": "string", "jsonPath": f"{READY}.status"},
    {
        "name": "Suspended",
        "type": "boolean",
        "jsonPath": ".spec.suspend",
        "description": "Nothing is applied while true (spec.suspend).",
    },
    {
        "name": "Revision",
        "type": "string",
        "jsonPath": ".status.lastAppliedShortRevision",
        "description": "The last applied commit (short SHA).",
    },
    {
        "name": "Blocks",
        "type": "string",
        "jsonPath": ".status.blocksSummary",
        "description": "Blocks applied / blocks recorded.",
    },
    {"name": "Status", "type": "string", "jsonPath": f"{READY}.message"},
    {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
    # -o wide
    {
        "name": "Source",
        "type": "string",
        "jsonPath": ".spec.source.url",
        "priority": 1,
        "description": "The Git repository.",
    },
    {
        "name": "Ref",
        "type": "string",
        "jsonPath": ".status.lastAppliedRef",
        "priority": 1,
        "description": "The ref the applied revision came from (branch:main, tag:v1, ...).",
    },
    {
        "name": "Last Run",
        "type": "date",
        "jsonPath": ".status.history[0].finished",
        "priority": 1,
        "description": "When the newest history entry finished.",
    },
)

# Exactly one of branch, tag or commit: CEL where the API server has it (1.25+), and a
# property count that older servers check too.
REF_RULE = {
    "rule": "[has(self.branch), has(self.tag), has(self.commit)].filter(x, x).size() == 1",
    "message": "set exactly one of branch, tag or commit",
}

# Keys of pydantic's JSON schema that a CRD schema does not take (or that we drop on purpose).
_DROPPED = frozenset({"title", "additionalProperties", "$defs", "readOnly", "examples"})


class _WithFactoryDefaults(GenerateJsonSchema):
    """Pydantic's generator, writing the value of a ``default_factory`` as the default."""

    def default_schema(self, schema: core_schema.WithDefaultSchema) -> JsonSchemaValue:
        factory = schema.get("default_factory")
        if factory is not None and not schema.get("default_factory_takes_data"):
            schema = {**schema, "default": factory()}  # type: ignore[call-arg]
            schema.pop("default_factory", None)
        return super().default_schema(schema)


def _model_schema(model: type[BaseModel], mode: JsonSchemaMode) -> Schema:
    return model.model_json_schema(by_alias=True, mode=mode, schema_generator=_WithFactoryDefaults)


def _without_nulls(value: Any) -> Any:
    """A default as it would be stored: ``None`` members are simply absent."""
    if isinstance(value, Mapping):
        return {k: _without_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_without_nulls(v) for v in value]
    return value


def structural(node: Schema, defs: Mapping[str, Schema]) -> Schema:
    """``node`` with references inlined and nullable unions reduced to their type."""
    if "$ref" in node:
        target = defs[node["$ref"].rsplit("/", 1)[-1]]
        merged = {**structural(target, defs), **{k: v for k, v in node.items() if k != "$ref"}}
        return structural(merged, defs)
    for key in ("anyOf", "oneOf"):
        if key in node:
            choices = [c for c in node[key] if c.get("type") != "null"]
            if len(choices) != 1:
                raise ValueError(f"cannot render a union of {len(choices)} types structurally")
            rest = {k: v for k, v in node.items() if k != key}
            return structural({**structural(choices[0], defs), **rest}, defs)
    out: Schema = {}
    for key, value in node.items():
        if key in _DROPPED:
            continue
        if key == "default":
            if value is None:
                continue
            out[key] = _without_nulls(value)
        elif key == "const":
            out["enum"] = [value]
        elif key == "properties":
            out[key] = {name: structural(sub, defs) for name, sub in value.items()}
        elif key == "items":
            out[key] = structural(value, defs)
        else:
            out[key] = value
    extra = node.get("additionalProperties")
    if isinstance(extra, dict) and "properties" not in node:
        if extra:
            out["additionalProperties"] = structural(extra, defs)
        else:  # dict[str, Any]: free-form values
            out["additionalProperties"] = {"x-kubernetes-preserve-unknown-fields": True}
    if (
        out.get("type") == "object"
        and "properties" not in out
        and "additionalProperties" not in out
    ):
        out["x-kubernetes-preserve-unknown-fields"] = True
    return out


def _root(model: type[BaseModel], mode: JsonSchemaMode) -> Schema:
    raw = _model_schema(model, mode)
    ordered: Schema = _ordered(structural(raw, raw.get("$defs", {})))
    return ordered


_FIRST = ("type", "description")


def _ordered(node: Any) -> Any:
    """``type`` and ``description`` first in every node, for a CRD a person can read."""
    if isinstance(node, list):
        return [_ordered(v) for v in node]
    if not isinstance(node, dict):
        return node
    keys = [k for k in _FIRST if k in node] + [k for k in node if k not in _FIRST]
    return {k: node[k] if k in ("default", "enum") else _ordered(node[k]) for k in keys}


def _without_defaults(node: Any) -> Any:
    """The status carries no defaults: the operator always writes whole values."""
    if isinstance(node, list):
        return [_without_defaults(v) for v in node]
    if not isinstance(node, dict):
        return node
    return {k: _without_defaults(v) for k, v in node.items() if k != "default"}


def spec_schema() -> Schema:
    """``spec``: validation, defaults and the one-of rule on ``source.ref``."""
    schema = _root(WorkspaceSpec, "validation")
    ref = schema["properties"]["source"]["properties"]["ref"]
    ref["minProperties"] = 1
    ref["maxProperties"] = 1
    ref["x-kubernetes-validations"] = [REF_RULE]
    return schema


def status_schema() -> Schema:
    """``status``: exactly :class:`WorkspaceStatus` as the operator writes it."""
    schema: Schema = _without_defaults(_root(WorkspaceStatus, "serialization"))
    props = schema["properties"]
    props["conditions"]["x-kubernetes-list-type"] = "map"
    props["conditions"]["x-kubernetes-list-map-keys"] = ["type"]
    props["blocks"]["x-kubernetes-list-type"] = "map"
    props["blocks"]["x-kubernetes-list-map-keys"] = ["name"]
    return schema


def render() -> Schema:
    """The ``apiextensions.k8s.io/v1`` CustomResourceDefinition of Workspace."""
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{PLURAL}.{GROUP}"},
        "spec": {
            "group": GROUP,
            "scope": "Namespaced",
            "names": {
                "plural": PLURAL,
                "singular": KIND.lower(),
                "kind": KIND,
                "listKind": f"{KIND}List",
                "shortNames": list(SHORT_NAMES),
            },
            "versions": [
                {
                    "name": VERSION,
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": [dict(c) for c in PRINTER_COLUMNS],
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "description": "A Polycrate workspace in Git, applied to its cluster.",
                            "required": ["spec"],
                            "properties": {
                                "apiVersion": {"type": "string"},
                                "kind": {"type": "string"},
                                "metadata": {"type": "object"},
                                "spec": spec_schema(),
                                "status": status_schema(),
                            },
                        }
                    },
                }
            ],
        },
    }


ALERT_COLUMNS: tuple[Schema, ...] = (
    {"name": "Provider", "type": "string", "jsonPath": ".spec.provider"},
    {"name": "Suspended", "type": "boolean", "jsonPath": ".spec.suspend"},
    {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
)


def render_alert() -> Schema:
    """The CustomResourceDefinition of Alert (controller/api/alert.py): a spec, no status."""
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{ALERT_PLURAL}.{GROUP}"},
        "spec": {
            "group": GROUP,
            "scope": "Namespaced",
            "names": {
                "plural": ALERT_PLURAL,
                "singular": ALERT_KIND.lower(),
                "kind": ALERT_KIND,
                "listKind": f"{ALERT_KIND}List",
            },
            "versions": [
                {
                    "name": VERSION,
                    "served": True,
                    "storage": True,
                    "additionalPrinterColumns": [dict(c) for c in ALERT_COLUMNS],
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "description": "Alerts about the Workspaces of this namespace that "
                            "its workspaceSelector selects.",
                            "required": ["spec"],
                            "properties": {
                                "apiVersion": {"type": "string"},
                                "kind": {"type": "string"},
                                "metadata": {"type": "object"},
                                "spec": _root(AlertResourceSpec, "validation"),
                            },
                        }
                    },
                }
            ],
        },
    }


RENDERERS = {"workspace": render, "alert": render_alert}
"""``python -m controller.api.crd [workspace|alert]``: which CRD (``crds/<name>.yaml``)."""

HEADER = "# Generated by `python -m controller.api.crd > crds/workspace.yaml`: do not edit.\n"


class _NoAliases(yaml.SafeDumper):
    """Repeated sub-schemas written out in full: no ``&id001`` anchors in a CRD."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def render_yaml(which: str = "workspace") -> str:
    """The CRD as the YAML committed in ``crds/<which>.yaml``."""
    body = yaml.dump(
        RENDERERS[which](), Dumper=_NoAliases, sort_keys=False, allow_unicode=True, width=100
    )
    header = (
        HEADER
        if which == "workspace"
        else HEADER.replace("crd > crds/workspace", "crd alert > crds/alert")
    )
    return header + body


if __name__ == "__main__":
    sys.stdout.write(render_yaml(sys.argv[1] if len(sys.argv) > 1 else "workspace"))
