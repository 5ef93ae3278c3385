"""Data-parallel training as a Ray Train job, on the Ray cluster that built the data.

    python -m trainers.train --data /shared/out/big --model Qwen/Qwen3-0.6B --output /shared/ckpt \\
        --ray-workers 8 [--ray-address auto] [--ray-gpu | --no-ray-gpu]

Ray Train's ``TorchTrainer`` starts one worker per rank (one GPU each when the cluster has GPUs),
joins them in a torch process group (NCCL on GPUs, gloo on CPUs) and sets the ``RANK``,
``WORLD_SIZE`` and ``LOCAL_RANK`` variables that :func:`codeprefs.trainers.distributed.setup` reads; every
worker then runs the loop it is given, :func:`codeprefs.trainers.train.run` (the trainer's command line
passes it in, so this launcher needs nothing of the trainer but its settings): exactly the loop
torchrun would start, so the results are those of a torchrun job with as many ranks. Every
worker reads the data and the model, and rank 0 writes ``--output``: on a cluster of several
machines these paths must be on storage all of them see. Local paths are made absolute before
they travel.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

from codeprefs.trainers.config import TrainConfig


def _absolute(value: str | None) -> str | None:
    """An existing local path or a glob as an absolute one; anything else (a Hub name) unchanged."""
    if value is None:
        return None
    path = Path(value).expanduser()
    if path.exists():
        return str(path.resolve())
    if any(character in value for character in "*?["):
        return str(Path.cwd() / path)
    return value


def portable_config(cfg: TrainConfig, use_gpu: bool) -> TrainConfig:
    """``cfg`` with absolute paths and the device the workers get."""
    return replace(cfg, data=[_absolute(source) or source for source in cfg.data], model=_absolute(cfg.model),
                   output=str(Path(cfg.output).expanduser().resolve()), eval_data=_absolute(cfg.eval_data),
                   chat_template=_absolute(cfg.chat_template),
                   resume=cfg.resume if cfg.resume == "latest" else _absolute(cfg.resume),
                   device="cuda" if use_gpu else "cpu")


def _worker(loop: Callable[[TrainConfig], Any]) -> Callable[[dict[str, Any]], None]:
    """What each Ray Train worker runs: ``loop`` on the settings, which travel as a plain dict."""

    def train_worker(config: dict[str, Any]) -> None:
        loop(TrainConfig(**config))

    return train_worker


def run_on_ray(loop: Callable[[TrainConfig], Any], cfg: TrainConfig, workers: int, use_gpu: bool | None = None,
               address: str | None = None) -> dict[str, Any]:
    """Run ``loop(cfg)`` on ``workers`` Ray Train workers; returns rank 0's ``train_summary.json``.

    ``loop`` is the trainer's :func:`codeprefs.trainers.train.run` (a module-level function: Ray ships it
    to the workers by name). ``use_gpu`` None: one GPU per worker if the cluster has any GPU. A
    worker's failure is raised here as the worker's own exception (a bad input stays a clear error).
    """
    # Imported here, not at the top: Ray takes seconds to import and only --ray-workers needs it,
    # so the trainer's command line imports this module without paying for Ray.
    import ray
    from ray.train import RunConfig, ScalingConfig, WorkerGroupError
    from ray.train.torch import TorchTrainer

    from codeprefs.core.raycluster import ray_session

    if workers < 1:
        raise ValueError(f"--ray-workers must be at least 1, got {workers}")
    with ray_session(address):
        if use_gpu is None:
            use_gpu = ray.cluster_resources().get("GPU", 0) > 0
        cfg = portable_config(cfg, use_gpu)
        output = Path(cfg.output)
        output.mkdir(parents=True, exist_ok=True)
        trainer = TorchTrainer(
            _worker(loop),
            train_loop_config=asdict(cfg),
            scaling_config=ScalingConfig(num_workers=workers, use_gpu=use_gpu,
                                         resources_per_worker=None if use_gpu else {"CPU": 1}),
            run_config=RunConfig(name="codeprefs-train", storage_path=str(output / "ray-train")),
        )
        try:
            trainer.fit()
        except WorkerGroupError as error:
            failures = [error.worker_failures[rank] for rank in sorted(error.worker_failures)]
            raise (failures[0] if failures else error) from error
    return json.loads((output / "train_summary.json").read_text())
