"""The one Kubernetes adapter: which cluster, Kopf's credentials, Workspaces, Secrets, cleanup.

Against the emulated API (real HTTP, the real ``kubernetes`` client); the cluster resolution
with real files and a real exec credential plugin.
"""

from __future__ import annotations

import asyncio
import base64
import json
import sys
import uuid
from pathlib import Path

import pytest
import yaml

from controller.errors import KubeLoginError, SecretInvalidError
from controller.kube import Kube, load_cluster
from controller.kube.config import kubeconfig_files
from controller.kube.values import secret_from_json
from controller.operator.handlers import connection_info
from tests.support.kube_emulator import WORKSPACES, KubeEmulator

JOBS = "batch/v1/jobs"
SECRETS = "v1/secrets"
OURS = {"app.kubernetes.io/managed-by": "cratekeeper", "cratekeeper.dev/workspace": "ws"}


def kubeconfig_text(server: str, user: dict[str, object], namespace: str = "team-a") -> str:
    return yaml.safe_dump(
        {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "c", "cluster": {"server": server}}],
            "users": [{"name": "u", "user": user}],
            "contexts": [
                {"name": "ctx", "context": {"cluster": "c", "user": "u", "namespace": namespace}}
            ],
            "current-context": "ctx",
        }
    )


# --- which cluster -------------------------------------------------------------------------


def test_the_cluster_is_the_given_kubeconfig_then_KUBECONFIG_then_home_then_in_cluster(
    tmp_path: Path,
) -> None:
    home = tmp_path / "home"
    env = {"KUBECONFIG": "/a/config:/b/config"}
    assert kubeconfig_files(tmp_path / "given", env, home) == str(tmp_path / "given")
    assert kubeconfig_files(None, env, home) == "/a/config:/b/config"
    assert kubeconfig_files(None, {"KUBECONFIG": ":"}, home) is None  # nothing listed
    assert kubeconfig_files(None, {}, home) is None  # no ~/.kube/config: in-cluster
    (home / ".kube").mkdir(parents=True)
    (home / ".kube" / "config").write_text("{}")
    assert kubeconfig_files(None, {}, home) == str(home / ".kube" / "config")


def test_KUBECONFIG_lists_are_merged_and_the_contexts_namespace_is_the_default(
    tmp_path: Path,
) -> None:
    first = tmp_path / "first"
    first.write_text(kubeconfig_text("http://127.0.0.1:1", {"token": "tok-111"}, "team-b"))
    empty = tmp_path / "empty"
    empty.write_text(yaml.safe_dump({"apiVersion": "v1", "kind": "Config"}))
    cluster = load_cluster(environ={"KUBECONFIG": f"{empty}:{first}"}, home=tmp_path)
    assert cluster.namespace == "team-b"
    credentials = cluster.credentials()
    assert (credentials.server, credentials.scheme, credentials.token) == (
        "http://127.0.0.1:1",
        "Bearer",
        "tok-111",
    )
    assert "tok-111" not in repr(credentials) and "tok-111" not in repr(cluster)


def test_in_a_pod_the_service_account_and_its_namespace_are_used(tmp_path: Path) -> None:
    account = tmp_path / "serviceaccount"
    account.mkdir()
    (account / "token").write_text("pod-token")
    (account / "ca.crt").write_text("-----BEGIN CERTIFICATE-----\n")
    (account / "namespace").write_text("cratekeeper-system\n")
    env = {"KUBERNETES_SERVICE_HOST": "10.96.0.1", "KUBERNETES_SERVICE_PORT": "443"}
    cluster = load_cluster(environ=env, home=tmp_path, service_account=account)
    assert cluster.origin == "in-cluster service account"
    assert cluster.namespace == "cratekeeper-system"
    info = connection_info(cluster.credentials())  # what Kopf logs in with
    assert (info.server, info.token, info.ca_path) == (
        "https://10.96.0.1:443",
        "pod-token",
        str(account / "ca.crt"),
    )
    assert (info.scheme or "").lower() == "bearer"
    assert info.default_namespace == "cratekeeper-system"


