"""Git: fetch a workspace repository at a branch, tag or commit, and read it without a checkout.

Every fetch goes into one bare repository per remote URL under the cache directory, so later
fetches only transfer new objects. A check whose remote ref has not moved costs exactly one
``git ls-remote`` round trip. Git runs with a hermetic environment: no system or user config,
no ``~/.ssh``, no terminal prompts; credentials are read from files and never appear in argv,
URLs kept on disk, logs or error messages.

Modules, each one job: ``model`` (refs and credentials as values), ``gitcmd`` (running git
hermetically), ``classify`` (redaction and error classification), ``remote`` (authenticating
to a remote), ``tree`` (files at a commit), ``revision`` (resolving commits on disk, the CLI's
:func:`local_revision`), ``cache`` (the on-disk cache and its lock), ``checked`` (each ref's
last resolution, so an unmoved ref costs one ``ls-remote``), ``fetching`` (:func:`fetch`).
"""

from controller.source.classify import redact
from controller.source.fetching import fetch
from controller.source.model import GitAuth, GitRef, RefKind
from controller.source.revision import Revision, local_ref, local_revision
from controller.source.tree import GitTree

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
