"""No contradictions in a build (issue #13, item 3), and comment-only changes (item 2).

Real git histories built in the test, mined by real builds on the local Ray instance: a revert
is dropped at the message stage, a pair whose inverse is also mined goes on both sides, a
whitespace-only change survives only as Readability_Maintainability, and a comment-only change
becomes Readability_Maintainability or is dropped.
"""

from __future__ import annotations

import polars as pl
import pytest

from codeprefs.pipelines.manifest import parse_manifest
from codeprefs.pipelines.build import build
from tests.samples import STATS_V1, STATS_V2

pytestmark = pytest.mark.ray

CLAMP_V1 = ("def clamp(value, low, high):\n    if value < low:\n        return low\n"
            "    if value > high:\n        return high\n    return value\n")
CLAMP_V2 = ("def clamp(value, low, high):\n    if value < low:\n        return high\n"
            "    if value > high:\n        return low\n    return value\n")
CLAMP_TABS = CLAMP_V1.replace("    ", "\t")
CLAMP_COMMENTED = CLAMP_TABS.replace("def clamp(value, low, high):\n",
                                     "def clamp(value, low, high):  # bounds included\n")
CLAMP_DOCUMENTED = CLAMP_COMMENTED.replace("high):  # bounds included\n",
                                           'high):  # bounds included\n\t"""Value, within [low, high]."""\n')
CLAMP_REFORMATTED = CLAMP_DOCUMENTED.replace("\t", "    ")


@pytest.fixture
def history(make_repo):
    repo = make_repo("contradictions")
    repo.commit("Add statistics helpers", {"stats.py": STATS_V1})
    original = repo.commit("Fix bug: mean was off by one", {"stats.py": STATS_V2})
    repo.git("revert", "--no-edit", original)
    repo.commit("Add the clamp helper", {"clamp.py": CLAMP_V1})
    repo.commit("Fix memory leak in clamp", {"clamp.py": CLAMP_V2})  # A -> B
    repo.commit("Fix bug: clamp bounds were swapped", {"clamp.py": CLAMP_V1})  # B -> A: its inverse
    repo.commit("Fix bug in the clamp indentation", {"clamp.py": CLAMP_TABS})  # whitespace only
    repo.commit("Fix error handling notes in clamp", {"clamp.py": CLAMP_COMMENTED})  # comment only
    repo.commit("Fix typo, improve readability of the clamp docstring", {"clamp.py": CLAMP_DOCUMENTED})
    repo.commit("Reformat clamp to the project's code style", {"clamp.py": CLAMP_REFORMATTED})
    return repo


def _build(tmp_path, repo, **filters):
    manifest = parse_manifest({"name": "contradictions", "sources": [{"type": "git", "repos": [str(repo.path)]}],
                               **({"filters": filters} if filters else {})}, tmp_path)
    out = tmp_path / "out"
    record = build(manifest, out)
    kept = pl.read_parquet(out / "data" / "*.parquet")
    rejects = pl.read_parquet(out / "rejects" / "*.parquet")
    return record, kept, rejects


def _fates(kept: pl.DataFrame, rejects: pl.DataFrame) -> dict[str, str]:
    fates = {row["message"].splitlines()[0]: f"kept {row['aspect']}" for row in kept.iter_rows(named=True)}
    for row in rejects.iter_rows(named=True):
        fates[row["message"].splitlines()[0]] = f"{row['drop_stage']}/{row['drop_reason']}"
    return fates


def test_reverts_inverse_pairs_and_comment_or_whitespace_changes(ray_local, tmp_path, history):
    record, kept, rejects = _build(tmp_path, history)
    fates = _fates(kept, rejects)
    assert fates == {
        "Add statistics helpers": "list/root_commit",
        "Fix bug: mean was off by one": "kept Functional_Correctness",  # its revert is dropped, not it
        'Revert "Fix bug: mean was off by one"': "message/revert",
        "Add the clamp helper": "list/not_modified_in_place",
        "Fix memory leak in clamp": "dedupe/inverse_pair",
        "Fix bug: clamp bounds were swapped": "dedupe/inverse_pair",
        "Fix bug in the clamp indentation": "validate/unchanged_after_whitespace",
        "Fix error handling notes in clamp": "validate/comment_only_change",
        "Fix typo, improve readability of the clamp docstring": "kept Readability_Maintainability",
        "Reformat clamp to the project's code style": "kept Readability_Maintainability",
    }
    funnel = {stage["stage"]: stage for stage in record["funnel"]}
    assert funnel["message"]["reasons"] == {"revert": 1}
    assert funnel["dedupe"]["reasons"] == {"inverse_pair": 2}
    assert funnel["validate"]["reasons"] == {"unchanged_after_whitespace": 1, "comment_only_change": 1}
    assert record["rows"] == {"total": 10, "kept": 3, "dropped": 7}


def test_comment_only_rule_is_configurable(ray_local, tmp_path, history):
    _, kept, rejects = _build(tmp_path, history, criteria={"comment_only": "drop"})
    fates = _fates(kept, rejects)
    assert fates["Fix typo, improve readability of the clamp docstring"] == "validate/comment_only_change"
    assert fates["Reformat clamp to the project's code style"] == "validate/unchanged_after_whitespace"
    _, kept, rejects = _build(tmp_path, history, criteria={"comment_only": "keep"})
    fates = _fates(kept, rejects)
    assert fates["Fix error handling notes in clamp"] == "kept Functional_Correctness"
    assert fates["Fix bug in the clamp indentation"] == "validate/unchanged_after_whitespace"


def test_the_papers_substring_rule_still_labels_as_before(ray_local, tmp_path, history):
    _, kept, rejects = _build(tmp_path, history, criteria={"match": "substring"})
    fates = _fates(kept, rejects)
    assert fates["Fix bug: mean was off by one"] == "kept Functional_Correctness"
