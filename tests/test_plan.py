"""plan: desired pins and configs against the applied state → the runs, pure and ordered."""

from __future__ import annotations

from typing import Any

from controller.plan import AppliedBlock, applied_from, config_hash, deep_merge, plan
from controller.workspace import Workspace, WorkspaceFile, read_workspace
from tests.test_workspace import Files

APP = "registry.acme-corp.com/acme/apps/app-deploy"
DIGEST_A = "sha256:" + "a" * 64
DIGEST_B = "sha256:" + "b" * 64


def workspace(*blocks: tuple[str, str, dict[str, Any]]) -> WorkspaceFile:
    return WorkspaceFile.model_validate(
        {
            "name": "acme-production-1",
            "blocks": [{"name": n, "from": f, "config": c} for n, f, c in blocks],
        }
    )


def applied(name: str, ref: str, config: dict[str, Any], digest: str | None = None) -> AppliedBlock:
    return AppliedBlock(name, ref, digest, config_hash(config))


CFG = {"namespace": "acme-app"}


def test_a_new_block_runs_deploy_with_no_previous_version() -> None:
    (run,) = plan(workspace(("app", f"{APP}:1.1.0", CFG)), []).runs
    assert (run.block, run.action, run.from_, run.to, run.reason, run.rollback) == (
        "app",
        "deploy",
        None,
        f"{APP}:1.1.0",
        "new",
        False,
    )


def test_nothing_runs_when_pins_and_configs_are_unchanged() -> None:
    result = plan(workspace(("app", f"{APP}:1.1.0", CFG)), [applied("app", f"{APP}:1.1.0", CFG)])
    assert result.empty


def test_a_pin_bump_runs_only_that_block() -> None:
    result = plan(
        workspace(("app", f"{APP}:1.2.0", CFG), ("db", "r.example.com/db:2.0.0", {})),
        [applied("app", f"{APP}:1.1.0", CFG), applied("db", "r.example.com/db:2.0.0", {})],
    )
    (run,) = result.runs
    assert (run.block, run.from_, run.to, run.reason, run.rollback) == (
        "app",
        f"{APP}:1.1.0",
        f"{APP}:1.2.0",
        "version",
        False,
    )


def test_going_down_by_semver_is_a_rollback() -> None:
    (run,) = plan(
        workspace(("app", f"{APP}:1.1.0", CFG)), [applied("app", f"{APP}:1.2.0", CFG)]
    ).runs
    assert run.reason == "version"
    assert run.rollback is True


def test_a_config_change_runs_with_reason_config() -> None:
    (run,) = plan(
        workspace(("app", f"{APP}:1.1.0", {"namespace": "other"})),
        [applied("app", f"{APP}:1.1.0", CFG)],
    ).runs
    assert (run.reason, run.rollback) == ("config", False)


def test_a_repushed_tag_is_detected_by_its_digest() -> None:
    (run,) = plan(
        workspace(("app", f"{APP}:1.1.0", CFG)),
        [applied("app", f"{APP}:1.1.0", CFG, digest=DIGEST_A)],
        digests={"app": DIGEST_B},
    ).runs
    assert (run.reason, run.digest) == ("digest", DIGEST_B)


def test_a_moved_digest_pin_is_a_digest_change() -> None:
    (run,) = plan(
        workspace(("app", f"{APP}:1.1.0@{DIGEST_B}", CFG)),
        [applied("app", f"{APP}:1.1.0@{DIGEST_A}", CFG, digest=DIGEST_A)],
    ).runs
    assert run.reason == "digest"


def test_removed_blocks_are_reported_and_runs_keep_workspace_order() -> None:
    result = plan(
        workspace(("web", "r.example.com/web:1.0.0", {}), ("app", f"{APP}:1.1.0", CFG)),
        [applied("old", "r.example.com/old:1.0.0", {}), applied("app", f"{APP}:1.0.0", CFG)],
        action="deploy",
    )
    assert [r.block for r in result.runs] == ["web", "app"]
    assert [r.name for r in result.removed] == ["old"]


def test_the_action_is_the_one_asked_for() -> None:
    (run,) = plan(workspace(("app", f"{APP}:1.1.0", CFG)), [], action="install").runs
    assert run.action == "install"


def test_plan_is_pure_same_inputs_same_plan() -> None:
    ws = workspace(("app", f"{APP}:1.2.0", CFG))
    before = [applied("app", f"{APP}:1.1.0", CFG)]
    assert plan(ws, before) == plan(ws, before)


