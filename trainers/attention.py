"""Attention backends for packed sequences, registered with transformers' ``AttentionInterface``.

A packed row holds many sequences; each must attend only to itself. The backends here get the
sequence boundaries (``cu_seq_lens_q`` / ``max_length_q``, keyword arguments transformers passes
down to every attention call) and never build a ``[T, T]`` mask:

* ``codeprefs_varlen``: PyTorch's own varlen flash kernel, ``torch.nn.attention.varlen`` (CUDA).
* ``codeprefs_segments``: ``scaled_dot_product_attention`` once per sequence (any device; the CPU
  default and the GPU fallback when there is no varlen kernel).

``auto`` picks ``flash_attention_2`` when the ``flash_attn`` package imports on a GPU (transformers
then reads the same boundary arguments), else ``codeprefs_varlen`` on CUDA, else
``codeprefs_segments``. Plain ``sdpa`` also works on packs: transformers notices the position ids
restarting and builds a block-diagonal causal mask (quadratic in the pack length).

Both honour a layer's sliding window (Mistral, Gemma 2/3: each token sees the ``window`` tokens
ending at itself, transformers' convention). What they cannot compute, attention-logit
soft-capping (Gemma 2) and attention sinks (gpt-oss), raises :class:`UnsupportedAttention` rather
than being skipped. On a padded batch (no boundaries) both hand over to transformers' SDPA with
the usual padding mask.
"""

from __future__ import annotations

import importlib.util
import inspect
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

VARLEN = "codeprefs_varlen"
SEGMENTS = "codeprefs_segments"


def _torch_varlen() -> Any | None:
    try:
        from torch.nn.attention.varlen import varlen_attn
    except ImportError:
        return None
    return varlen_attn


@dataclass(frozen=True)
class _Varlen:
    """``varlen_attn`` and how this torch version spells "causal", sliding windows and GQA for it."""

    attend: Any
    causal: dict[str, Any]
    windows: bool  # takes window_size=(left, right)
    native_gqa: bool

    def mask(self, sliding_window: int | None) -> dict[str, Any]:
        """The keyword arguments for causal attention, within ``sliding_window`` tokens if given."""
        if sliding_window is None:
            return self.causal
        if not self.windows:
            raise NotImplementedError("this torch's varlen_attn has no sliding windows; "
                                      "use --attention segments or flash_attention_2")
        return {"window_size": (sliding_window - 1, 0)}  # the token itself and the window - 1 before it


def _varlen_setup() -> _Varlen | None:
    varlen_attn = _torch_varlen()
    if varlen_attn is None:
        return None
    parameters = inspect.signature(varlen_attn).parameters
    if "is_causal" in parameters:
        causal: dict[str, Any] = {"is_causal": True}
    elif "window_size" in parameters:
        causal = {"window_size": (-1, 0)}
    else:
        raise RuntimeError("torch.nn.attention.varlen.varlen_attn takes neither is_causal nor window_size")
    return _Varlen(varlen_attn, causal, "window_size" in parameters, "enable_gqa" in parameters)


# Looked up once, at import: the attention call runs inside torch.compile'd blocks, where
# signature inspection and imports would break the graph.
_VARLEN = _varlen_setup()


def _padded_fallback(module: torch.nn.Module, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                     attention_mask: torch.Tensor | None, **kwargs: Any) -> tuple[torch.Tensor, None]:
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    return sdpa_attention_forward(module, query, key, value, attention_mask, **kwargs)


class UnsupportedAttention(NotImplementedError):
    """The model's attention does something our backends do not compute; the trainer and the
    evaluator then switch the model to its own eager attention (:mod:`codeprefs.trainers.packcheck`)."""


def _refuse_what_we_cannot_compute(name: str, kwargs: dict[str, Any]) -> None:
    # SDPA and the varlen kernel can neither cap logits nor add sink logits: skipping either
    # silently would train a different model than the one loaded.
    if kwargs.get("softcap"):
        raise UnsupportedAttention(f"{name} attention cannot cap attention logits (soft-capping), "
                                   "which this model does")
    if kwargs.get("s_aux") is not None or kwargs.get("sinks") is not None:
        raise UnsupportedAttention(f"{name} attention cannot add attention sinks, which this model uses")


def _check_packed(name: str, query: torch.Tensor, key: torch.Tensor, dropout: float) -> None:
    if query.shape[0] != 1:
        raise ValueError(f"{name} attention takes one packed row, got a batch of {query.shape[0]}")
    if key.shape[2] != query.shape[2]:  # e.g. extra compressed or memory keys: not one key per pack token
        raise UnsupportedAttention(f"{name} attention needs one key per token of the pack; this model "
                                   f"attends to {key.shape[2]} keys from {query.shape[2]} tokens")
    if dropout:
        raise NotImplementedError(f"{name} attention does not implement attention dropout")


