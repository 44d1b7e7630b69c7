"""The Helm chart: lints strictly, and every object it renders is a valid Kubernetes object.

Each value combination that changes what is rendered (scope, crds.install, serviceMonitor) is
rendered once with the real helm (tests/support/tools.py) and checked against the Kubernetes
1.35 JSON schemas that the ``kubernetes-validate`` package ships (offline, strict: unknown
fields fail). The chart's CRD template must be ``crds/workspace.yaml`` verbatim;
``python -m tests.test_chart --write`` regenerates it.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.tools import KubeTools, ToolsUnavailable, kube_tools

ROOT = Path(__file__).resolve().parent.parent
CHART = ROOT / "charts" / "cratekeeper"
REPO_CRD = ROOT / "crds" / "workspace.yaml"
CHART_CRD = CHART / "templates" / "crd.yaml"
INSTALL_DOC = ROOT / "docs" / "install.md"
KUBERNETES_VERSION = "1.35"
NAMESPACE = "cratekeeper-system"

CRD_GATE_OPEN = "{{- if .Values.crds.install }}\n"
CRD_GATE_CLOSE = "{{- end }}\n"

# Value combinations worth rendering: each flips what objects exist or how RBAC is scoped.
COMBOS: dict[str, dict[str, Any]] = {
    "defaults": {},
    "namespace-scope": {
        "scope": "namespace",
        "watchNamespaces": ["acme-staging", "acme-production"],
        "crds": {"install": False},
        "serviceMonitor": {"enabled": True, "labels": {"release": "prometheus"}},
    },
    "namespace-scope-release-ns": {"scope": "namespace", "serviceMonitor": {"enabled": True}},
    "private-ca-and-pull-secrets": {
        "caBundle": {"secret": "corp-ca", "key": "bundle.pem"},
        "execution": {
            "image": {"repository": "ghcr.io/cratekeeper/cratekeeper-execution"},
            "imagePullSecrets": [{"name": "ghcr"}, {"name": "mirror"}],
        },
        "shutdownGraceSeconds": 600,
    },
    "busy-and-big-cache": {
        "maxConcurrentRuns": 12,
        "maxConcurrentChecks": 32,
        "cache": {"sizeMiB": 8192},
    },
    "cluster-everything": {
        "crds": {"install": False},
        "serviceMonitor": {"enabled": True},
        "image": {"digest": "sha256:" + "a" * 64},
        "execution": {"image": {"repository": "registry.acme-corp.com/ck-exec", "tag": "1.0.0"}},
        "insecureRegistries": ["registry.local:5000", "kind-registry:5000"],
        "ageIdentity": {"existingSecret": "cratekeeper-age"},
        "extraEnv": [{"name": "CRATEKEEPER_MAX_BLOCK_SIZE", "value": "1000000"}],
        "imagePullSecrets": [{"name": "ghcr"}],
        "nodeSelector": {"kubernetes.io/os": "linux"},
        "tolerations": [{"key": "infra", "operator": "Exists", "effect": "NoSchedule"}],
        "podAnnotations": {"example.com/team": "platform"},
        "serviceAccount": {"annotations": {"example.com/role": "ck"}},
        "caBundle": {"configMap": "corp-ca"},
        "grafanaDashboard": {"enabled": True},
        "prometheusRule": {"enabled": True},
    },
}

# The operator's verbs, and nothing more (see the comment in templates/rbac.yaml).
OPERATOR_RULES = {
    ("cratekeeper.dev", "workspaces"): {"get", "list", "watch", "patch", "update"},
    ("cratekeeper.dev", "workspaces/status"): {"get", "patch", "update"},
    ("cratekeeper.dev", "alerts"): {"get", "list", "watch"},
    ("", "events"): {"create", "patch"},
    ("", "secrets"): {"get", "list", "create", "update", "delete"},
    ("batch", "jobs"): {"create", "get", "list", "watch", "patch", "delete"},
    ("", "pods"): {"get", "list", "watch"},
    ("", "pods/log"): {"get"},
}
CLUSTER_ONLY_RULES = {("", "namespaces"): {"list", "watch"}}


# -- helpers -------------------------------------------------------------------------------------


def chart_crd_template(crd_text: str) -> str:
    """The chart's templates/crd.yaml for a given crds/workspace.yaml: the file, gated."""
    if "{{" in crd_text:
        # Helm would read it as a template; the CRD generator must not emit template braces.
        raise ValueError("crds/workspace.yaml contains '{{', which Helm would treat as a template")
    if not crd_text.endswith("\n"):
        crd_text += "\n"
    return CRD_GATE_OPEN + crd_text + CRD_GATE_CLOSE


