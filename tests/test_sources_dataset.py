"""The dataset source: save_to_disk folders, Parquet and JSON Lines, column mapping, filters."""

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

from codeprefs.pipelines.manifest import parse_manifest
from codeprefs.pipelines.sources.kinds.dataset import DatasetSource
from codeprefs.pipelines.build import BuildError, build
from codeprefs.pipelines.sources.dataset import DatasetRules, file_chunks, plan_dataset
from codeprefs.pipelines.steps import ListRecords
from tests.remotes import write_jsonl

ROOT = Path(__file__).resolve().parents[1]

SUM_SLOW = "def total(xs):\n    t = 0\n    for x in xs:\n        t += x\n    return t\n"
SUM_FAST = "def total(xs):\n    return sum(xs)\n"
ADD_SLOW = "int add(int a, int b) {\n  int c = a + b;\n  return c;\n}\n"
ADD_FAST = "int add(int a, int b) {\n  return a + b;\n}\n"


def record(prompt="Sum a list.", accepted=SUM_FAST, declined=SUM_SLOW, lang="Python",
           kind="runtime_eff", chosen_time=1.0, rejected_time=10.0, origin="contest") -> dict:
    return {"prompt": prompt, "accepted": accepted, "declined": declined, "lang": lang, "kind": kind,
            "chosen_time": chosen_time, "rejected_time": rejected_time, "origin": origin}


# Records in order, each with the outcome of the list stage (None: passes).
CASES = [
    (record(), None),
    (record(prompt="Add two ints.", accepted=ADD_FAST, declined=ADD_SLOW, lang="cpp",
            kind="Memory_Efficiency", rejected_time=6.0), None),
    (record(prompt="Sum, barely faster.", rejected_time=2.0), "ratio_below_min:rejected_time/chosen_time"),
    (record(prompt="Sum, no time.", chosen_time=0.0), "ratio_undefined:rejected_time/chosen_time"),
    (record(prompt="No chosen.", accepted=None), "missing_field"),
    (record(prompt="Cobol.", lang="cobol"), "unknown_language"),
    (record(prompt="Vibes.", kind="vibes"), "unknown_criterion"),
    (record(prompt="From elsewhere.", origin="forum"), "not_equal:origin"),
    (record(prompt="Same code.", declined=SUM_FAST + "\n"), None),  # dropped later: validate
]

MAPPING = {"type": "dataset", "columns": {"input": "prompt", "chosen": "accepted", "rejected": "declined",
                                          "language": "lang", "aspect": "kind"},
           "filters": [{"ratio": ["rejected_time", "chosen_time"], "min": 5},
                       {"column": "origin", "equals": "contest"}]}


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    """The same records as Parquet, JSON Lines (plus one list-valued chosen) and save_to_disk."""
    folder = tmp_path_factory.mktemp("datasets")
    records = [item for item, _ in CASES]
    pq.write_table(pa.Table.from_pylist(records), folder / "pairs.parquet")
    write_jsonl(folder / "pairs.jsonl", [*records, record(prompt="Chat.", accepted=[{"role": "x"}])])
    table = datasets.Dataset.from_list(records)
    datasets.DatasetDict({"train": table, "test": table.select([1])}).save_to_disk(str(folder / "saved"))
    return folder


def listed(source: DatasetSource, base: Path) -> list[dict]:
    rules = DatasetRules.from_source(source)
    rows = []
    for chunk in file_chunks(plan_dataset(source, base), source.unit_rows):
        for table in ListRecords(rules)(pa.Table.from_pylist([chunk.to_item()])):
            rows.extend(table.to_pylist())
    return rows


@pytest.mark.parametrize("path", ["pairs.parquet", "pairs.jsonl", "saved"])
def test_records_are_mapped_and_filtered_alike_from_every_format(data, path):
    rows = listed(DatasetSource(**MAPPING, path=[path]), data)
    expected = [reason for _, reason in CASES] + (["not_text"] if path.endswith(".jsonl") else [])
    assert [row["drop_reason"] for row in rows] == expected
    assert {row["drop_stage"] for row in rows if row["drop_reason"]} == {"list"}
    first, second = rows[0], rows[1]
    assert (first["input"], first["chosen"], first["rejected"]) == ("Sum a list.", SUM_FAST, SUM_SLOW)
    assert (first["language"], first["aspect"], first["aspects"]) == (
        "Python", "Runtime_Efficiency", ["Runtime_Efficiency"])
    assert (second["language"], second["aspect"]) == ("C++", "Memory_Efficiency")
    assert (first["source"], first["subset"], first["generator"], first["system"]) == (
        "dataset", "dataset", "dataset", None)
    assert first["strict_syntax"] is False
    assert len({row["id"] for row in rows}) == len(rows)


