"""Loading pairs, system prompts, chat-template tokenization, truncation and bad data."""

from __future__ import annotations

import json
import random

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from codeprefs.core.schema import Aspect
from tests.trainer_fixtures import make_rows, one_torch_thread, tiny_model, tokenizer, write_shards  # noqa: F401
from codeprefs.core.encoding import PairEncoder
from codeprefs.trainers.data import (
    LOADED_COLUMNS,
    DataError,
    assign_system_prompts,
    evaluation_system_prompts,
    load_pairs,
    normalize_columns,
    write_report,
)
from codeprefs.trainers.evaluate import load_eval_set
from codeprefs.core.prompts import CODE_CRITERIA, GENERAL_CRITERIA, PromptKind, render_prompt


def test_every_source_kind_loads_the_same_pairs(tmp_path):
    import datasets

    rows = make_rows(12)
    write_shards(tmp_path / "out", rows, shards=3)
    (tmp_path / "jsonl").mkdir()
    with open(tmp_path / "jsonl" / "pairs.jsonl", "w") as handle:
        for row in rows:
            handle.write(json.dumps(row) + "\n")
    datasets.Dataset.from_list(rows).save_to_disk(str(tmp_path / "saved"))
    datasets.DatasetDict({"train": datasets.Dataset.from_list(rows)}).save_to_disk(str(tmp_path / "saved_dict"))

    sources = [tmp_path / "out", str(tmp_path / "out" / "data" / "*.parquet"), tmp_path / "jsonl",
               tmp_path / "jsonl" / "pairs.jsonl", tmp_path / "saved", tmp_path / "saved_dict"]
    expected = sorted(tuple(row[c] for c in LOADED_COLUMNS) for row in rows)
    for source in sources:
        table = load_pairs(source)
        assert table.column_names == list(LOADED_COLUMNS), source
        assert sorted(zip(*(table[c].to_pylist() for c in LOADED_COLUMNS), strict=True)) == expected, source


def test_paper_benchmark_layout_is_accepted(tmp_path):
    # The paper's benchmark calls the prompt column `prompt` and has no system column.
    rows = [{k: v for k, v in row.items() if k != "system"} for row in make_rows(3)]
    for row in rows:
        row["prompt"] = row.pop("input")
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "bench.parquet")
    table = load_pairs(tmp_path / "bench.parquet")
    assert table["input"].to_pylist() == [row["prompt"] for row in rows]
    assert table["system"].to_pylist() == ["", "", ""]


def test_missing_column_names_the_column_and_the_input(tmp_path):
    rows = [{k: v for k, v in row.items() if k != "rejected"} for row in make_rows(2)]
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "pairs.parquet")
    with pytest.raises(DataError, match=r"pairs\.parquet: missing column\(s\) 'rejected'"):
        load_pairs(tmp_path / "pairs.parquet")
    with pytest.raises(DataError, match="no such file"):
        load_pairs(tmp_path / "absent.parquet")
    bad = pa.table({"input": ["x"], "chosen": [1], "rejected": ["y"], "language": ["C"], "aspect": ["sec"]})
    with pytest.raises(DataError, match="'chosen' must hold text"):
        normalize_columns(bad, "inline")


