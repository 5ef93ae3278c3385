"""What the pairs teach, measured once by the build (run.json: quality) and shown by
``codeprefs stats`` and the dataset card."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from codeprefs.card import write_card
from codeprefs.pipelines.manifest import parse_manifest
from codeprefs.pipelines.build import build
from codeprefs.pipelines.quality import change_share, summarize

ROOT = Path(__file__).resolve().parents[1]


def test_change_share_counts_removed_and_added_lines_over_both_sides():
    old = "a\nb\nc\nd\n"
    assert change_share(old, old) == 0.0
    assert change_share("a\nb\nX\nd\n", old) == 2 / 8  # one line replaced: one out, one in
    assert change_share("a\nb\nc\nd\ne\n", old) == 1 / 9  # one line added
    assert change_share("", "") == 0.0


def test_summary_quantiles_scopes_and_labels():
    rows = [{"change_share": k / 10, "chosen_size": 100 * k, "rejected_size": 10 * k, "scope": "file",
             "aspect": "Functional_Correctness" if k % 2 else "Runtime_Efficiency", "source": "git/commits"}
            for k in range(11)]
    summary = summarize(rows, "bytes")
    assert summary["change_share"] == {"p10": 0.1, "p50": 0.5, "p90": 0.9}
    assert summary["chosen_size"] == {"p10": 100.0, "p50": 500.0, "p90": 900.0}
    assert summary["scope"] == {"file": 11}
    assert summary["labels"] == [{"aspect": "Functional_Correctness", "source": "git/commits", "pairs": 5},
                                 {"aspect": "Runtime_Efficiency", "source": "git/commits", "pairs": 6}]


@pytest.mark.ray
def test_a_build_records_quality_and_stats_and_card_show_it(ray_local, tmp_path, make_repo):
    repo = make_repo("repo")
    body = "".join(f"def helper_{k}(value):\n    return value + {k}\n" for k in range(9))  # 18 lines
    repo.commit("Add modules", {"a.py": body + "LIMIT = 1\n", "b.py": "def f(x):\n    return x - 1\n"})
    repo.commit("Fix bug: the limit was wrong", {"a.py": body + "LIMIT = 2\n"})
    repo.commit("Fix bug: f subtracted one", {"b.py": "def f(x):\n    return x\n"})
    data = {"name": "quality", "sources": [{"type": "git", "repos": [str(repo.path)], "subset": "mined"}],
            "pairs": {"scope": "file"}}  # the figures below are of whole files
    out = tmp_path / "out"
    record = build(parse_manifest(data, tmp_path), out)
    quality = record["quality"]
    assert quality["pairs"] == record["rows"]["kept"] == 2
    # a.py: 1 of 19 lines replaced (2 of 38 changed); b.py: 1 of 2 lines replaced (2 of 4).
    shares = sorted([2 / 38, 2 / 4])
    assert quality["change_share"]["p50"] == round((shares[0] + shares[1]) / 2, 4)
    assert quality["change_share"]["p10"] == round(shares[0] + 0.1 * (shares[1] - shares[0]), 4)
    sizes = sorted([len(body) + len("LIMIT = 2\n"), len("def f(x):\n    return x\n")])
    assert quality["size_unit"] == "bytes"
    assert quality["chosen_size"]["p50"] == (sizes[0] + sizes[1]) / 2
    assert quality["scope"] == {"file": 2}  # no scope column: whole files
    assert quality["labels"] == [{"aspect": "Functional_Correctness", "source": "git/mined", "pairs": 2}]

    shown = subprocess.run([sys.executable, "-m", "codeprefs.cli", "stats", str(out)], capture_output=True,
                           text=True, env={"PYTHONPATH": str(ROOT), "COLUMNS": "200", "PATH": "/usr/bin:/bin"},
                           check=True).stdout
    for text in ("changed lines / pair lines", str(quality["change_share"]["p50"]), "chosen (bytes)",
                 "scope kinds", "labels per source", "git/mined"):
        assert text in shown, text
    card = write_card(out).read_text()
    assert "## What the pairs teach" in card
    assert f"| changed lines / pair lines | {quality['change_share']['p10']} | {quality['change_share']['p50']}" in card
    assert "| file | 2 |" in card
    assert "| Functional_Correctness | 2 |" in card