def _ungate(template: str) -> str:
    assert template.startswith(CRD_GATE_OPEN), f"{CHART_CRD} must start with {CRD_GATE_OPEN!r}"
    assert template.endswith(CRD_GATE_CLOSE), f"{CHART_CRD} must end with {CRD_GATE_CLOSE!r}"
    return template[len(CRD_GATE_OPEN) : -len(CRD_GATE_CLOSE)]


@pytest.fixture(scope="module")
def tools() -> KubeTools:
    try:
        return kube_tools()
    except ToolsUnavailable as exc:
        pytest.skip(f"helm/kubectl unavailable: {exc}")


@pytest.fixture(scope="module")
def kv() -> Any:
    return pytest.importorskip(
        "kubernetes_validate",
        reason="kubernetes-validate (Kubernetes JSON schemas) is not installed; "
        "it is in the dev extra: pip install -e '.[dev]'",
    )


def _helm(tools: KubeTools, *args: str, values: dict[str, Any] | None = None) -> str:
    cmd = [str(tools.helm), *args]
    if values:
        # JSON is YAML; one values file keeps lists and nested maps exact (no --set escaping).
        cmd += ["--values", "-"]
    proc = subprocess.run(
        cmd, input=json.dumps(values or {}), capture_output=True, text=True, timeout=120
    )
    if proc.returncode != 0:
        raise AssertionError(f"{' '.join(args)} failed:\n{proc.stderr}{proc.stdout}")
    return proc.stdout


@cache
def _render(helm: str, combo: str) -> tuple[dict[str, Any], ...]:
    out = _helm(
        KubeTools(helm=Path(helm), kubectl=Path()),
        "template",
        "ck",
        str(CHART),
        "--namespace",
        NAMESPACE,
        "--kube-version",
        KUBERNETES_VERSION,
        values=COMBOS[combo],
    )
    return tuple(doc for doc in yaml.safe_load_all(out) if doc)


def render(tools: KubeTools, combo: str) -> tuple[dict[str, Any], ...]:
    """The objects ``helm template`` renders for one value combination (rendered once)."""
    return _render(str(tools.helm), combo)


def objects(docs: tuple[dict[str, Any], ...], kind: str) -> list[dict[str, Any]]:
    return [d for d in docs if d["kind"] == kind]


def one(docs: tuple[dict[str, Any], ...], kind: str) -> dict[str, Any]:
    found = objects(docs, kind)
    assert len(found) == 1, f"expected one {kind}, got {len(found)}"
    return found[0]


def container(docs: tuple[dict[str, Any], ...]) -> dict[str, Any]:
    (c,) = one(docs, "Deployment")["spec"]["template"]["spec"]["containers"]
    return c


def env_of(docs: tuple[dict[str, Any], ...]) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container(docs)["env"]}


def rules_of(role: dict[str, Any]) -> dict[tuple[str, str], set[str]]:
    granted: dict[tuple[str, str], set[str]] = {}
    for rule in role["rules"]:
        assert "nonResourceURLs" not in rule
        assert "resourceNames" not in rule or rule["resourceNames"]
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                granted.setdefault((group, resource), set()).update(rule["verbs"])
    return granted


def _yaml_blocks(markdown: str) -> Iterator[dict[str, Any]]:
    for block in re.findall(r"```yaml\n(.*?)```", markdown, flags=re.DOTALL):
        yield from (doc for doc in yaml.safe_load_all(block) if doc)


