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

import functools
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

# Rows of logits per chunk: about 2**27 float32 values (512 MiB) whatever the vocabulary.
_CHUNK_VALUES = 1 << 27


def _at_least_float32(tensor: torch.Tensor) -> torch.Tensor:
    return tensor if tensor.dtype == torch.float64 else tensor.float()


def _cross_entropy_and_grad(logits: torch.Tensor, targets: torch.Tensor,
                            token_weights: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-row CE of ``logits`` and ``w * dCE/dlogits`` in the logits' dtype, written for inductor,
    which fuses it into a reduction and one elementwise pass."""
    wide = _at_least_float32(logits)
    log_norm = torch.logsumexp(wide, dim=-1, keepdim=True)
    losses = (log_norm - wide.gather(1, targets[:, None])).squeeze(1)
    hot = torch.arange(wide.shape[1], device=wide.device)[None, :] == targets[:, None]
    grad = ((wide - log_norm).exp() - hot.to(wide.dtype)) * token_weights[:, None]
    return losses, grad.to(logits.dtype)


def _cross_entropy_and_grad_in_place(logits: torch.Tensor, targets: torch.Tensor,
                                     token_weights: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The same in eager mode, turning one float32 copy of the logits into the gradient in place."""
    logits = _at_least_float32(logits)
    log_norm = torch.logsumexp(logits, dim=-1)
    losses = log_norm - logits.gather(1, targets[:, None]).squeeze(1)
    grad = logits.sub_(log_norm[:, None]).exp_()  # softmax
    grad[torch.arange(len(targets), device=targets.device), targets] -= 1.0
    return losses, grad.mul_(token_weights[:, None])


@functools.cache
def _fused_cross_entropy_and_grad() -> Callable[..., tuple[torch.Tensor, torch.Tensor]]:
    return torch.compile(_cross_entropy_and_grad, dynamic=True)


class _WeightedLinearCrossEntropy(torch.autograd.Function):
    """sum_t w_t * CE(hidden_t @ weight.T, target_t), with gradients computed in forward."""

    @staticmethod
    def forward(ctx, hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor,
                token_weights: torch.Tensor, chunk: int, fused: bool) -> tuple[torch.Tensor, torch.Tensor]:
        need_hidden, need_weight = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        losses = torch.empty(hidden.shape[0], dtype=_at_least_float32(hidden[:0]).dtype, device=hidden.device)
        grad_hidden = torch.empty_like(hidden) if need_hidden else None
        grad_weight = torch.zeros_like(_at_least_float32(weight)) if need_weight else None
        for start in range(0, hidden.shape[0], chunk):
            rows = slice(start, start + chunk)
            h, t, w = hidden[rows], targets[rows], token_weights[rows]
            if fused:
                losses[rows], grad_logits = _fused_cross_entropy_and_grad()(h @ weight.t(), t, w)
            else:
                losses[rows], grad_logits = _cross_entropy_and_grad_in_place(h @ weight.t(), t, w)
            if need_hidden:
                grad_hidden[rows] = grad_logits.to(hidden.dtype) @ weight
            if need_weight:
                grad_weight += grad_logits.to(hidden.dtype).t() @ h
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
        return grad_hidden, grad_weight, None, None, None, None


def linear_cross_entropy(hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor,
                         token_weights: torch.Tensor, chunk: int | None = None,
                         fused: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """(``sum_t w_t * CE_t`` with gradients, per-token ``CE_t`` without) for logits ``hidden @ weight.T``.

    ``fused``: each chunk's softmax and gradient go through one ``torch.compile``'d function.
    """
    if hidden.shape[0] == 0:
        zero = hidden.sum() * 0.0 + weight.sum() * 0.0
        return zero.float(), torch.zeros(0, device=hidden.device)
    chunk = chunk or max(16, _CHUNK_VALUES // weight.shape[0])
    token_weights = token_weights.to(_at_least_float32(hidden[:0]).dtype)
    return _WeightedLinearCrossEntropy.apply(hidden, weight, targets, token_weights, chunk, fused)


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
