"""Does packing change what this model computes? A probe run once, before training or scoring.

Padding-free packs are correct only if every layer keeps the sequences of a pack apart and
positions restart with each sequence. That holds when the layers pass the pack's boundaries
(transformers' ``cu_seq_lens_*`` keyword arguments) down to the attention function; it fails
silently where they do not: StableLM's decoder layer drops those arguments, BLOOM computes its
ALiBi attention its own way, Mamba-style hybrids carry a recurrent state along the row. No list of
architectures keeps up with transformers, so :func:`packing_problem` asks the model itself, on
three tiny packs of random tokens:

* ``[A, C]`` against ``[B, C]`` (A and B of one length): if C's hidden states differ, tokens of
  one sequence reach another. With the sequences kept apart they are computed by the same
  kernels on the same rows, so any dtype gives (nearly) identical numbers;
* ``[A, C]`` against ``[C]``: if C's hidden states differ, its positions depend on its place in
  the pack (e.g. learned absolute positions that ignore ``position_ids``).

The trainer and the evaluator then fall back to padded batches, which every model computes
correctly, and say why.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable

import numpy as np
import torch

from codeprefs.trainers.attention import UnsupportedAttention
from codeprefs.core.encoding import EncodedPair
from codeprefs.trainers.packing import pack_pairs

# Max |difference| relative to max |value| of C's hidden states. Kept-apart sequences give ~0 in
# the neighbour check in any dtype; the offset check compares different pack sizes, which float32
# matches to ~1e-6 and bfloat16 to ~1e-2, while a wrong position moves hidden states by O(1).
NEIGHBOUR_TOLERANCE = 1e-3
OFFSET_TOLERANCE = {torch.float32: 1e-3, torch.float64: 1e-6}
LOW_PRECISION_OFFSET_TOLERANCE = 0.1


def packing_problem(model: torch.nn.Module) -> str | None:
    """Why padding-free packs would change ``model``'s outputs (a :class:`RewardModel`), or None."""
    parameter = next(model.parameters())
    device, dtype = parameter.device, parameter.dtype
    rng = np.random.default_rng(0)
    first, second, probe = (random_pair(model, rng, *lengths) for lengths in ((4, 5, 3), (4, 5, 3), (6, 7, 5)))
    start = first.num_tokens
    low_precision = device.type == "cuda" or dtype in (torch.bfloat16, torch.float16)
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else contextlib.nullcontext()
    training = model.training
    model.eval()
    try:
        with torch.no_grad(), autocast:
            after_first, after_second, alone = (
                model.hidden_states(pack_pairs(pairs).to(device)).float()
                for pairs in ([first, probe], [second, probe], [probe]))
    except UnsupportedAttention:
        raise  # not about packing: the attention backend itself cannot run this model
    except (ValueError, NotImplementedError) as error:  # layers that refuse packs (e.g. Qwen3.5's linear attention)
        return f"{type(model.transformer()).__name__} cannot take padding-free packs ({error})"
    finally:
        model.train(training)
    after_first, after_second = after_first[start:], after_second[start:]
    scale = alone.abs().max().clamp_min(1e-6)
    if ((after_first - after_second).abs().max() / scale).item() > NEIGHBOUR_TOLERANCE:
        return (f"{type(model.transformer()).__name__} lets the sequences of a pack see each other "
                "(its layers do not keep packed sequences apart)")
    tolerance = LOW_PRECISION_OFFSET_TOLERANCE if low_precision else OFFSET_TOLERANCE.get(dtype, 1e-3)
    if ((after_first - alone).abs().max() / scale).item() > tolerance:
        return (f"{type(model.transformer()).__name__} computes a sequence differently at another place in "
                "a pack (its positions do not restart with each sequence)")
    return None


def random_pair(model: torch.nn.Module, rng: np.random.Generator, prompt: int, chosen: int,
                rejected: int) -> EncodedPair:
    """A pair of random token ids (never the pad id: some embeddings zero it) for probing ``model``."""
    vocab = model.backbone.get_input_embeddings().num_embeddings
    ids = [rng.integers(0, vocab, n).astype(np.int32) for n in (prompt, chosen, rejected)]
    if model.pad_token_id is not None:
        for part in ids:
            part[part == model.pad_token_id] = (model.pad_token_id + 1) % vocab
    return EncodedPair(0, *ids)


def fall_back_to_padding(model: torch.nn.Module, report: Callable[[str], None]) -> str | None:
    """Probe a packing model; on a problem switch it to padded batches and ``report`` what and why.

    If our packed attention cannot compute the model's attention at all (soft-capping, sinks),
    the model gets its own eager attention and padded batches (an eager pack would hold a
    ``[heads, T, T]`` score matrix for the whole pack).
    """
    if not model.packs:
        return None
    try:
        problem = packing_problem(model)
    except UnsupportedAttention as error:
        model.transformer().set_attn_implementation("eager")
        problem = f"{error}; switched to the model's eager attention"
    if problem is not None:
        model.packs = False
        report(f"{problem}; using padded batches instead of padding-free packs")
    return problem
