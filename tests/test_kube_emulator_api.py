"""The emulator speaks the Kubernetes API as a raw HTTP client sees it: URLs, discovery,
server-managed metadata, patches, the status subresource, finalizers, selectors, watches, and
the test API (request log, kubeconfig)."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml

from tests.support.kube_emulator import (
    WORKSPACES,
    CustomResource,
    KubeEmulator,
    jsonpath,
    label_matcher,
    parse_api_path,
    strategic_merge_patch,
)

JSON_PATCH = {"Content-Type": "application/json-patch+json"}
MERGE_PATCH = {"Content-Type": "application/merge-patch+json"}


class Api:
    """A tiny raw-HTTP client: the emulator's behaviour without any client's interpretation."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.session = requests.Session()

    def __call__(
        self, method: str, path: str, body: Any = None, *, expect: int = 200, **kwargs: Any
    ) -> dict[str, Any]:
        response = self.session.request(method, self.url + path, json=body, timeout=10, **kwargs)
        assert response.status_code == expect, response.text
        result: dict[str, Any] = response.json()
        return result


@pytest.fixture
def api(kube_emulator: KubeEmulator) -> Api:
    return Api(kube_emulator.url)


@pytest.fixture
def namespace(api: Api) -> str:
    name = f"test-{uuid.uuid4().hex[:8]}"
    api("POST", "/api/v1/namespaces", {"metadata": {"name": name}}, expect=201)
    return name


def workspace(name: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "cratekeeper.dev/v1alpha1",
        "kind": "Workspace",
        "metadata": {"name": name},
        "spec": spec,
    }


# --- URL scheme and discovery --------------------------------------------------------------


def test_namespace_urls_are_cluster_scoped() -> None:
    assert parse_api_path("/api/v1/namespaces").plural == "namespaces"
    named = parse_api_path("/api/v1/namespaces/demo")
    assert (named.plural, named.name, named.namespace) == ("namespaces", "demo", None)
    status = parse_api_path("/api/v1/namespaces/demo/status")
    assert (status.plural, status.name, status.subresource) == ("namespaces", "demo", "status")
    pods = parse_api_path("/api/v1/namespaces/demo/pods/p1/log")
    assert (pods.namespace, pods.plural, pods.name, pods.subresource) == (
        "demo",
        "pods",
        "p1",
        "log",
    )


def test_namespaces_are_created_fetched_and_listed(api: Api) -> None:
    created = api("POST", "/api/v1/namespaces", {"metadata": {"name": "ns-crud"}}, expect=201)
    assert created["status"] == {"phase": "Active"}
    assert "namespace" not in created["metadata"]
    assert api("GET", "/api/v1/namespaces/ns-crud")["metadata"]["uid"] == created["metadata"]["uid"]
    listed = api("GET", "/api/v1/namespaces")
    names = {item["metadata"]["name"] for item in listed["items"]}
    assert {"default", "kube-system", "ns-crud"} <= names
    api("POST", "/api/v1/namespaces", {"metadata": {"name": "ns-crud"}}, expect=409)
    api("DELETE", "/api/v1/namespaces/ns-crud")
    api("GET", "/api/v1/namespaces/ns-crud", expect=404)


def test_lists_carry_kind_api_version_and_resource_version(api: Api, namespace: str) -> None:
    namespaces = api("GET", "/api/v1/namespaces")
    assert (namespaces["kind"], namespaces["apiVersion"]) == ("NamespaceList", "v1")
    deployments = api("GET", f"/apis/apps/v1/namespaces/{namespace}/deployments")
    assert (deployments["kind"], deployments["apiVersion"]) == ("DeploymentList", "apps/v1")
    workspaces = api("GET", "/apis/cratekeeper.dev/v1alpha1/workspaces")
    assert workspaces["kind"] == "WorkspaceList"
    assert workspaces["metadata"]["resourceVersion"].isdigit()


