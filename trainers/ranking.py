"""Re-ranking metrics: how well scores order each task's candidates (pure; no model, no files).

Input: one row per candidate with ``task_id, language, score, passed, pass_rate, length``. Every
figure is computed per task, then averaged over tasks (each task weighs the same, however many
candidates it has), overall and by language:

* A task is *ranked* when it has at least one correct (``passed``) and one incorrect candidate.
  Tasks whose candidates all pass or all fail say nothing about the order (every order hits, or
  none does); they are counted apart (``all_correct_tasks``, ``no_correct_tasks``) and left out
  of Hits and MRR.
* Candidates are ordered by score, highest first, **ties broken against the model** (as pairwise
  accuracy counts a tie as wrong): among equal scores the incorrect candidates come first. The
  rank of the first correct candidate is then ``1 + #(score > s) + #(incorrect with score == s)``,
  ``s`` the best score of a correct one.
* ``hits_at_1`` / ``hits_at_k``: share of ranked tasks whose first correct candidate is within
  the top 1 / top ``k`` (a task with ``k`` or fewer candidates always hits at ``k``); ``mrr``: mean
  of 1 / that rank.
* ``spearman`` / ``kendall``: rank correlation of score with pass rate within each task (Spearman:
  Pearson's r of average ranks; Kendall: tau-b; both correct for ties), averaged over the tasks
  whose pass rates are not all equal (``correlation_tasks``; a task with no correct candidate
  still counts when its partial pass rates differ). Per task, not pooled: scores of different
  tasks are not on one scale (an easy task's candidates may all score higher), and re-ranking
  only ever compares candidates of one task; pooling would reward telling tasks apart. A task
  whose scores are all equal gets 0 (no order expressed).
* Baselines on the same ranked tasks: ``random``, the **expected** Hits and MRR of a uniformly
  random order, exact: with ``c`` correct among ``n``, ``P(first correct is past rank r) =
  C(n-c, r) / C(n, r)``, so ``Hits@K = 1 - C(n-c, K) / C(n, K)`` and ``E[1/rank] = sum over r of
  (P(past r-1) - P(past r)) / r``; ``shortest_first``, candidates ordered by code length, shortest
  first, ties broken against it too.

Figures are rounded to 4 decimals; a figure over no task is null.
"""

from __future__ import annotations

from collections.abc import Sequence
from fractions import Fraction
from math import comb
from typing import Any

import numpy as np
import pandas as pd

METRIC_COLUMNS = ("task_id", "language", "score", "passed", "pass_rate", "length")


def first_correct_rank(keys: Sequence[float] | np.ndarray, correct: Sequence[bool] | np.ndarray) -> int | None:
    """1-based rank of the first correct candidate when ordered by ``keys``, highest first,
    incorrect candidates first among equal keys; None when no candidate is correct."""
    keys, correct = np.asarray(keys, float), np.asarray(correct, bool)
    if not correct.any():
        return None
    best = keys[correct].max()
    return 1 + int((keys > best).sum()) + int(((keys == best) & ~correct).sum())


def random_order_expectation(n: int, c: int, k: int) -> tuple[float, float, float]:
    """Exact expected (Hits@1, Hits@k, reciprocal rank of the first correct) of a uniformly random
    order of ``n`` candidates of which ``c`` (at least one) are correct."""
    if not 1 <= c <= n or k < 1:
        raise ValueError(f"need 1 <= correct <= candidates and k >= 1, got n={n}, c={c}, k={k}")

    def past(r: int) -> Fraction:  # P(the first correct candidate is after rank r)
        return Fraction(comb(n - c, r), comb(n, r)) if r <= n else Fraction(0)

    reciprocal = sum((past(r - 1) - past(r)) / r for r in range(1, n - c + 2))
    return float(1 - past(1)), float(1 - past(k)), float(reciprocal)


def average_ranks(values: np.ndarray) -> np.ndarray:
    """1-based ranks of ``values``, tied values sharing the mean of their ranks."""
    order = np.argsort(values, kind="stable")
    ordered = values[order]
    starts = np.flatnonzero(np.r_[True, ordered[1:] != ordered[:-1]])
    ends = np.r_[starts[1:], len(values)]
    ranks = np.empty(len(values))
    for start, end in zip(starts, ends):
        ranks[order[start:end]] = (start + end + 1) / 2
    return ranks


def spearman(x: Sequence[float] | np.ndarray, y: Sequence[float] | np.ndarray) -> float | None:
    """Spearman's rho with ties (Pearson's r of average ranks); None when either side is constant."""
    a, b = average_ranks(np.asarray(x, float)), average_ranks(np.asarray(y, float))
    a, b = a - a.mean(), b - b.mean()
    denominator = np.sqrt((a * a).sum() * (b * b).sum())
    return float((a * b).sum() / denominator) if denominator > 0 else None