def test_no_kubeconfig_outside_a_pod_is_an_error_that_says_what_was_tried(tmp_path: Path) -> None:
    with pytest.raises(KubeLoginError) as caught:
        load_cluster(environ={}, home=tmp_path, service_account=tmp_path / "none")
    message = str(caught.value)
    assert "--kubeconfig" in message and "$KUBECONFIG" in message and "not in a pod" in message
    assert caught.value.reason == "KubernetesLoginFailed"
    with pytest.raises(KubeLoginError, match=r"missing\.yml does not exist"):
        Kube.connect(tmp_path / "missing.yml")
    (tmp_path / "broken.yml").write_text("clusters: [{name: c}]\n")
    with pytest.raises(KubeLoginError, match=r"cannot use kubeconfig .*broken\.yml"):
        Kube.connect(tmp_path / "broken.yml")


def test_an_exec_plugin_logs_in_kopf_and_the_adapter_with_its_token(
    kube_emulator: KubeEmulator, tmp_path: Path
) -> None:
    """The operator's second client used to ignore exec plugins; now one configuration serves
    both, and Kopf's re-login runs the plugin again only when its token expired."""
    calls = tmp_path / "calls"
    plugin = tmp_path / "plugin.py"
    plugin.write_text(
        "import json, pathlib\n"
        f"p = pathlib.Path({str(calls)!r})\n"
        "p.write_text(p.read_text() + 'x' if p.exists() else 'x')\n"
        "print(json.dumps({'apiVersion': 'client.authentication.k8s.io/v1', "
        "'kind': 'ExecCredential', 'status': {'token': 'exec-token'}}))\n"
    )
    exec_user = {
        "exec": {
            "apiVersion": "client.authentication.k8s.io/v1",
            "command": sys.executable,
            "args": [str(plugin)],
            "interactiveMode": "Never",
        }
    }
    config = tmp_path / "kubeconfig"
    config.write_text(kubeconfig_text(kube_emulator.url, exec_user, "default"))
    kube = Kube.from_kubeconfig(config)
    try:
        first = connection_info(kube.credentials())
        second = connection_info(kube.credentials())  # Kopf's re-login: same client, no new pool
        assert (first.token, second.token, first.scheme) == ("exec-token", "exec-token", "Bearer")
        assert calls.read_text() == "x"  # not expired: the plugin ran once
        assert asyncio.run(kube.get_workspace("default", "nope")) is None  # it really talks
    finally:
        kube.close()


# --- Secrets: one decoding rule ------------------------------------------------------------


def test_a_secret_value_that_is_not_base64_names_the_key_not_the_value() -> None:
    body = {
        "metadata": {"namespace": "ns", "name": "hook"},
        "data": {"token": base64.b64encode(b"fine").decode(), "broken": "s3cr3t-value!"},
    }
    with pytest.raises(SecretInvalidError) as caught:
        secret_from_json(body)
    message = str(caught.value)
    assert "ns/hook" in message and "'broken'" in message and "s3cr3t" not in message
    assert caught.value.reason == "SecretInvalid"
    good = secret_from_json({"metadata": {"name": "hook"}, "data": {"token": "Zm9v"}})
    assert good.data == {"token": b"foo"} and "foo" not in repr(good)


# --- against the emulated API --------------------------------------------------------------


@pytest.fixture
def namespaces(kube_emulator: KubeEmulator) -> tuple[str, str]:
    names = (f"kube-{uuid.uuid4().hex[:8]}", f"kube-{uuid.uuid4().hex[:8]}")
    for name in names:
        kube_emulator.create("v1/namespaces", {"metadata": {"name": name}})
    return names


def workspace(name: str, **labels: str) -> dict[str, object]:
    return {
        "apiVersion": "cratekeeper.dev/v1alpha1",
        "kind": "Workspace",
        "metadata": {"name": name, "labels": labels},
        "spec": {"source": {"url": "https://git.example/ws.git"}},
    }


