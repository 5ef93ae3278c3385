"""The layers of issue #14: core at the bottom, parsers and filters on it, pipelines and trainers
beside each other above them, the application on top; no import runs upward or sideways between
pipelines and trainers, and no module is part of an import cycle.

Every import statement of every module counts, at any depth of its file (a cycle hidden behind a
function-level import works only until someone moves that import), except imports under
``if TYPE_CHECKING:``, which never run.
"""

from __future__ import annotations

import ast
import os
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
# Package -> its folder in the repository (pyproject.toml's package-dir).
FOLDERS = {"codeprefs": ROOT / "codeprefs", "codeprefs.pipelines": ROOT / "pipelines",
           "codeprefs.filters": ROOT / "filters", "codeprefs.parsers": ROOT / "parsers",
           "codeprefs.trainers": ROOT / "trainers"}
APPLICATION = {"codeprefs.cli", "codeprefs.publish", "codeprefs.card", "codeprefs.stats", "codeprefs.tables",
               # the Ray job script: an entry point like the CLI, whose build command it runs
               "codeprefs.pipelines.build_prefs"}
LAYERS = (("codeprefs.pipelines", 2, "pipelines"), ("codeprefs.trainers", 2, "trainers"),
          ("codeprefs.filters", 1, "filters"), ("codeprefs.parsers", 1, "parsers"), ("codeprefs.core", 0, "core"))


def layer(module: str) -> tuple[int, str]:
    """(height, name) of the layer ``module`` belongs to."""
    if module in APPLICATION:
        return 3, "application"
    for prefix, height, name in LAYERS:
        if module == prefix or module.startswith(prefix + "."):
            return height, name
    if module == "codeprefs":  # the root package: the version and the checkout's package path
        return 0, "core"
    raise AssertionError(f"{module} is in no layer: add it to one")


def modules() -> dict[str, Path]:
    """Every module of the distribution, by dotted name."""
    found = {}
    for package, folder in FOLDERS.items():
        for path in sorted(folder.rglob("*.py")):
            parts = path.relative_to(folder).with_suffix("").parts
            name = ".".join((package, *parts)).removesuffix(".__init__")
            found[name] = path
    return found


def imports(path: Path, known: set[str]) -> set[str]:
    """The modules of ``known`` that the file at ``path`` imports, anywhere in it."""
    tree = ast.parse(path.read_text(), filename=str(path))
    skipped = {id(node) for branch in ast.walk(tree)
               if isinstance(branch, ast.If) and isinstance(branch.test, ast.Name) and branch.test.id == "TYPE_CHECKING"
               for node in ast.walk(branch)}
    names = set()
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    found = set()
    for name in names:
        while name and name not in known:
            name = name.rpartition(".")[0]
        if name:
            found.add(name)
    return found


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    found = modules()
    return {name: imports(path, set(found)) - {name} for name, path in found.items()}


def test_every_module_is_in_a_layer_and_the_graph_sees_imports(graph):
    assert len(graph) > 100
    for name in graph:
        layer(name)
    assert "codeprefs.core.schema" in graph["codeprefs.pipelines.steps"]
    assert "codeprefs.trainers.raytrain" in graph["codeprefs.trainers.train"]


def test_no_import_runs_upward_or_between_pipelines_and_trainers(graph):
    wrong = []
    for module, targets in sorted(graph.items()):
        height, name = layer(module)
        for target in sorted(targets):
            target_height, target_name = layer(target)
            if target == "codeprefs":  # the root package every module is inside
                continue
            if target_height > height or (target_height == height == 2 and target_name != name):
                wrong.append(f"{module} ({name}) imports {target} ({target_name})")
    assert wrong == []


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of ``graph`` as ``[a, b, ..., a]``, or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for target in sorted(graph.get(node, ())):
            if state.get(target) == 1:
                return path[path.index(target):] + [target]
            if target not in state and (cycle := visit(target)):
                return cycle
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_no_import_cycle(graph):
    assert find_cycle(graph) is None


def test_find_cycle_finds_one_behind_a_function_level_import(tmp_path):
    (tmp_path / "a.py").write_text("import codeprefs.core.b\n")
    (tmp_path / "b.py").write_text("def late():\n    from codeprefs.core.a import x\n")
    known = {"codeprefs.core.a", "codeprefs.core.b"}
    graph = {"codeprefs.core.a": imports(tmp_path / "a.py", known), "codeprefs.core.b": imports(tmp_path / "b.py", known)}
    assert find_cycle(graph) == ["codeprefs.core.a", "codeprefs.core.b", "codeprefs.core.a"]


def test_every_package_folder_is_listed_in_pyproject():
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    on_disk = {name for name, path in modules().items() if path.name == "__init__.py"}
    assert set(config["packages"]) == on_disk
    assert {package: ROOT / folder for package, folder in config["package-dir"].items()} == FOLDERS


def test_no_module_imports_a_top_level_folder_by_its_bare_name():
    """``import pipelines`` would load a second copy of a module under another name."""
    bare = []
    for name, path in modules().items():
        for node in ast.walk(ast.parse(path.read_text())):
            names = ([alias.name for alias in node.names] if isinstance(node, ast.Import)
                     else [node.module] if isinstance(node, ast.ImportFrom) and node.module and node.level == 0
                     else [])
            bare += [f"{name}: {n}" for n in names if n.split(".")[0] in ("pipelines", "filters", "parsers", "trainers")]
    assert bare == []


def test_shipped_term_lists_load_outside_the_checkout(tmp_path):
    """Run from another folder, ``filters`` is no importable name (only ``codeprefs.filters``):
    the shipped term lists must be found through the package, as an installed build finds them."""
    import subprocess
    import sys

    script = ("from codeprefs.filters import criteria\n"
              "terms = criteria.load_terms()\n"
              "print(len(terms), sum(map(len, terms.values())) > 100, len(criteria.load_stems()) > 0)\n")
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    result = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["5", "True", "True"]
