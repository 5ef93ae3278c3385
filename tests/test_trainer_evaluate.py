"""Evaluation: the paper's result files, numbers checked by hand, and no silent losses."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from tests.trainer_fixtures import (  # noqa: F401
    make_rows,
    one_torch_thread,
    reward_model,
    tiny_model,
    tokenizer,
    write_shards,
)
from codeprefs.trainers.data import DataError
from codeprefs.trainers.evaluate import compile_results, evaluate, main
from codeprefs.trainers.model import RewardModel


def test_results_match_numbers_computed_by_hand():
    scores = pd.DataFrame({
        "id": ["a", "b", "c", "d", "e"],
        "chosen_score": [2.0, 1.0, 0.5, -1.0, 3.0],
        "rejected_score": [1.0, 1.0, 1.5, -2.0, 0.0],
        "language": ["Go", "C", "C", "Go", "Python"],
        "aspect": ["A", "A", "B", "B", "B"],
        "subset": ["s"] * 5,
    })
    scores["correct"] = scores["chosen_score"] > scores["rejected_score"]
    scores["score_diff"] = scores["chosen_score"] - scores["rejected_score"]
    results = compile_results(scores)
    # differences 1, 0 (a tie: wrong), -1, 1, 3
    assert results["overall"] == {"accuracy": 0.6, "total_examples": 5, "correct_predictions": 3,
                                  "mean_score_difference": 0.8, "median_score_difference": 1.0,
                                  "std_score_difference": round(math.sqrt(8.8 / 4), 4)}
    assert results["by_aspect"] == {"A": {"accuracy": 0.5, "count": 2}, "B": {"accuracy": 0.6667, "count": 3}}
    assert results["by_language"] == {"C": {"accuracy": 0.0, "count": 2}, "Go": {"accuracy": 1.0, "count": 2},
                                      "Python": {"accuracy": 1.0, "count": 1}}
    assert list(results["by_language"]) == ["C", "Go", "Python"]
    assert results["by_subset"] == {"s": {"accuracy": 0.6, "count": 5}}
    assert list(results) == ["overall", "by_aspect", "by_language", "by_subset"]


def test_evaluate_writes_the_paper_files(tmp_path, reward_model):
    rows = make_rows(9)
    rows[4]["rejected"] = rows[4]["chosen"]  # identical answers: equal scores, counted wrong
    data = write_shards(tmp_path / "bench", rows, shards=2)
    results = evaluate(reward_model, str(data), tmp_path / "eval")

    stored = json.loads((tmp_path / "eval" / "results.json").read_text())
    assert stored == results
    assert set(stored["overall"]) == {"accuracy", "total_examples", "correct_predictions", "mean_score_difference",
                                      "median_score_difference", "std_score_difference"}
    for key in ("by_aspect", "by_language", "by_subset"):
        for group in stored[key].values():
            assert set(group) == {"accuracy", "count"} and isinstance(group["count"], int)

    table = pq.read_table(tmp_path / "eval" / "scores.parquet")
    assert sorted(table.column_names) == sorted(["id", "chosen_score", "rejected_score", "correct", "score_diff",
                                                 "language", "aspect", "subset"])
    frame = pd.read_parquet(tmp_path / "eval" / "scores.parquet")
    assert frame.index.name == "id" and len(frame) == 9
    by_id = frame.loc["r0004"]
    assert by_id["chosen_score"] == by_id["rejected_score"] and not by_id["correct"]

    # Recompute every number from the per-pair scores.
    diff = frame["chosen_score"].to_numpy() - frame["rejected_score"].to_numpy()
    correct = frame["chosen_score"].to_numpy() > frame["rejected_score"].to_numpy()
    assert np.array_equal(frame["correct"].to_numpy(), correct)
    assert np.allclose(frame["score_diff"].to_numpy(), diff)
    assert stored["overall"]["total_examples"] == 9
    assert stored["overall"]["correct_predictions"] == int(correct.sum())
    assert stored["overall"]["accuracy"] == round(correct.mean(), 4)
    assert stored["overall"]["mean_score_difference"] == round(float(diff.mean()), 4)
    assert stored["overall"]["median_score_difference"] == round(float(np.median(diff)), 4)
    assert stored["overall"]["std_score_difference"] == round(float(diff.std(ddof=1)), 4)
    for aspect in set(frame["aspect"]):
        mask = (frame["aspect"] == aspect).to_numpy()
        assert stored["by_aspect"][aspect] == {"accuracy": round(correct[mask].mean(), 4), "count": int(mask.sum())}
    assert sum(g["count"] for g in stored["by_subset"].values()) == 9


def test_system_prompt_modes_change_the_scores(tmp_path, reward_model):
    data = write_shards(tmp_path / "bench", make_rows(4))
    evaluate(reward_model, str(data), tmp_path / "own")
    evaluate(reward_model, str(data), tmp_path / "none", prompts="none")
    own = pd.read_parquet(tmp_path / "own" / "scores.parquet")
    none = pd.read_parquet(tmp_path / "none" / "scores.parquet")
    assert not np.allclose(own["chosen_score"], none["chosen_score"])


def test_a_failing_batch_fails_the_run(tmp_path, tokenizer):  # noqa: F811
    # A model whose vocabulary is smaller than the tokenizer's: some batch hits an unknown id.
    from transformers import Qwen3ForCausalLM

    from codeprefs.trainers.tiny import qwen3_config

    small = Qwen3ForCausalLM(qwen3_config("tiny", vocab_size=200, pad_token_id=0))
    model = RewardModel.from_causal_lm(small, pad_token_id=0)
    model.save_pretrained(tmp_path / "rm", tokenizer=tokenizer)
    data = write_shards(tmp_path / "bench", make_rows(6))
    with pytest.raises(IndexError):
        evaluate(tmp_path / "rm", str(data), tmp_path / "eval")
    assert not (tmp_path / "eval" / "results.json").exists()


def test_unscorable_pairs_fail_or_are_listed(tmp_path, reward_model, capsys):
    rows = make_rows(6)
    rows[2]["chosen"] = ""
    rows[5]["input"] = "Explain. " * 600
    data = write_shards(tmp_path / "bench", rows)
    with pytest.raises(DataError, match=r"2 pair\(s\) cannot be scored.*empty_chosen: r0002.*prompt_too_long: r0005"):
        evaluate(reward_model, str(data), tmp_path / "eval", max_length=512)
    assert main(["--model", str(reward_model), "--data", str(data), "--output", str(tmp_path / "eval"),
                 "--max-length", "512"]) == 2
    assert "cannot be scored" in capsys.readouterr().err
    assert main(["--model", str(reward_model), "--data", str(data), "--output", str(tmp_path / "eval"),
                 "--max-length", "512", "--skip-invalid"]) == 0
    assert json.loads((tmp_path / "eval" / "skipped.json").read_text()) == {"empty_chosen": ["r0002"],
                                                                            "prompt_too_long": ["r0005"]}
    assert json.loads((tmp_path / "eval" / "results.json").read_text())["overall"]["total_examples"] == 4
