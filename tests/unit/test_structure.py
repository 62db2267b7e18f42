"""The layout's rules, checked: where each stage lives and what may import what (README, "Layout")."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ["models", "agents", "pipeline", "sensors_sim", "evaluation", "bench"]
MAX_FILE_LINES = 400
MAX_FUNCTION_LINES = 60  # in models/, agents/, pipeline/


def _modules(*packages: str) -> list[Path]:
    return sorted(path for package in packages for path in (ROOT / package).rglob("*.py"))


def _imported(path: Path) -> set[str]:
    """Top-level package names a module imports (at any depth of the file)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


def test_no_file_is_over_400_lines():
    long = {
        str(p.relative_to(ROOT)): n
        for p in _modules(*PACKAGES)
        if (n := len(p.read_text().splitlines())) > MAX_FILE_LINES
    }
    assert not long, long


def test_no_function_in_models_agents_or_pipeline_is_over_60_lines():
    long = {}
    for path in _modules("models", "agents", "pipeline"):
        for node in ast.walk(ast.parse(path.read_text())):
            if (
                isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
                and node.end_lineno - node.lineno >= MAX_FUNCTION_LINES
            ):
                long[f"{path.relative_to(ROOT)}:{node.lineno} {node.name}"] = node.end_lineno - node.lineno + 1
    assert not long, long


@pytest.mark.parametrize(
    ("package", "forbidden"),
    [
        ("models", {"pipeline", "agents", "sensors_sim", "evaluation", "bench", "faust"}),  # pure engines
        ("pipeline", {"agents", "sensors_sim", "evaluation", "bench"}),  # contracts, I/O, operators' surfaces
        ("agents", {"sensors_sim", "evaluation", "bench"}),
        ("sensors_sim", {"agents", "evaluation", "bench"}),
    ],
)
def test_dependencies_point_one_way(package, forbidden):
    wrong = {str(p.relative_to(ROOT)): sorted(_imported(p) & forbidden) for p in _modules(package)}
    assert not {path: names for path, names in wrong.items() if names}
