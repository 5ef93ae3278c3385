"""Progress reporting without Ray: the plain lines' pace, their content, and the terminal bars."""

from __future__ import annotations

import io
import os
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from rich.console import Console

from codeprefs.core.raycluster import make_temp_dir
from codeprefs.pipelines import progress


def test_plain_lines_at_most_one_per_interval_and_one_at_the_end():
    lines: list[str] = []
    reporter = progress.PlainReporter(lines.append, interval=3600, timer=False)
    with progress.reporting(reporter):
        stage = progress.stage("source 0", 4, lines.append, done=1)
        for _ in range(3):
            stage.advance(1, rows_in=10, rows_out=7)
        stage.finish()
    assert len(lines) == 1
    assert lines[0].startswith("progress: source 0: 4/4 units, rows in 30 out 21, ")
    assert lines[0].endswith(" elapsed, done")


def test_plain_lines_while_running_carry_an_estimate():
    lines: list[str] = []
    stage = progress.stage("validate", 100, lines.append, unit="rows")
    assert isinstance(stage.reporter, progress.PlainReporter)
    stage.reporter.interval = 0
    stage.advance(25, rows_in=25, rows_out=20)
    assert lines and lines[-1].startswith("progress: validate: 25/100 rows, rows in 25 out 20, ")
    assert " left" in lines[-1]


def test_rich_bars_on_a_terminal():
    buffer = io.StringIO()
    console = Console(file=buffer, force_terminal=True, width=160)
    with progress.reporting(progress.RichReporter(console)):
        stage = progress.stage("write", 2, print, unit="shards", rows_in=50)
        stage.advance(2, rows_out=40)
        stage.finish()
    text = buffer.getvalue()
    assert "write" in text and "2/2 shards" in text and "rows in 50 out 40" in text


def test_kept_rows_from_the_footer(tmp_path):
    path = tmp_path / "unit.parquet"
    pq.write_table(pa.table({"drop_reason": [None, "x", None, None]}), path)
    assert progress.kept_rows(path) == 3


def test_an_overlong_ray_temp_parent_is_refused_naming_it(monkeypatch, tmp_path):
    long_parent = "/tmp/" + "x" * 40
    monkeypatch.setenv("CODEPREFS_RAY_TMPDIR", long_parent)
    with pytest.raises(ValueError, match="CODEPREFS_RAY_TMPDIR=/tmp/xxxx"):
        make_temp_dir()
    assert not os.path.exists(long_parent)
    monkeypatch.setenv("CODEPREFS_RAY_TMPDIR", "/tmp")
    made = Path(make_temp_dir())
    assert made.parent == Path("/tmp") and made.name.startswith("cpr-ray-")
    made.rmdir()


def test_ray_data_lines_go_to_the_file_only_once_there_is_one(tmp_path):
    import logging

    path = tmp_path / "out" / ".cache" / "ray.log"
    with progress.ray_logs_to_file(path):
        assert not path.parent.exists()  # nothing made before Ray Data says something
        logging.getLogger("ray.data").info("Starting execution of Dataset test")
        logging.getLogger("ray.data").debug("operator metrics")
    assert path.read_text().count("\n") == 1 and "Starting execution of Dataset test" in path.read_text()
