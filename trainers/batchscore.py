"""Score whole token sequences with a reward model: batched longest first, each computed once.

The one loop behind ``trainers.score`` (rows), ``trainers.evaluate --rerank`` and
``trainers.rerank`` (candidates): a sequence is one side of a pair as
:meth:`codeprefs.core.encoding.PairEncoder.encode_sequences` renders it. Sequences are batched
longest first under ``micro_batch_tokens`` (:func:`codeprefs.trainers.packing.plan_sequences`:
padding-free packs, or padded batches of similar lengths for a model that cannot take packs); the
scores stay on the device until the end, so on a GPU the host builds the next batch while the last
one runs, and come back in input order.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

import numpy as np
import torch

from codeprefs.trainers.model import RewardModel
from codeprefs.trainers.packing import batch_sequences, plan_sequences
from codeprefs.trainers.progress import ScoreProgress


@torch.inference_mode()
def score_sequences(model: RewardModel, sequences: Sequence[np.ndarray], micro_batch_tokens: int,
                    device: torch.device, *, on_progress: Callable[[ScoreProgress], None] | None = None,
                    progress_every: float = 0.0) -> np.ndarray:
    """The score of each token sequence, in order.

    ``on_progress`` (default: none) is called with the counts so far after a batch, at most every
    ``progress_every`` seconds, and once when every sequence is scored. A NaN score (an overflow
    in float16, say) is a ``RuntimeError`` naming the rows, never returned as a score.
    """
    lengths = [len(sequence) for sequence in sequences]
    progress = ScoreProgress(len(sequences), sum(lengths))
    pad = model.pad_token_id if model.pad_token_id is not None else 0
    batches = plan_sequences(lengths, micro_batch_tokens, model.packs)
    rewards = []
    last_report = progress.started
    training = model.training
    model.eval()
    try:
        for rows in batches:
            batch = batch_sequences([sequences[k] for k in rows], model.packs, pad).to(device)
            rewards.append(model(batch).rewards)
            progress.advance(len(rows), batch.num_tokens)
            if on_progress is not None and time.monotonic() - last_report >= progress_every:
                if device.type == "cuda":
                    torch.cuda.synchronize(device)  # count rows computed, not rows queued
                on_progress(progress)
                last_report = time.monotonic()
    finally:
        model.train(training)
    scores = np.empty(len(sequences))
    if batches:
        order = np.fromiter((k for rows in batches for k in rows), np.int64, len(sequences))
        scores[order] = torch.cat(rewards).double().cpu().numpy()
    if np.isnan(scores).any():
        rows = np.flatnonzero(np.isnan(scores))
        raise RuntimeError(f"{len(rows)} row(s) got a NaN score (rows {', '.join(map(str, rows[:5]))}"
                           f"{' ...' if len(rows) > 5 else ''})")
    if on_progress is not None:
        progress.finished = True
        on_progress(progress)
    return scores
