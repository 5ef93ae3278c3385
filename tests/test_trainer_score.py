"""Scoring rows with a trained reward model: the evaluator's numbers, input order, no silent loss."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from tests.trainer_fixtures import (  # noqa: F401
    make_rows,
    one_torch_thread,
    reward_model,
    tiny_model,
    tokenizer,
    write_shards,
)
from codeprefs.core.encoding import DataError
from codeprefs.core.prompts import evaluation_prompt
from codeprefs.trainers.evaluate import evaluate
from codeprefs.trainers.packing import plan_sequences
from codeprefs.trainers.score import RewardScorer, main

ROOT = __import__("pathlib").Path(__file__).resolve().parents[1]


def test_scores_equal_the_evaluators_chosen_and_rejected_scores(tmp_path, reward_model):
    rows = make_rows(7)
    data = write_shards(tmp_path / "pairs", rows)
    evaluate(reward_model, str(data), tmp_path / "eval", prompts="own")
    expected = pq.read_table(tmp_path / "eval" / "scores.parquet").to_pandas()
    expected = expected if expected.index.name == "id" else expected.set_index("id")
    scorer = RewardScorer.from_pretrained(reward_model)
    systems = [evaluation_prompt("own", row["aspect"], None)[1] for row in rows]
    prompts = [row["input"] for row in rows]
    chosen = scorer.score(prompts, [row["chosen"] for row in rows], systems)
    rejected = scorer.score(prompts, [row["rejected"] for row in rows], systems)
    ids = [row["id"] for row in rows]
    np.testing.assert_allclose(chosen, expected.loc[ids, "chosen_score"].to_numpy(), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(rejected, expected.loc[ids, "rejected_score"].to_numpy(), rtol=1e-5, atol=1e-5)
    assert len(set(np.round(chosen, 6))) > 1  # the head is not constant


def test_packed_and_padded_batches_give_the_same_scores_in_input_order(reward_model):
    scorer = RewardScorer.from_pretrained(reward_model, micro_batch_tokens=64)
    prompts = [f"task {k}: sum a list" for k in range(5)]
    responses = ["def f(x):\n    return sum(x)\n" * (k + 1) for k in range(5)]
    packed = scorer.score(prompts, responses, criterion="Runtime_Efficiency")
    scorer.model.packs = False
    padded = scorer.score(prompts, responses, criterion="Runtime_Efficiency")
    np.testing.assert_allclose(packed, padded, rtol=1e-4, atol=1e-4)
    alone = [scorer.score([p], [r], criterion="Runtime_Efficiency")[0] for p, r in zip(prompts, responses)]
    np.testing.assert_allclose(padded, alone, rtol=1e-4, atol=1e-4)  # order kept, odd count included
    assert not np.allclose(packed, scorer.score(prompts, responses))  # the criterion prompt counts


def test_a_row_that_cannot_be_scored_stops_the_run_naming_it(reward_model):
    scorer = RewardScorer.from_pretrained(reward_model)
    with pytest.raises(DataError, match=r"1 row\(s\) cannot be scored \(row 2: empty_response\)"):
        scorer.score(["a", "b", "c"], ["x = 1", "y = 2", "  "])


def test_the_command_writes_every_row_with_its_score(tmp_path, reward_model):
    table = pa.table({"input": ["p1", "p2", "p3"], "response": ["a = 1", "b = 2", "c = 3"], "keep": [3, 1, 2]})
    pq.write_table(table, tmp_path / "rows.parquet")
    result = subprocess.run([sys.executable, "-m", "codeprefs.cli", "score", "--model", str(reward_model),
                             "--data", str(tmp_path / "rows.parquet"), "--output", str(tmp_path / "out.parquet")],
                            capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    scored = pq.read_table(tmp_path / "out.parquet")
    assert scored.column_names == ["input", "response", "keep", "score"]
    assert scored["keep"].to_pylist() == [3, 1, 2]
    expected = RewardScorer.from_pretrained(reward_model).score(["p1", "p2", "p3"], ["a = 1", "b = 2", "c = 3"])
    np.testing.assert_allclose(scored["score"].to_numpy(), expected, rtol=1e-5, atol=1e-5)
    assert main(["--model", str(reward_model), "--data", str(tmp_path / "rows.parquet"), "--output",
                 str(tmp_path / "x.parquet"), "--response-column", "code"]) == 2


def test_the_tiny_model_scores_in_packs_by_default(reward_model):
    assert RewardScorer.from_pretrained(reward_model).model.packs  # so the packed/padded test compares two paths


def test_sequences_are_planned_longest_first_each_once_within_the_budget():
    lengths = [5, 30, 12, 12, 3, 70, 8, 30]
    packed = plan_sequences(lengths, 40, packed=True)
    assert packed == [[5], [1], [7], [2, 3, 6, 0, 4]]  # longest first, ties in input order; 70 alone
    padded = plan_sequences(lengths, 40, packed=False)
    assert padded == [[5], [1], [7], [2, 3, 6], [0, 4]]  # rows x longest row <= 40: 3 x 12, then 2 x 5
    for plan in (packed, padded):
        assert sorted(k for batch in plan for k in batch) == list(range(len(lengths)))
    assert all(sum(lengths[k] for k in batch) <= 40 for batch in packed[1:])
    assert all(len(batch) * max(lengths[k] for k in batch) <= 40 for batch in padded[1:])
    with pytest.raises(ValueError, match="token budget per batch must be >= 1, got 0"):
        plan_sequences(lengths, 0, packed=True)


def test_progress_lines_on_a_run_of_several_batches_leave_the_scores_alone(reward_model):
    scorer = RewardScorer.from_pretrained(reward_model, micro_batch_tokens=120)
    prompts = [f"task {k}: sum a list" for k in range(9)]
    responses = ["def f(x):\n    return sum(x)\n" * (1 + k % 4) for k in range(9)]
    computed = []
    hook = scorer.model.register_forward_hook(lambda module, args, output: computed.append(len(output.rewards)))
    seen = []
    scores = scorer.score(prompts, responses, on_progress=lambda p: seen.append((p.rows_done, p.line())))
    hook.remove()
    assert len(computed) >= 3 and sum(computed) == 9  # several batches, each row computed once
    assert [rows for rows, _ in seen] == [*np.cumsum(computed), 9]  # after every batch, then at the end
    assert seen[0][1].startswith(f"score: {computed[0]}/9 rows (") and " rows/s, " in seen[0][1]
    assert " ETA " in seen[0][1] and seen[-1][1].startswith("score: 9/9 rows (100.0%), ")
    assert seen[-1][1].endswith(" elapsed, done")
    silent = scorer.score(prompts, responses)
    np.testing.assert_array_equal(scores, silent)
    alone = [scorer.score([p], [r])[0] for p, r in zip(prompts, responses)]
    np.testing.assert_allclose(scores, alone, rtol=1e-4, atol=1e-4)  # input order, whatever the batching
    throttled = []
    scorer.score(prompts, responses, on_progress=throttled.append, progress_every=3600)
    assert len(throttled) == 1 and throttled[0].finished  # only the closing line within the hour


def test_the_command_prints_progress_to_stderr_and_writes_the_same_scores(tmp_path, reward_model, capsys):
    rows = pa.table({"prompt": [f"p{k}" for k in range(7)], "response": [f"x = {k}\n" * (k + 1) for k in range(7)]})
    pq.write_table(rows, tmp_path / "rows.parquet")
    common = ["--model", str(reward_model), "--data", str(tmp_path / "rows.parquet"), "--max-tokens-per-batch", "60"]
    assert main([*common, "--output", str(tmp_path / "quiet.parquet"), "--progress-every", "0"]) == 0
    assert "score:" not in capsys.readouterr().err
    assert main([*common, "--output", str(tmp_path / "loud.parquet"), "--progress-every", "1e-9"]) == 0
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("score: ")]
    assert len(lines) >= 3 and lines[-1].startswith("score: 7/7 rows (100.0%), ")
    quiet, loud = pq.read_table(tmp_path / "quiet.parquet"), pq.read_table(tmp_path / "loud.parquet")
    assert quiet.equals(loud)


@pytest.mark.parametrize(("option", "value", "message"), [
    ("--progress-every", "-1", "--progress-every takes seconds >= 0 (0: no progress lines), got -1"),
    ("--max-tokens-per-batch", "0", "--max-tokens-per-batch takes a number of tokens >= 1, got 0"),
])
def test_a_bad_progress_or_budget_value_exits_2_naming_the_option(tmp_path, capsys, option, value, message):
    with pytest.raises(SystemExit) as stopped:
        main(["--model", str(tmp_path), "--data", str(tmp_path / "rows.parquet"), "--output",
              str(tmp_path / "out.parquet"), option, value])
    assert stopped.value.code == 2
    assert message in capsys.readouterr().err


def test_a_nan_score_stops_the_run_naming_the_rows(reward_model):
    scorer = RewardScorer.from_pretrained(reward_model)
    with torch.no_grad():
        scorer.model.score.weight[0, 0] = float("nan")
    with pytest.raises(RuntimeError, match=r"2 row\(s\) got a NaN score \(rows 0, 1\)"):
        scorer.score(["a", "b"], ["x = 1", "y = 2"])
