"""From git history to a reward model: build the quickstart, train on its shards, evaluate."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest
import torch

from codeprefs.manifest import load_manifest
from pipelines.build import build

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.ray


def test_quickstart_shards_train_and_evaluate(ray_local, tmp_path):
    from transformers import AutoModelForSequenceClassification

    from trainers.tiny import save_tiny_causal_lm

    out = tmp_path / "quickstart"
    record = build(load_manifest(ROOT / "manifests" / "quickstart.yaml"), out)
    kept = record["rows"]["kept"]
    assert kept == pl.read_parquet(out / "data" / "*.parquet").height > 0

    model = save_tiny_causal_lm(tmp_path / "tiny")
    checkpoint = tmp_path / "ckpt"
    train = subprocess.run(
        [sys.executable, "-m", "codeprefs.cli", "train", "--data", str(out), "--model", str(model),
         "--output", str(checkpoint), "--max-steps", "2", "--global-batch", "8",
         "--micro-batch-tokens", "2048", "--max-length", "512", "--eval-data", str(out)],
        capture_output=True, text=True, cwd=ROOT, timeout=600,
    )
    assert train.returncode == 0, train.stderr[-3000:]
    summary = json.loads((checkpoint / "train_summary.json").read_text())
    assert summary["steps"] == 2

    evaluation = tmp_path / "eval"
    result = subprocess.run(
        [sys.executable, "-m", "codeprefs.cli", "evaluate", "--model", str(checkpoint), "--data", str(out),
         "--output", str(evaluation), "--max-length", "512"],
        capture_output=True, text=True, cwd=ROOT, timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    results = json.loads((evaluation / "results.json").read_text())
    # Pairs whose two sides the 512-token cut makes identical are left out, each listed.
    skipped = json.loads((evaluation / "skipped.json").read_text()) if (evaluation / "skipped.json").exists() else {}
    left_out = sum(len(ids) for ids in skipped.values())
    assert set(skipped) <= {"identical_after_truncation"}
    scored = kept - left_out
    assert results["overall"]["total_examples"] == scored > 0
    assert set(results["by_language"]) == {"C", "C#", "C++", "Go", "Java", "JavaScript", "Python", "Ruby"}
    assert sum(v["count"] for v in results["by_aspect"].values()) == scored
    scores = pl.read_parquet(evaluation / "scores.parquet")
    assert scores.height == scored
    assert (scores["correct"] == (scores["chosen_score"] > scores["rejected_score"])).all()

    reward_model = AutoModelForSequenceClassification.from_pretrained(checkpoint, num_labels=1)
    assert reward_model.config.num_labels == 1
    assert isinstance(reward_model.score.weight, torch.Tensor)
