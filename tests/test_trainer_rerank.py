"""Re-ranking with a reward model: metrics by hand, exact baselines, evaluate --rerank, codeprefs rerank."""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
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
from codeprefs.core.encoding import DataError
from codeprefs.trainers.candidates import EVALUATION_COLUMNS, read_candidates
from codeprefs.trainers.evaluate import candidate_scores_frame, evaluate
from codeprefs.trainers.evaluate import main as evaluate_main
from codeprefs.trainers.ranking import (
    first_correct_rank,
    kendall_tau_b,
    random_order_expectation,
    reranking_metrics,
    spearman,
)
from codeprefs.trainers.rerank import main as rerank_main
from codeprefs.trainers.score import RewardScorer

ROOT = Path(__file__).resolve().parents[1]

# (task, language, score, passed, pass_rate, length): hand-computed figures below, with k = 2.
HAND = [
    # A: the best correct candidate ties an incorrect one at 0.9: against the model, rank 2.
    ("A", "Python", 0.9, False, 0.5, 10), ("A", "Python", 0.9, True, 1.0, 30),
    ("A", "Python", 0.1, True, 1.0, 5), ("A", "Python", 0.5, False, 0.0, 20),
    # B: every candidate passes (counted apart, no correlation: pass rates all equal).
    ("B", "Python", 0.3, True, 1.0, 4), ("B", "Python", 0.7, True, 1.0, 8),
    # C: no candidate passes (counted apart) but partial pass rates differ: it has correlations.
    ("C", "Go", 0.3, False, 0.0, 7), ("C", "Go", 0.2, False, 0.5, 7), ("C", "Go", 0.1, False, 0.5, 7),
    # D: all scores equal: the correct one ranks last; shortest-first ties at length 3, rank 2.
    ("D", "Go", 0.0, True, 1.0, 3), ("D", "Go", 0.0, False, 0.0, 3), ("D", "Go", 0.0, False, 0.5, 9),
    # E: the model puts the correct one first; the shortest is the incorrect one.
    ("E", "Python", 2.0, True, 1.0, 50), ("E", "Python", 1.0, False, 0.0, 10),
]


def hand_frame() -> pd.DataFrame:
    return pd.DataFrame(HAND, columns=["task_id", "language", "score", "passed", "pass_rate", "length"])


def test_ranks_break_ties_against_the_model():
    assert first_correct_rank([0.9, 0.9, 0.1, 0.5], [False, True, True, False]) == 2
    assert first_correct_rank([0.0, 0.0, 0.0], [True, False, False]) == 3
    assert first_correct_rank([1.0, 2.0], [False, True]) == 1
    assert first_correct_rank([1.0, 2.0], [False, False]) is None


def test_correlations_with_ties_match_hand_values():
    assert spearman([0.9, 0.9, 0.1, 0.5], [0.5, 1.0, 1.0, 0.0]) == pytest.approx(-1 / 18)
    assert kendall_tau_b([0.9, 0.9, 0.1, 0.5], [0.5, 1.0, 1.0, 0.0]) == pytest.approx(0.0)
    assert spearman([0.3, 0.2, 0.1], [0.0, 0.5, 0.5]) == pytest.approx(-np.sqrt(3) / 2)
    assert kendall_tau_b([0.3, 0.2, 0.1], [0.0, 0.5, 0.5]) == pytest.approx(-2 / np.sqrt(6))
    assert spearman([1, 1, 1], [0, 1, 2]) is None and kendall_tau_b([1, 2, 3], [5, 5, 5]) is None


