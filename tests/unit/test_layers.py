"""The layers of architecture.md, checked on every import (module level and inside functions):
`schemas/` imports neither `tierline/` nor `services/`; `tierline/` imports no service; a service imports
no other service. Issue 17 removed the last crossings: KNOWN is empty, and any crossing fails."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]

#: (importing file, imported module) crossings allowed to remain: none since issue 17 (the diagnostics
#: client and the ClickHouse client are shared plumbing in tierline/, the Stripe mirror and decline
#: classification are in the billing core, analytics is services/analytics/, `tierline classify` is
#: delegated by module name).
KNOWN: frozenset[tuple[str, str]] = frozenset()


def imports_of(path: Path) -> set[str]:
    """Every module ``path`` imports, at module level or inside a function (absolute names)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    package = ".".join(path.relative_to(ROOT).with_suffix("").parts[:-1])
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join([*base, node.module] if node.module else base)
            else:
                module = node.module or ""
            found.add(module)
            # `from services.x import adapters` imports a module too
            found.update(f"{module}.{alias.name}" for alias in node.names)
    return found


#: the runtime's only doors into the tooling (tierline_tools, the `tooling` extra): the CLI's commands that
#: start the embedded stack, replay the demo or run scenario files, imported when such a command runs
TOOLING_DOORS = frozenset({"tierline/cli.py"})


def crossing(source: str, module: str) -> bool:
    top = source.split("/")[0]
    if module == "tierline_tools" or module.startswith("tierline_tools."):
        return top in ("schemas", "services") or (top == "tierline" and source not in TOOLING_DOORS)
    if top == "schemas":
        return module.startswith(("tierline", "services"))
    if top == "tierline":
        return module == "services" or module.startswith("services.")
    if top == "services":
        own = ".".join(source.split("/")[:2])
        return module.startswith("services.") and not (module == own or module.startswith(own + "."))
    return False


def crossings() -> set[tuple[str, str]]:
    found: set[tuple[str, str]] = set()
    for top in ("schemas", "tierline", "services"):  # tierline_tools may import the runtime
        for path in sorted((ROOT / top).rglob("*.py")):
            source = path.relative_to(ROOT).as_posix()
            modules = imports_of(path)
            for module in modules:
                # keep the module itself, not each name imported from it, unless the name is a module
                if crossing(source, module) and _is_module(module):
                    found.add((source, module))
    return found


def _is_module(module: str) -> bool:
    parts = module.split(".")
    base = ROOT.joinpath(*parts)
    return base.with_suffix(".py").exists() or (base / "__init__.py").exists()


def test_given_the_tree_when_imports_are_walked_then_no_new_layer_crossing() -> None:
    new = sorted(crossings() - KNOWN)
    assert not new, f"imports that cross the layers of architecture.md: {new}"


def test_given_the_known_crossings_when_one_is_gone_then_the_list_shrinks_too() -> None:
    gone = sorted(KNOWN - crossings())
    assert not gone, f"no longer imported, delete from KNOWN: {gone}"


def test_given_a_crossing_when_classified_then_each_layer_rule_holds() -> None:
    assert crossing("schemas/messages.py", "tierline.settings")
    assert crossing("tierline/actions.py", "services.tier2_agent.policy")
    assert crossing("services/router/app.py", "services.diagnostics.client")
    assert not crossing("services/router/app.py", "services.router.handlers")
    assert not crossing("services/router/app.py", "tierline.messaging")
    assert not crossing("tierline/actions.py", "schemas.messages")
    assert crossing("tierline/pipeline.py", "tierline_tools.stack.manager")
    assert crossing("services/router/audit_inbox.py", "tierline_tools.stack.manager")
    assert not crossing("tierline/cli.py", "tierline_tools.demo")