def _strip_k8s_extensions(schema: Any) -> Any:
    """An OpenAPI v3 structural schema as plain JSON Schema (drop ``x-kubernetes-*``)."""
    if isinstance(schema, dict):
        return {k: _strip_k8s_extensions(v) for k, v in schema.items() if not k.startswith("x-")}
    if isinstance(schema, list):
        return [_strip_k8s_extensions(v) for v in schema]
    return schema


def _crd_document() -> dict[str, Any]:
    """The Workspace CRD: crds/workspace.yaml, or the chart's copy until that exists."""
    if REPO_CRD.exists():
        return yaml.safe_load(REPO_CRD.read_text())
    return yaml.safe_load(_ungate(CHART_CRD.read_text()))


# -- lint and schemas ----------------------------------------------------------------------------


@pytest.mark.parametrize("combo", ["defaults", "namespace-scope", "cluster-everything"])
def test_chart_passes_helm_lint_strict(tools: KubeTools, combo: str) -> None:
    out = _helm(tools, "lint", "--strict", str(CHART), values=COMBOS[combo])
    assert "0 chart(s) failed" in out


@pytest.mark.parametrize("combo", sorted(COMBOS))
def test_every_rendered_object_is_valid_for_kubernetes(
    tools: KubeTools, kv: Any, combo: str
) -> None:
    docs = render(tools, combo)
    assert docs
    for doc in docs:
        name = f"{doc['kind']}/{doc['metadata']['name']}"
        if doc["kind"] in ("ServiceMonitor", "PrometheusRule"):
            continue  # not built-in kinds: checked by their own tests (PrometheusRule: promtool)
        try:
            kv.validate(doc, KUBERNETES_VERSION, strict=True)
        except kv.ValidationError as exc:
            path = "/".join(str(p) for p in exc.absolute_path)
            pytest.fail(f"{combo}: {name} is invalid at {path}: {exc.message}")
        if doc["kind"] not in ("ClusterRole", "ClusterRoleBinding", "CustomResourceDefinition"):
            assert doc["metadata"].get("namespace"), f"{name} has no namespace"


