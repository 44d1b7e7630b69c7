"""The Polycrate model: what is accepted, how blocks resolve, and how every rejection reads."""

from __future__ import annotations

import textwrap

import pytest

from controller.errors import BlockError, WorkspaceError
from controller.workspace import (
    Workspace,
    check_block,
    check_tree,
    check_workspace,
    parse_block,
    parse_workspace,
    read_workspace,
)


class Files:
    """An in-memory workspace tree (the Tree protocol)."""

    def __init__(self, files: dict[str, str]) -> None:
        self._files = {k: textwrap.dedent(v).encode() for k, v in files.items()}

    def read_bytes(self, relpath: str) -> bytes | None:
        return self._files.get(relpath)

    def files(self) -> list[str]:
        return sorted(self._files)


GOOD = """\
name: acme-production-1
organization: acme
blocks:
  - name: app
    from: registry.acme-corp.com/acme/apps/app-deploy:1.2.0
    config: {namespace: acme-app-acme-production-1}
"""


def problems_of(text: str, files: dict[str, str] | None = None) -> list[str]:
    tree = Files({"workspace.poly": text, **(files or {})})
    return [str(p) for p in check_tree(tree)[1]]


def resolved(text: str, files: dict[str, str] | None = None) -> Workspace:
    return read_workspace(Files({"workspace.poly": text, **(files or {})}))


LOCAL = """\
name: camelcase
version: 0.6.2
config: {fooBar: true, nested: {a: 1, b: 2}}
actions:
  - name: install
    script:
      - echo "INSTALL {{ .block.config.fooBar }}"
"""


def test_a_pinned_workspace_resolves_registry_blocks_in_order() -> None:
    ws = resolved(GOOD + "  - name: db\n    from: r.example.com/db:2.0.0\n")
    assert ws.name == "acme-production-1"
    assert [b.name for b in ws.blocks] == ["app", "db"]
    app = ws.blocks[0]
    assert (app.source, app.ref and app.ref.tag, app.version) == ("registry", "1.2.0", "1.2.0")
    assert app.config == {"namespace": "acme-app-acme-production-1"}


def test_a_digest_may_be_added_to_the_tag() -> None:
    digest = "sha256:" + "ab" * 32
    ws = resolved(GOOD.replace(":1.2.0", f":1.2.0@{digest}"))
    assert ws.blocks[0].ref is not None and ws.blocks[0].ref.digest == digest


def test_yaml_syntax_error_names_file_and_line() -> None:
    assert problems_of("name: x\nblocks: [\n  - a\n") == [
        "workspace.poly:3: YAML syntax error: did not find expected node content"
    ]


def test_latest_tag_is_rejected_with_file_and_line() -> None:
    (problem,) = problems_of(GOOD.replace(":1.2.0", ":latest"))
    assert problem.startswith("workspace.poly:5: blocks[0].from:")
    assert "':latest', which is not a pin" in problem
    assert "registry.acme-corp.com/acme/apps/app-deploy:1.2.0" in problem


def test_tagless_from_is_rejected_with_a_suggested_pin() -> None:
    (problem,) = problems_of(GOOD.replace(":1.2.0", ""))
    assert problem.startswith("workspace.poly:5:")
    assert "has no tag; pin a version such as" in problem


@pytest.mark.parametrize(
    "ref",
    [
        "app-deploy:1.2.0",  # no registry host
        "registry.acme-corp.com/Acme/App:1.0",  # upper case path
        "registry.acme-corp.com/app:1.0@sha256:123",  # short digest
        "registry.acme-corp.com/app:-bad",  # tag starting with a dash
    ],
)
def test_malformed_references_are_rejected(ref: str) -> None:
    (problem,) = problems_of(GOOD.replace("registry.acme-corp.com/acme/apps/app-deploy:1.2.0", ref))
    assert problem.startswith("workspace.poly:5: blocks[0].from:")
    assert repr(ref) in problem


def test_a_short_from_naming_no_local_block_asks_for_a_registry_pin() -> None:
    (problem,) = problems_of(
        GOOD.replace("registry.acme-corp.com/acme/apps/app-deploy:1.2.0", "ayedo/k8s/harbor")
    )
    assert problem.startswith("workspace.poly:5: blocks[0].from: 'ayedo/k8s/harbor' names no block")
    assert "REGISTRY/PATH:VERSION, e.g. cargo.ayedo.cloud/ayedo/k8s/harbor:VERSION" in problem


def test_an_instance_without_from_is_the_local_block_of_its_name() -> None:
    ws = resolved(
        "name: poly-workspace\nblocks:\n  - name: camelcase\n    config: {nested: {b: 3}}\n",
        {"blocks/camelcase/block.poly": LOCAL},
    )
    (block,) = ws.blocks
    assert (block.source, block.ref, block.version, block.workdir) == (
        "local",
        None,
        "0.6.2",
        "blocks/camelcase",
    )
    assert block.config == {"fooBar": True, "nested": {"a": 1, "b": 3}}
    assert [a.name for a in block.actions] == ["install"]
    assert block.folders == ("blocks/camelcase",)


