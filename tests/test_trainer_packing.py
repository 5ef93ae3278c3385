"""Packing layout, packed == padded, the loss formula and the chunked LM loss."""

from __future__ import annotations

import functools
import itertools
import math

import numpy as np
import pyarrow as pa
import pytest
import torch

from tests.trainer_fixtures import make_rows, one_torch_thread, tiny_model, tokenizer  # noqa: F401
from codeprefs.core.encoding import EncodedPair, PairEncoder
from codeprefs.trainers.data import normalize_columns
from codeprefs.trainers.loss import linear_cross_entropy, reference_linear_cross_entropy, reward_loss
from codeprefs.trainers.model import RewardModel
from codeprefs.trainers.packing import pack_by_budget, pack_pairs, pad_pairs, plan_step


def _pair(row: int, prompt: list[int], chosen: list[int], rejected: list[int]) -> EncodedPair:
    return EncodedPair(row, np.array(prompt, np.int32), np.array(chosen, np.int32), np.array(rejected, np.int32))


def test_pack_layout():
    pairs = [_pair(0, [5, 6], [7, 8, 9], [10]), _pair(1, [11], [12, 13], [14, 15, 16])]
    batch = pack_pairs(pairs)
    assert batch.input_ids.tolist() == [[5, 6, 7, 8, 9, 5, 6, 10, 11, 12, 13, 11, 14, 15, 16]]
    assert batch.position_ids.tolist() == [[0, 1, 2, 3, 4, 0, 1, 2, 0, 1, 2, 0, 1, 2, 3]]
    assert batch.cu_seqlens.tolist() == [0, 5, 8, 11, 15]
    assert batch.last_token.tolist() == [4, 7, 10, 14]
    assert batch.max_seqlen == 5 and batch.num_tokens == batch.num_slots == 15
    # LM term: positions that predict the chosen response tokens (never the rejected ones).
    assert batch.lm_positions.tolist() == [1, 2, 3, 8, 9]
    assert batch.lm_targets.tolist() == [7, 8, 9, 12, 13]
    assert batch.lm_pair.tolist() == [0, 0, 0, 1, 1]
    assert torch.allclose(batch.lm_weights, torch.tensor([1 / 3] * 3 + [1 / 2] * 2))
    padded = pad_pairs(pairs, pad_token_id=0)
    assert padded.input_ids.shape == (4, 5) and padded.num_tokens == 15 and padded.num_slots == 20
    flat = padded.input_ids.reshape(-1)
    assert flat[padded.last_token].tolist() == [9, 10, 13, 16]
    assert flat[padded.lm_positions + 1].tolist() == [7, 8, 9, 12, 13]


def test_reward_loss_matches_the_formula_by_hand():
    rewards = torch.tensor([1.5, -0.5, 0.2, 0.2, -1.0, 0.5])  # chosen, rejected per pair
    lm_sum = torch.tensor(3.0)
    terms = reward_loss(rewards, lm_sum, lm_coef=0.25, magnitude_coef=0.001)
    expected = 0.0
    for c, r in ((1.5, -0.5), (0.2, 0.2), (-1.0, 0.5)):
        expected += -math.log(1 / (1 + math.exp(-(c - r)))) + 0.001 * (abs(c) + abs(r)) ** 2
    expected += 0.25 * 3.0
    assert terms.total.item() == pytest.approx(expected, rel=1e-6)
    assert terms.correct.item() == 1  # the tie counts as wrong
    assert terms.pairs == 3
    assert terms.magnitude.item() == pytest.approx(4.0 + 0.16 + 2.25, rel=1e-6)


