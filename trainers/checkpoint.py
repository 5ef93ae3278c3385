"""Training checkpoints: a loadable reward model plus everything needed to resume exactly.

``<output>/checkpoints/step-000120/`` holds the model as transformers loads it (see
:mod:`codeprefs.trainers.model`), the tokenizer, and ``trainer_state.pt``: the optimizer and scheduler
states, every rank's RNG states, the step reached (which fixes the data position, since the
order of pairs is a function of the seed and the epoch) and the run's settings. The folder is
written under a temporary name and renamed, and ``trainer_state.pt`` is its last file, so a
crash never leaves a checkpoint that looks complete.
"""

from __future__ import annotations

import random
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch

STATE_FILE = "trainer_state.pt"
CHECKPOINTS = "checkpoints"


def checkpoint_dir(output: str | Path, step: int) -> Path:
    return Path(output) / CHECKPOINTS / f"step-{step:06d}"


def latest_checkpoint(output: str | Path) -> Path | None:
    """The complete checkpoint with the highest step under ``output``, if any."""
    root = Path(output) / CHECKPOINTS
    found = sorted(p for p in root.glob("step-*") if (p / STATE_FILE).exists()) if root.is_dir() else []
    return found[-1] if found else None


def resolve_resume(resume: str, output: str | Path) -> Path:
    """``latest`` (newest checkpoint under ``output``) or a checkpoint folder."""
    path = latest_checkpoint(output) if resume == "latest" else Path(resume)
    if path is None:
        raise FileNotFoundError(f"--resume latest: no complete checkpoint under {Path(output) / CHECKPOINTS}")
    if not (path / STATE_FILE).exists():
        raise FileNotFoundError(f"--resume {resume}: {path} has no {STATE_FILE}, so it is not a complete checkpoint")
    return path


def rng_state() -> dict[str, Any]:
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def write_checkpoint(target: Path, save_model: Any, state: dict[str, Any], keep: int = 0) -> Path:
    """Write ``save_model(folder)``'s files and ``state`` atomically to ``target``.

    ``keep > 0`` deletes the oldest complete sibling checkpoints beyond that many.
    """
    temporary = target.with_name(f".{target.name}.tmp")
    if temporary.exists():
        shutil.rmtree(temporary)
    save_model(temporary)
    torch.save(state, temporary / STATE_FILE)
    if target.exists():
        shutil.rmtree(target)
    temporary.rename(target)
    if keep > 0:
        complete = sorted(p for p in target.parent.glob("step-*") if (p / STATE_FILE).exists())
        for old in complete[:-keep]:
            shutil.rmtree(old)
    return target


def read_state(path: Path) -> dict[str, Any]:
    return torch.load(path / STATE_FILE, map_location="cpu", weights_only=False)