def test_from_a_local_block_inherits_config_actions_workdir_and_inventory() -> None:
    text = """\
        name: ws
        blocks:
          - name: first
            from: camelcase
            config: {fooBar: false}
          - name: second
            from: first
            inventory: {from: first}
            actions:
              - {name: status, script: [echo status]}
        """
    ws = resolved(textwrap.dedent(text), {"blocks/nested/camelcase/block.poly": LOCAL})
    first, second = ws.blocks
    assert first.config["fooBar"] is False  # an explicit false wins (mergo would drop it)
    assert second.workdir == "blocks/nested/camelcase"
    assert second.chain == ("second", "first", "camelcase")
    assert [a.name for a in second.actions] == ["install", "status"]
    assert second.inventory_from == "first"


def test_a_from_cycle_is_an_error_naming_the_chain() -> None:
    text = "name: ws\nblocks:\n  - {name: a, from: b}\n  - {name: b, from: a}\n"
    (problem,) = problems_of(text)
    assert "from: chain is a cycle: a -> b -> a" in problem


def test_an_inline_block_defines_its_own_actions_and_runs_at_the_root() -> None:
    text = "name: ws\nblocks:\n  - name: hello\n    actions: [{name: greet, script: [echo hi]}]\n"
    (block,) = resolved(text).blocks
    assert (block.source, block.workdir, block.pin) == ("inline", "", "hello")


def test_an_instance_with_nothing_to_run_says_what_to_write() -> None:
    (problem,) = problems_of("name: ws\nblocks:\n  - name: web\n")
    assert problem.startswith("workspace.poly:3: blocks[0] ('web'): has no from:")
    assert "cargo.ayedo.cloud/web:VERSION" in problem


def test_an_action_needs_exactly_one_of_playbook_or_script() -> None:
    block = LOCAL.replace('    script:\n      - echo "INSTALL {{ .block.config.fooBar }}"\n', "")
    _, problems = check_block(block)
    assert "has neither 'playbook' and 'script'; give exactly one" in str(problems[0])
    _, problems = check_block(LOCAL + "    playbook: install.yml\n")
    assert "has both 'playbook' and 'script'" in str(problems[0])


def test_a_script_line_cratekeeper_cannot_render_is_an_error_before_any_run() -> None:
    bad = LOCAL.replace("{{ .block.config.fooBar }}", "{{ .Prompt.Input }}")
    problems = problems_of(
        "name: ws\nblocks:\n  - name: camelcase\n", {"blocks/camelcase/block.poly": bad}
    )
    assert problems == [
        "workspace.poly:3: block 'camelcase' action 'install': script line 1: "
        "{{ .Prompt.Input }}: 'Prompt' is not in the snapshot at '.Prompt.Input'"
    ]


def test_kubeconfig_from_another_block_is_refused_one_cluster_per_workspace() -> None:
    text = GOOD + "    kubeconfig: {from: other}\n"
    (problem,) = problems_of(text)
    assert problem.startswith("workspace.poly:7: blocks[0].kubeconfig.from: refused")
    assert "one workspace = one cluster" in problem


def test_keys_that_change_the_run_are_honoured_or_refused_with_a_line() -> None:
    text = GOOD + "    extraenv: [A=b]\nextramounts: ['/srv:/srv']\nextraenv: ['MY_VAR=x']\n"
    problems = problems_of(text)
    assert problems[0].startswith("workspace.poly:7: blocks[0].extraenv: refused: Polycrate")
    assert problems[1].startswith("workspace.poly:8: extramounts: refused")
    assert len(problems) == 2
    assert parse_workspace(GOOD + "extraenv: ['MY_VAR=x']\n").env() == {"MY_VAR": "x"}


def test_inventory_from_must_name_a_block_of_the_workspace() -> None:
    (problem,) = problems_of(GOOD + "    inventory: {from: infra}\n")
    assert problem.startswith("workspace.poly:7: blocks[0].inventory.from: 'infra' is not a block")


def test_workflow_steps_must_name_existing_blocks_and_actions() -> None:
    text = """\
        name: ws
        blocks:
          - name: camelcase
        workflows:
          - name: deploy-all
            steps:
              - {name: one, block: camelcase, action: install}
              - {name: two, block: camelcase, action: missing}
              - {name: three, block: nope, action: install}
        """
    problems = problems_of(textwrap.dedent(text), {"blocks/camelcase/block.poly": LOCAL})
    assert problems == [
        "workspace.poly:8: workflows[0].steps[1].action: block 'camelcase' has no action "
        "'missing' (its actions: install)",
        "workspace.poly:9: workflows[0].steps[2].block: 'nope' is not a block of this "
        "workspace (camelcase)",
    ]


def test_a_prompted_action_is_a_warning_that_says_how_to_opt_in() -> None:
    prompted = LOCAL + "    prompt: {message: Really?}\n"
    (warning,) = problems_of(
        "name: ws\nblocks:\n  - name: camelcase\n", {"blocks/camelcase/block.poly": prompted}
    )
    assert "warning: block 'camelcase' action 'install' has a prompt" in warning
    assert "spec.allowPromptedActions: true" in warning


