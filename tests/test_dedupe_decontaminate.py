"""Decontamination against benchmark prompts in JSONL, Parquet and `datasets` folders."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from codeprefs.pipelines.manifest import ManifestError, parse_manifest
from codeprefs.filters.dedupe.decontaminate import BenchmarkError, build_index, decontaminate, first_overlap
from codeprefs.filters.dedupe.settings import DecontaminateSettings
from tests.dedupe_helpers import pair_row, rows_table

HUMANEVAL_LIKE = [
    "Write a function to find the minimum cost path to reach (m, n) from (0, 0) for the given cost matrix.",
    "Return the list of prime factors of the given integer in increasing order, each repeated by multiplicity.",
]
MBPP_LIKE = [
    "Write a python function to check whether the given two integers have opposite sign or not.",
    "Short prompt.",  # fewer than 13 tokens: cannot contaminate anything
]
SAVED_LIKE = ["Given a binary tree, return the zigzag level order traversal of its nodes' values from left to right."]


@pytest.fixture
def benchmarks(tmp_path: Path) -> dict[str, Path]:
    from datasets import Dataset, DatasetDict

    jsonl = tmp_path / "bench" / "humaneval.jsonl"
    jsonl.parent.mkdir()
    jsonl.write_text("".join(json.dumps({"task_id": i, "prompt": p}) + "\n"
                             for i, p in enumerate(HUMANEVAL_LIKE)), encoding="utf-8")
    parquet = tmp_path / "bench" / "mbpp.parquet"
    pq.write_table(pa.table({"prompt": MBPP_LIKE, "test": ["assert 1", "assert 2"]}), parquet)
    saved = tmp_path / "bench" / "saved"
    DatasetDict({"test": Dataset.from_dict({"prompt": SAVED_LIKE})}).save_to_disk(str(saved))
    return {"jsonl": jsonl, "parquet": parquet, "saved": saved}


def _config(paths, **extra) -> DecontaminateSettings:
    return DecontaminateSettings(benchmarks=[str(p) for p in paths], **extra)


def test_index_reads_every_format_and_counts_short_prompts(benchmarks):
    index = build_index([(name, path) for name, path in benchmarks.items()], "prompt", 13)
    assert index.names == ["jsonl", "parquet", "saved"]
    assert index.stats["parquet"] == {"prompts": 2, "missing_prompts": 0, "prompts_shorter_than_ngram": 1,
                                      "ngrams": index.stats["parquet"]["ngrams"]}
    assert index.stats["saved"]["prompts"] == 1
    assert all(index.stats[name]["ngrams"] > 0 for name in index.names)
    assert len(index.hashes) == sum(index.stats[name]["ngrams"] for name in index.names)


def test_first_overlap_names_the_benchmark_and_the_shared_ngram(benchmarks):
    index = build_index([("humaneval", benchmarks["jsonl"]), ("mbpp", benchmarks["parquet"])], "prompt", 13)
    # 13 tokens of the benchmark prompt, re-cased and re-spaced, inside a longer prompt.
    prompt = "Please  help.\nWrite A Python Function To Check Whether The Given Two\n Integers Have Opposite Sign!"
    found = first_overlap(prompt, index)
    assert found == ("mbpp", "write a python function to check whether the given two integers have opposite")
    twelve = "Please: write a python function to check whether the given two integers have"
    assert first_overlap(twelve, index) is None
    assert first_overlap(prompt, build_index([("mbpp", benchmarks["parquet"])], "prompt", 13,
                                             lowercase=False)) is None


def test_decontaminate_marks_overlapping_rows_on_ray(ray_local, benchmarks):
    rows = [
        pair_row("clean", "x = 1", "x = 2", input="Sort a list of strings by length, then alphabetically."),
        pair_row("leak-1", "x = 1", "x = 2",
                 input="Task: " + HUMANEVAL_LIKE[1].upper() + " Use Python."),
        pair_row("leak-2", "x = 1", "x = 2",
                 input="Given a binary tree, return the zigzag level order traversal of its nodes' values."),
        pair_row("leak-in-code", "# " + HUMANEVAL_LIKE[0], "x = 2", input="Improve the code."),
        pair_row("already-dropped", "x = 1", "x = 2", input=HUMANEVAL_LIKE[0],
                 drop_stage="validate", drop_reason="too_shallow"),
        pair_row("short", "x = 1", "x = 2", input="Short prompt."),
    ]
    dataset = ray_local.data.from_arrow(rows_table(rows)).repartition(3)
    stats: dict = {}
    out = {r["id"]: r for r in decontaminate(dataset, _config(benchmarks.values()), stats=stats).take_all()}
    assert len(out) == len(rows)
    assert out["clean"]["drop_reason"] is None
    assert out["short"]["drop_reason"] is None
    leak = out["leak-1"]
    assert (leak["drop_stage"], leak["drop_reason"]) == ("decontaminate", "benchmark_overlap")
    assert leak["decontam_benchmark"] == str(benchmarks["jsonl"])
    assert leak["decontam_ngram"] == "return the list of prime factors of the given integer in increasing order"
    assert out["leak-2"]["decontam_benchmark"] == str(benchmarks["saved"])
    assert out["leak-in-code"]["drop_reason"] is None  # only `input` is checked by default
    assert (out["already-dropped"]["drop_reason"], out["already-dropped"]["decontam_benchmark"]) == (
        "too_shallow", None)
    assert stats["benchmarks"][str(benchmarks["parquet"])]["prompts_shorter_than_ngram"] == 1

    # Checking the code fields too catches the comment copied from the benchmark.
    config = _config(benchmarks.values(), fields=["input", "chosen"])
    out = {r["id"]: r for r in decontaminate(dataset, config).take_all()}
    assert out["leak-in-code"]["drop_reason"] == "benchmark_overlap"


def test_bad_benchmarks_fail_with_a_message_naming_them(tmp_path, benchmarks):
    with pytest.raises(BenchmarkError, match="missing.jsonl"):
        build_index([("missing", tmp_path / "missing.jsonl")], "prompt", 13)
    with pytest.raises(BenchmarkError, match=r"mbpp.parquet: no column 'question'"):
        build_index([("mbpp", benchmarks["parquet"])], "question", 13)
    with pytest.raises(BenchmarkError, match=r"humaneval.jsonl: record 1 has no field 'text'"):
        build_index([("he", benchmarks["jsonl"])], "text", 13)
    broken = tmp_path / "broken.jsonl"
    broken.write_text('{"prompt": "ok"}\n{not json\n', encoding="utf-8")
    with pytest.raises(BenchmarkError, match="broken.jsonl is not valid JSON lines"):
        build_index([("broken", broken)], "prompt", 13)
    text = tmp_path / "notes.txt"
    text.write_text("x", encoding="utf-8")
    with pytest.raises(BenchmarkError, match="notes.txt: unsupported file type"):
        build_index([("notes", text)], "prompt", 13)


def test_manifest_resolves_benchmark_globs_and_rejects_missing_ones(tmp_path, benchmarks):
    source = [{"type": "git", "repos": ["/tmp/repo"]}]
    manifest = parse_manifest({"name": "run", "sources": source,
                               "decontaminate": {"benchmarks": ["bench/*.jsonl", "bench/saved"]}}, tmp_path)
    assert manifest.decontaminate.benchmarks == ["bench/humaneval.jsonl", "bench/saved"]
    assert manifest.decontaminate.fields == ["input"] and manifest.decontaminate.ngram == 13
    for missing in ("bench/none-*.jsonl", "bench/gone.parquet"):
        with pytest.raises(ManifestError, match="decontaminate.benchmarks"):
            parse_manifest({"name": "run", "sources": source,
                            "decontaminate": {"benchmarks": [missing]}}, tmp_path)
    with pytest.raises(ManifestError, match="decontaminate.fields"):
        parse_manifest({"name": "run", "sources": source,
                        "decontaminate": {"benchmarks": ["bench/saved"], "fields": ["prompt"]}}, tmp_path)