def test_config_hash_ignores_key_order_but_not_values() -> None:
    assert config_hash({"a": 1, "b": {"c": 2, "d": 3}}) == config_hash(
        {"b": {"d": 3, "c": 2}, "a": 1}
    )
    assert config_hash({"a": 1}) != config_hash({"a": "1"})
    assert config_hash({}).startswith("sha256:")


def test_deep_merge_merges_mappings_and_replaces_the_rest() -> None:
    defaults = {"namespace": "", "resources": {"cpu": "100m", "memory": "64Mi"}, "ports": [80]}
    instance = {"namespace": "acme", "resources": {"cpu": "1"}, "ports": [8080]}
    assert deep_merge(defaults, instance) == {
        "namespace": "acme",
        "resources": {"cpu": "1", "memory": "64Mi"},
        "ports": [8080],
    }
    assert defaults["resources"] == {"cpu": "100m", "memory": "64Mi"}  # inputs untouched


# --- local and inline blocks, workflows ----------------------------------------------------

LOCAL_WS = """\
name: ws
blocks:
  - name: app
    config: {replicas: 1}
  - name: hello
    actions:
      - {name: deploy, script: [echo hello]}
workflows:
  - name: release
    steps:
      - {name: greet, block: hello, action: deploy}
      - {name: ship, block: app, action: install}
"""
APP_BLOCK = """\
name: app
actions:
  - {name: deploy, script: [echo deploy]}
  - {name: install, script: [echo install]}
"""


def local_workspace(text: str = LOCAL_WS, block: str = APP_BLOCK, extra: str = "") -> Workspace:
    files = {
        "workspace.poly": text,
        "blocks/app/block.poly": block,
        "blocks/app/tasks.sh": "echo tasks" + extra,
    }
    return read_workspace(Files(files))


def test_local_and_inline_blocks_run_when_new_and_have_no_registry_pin() -> None:
    runs = plan(local_workspace(), []).runs
    assert [(r.block, r.to, r.reason, r.ref) for r in runs] == [
        ("app", "app", "new", None),
        ("hello", "hello", "new", None),
    ]
    assert all(r.digest and r.digest.startswith("sha256:") for r in runs)


def test_a_local_block_runs_again_only_when_its_folder_or_config_changes() -> None:
    before = applied_from(local_workspace())
    assert plan(local_workspace(), before).empty
    (run,) = plan(local_workspace(extra=" more"), before).runs
    assert (run.block, run.reason) == ("app", "content")
    (run,) = plan(local_workspace(LOCAL_WS.replace("replicas: 1", "replicas: 2")), before).runs
    assert (run.block, run.reason) == ("app", "config")


def test_an_inline_block_runs_again_when_its_definition_changes() -> None:
    before = applied_from(local_workspace())
    (run,) = plan(local_workspace(LOCAL_WS.replace("echo hello", "echo bye")), before).runs
    assert (run.block, run.reason) == ("hello", "content")


def test_a_workflow_runs_changed_blocks_in_its_order_and_actions() -> None:
    runs = plan(local_workspace(), [], workflow="release").runs
    assert [(r.block, r.action) for r in runs] == [("hello", "deploy"), ("app", "install")]
    before = applied_from(local_workspace())
    (run,) = plan(local_workspace(extra="!"), before, workflow="release").runs
    assert (run.block, run.action) == ("app", "install")


def test_changed_blocks_a_workflow_does_not_name_are_reported_not_run() -> None:
    text = LOCAL_WS.replace("      - {name: greet, block: hello, action: deploy}\n", "")
    result = plan(local_workspace(text), [], workflow="release")
    assert [r.block for r in result.runs] == ["app"]
    assert result.unscheduled == ("hello",)


def test_a_block_that_moves_from_local_to_the_registry_runs_as_a_new_version() -> None:
    before = applied_from(local_workspace())
    registry = workspace(("app", f"{APP}:1.0.0", {"replicas": 1}))
    (run,) = plan(registry, before).runs
    assert (run.block, run.from_, run.to, run.reason) == ("app", "app", f"{APP}:1.0.0", "version")


def test_a_local_block_without_actions_holds_config_and_never_runs() -> None:
    block = "name: app\nconfig: {replicas: 1}\n"
    no_workflow = LOCAL_WS.split("workflows:")[0]
    result = plan(local_workspace(no_workflow, block=block), [])
    assert [r.block for r in result.runs] == ["hello"]
    assert result.unscheduled == ("app",)
