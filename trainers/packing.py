"""Batches of pairs: padding-free packs (training) and padded batches (reference, encoders).

A pack concatenates the sequences of its pairs into one row, chosen then rejected for each pair:
``[c0 r0 c1 r1 ...]``. Position ids restart at 0 in each sequence and ``cu_seqlens`` marks the
sequence boundaries, so a varlen attention kernel (or SDPA with a block-diagonal causal mask)
keeps every sequence to itself. The reward of sequence ``i`` is read at its last token,
``cu_seqlens[i + 1] - 1``.

Both layouts describe the same things with flat indices into the ``[tokens, hidden]`` view of the
model's output, so the loss code does not care which one it gets:

* ``last_token``: where each sequence's reward is read (chosen/rejected interleaved);
* ``lm_positions`` / ``lm_targets``: the positions whose next token is a chosen-response token,
  and that token (the LM term's inputs), with ``lm_weights = 1 / (response tokens of the pair)``
  so the weighted sum is the sum over pairs of each pair's mean token loss.

:func:`plan_step` splits the pairs of one optimizer step over ranks and into micro-batches under
a token budget, identically on every rank (no communication needed).

Scoring reads one reward per sequence and needs no LM indices: :func:`plan_sequences` groups
single sequences (not pairs) into batches under a token budget, longest first, and
:func:`batch_sequences` builds one such batch, packed or padded.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields

import numpy as np
import torch

from codeprefs.core.encoding import EncodedPair


@dataclass
class Batch:
    """Model inputs plus the indices the loss needs (see module doc)."""

    input_ids: torch.Tensor  # [1, T] packed, [2P, L] padded
    position_ids: torch.Tensor  # same shape as input_ids
    attention_mask: torch.Tensor | None  # padded only
    cu_seqlens: torch.Tensor | None  # [2P + 1] int32, packed only
    max_seqlen: int
    last_token: torch.Tensor  # [2P] flat token index of each sequence's last token
    lm_positions: torch.Tensor  # [n] flat indices of positions predicting a chosen-response token
    lm_targets: torch.Tensor  # [n] the token to predict
    lm_weights: torch.Tensor  # [n] float32, 1 / response tokens of the pair
    lm_pair: torch.Tensor  # [n] pair index of each position
    num_pairs: int
    num_tokens: int  # real (non-pad) tokens
    num_slots: int  # tokens including padding

    @property
    def packed(self) -> bool:
        return self.cu_seqlens is not None

    def to(self, device: torch.device | str) -> Batch:
        """This batch on ``device``. On CUDA the tensors go through pinned memory, so the copies are
        queued behind the running kernels instead of waiting for them (a copy from pageable memory
        synchronises the stream, and the GPU would idle while the host prepares the next batch)."""
        device = torch.device(device)
        pin = device.type == "cuda"
        moved = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, torch.Tensor):
                value = (value.pin_memory() if pin and not value.is_cuda else value).to(device, non_blocking=True)
            moved[f.name] = value
        return Batch(**moved)


def batch_cost(pair: EncodedPair, packed: bool) -> int:
    """Token slots ``pair`` takes: its tokens in a pack, two rows of its longer sequence when padded."""
    return pair.num_tokens if packed else 2 * max(pair.chosen_length, pair.rejected_length)


def _sequences(pairs: Sequence[EncodedPair]) -> list[tuple[torch.Tensor, int]]:
    """(ids, prompt length) of each sequence, chosen then rejected per pair."""
    out = []
    for pair in pairs:
        prompt = torch.from_numpy(pair.prompt).long()
        out.append((torch.cat([prompt, torch.from_numpy(pair.chosen).long()]), len(pair.prompt)))
        out.append((torch.cat([prompt, torch.from_numpy(pair.rejected).long()]), len(pair.prompt)))
    return out


def _lm_indices(sequences: list[tuple[torch.Tensor, int]], starts: list[int]) -> tuple[torch.Tensor, ...]:
    positions, targets, weights, pair_index = [], [], [], []
    for pair, k in enumerate(range(0, len(sequences), 2)):
        ids, prompt_length = sequences[k]
        count = len(ids) - prompt_length  # chosen-response tokens to predict
        first = starts[k] + prompt_length - 1  # the position that predicts the first response token
        positions.append(torch.arange(first, first + count))
        targets.append(ids[prompt_length:])
        weights.append(torch.full((count,), 1.0 / count))
        pair_index.append(torch.full((count,), pair))
    return (torch.cat(positions), torch.cat(targets), torch.cat(weights).float(), torch.cat(pair_index))


def pack_pairs(pairs: Sequence[EncodedPair]) -> Batch:
    """One padding-free pack of ``pairs`` (chosen then rejected of each pair, back to back)."""
    if not pairs:
        raise ValueError("cannot pack zero pairs")
    sequences = _sequences(pairs)
    lengths = [len(ids) for ids, _ in sequences]
    cu_seqlens = torch.zeros(len(lengths) + 1, dtype=torch.int32)
    cu_seqlens[1:] = torch.tensor(lengths).cumsum(0)
    starts = cu_seqlens[:-1].tolist()
    input_ids = torch.cat([ids for ids, _ in sequences]).unsqueeze(0)
    position_ids = torch.cat([torch.arange(n) for n in lengths]).unsqueeze(0)
    positions, targets, weights, pair_index = _lm_indices(sequences, starts)
    total = int(cu_seqlens[-1])
    return Batch(input_ids=input_ids, position_ids=position_ids, attention_mask=None, cu_seqlens=cu_seqlens,
                 max_seqlen=max(lengths), last_token=(cu_seqlens[1:] - 1).long(), lm_positions=positions,
                 lm_targets=targets, lm_weights=weights, lm_pair=pair_index, num_pairs=len(pairs),
                 num_tokens=total, num_slots=total)


def pad_pairs(pairs: Sequence[EncodedPair], pad_token_id: int) -> Batch:
    """A right-padded batch of ``pairs``: rows ``2i`` chosen and ``2i + 1`` rejected of pair ``i``."""
    if not pairs:
        raise ValueError("cannot batch zero pairs")
    sequences = _sequences(pairs)
    lengths = [len(ids) for ids, _ in sequences]
    width = max(lengths)
    input_ids = torch.full((len(sequences), width), pad_token_id, dtype=torch.long)
    attention_mask = torch.zeros((len(sequences), width), dtype=torch.long)
    for row, (ids, _) in enumerate(sequences):
        input_ids[row, : len(ids)] = ids
        attention_mask[row, : len(ids)] = 1
    position_ids = torch.arange(width).expand(len(sequences), width).clone()
    starts = [row * width for row in range(len(sequences))]
    positions, targets, weights, pair_index = _lm_indices(sequences, starts)
    last = torch.tensor([start + n - 1 for start, n in zip(starts, lengths, strict=True)])
    return Batch(input_ids=input_ids, position_ids=position_ids, attention_mask=attention_mask, cu_seqlens=None,
                 max_seqlen=width, last_token=last, lm_positions=positions, lm_targets=targets,
                 lm_weights=weights, lm_pair=pair_index, num_pairs=len(pairs), num_tokens=sum(lengths),
                 num_slots=width * len(sequences))


# -- planning -----------------------------------------------------------------------------------

def pack_by_budget(indices: Sequence[int], sizes: Sequence[int], budget: int) -> list[list[int]]:
    """Group ``indices`` into packs of at most ``budget`` tokens (first-fit decreasing).

    ``sizes[i]`` is the token count of item ``indices[i]``. An item larger than ``budget`` gets
    a pack of its own. Deterministic: ties keep the input order.
    """
    order = sorted(range(len(indices)), key=lambda k: (-sizes[k], k))
    packs: list[list[int]] = []
    room: list[int] = []
    for k in order:
        for p, free in enumerate(room):
            if sizes[k] <= free:
                packs[p].append(indices[k])
                room[p] -= sizes[k]
                break
        else:
            packs.append([indices[k]])
            room.append(budget - sizes[k])
    return packs


def split_over_ranks(indices: Sequence[int], sizes: Sequence[int], world_size: int) -> list[list[int]]:
    """Deal items to ``world_size`` ranks, largest first to the least loaded (balanced tokens)."""
    if len(indices) < world_size:
        raise ValueError(f"a step of {len(indices)} pair(s) cannot feed {world_size} ranks; "
                         "raise the global batch")
    order = sorted(range(len(indices)), key=lambda k: (-sizes[k], k))
    shares: list[list[int]] = [[] for _ in range(world_size)]
    loads = [0] * world_size
    counts = [0] * world_size
    for k in order:
        rank = min(range(world_size), key=lambda r: (loads[r], counts[r], r))
        shares[rank].append(indices[k])
        loads[rank] += sizes[k]
        counts[rank] += 1
    return [sorted(share) for share in shares]


def plan_step(indices: Sequence[int], sizes: Sequence[int], world_size: int,
              token_budget: int) -> list[list[list[int]]]:
    """Micro-batches of each rank for one optimizer step: ``plan[rank][micro] = [pair, ...]``.

    Every rank gets the same number of micro-batches (collectives must match): ranks with fewer
    packs split their largest pack until the counts agree. A pack never holds zero pairs.
    """
    size_of = dict(zip(indices, sizes, strict=True))
    plans = []
    for share in split_over_ranks(indices, sizes, world_size):
        plans.append(pack_by_budget(share, [size_of[i] for i in share], token_budget))
    target = max(len(plan) for plan in plans)
    for plan in plans:
        while len(plan) < target:
            largest = max(range(len(plan)), key=lambda p: (len(plan[p]) > 1, sum(size_of[i] for i in plan[p])))
            if len(plan[largest]) < 2:
                raise ValueError("cannot give every rank the same number of micro-batches: a rank has fewer "
                                 "pairs than another has packs; raise the global batch or the token budget")
            pack = plan.pop(largest)
            half = len(pack) // 2
            plan.extend([pack[:half], pack[half:]])
    return plans


# -- single sequences (scoring) -------------------------------------------------------------------

def plan_sequences(lengths: Sequence[int], budget: int, packed: bool) -> list[list[int]]:
    """Batches of sequence indices, each sequence in exactly one, longest sequences first.

    Sorting by length (ties in input order) keeps a padded batch's rows of similar length, so it
    pads little, and puts the largest batches first, so a budget too big for the device fails at
    once rather than at the end. A batch costs its tokens when ``packed`` and rows x its longest
    row when padded; consecutive sequences join a batch while the cost stays within ``budget``
    (a sequence longer than ``budget`` gets a batch of its own).
    """
    if budget < 1:
        raise ValueError(f"the token budget per batch must be >= 1, got {budget}")
    order = sorted(range(len(lengths)), key=lambda k: (-lengths[k], k))
    batches: list[list[int]] = []
    tokens = 0
    for k in order:
        if batches:
            current = batches[-1]  # its first row is its longest
            cost = tokens + lengths[k] if packed else lengths[current[0]] * (len(current) + 1)
            if cost <= budget:
                current.append(k)
                tokens += lengths[k]
                continue
        batches.append([k])
        tokens = lengths[k]
    return batches


def batch_sequences(sequences: Sequence[np.ndarray], packed: bool, pad_token_id: int = 0) -> Batch:
    """One batch of whole sequences: a padding-free pack or right-padded rows; ``last_token`` is
    where each sequence's reward is read, in the order given. No LM indices (nothing to predict)."""
    if not sequences:
        raise ValueError("cannot batch zero sequences")
    ids = [torch.from_numpy(np.asarray(sequence)).long() for sequence in sequences]
    lengths = [len(row) for row in ids]
    empty = torch.zeros(0, dtype=torch.long)
    common = dict(lm_positions=empty, lm_targets=empty, lm_weights=torch.zeros(0), lm_pair=empty, num_pairs=0,
                  num_tokens=sum(lengths), max_seqlen=max(lengths))
    if packed:
        cu_seqlens = torch.zeros(len(lengths) + 1, dtype=torch.int32)
        cu_seqlens[1:] = torch.tensor(lengths).cumsum(0)
        return Batch(input_ids=torch.cat(ids).unsqueeze(0),
                     position_ids=torch.cat([torch.arange(n) for n in lengths]).unsqueeze(0),
                     attention_mask=None, cu_seqlens=cu_seqlens, last_token=(cu_seqlens[1:] - 1).long(),
                     num_slots=sum(lengths), **common)
    width = max(lengths)
    input_ids = torch.full((len(ids), width), pad_token_id, dtype=torch.long)
    attention_mask = torch.zeros((len(ids), width), dtype=torch.long)
    for row, sequence in enumerate(ids):
        input_ids[row, : len(sequence)] = sequence
        attention_mask[row, : len(sequence)] = 1
    last = torch.tensor([row * width + n - 1 for row, n in enumerate(lengths)])
    return Batch(input_ids=input_ids, position_ids=torch.arange(width).expand(len(ids), width).clone(),
                 attention_mask=attention_mask, cu_seqlens=None, last_token=last, num_slots=width * len(ids),
                 **common)
