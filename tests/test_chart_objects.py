"""What the chart's rendered objects say: a hardened operator Pod, settings from values that the
operator reads, CAs and pull secrets, RBAC scoped to the operator's verbs, the Service,
ServiceMonitor and NOTES. Rendering helpers live in tests/test_chart.py.
"""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from controller.settings import Settings
from tests.support.tools import KubeTools
from tests.test_chart import (
    CHART,
    CLUSTER_ONLY_RULES,
    COMBOS,
    NAMESPACE,
    OPERATOR_RULES,
    _helm,
    container,
    env_of,
    objects,
    one,
    render,
    rules_of,
    tools,
)

__all__ = ["tools"]  # the fixture, shared with tests/test_chart.py


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