@pytest.mark.parametrize(("dtype", "fused"), [(torch.float64, False), (torch.float32, False), (torch.float32, True)])
def test_chunked_linear_cross_entropy_matches_full_logits(dtype, fused):
    torch.manual_seed(0)
    hidden = torch.randn(37, 16, dtype=dtype, requires_grad=True)
    weight = torch.randn(50, 16, dtype=dtype, requires_grad=True)
    targets = torch.randint(0, 50, (37,))
    weights = torch.rand(37)
    total, per_token = linear_cross_entropy(hidden, weight, targets, weights, chunk=8, fused=fused)
    (total * 1.7).backward()
    grads = hidden.grad.clone(), weight.grad.clone()
    hidden.grad = weight.grad = None
    reference = reference_linear_cross_entropy(hidden, weight, targets, weights)
    (reference * 1.7).backward()
    tolerance = 1e-10 if dtype == torch.float64 else 1e-5
    assert total.item() == pytest.approx(reference.item(), rel=tolerance)
    assert torch.allclose(grads[0], hidden.grad, atol=tolerance)
    assert torch.allclose(grads[1], weight.grad, atol=tolerance)
    expected = torch.nn.functional.cross_entropy(hidden @ weight.t(), targets, reduction="none")
    assert torch.allclose(per_token, expected.detach(), atol=tolerance)


def _encoded(tokenizer, count):  # noqa: F811
    rows = make_rows(count, system="Judge code.")
    for index, row in enumerate(rows):  # uneven lengths
        row["chosen"] += "# note\n" * (index % 4)
        row["input"] += " Keep it short." * (index % 3)
    return PairEncoder(tokenizer, 512).encode(normalize_columns(pa.Table.from_pylist(rows), "t"))[0]


@pytest.mark.parametrize("attention", ["codeprefs_segments", "sdpa"])
def test_packed_and_padded_give_the_same_rewards_loss_and_gradients(tiny_model, tokenizer, attention):  # noqa: F811
    # Packs run through our per-sequence SDPA or through transformers' block-diagonal mask; the
    # padded batch through the usual padding mask. All must agree.
    model = RewardModel.from_pretrained(tiny_model, attn_implementation=attention)
    torch.manual_seed(3)
    torch.nn.init.normal_(model.score.weight, std=0.5)  # a non-zero head, as after training
    pairs = _encoded(tokenizer, 6)
    results = []
    for batch in (pack_pairs(pairs), pad_pairs(pairs, tokenizer.pad_token_id)):
        model.zero_grad()
        output = model(batch, with_lm=True)
        terms = reward_loss(output.rewards, output.lm_weighted_sum, 0.25, 0.001)
        terms.total.backward()
        grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
        results.append((output.rewards.detach(), terms, grads))
    (packed_rewards, packed, packed_grads), (padded_rewards, padded, padded_grads) = results
    assert packed_rewards.abs().min() > 1e-3  # real, distinct rewards
    assert torch.allclose(packed_rewards, padded_rewards, atol=1e-5)
    for name in ("total", "preference", "lm", "magnitude"):
        assert getattr(packed, name).item() == pytest.approx(getattr(padded, name).item(), rel=1e-5)
    assert packed_grads.keys() == padded_grads.keys() and len(packed_grads) > 10
    for name, grad in packed_grads.items():
        assert torch.allclose(grad, padded_grads[name], atol=1e-5, rtol=1e-4), name


@pytest.mark.parametrize("attention", ["codeprefs_segments", "sdpa"])
def test_sequences_in_a_pack_do_not_see_each_other(tiny_model, tokenizer, attention):  # noqa: F811
    model = RewardModel.from_pretrained(tiny_model, attn_implementation=attention)
    torch.nn.init.normal_(model.score.weight, std=0.5)
    pairs = _encoded(tokenizer, 3)
    with torch.no_grad():
        alone = torch.cat([model(pack_pairs([pair])).rewards for pair in pairs])
        together = model(pack_pairs(pairs)).rewards
        joined = pack_pairs(pairs)  # the same tokens read as one long sequence
        joined.cu_seqlens = torch.tensor([0, joined.num_tokens], dtype=torch.int32)
        joined.position_ids = torch.arange(joined.num_tokens)[None]
        joined.max_seqlen = joined.num_tokens
        leaky = model(joined).rewards
    assert torch.allclose(alone, together, atol=1e-5)
    assert torch.allclose(alone[:1], leaky[:1], atol=1e-5)  # the first sequence sees nothing before it
    assert not torch.allclose(alone[2:], leaky[2:], atol=1e-3)  # the others would see their neighbours


