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

from controller.settings import Settings
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


# -- what the objects say ------------------------------------------------------------------------


@pytest.mark.parametrize("combo", sorted(COMBOS))
def test_operator_pod_is_hardened(tools: KubeTools, combo: str) -> None:
    deployment = one(render(tools, combo), "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    c = container(render(tools, combo))
    assert deployment["spec"]["replicas"] == 1
    assert deployment["spec"]["strategy"]["type"] == "Recreate"
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == 65532
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    sc = c["securityContext"]
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"]["drop"] == ["ALL"]
    assert "add" not in sc["capabilities"]
    assert c["resources"]["requests"] and c["resources"]["limits"]["memory"]
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    assert ports == {"health": 8080, "webhook": 9000, "metrics": 9090}
    assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "health"}
    assert c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "health"}
    mounts = {m["mountPath"] for m in c["volumeMounts"]}
    assert {"/tmp", "/var/cache/cratekeeper"} <= mounts  # writable spots of a read-only root
    assert c["args"] == ["run"]


def test_controller_settings_come_from_values(tools: KubeTools) -> None:
    env = env_of(render(tools, "defaults"))
    assert env["CRATEKEEPER_RUNNER"] == "kubernetes"
    assert env["CRATEKEEPER_EXECUTION_IMAGE"] == "ghcr.io/cratekeeper/cratekeeper-execution:0.1.0"
    assert env["CRATEKEEPER_NAMESPACES"] == ""  # every namespace
    assert env["CRATEKEEPER_INSECURE_REGISTRIES"] == ""
    assert env["CRATEKEEPER_CACHE_DIR"] == "/var/cache/cratekeeper"
    assert "CRATEKEEPER_AGE_IDENTITY_FILE" not in env
    assert container(render(tools, "defaults"))["image"] == "ghcr.io/cratekeeper/cratekeeper:0.1.0"

    docs = render(tools, "cluster-everything")
    env = env_of(docs)
    assert env["CRATEKEEPER_EXECUTION_IMAGE"] == "registry.acme-corp.com/ck-exec:1.0.0"
    assert env["CRATEKEEPER_INSECURE_REGISTRIES"] == "registry.local:5000,kind-registry:5000"
    assert env["CRATEKEEPER_AGE_IDENTITY_FILE"] == "/etc/cratekeeper/age/identity.agekey"
    assert env["CRATEKEEPER_MAX_BLOCK_SIZE"] == "1000000"
    assert container(docs)["image"] == "ghcr.io/cratekeeper/cratekeeper@sha256:" + "a" * 64
    pod = one(docs, "Deployment")["spec"]["template"]["spec"]
    (age,) = [v for v in pod["volumes"] if v["name"] == "age-identity"]
    assert age["secret"]["secretName"] == "cratekeeper-age"
    assert any(m["mountPath"] == "/etc/cratekeeper/age" for m in container(docs)["volumeMounts"])

    assert env_of(render(tools, "namespace-scope"))["CRATEKEEPER_NAMESPACES"] == (
        "acme-staging,acme-production"
    )
    assert env_of(render(tools, "namespace-scope-release-ns"))["CRATEKEEPER_NAMESPACES"] == (
        NAMESPACE
    )


@pytest.mark.parametrize("combo", sorted(COMBOS))
def test_every_setting_the_chart_sets_is_one_the_operator_reads(
    tools: KubeTools, combo: str
) -> None:
    env = {k: v for k, v in env_of(render(tools, combo)).items() if isinstance(v, str)}
    fields = set(Settings.model_fields)
    ours = {k: v for k, v in env.items() if k.startswith("CRATEKEEPER_")}
    unknown = [k for k in ours if k.removeprefix("CRATEKEEPER_").lower() not in fields]
    assert not unknown, f"the chart sets settings the operator does not have: {unknown}"
    settings = Settings(**{k.removeprefix("CRATEKEEPER_").lower(): v for k, v in ours.items()})
    pod = one(render(tools, combo), "Deployment")["spec"]["template"]["spec"]
    grace = COMBOS[combo].get("shutdownGraceSeconds", 300)
    # One value: the operator's shutdown grace, and a pod grace longer than it (issue 10.7).
    assert settings.shutdown_grace == grace
    assert pod["terminationGracePeriodSeconds"] == grace + 30
    assert settings.prepare_image == container(render(tools, combo))["image"]


def test_concurrency_limits_are_values_with_the_settings_defaults(tools: KubeTools) -> None:
    env = env_of(render(tools, "defaults"))
    defaults = Settings()
    assert int(env["CRATEKEEPER_MAX_CONCURRENT_RUNS"]) == defaults.max_concurrent_runs
    assert int(env["CRATEKEEPER_MAX_CONCURRENT_CHECKS"]) == defaults.max_concurrent_checks
    env = env_of(render(tools, "busy-and-big-cache"))
    assert env["CRATEKEEPER_MAX_CONCURRENT_RUNS"] == "12"
    assert env["CRATEKEEPER_MAX_CONCURRENT_CHECKS"] == "32"


