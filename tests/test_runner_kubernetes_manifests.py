"""The kubernetes runner's pure builders: Job names, and the Job and Secret manifests as data."""

from __future__ import annotations

import base64
import re
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from controller.runners.artifacts import unpack
from controller.runners.base import StaticContract
from controller.runners.kubernetes import (
    LABEL_JOB,
    MAIN,
    PREPARE,
    extra_labels,
    job_manifest,
    job_name,
    main_env,
    secret_data,
)
from tests.support.kube_runner import (
    COMMIT,
    DIGEST,
    OPTIONS,
    REF,
    SOURCE,
    make_request,
    manifest,
)

# --- names ---------------------------------------------------------------------------------

DNS_1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


def test_job_name_is_readable_stable_and_unique_per_commit_block_and_action() -> None:
    name = job_name("acme-production-1", COMMIT, "app", "deploy")
    assert name == job_name("acme-production-1", COMMIT, "app", "deploy")
    assert re.fullmatch(r"ck-acme-production-1-app-deploy-[0-9a-f]{10}", name)
    others = {
        job_name("acme-production-2", COMMIT, "app", "deploy"),
        job_name("acme-production-1", "4e" * 20, "app", "deploy"),
        job_name("acme-production-1", COMMIT, "db", "deploy"),
        job_name("acme-production-1", COMMIT, "app", "uninstall"),
    }
    assert name not in others and len(others) == 4


def test_long_names_are_cut_to_a_valid_dns_label_keeping_the_hash() -> None:
    long = job_name("a" * 80, COMMIT, "Block_With.Dots" * 5, "deploy")
    assert len(long) <= 63 and DNS_1123_LABEL.match(long)
    assert long.startswith("ck-aaaa") and "-deploy-" in long
    assert job_name("a" * 80, COMMIT, "Block_With.Dots" * 5, "rollback") != long


@given(st.text(), st.text(), st.text(), st.text())
def test_any_inputs_give_a_dns_1123_label_of_at_most_63_characters(
    workspace: str, commit: str, block: str, action: str
) -> None:
    name = job_name(workspace, commit, block, action)
    assert len(name) <= 63 and DNS_1123_LABEL.match(name)


# --- manifests (pure) ----------------------------------------------------------------------


