"""What the CLI prints when its output is not a terminal (a pipe, a file, CI logs)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from codeprefs.schema import Aspect, Language
from pipelines.runrecord import funnel

ROOT = Path(__file__).resolve().parents[1]


def run_cli(*args: str, columns: int = 80) -> subprocess.CompletedProcess:
    """The real CLI with its stdout and stderr captured through pipes, on a narrow 'terminal'."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "COLUMNS": str(columns)}
    return subprocess.run([sys.executable, "-m", "codeprefs.cli", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=600)


def fake_output(folder: Path) -> Path:
    """A build output: one shard with a pair for every language x criterion, and its run.json."""
    rows = [{"language": language.value, "aspect": aspect.value} for language in Language for aspect in Aspect]
    (folder / "data").mkdir(parents=True)
    pq.write_table(pa.Table.from_pylist(rows), folder / "data" / "train-00000-of-00001.parquet")
    drops = Counter({("criteria", "no_criterion_matched"): 7, ("validate", "syntax_error_in_chosen"): 2})
    (folder / "run.json").write_text(json.dumps({"name": "fake", "funnel": funnel(drops, len(rows))}))
    return folder


def test_stats_through_a_pipe_prints_every_name_in_full(tmp_path):
    output = fake_output(tmp_path / "out")
    result = run_cli("stats", str(output))
    assert result.returncode == 0, result.stderr
    text = result.stdout
    assert "…" not in text
    words = set(text.replace("│", " ").replace("|", " ").split())
    for name in [language.value for language in Language] + [aspect.value for aspect in Aspect]:
        assert name in words, f"{name} not printed in full:\n{text}"
    assert {"no_criterion_matched:", "syntax_error_in_chosen:"} <= words
    assert all(len(line) <= 80 for line in text.splitlines())
    # The counts are still there: one pair per language x criterion, 40 in all.
    cells = {line.replace("│", " ").split()[0]: line.replace("│", " ").split()[1:]
             for line in text.splitlines() if line.startswith("│")}
    assert cells["JavaScript"] == ["1"] * 5 + ["5"] and cells["total"] == ["8"] * 5 + ["40"]