@pytest.mark.parametrize("combo", ["defaults", "busy-and-big-cache"])
def test_the_blob_budget_leaves_room_in_the_cache_volume(tools: KubeTools, combo: str) -> None:
    docs = render(tools, combo)
    pod = one(docs, "Deployment")["spec"]["template"]["spec"]
    (cache_volume,) = [v for v in pod["volumes"] if v["name"] == "cache"]
    limit = cache_volume["emptyDir"]["sizeLimit"]
    assert limit.endswith("Mi")
    limit_bytes = int(limit.removesuffix("Mi")) * 1024 * 1024
    env = {k: v for k, v in env_of(docs).items() if isinstance(v, str)}
    settings = Settings(
        blob_cache_max_bytes=env["CRATEKEEPER_BLOB_CACHE_MAX_BYTES"],
        max_concurrent_runs=env["CRATEKEEPER_MAX_CONCURRENT_RUNS"],
    )
    # The blobs take a quarter; every run in flight unpacking its largest block (the work dir
    # on the same volume) still fits beside them with room left for the Git mirrors.
    assert settings.blob_cache_max_bytes * 4 == limit_bytes
    in_flight = settings.max_concurrent_runs * settings.max_block_size
    assert settings.blob_cache_max_bytes + in_flight < limit_bytes / 2
    if combo == "defaults":
        assert settings.blob_cache_max_bytes == Settings().blob_cache_max_bytes


def test_jobs_pull_with_the_execution_pull_secrets(tools: KubeTools) -> None:
    assert env_of(render(tools, "defaults"))["CRATEKEEPER_JOB_IMAGE_PULL_SECRETS"] == ""
    env = env_of(render(tools, "private-ca-and-pull-secrets"))
    assert env["CRATEKEEPER_JOB_IMAGE_PULL_SECRETS"] == "ghcr,mirror"
    settings = Settings(job_image_pull_secrets=env["CRATEKEEPER_JOB_IMAGE_PULL_SECRETS"])
    assert settings.job_image_pull_secrets == ["ghcr", "mirror"]