def test_step_plan_uses_every_pair_once_and_matches_micro_batch_counts():
    sizes = [900, 40, 300, 300, 120, 80, 700, 60, 50, 500, 30, 20]
    indices = list(range(100, 112))
    plans = plan_step(indices, sizes, world_size=3, token_budget=1000)
    assert len({len(plan) for plan in plans}) == 1
    used = sorted(i for plan in plans for micro in plan for i in micro)
    assert used == indices
    size_of = dict(zip(indices, sizes, strict=True))
    for plan in plans:
        for micro in plan:
            assert micro and (len(micro) == 1 or sum(size_of[i] for i in micro) <= 1000)
    assert pack_by_budget([1, 2, 3], [2000, 10, 10], 1000) == [[1], [2, 3]]


def _reference_varlen(query, key, value, cu_seq_q, cu_seq_k, max_q, max_k, *, scale=None, window=(-1, -1), gqa=False):
    """What torch's CUDA varlen kernel computes, on CPU: attention within each sequence, where key j
    is seen by query i when ``i - left <= j <= i + right`` (-1: unbounded), flash attention's window."""
    left, right = window
    assert right == 0 and torch.equal(cu_seq_q, cu_seq_k) and cu_seq_q.dtype == torch.int32  # causal only
    assert max_q == max_k == int(cu_seq_q.diff().max())
    if not gqa:
        assert query.shape[1] == key.shape[1]
    bounds = cu_seq_q.tolist()
    parts = []
    for start, end in itertools.pairwise(bounds):
        q, k, v = (t[start:end].transpose(0, 1) for t in (query, key, value))
        offset = torch.arange(end - start)[:, None] - torch.arange(end - start)[None, :]
        seen = (offset >= 0) & ((offset <= left) if left >= 0 else True)
        parts.append(torch.nn.functional.scaled_dot_product_attention(
            q, k, v, attn_mask=seen, scale=scale, enable_gqa=gqa).transpose(0, 1))
    return torch.cat(parts)


def _varlen_with_window(query, key, value, cu_seq_q, cu_seq_k, max_q, max_k, *, return_aux=None, scale=None,
                        window_size=(-1, -1), enable_gqa=False):  # torch >= 2.12 signature
    return _reference_varlen(query, key, value, cu_seq_q, cu_seq_k, max_q, max_k, scale=scale,
                             window=tuple(window_size), gqa=enable_gqa)


def _varlen_with_is_causal(query, key, value, cu_seq_q, cu_seq_k, max_q, max_k, *, return_aux=None, scale=None,
                           is_causal=False):  # older signature, no GQA
    return _reference_varlen(query, key, value, cu_seq_q, cu_seq_k, max_q, max_k, scale=scale,
                             window=(-1, 0) if is_causal else (-1, -1))


@pytest.mark.parametrize("kernel", [_varlen_with_window, _varlen_with_is_causal])
def test_varlen_wrapper_adapts_to_the_kernel_signature(tiny_model, tokenizer, monkeypatch, kernel):  # noqa: F811
    # torch's varlen kernel only runs on CUDA; a CPU stand-in with each known signature checks
    # the wrapper's layout, causal flag, GQA handling and sequence boundaries.
    import codeprefs.trainers.attention as attention

    calls = []

    @functools.wraps(kernel)
    def counted(*args, **kwargs):
        calls.append(args[0].shape)
        return kernel(*args, **kwargs)

    monkeypatch.setattr(attention, "_torch_varlen", lambda: counted)
    monkeypatch.setattr(attention, "_VARLEN", attention._varlen_setup())
    pairs = _encoded(tokenizer, 3)
    results = []
    for name in (attention.VARLEN, attention.SEGMENTS):
        model = RewardModel.from_pretrained(tiny_model, attn_implementation=name)
        torch.manual_seed(3)
        torch.nn.init.normal_(model.score.weight, std=0.5)
        results.append(model(pack_pairs(pairs), with_lm=True))
    assert len(calls) == 2  # one call per layer, on the whole pack: [tokens, heads, dim]
    assert calls[0] == (sum(pair.num_tokens for pair in pairs), 4, 16)
    assert torch.allclose(results[0].rewards, results[1].rewards, atol=1e-5)
    assert results[0].lm_weighted_sum.item() == pytest.approx(results[1].lm_weighted_sum.item(), rel=1e-5)


