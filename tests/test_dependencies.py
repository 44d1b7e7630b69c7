"""Dependencies say what the code uses (issue 14 point 2).

The runtime dependencies of ``pyproject.toml`` are compared with the imports of ``controller/``
(read with ``ast``, mapped to distributions with ``importlib.metadata``): a declared dependency
nothing imports fails, and so does an import no declaration provides. The ``demo`` extra
belongs to ``controller/sandbox/`` (the only code that may import it).
"""

from __future__ import annotations

import ast
import importlib.metadata
import re
import sys
import tomllib
from collections.abc import Iterable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CONTROLLER = ROOT / "controller"
SANDBOX = CONTROLLER / "sandbox"
# Ansible plugins (controller/runners/*_plugins/) are loaded by ansible-playbook in its own
# process, never by us: what they import comes with Ansible.
RUNNERS = CONTROLLER / "runners"
# Declared for a program they install, not for an import: ansible-playbook (the local runner).
PROGRAMS = {"ansible"}


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def requirement_name(requirement: str) -> str:
    match = re.match(r"[A-Za-z0-9][A-Za-z0-9._-]*", requirement)
    assert match, requirement
    return canonical(match.group(0))


def declared() -> tuple[set[str], dict[str, set[str]]]:
    """The base dependencies and each extra's own (self-references like cratekeeper[local]
    left out)."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    base = {requirement_name(r) for r in project["dependencies"]}
    extras = {
        extra: {requirement_name(r) for r in reqs} - {"cratekeeper"}
        for extra, reqs in project["optional-dependencies"].items()
    }
    return base, extras


def imported_modules(files: Iterable[Path]) -> dict[str, set[str]]:
    """Top-level third-party module name → the files importing it."""
    found: dict[str, set[str]] = {}
    for path in files:
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                top = name.partition(".")[0]
                if top != "controller" and top not in sys.stdlib_module_names:
                    found.setdefault(top, set()).add(str(path.relative_to(ROOT)))
    return found


def distributions(modules: Iterable[str]) -> dict[str, set[str]]:
    """Distribution (canonical name) → the modules of ``modules`` it provides."""
    providers = importlib.metadata.packages_distributions()
    found: dict[str, set[str]] = {}
    for module in modules:
        dists = providers.get(module)
        assert dists, f"no installed distribution provides the module {module!r}"
        for dist in dists:
            found.setdefault(canonical(dist), set()).add(module)
    return found


def is_ansible_plugin(path: Path) -> bool:
    return path.parent.parent == RUNNERS and path.parent.name.endswith("_plugins")


def sources(*, sandbox: bool) -> list[Path]:
    files = [p for p in CONTROLLER.rglob("*.py") if not is_ansible_plugin(p)]
    return [p for p in files if p.is_relative_to(SANDBOX) == sandbox]


def test_every_import_of_the_product_is_a_declared_runtime_dependency() -> None:
    base, extras = declared()
    product = imported_modules(sources(sandbox=False))
    missing = {d: m for d, m in distributions(product).items() if d not in base}
    assert not missing, "imported but not declared in [project] dependencies: " + "; ".join(
        f"{dist} (module {', '.join(sorted(mods))} in "
        f"{', '.join(sorted(f for m in mods for f in product[m]))})"
        for dist, mods in sorted(missing.items())
    )
    demo = imported_modules(sources(sandbox=True))
    missing = {
        d: m for d, m in distributions(demo).items() if d not in base | extras["demo"] | PROGRAMS
    }
    assert not missing, f"controller/sandbox imports what the demo extra lacks: {missing}"


def test_every_declared_runtime_dependency_is_imported() -> None:
    base, extras = declared()
    product = set(distributions(imported_modules(sources(sandbox=False))))
    unused = base - product
    assert not unused, (
        f"declared in [project] dependencies but never imported by controller/: {sorted(unused)}; "
        "remove it (and say why in docs/decisions.md) or use it"
    )
    sandbox = set(distributions(imported_modules(sources(sandbox=True))))
    for extra in ("local", "demo"):
        unused = extras[extra] - product - sandbox - PROGRAMS
        assert not unused, f"the {extra} extra declares what nothing imports: {sorted(unused)}"
