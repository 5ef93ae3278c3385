"""Label precision of the criteria rules, measured on pairs judged by hand.

    .venv/bin/python benchmarks/bench_labels.py [tests/fixtures/judged/*.jsonl]

The fixture (``tests/fixtures/judged/<owner>__<name>.jsonl``, one repository per file) holds
pairs mined from real public repositories with the paper's permissive rule (``match: substring``,
so every other rule labels a subset of them), with change-scoped pairs, sampled up to 6 per
criterion and repository, then read and judged by hand: the criteria the change really improves,
whether chosen is really better, whether the prompt is intelligible without the repository. It
keeps ids, provenance, the commit message and the judgments, never code.

For each rule (``substring``, the paper's; ``word_start``; ``word``, with its exclusions and
context rules; ``default``, a build's default: ``word`` with changes to test files dropped) the labels are
recomputed from the commit messages, and per criterion it prints:

* **precision**: of the judged pairs the rule labels with the criterion, the share whose change
  really improves it;
* **kept**: of the pairs whose paper label was right, the share the rule still labels right
  (the issue's ">= 85% of correctly labelled pairs kept");
* for the paper's labels: how often chosen is really better, and both (right label, better code).

Goals (issue #13): precision >= 80% for every criterion the default rule labels >= 20 judged
pairs with, and >= 85% of the correctly labelled pairs kept.

Measured figures, the sample and the date are in README.md ("Label quality").
"""

from __future__ import annotations

import argparse
import glob
import json
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from codeprefs.core.schema import Aspect  # noqa: E402
from codeprefs.filters.criteria import CriteriaLabeler  # noqa: E402
from codeprefs.filters.testfiles import is_test_path  # noqa: E402

RULES = ("substring", "word_start", "word", "default")
DEFAULT_FIXTURES = "tests/fixtures/judged/*.jsonl"
HELDOUT_FIXTURES = "tests/fixtures/judged-heldout/*.jsonl"
MIN_JUDGED = 20
PRECISION_GOAL = 0.80
KEPT_GOAL = 0.85


@dataclass(frozen=True)
class CriterionFigures:
    """One rule's figures for one criterion."""

    labelled: int  # judged pairs the rule labels with the criterion
    correct: int  # ... whose change really improves it
    right_before: int  # pairs the paper's rule labelled with it, rightly
    kept: int  # ... that this rule still labels rightly (with any criterion the change improves)

    @property
    def precision(self) -> float | None:
        return self.correct / self.labelled if self.labelled else None

    @property
    def kept_share(self) -> float | None:
        return self.kept / self.right_before if self.right_before else None


def read_judged(paths: Iterable[str]) -> list[dict]:
    """Every judged pair of the fixture files, checked for the keys the figures need."""
    rows = []
    for path in paths:
        for number, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
            if not line.strip():
                continue
            row = json.loads(line)
            missing = {"id", "message", "aspect", "judged"} - set(row)
            if missing:
                raise ValueError(f"{path}:{number}: missing {sorted(missing)}")
            rows.append(row)
    return rows


def relabel(rows: list[dict], rule: str) -> list[str | None]:
    """The primary criterion ``rule`` gives each row's commit message (``None``: no criterion).

    ``default`` is what a build does by default: the ``word`` rule, and a change to a test file
    dropped (``filters.criteria.test_files: drop``; a row without a ``path`` is kept)."""
    labeler = CriteriaLabeler(match="word" if rule == "default" else rule)  # type: ignore[arg-type]
    labels = []
    for row in rows:
        found = labeler.label(row["message"])
        if rule == "default" and is_test_path(row.get("path") or ""):
            found = None
        labels.append(found.aspect.value if found else None)
    return labels


def figures(rows: list[dict], labels: list[str | None]) -> dict[str, CriterionFigures]:
    """Per criterion: ``labels`` (one rule's) against the judgments, and against the paper's labels."""
    out = {}
    for aspect in Aspect:
        name = aspect.value
        labelled = correct = right_before = kept = 0
        for row, label in zip(rows, labels, strict=True):
            truth = set(row["judged"]["criteria"])
            if label == name:
                labelled += 1
                correct += name in truth
            if row["aspect"] == name and name in truth:
                right_before += 1
                kept += label is not None and label in truth
        out[name] = CriterionFigures(labelled, correct, right_before, kept)
    return out


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.0f}%"


