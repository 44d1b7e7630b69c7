"""``cratekeeper promote``: the target's pins set to the source's, its text otherwise untouched,
and with --commit the promotion commit naming the versions."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from controller.cli import main
from controller.cli.promote import promote_text
from controller.refs import BlockRef
from tests.support.gitrepo import ENV, GitRepo

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
APP = "registry.acme-corp.com/acme/apps/app-deploy"
DB = "registry.acme-corp.com/acme/infra/postgres"

TARGET = f"""# production: handle with care
name: acme-production-1
blocks:
  - name: app   # the shop
    from: "{APP}:1.1.0"
    config:
      replicas: 2   # two, always
  - name: db
    from: {DB}:14.1.0
    config: {{size: large}}
"""


def test_pins_move_and_everything_else_stays_as_written() -> None:
    pins = {APP: BlockRef.parse(f"{APP}:1.2.0"), DB: BlockRef.parse(f"{DB}:15.0.0")}
    text, done = promote_text(TARGET, pins)
    assert [str(p) for p in done] == ["app 1.1.0 → 1.2.0", "db 14.1.0 → 15.0.0"]
    expected = TARGET.replace(f"{APP}:1.1.0", f"{APP}:1.2.0").replace(
        f"{DB}:14.1.0", f"{DB}:15.0.0"
    )
    assert text == expected


def test_only_the_blocks_asked_for_are_promoted() -> None:
    pins = {APP: BlockRef.parse(f"{APP}:1.2.0"), DB: BlockRef.parse(f"{DB}:15.0.0")}
    text, done = promote_text(TARGET, pins, only={"db"})
    assert [p.block for p in done] == ["db"] and f"{APP}:1.1.0" in text


def test_promote_commit_names_the_versions(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    for key, value in ENV.items():
        monkeypatch.setenv(key, value)
    repo = GitRepo(tmp_path / "acme-production-1")
    shutil.copytree(EXAMPLES / "acme-production-1", repo.path, dirs_exist_ok=True)
    before = repo.commit("production on 1.1.0")
    code = main(
        ["promote", str(EXAMPLES / "acme-staging-1"), str(repo.path), "--block", "app", "--commit"]
    )
    out = capsys.readouterr().out
    assert code == 0, out
    assert repo.git("rev-parse", "HEAD~1") == before
    subject = repo.git("log", "-1", "--format=%s")
    assert subject == "promote app 1.1.0 → 1.2.0 to acme-production-1 (from acme-staging-1)"
    diff = repo.git("diff", "HEAD~1", "--stat")
    assert "workspace.poly | 2 +-" in diff
    # Again: nothing to promote, no commit.
    assert main(["promote", str(EXAMPLES / "acme-staging-1"), str(repo.path), "--commit"]) == 0
    assert "nothing to promote" in capsys.readouterr().out