@pytest.mark.parametrize(
    ("combo", "source"),
    [
        ("private-ca-and-pull-secrets", {"secret": {"secretName": "corp-ca"}}),
        ("cluster-everything", {"configMap": {"name": "corp-ca"}}),
    ],
)
def test_a_private_ca_is_added_to_the_system_cas_for_git_and_the_registry_client(
    tools: KubeTools, combo: str, source: dict[str, Any]
) -> None:
    docs = render(tools, combo)
    pod = one(docs, "Deployment")["spec"]["template"]["spec"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    key = COMBOS[combo]["caBundle"].get("key", "ca.crt")
    kind = next(iter(source))
    assert volumes["ca-source"][kind] == source[kind] | {
        "items": [{"key": key, "path": "extra.crt"}]
    }
    assert volumes["ca-bundle"]["emptyDir"]["medium"] == "Memory"
    (init,) = pod["initContainers"]
    assert init["image"] == container(docs)["image"]
    script = init["command"][-1]
    assert script.startswith("cat /etc/ssl/certs/ca-certificates.crt ")  # the system's CAs too
    assert script.endswith("> /etc/cratekeeper/ca/ca-certificates.crt")
    assert init["securityContext"]["readOnlyRootFilesystem"] is True
    env = env_of(docs)
    bundle = "/etc/cratekeeper/ca/ca-certificates.crt"
    assert env["CRATEKEEPER_CA_BUNDLE"] == env["GIT_SSL_CAINFO"] == bundle
    mounts = {m["name"]: m for m in container(docs)["volumeMounts"]}
    assert mounts["ca-bundle"] == {
        "name": "ca-bundle",
        "mountPath": "/etc/cratekeeper/ca",
        "readOnly": True,
    }

    defaults = render(tools, "defaults")
    assert "initContainers" not in one(defaults, "Deployment")["spec"]["template"]["spec"]
    assert "CRATEKEEPER_CA_BUNDLE" not in env_of(defaults)


def test_a_ca_bundle_from_a_configmap_and_a_secret_at_once_is_refused(tools: KubeTools) -> None:
    with pytest.raises(AssertionError, match="set configMap or secret, not both"):
        _helm(
            tools,
            "template",
            "ck",
            str(CHART),
            values={"caBundle": {"configMap": "a", "secret": "b"}},
        )


@pytest.mark.parametrize("combo", ["defaults", "cluster-everything"])
def test_cluster_scope_grants_a_clusterrole_with_only_the_operator_verbs(
    tools: KubeTools, combo: str
) -> None:
    docs = render(tools, combo)
    assert not objects(docs, "Role") and not objects(docs, "RoleBinding")
    role = one(docs, "ClusterRole")
    assert rules_of(role) == OPERATOR_RULES | CLUSTER_ONLY_RULES
    binding = one(docs, "ClusterRoleBinding")
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "ClusterRole",
        "name": role["metadata"]["name"],
    }
    sa = one(docs, "ServiceAccount")
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": sa["metadata"]["name"], "namespace": NAMESPACE}
    ]
    pod = one(docs, "Deployment")["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == sa["metadata"]["name"]


@pytest.mark.parametrize(
    ("combo", "namespaces"),
    [
        ("namespace-scope", {"acme-staging", "acme-production"}),
        ("namespace-scope-release-ns", {NAMESPACE}),
    ],
)
def test_namespace_scope_grants_a_role_in_each_watched_namespace(
    tools: KubeTools, combo: str, namespaces: set[str]
) -> None:
    docs = render(tools, combo)
    assert not objects(docs, "ClusterRole") and not objects(docs, "ClusterRoleBinding")
    roles = objects(docs, "Role")
    assert {r["metadata"]["namespace"] for r in roles} == namespaces
    for role in roles:
        assert rules_of(role) == OPERATOR_RULES  # no namespaces: Kopf is given a fixed list
    bindings = objects(docs, "RoleBinding")
    assert {b["metadata"]["namespace"] for b in bindings} == namespaces
    sa = one(docs, "ServiceAccount")["metadata"]
    for binding in bindings:
        assert binding["roleRef"]["kind"] == "Role"
        assert binding["subjects"] == [
            {"kind": "ServiceAccount", "name": sa["name"], "namespace": sa["namespace"]}
        ]


@pytest.mark.parametrize("combo", sorted(COMBOS))
def test_crd_is_rendered_only_when_crds_install(tools: KubeTools, combo: str) -> None:
    crds = objects(render(tools, combo), "CustomResourceDefinition")
    wanted = COMBOS[combo].get("crds", {}).get("install", True)
    names = sorted(c["metadata"]["name"] for c in crds)
    assert names == (["alerts.cratekeeper.dev", "workspaces.cratekeeper.dev"] if wanted else [])


@pytest.mark.parametrize("combo", sorted(COMBOS))
def test_service_exposes_webhook_and_metrics_of_the_operator(tools: KubeTools, combo: str) -> None:
    docs = render(tools, combo)
    service = one(docs, "Service")
    pod_labels = one(docs, "Deployment")["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= pod_labels.items()
    ports = {p["name"]: (p["port"], p["targetPort"]) for p in service["spec"]["ports"]}
    assert ports == {"webhook": (9000, "webhook"), "metrics": (9090, "metrics")}


@pytest.mark.parametrize("combo", sorted(COMBOS))
def test_service_monitor_scrapes_metrics(tools: KubeTools, combo: str) -> None:
    docs = render(tools, combo)
    monitors = objects(docs, "ServiceMonitor")
    if not COMBOS[combo].get("serviceMonitor", {}).get("enabled", False):
        assert not monitors
        return
    (monitor,) = monitors
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    service = one(docs, "Service")
    assert monitor["spec"]["selector"]["matchLabels"].items() <= (
        service["metadata"]["labels"].items()
    )
    assert monitor["spec"]["namespaceSelector"] == {"matchNames": [NAMESPACE]}
    (endpoint,) = monitor["spec"]["endpoints"]
    assert endpoint["port"] in {p["name"] for p in service["spec"]["ports"]}
    assert endpoint["path"] == "/metrics"
    assert set(endpoint) <= {"port", "path", "interval", "scrapeTimeout"}
    extra = COMBOS[combo]["serviceMonitor"].get("labels", {})
    assert extra.items() <= monitor["metadata"]["labels"].items()


def test_notes_show_a_first_workspace_and_kubectl_get_workspaces(tools: KubeTools) -> None:
    out = _helm(tools, "install", "ck", str(CHART), "-n", NAMESPACE, "--dry-run=client")
    notes = out.split("NOTES:", 1)[1]
    assert "kubectl get workspaces" in notes
    manifest = notes.split("<<'YAML' | kubectl apply -f -\n", 1)[1].split("  YAML\n", 1)[0]
    workspace = yaml.safe_load(manifest)
    assert workspace["kind"] == "Workspace"
    assert workspace["metadata"] == {"name": "acme-staging-1", "namespace": NAMESPACE}


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