def test_packed_attention_computes_float32_inputs_in_autocasts_dtype(monkeypatch):
    """RoPE may hand q and k over in float32; under autocast both packed backends compute in its
    dtype (the varlen kernel takes nothing else), outside it in the inputs' own."""
    import codeprefs.trainers.attention as attention

    seen = []

    @functools.wraps(_varlen_with_window)  # the wrapper reads the kernel's signature
    def kernel(query, key, value, *args, **kwargs):
        seen.append({query.dtype, key.dtype, value.dtype})
        return _varlen_with_window(query, key, value, *args, **kwargs)

    monkeypatch.setattr(attention, "_torch_varlen", lambda: kernel)
    monkeypatch.setattr(attention, "_VARLEN", attention._varlen_setup())
    torch.manual_seed(0)
    query, key, value = torch.randn(1, 4, 7, 16), torch.randn(1, 2, 7, 16), torch.randn(1, 2, 7, 16)
    bounds = torch.tensor([0, 3, 7])
    packed = {"cu_seq_lens_q": bounds, "cu_seq_lens_k": bounds, "max_length_q": 4, "max_length_k": 4}
    for forward in (attention.varlen_attention_forward, attention.segmented_attention_forward):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            low, _ = forward(torch.nn.Module(), query, key, value, None, **packed)
        full, _ = forward(torch.nn.Module(), query, key, value, None, **packed)
        assert (low.dtype, full.dtype) == (torch.bfloat16, torch.float32)
        assert torch.allclose(low.float(), full, atol=5e-2)
    assert seen == [{torch.bfloat16}, {torch.float32}]


@torch.library.custom_op("codeprefs_test::varlen_attn", mutates_args=())
def _opaque_varlen(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, cu_seq_q: torch.Tensor,
                   cu_seq_k: torch.Tensor, max_q: int, max_k: int, scale: float | None,
                   window: list[int], gqa: bool) -> torch.Tensor:
    return _reference_varlen(query, key, value, cu_seq_q, cu_seq_k, max_q, max_k, scale=scale,
                             window=tuple(window), gqa=gqa)


@_opaque_varlen.register_fake
def _(query, key, value, cu_seq_q, cu_seq_k, max_q, max_k, scale, window, gqa):
    return torch.empty_like(query)