def test_job_runs_once_non_root_read_only_within_its_deadline(tmp_path: Path) -> None:
    job = manifest(tmp_path, ttl_seconds_after_finished=900)
    spec = job["spec"]
    assert spec["backoffLimit"] == 0 and spec["suspend"] is True
    assert spec["activeDeadlineSeconds"] == 600 and spec["ttlSecondsAfterFinished"] == 900
    pod = spec["template"]["spec"]
    assert pod["restartPolicy"] == "Never"
    assert pod["securityContext"] == {
        "runAsNonRoot": True,
        "runAsUser": 65532,
        "runAsGroup": 65532,
        "fsGroup": 65532,
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    for container in pod["initContainers"] + pod["containers"]:
        ctx = container["securityContext"]
        assert ctx["runAsNonRoot"] is True and ctx["runAsUser"] != 0
        assert ctx["readOnlyRootFilesystem"] is True
        assert ctx["allowPrivilegeEscalation"] is False
        assert ctx["capabilities"] == {"drop": ["ALL"]}
        assert ctx["seccompProfile"] == {"type": "RuntimeDefault"}


def test_pod_gets_no_service_account_token_unless_one_is_configured(tmp_path: Path) -> None:
    pod = manifest(tmp_path)["spec"]["template"]["spec"]
    assert pod["automountServiceAccountToken"] is False and "serviceAccountName" not in pod
    pod = manifest(tmp_path, service_account_name="deployer")["spec"]["template"]["spec"]
    assert pod["automountServiceAccountToken"] is True
    assert pod["serviceAccountName"] == "deployer"


def test_pod_pulls_its_images_with_the_configured_pull_secrets_only(tmp_path: Path) -> None:
    assert "imagePullSecrets" not in manifest(tmp_path)["spec"]["template"]["spec"]
    pod = manifest(tmp_path, image_pull_secrets=("ghcr", "mirror"))["spec"]["template"]["spec"]
    assert pod["imagePullSecrets"] == [{"name": "ghcr"}, {"name": "mirror"}]


def test_a_ca_bundle_reaches_only_the_init_container_through_the_runs_secret(
    tmp_path: Path,
) -> None:
    plain = manifest(tmp_path)["spec"]["template"]["spec"]
    assert "ca" not in {v["name"] for v in plain["volumes"]}
    assert "--ca-bundle" not in plain["initContainers"][0]["args"]
    assert "ca.crt" not in secret_data(make_request(tmp_path))

    pem = b"-----BEGIN CERTIFICATE-----\nMIIB...\n-----END CERTIFICATE-----\n"
    pod = manifest(tmp_path, ca_bundle=pem)["spec"]["template"]["spec"]
    (volume,) = [v for v in pod["volumes"] if v["name"] == "ca"]
    assert volume["secret"]["items"] == [{"key": "ca.crt", "path": "ca.crt"}]  # nothing else
    (prepare,) = pod["initContainers"]
    assert {"name": "ca", "mountPath": "/etc/cratekeeper/ca", "readOnly": True} in prepare[
        "volumeMounts"
    ]
    args = prepare["args"]
    assert args[args.index("--ca-bundle") + 1] == "/etc/cratekeeper/ca/ca.crt"
    env = {e["name"]: e["value"] for e in prepare["env"]}
    assert env["GIT_SSL_CAINFO"] == "/etc/cratekeeper/ca/ca.crt"
    (main,) = pod["containers"]
    assert "ca" not in {m["name"] for m in main["volumeMounts"]}
    data = secret_data(make_request(tmp_path), ca_bundle=pem)
    assert base64.b64decode(data["ca.crt"]) == pem


def test_kubeconfig_reaches_the_pod_through_a_memory_backed_secret_volume(tmp_path: Path) -> None:
    pod = manifest(tmp_path)["spec"]["template"]["spec"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["run"] == {"name": "run", "secret": {"secretName": "ck-x", "defaultMode": 0o440}}
    for scratch in ("workspace", "tmp", "home", "tools"):
        assert volumes[scratch] == {"name": scratch, "emptyDir": {}}
    main = pod["containers"][0]
    env = {e["name"]: e["value"] for e in main["env"]}
    assert env["KUBECONFIG"] == env["K8S_AUTH_KUBECONFIG"] == "/run/cratekeeper/kubeconfig"
    mounts = {m["mountPath"]: m for m in main["volumeMounts"]}
    assert mounts["/run/cratekeeper"] == {
        "name": "run",
        "mountPath": "/run/cratekeeper",
        "readOnly": True,
    }
    assert {"/tmp", "/workspace", env["HOME"]} <= set(mounts)
    # The init container sees Git and registry credentials, never the kubeconfig.
    prepare = pod["initContainers"][0]
    assert "/run/cratekeeper" not in {m["mountPath"] for m in prepare["volumeMounts"]}
    assert volumes["registry-auth"]["secret"]["items"] == [
        {"key": ".dockerconfigjson", "path": "config.json"}
    ]


def test_main_container_runs_the_playbook_with_the_local_runners_environment(
    tmp_path: Path,
) -> None:
    (tmp_path / "inventory.yml").write_text("all: {}\n")
    pod = manifest(tmp_path)["spec"]["template"]["spec"]
    main = pod["containers"][0]
    assert main["name"] == MAIN and main["image"] == "ghcr.io/acme/ansible-ee:1"
    assert main["workingDir"] == f"/workspace/blocks/{REF.name}"
    assert main["args"] == [
        "ansible-playbook",
        "-e",
        "@/run/cratekeeper/snapshot.yml",
        "deploy.yml",
    ]
    assert main["terminationMessagePath"] == "/dev/termination-log"
    env = {e["name"]: e["value"] for e in main["env"]}
    assert env["POLYCRATE_BLOCK"] == "app" and env["POLYCRATE_ACTION"] == "deploy"
    assert env["ANSIBLE_CALLBACKS_ENABLED"] == "cratekeeper_events"
    assert env["ANSIBLE_CALLBACK_PLUGINS"] == "/opt/cratekeeper/callback_plugins"
    assert env["ANSIBLE_INVENTORY"] == "/workspace/inventory.yml"
    prepare = pod["initContainers"][0]
    assert prepare["name"] == PREPARE
    assert prepare["command"] == ["python", "-m", "controller.runners.prepare"]
    args = prepare["args"]
    assert args[args.index("--commit") + 1] == COMMIT
    assert args[args.index("--block") + 1] == str(REF) and DIGEST in str(REF)
    assert args[args.index("--path") + 1] == "acme-production-1"
    assert "--git-auth" in args and "--docker-config" in args


def test_the_pod_gets_polycrates_runtime_contract_at_its_own_paths(tmp_path: Path) -> None:
    request = make_request(tmp_path, extraenv={"EXTRA_FROM_BLOCK": "yes"}, inventory="hosts.yml")
    env = main_env(request, OPTIONS)
    assert env["POLYCRATE_WORKSPACE"] == "/workspace"
    assert env["POLYCRATE_WORKSPACE_SNAPSHOT_YAML"] == "/run/cratekeeper/snapshot.yml"
    assert env["POLYCRATE_BLOCK_WORKDIR"] == f"/workspace/blocks/{REF.name}"
    assert env["ANSIBLE_INVENTORY"] == "/workspace/hosts.yml"
    assert env["ANSIBLE_HOST_KEY_CHECKING"] == "False"
    assert env["ANSIBLE_VARS_PLUGINS"] == "/opt/cratekeeper/vars_plugins"
    assert env["ANSIBLE_REMOTE_TMP"].startswith(env["HOME"] + "/")
    assert env["EXTRA_FROM_BLOCK"] == "yes" and env["IN_CONTAINER"] == "1"


def test_a_script_action_runs_its_rendered_script_from_the_run_secret(tmp_path: Path) -> None:
    lines = ("echo {{ deployed }}", "kubectl get ns")
    request = make_request(
        tmp_path, playbook=None, has_script=True, contract=StaticContract({}, lines)
    )
    main = job_manifest(request, "ck-x", OPTIONS, SOURCE)["spec"]["template"]["spec"]["containers"][
        0
    ]
    assert main["args"] == ["/bin/bash", "/run/cratekeeper/script.sh"]
    assert main["workingDir"] == f"/workspace/blocks/{REF.name}"
    env = {e["name"]: e["value"] for e in main["env"]}
    assert env["POLYCRATE_RUNTIME_SCRIPT_PATH"] == "/run/cratekeeper/script.sh"
    script = base64.b64decode(secret_data(request)["script.sh"]).decode()
    assert script == "#!/bin/bash\nset -euo pipefail\necho {{ deployed }}\nkubectl get ns\n"


def test_a_local_block_is_not_pulled_by_the_pod(tmp_path: Path) -> None:
    request = make_request(tmp_path, ref=None, workdir="blocks/infra/dns")
    job = job_manifest(request, "ck-x", OPTIONS, SOURCE)
    pod = job["spec"]["template"]["spec"]
    assert "--block" not in pod["initContainers"][0]["args"]
    assert pod["containers"][0]["workingDir"] == "/workspace/blocks/infra/dns"
    assert job["metadata"]["annotations"]["cratekeeper.dev/block-ref"] == "local"


def test_kept_artifacts_reach_prepare_through_the_run_secret_without_the_kubeconfig(
    tmp_path: Path,
) -> None:
    inventory = tmp_path / "artifacts/blocks/infra/inventory.yml"
    inventory.parent.mkdir(parents=True)
    inventory.write_text("all: {hosts: {web1: {}}}\n")
    request = make_request(tmp_path)
    data = secret_data(request)
    unpack(base64.b64decode(data["artifacts.tar.gz"]), tmp_path / "out")
    assert (tmp_path / "out/artifacts/blocks/infra/inventory.yml").read_text() == (
        inventory.read_text()
    )
    pod = job_manifest(request, "ck-x", OPTIONS, SOURCE)["spec"]["template"]["spec"]
    kept = next(v for v in pod["volumes"] if v["name"] == "kept")["secret"]
    assert kept["items"] == [{"key": "artifacts.tar.gz", "path": "artifacts.tar.gz"}]
    assert kept["optional"] is True and kept["secretName"] == "ck-x"
    args = pod["initContainers"][0]["args"]
    assert args[args.index("--artifacts") + 1] == "/etc/cratekeeper/kept/artifacts.tar.gz"
    assert args[args.index("--artifacts-dir") + 1] == "artifacts/blocks/app"


def test_job_and_pod_carry_the_runs_labels_and_annotations(tmp_path: Path) -> None:
    job = manifest(tmp_path)
    labels = job["metadata"]["labels"]
    assert labels == {
        "app.kubernetes.io/managed-by": "cratekeeper",
        "cratekeeper.dev/workspace": "acme-production-1",
        "cratekeeper.dev/block": "app",
        "cratekeeper.dev/action": "deploy",
        "cratekeeper.dev/revision": COMMIT[:12],
    }
    assert job["metadata"]["annotations"] == {
        "cratekeeper.dev/commit": COMMIT,
        "cratekeeper.dev/block-ref": str(REF),
    }
    assert job["spec"]["template"]["metadata"]["labels"] == {**labels, LABEL_JOB: "ck-x"}


def test_callers_labels_go_over_the_runs_labels_but_never_over_the_runners_own() -> None:
    workspace = {"cratekeeper.dev/workspace": "acme-production-1-object", "team": "apps"}
    assert extra_labels(workspace) == workspace
    assert extra_labels({"team": "x" * 70 + "!"}) == {"team": "x" * 63}
    for reserved in ("app.kubernetes.io/managed-by", LABEL_JOB):
        with pytest.raises(ValueError, match=reserved):
            extra_labels({reserved: "someone-else"})