def test_system_prompts_follow_the_mix_and_are_seeded_per_row():
    rows = make_rows(4000)
    rows[0]["system"] = "Prefer fast code."
    table = pa.Table.from_pylist(rows)
    filled, kinds = assign_system_prompts(table, seed=7)
    assert kinds[PromptKind.GIVEN] == 1
    assert filled["system"][0].as_py() == "Prefer fast code."
    drawn = 3999
    assert abs(kinds[PromptKind.NONE] / drawn - 0.15) < 0.02
    assert abs(kinds[PromptKind.ALL] / drawn - 0.20) < 0.02
    assert abs(kinds[PromptKind.OWN] / drawn - 0.65) < 0.02

    # Same row, same prompt, whatever the order of the table; another seed changes the draw.
    shuffled = rows[:]
    random.Random(1).shuffle(shuffled)
    by_id = dict(zip(filled["id"].to_pylist(), filled["system"].to_pylist(), strict=True))
    again, _ = assign_system_prompts(pa.Table.from_pylist(shuffled), seed=7)
    assert dict(zip(again["id"].to_pylist(), again["system"].to_pylist(), strict=True)) == by_id
    other, _ = assign_system_prompts(table, seed=8)
    assert other["system"].to_pylist() != filled["system"].to_pylist()

    general = [f"- {name}:" for name, _ in GENERAL_CRITERIA]
    orders = set()
    for row, text in zip(rows[1:], filled["system"].to_pylist()[1:], strict=True):
        if not text:
            continue
        lines = text.splitlines()
        assert [line.split(":")[0] + ":" for line in lines[1:3]] == general
        named = [line[2:].split(":")[0] for line in lines[3:]]
        own = CODE_CRITERIA[Aspect(row["aspect"])][0]
        if len(named) == 1:
            assert named == [own]
        else:
            assert sorted(named) == sorted(name for name, _ in CODE_CRITERIA.values())
            orders.add(tuple(named))
    assert len(orders) > 20  # all-criteria prompts list the five in shuffled orders


def test_evaluation_prompts_on_request():
    table = pa.Table.from_pylist(make_rows(5, system="Given."))
    own, kinds = evaluation_system_prompts(table, "own")
    assert kinds == {PromptKind.OWN: 5}
    assert own["system"][0].as_py() == render_prompt([Aspect(make_rows(1)[0]["aspect"])])
    everything, _ = evaluation_system_prompts(table, "all")
    assert everything["system"][3].as_py() == render_prompt(list(Aspect))
    assert set(evaluation_system_prompts(table, "none")[0]["system"].to_pylist()) == {""}
    assert set(evaluation_system_prompts(table, "data")[0]["system"].to_pylist()) == {"Given."}


def test_tokens_follow_the_chat_template(tokenizer):  # noqa: F811
    table = normalize_columns(pa.Table.from_pylist(make_rows(4, system="Judge code.")), "inline")
    pairs, report = PairEncoder(tokenizer, 512).encode(table)
    assert report.kept == 4 and not report.skipped
    row = make_rows(4, system="Judge code.")[2]
    messages = [{"role": "system", "content": row["system"]}, {"role": "user", "content": row["input"]}]
    prompt = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    full = tokenizer.apply_chat_template([*messages, {"role": "assistant", "content": row["chosen"]}],
                                         tokenize=False)
    assert tokenizer.decode(pairs[2].prompt.tolist()) == prompt
    assert tokenizer.decode(pairs[2].prompt.tolist() + pairs[2].chosen.tolist()) == full
    assert tokenizer.decode(pairs[2].chosen.tolist()).endswith("<|im_end|>\n")


def test_truncation_cuts_the_response_and_keeps_the_prompt(tokenizer):  # noqa: F811
    rows = make_rows(3, system="Judge code.")
    rows[1]["chosen"] = "def f(x):\n" + "    x = x + 1\n" * 200 + "    return x\n"
    table = normalize_columns(pa.Table.from_pylist(rows), "inline")
    full, _ = PairEncoder(tokenizer, 4096).encode(table)
    cut, report = PairEncoder(tokenizer, 96).encode(table)
    assert report.truncated_chosen == 1 and report.truncated_rejected == 0 and report.kept == 3
    long = cut[1]
    assert long.chosen_length == 96
    assert long.prompt.tolist() == full[1].prompt.tolist()  # the prompt is whole
    # The answer's trailing newline and the end-of-turn tokens close both sequences.
    closing = tokenizer("\n<|im_end|>\n", add_special_tokens=False)["input_ids"]
    assert full[1].chosen.tolist()[-len(closing):] == closing
    kept = len(long.chosen) - len(closing)
    assert long.chosen.tolist() == full[1].chosen.tolist()[:kept] + closing  # head of the answer + closing
    assert cut[0].chosen.tolist() == full[0].chosen.tolist()  # short pairs are untouched


