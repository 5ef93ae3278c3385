"""End-to-end builds on a real local Ray instance: shards, run record, rejects, reruns."""

from __future__ import annotations

import hashlib
import json
import subprocess
from pathlib import Path

import datasets
import polars as pl
import pyarrow.parquet as pq
import pytest

from codeprefs.pipelines.manifest import parse_manifest
from codeprefs.core.schema import PAIR_SCHEMA
from codeprefs.pipelines.build import BuildError, build
from tests.samples import GO_V1, GO_V2, JS_V1, JS_V2, STATS_V1, STATS_V2, STATS_V3

pytestmark = pytest.mark.ray


@pytest.fixture
def two_repos(make_repo, tmp_path):
    """A local work-tree repository and a bare one reached through a file:// URL."""
    local = make_repo("local")
    local.commit("Add statistics helpers", {"stats.py": STATS_V1, "README.md": "stats\n"})
    local.commit("Fix bug: mean was off by one", {"stats.py": STATS_V2})
    local.commit("Speed up mean with the builtin sum", {"stats.py": STATS_V3})
    local.commit("Update README.md", {"stats.py": STATS_V3 + "\n"})
    local.commit("Touch two files to fix bug", {"stats.py": STATS_V3 + "\n# end\n", "b.py": "x = 1\n"})

    other = make_repo("other")
    other.commit("Add search and join", {"find.go": GO_V1, "join.js": JS_V1})
    other.commit("Fix bug: Find returned 0 when missing", {"find.go": GO_V2})
    other.commit("Make join faster by avoiding quadratic concatenation", {"join.js": JS_V2})
    bare = tmp_path / "other.git"
    subprocess.run(["git", "clone", "-q", "--bare", str(other.path), str(bare)], check=True)
    return local.path, f"file://{bare}"


