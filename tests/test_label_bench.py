"""The judged-pairs fixture and the label-precision figures computed from it."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

from codeprefs.core.schema import Aspect

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = sorted((ROOT / "tests" / "fixtures" / "judged").glob("*.jsonl"))


def _bench():
    spec = importlib.util.spec_from_file_location("bench_labels", ROOT / "benchmarks" / "bench_labels.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def _judged(message: str, aspect: str, criteria: list[str], better: bool = True) -> dict:
    return {"id": message[:8], "repo": "o/r", "message": message, "aspect": aspect,
            "judged": {"criteria": criteria, "label_correct": aspect in criteria, "chosen_better": better,
                       "prompt_intelligible": True, "note": ""}}


def test_figures_count_precision_and_kept_pairs_per_rule():
    bench = _bench()
    rows = [
        _judged("Fix memory leak in the parser", "Memory_Efficiency", ["Memory_Efficiency"]),
        _judged("Update resource loading for the new API", "Security_Hardness", []),  # 'rce' in 'resource'
        _judged("Fix bug: crash when the list is empty", "Functional_Correctness", ["Functional_Correctness"]),
        _judged("Rename helpers for clarity", "Readability_Maintainability", ["Readability_Maintainability"]),
    ]
    paper = bench.figures(rows, bench.relabel(rows, "substring"))
    default = bench.figures(rows, bench.relabel(rows, "word"))

    security = Aspect.SECURITY_HARDNESS.value
    assert (paper[security].labelled, paper[security].correct) == (1, 0)  # the substring rule fires
    assert default[security].labelled == 0  # the word rule does not
    memory = Aspect.MEMORY_EFFICIENCY.value
    assert (default[memory].labelled, default[memory].correct, default[memory].precision) == (1, 1, 1.0)
    assert (default[memory].right_before, default[memory].kept, default[memory].kept_share) == (1, 1, 1.0)
    assert default[Aspect.RUNTIME_EFFICIENCY.value].precision is None  # nothing labelled


@pytest.mark.skipif(not FIXTURES, reason="no judged fixture in this checkout")
def test_the_judged_fixture_holds_judgments_and_provenance_but_no_code():
    bench = _bench()
    rows = bench.read_judged(str(path) for path in FIXTURES)
    names = {aspect.value for aspect in Aspect}
    assert len(rows) >= 200 and len({row["repo"] for row in rows}) >= 8
    assert len({row["id"] for row in rows}) == len(rows)
    for row in rows:
        assert not {"chosen", "rejected", "input"} & set(row), row["id"]  # never code
        assert row["aspect"] in names and set(row["judged"]["criteria"]) <= names, row["id"]
        assert row["judged"]["label_correct"] == (row["aspect"] in row["judged"]["criteria"]), row["id"]
        assert all(isinstance(row["judged"][key], bool)
                   for key in ("label_correct", "chosen_better", "prompt_intelligible")), row["id"]
        assert row["repo"] and row["commit"] and row["path"], row["id"]
    assert json.dumps(rows)  # plain JSON data


HELDOUT = sorted((ROOT / "tests" / "fixtures" / "judged-heldout").glob("*.jsonl"))


@pytest.mark.skipif(not HELDOUT, reason="no held-out fixture in this checkout")
def test_the_held_out_sample_is_what_the_default_rule_labels_and_meets_the_precision_goal(capsys):
    bench = _bench()
    rows = bench.read_judged(str(path) for path in HELDOUT)
    assert not {row["repo"] for row in rows} & {row["repo"] for row in bench.read_judged(map(str, FIXTURES))}
    for row in rows:
        assert not {"chosen", "rejected", "input"} & set(row), row["id"]
        assert row["judged"]["label_correct"] == (row["aspect"] in row["judged"]["criteria"]), row["id"]
    # the rule still gives every sampled pair the label it was judged under (else re-judge)
    assert bench.relabel(rows, "default") == [row["aspect"] for row in rows]
    assert bench.report_heldout(rows)
    printed = capsys.readouterr().out
    assert "Runtime_Efficiency             default precision   85% (40/47)" in printed
    assert "Security_Hardness              default precision   80% (20/25)" in printed


SCOPE_FIXTURE = ROOT / "tests" / "fixtures" / "judged-scopes" / "new-scopes.jsonl"


def test_the_judged_scopes_fixture_holds_judgments_of_each_new_pair_kind_and_no_code():
    """Pairs the scope changes of 2026-12-06 added or changed, ten of each kind, read and judged
    (README, "Change-scoped pairs")."""
    rows = [json.loads(line) for line in SCOPE_FIXTURE.read_text().splitlines()]
    assert len({row["id"] for row in rows}) == len(rows) == 50
    groups = {row["group"] for row in rows}
    assert groups == {"large_file_function", "function_container_window", "split_window", "under_error_elsewhere",
                      "doc_attached"}
    for row in rows:
        assert not {"chosen", "rejected", "input"} & set(row), row["id"]  # never code
        assert row["repo"] and len(row["commit"]) == 40 and row["path"] and row["message"]
        judged = row["judged"]
        assert {type(judged[key]) for key in ("label_correct", "chosen_better", "scope_ok")} == {bool}
        assert judged["note"]
    assert sum(row["judged"]["scope_ok"] for row in rows) == 45
    assert sum(row["judged"]["chosen_better"] for row in rows) == 46
    assert sum(row["judged"]["label_correct"] for row in rows) == 44