def test_a_one_row_group_dataset_is_read_in_units_of_unit_rows(tmp_path):
    records = [dict(item, prompt=f"{item['prompt']} #{k}") for k in range(100) for item, _ in CASES]
    pq.write_table(pa.Table.from_pylist(records), tmp_path / "big.parquet", row_group_size=len(records))
    source = DatasetSource(**MAPPING, path=["big.parquet"], unit_rows=200)
    chunks = file_chunks(plan_dataset(source, tmp_path), source.unit_rows)
    assert [(chunk.start, chunk.stop) for chunk in chunks] == [(0, 180), (180, 360), (360, 540), (540, 720), (720, 900)]
    rows = listed(source, tmp_path)
    assert [row["input"] for row in rows] == [item["prompt"] for item in records]  # each once, in order
    assert [row["drop_reason"] for row in rows] == [reason for _, reason in CASES] * 100
    assert len(file_chunks(plan_dataset(DatasetSource(**MAPPING, path=["big.parquet"]), tmp_path))) == 1


def test_constants_stand_in_for_missing_columns_and_a_split_is_chosen(data, tmp_path):
    pq.write_table(pa.table({"input": ["Sum a list."], "chosen": [SUM_FAST], "rejected": [SUM_SLOW],
                             "system": ["Prefer fast code."]}), tmp_path / "plain.parquet")
    rows = listed(DatasetSource(type="dataset", path=["plain.parquet"], language="py",
                                aspect="Readability_Maintainability", subset="plain"), tmp_path)
    assert [(r["language"], r["aspect"], r["system"], r["subset"]) for r in rows] == [
        ("Python", "Readability_Maintainability", "Prefer fast code.", "plain")]

    test_rows = listed(DatasetSource(**MAPPING, path=["saved"], split="test"), data)
    assert [row["input"] for row in test_rows] == ["Add two ints."]
    with pytest.raises(ValueError, match=r"no split 'dev' \(it has \['test', 'train'\]\)"):
        plan_dataset(DatasetSource(**MAPPING, path=["saved"], split="dev"), data)


def test_missing_columns_stop_the_build_before_any_work(data):
    manifest = parse_manifest({"name": "d", "sources": [
        {"type": "dataset", "path": "pairs.parquet", "columns": {"input": "question"}}]}, data)
    with pytest.raises(BuildError, match=r"sources.0: pairs.parquet: no column aspect, chosen, "
                                         r"language, question, rejected \(it has \['prompt', "):
        build(manifest, data / "never-written")
    assert not (data / "never-written").exists()


