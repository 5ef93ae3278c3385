"""The trainer's modules import one way: no cycle among ``trainers.*``, lazy imports included.

A cycle hidden behind a function-level import works until someone moves that import to the top
or imports the modules in another order; these tests read every import statement of every
trainer module (at any depth of the file) and fail on any cycle, and import each module first in
a fresh interpreter, where an order-dependent cycle would show.
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = "trainers"


def package_modules(folder: Path, package: str) -> dict[str, Path]:
    """Dotted name -> file of each module of the flat package in ``folder``."""
    return {f"{package}.{path.stem}": path for path in sorted(folder.glob("*.py")) if path.stem != "__init__"}


def imported_modules(path: Path, module: str, known: set[str]) -> set[str]:
    """The modules of ``known`` that ``module`` (at ``path``) imports anywhere in its file.

    Covers ``import a.b``, ``from a.b import c``, ``from a import b`` where ``b`` is a module, and
    relative imports; walks the whole tree, so imports inside functions count like top-level ones.
    """
    found = set()
    parent = module.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: from the package (or its parents) of this module
                anchor = parent.rsplit(".", node.level - 1)[0] if node.level > 1 else parent
                base = f"{anchor}.{base}" if base else anchor
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return (found & known) - {module}


def import_graph(folder: Path, package: str) -> dict[str, set[str]]:
    """Module -> the package's modules it imports, for every module of the package in ``folder``."""
    modules = package_modules(folder, package)
    return {name: imported_modules(path, name, set(modules)) for name, path in modules.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle of ``graph`` as ``[a, b, ..., a]``, or None when its imports point one way."""
    done: set[str] = set()
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        if node in path:
            return path[path.index(node):] + [node]
        if node in done:
            return None
        path.append(node)
        for target in sorted(graph.get(node, ())):
            cycle = visit(target)
            if cycle:
                return cycle
        path.pop()
        done.add(node)
        return None

    for start in sorted(graph):
        cycle = visit(start)
        if cycle:
            return cycle
    return None


TRAINER_MODULES = sorted(package_modules(ROOT / PACKAGE, PACKAGE))


def test_trainer_modules_import_one_way():
    cycle = find_cycle(import_graph(ROOT / PACKAGE, PACKAGE))
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_the_graph_sees_the_imports_that_used_to_close_cycles():
    """The walk does see imports (a graph without edges has no cycle either): the ones that
    replaced the cycles are there, and nothing leads from the evaluator or the Ray launcher back
    to the trainer."""
    graph = import_graph(ROOT / PACKAGE, PACKAGE)
    assert {"trainers.evaluate", "trainers.raytrain", "trainers.config", "trainers.tokenizer"} \
        <= graph["trainers.train"]
    assert "trainers.config" in graph["trainers.raytrain"]
    assert "trainers.tokenizer" in graph["trainers.evaluate"]

    def reachable(start: str) -> set[str]:
        seen, todo = set(), [start]
        while todo:
            for target in graph[todo.pop()] - seen:
                seen.add(target)
                todo.append(target)
        return seen

    assert "trainers.train" not in reachable("trainers.evaluate") | reachable("trainers.raytrain")


def test_a_cycle_behind_a_function_level_import_is_found(tmp_path):
    folder = tmp_path / "pkg"
    folder.mkdir()
    (folder / "__init__.py").write_text("")
    (folder / "a.py").write_text("from pkg.b import helper\n")
    (folder / "b.py").write_text("def helper():\n    from . import c\n    return c\n")
    (folder / "c.py").write_text("import os\n\n\ndef late():\n    from pkg.a import helper\n    return helper\n")
    (folder / "d.py").write_text("from pkg import c\n")
    graph = import_graph(folder, "pkg")
    assert graph == {"pkg.a": {"pkg.b"}, "pkg.b": {"pkg.c"}, "pkg.c": {"pkg.a"}, "pkg.d": {"pkg.c"}}
    assert find_cycle(graph) == ["pkg.a", "pkg.b", "pkg.c", "pkg.a"]
    (folder / "c.py").write_text("import os\n")
    assert find_cycle(import_graph(folder, "pkg")) is None


@pytest.mark.parametrize("module", TRAINER_MODULES)
def test_each_trainer_module_imports_first_in_a_fresh_interpreter(module):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    done = subprocess.run([sys.executable, "-c", f"import {module}"], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-4000:]