def test_pairs_identical_after_truncation_are_neither_trained_nor_evaluated(tokenizer, tmp_path):  # noqa: F811
    rows = make_rows(3, system="Judge code.")
    head = "def f(x):\n" + "    x = x + 1\n" * 200
    rows[1]["chosen"] = head + "    return x\n"  # the two sides differ only past the budget
    rows[1]["rejected"] = head + "    return -x\n"
    table = normalize_columns(pa.Table.from_pylist(rows), "inline")
    full, report = PairEncoder(tokenizer, 4096).encode(table, drop_identical=True)
    assert [pair.row for pair in full] == [0, 1, 2] and not report.skipped
    for drop_identical in (True, False):  # training and evaluation
        pairs, report = PairEncoder(tokenizer, 96).encode(table, drop_identical=drop_identical)
        assert [pair.row for pair in pairs] == [0, 2]
        assert report.skipped == {"identical_after_truncation": 1}
        assert report.skipped_ids["identical_after_truncation"] == ["r0001"]
        assert report.rows == 3 and report.kept == 2
    write_report(report, tmp_path / "data_report.json")
    written = json.loads((tmp_path / "data_report.json").read_text())
    assert written["skipped"] == {"identical_after_truncation": 1}
    assert written["skipped_ids"] == {"identical_after_truncation": ["r0001"]}

    pq.write_table(table, tmp_path / "eval.parquet")  # the evaluator leaves it out: no error
    eval_set = load_eval_set(str(tmp_path / "eval.parquet"), tokenizer, prompts="data", max_length=96)
    assert [pair.row for pair in eval_set.pairs] == [0, 2]
    assert eval_set.report.skipped == {"identical_after_truncation": 1}


def test_bad_rows_are_skipped_and_counted(tokenizer):  # noqa: F811
    rows = make_rows(6, system="Judge code.")
    rows[0]["chosen"] = "   "
    rows[1]["rejected"] = ""
    rows[2]["input"] = "Explain. " * 400
    rows[3]["rejected"] = rows[3]["chosen"]
    table = normalize_columns(pa.Table.from_pylist(rows), "inline")
    pairs, report = PairEncoder(tokenizer, 128).encode(table, drop_identical=True)
    assert report.skipped == {"empty_chosen": 1, "empty_rejected": 1, "prompt_too_long": 1,
                              "identical_responses": 1}
    assert report.skipped_ids["prompt_too_long"] == ["r0002"]
    assert [pair.row for pair in pairs] == [4, 5]
    assert report.rows == 6 and report.kept == 2
    # Evaluation keeps identical responses (they score a tie, which counts as wrong).
    pairs, report = PairEncoder(tokenizer, 128).encode(table)
    assert "identical_responses" not in report.skipped and [p.row for p in pairs] == [3, 4, 5]


def test_unknown_criterion_is_a_clear_error():
    rows = make_rows(2)
    rows[1]["aspect"] = "Vibes"
    with pytest.raises(DataError, match="unknown criterion value\\(s\\) \\['Vibes'\\]"):
        assign_system_prompts(pa.Table.from_pylist(rows), seed=0)


def test_splits_and_subfolders_are_never_mixed(tmp_path):
    rows = make_rows(6)
    (tmp_path / "hub" / "data").mkdir(parents=True)
    pq.write_table(pa.Table.from_pylist(rows[:4]), tmp_path / "hub" / "data" / "train-00000-of-00001.parquet")
    pq.write_table(pa.Table.from_pylist(rows[4:]), tmp_path / "hub" / "data" / "test-00000-of-00001.parquet")
    with pytest.raises(DataError, match="pick a split with --split"):
        load_pairs(tmp_path / "hub")
    assert load_pairs(tmp_path / "hub", split="test")["id"].to_pylist() == ["r0004", "r0005"]
    for config in ("Full", "Python"):
        (tmp_path / "bench" / config).mkdir(parents=True)
        pq.write_table(pa.Table.from_pylist(rows), tmp_path / "bench" / config / "test.parquet")
    with pytest.raises(DataError, match="several folders"):
        load_pairs(tmp_path / "bench")
    assert load_pairs(tmp_path / "bench" / "Python").num_rows == 6
