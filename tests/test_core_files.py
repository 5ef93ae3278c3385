"""The core I/O helpers: atomic replacement of a file, its hash, manifest-relative paths, and
the output folder's layout."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from codeprefs.core.files import atomic_write, file_sha256, temporary_name, write_json_atomic, write_text_atomic
from codeprefs.core.layout import LLM_CACHE_DIR, LOCK, RAY_LOG, RUN_RECORD, RUN_STATE, STAGES_DIR
from codeprefs.core.localpaths import relative_to, resolve_path
from codeprefs.pipelines.outputdir import LEFTOVER


def test_a_finished_write_replaces_the_file_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "run.json"
    target.write_text("old\n")
    write_text_atomic(target, "new\n")
    assert target.read_text() == "new\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run.json"]


def test_a_failed_write_leaves_the_old_file_untouched_and_removes_the_temporary(tmp_path):
    target = tmp_path / "run.json"
    target.write_text("old\n")
    with pytest.raises(RuntimeError, match="disk gone"), atomic_write(target) as temporary:
        temporary.write_text("half a fi")
        assert temporary.parent == tmp_path and temporary.exists()
        raise RuntimeError("disk gone")
    assert target.read_text() == "old\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run.json"]


def test_a_failed_first_write_creates_nothing(tmp_path):
    target = tmp_path / "data" / "train-00000-of-00001.parquet"
    target.parent.mkdir()
    table = pa.table({"id": ["a", "b"]})
    with pytest.raises(pa.ArrowInvalid), atomic_write(target) as temporary:
        pq.write_table(table, temporary)
        pq.write_table(table.cast(pa.schema([("id", pa.int64())])), temporary)  # not numbers
    assert list(target.parent.iterdir()) == []


def test_a_block_that_writes_nothing_fails_and_leaves_the_target_alone(tmp_path):
    target = tmp_path / "keep.txt"
    target.write_text("kept")
    with pytest.raises(FileNotFoundError), atomic_write(target):
        pass
    assert target.read_text() == "kept"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep.txt"]


def test_the_temporary_is_in_the_same_folder_unique_and_a_known_leftover(tmp_path):
    target = tmp_path / "data" / "train-00003-of-00010.parquet"
    first, second = temporary_name(target), temporary_name(target)
    assert first != second
    assert first.parent == second.parent == target.parent
    assert first.name.startswith(".train-00003-of-00010.parquet.") and first.name.endswith(".tmp")
    # The output folder's cleanup deletes what a killed writer leaves, and nothing else.
    assert LEFTOVER.match(first.relative_to(tmp_path).as_posix())
    assert not LEFTOVER.match(target.relative_to(tmp_path).as_posix())


def test_json_is_written_indented_with_a_final_newline(tmp_path):
    target = tmp_path / "state.json"
    write_json_atomic(target, {"status": "running", "files": ["data/a"]})
    assert target.read_text() == '{\n  "status": "running",\n  "files": [\n    "data/a"\n  ]\n}\n'
    assert json.loads(target.read_text()) == {"status": "running", "files": ["data/a"]}


def test_file_sha256_matches_hashlib_across_chunks(tmp_path):
    target = tmp_path / "blob"
    content = os.urandom((1 << 20) * 2 + 17)  # more than two read chunks
    target.write_bytes(content)
    assert file_sha256(target) == hashlib.sha256(content).hexdigest()
    (tmp_path / "empty").write_bytes(b"")
    assert file_sha256(tmp_path / "empty") == hashlib.sha256(b"").hexdigest()


def test_relative_paths_are_read_against_the_manifest_folder_not_the_current_one(tmp_path, monkeypatch):
    manifest_dir = tmp_path / "manifests"
    monkeypatch.chdir(tmp_path)
    assert resolve_path("data/export.jsonl", manifest_dir) == manifest_dir / "data" / "export.jsonl"
    assert resolve_path("../shared/bench", manifest_dir) == manifest_dir / ".." / "shared" / "bench"
    assert resolve_path("/srv/export.jsonl", manifest_dir) == Path("/srv/export.jsonl")


def test_home_is_expanded_and_an_unknown_user_stays_as_written(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert resolve_path("~/bench.jsonl", Path("/elsewhere")) == tmp_path / "home" / "bench.jsonl"
    unknown = "~no-such-user-codeprefs/x.jsonl"
    assert resolve_path(unknown, tmp_path) == tmp_path / unknown


def test_a_resolved_path_relativised_again_is_the_path_as_written(tmp_path):
    for written in ("data/export.jsonl", "../shared/bench", "a/./b"):
        assert relative_to(str(resolve_path(written, tmp_path)), tmp_path) == os.path.normpath(written)


def test_the_output_layout_keeps_the_names_users_and_earlier_runs_know():
    assert RUN_RECORD == "run.json"
    assert [path.as_posix() for path in (LOCK, RUN_STATE, STAGES_DIR, LLM_CACHE_DIR, RAY_LOG)] == [
        ".cache/lock", ".cache/run-state.json", ".cache/stages", ".cache/llm", ".cache/ray.log"]
