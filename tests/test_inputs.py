"""Manifest inputs at object-storage URLs (#15): export files, allowlists, dataset files and folders,
solutions files and decontamination benchmarks read from moto's S3 server (tests/s3server.py)
through each node's copy (codeprefs.core.inputs)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import datasets
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from codeprefs.core.files import file_sha256
from codeprefs.core.inputs import local_input
from codeprefs.core.patterns import PatternError, expand_patterns
from codeprefs.core.storage import StorageError
from codeprefs.filters.dedupe.decontaminate import BenchmarkError, index_for
from codeprefs.filters.dedupe.settings import DecontaminateSettings
from codeprefs.pipelines.build import build
from codeprefs.pipelines.manifest import parse_manifest
from codeprefs.pipelines.sources.solutions import SolutionFields, read_chunk
from codeprefs.pipelines.sources.solutions import plan_chunks as plan_solutions
from tests.remotes import build_remotes, export_row, write_jsonl
from tests.s3server import s3_bucket, s3_server, upload  # noqa: F401
from tests.test_sources_dataset import CASES, MAPPING, listed

ROOT = Path(__file__).resolve().parents[1]


def put(url: str, data: bytes) -> None:
    import s3fs

    s3fs.S3FileSystem(skip_instance_cache=True).pipe_file(url.removeprefix("s3://"), data)


def copies(scratch: Path) -> list[Path]:
    return sorted(path for path in (scratch / "inputs").rglob("*") if path.is_file())


# -- local_input ------------------------------------------------------------------------------------


def test_an_input_is_downloaded_once_per_version_and_reused(tmp_path, s3_bucket):
    scratch = str(tmp_path / "scratch")
    url = f"{s3_bucket}/exports/commits.jsonl"
    put(url, b'{"a": 1}\n')
    first = local_input(url, "export file", scratch)
    assert first.name == "commits.jsonl" and first.read_bytes() == b'{"a": 1}\n'
    assert first.parent.parent == tmp_path / "scratch" / "inputs"
    first.write_bytes(b"the node's copy\n")  # a later read that downloaded again would undo this
    assert local_input(url, "export file", scratch) == first and first.read_bytes() == b"the node's copy\n"
    assert copies(tmp_path / "scratch") == [first]  # no temporary left behind

    put(url, b'{"a": 2}\n')  # a new version: another identity, another copy
    second = local_input(url, "export file", scratch)
    assert second != first and second.read_bytes() == b'{"a": 2}\n'

    local = tmp_path / "here.jsonl"
    assert local_input(str(local), "export file", scratch) == local  # a path is not copied


def test_a_folder_url_is_copied_whole(tmp_path, s3_bucket):
    (tmp_path / "bench" / "part").mkdir(parents=True)
    (tmp_path / "bench" / "a.jsonl").write_text('{"prompt": "x"}\n')
    (tmp_path / "bench" / "part" / "b.parquet").write_bytes(b"PAR1")
    upload(tmp_path / "bench", f"{s3_bucket}/bench")
    copy = local_input(f"{s3_bucket}/bench/", "benchmark", str(tmp_path / "scratch"))
    assert copy.name == "bench"
    assert sorted(str(p.relative_to(copy)) for p in copy.rglob("*") if p.is_file()) == ["a.jsonl", "part/b.parquet"]
    assert (copy / "part" / "b.parquet").read_bytes() == b"PAR1"


def test_a_missing_input_is_named_without_credentials(tmp_path, s3_bucket):
    scratch = str(tmp_path / "scratch")
    with pytest.raises(StorageError, match=f"^export file {s3_bucket}/none.jsonl: no such file$"):
        local_input(f"{s3_bucket}/none.jsonl", "export file", scratch)
    bucket = s3_bucket.removeprefix("s3://")
    with pytest.raises(StorageError) as caught:
        local_input(f"s3://KEYID:TOPSECRET@{bucket}/none.jsonl", "allowlist", scratch)
    message = str(caught.value)
    assert message.startswith(f"allowlist {s3_bucket}/none.jsonl")
    assert "TOPSECRET" not in message and "KEYID" not in message
    assert os.environ["AWS_SECRET_ACCESS_KEY"] not in message
    with pytest.raises(StorageError, match="no filesystem implements nosuch:// URLs"):
        local_input("nosuch://bucket/x.jsonl", "export file", scratch)
    assert not (tmp_path / "scratch" / "inputs").exists() or copies(tmp_path / "scratch") == []


# -- expand_patterns --------------------------------------------------------------------------------


def test_patterns_expand_s3_globs_into_sorted_urls(tmp_path, s3_bucket):
    for name in ("b.jsonl", "a.jsonl", "notes.txt", "deep/c.jsonl"):
        put(f"{s3_bucket}/in/{name}", b"{}\n")
    assert expand_patterns([f"{s3_bucket}/in/*.jsonl"], tmp_path, "file", "path") == [
        f"{s3_bucket}/in/a.jsonl", f"{s3_bucket}/in/b.jsonl"]
    assert expand_patterns([f"{s3_bucket}/in/**/*.jsonl", "local.jsonl"], tmp_path) == [
        f"{s3_bucket}/in/a.jsonl", f"{s3_bucket}/in/b.jsonl", f"{s3_bucket}/in/deep/c.jsonl", "local.jsonl"]
    assert expand_patterns([f"{s3_bucket}/in/a.jsonl"], tmp_path, "file") == [f"{s3_bucket}/in/a.jsonl"]
    assert expand_patterns([f"{s3_bucket}/in/deep"], tmp_path, "exists", "benchmark") == [f"{s3_bucket}/in/deep"]
    # not checked unless asked: a plain URL costs no request
    assert expand_patterns([f"{s3_bucket}/in/later.jsonl"], tmp_path) == [f"{s3_bucket}/in/later.jsonl"]
    with pytest.raises(PatternError, match=f"no such file: '{s3_bucket}/in/none.jsonl'"):
        expand_patterns([f"{s3_bucket}/in/none.jsonl"], tmp_path, "file", "path")
    with pytest.raises(PatternError, match=f"benchmark '{s3_bucket}/none' does not exist"):
        expand_patterns([f"{s3_bucket}/none"], tmp_path, "exists", "benchmark")
    with pytest.raises(PatternError, match=f"path pattern '{s3_bucket}/in/\\*.parquet' matches no file"):
        expand_patterns([f"{s3_bucket}/in/*.parquet"], tmp_path, "file", "path")
    with pytest.raises(PatternError, match="no filesystem implements nosuch:// URLs"):
        expand_patterns(["nosuch://bucket/*.jsonl"], tmp_path)


# -- readers ------------------------------------------------------------------------------------------


def test_dataset_files_and_a_saved_folder_read_from_s3_as_from_disk(tmp_path, s3_bucket, monkeypatch):
    monkeypatch.setenv("CODEPREFS_SCRATCH_DIR", str(tmp_path / "scratch"))
    folder = tmp_path / "data"
    records = [item for item, _ in CASES]
    folder.mkdir()
    pq.write_table(pa.Table.from_pylist(records), folder / "pairs.parquet")
    table = datasets.Dataset.from_list(records)
    datasets.DatasetDict({"train": table, "test": table.select([1])}).save_to_disk(str(folder / "saved"))
    upload(folder, f"{s3_bucket}/data")
    settings = parse_manifest({"name": "d", "sources": [
        {**MAPPING, "path": "saved"}, {**MAPPING, "path": f"{s3_bucket}/data/saved"},
        {**MAPPING, "path": "pairs.parquet"}, {**MAPPING, "path": f"{s3_bucket}/data/pairs.parquet"},
    ]}, folder).sources

    def without_ids(rows):
        return [{k: v for k, v in row.items() if k != "id"} for row in rows]

    saved_here, saved_there, parquet_here, parquet_there = (listed(source, folder) for source in settings)
    assert without_ids(saved_there) == without_ids(saved_here) and len(saved_here) == len(CASES)
    assert without_ids(parquet_there) == without_ids(parquet_here)
    assert {row["id"] for row in parquet_there}.isdisjoint(row["id"] for row in parquet_here)  # named by URL


def test_solutions_chunks_keep_the_url_and_read_the_nodes_copy(tmp_path, s3_bucket):
    lines = [{"task_id": f"t/{i}", "prompt": f"def f{i}():\n", "canonical_solution": "    return 1\n",
              "test": "assert True\n"} for i in range(5)]
    write_jsonl(tmp_path / "solutions.jsonl", lines)
    url = f"{s3_bucket}/s/solutions.jsonl"
    upload(tmp_path, f"{s3_bucket}/s")
    scratch = str(tmp_path / "scratch")
    chunks = plan_solutions([(url, url)], 2, scratch_dir=scratch)
    assert [chunk["path"] for chunk in chunks] == [url] * 3 and chunks[0]["file"] == url
    here = plan_solutions([("solutions.jsonl", str(tmp_path / "solutions.jsonl"))], 2)
    assert [(c["start"], c["end"], c["count"]) for c in chunks] == [(c["start"], c["end"], c["count"]) for c in here]
    records = [record for chunk in chunks for record in read_chunk(chunk, SolutionFields(), "Python", None, scratch)]
    assert [(r.file, r.task_id, r.line) for r in records] == [(url, f"t/{i}", i + 1) for i in range(5)]


def test_benchmarks_on_s3_are_indexed_and_named_by_their_urls(tmp_path, s3_bucket):
    scratch = str(tmp_path / "scratch")
    put(f"{s3_bucket}/bench/good.jsonl", b'{"prompt": "add two ints and return the sum"}\n')
    put(f"{s3_bucket}/bench/bad.jsonl", b'{"question": "x"}\n')
    index = index_for(DecontaminateSettings(benchmarks=[f"{s3_bucket}/bench/good.jsonl"], ngram=3),
                      tmp_path, scratch)
    assert index.names == [f"{s3_bucket}/bench/good.jsonl"] and len(index.hashes) == 5
    with pytest.raises(BenchmarkError) as caught:
        index_for(DecontaminateSettings(benchmarks=[f"{s3_bucket}/bench/bad.jsonl"]), tmp_path, scratch)
    assert f"{s3_bucket}/bench/bad.jsonl: record 1 has no field 'prompt'" in str(caught.value)
    assert scratch not in str(caught.value)
    with pytest.raises(BenchmarkError, match=f"benchmark {s3_bucket}/bench/none.jsonl: no such file"):
        index_for(DecontaminateSettings(benchmarks=[f"{s3_bucket}/bench/none.jsonl"]), tmp_path, scratch)


# -- builds ---------------------------------------------------------------------------------------------


def _inputs(folder: Path, commits: dict[str, str]) -> None:
    """An export file, its allowlists, a dataset file, a save_to_disk folder and a benchmark, under
    ``folder``."""
    fix, speed = "Fix bug: mean was off by one", "Speed up mean with the builtin sum"
    write_jsonl(folder / "export" / "commits.jsonl", [
        export_row(commits["stats_fix"], "acme/stats", "stats.py", fix),
        export_row(commits["stats_speed"], "acme/gone, acme/fork", "stats.py", speed),
        export_row(commits["ring_fix"], "acme/ring", "ring.h", "Fix overflow in ring buffer header"),
        export_row(commits["stats_fix"], "other/repo", "stats.py", fix),  # not in the allowlist
    ])
    (folder / "allow").mkdir()
    (folder / "allow" / "python.json").write_text(json.dumps(["acme/stats", "acme/fork", "acme/gone"]))
    (folder / "allow" / "c.json").write_text(json.dumps(["acme/ring"]))
    records = [item for item, _ in CASES]
    (folder / "pairs").mkdir()
    pq.write_table(pa.Table.from_pylist(records), folder / "pairs" / "pairs.parquet")
    table = datasets.Dataset.from_list(records[:2])
    datasets.DatasetDict({"train": table, "test": table.select([1])}).save_to_disk(str(folder / "saved"))
    # the benchmark holds the second good pair's prompt, padded to an n-gram: that pair is decontaminated
    (folder / "bench").mkdir()
    write_jsonl(folder / "bench" / "bench.jsonl", [{"prompt": "Add two ints."}])


def _manifest(base: str, remotes_template: str, scratch: Path) -> dict:
    return {
        "name": "inputs",
        "sources": [
            {"type": "export", "path": f"{base}export/*.jsonl", "remote": remotes_template,
             "allowlists": {"Python": f"{base}allow/python.json", "C": f"{base}allow/c.json"},
             "fetch_timeout_s": 30, "retry_backoff_s": 0.05},
            {**MAPPING, "path": f"{base}pairs/pairs.parquet"},
            {**MAPPING, "path": f"{base}saved"},  # its pairs repeat two of pairs.parquet's
        ],
        "decontaminate": {"benchmarks": [f"{base}bench/*.jsonl"], "ngram": 3},
        "pairs": {"scope": "file"},
        "ray": {"scratch_dir": str(scratch)},
    }


def _rows(out: Path) -> list[dict]:
    frame = pl.read_parquet(out / "data" / "*.parquet")
    return sorted(frame.drop("id").to_dicts(), key=lambda row: (row["source"], row["input"], row["chosen"]))


@pytest.mark.ray
def test_a_build_whose_inputs_are_on_s3_gives_the_rows_of_local_inputs(ray_local, tmp_path, s3_bucket, s3_server):
    remotes = build_remotes(tmp_path / "remotes")
    _inputs(tmp_path / "in", remotes.commits)
    upload(tmp_path / "in", f"{s3_bucket}/in")

    local = parse_manifest(_manifest("in/", remotes.template, tmp_path / "scratch-local"), tmp_path)
    expected = build(local, tmp_path / "out-local")

    # The S3 build runs as a user runs it: its own Ray, whose workers inherit the server's environment.
    manifest = tmp_path / "s3.yaml"
    manifest.write_text(json.dumps(_manifest(f"{s3_bucket}/in/", remotes.template, tmp_path / "scratch-s3")))
    env = {**os.environ, **s3_server.env(), "PYTHONPATH": str(ROOT), "COLUMNS": "200"}

    def build_from_s3() -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "codeprefs.cli", "build", "--manifest", str(manifest),
                               "--output", str(tmp_path / "out-s3")], cwd=tmp_path, env=env,
                              capture_output=True, text=True, timeout=900)

    result = build_from_s3()
    assert result.returncode == 0, result.stderr[-3000:]
    record = json.loads((tmp_path / "out-s3" / "run.json").read_text())

    rows = _rows(tmp_path / "out-s3")
    assert rows == _rows(tmp_path / "out-local")
    assert {row["source"] for row in rows} == {"git", "dataset"}
    local_ids = pl.read_parquet(tmp_path / "out-local" / "data" / "*.parquet").filter(pl.col("source") == "git")["id"]
    s3_ids = pl.read_parquet(tmp_path / "out-s3" / "data" / "*.parquet").filter(pl.col("source") == "git")["id"]
    assert sorted(s3_ids) == sorted(local_ids)  # an export row is named by its commit, not its file
    assert record["funnel"] == expected["funnel"]
    funnel = {stage["stage"]: stage["reasons"] for stage in record["funnel"]}
    assert funnel["list"]["not_in_allowlist"] == 1 and funnel["decontaminate"] == {"benchmark_overlap": 2}  # in the file and the folder

    # run.json names each input by the URL as written, with the hash of the same bytes on disk
    inputs = {item["path"]: item for item in record["inputs"]}
    for name in ("export/commits.jsonl", "allow/python.json", "pairs/pairs.parquet"):
        assert inputs[f"{s3_bucket}/in/{name}"]["sha256"] == file_sha256(tmp_path / "in" / name)
    text = (tmp_path / "out-s3" / "run.json").read_text() + "".join(
        json.dumps(row, default=str) for row in pl.read_parquet(tmp_path / "out-s3" / "data" / "*.parquet").to_dicts())
    assert str(tmp_path / "scratch-s3" / "inputs") not in text  # no node's copy reaches the output
    copied = {path: path.stat().st_mtime_ns for path in copies(tmp_path / "scratch-s3")}
    # one copy of each file read: the export, two allowlists, the dataset file, the benchmark, the
    # saved folder (planning reads it whole) and the one Arrow file of its split a unit read
    files = sorted(path.name for path in copied if path.parent.parent == tmp_path / "scratch-s3" / "inputs")
    assert files == ["bench.jsonl", "c.json", "commits.jsonl", "data-00000-of-00001.arrow", "pairs.parquet",
                     "python.json"]
    assert sum("saved" in path.parts[-3:-1] for path in copied) == 7

    again = build_from_s3()  # the same URLs and bytes: the same fingerprints, and no download
    assert again.returncode == 0, again.stderr[-3000:]
    assert "up to date" in again.stdout
    assert {path: path.stat().st_mtime_ns for path in copies(tmp_path / "scratch-s3")} == copied