def test_metrics_match_hand_computed_values_overall_and_by_language():
    result = reranking_metrics(hand_frame(), k=2)
    assert result["k"] == 2
    assert result["overall"] == {
        "tasks": 5, "candidates": 14, "ranked_tasks": 3, "all_correct_tasks": 1, "no_correct_tasks": 1,
        # model ranks: A 2, D 3, E 1
        "hits_at_1": 0.3333, "hits_at_k": 0.6667, "mrr": 0.6111,
        # per task over A, C, D (constant scores: 0), E; B has one pass rate
        "correlation_tasks": 4,
        "spearman": round((-1 / 18 - np.sqrt(3) / 2 + 0 + 1) / 4, 4),
        "kendall": round((0 - 2 / np.sqrt(6) + 0 + 1) / 4, 4),
        "baselines": {
            # A: n=4, c=2: 1/2, 5/6, 13/18; D: n=3, c=1: 1/3, 2/3, 11/18; E: n=2, c=1: 1/2, 1, 3/4
            "random": {"hits_at_1": 0.4444, "hits_at_k": 0.8333, "mrr": 0.6944},
            # shortest-first ranks: A 1, D 2 (tie at length 3 broken against it), E 2
            "shortest_first": {"hits_at_1": 0.3333, "hits_at_k": 1.0, "mrr": 0.6667},
        },
    }
    go, python = result["by_language"]["Go"], result["by_language"]["Python"]
    assert list(result["by_language"]) == ["Go", "Python"]
    counts = ("tasks", "candidates", "ranked_tasks", "no_correct_tasks", "all_correct_tasks")
    assert [go[name] for name in counts] == [2, 6, 1, 1, 0]
    assert (go["hits_at_1"], go["hits_at_k"], go["mrr"], go["correlation_tasks"]) == (0.0, 0.0, 0.3333, 2)
    assert (go["spearman"], go["kendall"]) == (round(-np.sqrt(3) / 4, 4), round(-1 / np.sqrt(6), 4))
    assert go["baselines"] == {"random": {"hits_at_1": 0.3333, "hits_at_k": 0.6667, "mrr": 0.6111},
                               "shortest_first": {"hits_at_1": 0.0, "hits_at_k": 1.0, "mrr": 0.5}}
    assert (python["tasks"], python["candidates"], python["ranked_tasks"], python["all_correct_tasks"]) == (3, 8, 2, 1)
    assert (python["hits_at_1"], python["hits_at_k"], python["mrr"]) == (0.5, 1.0, 0.75)
    assert (python["spearman"], python["kendall"]) == (0.4722, 0.5)
    assert python["baselines"]["random"] == {"hits_at_1": 0.5, "hits_at_k": 0.9167, "mrr": 0.7361}


def test_no_ranked_task_gives_null_figures_not_zero():
    frame = hand_frame()
    result = reranking_metrics(frame[frame["task_id"].isin(["B", "C"])], k=10)
    overall = result["overall"]
    assert (overall["ranked_tasks"], overall["hits_at_1"], overall["mrr"]) == (0, None, None)
    assert overall["baselines"]["random"]["hits_at_k"] is None and overall["correlation_tasks"] == 1


def test_a_task_in_two_languages_is_refused():
    frame = hand_frame()
    frame.loc[0, "language"] = "Go"
    with pytest.raises(ValueError, match="task 'A' has candidates in several languages"):
        reranking_metrics(frame)


@pytest.mark.parametrize("n,c", [(1, 1), (3, 1), (4, 2), (5, 2), (6, 3), (6, 6)])
def test_random_baseline_equals_brute_force_over_every_order(n, c):
    for k in (1, 2, 3, n + 2):
        hits_1 = hits_k = reciprocal = Fraction(0)
        orders = list(itertools.permutations([True] * c + [False] * (n - c)))
        for order in orders:
            rank = order.index(True) + 1
            hits_1 += rank <= 1
            hits_k += rank <= k
            reciprocal += Fraction(1, rank)
        expected = [float(value / len(orders)) for value in (hits_1, hits_k, reciprocal)]
        assert random_order_expectation(n, c, k) == pytest.approx(expected, abs=1e-12), (n, c, k)


def test_shortest_first_breaks_length_ties_against_itself():
    frame = pd.DataFrame({"task_id": ["t"] * 3, "language": ["C"] * 3, "score": [0.0, 1.0, 2.0],
                          "passed": [True, False, False], "pass_rate": [1.0, 0.0, 0.0], "length": [4, 4, 2]})
    assert reranking_metrics(frame, k=2)["overall"]["baselines"]["shortest_first"] == {
        "hits_at_1": 0.0, "hits_at_k": 0.0, "mrr": round(1 / 3, 4)}


