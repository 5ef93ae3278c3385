"""The reward-model loss, per pair:

    -log sigmoid(r_c - r_r)  +  lambda * LM(chosen response)  +  mu * (|r_c| + |r_r|)^2

``LM`` is the mean next-token loss over the chosen response's tokens (template end-of-turn tokens
included). A batch's loss is the *sum* over its pairs; the trainer divides by the number of pairs
in the optimizer step, so packing, micro-batching and the number of ranks do not change it.

The LM term only needs logits at the chosen-response positions, and those are computed chunk by
chunk by :func:`linear_cross_entropy`, which never holds more than one chunk of the
``[tokens, vocab]`` logits and computes its gradients during the forward pass (the usual fused
linear cross-entropy trick), so the backward pass costs no recomputation.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

# Rows of logits per chunk: about 2**27 float32 values (512 MiB) whatever the vocabulary.
_CHUNK_VALUES = 1 << 27


def _at_least_float32(tensor: torch.Tensor) -> torch.Tensor:
    return tensor if tensor.dtype == torch.float64 else tensor.float()


class _WeightedLinearCrossEntropy(torch.autograd.Function):
    """sum_t w_t * CE(hidden_t @ weight.T, target_t), with gradients computed in forward."""

    @staticmethod
    def forward(ctx, hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor,
                token_weights: torch.Tensor, chunk: int) -> tuple[torch.Tensor, torch.Tensor]:
        need_hidden, need_weight = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        losses = torch.empty(hidden.shape[0], dtype=_at_least_float32(hidden[:0]).dtype, device=hidden.device)
        grad_hidden = torch.empty_like(hidden) if need_hidden else None
        grad_weight = torch.zeros_like(_at_least_float32(weight)) if need_weight else None
        for start in range(0, hidden.shape[0], chunk):
            h = hidden[start:start + chunk]
            t = targets[start:start + chunk]
            logits = _at_least_float32(h @ weight.t())
            log_norm = torch.logsumexp(logits, dim=-1)
            losses[start:start + chunk] = log_norm - logits.gather(1, t[:, None]).squeeze(1)
            if need_hidden or need_weight:
                grad_logits = logits.sub_(log_norm[:, None]).exp_()  # softmax, in place
                grad_logits[torch.arange(len(t), device=t.device), t] -= 1.0
                grad_logits.mul_(token_weights[start:start + chunk, None])
                grad_logits = grad_logits.to(hidden.dtype)
                if need_hidden:
                    grad_hidden[start:start + chunk] = grad_logits @ weight
                if need_weight:
                    grad_weight += grad_logits.t() @ h
        ctx.save_for_backward(grad_hidden if need_hidden else None, grad_weight if need_weight else None)
        ctx.weight_dtype = weight.dtype
        ctx.mark_non_differentiable(losses)
        return (losses * token_weights).sum(), losses

    @staticmethod
    def backward(ctx, grad_total: torch.Tensor, _grad_losses: torch.Tensor):
        grad_hidden, grad_weight = ctx.saved_tensors
        if grad_hidden is not None:
            grad_hidden = grad_hidden * grad_total.to(grad_hidden.dtype)
        if grad_weight is not None:
            grad_weight = (grad_weight * grad_total).to(ctx.weight_dtype)
        return grad_hidden, grad_weight, None, None, None


def linear_cross_entropy(hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor,
                         token_weights: torch.Tensor, chunk: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(``sum_t w_t * CE_t`` with gradients, per-token ``CE_t`` without) for logits ``hidden @ weight.T``."""
    if hidden.shape[0] == 0:
        zero = hidden.sum() * 0.0 + weight.sum() * 0.0
        return zero.float(), torch.zeros(0, device=hidden.device)
    chunk = chunk or max(16, _CHUNK_VALUES // weight.shape[0])
    token_weights = token_weights.to(_at_least_float32(hidden[:0]).dtype)
    return _WeightedLinearCrossEntropy.apply(hidden, weight, targets, token_weights, chunk)


def reference_linear_cross_entropy(hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor,
                                   token_weights: torch.Tensor) -> torch.Tensor:
    """The plain formula :func:`linear_cross_entropy` must match (full logits; for tests)."""
    losses = F.cross_entropy(_at_least_float32(hidden @ weight.t()), targets, reduction="none")
    return (losses * token_weights.to(losses.dtype)).sum()


@dataclass
class LossTerms:
    """A batch's loss summed over its pairs (``total`` has gradients, the rest are detached)."""

    total: torch.Tensor
    preference: torch.Tensor
    lm: torch.Tensor
    magnitude: torch.Tensor
    correct: torch.Tensor  # pairs with r_c > r_r (ties count as wrong)
    pairs: int


def reward_loss(rewards: torch.Tensor, lm_weighted_sum: torch.Tensor | None, lm_coef: float,
                magnitude_coef: float) -> LossTerms:
    """Combine the rewards (chosen, rejected interleaved) and the LM sum into :class:`LossTerms`.

    ``lm_weighted_sum`` is the sum over pairs of each pair's mean chosen-token loss (from
    :func:`linear_cross_entropy` with weights ``1 / tokens of the pair``), or None without LM term.
    """
    chosen, rejected = rewards[0::2].float(), rewards[1::2].float()
    preference = F.softplus(rejected - chosen)  # = -log sigmoid(r_c - r_r), stable
    magnitude = (chosen.abs() + rejected.abs()).pow(2)
    total = preference.sum() + magnitude_coef * magnitude.sum()
    lm = torch.zeros((), device=rewards.device)
    if lm_weighted_sum is not None:
        lm = lm_weighted_sum.float()
        total = total + lm_coef * lm
    return LossTerms(total=total, preference=preference.sum().detach(), lm=lm.detach(),
                     magnitude=magnitude.sum().detach(), correct=(chosen > rejected).sum().detach(),
                     pairs=int(chosen.numel()))