def test_values_schema_rejects_unknown_keys_and_bad_scope(tools: KubeTools) -> None:
    for bad in ({"scope": "global"}, {"serviceMonitr": {"enabled": True}}, {"runner": "local"}):
        proc = subprocess.run(
            [str(tools.helm), "template", "ck", str(CHART), "--values", "-"],
            input=json.dumps(bad),
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert proc.returncode != 0, f"{bad} was accepted"
        assert "values don't meet the specifications of the schema" in proc.stderr


# -- the CRD is crds/workspace.yaml --------------------------------------------------------------


def test_chart_crd_template_is_crds_workspace_yaml_verbatim() -> None:
    if not REPO_CRD.exists():
        pytest.skip(
            "crds/workspace.yaml does not exist yet (generated from controller/api); "
            "then run `python -m tests.test_chart --write`"
        )
    assert CHART_CRD.read_text() == chart_crd_template(REPO_CRD.read_text()), (
        f"{CHART_CRD.relative_to(ROOT)} is out of date with crds/workspace.yaml: "
        "run `python -m tests.test_chart --write`"
    )


def test_rendered_crd_is_the_workspace_crd(tools: KubeTools, kv: Any) -> None:
    crds = objects(render(tools, "defaults"), "CustomResourceDefinition")
    (rendered,) = [c for c in crds if c["metadata"]["name"] == "workspaces.cratekeeper.dev"]
    assert rendered == _crd_document()
    spec = rendered["spec"]
    assert spec["group"] == "cratekeeper.dev"
    assert spec["scope"] == "Namespaced"
    assert spec["names"]["plural"] == "workspaces"
    assert "ws" in spec["names"]["shortNames"]
    (version,) = spec["versions"]
    assert version["name"] == "v1alpha1"
    assert version["subresources"] == {"status": {}}
    columns = [c["name"].upper() for c in version["additionalPrinterColumns"]]
    narrow = ["READY", "SUSPENDED", "REVISION", "BLOCKS", "STATUS", "AGE"]
    assert columns == [*narrow, "SOURCE", "REF", "LAST RUN"]
    wide = [c["name"] for c in version["additionalPrinterColumns"] if c.get("priority") == 1]
    assert wide == ["Source", "Ref", "Last Run"]  # kubectl get -o wide


# -- docs/install.md -----------------------------------------------------------------------------


def test_install_doc_manifests_are_valid(kv: Any) -> None:
    jsonschema = pytest.importorskip("jsonschema")
    docs = list(_yaml_blocks(INSTALL_DOC.read_text()))
    workspaces = [d for d in docs if d.get("kind") == "Workspace"]
    assert workspaces, "docs/install.md shows no Workspace"
    (version,) = _crd_document()["spec"]["versions"]
    schema = _strip_k8s_extensions(version["schema"]["openAPIV3Schema"])
    for ws in workspaces:
        jsonschema.validate(ws, schema)
    secret_names = {d["metadata"]["name"] for d in docs if d.get("kind") == "Secret"}
    for doc in docs:
        if doc.get("kind") == "Secret":
            kv.validate(doc, KUBERNETES_VERSION, strict=True)
    for ws in workspaces:
        spec = ws["spec"]
        refs = [
            spec["source"].get("secretRef"),
            spec.get("registry", {}).get("secretRef"),
            spec.get("decryption", {}).get("secretRef"),
        ]
        for ref in filter(None, refs):
            assert ref["name"] in secret_names, f"docs/install.md shows no Secret {ref['name']}"


def test_install_doc_exposes_only_the_webhook_port_of_the_service(
    tools: KubeTools, kv: Any
) -> None:
    docs = list(_yaml_blocks(INSTALL_DOC.read_text()))
    service = one(render(tools, "defaults"), "Service")
    # The release in the doc is named cratekeeper; "ck" here: compare the name's suffix.
    assert service["metadata"]["name"].endswith("cratekeeper")
    webhook = {p["name"]: p["port"] for p in service["spec"]["ports"]}["webhook"]
    (ingress,) = [d for d in docs if d["kind"] == "Ingress"]
    kv.validate(ingress, KUBERNETES_VERSION, strict=True)
    (rule,) = ingress["spec"]["rules"]
    (path,) = rule["http"]["paths"]
    assert path["path"] == "/hook/" and path["pathType"] == "Prefix"
    assert path["backend"]["service"] == {"name": "cratekeeper", "port": {"name": "webhook"}}
    (route,) = [d for d in docs if d["kind"] == "HTTPRoute"]
    assert route["apiVersion"] == "gateway.networking.k8s.io/v1"
    (route_rule,) = route["spec"]["rules"]
    assert route_rule["matches"][0]["path"] == {"type": "PathPrefix", "value": "/hook/"}
    assert route_rule["backendRefs"] == [{"name": "cratekeeper", "port": webhook}]


def test_install_doc_names_every_value() -> None:
    text = INSTALL_DOC.read_text()
    values = yaml.safe_load((CHART / "values.yaml").read_text())

    # Free-form Kubernetes structures are described as a whole, not field by field.
    opaque = {"resources", "podSecurityContext", "securityContext"}
    opaque |= {"livenessProbe", "readinessProbe"}

    def keys(tree: dict[str, Any], prefix: str = "") -> Iterator[str]:
        for key, value in tree.items():
            yield prefix + key
            if isinstance(value, dict) and value and key not in opaque:
                yield from keys(value, f"{prefix}{key}.")

    missing = [k for k in keys(values) if f"`{k}`" not in text]
    assert not missing, f"docs/install.md does not describe: {', '.join(missing)}"


if __name__ == "__main__":
    # python -m tests.test_chart --write   regenerates templates/crd.yaml from crds/workspace.yaml
    if sys.argv[1:] != ["--write"]:
        sys.exit("usage: python -m tests.test_chart --write")
    CHART_CRD.write_text(chart_crd_template(REPO_CRD.read_text()))
    print(f"wrote {CHART_CRD.relative_to(ROOT)}")