def kendall_tau_b(x: Sequence[float] | np.ndarray, y: Sequence[float] | np.ndarray) -> float | None:
    """Kendall's tau-b (ties on either side corrected); None when either side is constant."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    concordance, untied_x, untied_y = 0.0, 0, 0
    for i in range(len(x) - 1):  # one row of pairs at a time: memory stays linear in the task's size
        dx, dy = np.sign(x[i + 1:] - x[i]), np.sign(y[i + 1:] - y[i])
        concordance += float((dx * dy).sum())
        untied_x += int((dx != 0).sum())
        untied_y += int((dy != 0).sum())
    denominator = np.sqrt(float(untied_x) * float(untied_y))
    return concordance / denominator if denominator > 0 else None


def task_figures(task: pd.DataFrame, k: int) -> dict[str, Any]:
    """The figures of one task's candidates (columns of :data:`METRIC_COLUMNS`)."""
    correct = task["passed"].to_numpy(bool)
    scores = task["score"].to_numpy(float)
    rates = task["pass_rate"].to_numpy(float)
    n, c = len(task), int(correct.sum())
    figures: dict[str, Any] = {"status": "ranked" if 0 < c < n else ("no_correct" if c == 0 else "all_correct"),
                               "candidates": n, "spearman": None, "kendall": None}
    if np.unique(rates).size > 1:  # the correlation is defined by the pass rates varying
        figures["spearman"] = spearman(scores, rates) or 0.0
        figures["kendall"] = kendall_tau_b(scores, rates) or 0.0
    if figures["status"] == "ranked":
        figures["model"] = first_correct_rank(scores, correct)
        figures["shortest_first"] = first_correct_rank(-task["length"].to_numpy(float), correct)
        figures["random"] = random_order_expectation(n, c, k)
    return figures


def _mean(values: list[float]) -> float | None:
    return round(float(np.mean(values)), 4) if values else None


def _hits(ranks: list[int], k: int) -> dict[str, float | None]:
    return {"hits_at_1": _mean([float(rank <= 1) for rank in ranks]),
            "hits_at_k": _mean([float(rank <= k) for rank in ranks]),
            "mrr": _mean([1.0 / rank for rank in ranks])}


def summarize(tasks: list[dict[str, Any]], k: int) -> dict[str, Any]:
    """Figures over the tasks ``tasks`` (each from :func:`task_figures`)."""
    ranked = [task for task in tasks if task["status"] == "ranked"]
    correlated = [task for task in tasks if task["spearman"] is not None]
    expected = [task["random"] for task in ranked]
    return {
        "tasks": len(tasks),
        "candidates": sum(task["candidates"] for task in tasks),
        "ranked_tasks": len(ranked),
        "all_correct_tasks": sum(task["status"] == "all_correct" for task in tasks),
        "no_correct_tasks": sum(task["status"] == "no_correct" for task in tasks),
        **_hits([task["model"] for task in ranked], k),
        "correlation_tasks": len(correlated),
        "spearman": _mean([task["spearman"] for task in correlated]),
        "kendall": _mean([task["kendall"] for task in correlated]),
        "baselines": {
            "random": {"hits_at_1": _mean([e[0] for e in expected]), "hits_at_k": _mean([e[1] for e in expected]),
                       "mrr": _mean([e[2] for e in expected])},
            "shortest_first": _hits([task["shortest_first"] for task in ranked], k),
        },
    }


def reranking_metrics(candidates: pd.DataFrame, k: int = 10) -> dict[str, Any]:
    """``{"k", "overall", "by_language"}`` for ``candidates`` (columns :data:`METRIC_COLUMNS`;
    one language per task), languages in sorted order."""
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    missing = [column for column in METRIC_COLUMNS if column not in candidates.columns]
    if missing:
        raise ValueError(f"candidates lack column(s) {', '.join(missing)}")
    per_task, languages = [], []
    for task_id, task in candidates.groupby("task_id", sort=True):
        spoken = task["language"].unique()
        if len(spoken) != 1:
            raise ValueError(f"task {task_id!r} has candidates in several languages: {', '.join(map(str, spoken))}")
        per_task.append(task_figures(task, k))
        languages.append(str(spoken[0]))
    by_language = {language: summarize([figures for figures, spoken in zip(per_task, languages)
                                        if spoken == language], k)
                   for language in sorted(set(languages))}
    return {"k": k, "overall": summarize(per_task, k), "by_language": by_language}
