"""The committed CRD is the rendering of the spec/status models, and Kubernetes can take it."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

from controller.api import crd
from controller.api.spec import WorkspaceSpec
from controller.api.status import WorkspaceStatus

CRD_FILE = Path(__file__).resolve().parent.parent / "crds" / "workspace.yaml"


def nodes(schema: Any, path: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    if isinstance(schema, dict):
        yield path, schema
        for key, value in schema.get("properties", {}).items():
            yield from nodes(value, f"{path}.{key}")
        for key in ("items", "additionalProperties"):
            if isinstance(schema.get(key), dict):
                yield from nodes(schema[key], f"{path}[{key}]")


def openapi() -> dict[str, Any]:
    schema: dict[str, Any] = crd.render()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    return schema


def test_the_committed_crd_is_the_rendering_of_the_models() -> None:
    assert CRD_FILE.read_text() == crd.render_yaml(), (
        "crds/workspace.yaml is stale: run `python -m controller.api.crd > crds/workspace.yaml`"
    )
    assert yaml.safe_load(CRD_FILE.read_text()) == crd.render()


def test_the_schema_is_structural() -> None:
    text = CRD_FILE.read_text()
    assert "&id" not in text and "*id" not in text  # no YAML anchors
    for path, node in nodes(openapi()):
        assert not {"$ref", "anyOf", "oneOf", "allOf", "$defs", "title"} & node.keys(), path
        assert "type" in node or node.get("x-kubernetes-preserve-unknown-fields"), path
        assert node.get("additionalProperties") is not False, path
        if "properties" in node:
            assert node["type"] == "object" and "additionalProperties" not in node, path


def test_spec_validation_and_defaults() -> None:
    spec = openapi()["properties"]["spec"]
    source = spec["properties"]["source"]
    assert spec["required"] == ["source"] and source["required"] == ["url"]
    url = re.compile(source["properties"]["url"]["pattern"])
    assert url.match("https://git.acme-corp.com/acme/production.git")
    assert url.match("git@github.com:acme/production.git")
    assert not url.match("/srv/git/production")
    ref = source["properties"]["ref"]
    assert (ref["minProperties"], ref["maxProperties"], ref["default"]) == (
        1,
        1,
        {"branch": "main"},
    )
    assert ref["x-kubernetes-validations"] == [crd.REF_RULE]
    interval = re.compile(source["properties"]["interval"]["pattern"])
    assert interval.match("1m30s") and not interval.match("5 minutes")
    assert source["properties"]["interval"]["default"] == "5m"
    limit = spec["properties"]["historyLimit"]
    assert (limit["minimum"], limit["maximum"], limit["default"]) == (1, 100, 10)
    assert spec["properties"]["action"]["default"] == "deploy"
    assert spec["properties"]["suspend"]["default"] is False
    # Every field of the model is in the schema, under its camelCase name.
    assert set(spec["properties"]) == {f.alias or n for n, f in WorkspaceSpec.model_fields.items()}


def test_status_is_exactly_the_status_model() -> None:
    status = openapi()["properties"]["status"]
    names = {f.alias or n for n, f in WorkspaceStatus.model_fields.items()}
    computed = {f.alias or n for n, f in WorkspaceStatus.model_computed_fields.items()}
    assert set(status["properties"]) == names | computed
    assert not [path for path, node in nodes(status) if "default" in node]
    conditions = status["properties"]["conditions"]
    assert conditions["x-kubernetes-list-map-keys"] == ["type"]
    assert conditions["items"]["properties"]["type"]["enum"] == [
        "Ready",
        "Reconciling",
        "Stalled",
        "Suspended",
        "Drifted",
    ]


def test_names_subresource_and_printer_columns() -> None:
    spec = crd.render()["spec"]
    assert spec["names"]["shortNames"] == ["ws"] and spec["scope"] == "Namespaced"
    (version,) = spec["versions"]
    assert version["subresources"] == {"status": {}}
    columns = {
        c["name"]: (c["jsonPath"], c.get("priority", 0))
        for c in version["additionalPrinterColumns"]
    }
    assert columns == {
        "Ready": ('.status.conditions[?(@.type=="Ready")].status', 0),
        "Suspended": (".spec.suspend", 0),
        "Revision": (".status.lastAppliedShortRevision", 0),
        "Blocks": (".status.blocksSummary", 0),
        "Status": ('.status.conditions[?(@.type=="Ready")].message', 0),
        "Age": (".metadata.creationTimestamp", 0),
        # -o wide
        "Source": (".spec.source.url", 1),
        "Ref": (".status.lastAppliedRef", 1),
        "Last Run": (".status.history[0].finished", 1),
    }