def test_discovery_serves_the_workspace_crd_with_its_status_subresource(api: Api) -> None:
    groups = api("GET", "/apis")["groups"]
    assert any(group["name"] == "cratekeeper.dev" for group in groups)
    resources = {r["name"]: r for r in api("GET", "/apis/cratekeeper.dev/v1alpha1")["resources"]}
    assert set(resources) == {"workspaces", "workspaces/status", "alerts"}
    assert resources["workspaces"]["namespaced"] is True
    assert resources["workspaces"]["kind"] == "Workspace"
    assert resources["workspaces"]["shortNames"] == ["ws"]
    crd = api(
        "GET", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/workspaces.cratekeeper.dev"
    )
    assert {c["type"] for c in crd["status"]["conditions"]} >= {"Established"}


def test_a_crd_created_through_the_api_is_served_and_unserved_on_deletion(api: Api) -> None:
    crd = CustomResource(
        group="example.test",
        version="v1",
        plural="gadgets",
        kind="Gadget",
        scope="Cluster",
        subresources=(),
    ).manifest()
    api("POST", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions", crd, expect=201)
    gadget = {"apiVersion": "example.test/v1", "kind": "Gadget", "metadata": {"name": "g1"}}
    created = api("POST", "/apis/example.test/v1/gadgets", gadget, expect=201)
    assert "namespace" not in created["metadata"]
    api("DELETE", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/gadgets.example.test")
    api("GET", "/apis/example.test/v1/gadgets", expect=404)


# --- Server-managed metadata ---------------------------------------------------------------


def test_created_objects_get_uid_resource_version_timestamp_and_generation(
    api: Api, namespace: str
) -> None:
    path = f"/apis/cratekeeper.dev/v1alpha1/namespaces/{namespace}/workspaces"
    created = api("POST", path, workspace("meta", interval="1m"), expect=201)
    meta = created["metadata"]
    assert meta["uid"] and meta["creationTimestamp"].endswith("Z")
    assert meta["generation"] == 1 and meta["namespace"] == namespace

    relabelled = api(
        "PATCH", f"{path}/meta", {"metadata": {"labels": {"a": "b"}}}, headers=MERGE_PATCH
    )
    assert int(relabelled["metadata"]["resourceVersion"]) > int(meta["resourceVersion"])
    assert relabelled["metadata"]["generation"] == 1  # metadata is not the spec

    respecced = api("PATCH", f"{path}/meta", {"spec": {"interval": "5m"}}, headers=MERGE_PATCH)
    assert respecced["metadata"]["generation"] == 2
    assert respecced["metadata"]["uid"] == meta["uid"]

    unchanged = api("PATCH", f"{path}/meta", {"spec": {"interval": "5m"}}, headers=MERGE_PATCH)
    assert unchanged["metadata"]["resourceVersion"] == respecced["metadata"]["resourceVersion"]


def test_generate_name_gives_each_object_a_unique_name(api: Api, namespace: str) -> None:
    path = f"/api/v1/namespaces/{namespace}/configmaps"
    body = {"metadata": {"generateName": "cfg-"}, "data": {"k": "v"}}
    names = {api("POST", path, body, expect=201)["metadata"]["name"] for _ in range(3)}
    assert len(names) == 3 and all(name.startswith("cfg-") for name in names)
    api("POST", path, {"metadata": {}}, expect=422)


def test_put_replaces_the_object_and_rejects_a_stale_resource_version(
    api: Api, namespace: str
) -> None:
    path = f"/api/v1/namespaces/{namespace}/configmaps"
    created = api(
        "POST", path, {"metadata": {"name": "c"}, "data": {"a": "1", "b": "2"}}, expect=201
    )
    replacement = {
        "metadata": {"name": "c", "resourceVersion": created["metadata"]["resourceVersion"]},
        "data": {"c": "3"},
    }
    replaced = api("PUT", f"{path}/c", replacement)
    assert replaced["data"] == {"c": "3"}
    assert replaced["metadata"]["uid"] == created["metadata"]["uid"]
    api("PUT", f"{path}/c", replacement, expect=409)  # the old resourceVersion
    api("PUT", f"{path}/missing", {"metadata": {"name": "missing"}}, expect=404)


# --- Patching and the status subresource ---------------------------------------------------


def test_status_subresource_takes_merge_and_json_patches_of_status_only(
    api: Api, namespace: str
) -> None:
    path = f"/apis/cratekeeper.dev/v1alpha1/namespaces/{namespace}/workspaces"
    api("POST", path, workspace("st", interval="1m") | {"status": {"ignored": True}}, expect=201)

    merged = api(
        "PATCH",
        f"{path}/st/status",
        {"status": {"phase": "Ready"}, "spec": {"interval": "9m"}},
        headers=MERGE_PATCH,
    )
    assert merged["status"] == {"phase": "Ready"}
    assert merged["spec"] == {"interval": "1m"}  # the status endpoint changes status only
    assert merged["metadata"]["generation"] == 1

    rv = merged["metadata"]["resourceVersion"]
    ops = [
        {"op": "test", "path": "/metadata/resourceVersion", "value": rv},
        {"op": "add", "path": "/status/observedGeneration", "value": 1},
    ]
    patched = api("PATCH", f"{path}/st/status", ops, headers=JSON_PATCH)
    assert patched["status"] == {"phase": "Ready", "observedGeneration": 1}
    api("PATCH", f"{path}/st/status", ops, headers=JSON_PATCH, expect=422)  # stale test op

    main = api("PATCH", f"{path}/st", {"status": {"phase": "Lost"}}, headers=MERGE_PATCH)
    assert main["status"]["phase"] == "Ready"  # the main endpoint never changes status


def test_strategic_merge_patch_merges_containers_by_name() -> None:
    current = {"containers": [{"name": "a", "image": "a:1"}, {"name": "b", "image": "b:1"}]}
    patch = {
        "containers": [{"name": "b", "image": "b:2"}],
        "$setElementOrder/containers": [{"name": "a"}, {"name": "b"}],
    }
    assert strategic_merge_patch(current, patch) == {
        "containers": [{"name": "a", "image": "a:1"}, {"name": "b", "image": "b:2"}]
    }


def test_deletion_waits_for_finalizers_to_be_removed(api: Api, namespace: str) -> None:
    path = f"/apis/cratekeeper.dev/v1alpha1/namespaces/{namespace}/workspaces"
    body = workspace("fin")
    body["metadata"]["finalizers"] = ["cratekeeper.dev/cleanup"]
    api("POST", path, body, expect=201)
    marked = api("DELETE", f"{path}/fin")
    assert marked["metadata"]["deletionTimestamp"]
    assert api("GET", f"{path}/fin")["metadata"]["deletionTimestamp"]
    api("PATCH", f"{path}/fin", {"metadata": {"finalizers": None}}, headers=MERGE_PATCH)
    api("GET", f"{path}/fin", expect=404)


def test_label_and_field_selectors_filter_lists(api: Api, namespace: str) -> None:
    path = f"/api/v1/namespaces/{namespace}/configmaps"
    for name, tier in (("one", "web"), ("two", "db"), ("three", "web")):
        api("POST", path, {"metadata": {"name": name, "labels": {"tier": tier}}}, expect=201)
    web = api("GET", path, params={"labelSelector": "tier=web"})
    assert sorted(item["metadata"]["name"] for item in web["items"]) == ["one", "three"]
    named = api("GET", path, params={"fieldSelector": "metadata.name=two"})
    assert [item["metadata"]["name"] for item in named["items"]] == ["two"]
    assert label_matcher("tier in (web, db),!gone")({"tier": "db"})
    assert not label_matcher("tier notin (web)")({"tier": "web"})


# --- Watching ------------------------------------------------------------------------------


def watch_events(api: Api, path: str, **params: str) -> Iterator[dict[str, Any]]:
    """Events of a watch request, as a client reads them (one JSON document per line)."""
    query = {"watch": "true", **params}
    with api.session.get(api.url + path, params=query, stream=True, timeout=10) as response:
        assert response.status_code == 200
        assert response.headers["Content-Type"].startswith("application/json")
        for line in response.iter_lines():
            if line:
                yield json.loads(line)


def test_watch_resumes_from_a_resource_version_as_json_lines(api: Api, namespace: str) -> None:
    path = f"/api/v1/namespaces/{namespace}/configmaps"
    listed = api("GET", path)
    api("POST", path, {"metadata": {"name": "w"}}, expect=201)
    api("PATCH", f"{path}/w", {"data": {"k": "v"}}, headers=MERGE_PATCH)
    api("DELETE", f"{path}/w")
    events = list(
        watch_events(
            api, path, resourceVersion=listed["metadata"]["resourceVersion"], timeoutSeconds="1"
        )
    )
    assert [event["type"] for event in events] == ["ADDED", "MODIFIED", "DELETED"]
    versions = [int(event["object"]["metadata"]["resourceVersion"]) for event in events]
    assert versions == sorted(versions)


def test_watch_with_initial_events_ends_them_with_a_bookmark(api: Api, namespace: str) -> None:
    path = f"/api/v1/namespaces/{namespace}/configmaps"
    api("POST", path, {"metadata": {"name": "present"}}, expect=201)
    events = watch_events(
        api,
        path,
        sendInitialEvents="true",
        allowWatchBookmarks="true",
        resourceVersionMatch="NotOlderThan",
        timeoutSeconds="5",
    )
    assert next(events)["type"] == "ADDED"
    bookmark = next(events)
    assert bookmark["type"] == "BOOKMARK"
    assert bookmark["object"]["metadata"]["annotations"] == {"k8s.io/initial-events-end": "true"}
    api("POST", path, {"metadata": {"name": "later"}}, expect=201)
    live = next(events)
    assert (live["type"], live["object"]["metadata"]["name"]) == ("ADDED", "later")
    events.close()


# --- Test API: request log, objects, kubeconfig --------------------------------------------


def test_request_log_tells_reads_from_writes(
    kube_emulator: KubeEmulator, api: Api, namespace: str
) -> None:
    mark = kube_emulator.mark()
    api("GET", f"/api/v1/namespaces/{namespace}/configmaps")
    assert kube_emulator.writes(since=mark) == []
    api(
        "POST",
        f"/api/v1/namespaces/{namespace}/configmaps",
        {"metadata": {"name": "x"}},
        expect=201,
    )
    [write] = kube_emulator.writes(since=mark)
    assert (write.method, write.resource, write.namespace) == ("POST", "v1/configmaps", namespace)
    assert kube_emulator.get("v1/configmaps", "x", namespace=namespace) is not None
    assert len(kube_emulator.requests(since=mark)) == 2
    assert kube_emulator.errors() == []


def test_kubeconfig_is_private_and_points_at_the_emulator(
    kube_emulator: KubeEmulator, kubeconfig: Path
) -> None:
    assert kubeconfig.stat().st_mode & 0o777 == 0o600
    config = yaml.safe_load(kubeconfig.read_text())
    assert config["clusters"][0]["cluster"]["server"] == kube_emulator.url
    assert kube_emulator.url.startswith("http://127.0.0.1:")


def test_printer_columns_use_a_jsonpath_subset() -> None:
    obj = {
        "status": {
            "conditions": [
                {"type": "Stalled", "status": "False"},
                {"type": "Ready", "status": "True"},
            ]
        }
    }
    assert jsonpath(obj, '.status.conditions[?(@.type=="Ready")].status') == ["True"]
    assert jsonpath(obj, ".status.conditions[*].type") == ["Stalled", "Ready"]
    assert jsonpath(obj, ".status.missing") == []


def test_fresh_emulator_starts_empty_but_for_core_namespaces(
    fresh_kube_emulator: KubeEmulator,
) -> None:
    names = {ns["metadata"]["name"] for ns in fresh_kube_emulator.list_objects("v1/namespaces")}
    assert names == {"default", "kube-system", "kube-public", "kube-node-lease"}
    assert fresh_kube_emulator.list_objects(WORKSPACES) == []
