"""What a build may do to its output folder and how it recovers: it deletes only files a codeprefs
run wrote there, a damaged run record or run state is named and ``--restart`` recovers, a build
that failed on its input reruns plainly once the input is fixed, and a build that keeps no row
writes no shard and says which stage dropped everything."""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from codeprefs.card import write_card
from codeprefs.pipelines.manifest import parse_manifest
from codeprefs.publish import PublishError, publish
from codeprefs.pipelines.build import BuildError, build
from tests.samples import STATS_V1, STATS_V2, STATS_V3

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.ray


def cli(*args: str | Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "RAY_AUTH_MODE": "disabled"}
    env.pop("RAY_ADDRESS", None)
    return subprocess.run([sys.executable, "-m", "codeprefs.cli", *map(str, args)], capture_output=True,
                          text=True, cwd=ROOT, env=env, timeout=600)


def digests(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture
def repo_manifest(make_repo, tmp_path):
    """A manifest over one repository with two kept pairs, as data and as a YAML file."""
    repo = make_repo("stats")
    repo.commit("Add statistics helpers", {"stats.py": STATS_V1})
    repo.commit("Fix bug: mean was off by one", {"stats.py": STATS_V2})
    repo.commit("Speed up mean with the builtin sum", {"stats.py": STATS_V3})
    data = {"name": "state", "sources": [{"type": "git", "repos": [str(repo.path)]}]}
    path = tmp_path / "state.yaml"
    path.write_text(json.dumps(data))
    return data, path


# -- item 5: a folder holding someone else's files --------------------------------------------------


def test_a_folder_holding_another_dataset_is_refused_and_left_as_it_was(ray_local, tmp_path, repo_manifest):
    data, manifest = repo_manifest
    theirs = tmp_path / "theirs"
    for index in range(3):
        path = theirs / "data" / f"train-{index:05d}-of-00003.parquet"
        path.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(pa.table({"text": [f"their row {index}"]}), path)
    before = digests(theirs)

    refused = cli("build", "--manifest", manifest, "--output", theirs)
    assert refused.returncode == 2, refused.stderr[-2000:]
    assert "data/train-00000-of-00003.parquet" in refused.stderr and "--force" in refused.stderr
    assert "Traceback" not in refused.stderr
    assert digests(theirs) == before  # nothing deleted, nothing added (not even .cache/)

    for index in range(8):  # many files: a few are named, then a count
        (theirs / f"notes-{index}.txt").write_text("mine")
    refused = cli("build", "--manifest", manifest, "--output", theirs)
    assert refused.returncode == 2
    assert "and 8 more" in refused.stderr  # 3 named of 11

    # --force builds alongside their files and still deletes none of them.
    record = build(parse_manifest(data, tmp_path), theirs, force=True)
    assert record["rows"]["kept"] == 2
    assert record["removed_stale_files"] == []
    after = digests(theirs)
    assert {name: after[name] for name in before} == before
    assert (theirs / "data" / "train-00000-of-00001.parquet").is_file()

    # A rerun with other settings replaces this run's own shards, never theirs.
    data["output"] = {"max_shard_bytes": 300}
    with pytest.raises(BuildError, match="train-00000-of-00003.parquet"):
        build(parse_manifest(data, tmp_path), theirs)
    again = build(parse_manifest(data, tmp_path), theirs, force=True)
    assert "data/train-00000-of-00001.parquet" in again["removed_stale_files"]
    assert {name: digests(theirs)[name] for name in before} == before


def test_an_earlier_codeprefs_output_is_rebuilt_and_its_own_stale_shards_removed(ray_local, tmp_path,
                                                                                  repo_manifest):
    data, _ = repo_manifest
    out = tmp_path / "out"
    out.mkdir()  # an empty folder is fine
    data["output"] = {"max_shard_bytes": 300}
    first = build(parse_manifest(data, tmp_path), out)
    assert len(first["outputs"]) == 2
    del data["output"]
    second = build(parse_manifest(data, tmp_path), out)
    removed = [name for name in second["removed_stale_files"] if name.startswith("data/")]
    assert removed == sorted(o["path"] for o in first["outputs"])
    assert sorted(p.name for p in (out / "data").iterdir()) == ["train-00000-of-00001.parquet"]


# -- item 10: a damaged run.json or run state --------------------------------------------------------


@pytest.mark.parametrize("damaged", ["run.json", ".cache/run-state.json"])
def test_a_truncated_record_is_named_everywhere_and_restart_recovers(ray_local, tmp_path, repo_manifest,
                                                                     damaged):
    data, manifest = repo_manifest
    out = tmp_path / "runs" / "out"
    build(parse_manifest(data, tmp_path), out)
    path = out / damaged
    text = path.read_text()
    path.write_text(text[: len(text) // 2])

    for command in (["build", "--manifest", manifest, "--output", out], ["runs", tmp_path / "runs"],
                    ["stats", out]):
        result = cli(*command)
        shown = result.stdout + result.stderr
        assert "Traceback" not in shown, (command, shown[-3000:])
        assert str(path) in shown.replace("\n", ""), (command, shown[-3000:])
        if command[0] == "build":
            assert result.returncode == 2 and "--restart" in result.stderr
    if damaged == ".cache/run-state.json":
        stats = cli("stats", out)  # the record itself is intact: stats only warns
        assert stats.returncode == 0 and "Python" in stats.stdout

    with pytest.raises(BuildError, match=str(path)):
        build(parse_manifest(data, tmp_path), out)
    record = build(parse_manifest(data, tmp_path), out, restart=True)
    assert record["rows"]["kept"] == 2
    assert json.loads((out / "run.json").read_text()) == record
    assert json.loads((out / ".cache" / "run-state.json").read_text())["status"] == "complete"
    assert build(parse_manifest(data, tmp_path), out)["up_to_date"] is True


# -- item 8 (the rerun): a build stopped by its input reruns plainly once the input is fixed ----------


SUM_SLOW = "def total(xs):\n    t = 0\n    for x in xs:\n        t += x\n    return t\n"
SUM_FAST = "def total(xs):\n    return sum(xs)\n"


def pair(prompt: str) -> dict:
    return {"prompt": prompt, "accepted": SUM_FAST, "declined": SUM_SLOW, "lang": "Python",
            "kind": "Runtime_Efficiency"}


def test_after_fixing_a_corrupt_input_file_a_plain_rerun_works(ray_local, tmp_path):
    folder = tmp_path / "inputs"
    folder.mkdir()
    (folder / "good.jsonl").write_text(json.dumps(pair("Sum a list.")) + "\n")
    whole = gzip.compress("".join(json.dumps(pair(f"Sum list {i}.")) + "\n" for i in range(200)).encode())
    (folder / "more.jsonl.gz").write_bytes(whole[: len(whole) // 2])  # a truncated download
    columns = {"input": "prompt", "chosen": "accepted", "rejected": "declined", "language": "lang",
               "aspect": "kind"}
    data = {"name": "fixed", "sources": [
        {"type": "dataset", "path": ["good.jsonl"], "columns": columns, "subset": "good"},
        {"type": "dataset", "path": ["more.jsonl.gz"], "columns": columns, "subset": "more"}]}
    out = tmp_path / "out"
    with pytest.raises(BuildError, match="sources.1"):
        build(parse_manifest(data, folder), out)
    assert json.loads((out / ".cache" / "run-state.json").read_text())["status"] == "failed"

    (folder / "more.jsonl.gz").write_bytes(whole)
    record = build(parse_manifest(data, folder), out)  # no --resume, no --restart
    assert record["rows"]["kept"] == 201
    assert record["stages"][0]["units_reused"] == 1  # the good file's finished work is kept
    assert record["resumed"] is False


# -- item 13: no row kept --------------------------------------------------------------------------


def test_a_build_that_keeps_no_row_writes_no_shard_and_says_which_stage_dropped_everything(
        ray_local, tmp_path, repo_manifest, monkeypatch):
    import datasets

    data, _ = repo_manifest
    out = tmp_path / "out"
    build(parse_manifest(data, tmp_path), out)
    assert list((out / "data").glob("*.parquet"))

    data["filters"] = {"message": {"min_length": 500}}  # every message is too short
    lines: list[str] = []
    record = build(parse_manifest(data, tmp_path), out, log=lines.append)
    assert record["rows"]["kept"] == 0 and record["outputs"] == []
    assert list(out.rglob("data/*.parquet")) == []  # nothing for load_dataset to choke on
    warning = record["warnings"][0]
    assert "no pair kept" in warning and "'message'" in warning and "message_too_short" in warning
    assert f"warning: {warning}" in lines
    empty = tmp_path / "empty.json"
    empty.write_text(json.dumps(data))
    built = cli("build", "--manifest", empty, "--output", tmp_path / "cli-out")
    assert built.returncode == 0, built.stderr[-2000:]
    assert built.stderr.count("no pair kept") == 1  # logged once, not again under the summary

    stats = cli("stats", out)
    assert stats.returncode == 0, stats.stderr
    assert "no pair kept" in stats.stdout.replace("\n", " ") and "message_too_short" in stats.stdout

    card = write_card(out).read_text()
    assert "no pair kept" in card and "'message'" in card
    with pytest.raises(PublishError, match="no pair kept"):
        publish(out, "org/empty", dry_run=True, log=lambda _: None)

    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    with pytest.raises(Exception) as raised:  # datasets says there is no data, not "BatchSize"
        datasets.load_dataset("parquet", data_files=str(out / "data" / "*.parquet"), split="train")
    assert "BatchSize" not in str(raised.value)
