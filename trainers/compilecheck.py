"""Can torch.compile take this model's blocks? A one-step probe before training.

On a GPU the trainer compiles each transformer block by default (twice the tokens per second of
eager blocks on an H200, see ``benchmarks/train_throughput.py``). Dynamo and inductor trace
Python, and some models contain what they cannot take: a Triton kernel wrapped in an autograd
function they cannot trace (Liger's RMSNorm stops dynamo with an assertion), an op inductor
has no lowering for, a missing C or Triton compiler. Such failures come at the first forward or
backward pass, so :func:`compile_problem` runs one training forward and backward on a tiny batch
of random tokens, through the same wrapped blocks, autocast and batch layout as training. The
graphs it compiles have dynamic shapes, so training reuses them: the probe costs the compile
time that the first step would have spent, and a few milliseconds.

Compiling by default must never make a run fail that eager blocks would train, so
:func:`compile_or_fall_back` then unwraps the blocks and says why; a run that asked for
``--compile`` itself gets the error instead.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable

import numpy as np
import torch

from codeprefs.trainers.model import RewardModel, wrap_blocks
from codeprefs.trainers.packcheck import random_pair


def compile_problem(model: RewardModel, autocast: contextlib.AbstractContextManager) -> str | None:
    """Why one training step through ``model``'s compiled blocks fails, or None; grads are cleared."""
    device = next(model.parameters()).device
    rng = np.random.default_rng(1)
    pairs = [random_pair(model, rng, 5, 6, 4), random_pair(model, rng, 7, 3, 5)]
    batch = model.batch(pairs).to(device)
    try:
        with autocast:
            rewards = model(batch, with_lm=False).rewards
        rewards.float().sum().backward()
    except Exception as error:  # dynamo, inductor and the compilers they call raise many kinds
        return (f"torch.compile cannot compile the blocks of {type(model.transformer()).__name__} "
                f"({type(error).__name__}: {_summary(error)})")
    finally:
        model.zero_grad(set_to_none=True)
    return None


def _summary(error: Exception) -> str:
    """One line of a dynamo error: its message, and the innermost frame of the model's code it
    stopped in (dynamo's own assertions come with no message, only that frame)."""
    text = str(error).strip()
    message, _, user_code = text.partition("from user code:")
    lines = [line.strip() for line in message.split("\n\n")[0].splitlines() if line.strip()]
    frame = [line.strip() for line in user_code.split("\n\n")[0].splitlines() if line.strip()][-2:]
    if frame:
        lines.append("in " + ": ".join(frame))
    return " ".join(lines) or "no message"


def compile_or_fall_back(model: RewardModel, blocks: list[torch.nn.Module], *, checkpoint: bool,
                         autocast: contextlib.AbstractContextManager, required: bool,
                         report: Callable[[str], None]) -> str | None:
    """Probe ``model``'s compiled ``blocks``; on a problem raise (``required``) or go back to eager
    blocks (still checkpointed if ``checkpoint``), ``report`` it and return it."""
    problem = compile_problem(model, autocast)
    if problem is None:
        return None
    if required:
        raise ValueError(f"{problem}; train without --compile")
    wrap_blocks(blocks, compile=False, checkpoint=checkpoint)
    model.fuse_lm_loss = False  # a compiler that fails on the blocks would fail on the LM loss too
    report(f"{problem}; training with eager blocks")
    return problem