def test_actions_as_a_mapping_name_polycrates_old_format() -> None:
    _, problems = check_block("name: custom-block\nactions:\n  install:\n    script: [echo]\n")
    assert "actions is a mapping (the format of Polycrate before 0.8); write a list" in str(
        problems[0]
    )


def test_block_names_follow_polycrate_and_may_hold_slashes() -> None:
    assert parse_block("name: ayedo/k8s/harbor\n").version is None
    _, problems = check_block("name: 'bad name'\n")
    assert "is not a valid name" in str(problems[0])
    _, problems = check_block(LOCAL.replace("name: install", "name: -install"))
    assert "a letter first" in str(problems[0])


def test_every_problem_is_reported_not_only_the_first() -> None:
    text = """\
        name: acme-production-1
        blocks:
          - name: app
            from: registry.acme-corp.com/acme/apps/app-deploy:latest
          - name: web
          - name: app
            from: registry.acme-corp.com/acme/apps/web
        """
    got = problems_of(textwrap.dedent(text))
    assert [p.split(":")[1] for p in got] == ["6", "4", "5"]
    assert "block instance 'app' is defined twice" in got[0]


def test_unknown_keys_are_warnings_with_their_line() -> None:
    parsed, problems = check_workspace(GOOD + "colour: blue\n")
    assert parsed is not None
    (warning,) = problems
    assert warning.severity == "warning"
    assert str(warning).startswith("workspace.poly:7: warning: colour: unknown key is ignored")


def test_polycrate_metadata_keys_are_ignored_with_a_reason() -> None:
    _, problems = check_workspace(GOOD + "dependencies: [ayedo/k8s/nginx:0.0.2]\n")
    (warning,) = problems
    assert "dependencies: ignored: cratekeeper pulls exactly the blocks pinned by from:" in str(
        warning
    )


def test_duplicate_yaml_keys_are_errors() -> None:
    got = problems_of(GOOD + "name: again\n")
    assert got == ["workspace.poly:7: duplicate key 'name'; each key may appear once in a mapping"]


def test_a_document_that_is_not_a_mapping_is_rejected() -> None:
    assert problems_of("- a\n- b\n") == ["workspace.poly:1: expected a mapping of keys, got a list"]
    assert problems_of("") == ["workspace.poly:1: expected a mapping of keys, got an empty file"]


def test_parse_workspace_raises_workspace_error_with_all_problems() -> None:
    with pytest.raises(WorkspaceError) as caught:
        parse_workspace("name: 7\nblocks: {}\n")
    assert caught.value.reason == "InvalidWorkspace"
    assert len(caught.value.problems) == 2


BLOCK = """\
name: registry.acme-corp.com/acme/apps/app-deploy
version: 1.2.0
config: {namespace: ""}
actions:
  - {name: deploy, playbook: deploy.yml}
  - {name: rollback, playbook: rollback.yml}
"""


def test_a_block_file_parses_with_its_actions() -> None:
    block = parse_block(BLOCK)
    assert block.version == "1.2.0"
    assert block.kind == "generic"
    deploy = block.action("deploy")
    assert deploy is not None
    assert deploy.playbook == "deploy.yml"
    assert block.action("missing") is None


def test_an_action_name_used_twice_is_rejected() -> None:
    with pytest.raises(BlockError) as caught:
        parse_block(BLOCK.replace("name: rollback", "name: deploy"))
    assert "action 'deploy' is defined twice" in str(caught.value)
    assert caught.value.reason == "InvalidBlock"


def test_a_numeric_version_asks_to_be_quoted() -> None:
    _, problems = check_block(BLOCK.replace("1.2.0", "1.2"))
    assert (
        str(problems[0])
        == 'block.poly:2: version: expected a string, got the number 1.2; quote it: "1.2"'
    )


def test_a_playbook_outside_the_block_is_rejected() -> None:
    _, problems = check_block(BLOCK.replace("deploy.yml", "../../etc/deploy.yml"))
    assert "leaves the block directory" in str(problems[0])


def test_a_local_playbook_that_does_not_exist_is_an_error() -> None:
    block = BLOCK.replace("registry.acme-corp.com/acme/apps/", "")
    problems = problems_of(
        "name: ws\nblocks:\n  - name: app-deploy\n",
        {"blocks/app-deploy/block.poly": block, "blocks/app-deploy/deploy.yml": "- hosts: all\n"},
    )
    assert problems == [
        "workspace.poly:3: block 'app-deploy' action 'rollback': playbook "
        "'blocks/app-deploy/rollback.yml' does not exist"
    ]


def test_control_characters_are_a_located_error_not_a_crash() -> None:
    assert problems_of("name: ws\nblocks: \x07\n") == [
        "workspace.poly:2: not valid YAML text: control characters are not allowed (U+0007)"
    ]


def test_the_compatibility_doc_names_every_refused_or_ignored_key() -> None:
    from pathlib import Path

    from controller.workspace.keys import RULES

    doc = (Path(__file__).parent.parent / "docs" / "polycrate-compatibility.md").read_text()
    for rules in RULES.values():
        for key in rules:
            assert f"`{key}`" in doc, key