def report(rows: list[dict]) -> bool:
    """Print the tables; return whether the default rule meets the goals."""
    repos = sorted({row.get("repo", "?") for row in rows})
    print(f"{len(rows)} judged pairs from {len(repos)} repositories: {', '.join(repos)}\n")
    by_rule = {rule: figures(rows, relabel(rows, rule)) for rule in RULES}
    print(f"{'criterion':30} " + " ".join(f"{rule + ' prec':>17} {'kept':>5}" for rule in RULES))
    for aspect in Aspect:
        cells = []
        for rule in RULES:
            f = by_rule[rule][aspect.value]
            cells.append(f"{_percent(f.precision):>9} ({f.correct:>2}/{f.labelled:>2}) {_percent(f.kept_share):>5}")
        print(f"{aspect.value:30} " + " ".join(cells))

    print(f"\n{'paper labels':30} {'judged':>7} {'label right':>12} {'chosen better':>14} {'both':>6}")
    for aspect in Aspect:
        judged = [row["judged"] for row in rows if row["aspect"] == aspect.value]
        if not judged:
            continue
        right = sum(j["label_correct"] for j in judged) / len(judged)
        better = sum(j["chosen_better"] for j in judged) / len(judged)
        both = sum(j["label_correct"] and j["chosen_better"] for j in judged) / len(judged)
        print(f"{aspect.value:30} {len(judged):>7} {_percent(right):>12} {_percent(better):>14} {_percent(both):>6}")
    read = [row["judged"]["prompt_intelligible"] for row in rows if row["judged"]["prompt_intelligible"] is not None]
    if read:
        print(f"\nprompts intelligible without the repository: {_percent(sum(read) / len(read))} of {len(read)}")

    default = by_rule["default"]
    met = True
    for name, f in default.items():
        if f.labelled >= MIN_JUDGED and (f.precision or 0) < PRECISION_GOAL:
            print(f"goal missed: {name} precision {_percent(f.precision)} < {PRECISION_GOAL:.0%}")
            met = False
    right_before = sum(f.right_before for f in default.values())
    kept = sum(f.kept for f in default.values())
    share = kept / right_before if right_before else None
    print(f"correctly labelled pairs kept by the default rule: {_percent(share)} ({kept}/{right_before})")
    if share is not None and share < KEPT_GOAL:
        print(f"goal missed: kept {_percent(share)} < {KEPT_GOAL:.0%}")
        met = False
    return met


def report_heldout(rows: list[dict]) -> bool:
    """Print the default rule's precision on the held-out sample; return whether it meets the goal.

    The held-out sample holds every pair the default rule labelled with the criteria it covers,
    so it measures precision, not recall."""
    repos = sorted({row.get("repo", "?") for row in rows})
    print(f"\nheld-out: {len(rows)} judged pairs from {len(repos)} other repositories: {', '.join(repos)}")
    labels = relabel(rows, "default")
    drifted = sum(label != row["aspect"] for row, label in zip(rows, labels, strict=True))
    if drifted:
        print(f"  ({drifted} pairs are labelled differently by today's rule than when sampled)")
    met = True
    for aspect in Aspect:
        f = figures(rows, labels)[aspect.value]
        if not f.labelled:
            continue
        print(f"  {aspect.value:30} default precision {_percent(f.precision):>5} ({f.correct}/{f.labelled})")
        if f.labelled >= MIN_JUDGED and (f.precision or 0) < PRECISION_GOAL:
            print(f"  goal missed: {aspect.value} precision {_percent(f.precision)} < {PRECISION_GOAL:.0%}")
            met = False
    return met


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("fixtures", nargs="*", help=f"judged fixture files (default: {DEFAULT_FIXTURES})")
    args = parser.parse_args()
    paths = args.fixtures or sorted(glob.glob(str(Path(__file__).resolve().parents[1] / DEFAULT_FIXTURES)))
    if not paths:
        parser.error(f"no fixture files match {DEFAULT_FIXTURES}")
    met = report(read_judged(paths))
    heldout = sorted(glob.glob(str(Path(__file__).resolve().parents[1] / HELDOUT_FIXTURES)))
    if not args.fixtures and heldout:
        met = report_heldout(read_judged(heldout)) and met
    print("\ngoals met" if met else "\ngoals not met")
    return 0


if __name__ == "__main__":
    sys.exit(main())
