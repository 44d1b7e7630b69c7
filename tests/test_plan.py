"""plan: desired pins and configs against the applied state → the runs, pure and ordered."""

from __future__ import annotations

from typing import Any

from controller.plan import AppliedBlock, config_hash, deep_merge, plan
from controller.workspace import WorkspaceFile

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