def varlen_attention_forward(module: torch.nn.Module, query: torch.Tensor, key: torch.Tensor,
                             value: torch.Tensor, attention_mask: torch.Tensor | None,
                             scaling: float | None = None, dropout: float = 0.0,
                             sliding_window: int | None = None, **kwargs: Any) -> tuple[torch.Tensor, None]:
    """One packed row through ``varlen_attn``: [1, heads, T, dim] in, [1, T, heads, dim] out."""
    _refuse_what_we_cannot_compute(VARLEN, kwargs)
    cu_seqlens, max_length = kwargs.get("cu_seq_lens_q"), kwargs.get("max_length_q")
    if cu_seqlens is None:
        return _padded_fallback(module, query, key, value, attention_mask, scaling=scaling, dropout=dropout,
                                sliding_window=sliding_window, **kwargs)
    _check_packed(VARLEN, query, key, dropout)
    if _VARLEN is None:
        raise RuntimeError("this torch has no torch.nn.attention.varlen; use --attention segments")
    q, k, v = (t.transpose(1, 2).squeeze(0).contiguous() for t in (query, key, value))  # [T, heads, dim]
    q, k, v = _in_autocast_dtype(q, k, v)
    groups = q.shape[1] // k.shape[1]
    extra: dict[str, Any] = {}
    if groups > 1:
        if _VARLEN.native_gqa:
            extra["enable_gqa"] = True
        else:
            k, v = k.repeat_interleave(groups, dim=1), v.repeat_interleave(groups, dim=1)
    cu_seqlens = cu_seqlens.to(torch.int32)
    out = _VARLEN.attend(q, k, v, cu_seqlens, cu_seqlens, max_length, max_length, scale=scaling,
                         **_VARLEN.mask(sliding_window), **extra)
    return out.unsqueeze(0), None


@torch.compiler.disable  # per-sequence Python loop: run eagerly inside a compiled block, never retraced
def segmented_attention_forward(module: torch.nn.Module, query: torch.Tensor, key: torch.Tensor,
                                value: torch.Tensor, attention_mask: torch.Tensor | None,
                                scaling: float | None = None, dropout: float = 0.0,
                                sliding_window: int | None = None, **kwargs: Any) -> tuple[torch.Tensor, None]:
    """One packed row, causal SDPA on each sequence in turn: [1, heads, T, dim] in, [1, T, heads, dim] out."""
    _refuse_what_we_cannot_compute(SEGMENTS, kwargs)
    cu_seqlens = kwargs.get("cu_seq_lens_q")
    if cu_seqlens is None:
        return _padded_fallback(module, query, key, value, attention_mask, scaling=scaling, dropout=dropout,
                                sliding_window=sliding_window, **kwargs)
    _check_packed(SEGMENTS, query, key, dropout)
    groups = query.shape[1] // key.shape[1]
    if groups > 1:
        key, value = key.repeat_interleave(groups, dim=1), value.repeat_interleave(groups, dim=1)
    query, key, value = _in_autocast_dtype(query, key, value)
    lengths = cu_seqlens.diff().tolist()
    parts = [_causal_attention(q, k, v, scaling, sliding_window)
             for q, k, v in zip(query.split(lengths, dim=2), key.split(lengths, dim=2), value.split(lengths, dim=2),
                                strict=True)]
    return torch.cat(parts, dim=2).transpose(1, 2).contiguous(), None


def _in_autocast_dtype(*tensors: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """Float32 attention inputs in autocast's dtype when autocast is on: a model's RoPE can hand
    them over in float32, the varlen kernel takes only half precision, and autocast has no rule
    for it (nor for our per-sequence loop's inputs)."""
    device = tensors[0].device.type
    if tensors[0].dtype != torch.float32 or not torch.is_autocast_enabled(device):
        return tensors
    dtype = torch.get_autocast_dtype(device)
    return tuple(tensor.to(dtype) for tensor in tensors)


def _causal_attention(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, scaling: float | None,
                      sliding_window: int | None) -> torch.Tensor:
    """Causal SDPA over one sequence; with a window, each query sees only the last ``sliding_window`` keys."""
    length = query.shape[2]
    if sliding_window is None or length <= sliding_window:
        return F.scaled_dot_product_attention(query, key, value, is_causal=True, scale=scaling)
    offset = torch.arange(length, device=query.device)[:, None] - torch.arange(length, device=query.device)[None, :]
    allowed = (offset >= 0) & (offset < sliding_window)
    return F.scaled_dot_product_attention(query, key, value, attn_mask=allowed, scale=scaling)


def _padding_mask_only(**kwargs: Any) -> torch.Tensor | None:
    """Mask builder for our backends: the SDPA mask for padded batches, nothing for packs."""
    from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS

    if kwargs.get("attention_mask") is None:
        return None
    return ALL_MASK_ATTENTION_FUNCTIONS["sdpa"](**kwargs)


def register() -> None:
    """Make ``codeprefs_varlen`` and ``codeprefs_segments`` valid ``attn_implementation`` values."""
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface

    AttentionInterface.register(VARLEN, varlen_attention_forward)
    AttentionInterface.register(SEGMENTS, segmented_attention_forward)
    AttentionMaskInterface.register(VARLEN, _padding_mask_only)
    AttentionMaskInterface.register(SEGMENTS, _padding_mask_only)


def choose_attention(requested: str, device: torch.device) -> str:
    """The ``attn_implementation`` to load models with (see module doc for ``auto``)."""
    register()
    if requested == "auto":
        if device.type == "cuda" and importlib.util.find_spec("flash_attn") is not None:
            return "flash_attention_2"
        return VARLEN if device.type == "cuda" and _VARLEN is not None else SEGMENTS
    if requested in (VARLEN, "varlen"):
        if device.type != "cuda" or _VARLEN is None:
            raise ValueError("varlen attention needs CUDA and torch.nn.attention.varlen; use --attention segments")
        return VARLEN
    if requested in (SEGMENTS, "segments"):
        return SEGMENTS
    if requested in ("sdpa", "eager", "flash_attention_2", "flash_attention_3", "flex_attention"):
        return requested
    raise ValueError(f"unknown attention {requested!r}; expected auto, varlen, segments, flash_attention_2, "
                     "sdpa or eager")
