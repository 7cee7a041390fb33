"""The dependency rule of docs/architecture.md, checked on the code as it is:

- layers: ``projects`` on top; ``providers`` and ``queue_jobs`` below it, never importing
  each other; ``doce`` at the bottom (the contracts in pyproject.toml, run by
  import-linter);
- no import cycle between the modules of any package;
- an import inside a function says why, in a comment on its line or the line above.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import grimp
import pytest

ROOT = Path(__file__).resolve().parent.parent
APPS = ("doce", "providers", "projects", "queue_jobs")
LAYERS = ["projects", {"providers", "queue_jobs"}, "doce"]


@pytest.fixture(scope="module")
def graph() -> grimp.ImportGraph:
    return grimp.build_graph(*APPS, exclude_type_checking_imports=True)


def test_the_import_contracts_hold():
    lint_imports = Path(sys.executable).with_name("lint-imports")
    result = subprocess.run(
        [str(lint_imports), "--config", str(ROOT / "pyproject.toml")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "2 kept, 0 broken" in result.stdout


def test_the_layers_have_no_illegal_dependency(graph):
    assert graph.find_illegal_dependencies_for_layers(layers=LAYERS) == set()


@pytest.mark.parametrize(
    ("importer", "imported"),
    [
        ("providers.oauth", "projects.services"),  # a lower layer reaching up
        ("providers.services", "queue_jobs.pipeline"),  # two siblings leaning on each other
        ("doce.opencode.runtimes.local", "providers.models"),  # the bottom reaching up
    ],
)
def test_a_back_edge_would_be_caught(importer, imported):
    graph = grimp.build_graph(*APPS, exclude_type_checking_imports=True)
    graph.add_import(importer=importer, imported=imported)
    assert graph.find_illegal_dependencies_for_layers(layers=LAYERS)


@pytest.mark.parametrize("package", APPS)
def test_no_package_has_an_import_cycle(graph, package):
    assert graph.nominate_cycle_breakers(package) == set()


def test_a_cycle_would_be_caught():
    graph = grimp.build_graph(*APPS, exclude_type_checking_imports=True)
    graph.add_import(importer="providers.oauth", imported="providers.tasks")
    assert graph.nominate_cycle_breakers("providers")


def _function_imports_without_a_reason(path: Path) -> list[str]:
    source = path.read_text()
    lines = source.splitlines()
    found = []
    for function in ast.walk(ast.parse(source)):
        if not isinstance(function, ast.FunctionDef | ast.AsyncFunctionDef):
            continue
        for node in ast.walk(function):
            if not isinstance(node, ast.Import | ast.ImportFrom):
                continue
            here = lines[node.lineno - 1]
            above = lines[node.lineno - 2].strip() if node.lineno > 1 else ""
            if "#" not in here and not above.startswith("#"):
                found.append(f"{path.relative_to(ROOT)}:{node.lineno}: {here.strip()}")
    return found


def test_imports_inside_functions_say_why():
    unexplained = []
    for app in APPS:
        for path in sorted((ROOT / app).rglob("*.py")):
            if "migrations" not in path.parts:
                unexplained += _function_imports_without_a_reason(path)
    assert unexplained == []