# -- candidate files ----------------------------------------------------------------------------

def candidate_rows() -> list[dict]:
    """Eight candidates of three tasks to the candidates contract (two Python tasks, one Go)."""
    rows = []
    for task, language, codes in (
        ("sol/py-1", "Python", ["def f(x):\n    return x + 1\n", "def f(x):\n    return x - 1\n",
                                "def f(x):\n    return x + 2\n"]),
        ("sol/py-2", "Python", ["def g(s):\n    return s[::-1]\n", "def g(s):\n    return s\n"]),
        ("sol/go-1", "Go", ["func H(a int) int { return a * 2 }", "func H(a int) int { return a + a }",
                            "func H(a int) int { return a }"]),
    ):
        for n, code in enumerate(codes):
            passed = n != 1 if task != "sol/go-1" else n < 2
            rows.append({"task_id": task, "candidate_id": f"{task}/c{n}", "language": language,
                         "prompt": f"Solve task {task}.", "code": code,
                         "generator": "solution" if n == 0 else "mutation:flip",
                         "outcome": "passed" if passed else "failed",
                         "passed": passed, "passed_tests": 4 if passed else n, "total_tests": 4,
                         "pass_rate": 1.0 if passed else n / 4})
    rows.sort(key=lambda row: (row["task_id"], row["candidate_id"]))
    return rows


SCHEMA = pa.schema([("task_id", pa.string(), False), ("candidate_id", pa.string(), False), ("language", pa.string()),
                    ("prompt", pa.string()), ("code", pa.string()), ("generator", pa.string()),
                    ("outcome", pa.string()),
                    ("passed", pa.bool_()), ("passed_tests", pa.int32()), ("total_tests", pa.int32()),
                    ("pass_rate", pa.float64())])


