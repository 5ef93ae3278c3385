"""Two CPU processes under torchrun (gloo, FSDP2) train exactly like one process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from tests.trainer_fixtures import make_rows, one_torch_thread, tiny_model, write_shards  # noqa: F401
from trainers.train import TrainConfig, run

ROOT = Path(__file__).resolve().parents[1]


def _history(output: Path) -> list[dict]:
    return [json.loads(line) for line in (output / "log.jsonl").read_text().splitlines()]


def test_two_gloo_processes_match_one_process(tmp_path, tiny_model):  # noqa: F811
    rows = make_rows(24, system="Judge code.")
    for index, row in enumerate(rows):  # uneven lengths, so the ranks get different packs
        row["chosen"] += "# checked\n" * (index % 5)
    data = write_shards(tmp_path / "pairs", rows, shards=3)
    settings = dict(global_batch=8, epochs=1, lr=3e-3, final_lr=3e-4, micro_batch_tokens=600, seed=3)

    run(TrainConfig(data=[str(data)], model=str(tiny_model), output=str(tmp_path / "one"), **settings))

    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
               "-m", "trainers.train", "--data", str(data), "--model", str(tiny_model),
               "--output", str(tmp_path / "two")]
    for key, value in settings.items():
        command += [f"--{key.replace('_', '-')}", str(value)]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(name, None)
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-4000:]

    summary = json.loads((tmp_path / "two" / "train_summary.json").read_text())
    assert summary["world_size"] == 2
    one, two = _history(tmp_path / "one"), _history(tmp_path / "two")
    assert len(one) == len(two) == 3
    for a, b in zip(one, two, strict=True):
        assert (a["pairs"], a["tokens"]) == (b["pairs"], b["tokens"])
        for key in ("loss", "preference_loss", "lm_loss", "accuracy", "grad_norm", "lr"):
            assert b[key] == pytest.approx(a[key], rel=1e-5, abs=1e-7), (a["step"], key)
    assert one[-1]["preference_loss"] < one[0]["preference_loss"]  # it did train

    weights_one = load_file(str(tmp_path / "one" / "model.safetensors"))
    weights_two = load_file(str(tmp_path / "two" / "model.safetensors"))
    assert weights_one.keys() == weights_two.keys()
    for key, value in weights_one.items():
        assert torch.allclose(value, weights_two[key], atol=1e-5), key