def test_hub_dataset_offline_is_a_clear_error(tmp_path):
    manifest = tmp_path / "hub.yaml"
    manifest.write_text("name: hub\nsources:\n  - type: dataset\n    name: nobody/no-such-pairs\n"
                        "    language: Python\n    aspect: Runtime_Efficiency\n")
    result = subprocess.run(
        [sys.executable, str(ROOT / "pipelines" / "build_prefs.py"), "--manifest", str(manifest),
         "--output", str(tmp_path / "out")],
        capture_output=True, text=True, timeout=120, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert result.returncode == 2
    assert "Hub dataset 'nobody/no-such-pairs' (split 'train') cannot be loaded" in result.stderr
    assert not (tmp_path / "out").exists()


def test_build_from_three_dataset_sources(ray_local, data, tmp_path):
    manifest = parse_manifest({"name": "pairs", "sources": [
        {**MAPPING, "path": "saved", "subset": "saved"},
        {**MAPPING, "path": ["pairs.parquet"], "subset": "parquet"},
        {**MAPPING, "path": ["pairs.jsonl"], "subset": "jsonl"},
    ]}, data)
    record = build(manifest, tmp_path / "out")
    frame = pl.read_parquet(tmp_path / "out" / "data" / "*.parquet")
    # The three sources hold the same two good pairs: exact duplicates keep one each.
    assert sorted(frame["input"].to_list()) == ["Add two ints.", "Sum a list."]
    assert set(frame["source"]) == {"dataset"} and set(frame["generator"]) == {"dataset"}
    assert frame["chosen_nodes"].min() > 0
    funnel = {stage["stage"]: stage["reasons"] for stage in record["funnel"]}
    assert funnel["list"] == {"missing_field": 3, "not_equal:origin": 3, "not_text": 1,
                              "ratio_below_min:rejected_time/chosen_time": 3,
                              "ratio_undefined:rejected_time/chosen_time": 3,
                              "unknown_criterion": 3, "unknown_language": 3}
    assert funnel["validate"] == {"unchanged_after_whitespace": 3}
    assert funnel["dedupe"] == {"exact_duplicate": 4}
    assert record["rows"]["total"] == 3 * len(CASES) + 1
    types = sorted({(item["type"], Path(item["path"]).suffix) for item in record["inputs"]})
    assert types == [("dataset", ".arrow"), ("dataset", ".jsonl"), ("dataset", ".parquet")]
    assert all(len(item["sha256"]) == 64 for item in record["inputs"])


@pytest.mark.parametrize(("source", "message"), [
    ({"path": "a.parquet", "name": "org/pairs"}, "give exactly one of path"),
    ({}, "give exactly one of path"),
    ({"path": "a.parquet", "filters": [{"ratio": ["a", "b"]}]}, "a ratio filter needs min or max"),
    ({"path": "a.parquet", "filters": [{"column": "x", "equals": 1, "one_of": [2]}]},
     "exactly one of equals, one_of"),
    ({"path": "a.parquet", "aspect": "speed"}, "unknown criterion 'speed'"),
    ({"path": "a.parquet", "columns": {"prompt": "q"}}, "columns.prompt: unknown key"),
])
def test_dataset_manifest_mistakes_name_the_key(tmp_path, source, message):
    from codeprefs.pipelines.manifest import ManifestError

    with pytest.raises(ManifestError) as caught:
        parse_manifest({"name": "d", "sources": [{"type": "dataset", **source}]}, tmp_path)
    assert message in str(caught.value)


def test_a_nul_byte_anywhere_in_the_text_is_a_counted_binary_drop(tmp_path):
    late = SUM_FAST + "#" * 9000 + "\x00\n"  # past git's 8,000-byte window
    records = [record(), record(accepted=late), record(declined="\x00" + SUM_SLOW),
               record(prompt="Sum a list.\x00")]
    write_jsonl(tmp_path / "nul.jsonl", records)
    pq.write_table(pa.Table.from_pylist(records), tmp_path / "nul.parquet")
    for name in ("nul.jsonl", "nul.parquet"):
        rows = listed(DatasetSource(**MAPPING, path=[name]), tmp_path)
        assert [row["drop_reason"] for row in rows] == [None, "binary", "binary", "binary"], name
        assert all(row["drop_stage"] == "list" for row in rows[1:])


def test_build_counts_malformed_lines_and_stops_on_a_corrupt_parquet(ray_local, tmp_path):
    lines = [json.dumps(record()), "[" * 100_000, "[1, 2]", json.dumps(record(prompt=["not", "text"]))]
    (tmp_path / "pairs.jsonl").write_text("\n".join(lines) + "\n")
    manifest = parse_manifest({"name": "pairs", "sources": [{**MAPPING, "path": ["pairs.jsonl"]}]}, tmp_path)
    record_ = build(manifest, tmp_path / "out")
    funnel = {stage["stage"]: stage["reasons"] for stage in record_["funnel"]}
    assert funnel["list"] == {"malformed_row": 2, "not_text": 1}
    assert record_["rows"]["kept"] == 1
    rejects = pl.read_parquet(tmp_path / "out" / "rejects" / "*.parquet")
    messages = sorted(m for m in rejects["message"].to_list() if m)
    assert messages == ["pairs.jsonl:2: nested too deeply", "pairs.jsonl:3: a JSON list, not an object"]

    # a Parquet file whose footer is intact but whose data pages are not
    table = pa.Table.from_pylist([record(prompt=f"Sum {n}.") for n in range(2000)])
    pq.write_table(table, tmp_path / "bad.parquet", compression="snappy", row_group_size=500)
    data = bytearray((tmp_path / "bad.parquet").read_bytes())
    for offset in range(200, len(data) // 2, 7):
        data[offset] ^= 0xFF
    (tmp_path / "bad.parquet").write_bytes(bytes(data))
    manifest = parse_manifest({"name": "bad", "sources": [{**MAPPING, "path": ["bad.parquet"]}]}, tmp_path)
    with pytest.raises(BuildError, match=r"sources.0: bad.parquet: unreadable Parquet file \(rows \d+"):
        build(manifest, tmp_path / "bad-out")


@pytest.mark.parametrize("cut", ["footer", "gzip"])
def test_a_corrupt_file_exits_2_naming_it_without_a_traceback(tmp_path, cut):
    if cut == "footer":
        pq.write_table(pa.Table.from_pylist([record()]), tmp_path / "pairs.parquet")
        data = (tmp_path / "pairs.parquet").read_bytes()
        (tmp_path / "pairs.parquet").write_bytes(data[: len(data) - 20])
        name, wanted = "pairs.parquet", "pairs.parquet: cannot read parquet file"
    else:
        import gzip

        data = gzip.compress(("\n".join(json.dumps(record(prompt=f"Sum {n}.")) for n in range(3000))).encode())
        (tmp_path / "pairs.jsonl.gz").write_bytes(data[: len(data) // 2])
        name, wanted = "pairs.jsonl.gz", "pairs.jsonl.gz: truncated or corrupt gzip file (after line"
    manifest = tmp_path / "m.yaml"
    manifest.write_text(json.dumps({"name": "cut", "sources": [{**MAPPING, "path": [name]}]}))
    result = subprocess.run(
        [sys.executable, "-c", "from codeprefs.cli import app; app()", "build", "--manifest", str(manifest),
         "--output", str(tmp_path / "out")],
        capture_output=True, text=True, timeout=300,
        env={**os.environ, "PYTHONPATH": str(ROOT), "COLUMNS": "300"})
    assert result.returncode == 2, result.stderr[-3000:]
    assert wanted in result.stderr
    assert "Traceback" not in result.stderr
