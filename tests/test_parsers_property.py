"""Property: on any input, the parsers either succeed or raise cratekeeper's own error type."""

from __future__ import annotations

import contextlib

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from controller.errors import CratekeeperError, WorkspaceError
from controller.refs import BlockRef
from controller.workspace import parse_block, parse_workspace

scalars = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20)
documents = st.recursive(
    scalars,
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(
            st.sampled_from(["name", "from", "blocks", "config", "actions", "playbook", "version"])
            | st.text(max_size=8),
            children,
            max_size=5,
        )
    ),
    max_leaves=20,
)
near_refs = st.from_regex(
    r"[a-zA-Z0-9.:/@_-]{0,12}(/[a-z0-9._-]{0,8}){0,3}(:[a-zA-Z0-9._-]{0,8})?(@sha256:[a-f0-9]{0,64})?",
    fullmatch=True,
)
relaxed = settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow], deadline=None)


@relaxed
@given(st.text(max_size=300))
def test_any_text_is_a_workspace_or_a_workspace_error(text: str) -> None:
    try:
        parse_workspace(text)
    except WorkspaceError as exc:
        assert exc.problems
        assert all(p.file == "workspace.poly" for p in exc.problems)


@relaxed
@given(st.text(max_size=300))
def test_any_text_is_a_block_or_a_workspace_error(text: str) -> None:
    try:
        parse_block(text)
    except WorkspaceError as exc:
        assert exc.problems


@relaxed
@given(documents)
def test_any_yaml_structure_is_a_workspace_or_a_workspace_error(doc: object) -> None:
    text = yaml.safe_dump(doc)
    with contextlib.suppress(WorkspaceError):
        parse_workspace(text)
    with contextlib.suppress(WorkspaceError):
        parse_block(text)


@relaxed
@given(
    st.lists(st.fixed_dictionaries({"name": st.text(max_size=6), "from": near_refs}), max_size=4)
)
def test_any_blocks_list_is_a_workspace_or_a_workspace_error(blocks: list[dict[str, str]]) -> None:
    try:
        ws = parse_workspace(yaml.safe_dump({"name": "ws", "blocks": blocks}))
    except WorkspaceError:
        return
    assert [b.name for b in ws.blocks] == [b["name"] for b in blocks]


@relaxed
@given(near_refs | st.text(max_size=80))
def test_any_reference_parses_or_raises_our_error(text: str) -> None:
    try:
        ref = BlockRef.parse(text)
    except CratekeeperError:
        return
    assert ref.tag != "latest"
    assert BlockRef.parse(str(ref)) == ref


@relaxed
@given(documents, documents)
def test_any_workspace_and_local_block_resolve_or_give_located_problems(
    ws: object, block: object
) -> None:
    from controller.workspace import check_tree
    from tests.test_workspace import Files

    tree = Files(
        {"workspace.poly": yaml.safe_dump(ws), "blocks/b/block.poly": yaml.safe_dump(block)}
    )
    resolved, problems = check_tree(tree)
    if resolved is None:
        assert any(p.severity == "error" for p in problems)
    else:
        assert [b.name for b in resolved.blocks] == [i.name for i in resolved.file.blocks]


script_lines = st.text(alphabet="{}. -abcAB|$\"'", max_size=30)


@relaxed
@given(st.lists(script_lines, max_size=4))
def test_any_script_line_renders_or_raises_a_template_error(lines: list[str]) -> None:
    from controller.workspace.templates import TemplateError, render_script

    snapshot = {"block": {"name": "b", "config": {"a": 1}}, "workspace": {"name": "w"}}
    with contextlib.suppress(TemplateError):
        render_script(lines, snapshot, "block 'b' action 'deploy'")