@torch.library.custom_op("codeprefs_test::varlen_attn_backward", mutates_args=())
def _opaque_varlen_grads(grad: torch.Tensor, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                         cu_seq_q: torch.Tensor, max_q: int, scale: float | None,
                         gqa: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    # Autograd is off inside an op's implementation, so the attention gradient is written out:
    # P = softmax(s QK^T + causal mask), dV = P^T dO, dS = P * (dO V^T - rowsum(dO * O)).
    groups = query.shape[1] // key.shape[1]
    scale = scale if scale is not None else query.shape[-1] ** -0.5
    grads = [torch.zeros_like(query), torch.zeros_like(key), torch.zeros_like(value)]
    for start, end in itertools.pairwise(cu_seq_q.tolist()):
        q, k, v, d = (t[start:end].transpose(0, 1).float() for t in (query, key, value, grad))  # [heads, n, dim]
        k, v = k.repeat_interleave(groups, 0), v.repeat_interleave(groups, 0)
        mask = torch.ones(end - start, end - start, dtype=torch.bool).tril()
        p = torch.softmax((scale * q @ k.transpose(1, 2)).masked_fill(~mask, float("-inf")), dim=-1)
        o = p @ v
        ds = p * (d @ v.transpose(1, 2) - (d * o).sum(-1, keepdim=True))
        dq, dk, dv = scale * ds @ k, scale * ds.transpose(1, 2) @ q, p.transpose(1, 2) @ d
        heads = key.shape[1]
        dk, dv = (t.reshape(heads, groups, *t.shape[1:]).sum(1) for t in (dk, dv))
        for target, value_grad in zip(grads, (dq, dk, dv), strict=True):
            target[start:end] = value_grad.transpose(0, 1).to(target.dtype)
    return tuple(grads)


@_opaque_varlen_grads.register_fake
def _(grad, query, key, value, cu_seq_q, max_q, scale, gqa):
    return torch.empty_like(query), torch.empty_like(key), torch.empty_like(value)


def _opaque_varlen_backward(ctx, grad):
    query, key, value, cu_seq_q = ctx.saved_tensors
    grads = _opaque_varlen_grads(grad, query, key, value, cu_seq_q, ctx.max_q, ctx.scale, ctx.gqa)
    return (*grads, None, None, None, None, None, None, None)


def _opaque_varlen_setup(ctx, inputs, output):
    query, key, value, cu_seq_q, _, max_q, _, scale, _, gqa = inputs
    ctx.save_for_backward(query, key, value, cu_seq_q)
    ctx.max_q, ctx.scale, ctx.gqa = max_q, scale, gqa


_opaque_varlen.register_autograd(_opaque_varlen_backward, setup_context=_opaque_varlen_setup)


def _varlen_custom_op(query, key, value, cu_seq_q, cu_seq_k, max_q, max_k, *, return_aux=None, scale=None,
                      window_size=(-1, -1), enable_gqa=False):
    return _opaque_varlen(query, key, value, cu_seq_q, cu_seq_k, max_q, max_k, scale, list(window_size), enable_gqa)


def test_compiled_blocks_take_packs_of_any_length_through_one_varlen_graph(tiny_model, tokenizer,  # noqa: F811
                                                                         monkeypatch):
    """torch's varlen kernel is an opaque custom op; a CPU op of the same kind stands in for it.

    Compiled blocks must trace the attention wrapper without graph breaks, pass the pack's
    maximum length as a symbol (not a constant that recompiles per pack), and match eager mode.
    """
    from torch._dynamo.utils import counters

    import codeprefs.trainers.attention as attention
    from codeprefs.trainers.distributed import transformer_blocks
    from codeprefs.trainers.model import wrap_blocks

    monkeypatch.setattr(attention, "_torch_varlen", lambda: _varlen_custom_op)
    monkeypatch.setattr(attention, "_VARLEN", attention._varlen_setup())
    eager = RewardModel.from_pretrained(tiny_model, attn_implementation=attention.VARLEN)
    torch.nn.init.normal_(eager.score.weight, std=0.5)
    compiled = RewardModel.from_pretrained(tiny_model, attn_implementation=attention.VARLEN)
    compiled.load_state_dict(eager.state_dict())
    torch._dynamo.reset()
    counters.clear()
    wrap_blocks(transformer_blocks(compiled.transformer()), compile=True, checkpoint=True)
    for count in (2, 3, 5):
        batch = pack_pairs(_encoded(tokenizer, count))
        want, got = eager(batch, with_lm=True), compiled(batch, with_lm=True)
        assert torch.allclose(want.rewards, got.rewards, atol=1e-5)
        assert got.lm_weighted_sum.item() == pytest.approx(want.lm_weighted_sum.item(), rel=1e-5)
        got.lm_weighted_sum.backward()
        want.lm_weighted_sum.backward()
        for (name, a), b in zip(eager.named_parameters(), compiled.parameters(), strict=True):
            if a.grad is not None:
                assert torch.allclose(a.grad, b.grad, atol=1e-5), name
        eager.zero_grad(), compiled.zero_grad()
    assert not counters["graph_break"], dict(counters["graph_break"])
    assert counters["stats"]["unique_graphs"] == 1, dict(counters["stats"])