def write_candidates(folder: Path, rows: list[dict], files: int = 2) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for k in range(files):
        part = rows[k * len(rows) // files:(k + 1) * len(rows) // files]
        pq.write_table(pa.Table.from_pylist(part, SCHEMA), folder / f"candidates-{k:05d}-of-{files:05d}.parquet")
    return folder


def test_reader_takes_a_folder_or_a_file_and_sorts(tmp_path):
    rows = candidate_rows()
    folder = write_candidates(tmp_path / "candidates", rows[::-1], files=3)  # reversed: the reader sorts
    table = read_candidates(folder, EVALUATION_COLUMNS)
    assert table.column_names == SCHEMA.names
    keys = [(row["task_id"], row["candidate_id"]) for row in rows]
    assert [(r["task_id"], r["candidate_id"]) for r in table.to_pylist()] == keys
    single = tmp_path / "one.parquet"
    pq.write_table(pa.Table.from_pylist(rows, SCHEMA), single)
    assert read_candidates(single, EVALUATION_COLUMNS).equals(table)


@pytest.mark.parametrize("break_it,message", [
    (lambda t: t.drop_columns(["pass_rate"]), r"one\.parquet: no column pass_rate \(it has"),
    (lambda t: t.slice(0, 0), r"one\.parquet: no candidate \(the file is empty\)"),
    (lambda t: t.set_column(1, "candidate_id", pa.array(["x"] * t.num_rows)),
     r"one\.parquet: columns \(task_id, candidate_id\) repeat \('sol/go-1', 'x'\)"),
    (lambda t: t.set_column(7, "passed", pa.array([1] * t.num_rows)),
     r"one\.parquet: column passed is int64, expected bool"),
    (lambda t: t.set_column(4, "code", pa.array([None] + ["c"] * (t.num_rows - 1), pa.string())),
     r"one\.parquet: column code has 1 null value\(s\) \(first at row 0\)"),
    (lambda t: t.set_column(10, "pass_rate", pa.array([1.5] * t.num_rows)), r"one\.parquet: column pass_rate is 1\.5"),
    (lambda t: t.set_column(2, "language", pa.array(["Cobol"] * t.num_rows)),
     r"one\.parquet: column language has unknown value\(s\) 'Cobol'"),
])
def test_bad_candidates_are_named_with_file_and_column(tmp_path, break_it, message):
    path = tmp_path / "one.parquet"
    pq.write_table(break_it(pa.Table.from_pylist(candidate_rows(), SCHEMA)), path)
    with pytest.raises(DataError, match=message):
        read_candidates(path, EVALUATION_COLUMNS)


def test_a_candidate_repeated_across_files_names_both(tmp_path):
    rows = candidate_rows()
    folder = write_candidates(tmp_path / "candidates", rows + rows[:1], files=2)
    with pytest.raises(DataError, match=r"candidates-00000-of-00002\.parquet and .*candidates-00001-of-00002\.parquet: "
                                        r"columns \(task_id, candidate_id\) repeat \('sol/go-1', 'sol/go-1/c0'\)"):
        read_candidates(folder)
    with pytest.raises(DataError, match="no such candidates file or folder"):
        read_candidates(tmp_path / "nothing")


def test_candidate_ranks_break_score_ties_against_the_model():
    table = pa.table({"task_id": ["t", "t", "t", "u"], "candidate_id": ["a", "b", "c", "a"],
                      "language": ["Go"] * 4, "passed": [True, False, False, True], "pass_rate": [1.0, 0.0, 0.5, 1.0]})
    frame = candidate_scores_frame(table, np.array([0.5, 0.5, 0.9, 0.1]))
    assert list(frame["rank"]) == [3, 2, 1, 1]  # c first (0.9), then b before a at 0.5: the incorrect one
    assert list(frame["candidate_id"]) == ["a", "b", "c", "a"]  # rows keep their order


# -- with the tiny reward model -----------------------------------------------------------------

def expected_scores(model: Path, rows: list[dict]) -> np.ndarray:
    return RewardScorer.from_pretrained(model).score([r["prompt"] for r in rows], [r["code"] for r in rows],
                                                    criterion="Functional_Correctness")


def test_evaluate_rerank_alone_writes_the_section_and_every_candidate_score(tmp_path, reward_model):
    rows = candidate_rows()
    folder = write_candidates(tmp_path / "out" / "candidates", rows)
    results = evaluate(reward_model, None, tmp_path / "eval", rerank=folder, hits_k=2)
    assert sorted(path.name for path in (tmp_path / "eval").iterdir()) == ["candidate_scores.parquet", "results.json"]
    assert json.loads((tmp_path / "eval" / "results.json").read_text()) == results
    assert list(results) == ["reranking"]
    section = results["reranking"]
    assert (section["criterion"], section["k"]) == ("Functional_Correctness", 2)
    overall = section["overall"]
    assert (overall["tasks"], overall["candidates"], overall["ranked_tasks"]) == (3, 8, 3)
    assert (section["by_language"]["Python"]["tasks"], section["by_language"]["Go"]["tasks"]) == (2, 1)
    scores = pd.read_parquet(tmp_path / "eval" / "candidate_scores.parquet")
    assert list(scores.columns) == ["task_id", "candidate_id", "language", "generator", "passed", "pass_rate",
                                   "score", "rank"]
    assert list(scores["candidate_id"]) == [row["candidate_id"] for row in rows]
    np.testing.assert_allclose(scores["score"], expected_scores(reward_model, rows), rtol=1e-5, atol=1e-5)
    assert len(set(np.round(scores["score"], 6))) == len(rows)  # distinct: the figures depend on the scores
    for task, group in scores.groupby("task_id"):
        assert sorted(group["rank"]) == list(range(1, len(group) + 1))
        assert group.sort_values("rank")["score"].is_monotonic_decreasing, task
    # the section is the metrics of the written scores
    figures = scores.assign(length=[len(row["code"]) for row in rows])
    assert section["overall"] == reranking_metrics(figures, k=2)["overall"]


def test_evaluate_with_pairs_and_rerank_writes_both(tmp_path, reward_model, capsys):
    data = write_shards(tmp_path / "pairs", make_rows(6))
    candidates = tmp_path / "candidates.parquet"
    pq.write_table(pa.Table.from_pylist(candidate_rows(), SCHEMA), candidates)
    assert evaluate_main(["--model", str(reward_model), "--data", str(data), "--output", str(tmp_path / "eval"),
                          "--rerank", str(candidates)]) == 0
    results = json.loads((tmp_path / "eval" / "results.json").read_text())
    assert results["overall"]["total_examples"] == 6 and results["reranking"]["k"] == 10
    assert results["reranking"]["overall"]["hits_at_k"] == 1.0  # every task has at most 3 candidates
    assert len(pd.read_parquet(tmp_path / "eval" / "scores.parquet")) == 6
    assert len(pd.read_parquet(tmp_path / "eval" / "candidate_scores.parquet")) == 8
    assert '"reranking"' in capsys.readouterr().out
    assert evaluate_main(["--model", str(reward_model), "--output", str(tmp_path / "none")]) == 2
    assert "nothing to evaluate" in capsys.readouterr().err


def test_codeprefs_rerank_writes_each_tasks_top_k_in_order(tmp_path, reward_model):
    rows = candidate_rows()
    folder = write_candidates(tmp_path / "candidates", rows)
    result = subprocess.run([sys.executable, "-m", "codeprefs.cli", "rerank", "--model", str(reward_model),
                             "--candidates", str(folder), "--output", str(tmp_path / "best.parquet"), "--top-k", "2"],
                            capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "kept 6 candidate(s) of 3 task(s)" in result.stdout
    best = pq.read_table(tmp_path / "best.parquet").to_pylist()
    scores = dict(zip((r["candidate_id"] for r in rows), expected_scores(reward_model, rows)))
    expected = []
    for task in sorted({r["task_id"] for r in rows}):
        ids = sorted((r["candidate_id"] for r in rows if r["task_id"] == task), key=lambda c: (-scores[c], c))
        expected += [(task, c, rank) for rank, c in enumerate(ids[:2], 1)]
    assert [(r["task_id"], r["candidate_id"], r["rank"]) for r in best] == expected
    assert [r["score"] for r in best] == pytest.approx([scores[c] for _, c, _ in expected], abs=1e-5)
    assert set(best[0]) == {*SCHEMA.names, "score", "rank"}  # every input column comes along

    bad = tmp_path / "bad.parquet"
    pq.write_table(pa.Table.from_pylist(rows, SCHEMA).drop_columns(["code"]), bad)
    result = subprocess.run([sys.executable, "-m", "codeprefs.cli", "rerank", "--model", str(reward_model),
                             "--candidates", str(bad), "--output", str(tmp_path / "x.parquet")],
                            capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert result.returncode == 2 and f"error: {bad}: no column code" in result.stderr
    assert not (tmp_path / "x.parquet").exists()


def test_rerank_refuses_bad_options_and_unscorable_candidates(tmp_path, reward_model, capsys):
    rows = candidate_rows()
    rows[3]["code"] = "   "
    path = tmp_path / "c.parquet"
    pq.write_table(pa.Table.from_pylist(rows, SCHEMA), path)
    base = ["--model", str(reward_model), "--candidates", str(path), "--output", str(tmp_path / "o.parquet")]
    assert rerank_main(base) == 2
    assert f"1 candidate(s) cannot be scored ({rows[3]['task_id']}/{rows[3]['candidate_id']}: empty_response)" \
        in capsys.readouterr().err
    assert rerank_main([*base, "--top-k", "0"]) == 2
    assert "--top-k must be at least 1" in capsys.readouterr().err
    assert rerank_main([*base, "--criterion", "Speed"]) == 2
    assert "unknown criterion 'Speed'" in capsys.readouterr().err
