"""The length budget (filters.length): tokens with a real tiny tokenizer read from a local folder,
bytes without one, and a changed budget rerunning the validate stage."""

from __future__ import annotations

from pathlib import Path

import pyarrow.parquet as pq
import pytest

from codeprefs.pipelines.manifest import parse_manifest
from codeprefs.core.schema import Aspect
from codeprefs.filters.length import DEFAULT_MAX_BYTES, LengthSettings, PairBudget
from codeprefs.pipelines.build import BuildError, build
from codeprefs.core.rows import empty_row
from codeprefs.pipelines.steps import BudgetPairs, commit_prompt
from codeprefs.core.encoding import PairEncoder
from codeprefs.trainers.data import normalize_columns
from codeprefs.core.prompts import render_prompt


@pytest.fixture(scope="module")
def tokenizer_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A byte-level BPE tokenizer with a ChatML template, trained here and saved with transformers."""
    from codeprefs.trainers.tiny import tiny_tokenizer

    folder = tmp_path_factory.mktemp("tiny-tokenizer")
    tiny_tokenizer().save_pretrained(folder)
    return folder


def _row(prompt: str, chosen: str, rejected: str, system: str | None = None) -> dict:
    row = empty_row()
    row.update(id="p", system=system, input=prompt, chosen=chosen, rejected=rejected)
    return row


def _trainer_length(tokenizer_dir: Path, prompt: str, chosen: str, rejected: str) -> int:
    """The longer sequence of the pair as the trainer encodes it (no truncation), with the
    longest system prompt it may draw."""
    import pyarrow as pa
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(tokenizer_dir), local_files_only=True)
    table = normalize_columns(pa.Table.from_pylist([{
        "system": render_prompt(list(Aspect)), "input": prompt, "chosen": chosen, "rejected": rejected,
        "language": "Python", "aspect": "Functional_Correctness"}]), "inline")
    (pair,), _ = PairEncoder(tokenizer, 100_000).encode(table)
    return max(pair.chosen_length, pair.rejected_length)


def test_token_budget_keeps_a_pair_just_under_and_drops_one_just_over(tokenizer_dir):
    prompt = "Fix the off-by-one.\n\nLanguage: Python\nFile: m.py"
    chosen = "def f(xs):\n" + "    total = sum(xs)\n" * 30 + "    return xs[len(xs) - 1]\n"
    rejected = "def f(xs):\n    return xs[len(xs)]\n"
    tokens = _trainer_length(tokenizer_dir, prompt, chosen, rejected)
    assert tokens > 200  # the longer side and the template, not the bytes
    fits = BudgetPairs(PairBudget(LengthSettings(max_tokens=tokens, tokenizer=str(tokenizer_dir))))
    over = BudgetPairs(PairBudget(LengthSettings(max_tokens=tokens - 1, tokenizer=str(tokenizer_dir))))
    (kept,) = fits.run([_row(prompt, chosen, rejected)])
    (dropped,) = over.run([_row(prompt, chosen, rejected)])
    assert kept["drop_reason"] is None
    assert (dropped["drop_stage"], dropped["drop_reason"]) == ("length", "too_long")
    assert dropped["drop_detail"] == f"prompt + longer side: {tokens} tokens > {tokens - 1}"
    # The sides' order does not matter: the longer one counts.
    (swapped,) = over.run([_row(prompt, rejected, chosen)])
    assert swapped["drop_reason"] == "too_long"
    # A row with its own system prompt is measured with it (shorter than all five criteria).
    (own,) = over.run([_row(prompt, chosen, rejected, system="Judge.")])
    assert own["drop_reason"] is None


def test_byte_budget_without_a_tokenizer():
    budget = PairBudget()
    assert (budget.unit, budget.limit) == ("bytes", DEFAULT_MAX_BYTES) and DEFAULT_MAX_BYTES == 12_288
    prompt = "Fix it.\n"
    side = "é" * ((DEFAULT_MAX_BYTES - len(prompt)) // 2)  # two bytes per character
    rows = BudgetPairs(budget).run([_row(prompt, side, "x = 1\n"), _row(prompt, "x = 1\n", side + "é")])
    assert rows[0]["drop_reason"] is None  # exactly at the budget
    assert (rows[1]["drop_reason"], rows[1]["drop_detail"]) == (
        "too_long", f"prompt + longer side: {DEFAULT_MAX_BYTES + 2} bytes > {DEFAULT_MAX_BYTES}")


@pytest.mark.ray
def test_budget_in_a_build_counts_too_long_and_reruns_validate_when_changed(ray_local, tmp_path, make_repo,
                                                                          tokenizer_dir):
    repo = make_repo("repo")
    big = "\n".join(f"def helper_{k}(value):\n    return value + {k}\n" for k in range(60))
    repo.commit("Add modules", {"small.py": "def f(x):\n    return x - 1\n", "big.py": big + "\nBUG = 1\n"})
    repo.commit("Fix bug: f subtracted one", {"small.py": "def f(x):\n    return x\n"})
    repo.commit("Fix bug: BUG flag was set", {"big.py": big + "\nBUG = 0\n"})
    data = {"name": "budget", "sources": [{"type": "git", "repos": [str(repo.path)]}],
            "filters": {"length": {"max_bytes": 1000}}, "pairs": {"scope": "file"}}  # whole files
    out = tmp_path / "out"
    record = build(parse_manifest(data, tmp_path), out)
    stage = next(s for s in record["funnel"] if s["stage"] == "length")
    assert stage["reasons"] == {"too_long": 1} and record["rows"]["kept"] == 1
    rejects = pq.read_table(out / record["rejects"][0]["path"]).to_pylist()
    (long_row,) = [r for r in rejects if r["drop_reason"] == "too_long"]
    assert long_row["path"] == "big.py" and long_row["drop_stage"] == "length"

    # A larger budget: the source stage is reused, validate (where the budget runs) reruns.
    lines: list[str] = []
    data["filters"]["length"]["max_bytes"] = 100_000
    again = build(parse_manifest(data, tmp_path), out, log=lines.append)
    assert again["fingerprints"]["validate"] != record["fingerprints"]["validate"]
    assert again["stages"][0]["units_reused"] == 1
    assert not any(line.startswith("validate: reusing") for line in lines)
    assert again["rows"]["kept"] == 2
    assert next(s for s in again["funnel"] if s["stage"] == "length")["dropped"] == 0

    # A tokenizer folder relative to the manifest: counted in tokens; its files are fingerprinted.
    (tmp_path / "tok").symlink_to(tokenizer_dir, target_is_directory=True)
    small = _trainer_length(tokenizer_dir, commit_prompt("Fix bug: f subtracted one", "small.py", "Python"),
                            "def f(x):\n    return x\n", "def f(x):\n    return x - 1\n")
    large = _trainer_length(tokenizer_dir, commit_prompt("Fix bug: BUG flag was set", "big.py", "Python"),
                            big + "\nBUG = 0\n", big + "\nBUG = 1\n")
    assert small < large
    data["filters"]["length"] = {"tokenizer": "tok", "max_tokens": large - 1}
    tokens = build(parse_manifest(data, tmp_path), out)
    assert next(s for s in tokens["funnel"] if s["stage"] == "length")["reasons"] == {"too_long": 1}
    assert tokens["fingerprints"]["validate"] not in (record["fingerprints"]["validate"],
                                                     again["fingerprints"]["validate"])
    data["filters"]["length"] = {"tokenizer": "tok", "max_tokens": large}
    assert build(parse_manifest(data, tmp_path), out)["rows"]["kept"] == 2

    # Not set: no budget at all.
    del data["filters"]["length"]
    assert build(parse_manifest(data, tmp_path), out)["rows"]["kept"] == 2

    data["filters"]["length"] = {"tokenizer": str(tmp_path / "missing")}
    with pytest.raises(BuildError, match="filters.length.tokenizer"):
        build(parse_manifest(data, tmp_path), out)
