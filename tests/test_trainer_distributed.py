"""Two CPU ranks (gloo, FSDP2), under torchrun or as Ray Train workers, train exactly like one process."""

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
from codeprefs.trainers.train import TrainConfig, run

ROOT = Path(__file__).resolve().parents[1]


def _history(output: Path) -> list[dict]:
    return [json.loads(line) for line in (output / "log.jsonl").read_text().splitlines()]


SETTINGS = dict(global_batch=8, epochs=1, lr=3e-3, final_lr=3e-4, micro_batch_tokens=600, seed=3)


@pytest.fixture(scope="module")
def one_process_run(tmp_path_factory, tiny_model):  # noqa: F811
    """The pairs (uneven lengths, so ranks get different packs) and a one-process run on them."""
    root = tmp_path_factory.mktemp("distributed")
    rows = make_rows(24, system="Judge code.")
    for index, row in enumerate(rows):
        row["chosen"] += "# checked\n" * (index % 5)
    data = write_shards(root / "pairs", rows, shards=3)
    run(TrainConfig(data=[str(data)], model=str(tiny_model), output=str(root / "one"), eval_data=str(data),
                    eval_every=1, **SETTINGS))
    return data, root / "one"


def _assert_same_training(one: Path, two: Path, tolerance: float = 1e-5) -> None:
    summary = json.loads((two / "train_summary.json").read_text())
    assert summary["world_size"] == 2
    history_one, history_two = _history(one), _history(two)
    assert len(history_one) == len(history_two) == 3
    for a, b in zip(history_one, history_two, strict=True):
        assert (a["pairs"], a["tokens"]) == (b["pairs"], b["tokens"])
        for key in ("loss", "preference_loss", "lm_loss", "accuracy", "grad_norm", "lr"):
            assert b[key] == pytest.approx(a[key], rel=tolerance, abs=1e-7), (a["step"], key)
        # Scoring during training: each rank scores its share of the pairs, every pair exactly once.
        assert a["eval"]["total_examples"] == b["eval"]["total_examples"] == 24
        assert (a["eval"]["accuracy"], a["eval"]["mean_score_difference"]) == pytest.approx(
            (b["eval"]["accuracy"], b["eval"]["mean_score_difference"]), abs=2e-4)
    assert history_one[-1]["preference_loss"] < history_one[0]["preference_loss"]  # it did train

    weights_one = load_file(str(one / "model.safetensors"))
    weights_two = load_file(str(two / "model.safetensors"))
    assert weights_one.keys() == weights_two.keys()
    for key, value in weights_one.items():
        assert torch.allclose(value, weights_two[key], atol=tolerance), key


def test_two_gloo_processes_under_torchrun_match_one_process(tmp_path, tiny_model, one_process_run):  # noqa: F811
    data, one = one_process_run
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
               "-m", "codeprefs.trainers.train", "--data", str(data), "--model", str(tiny_model),
               "--output", str(tmp_path / "two"), "--eval-data", str(data), "--eval-every", "1"]
    for key, value in SETTINGS.items():
        command += [f"--{key.replace('_', '-')}", str(value)]
    command.append("--compile")  # FSDP2 + compiled + checkpointed blocks: the GPU configuration, on gloo
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(name, None)
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-4000:]
    _assert_same_training(one, tmp_path / "two", tolerance=1e-4)  # inductor's fused kernels round differently
    assert json.loads((tmp_path / "two" / "train_summary.json").read_text())["config"]["compile"] is True


@pytest.mark.ray
def test_two_ray_train_workers_match_one_process(tmp_path, tiny_model, one_process_run, ray_local):  # noqa: F811
    from codeprefs.trainers.raytrain import run_on_ray

    data, one = one_process_run
    summary = run_on_ray(run, TrainConfig(data=[str(data)], model=str(tiny_model), output=str(tmp_path / "two"),
                                          eval_data=str(data), eval_every=1, **SETTINGS), workers=2)
    assert summary["world_size"] == 2 and summary["config"]["device"] == "cpu"
    _assert_same_training(one, tmp_path / "two")


@pytest.mark.ray
def test_a_ray_train_worker_error_reaches_the_caller_as_itself(tmp_path, tiny_model, ray_local):  # noqa: F811
    from codeprefs.trainers.data import DataError
    from codeprefs.trainers.raytrain import run_on_ray

    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DataError, match="empty"):
        run_on_ray(run, TrainConfig(data=[str(empty)], model=str(tiny_model), output=str(tmp_path / "out")),
                   workers=2)


def test_ray_workers_must_be_positive(tmp_path, capsys):
    from codeprefs.trainers.train import main

    code = main(["--data", str(tmp_path), "--model", str(tmp_path), "--output", str(tmp_path / "o"),
                 "--ray-workers", "0"])
    assert code == 2
    assert "--ray-workers must be at least 1, got 0" in capsys.readouterr().err


def test_paths_travel_to_ray_workers_as_absolute_ones(tmp_path, monkeypatch):
    from codeprefs.trainers.raytrain import portable_config

    (tmp_path / "shards").mkdir()
    (tmp_path / "model").mkdir()
    monkeypatch.chdir(tmp_path)
    cfg = portable_config(TrainConfig(data=["shards", "runs/*/data", "org/pairs"], model="model", output="ckpt",
                                      resume="latest"), use_gpu=False)
    assert cfg.data == [str(tmp_path / "shards"), str(tmp_path / "runs/*/data"), "org/pairs"]
    assert (cfg.model, cfg.output, cfg.resume, cfg.device) == (str(tmp_path / "model"), str(tmp_path / "ckpt"),
                                                               "latest", "cpu")
