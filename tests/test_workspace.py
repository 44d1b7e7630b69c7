"""workspace.poly and block.poly: what is accepted, and how every rejection reads."""

from __future__ import annotations

import textwrap

import pytest

from controller.errors import BlockError, WorkspaceError
from controller.workspace import check_block, check_workspace, parse_block, parse_workspace

GOOD = """\
name: acme-production-1
organization: acme
blocks:
  - name: app
    from: registry.acme-corp.com/acme/apps/app-deploy:1.2.0
    config: {namespace: acme-app-acme-production-1}
"""


def problems_of(text: str) -> list[str]:
    return [str(p) for p in check_workspace(textwrap.dedent(text))[1]]


def test_a_pinned_workspace_parses_into_blocks_in_order() -> None:
    ws = parse_workspace(GOOD + "  - name: db\n    from: r.example.com/db:2.0.0\n")
    assert ws.name == "acme-production-1"
    assert [b.name for b in ws.blocks] == ["app", "db"]
    assert ws.blocks[0].from_.tag == "1.2.0"
    assert ws.blocks[0].config == {"namespace": "acme-app-acme-production-1"}


def test_a_digest_may_be_added_to_the_tag() -> None:
    digest = "sha256:" + "ab" * 32
    ws = parse_workspace(GOOD.replace(":1.2.0", f":1.2.0@{digest}"))
    assert ws.blocks[0].from_.digest == digest


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
        "https://registry.acme-corp.com/app:1.0",  # a URL, not a reference
        "registry.acme-corp.com/Acme/App:1.0",  # upper case path
        "registry.acme-corp.com/app:1.0@sha256:123",  # short digest
        "registry.acme-corp.com/app:-bad",  # tag starting with a dash
    ],
)
def test_malformed_references_are_rejected(ref: str) -> None:
    (problem,) = problems_of(GOOD.replace("registry.acme-corp.com/acme/apps/app-deploy:1.2.0", ref))
    assert problem.startswith("workspace.poly:5: blocks[0].from:")
    assert repr(ref) in problem


def test_duplicate_instance_names_are_rejected_at_the_second() -> None:
    text = GOOD + "  - name: app\n    from: r.example.com/other:1.0.0\n"
    assert (
        "workspace.poly:7: blocks[1].name: block instance 'app' is defined twice"
        in (problems_of(text)[0])
    )


def test_wrong_types_say_what_was_expected() -> None:
    got = problems_of(GOOD.replace("{namespace: acme-app-acme-production-1}", "[a, b]"))
    assert got == [
        "workspace.poly:6: blocks[0].config: input should be a valid dictionary, got ['a', 'b']"
    ]


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
    got = problems_of(text)
    assert [p.split(":")[1] for p in got] == ["4", "5", "6", "7"]
    assert "required key 'from' is missing" in got[1]


def test_unknown_keys_are_warnings_with_their_line() -> None:
    parsed, problems = check_workspace(GOOD + "workflows: []\n")
    assert parsed is not None
    (warning,) = problems
    assert warning.severity == "warning"
    assert str(warning).startswith("workspace.poly:7: warning: workflows: unknown key is ignored")


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


def test_an_action_without_a_playbook_is_rejected() -> None:
    _, problems = check_block(BLOCK.replace(", playbook: rollback.yml", ""))
    assert [str(p) for p in problems] == [
        "block.poly:6: actions[1] ('rollback'): required key 'playbook' is missing"
    ]


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


def test_control_characters_are_a_located_error_not_a_crash() -> None:
    assert problems_of("name: ws\nblocks: \x07\n") == [
        "workspace.poly:2: not valid YAML text: control characters are not allowed (U+0007)"
    ]
