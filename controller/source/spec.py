"""What a Workspace's ``spec.source`` means to the source layer: its Git ref, and whether its
URL may be fetched at all."""

from __future__ import annotations

from controller.api.spec import WorkspaceSpec
from controller.errors import SourceError
from controller.source.model import GitRef


def git_ref(spec: WorkspaceSpec) -> GitRef:
    """The ref ``spec.source.ref`` names: a commit, else a tag, else a branch (``main``)."""
    ref = spec.source.ref
    if ref.commit:
        return GitRef.commit(ref.commit)
    if ref.tag:
        return GitRef.tag(ref.tag)
    return GitRef.branch(ref.branch or "main")


def is_local(url: str) -> bool:
    """A ``file://`` URL (the spec's pattern admits no plain paths)."""
    return url.lower().startswith("file:")


def check_fetchable(url: str, *, allow_local: bool) -> None:
    """Refuse a URL on the controller's own disk unless local sources are allowed: a Workspace
    could otherwise read any repository there, another tenant's cache included."""
    if is_local(url) and not allow_local:
        raise SourceError(
            f"spec.source.url {url!r} is a path on the controller's own disk; "
            "use a Git server URL (CRATEKEEPER_ALLOW_LOCAL_SOURCES enables it for demos)"
        )
