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
import os
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
    "promote": "promote",
    "get": "workspaces",
    "suspend": "workspaces",
    "resume": "workspaces",
    "history": "workspaces",
    "logs": "workspaces",
    "diff": "diffing",
    "run": "operating",
    "demo": "operating",
}
"""Each command, and the module of ``controller.cli`` that defines it (``add_commands``)."""

MODULES = tuple(dict.fromkeys(COMMANDS.values()))

# `reconcile workspace NAME` asks the operator; `reconcile PATH_OR_URL` runs the pipeline here.
# A checkout that is really named "workspace" is reached as `reconcile ./workspace`.
WORKSPACE_WORDS = ("workspace", "workspaces", "ws")


def build_parser(argv: Sequence[str] | None = None) -> argparse.ArgumentParser:
    """The command line: with ``argv``, only the module that defines its command (all of them
    when ``argv`` names none, or for ``--help``)."""
    parser = argparse.ArgumentParser(
        prog="cratekeeper",
        description="GitOps reconciliation of Polycrate workspaces: one Git repo per cluster.",
        epilog="example: cratekeeper get workspaces -A   (each command has --help)",
    )
    parser.add_argument("--version", action="version", version=f"cratekeeper {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    command = next((a for a in argv or () if not a.startswith("-")), None)
    modules = (COMMANDS[command],) if command in COMMANDS else MODULES
    for module in modules:
        importlib.import_module(f"controller.cli.{module}").add_commands(sub)
    return parser


def parse(argv: Sequence[str]) -> argparse.Namespace:
    """The arguments, with ``reconcile workspace NAME`` routed to its own parser."""
    if len(argv) >= 2 and argv[0] == "reconcile" and argv[1] in WORKSPACE_WORDS:
        from controller.cli.workspaces import reconcile_parser

        return reconcile_parser().parse_args(argv[2:])
    return build_parser(argv).parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``cratekeeper`` console script."""
    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        args = parse(argv)
    except SystemExit as exc:
        # argparse exits 2 on a usage error; where 2 means "something would run" (plan
        # --exit-code, diff), a typo in a CI job must not read as that: an error is 1.
        if exc.code == 2 and ("--exit-code" in argv or argv[:1] == ["diff"]):
            return 1
        raise
    try:
        code: int = args.func(args)
        sys.stdout.flush()
    except CratekeeperError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:  # Ctrl-C: the command's own cleanup has run; no traceback
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `cratekeeper status | head -1`: the reader left; exit quietly
        # Python flushes stdout again at exit; point it at /dev/null so that cannot fail.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 141  # 128 + SIGPIPE, as a shell reports it
    return code