def test_workspaces_are_read_listed_patched_and_watched(
    kube_emulator: KubeEmulator, kubeconfig: Path, namespaces: tuple[str, str]
) -> None:
    one, two = namespaces
    kube_emulator.create(WORKSPACES, workspace("staging", stage="staging"), one)
    kube_emulator.create(WORKSPACES, workspace("prod", stage="prod"), one)
    kube_emulator.create(WORKSPACES, workspace("staging", stage="staging"), two)
    kube = Kube.from_kubeconfig(kubeconfig)

    async def scenario() -> None:
        got = await kube.get_workspace(one, "staging")
        assert got is not None and got.labels == {"stage": "staging"} and got.generation == 1
        assert got.spec["source"] == {"url": "https://git.example/ws.git"}
        assert "git.example" not in repr(got)
        assert [w.name for w in await kube.list_workspaces(one)] == ["prod", "staging"]
        everywhere = await kube.list_workspaces(None, {"stage": "staging"})
        assert {(w.namespace, w.name) for w in everywhere} >= {(one, "staging"), (two, "staging")}
        assert all(w.labels["stage"] == "staging" for w in everywhere)
        assert [w.name for w in await kube.list_workspaces(one, "stage=prod")] == ["prod"]

        suspended = await kube.patch_workspace(one, "staging", {"spec": {"suspend": True}})
        assert suspended is not None and suspended.spec["suspend"] is True
        assert suspended.spec["source"]["url"] == "https://git.example/ws.git"  # merged

        stored = await kube.patch_workspace_status(
            one, "staging", {"lastAppliedRevision": "a" * 40, "history": []}
        )
        assert stored is not None and stored.status["lastAppliedRevision"] == "a" * 40
        stored = await kube.patch_workspace_status(one, "staging", {"history": None})
        assert stored is not None and "history" not in stored.status  # None removes a key
        assert await kube.patch_workspace_status(one, "gone", {"history": []}) is None
        assert await kube.patch_workspace(one, "gone", {"spec": {}}) is None

        waiting = asyncio.create_task(
            kube.wait_for_workspace(
                one,
                "staging",
                lambda w: w is not None and w.status.get("lastAppliedRevision") == "b" * 40,
                timeout=10,
                interval=0.05,
            )
        )
        await asyncio.sleep(0.2)
        await kube.patch_workspace_status(one, "staging", {"lastAppliedRevision": "b" * 40})
        assert (await waiting) is not None
        with pytest.raises(TimeoutError):
            await kube.wait_for_workspace(one, "prod", lambda w: False, timeout=0.3, interval=0.05)

    try:
        asyncio.run(scenario())
    finally:
        kube.close()


def test_delete_by_label_removes_only_the_labelled_jobs_and_secrets(
    kube_emulator: KubeEmulator, kubeconfig: Path, namespaces: tuple[str, str]
) -> None:
    ns, other = namespaces
    job = {"metadata": {"name": "ws-run", "labels": OURS}, "spec": {"template": {}}}
    kube_emulator.create(JOBS, job, ns)
    kube_emulator.create(JOBS, job, other)  # the same labels in another namespace stay
    kube_emulator.create(SECRETS, {"metadata": {"name": "ws-kube", "labels": OURS}}, ns)
    kube_emulator.create(SECRETS, {"metadata": {"name": "mine"}}, ns)
    kube = Kube.from_kubeconfig(kubeconfig)

    async def scenario() -> tuple[list[str], list[str]]:
        return await kube.delete_jobs(ns, OURS), await kube.delete_secrets(ns, OURS)

    try:
        assert asyncio.run(scenario()) == (["ws-run"], ["ws-kube"])
    finally:
        kube.close()
    assert kube_emulator.get(JOBS, "ws-run", namespace=ns) is None
    assert kube_emulator.get(JOBS, "ws-run", namespace=other) is not None
    assert kube_emulator.get(SECRETS, "mine", namespace=ns) is not None


def test_a_secret_is_read_decoded_through_the_api(
    kube_emulator: KubeEmulator, kubeconfig: Path, namespaces: tuple[str, str]
) -> None:
    ns, _ = namespaces
    value = json.dumps({"auths": {}}).encode()
    data = {".dockerconfigjson": base64.b64encode(value).decode()}
    kube_emulator.create(SECRETS, {"metadata": {"name": "reg"}, "data": data}, ns)
    kube = Kube.from_kubeconfig(kubeconfig)

    async def scenario() -> None:
        secret = await kube.get_secret(ns, "reg")
        assert secret is not None and secret.data == {".dockerconfigjson": value}
        assert await kube.get_secret(ns, "missing") is None

    try:
        asyncio.run(scenario())
    finally:
        kube.close()