def manifest_for(tmp_path: Path, repos: list[str], **extra) -> object:
    """A manifest over ``repos``; whole-file pairs (``pairs.scope: file``): these tests check the
    build's mechanics against whole files (change-scoped pairs: tests/test_scopes.py)."""
    extra.setdefault("pairs", {"scope": "file"})
    data = {"name": "test-run", "sources": [{"type": "git", "repos": repos}], **extra}
    return parse_manifest(data, tmp_path)


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_build_writes_shards_record_and_rejects(ray_local, tmp_path, two_repos):
    local, url = two_repos
    out = tmp_path / "out"
    record = build(manifest_for(tmp_path, [str(local), url]), out)

    shard = out / "data" / "train-00000-of-00001.parquet"
    assert [o["path"] for o in record["outputs"]] == ["data/train-00000-of-00001.parquet"]
    table = pq.read_table(shard)
    assert table.schema.equals(PAIR_SCHEMA, check_metadata=False)
    assert table.num_rows == 4
    assert table.column("id").to_pylist() == sorted(table.column("id").to_pylist())
    frame = pl.read_parquet(shard)
    assert set(frame["language"]) == {"Python", "Go", "JavaScript"}
    assert set(frame["aspect"]) == {"Functional_Correctness", "Runtime_Efficiency"}
    assert frame.filter(pl.col("language") == "Go")["chosen"][0] == GO_V2
    assert frame.filter(pl.col("language") == "Go")["repo"][0] == "other"  # public: its folder name

    loaded = datasets.load_dataset("parquet", data_files=str(out / "data" / "*.parquet"), split="train")
    assert loaded.num_rows == 4
    assert set(loaded.column_names) >= {"system", "input", "chosen", "rejected", "language", "aspect"}
    assert sorted(loaded["id"]) == sorted(frame["id"].to_list())

    on_disk = json.loads((out / "run.json").read_text())
    assert on_disk == record
    assert record["outputs"][0]["sha256"] == sha256(shard)
    assert record["outputs"][0]["rows"] == 4
    assert [i["status"] for i in record["inputs"]] == ["ok", "ok"]
    assert record["inputs"][0]["sha"] == subprocess.run(
        ["git", "-C", str(local), "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
    assert record["manifest"]["sources"][0]["repos"] == ["local", "other.git"]  # relative: published

    funnel = {stage["stage"]: stage for stage in record["funnel"]}
    assert record["rows"] == {"total": 8, "kept": 4, "dropped": 4}
    assert funnel["list"]["reasons"] == {"multiple_files": 1, "root_commit": 2}
    assert funnel["message"]["reasons"] == {"message_low_signal": 1}
    assert funnel["criteria"]["dropped"] == 0
    assert funnel["dedupe"]["rows_out"] == 4
    for before, after in zip(record["funnel"], record["funnel"][1:]):
        assert before["rows_out"] == after["rows_in"]

    rejects = pl.read_parquet(out / "rejects" / "*.parquet")
    assert rejects.height == 4
    assert sorted(rejects["drop_reason"]) == ["message_low_signal", "multiple_files", "root_commit",
                                             "root_commit"]
    assert record["rejects"][0]["rows"] == 4


def test_rerun_is_byte_identical_and_removes_stale_shards(ray_local, tmp_path, two_repos):
    local, url = two_repos
    out = tmp_path / "out"
    small = {"output": {"max_shard_bytes": 800}}
    first = build(manifest_for(tmp_path, [str(local), url], **small), out)
    assert len(first["outputs"]) > 1
    names = [o["path"] for o in first["outputs"]]
    count = len(names)
    assert names == [f"data/train-{i:05d}-of-{count:05d}.parquet" for i in range(count)]
    assert sum(o["rows"] for o in first["outputs"]) == 4
    ids = pl.read_parquet(out / "data" / "*.parquet")["id"]
    assert ids.n_unique() == 4

    second = build(manifest_for(tmp_path, [str(local), url], **small), out)
    assert [(o["path"], o["sha256"]) for o in second["outputs"]] == [
        (o["path"], o["sha256"]) for o in first["outputs"]]
    assert second["rejects"] == first["rejects"]

    third = build(manifest_for(tmp_path, [str(local), url]), out)  # one shard again
    assert [o["path"] for o in third["outputs"]] == ["data/train-00000-of-00001.parquet"]
    assert sorted(p.name for p in (out / "data").iterdir()) == ["train-00000-of-00001.parquet"]
    assert set(third["removed_stale_files"]) >= set(names)


def test_a_build_of_many_rows_is_cut_into_shards_of_bounded_rows(ray_local, tmp_path, two_repos, monkeypatch):
    """Each shard's rows, rejects included, meet in one write task: their number is bounded too."""
    local, url = two_repos
    whole = build(manifest_for(tmp_path, [str(local), url]), tmp_path / "whole")
    assert len(whole["outputs"]) == 1
    monkeypatch.setattr("codeprefs.pipelines.stages.MAX_ROWS_PER_SHARD", 3)
    cut = build(manifest_for(tmp_path, [str(local), url]), tmp_path / "cut")
    count = len(cut["outputs"])
    assert count > 1  # 8 rows in all: more than one shard of at most about 3
    assert [o["path"] for o in cut["outputs"]] == [f"data/train-{i:05d}-of-{count:05d}.parquet" for i in range(count)]
    assert [r["path"] for r in cut["rejects"]] == [f"rejects/rejects-{i:05d}-of-{count:05d}.parquet"
                                                  for i in range(count)]
    assert cut["rows"] == whole["rows"] and cut["funnel"] == whole["funnel"]
    for folder in ("data", "rejects"):
        assert sorted(pl.read_parquet(tmp_path / "cut" / folder / "*.parquet")["id"]) == \
            sorted(pl.read_parquet(tmp_path / "whole" / folder / "*.parquet")["id"])


def test_forked_repositories_are_deduplicated_keeping_the_lowest_id(ray_local, tmp_path, make_repo):
    upstream = make_repo("upstream")
    upstream.commit("Add statistics helpers", {"stats.py": STATS_V1})
    upstream.commit("Fix bug: mean was off by one", {"stats.py": STATS_V2})
    fork = tmp_path / "fork"
    subprocess.run(["git", "clone", "-q", str(upstream.path), str(fork)], check=True)
    record = build(manifest_for(tmp_path, [str(upstream.path), str(fork)]), tmp_path / "out")
    funnel = {stage["stage"]: stage for stage in record["funnel"]}
    assert funnel["dedupe"]["reasons"] == {"exact_duplicate": 1}
    kept = pl.read_parquet(tmp_path / "out" / "data" / "*.parquet")
    assert kept.height == 1
    rejected = pl.read_parquet(tmp_path / "out" / "rejects" / "*.parquet").filter(
        pl.col("drop_reason") == "exact_duplicate")
    assert rejected.height == 1
    assert kept["id"][0] < rejected["id"][0]
    assert kept["chosen"][0] == rejected["chosen"][0] == STATS_V2


def test_empty_repository_writes_no_shard_and_says_why(ray_local, tmp_path, make_repo):
    empty = make_repo("empty")
    lines: list[str] = []
    record = build(manifest_for(tmp_path, [str(empty.path)]), tmp_path / "out", log=lines.append)
    assert record["inputs"][0]["status"] == "empty"
    assert record["rows"] == {"total": 0, "kept": 0, "dropped": 0}
    assert record["outputs"] == []  # an empty Parquet shard breaks datasets.load_dataset
    assert not list((tmp_path / "out").rglob("data/*.parquet"))
    assert record["warnings"] == ["no pair kept: the sources gave no candidate row (inputs: 1 empty); "
                                  "no shard was written"]
    assert f"warning: {record['warnings'][0]}" in lines


def test_broken_repository_is_skipped_and_counted_when_asked(ray_local, tmp_path, make_repo):
    good = make_repo("good")
    good.commit("Add statistics helpers", {"stats.py": STATS_V1})
    good.commit("Fix bug: mean was off by one", {"stats.py": STATS_V2})
    broken = tmp_path / "broken"
    broken.mkdir()
    repos = [str(good.path), str(broken)]
    with pytest.raises(BuildError, match="not a git repository"):
        build(manifest_for(tmp_path, repos), tmp_path / "out")
    manifest = parse_manifest({"name": "r", "sources": [{"type": "git", "repos": repos,
                                                         "on_error": "skip"}]}, tmp_path)
    lines: list[str] = []
    record = build(manifest, tmp_path / "out", log=lines.append)
    assert [i["status"] for i in record["inputs"]] == ["ok", "error"]
    assert "not a git repository" in record["inputs"][1]["error"]
    assert record["rows"]["kept"] == 1
    # the skipped repository gives no row for the funnel to count: the run says so
    [warning] = record["warnings"]
    assert warning == f"skipped an input (on_error: skip): {record['inputs'][1]['error']}"
    assert warning.startswith("skipped an input (on_error: skip): broken: not a git repository")
    assert any(line.startswith("warning: skipped an input (on_error: skip): ") and line.endswith(f"/{broken.name}")
               for line in lines)
