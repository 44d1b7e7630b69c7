"""The ``cratekeeper`` command: thin argument parsing over the modules below it."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from controller import __version__
from controller.cli import applying, inspecting, operating
from controller.errors import CratekeeperError


def build_parser() -> argparse.ArgumentParser:
    """The whole command line; each submodule registers its own commands."""
    parser = argparse.ArgumentParser(
        prog="cratekeeper",
        description="GitOps reconciliation of Polycrate workspaces: one Git repo per cluster.",
    )
    parser.add_argument("--version", action="version", version=f"cratekeeper {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    inspecting.add_commands(sub)
    applying.add_commands(sub)
    operating.add_commands(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``cratekeeper`` console script."""
    args = build_parser().parse_args(argv)
    try:
        code: int = args.func(args)
    except CratekeeperError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:  # Ctrl-C: the command's own cleanup has run; no traceback
        print("interrupted", file=sys.stderr)
        return 130
    return code
