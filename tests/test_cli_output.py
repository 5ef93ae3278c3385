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

from codeprefs.core.schema import Aspect, Language
from codeprefs.pipelines.runrecord import funnel

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
    counts = {"total": len(rows) + sum(drops.values()), "kept": len(rows), "dropped": sum(drops.values())}
    (folder / "run.json").write_text(json.dumps({"name": "fake", "rows": counts,
                                                 "funnel": funnel(drops, len(rows))}))
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


def test_a_piped_build_shows_progress_per_stage_and_no_ray_info_lines(tmp_path, make_repo):
    from tests.samples import commit_stats_history

    repo = make_repo("repo")
    commit_stats_history(repo)
    manifest = tmp_path / "manifest.yaml"
    manifest.write_text(json.dumps({"name": "piped", "sources": [{"type": "git", "repos": [str(repo.path)]}],
                                    "ray": {"num_cpus": 1}}))
    out = tmp_path / "out"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "COLUMNS": "80"}
    env.pop("RAY_ADDRESS", None)
    result = subprocess.run([sys.executable, "pipelines/build_prefs.py", "--manifest", str(manifest),
                             "--output", str(out)], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-4000:]
    text = result.stdout + result.stderr
    record = json.loads((out / "run.json").read_text())
    listed = record["rows"]["total"]
    kept = record["rows"]["kept"]
    finished = {line.split(": ")[1]: line for line in text.splitlines()
                if line.startswith("progress: ") and line.endswith(", done")}
    assert set(finished) == {"source 0", "validate", "write"}, text[-3000:]
    assert finished["source 0"].startswith("progress: source 0: 1/1 units, rows in 3 out ")
    assert f"{listed}/{listed} rows, rows in {listed} out " in finished["validate"]
    assert f"1/1 shards, rows in {listed} out {kept}," in finished["write"]
    assert all(" elapsed" in line for line in finished.values())
    # Ray Data's own lines went to the log file, not to the user.
    assert " INFO " not in text and "streaming_executor" not in text, text[-3000:]
    assert "Starting execution of Dataset" in (out / ".cache" / "ray.log").read_text()
    assert "…" not in result.stdout
