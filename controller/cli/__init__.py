"""The ``cratekeeper`` command: thin argument parsing over the modules below it.

Start-up is part of every command's cost (a CI check runs ``cratekeeper reconcile`` or
``plan`` as a process), so only the module that defines the command given is imported: each
module's imports are what its commands use. ``cratekeeper --help`` (or an unknown command)
imports them all to list every command. A new command goes into :data:`COMMANDS`; a test checks
that the table matches what the modules register.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from controller import __version__
from controller.errors import CratekeeperError

COMMANDS = {
    "validate": "inspecting",
    "plan": "inspecting",
    "promotions": "inspecting",
    "status": "inspecting",
    "reconcile": "applying",
    "blocks": "applying",
    "run": "operating",
    "demo": "operating",
}
"""Each command, and the module of ``controller.cli`` that defines it (``add_commands``)."""

MODULES = tuple(dict.fromkeys(COMMANDS.values()))


def build_parser(argv: Sequence[str] | None = None) -> argparse.ArgumentParser:
    """The command line: with ``argv``, only the module that defines its command (all of them
    when ``argv`` names none, or for ``--help``)."""
    parser = argparse.ArgumentParser(
        prog="cratekeeper",
        description="GitOps reconciliation of Polycrate workspaces: one Git repo per cluster.",
    )
    parser.add_argument("--version", action="version", version=f"cratekeeper {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    command = next((a for a in argv or () if not a.startswith("-")), None)
    modules = (COMMANDS[command],) if command in COMMANDS else MODULES
    for module in modules:
        importlib.import_module(f"controller.cli.{module}").add_commands(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``cratekeeper`` console script."""
    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        args = build_parser(argv).parse_args(argv)
        code: int = args.func(args)
    except CratekeeperError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:  # Ctrl-C: the command's own cleanup has run; no traceback
        print("interrupted", file=sys.stderr)
        return 130
    return code
