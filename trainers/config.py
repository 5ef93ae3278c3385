"""The settings of a training run, and which of them a resume must find unchanged.

A module of its own so that imports point one way: :mod:`codeprefs.trainers.train` runs with these
settings and :mod:`codeprefs.trainers.raytrain` ships them to its workers, and neither needs the other
to know what a run's settings are.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass
class TrainConfig:
    """Every setting of a training run (the command line mirrors these names)."""

    data: list[str]
    model: str
    output: str
    split: str | None = None
    eval_data: str | None = None
    eval_split: str | None = None
    eval_prompts: str = "own"
    eval_every: int = 0  # steps between scorings of --eval-data during training (0: only after it)
    backbone: str = "auto"  # auto | causal | encoder
    template: str = "auto"  # auto | chat | plain
    chat_template: str | None = None  # a Jinja file replacing the tokenizer's template
    pad_token: str | None = None  # for tokenizers without one (default: the eos token)
    max_length: int = 4096
    epochs: int = 1
    max_steps: int | None = None
    global_batch: int = 512  # pairs per optimizer step, over all ranks
    micro_batch_tokens: int = 16384  # tokens per packed forward pass
    lr: float = 1e-5
    final_lr: float = 5e-7
    warmup: float = 0.05  # fraction of the steps
    weight_decay: float = 0.1
    betas: tuple[float, float] = (0.9, 0.95)
    eps: float = 1e-8
    grad_clip: float = 1.5
    lm_coef: float = 0.25  # lambda
    magnitude_coef: float = 0.001  # mu
    seed: int = 0
    device: str = "auto"
    attention: str = "auto"
    gradient_checkpointing: bool = True
    # torch.compile each transformer block and the LM loss's elementwise work (None: on a GPU,
    # unless --liger on; a model the compiler fails on then trains with eager blocks)
    compile: bool | None = None
    liger: str = "auto"  # auto (when installed, on GPU, blocks not compiled) | on | off
    save_every: int = 0  # steps between checkpoints (0: only the final model)
    keep_checkpoints: int = 2
    resume: str | None = None  # a checkpoint folder or "latest"
    log_every: int = 1


# Settings that must match when resuming (they fix the data order and the curve).
_RESUME_KEYS = ("data", "split", "seed", "global_batch", "max_length", "epochs", "max_steps", "lr", "final_lr",
                "warmup", "lm_coef", "magnitude_coef", "template")


def check_resume(cfg: TrainConfig, saved: dict[str, Any]) -> None:
    """Refuse to resume a run whose data order or schedule settings changed."""
    differing = [key for key in _RESUME_KEYS if _comparable(getattr(cfg, key)) != _comparable(saved.get(key))]
    if differing:
        details = ", ".join(f"{key}: checkpoint {saved.get(key)!r} vs now {getattr(cfg, key)!r}" for key in differing)
        raise ValueError(f"cannot resume: settings changed ({details})")


def _comparable(value: Any) -> Any:
    """A tuple and the list it became in the checkpoint's saved settings compare equal."""
    return list(value) if isinstance(value, tuple | list) else value
