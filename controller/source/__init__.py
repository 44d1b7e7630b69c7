"""Git: fetch a workspace repository at a branch, tag or commit, and read it without a checkout.

Every fetch goes into one bare repository per remote URL under the cache directory, so later
fetches only transfer new objects. A check whose remote ref has not moved costs exactly one
``git ls-remote`` round trip. Git runs with a hermetic environment: no system or user config,
no ``~/.ssh``, no terminal prompts; credentials are read from files and never appear in argv,
URLs kept on disk, logs or error messages.

Modules, each one job: ``model`` (refs and credentials as values), ``gitcmd`` (running git
hermetically), ``classify`` (redaction and error classification), ``remote`` (authenticating
to a remote), ``lsremote`` (the commit a ref points at on the remote: the one round trip of a
check), ``tree`` (files at a commit), ``revision`` (resolving commits on disk, the CLI's
:func:`local_revision`), ``cache`` (the on-disk cache and its lock), ``checked`` (each ref's
last resolution, so an unmoved ref costs one ``ls-remote``), ``fetching`` (:func:`fetch`).

The names below are imported on first use, so a process that needs only a light module
(``cratekeeper reconcile`` with nothing to do: ``model`` and ``lsremote``) does not import
:mod:`~controller.source.checked` and pydantic with it (issue 11 point 3).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from controller.source.classify import redact
    from controller.source.fetching import fetch
    from controller.source.model import GitAuth, GitRef, RefKind
    from controller.source.revision import Revision, local_ref, local_revision
    from controller.source.tree import GitTree

_HOMES = {
    "GitAuth": "model",
    "GitRef": "model",
    "GitTree": "tree",
    "RefKind": "model",
    "Revision": "revision",
    "fetch": "fetching",
    "local_ref": "revision",
    "local_revision": "revision",
    "redact": "classify",
}
"""Each public name and the module that defines it."""

__all__ = [
    "GitAuth",
    "GitRef",
    "GitTree",
    "RefKind",
    "Revision",
    "fetch",
    "local_ref",
    "local_revision",
    "redact",
]


def __getattr__(name: str) -> object:
    """A public name, imported from its module the first time it is asked for."""
    home = _HOMES.get(name)
    if home is None:  # a submodule (``from controller.source import gitcmd``) or a typo
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{home}"), name)
    globals()[name] = value
    return value
