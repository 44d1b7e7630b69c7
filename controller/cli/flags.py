"""Flags several commands share (kept apart so ``--help`` of one imports no other command)."""

from __future__ import annotations

import argparse


def add_registry_flags(p: argparse.ArgumentParser) -> None:
    """The registry flags (``--docker-config``, ``--insecure-registry``, ``--registry-mirror``)."""
    p.add_argument(
        "--docker-config",
        help="docker config JSON with registry credentials (auths; credsStore and credHelpers "
        "run docker-credential-NAME from PATH)",
    )
    p.add_argument(
        "--insecure-registry",
        action="append",
        metavar="HOST[:PORT]",
        help="allow plain HTTP for this registry (repeatable; CRATEKEEPER_INSECURE_REGISTRIES)",
    )
    p.add_argument(
        "--registry-mirror",
        action="append",
        metavar="REGISTRY=HOST[:PORT]",
        help="reach REGISTRY through a mirror (repeatable; CRATEKEEPER_REGISTRY_MIRRORS)",
    )
