"""Benchmark-only libraries stay out of what installing codeprefs pulls in."""

from __future__ import annotations

import ast
import os
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BENCH_ONLY = {"datatrove"}


def _requirement_name(requirement: str) -> str:
    return requirement.split("[")[0].split("=")[0].split("<")[0].split(">")[0].strip().lower()


def test_benchmark_baselines_are_an_optional_extra_not_a_dependency():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    runtime = {_requirement_name(requirement) for requirement in project["dependencies"]}
    bench = {_requirement_name(requirement) for requirement in project["optional-dependencies"]["bench"]}
    assert not runtime & BENCH_ONLY
    assert bench >= BENCH_ONLY
    locked = {_requirement_name(line) for line in (ROOT / "requirements.lock").read_text().splitlines()
              if line.strip() and not line.startswith("#")}
    assert locked >= BENCH_ONLY  # `make venv` still installs them: the benchmark runs from a fresh checkout


def _imported_packages(path: Path) -> set[str]:
    """The top-level packages ``path`` imports (function-level imports included)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module.split(".")[0])
    return found


def _project_sources() -> list[Path]:
    """The project's Python files outside benchmarks/ (no virtual environment, no build output)."""
    sources = []
    for folder, subfolders, files in os.walk(ROOT):
        subfolders[:] = sorted(name for name in subfolders if not name.startswith(".")
                               and name not in ("benchmarks", "out", "__pycache__"))
        sources += [Path(folder) / name for name in sorted(files) if name.endswith(".py")]
    return sources


def test_only_the_benchmarks_import_them():
    assert _imported_packages(ROOT / "benchmarks" / "bench_dedupe.py") >= BENCH_ONLY  # the scan sees them
    sources = _project_sources()
    assert ROOT / "pipelines" / "build.py" in sources and ROOT / "tests" / "test_dependencies.py" in sources
    importers = [str(path.relative_to(ROOT)) for path in sources if _imported_packages(path) & BENCH_ONLY]
    assert importers == []
