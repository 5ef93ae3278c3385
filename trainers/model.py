"""The reward model: a transformers backbone and a scalar head, saved the way transformers loads it.

Two kinds of backbone:

* ``causal`` (any decoder LM, e.g. Qwen3): the base model, a zero-initialised bias-free linear
  ``score`` head on the hidden state of each sequence's last token, and the LM head (tied or not)
  for the LM term. Works on packed batches. Saved as ``<Arch>ForSequenceClassification``
  (``num_labels=1``, ``pad_token_id`` set) with the backbone under its base-model prefix and
  ``score.weight``, so ``AutoModelForSequenceClassification.from_pretrained`` gives the same
  scores (for architectures transformers has no such class for, :mod:`codeprefs.trainers.seqcls` writes
  one, loaded with ``trust_remote_code=True``); an untied LM head goes to
  ``lm_head.safetensors`` beside it (only resuming needs it).
* ``encoder`` (BERT-like): ``AutoModelForSequenceClassification`` as is, on padded batches, no LM
  term.

``auto`` picks ``encoder`` for model types that have a masked-LM head in transformers and
``causal`` otherwise.
"""

from __future__ import annotations

import copy
import functools
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.utils.checkpoint
from safetensors.torch import load_file, save_file
from torch import nn

from codeprefs.trainers.attention import SEGMENTS, VARLEN
from codeprefs.trainers.attention import register as register_attention
from codeprefs.core.encoding import EncodedPair
from codeprefs.trainers.loss import linear_cross_entropy
from codeprefs.trainers.packing import Batch, pack_pairs, pad_pairs
from codeprefs.trainers.seqcls import REWARD_CODE_FILE, sequence_classification_class

LM_HEAD_FILE = "lm_head.safetensors"
PACKED_BACKENDS = (SEGMENTS, VARLEN, "flash_attention_2", "flash_attention_3")


@dataclass
class RewardOutput:
    rewards: torch.Tensor  # [2P] float32, chosen/rejected interleaved
    lm_weighted_sum: torch.Tensor | None  # sum over pairs of the mean chosen-token loss
    lm_token_losses: torch.Tensor | None  # per LM position, detached


def detect_backbone(config: Any) -> str:
    """``encoder`` for masked-LM model types (BERT, RoBERTa, DeBERTa, ...), else ``causal``."""
    from transformers.models.auto.modeling_auto import MODEL_FOR_MASKED_LM_MAPPING_NAMES

    return "encoder" if config.model_type in MODEL_FOR_MASKED_LM_MAPPING_NAMES else "causal"


def _attention_for_packs(config: Any, wanted: str) -> str:
    """``wanted`` (one of our packed backends) if the model class can use it, else SDPA or eager."""
    import transformers
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

    model_class = getattr(transformers, MODEL_FOR_CAUSAL_LM_MAPPING_NAMES.get(config.model_type, ""), None)
    if model_class is None or model_class.is_backend_compatible():
        return wanted
    return _own_attention(model_class)


def _own_attention(model_class: type) -> str:
    """transformers' SDPA attention if ``model_class`` has it, else its eager attention."""
    return "sdpa" if getattr(model_class, "_supports_sdpa", False) else "eager"


class RewardModel(nn.Module):
    """Scalar reward per sequence; see the module doc for the two kinds."""

    def __init__(self, kind: str, *, backbone: nn.Module | None = None, score: nn.Linear | None = None,
                 lm_head: nn.Linear | None = None, classifier: nn.Module | None = None,
                 pad_token_id: int | None = None) -> None:
        super().__init__()
        self.kind = kind
        self.pad_token_id = pad_token_id
        self.fuse_lm_loss = False  # torch.compile the LM term's per-chunk softmax and gradient
        # Padding-free packs (else padded batches); trainers.packcheck turns it off for a causal
        # architecture that would mix the sequences of a pack.
        self.packs = kind == "causal"
        if kind == "causal":
            self.backbone = backbone
            self.score = score
            self.lm_head = lm_head
            self.lm_tied = lm_head is not None and lm_head.weight is backbone.get_input_embeddings().weight
        elif kind == "encoder":
            self.classifier = classifier
        else:
            raise ValueError(f"unknown backbone kind {kind!r}")

    # -- construction ----------------------------------------------------------------------
    @classmethod
    def from_causal_lm(cls, causal_lm: nn.Module, pad_token_id: int | None) -> RewardModel:
        """Wrap an ``AutoModelForCausalLM`` model: its base model, its LM head, a new zero score head."""
        sequence_classification_class(causal_lm.config)  # fail now, not at the save after training
        backbone = causal_lm.base_model
        lm_head = causal_lm.get_output_embeddings()
        hidden = backbone.config.get_text_config().hidden_size
        weight = backbone.get_input_embeddings().weight
        score = nn.Linear(hidden, 1, bias=False, device=weight.device, dtype=weight.dtype)
        nn.init.zeros_(score.weight)
        return cls("causal", backbone=backbone, score=score, lm_head=lm_head, pad_token_id=pad_token_id)

    @classmethod
    def from_pretrained(cls, path: str | Path, *, backbone: str = "auto", dtype: torch.dtype = torch.float32,
                        attn_implementation: str = SEGMENTS, pad_token_id: int | None = None) -> RewardModel:
        """Load a causal LM to start from, or a reward model this class (or anyone) saved.

        ``attn_implementation`` is any transformers value or one of :mod:`codeprefs.trainers.attention`'s;
        the latter need a model that passes the pack's boundaries down to its attention layers
        (transformers marks such classes ``is_backend_compatible``); others get SDPA (or eager)
        instead, and :mod:`codeprefs.trainers.packcheck` decides whether they can take packs at all.
        """
        from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForSequenceClassification

        register_attention()

        config = AutoConfig.from_pretrained(path)
        kind = detect_backbone(config) if backbone == "auto" else backbone
        if kind == "causal" and attn_implementation in (SEGMENTS, VARLEN):
            attn_implementation = _attention_for_packs(config, attn_implementation)
        is_reward_model = any(a.endswith("ForSequenceClassification") for a in (config.architectures or []))
        pad = pad_token_id if pad_token_id is not None else config.get_text_config().pad_token_id
        if kind == "encoder":  # padded batches only: the packed-sequence backends do not apply
            encoder_attention = attn_implementation
            if attn_implementation in PACKED_BACKENDS:
                encoder_attention = _own_attention(AutoModelForSequenceClassification._model_mapping[type(config)])
            classifier = AutoModelForSequenceClassification.from_pretrained(
                path, num_labels=1, dtype=dtype, attn_implementation=encoder_attention)
            classifier.config.pad_token_id = pad
            return cls("encoder", classifier=classifier, pad_token_id=pad)
        if not is_reward_model:
            causal_lm = AutoModelForCausalLM.from_pretrained(path, dtype=dtype, attn_implementation=attn_implementation)
            return cls.from_causal_lm(causal_lm, pad)
        loaded = sequence_classification_class(config).cls.from_pretrained(
            path, num_labels=1, dtype=dtype, attn_implementation=attn_implementation)
        base = getattr(loaded, loaded.base_model_prefix)
        embeddings = base.get_input_embeddings().weight
        lm_head = nn.Linear(embeddings.shape[1], embeddings.shape[0], bias=False, device=embeddings.device,
                            dtype=embeddings.dtype)
        lm_file = Path(path) / LM_HEAD_FILE
        if lm_file.exists():
            lm_head.weight.data.copy_(load_file(str(lm_file))["weight"])
        elif getattr(config.get_text_config(), "tie_word_embeddings", False):
            lm_head.weight = embeddings
        else:
            lm_head = None  # no LM term possible (trainer checks)
        return cls("causal", backbone=base, score=loaded.score, lm_head=lm_head, pad_token_id=pad)

    # -- properties --------------------------------------------------------------------------
    @property
    def config(self) -> Any:
        return self.backbone.config if self.kind == "causal" else self.classifier.config

    @property
    def has_lm_head(self) -> bool:
        return self.kind == "causal" and self.lm_head is not None

    def transformer(self) -> nn.Module:
        """The transformers model inside (for gradient checkpointing, attention and sharding)."""
        return self.backbone if self.kind == "causal" else self.classifier

    # -- forward -------------------------------------------------------------------------------
    def batch(self, pairs: Sequence[EncodedPair]) -> Batch:
        """``pairs`` the way this model takes them: one padding-free pack, or padded rows."""
        if self.packs:
            return pack_pairs(pairs)
        return pad_pairs(pairs, self.pad_token_id if self.pad_token_id is not None else 0)

    def forward(self, batch: Batch, with_lm: bool = False) -> RewardOutput:
        if self.kind == "encoder":
            if batch.packed:
                raise ValueError("encoder reward models take padded batches")
            logits = self.classifier(input_ids=batch.input_ids, attention_mask=batch.attention_mask).logits
            return RewardOutput(logits[:, 0].float(), None, None)
        hidden = self.hidden_states(batch)
        # A copy, not a view: FSDP2 warns about views returned from a wrapped module.
        rewards = self.score(hidden[batch.last_token]).squeeze(-1).to(torch.float32, copy=True)
        if not with_lm:
            return RewardOutput(rewards, None, None)
        if self.lm_head is None:
            raise ValueError("this reward model has no LM head, so the LM term cannot be computed")
        lm_sum, token_losses = lm_loss(hidden[batch.lm_positions], self.lm_head.weight, batch.lm_targets,
                                       batch.lm_weights, fused=self.fuse_lm_loss)
        return RewardOutput(rewards, lm_sum, token_losses)

    def hidden_states(self, batch: Batch) -> torch.Tensor:
        """The causal backbone's last hidden states, ``[tokens or slots, hidden]`` (flat indices as in ``batch``)."""
        extra = {}
        if batch.packed:
            extra = {"cu_seq_lens_q": batch.cu_seqlens, "cu_seq_lens_k": batch.cu_seqlens,
                     "max_length_q": batch.max_seqlen, "max_length_k": batch.max_seqlen}
        output = self.backbone(input_ids=batch.input_ids, attention_mask=batch.attention_mask,
                               position_ids=batch.position_ids, use_cache=False, **extra)
        hidden = output.last_hidden_state
        return hidden.reshape(-1, hidden.shape[-1])

    # -- saving --------------------------------------------------------------------------------
    def save_pretrained(self, path: str | Path, state_dict: dict[str, torch.Tensor] | None = None,
                        tokenizer: Any = None) -> None:
        """Write a checkpoint ``AutoModelForSequenceClassification`` loads (see module doc).

        ``state_dict`` is this module's full state dict (e.g. gathered from shards); default:
        ``self.state_dict()``.
        """
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        state = state_dict if state_dict is not None else self.state_dict()
        if self.kind == "encoder":
            classifier_state = {k.removeprefix("classifier."): v for k, v in state.items()}
            self.classifier.config.pad_token_id = self.pad_token_id
            self.classifier.save_pretrained(path, state_dict=classifier_state)
        else:
            config = copy.deepcopy(self.backbone.config)
            reward_class = sequence_classification_class(config)
            class_ = reward_class.cls
            config.architectures = [class_.__name__]
            if reward_class.auto_map is not None:
                config.auto_map = reward_class.auto_map
            config.num_labels = 1
            config.pad_token_id = self.pad_token_id
            tensors = {}
            for key, value in state.items():
                if key.startswith("backbone."):
                    tensors[f"{class_.base_model_prefix}.{key.removeprefix('backbone.')}"] = value
                elif key == "score.weight":
                    tensors[key] = value
            save_file({k: v.detach().cpu().contiguous().clone() for k, v in tensors.items()},
                      str(path / "model.safetensors"), metadata={"format": "pt"})
            config.save_pretrained(path)
            code_file = path / REWARD_CODE_FILE
            if reward_class.source is not None:
                code_file.write_text(reward_class.source)
            elif code_file.exists():
                code_file.unlink()
            lm_file = path / LM_HEAD_FILE
            if self.has_lm_head and not self.lm_tied:
                save_file({"weight": state["lm_head.weight"].detach().cpu().contiguous().clone()}, str(lm_file))
            elif lm_file.exists():
                lm_file.unlink()
        if tokenizer is not None:
            tokenizer.save_pretrained(path)


def lm_loss(hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor, token_weights: torch.Tensor,
            fused: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """The LM term: Liger's fused kernel on a GPU when installed, else our chunked version
    (``fused``: with its per-chunk elementwise work compiled)."""
    if hidden.is_cuda and _liger_cross_entropy() is not None:
        per_token = _liger_cross_entropy()(weight, hidden, targets)
        return (per_token.float() * token_weights).sum(), per_token.detach().float()
    return linear_cross_entropy(hidden, weight, targets, token_weights, fused=fused)


_LIGER: list[Any] = []


def _liger_cross_entropy() -> Any | None:
    if not _LIGER:
        try:
            from liger_kernel.transformers import LigerFusedLinearCrossEntropyLoss

            _LIGER.append(LigerFusedLinearCrossEntropyLoss(reduction="none"))
        except Exception:  # not installed or no Triton: use ours
            _LIGER.append(None)
    return _LIGER[0]


def use_liger(enabled: bool) -> None:
    """Turn Liger's fused LM loss on (if installed) or off for this process."""
    _LIGER.clear()
    if not enabled:
        _LIGER.append(None)


def apply_liger_kernels(model: RewardModel) -> bool:
    """Swap in Liger's RMSNorm/RoPE/SwiGLU kernels where Liger supports the model type."""
    try:
        from liger_kernel.transformers.monkey_patch import _apply_liger_kernel_to_instance
    except Exception:
        return False
    _apply_liger_kernel_to_instance(model=model.transformer(), rope=True, rms_norm=True, swiglu=True,
                                    cross_entropy=False, fused_linear_cross_entropy=False)
    return True


# The torch.compile backend of the blocks; a test puts a failing compiler here.
COMPILE_BACKEND: Any = "inductor"
_PLAIN_FORWARD = "_codeprefs_plain_forward"  # where a wrapped block keeps its forward from before


def wrap_blocks(blocks: list[nn.Module], *, compile: bool = False, checkpoint: bool = False) -> None:
    """Compile each transformer block's ``forward``, recompute its activations in backward, or both.

    ``compile``: ``torch.compile`` per block (regional compilation). Inductor fuses the small
    elementwise kernels of a block (RMSNorm with its float32 casts, RoPE, SwiGLU, residual adds),
    which is where an unfused step of a small model spends most of its time. Shapes are dynamic,
    so packs of any length reuse one graph, and blocks of one class share it.

    ``checkpoint``: non-reentrant activation checkpointing around the (compiled) forward, done
    here rather than by transformers so that the compiled region never contains the checkpoint
    (a graph break inside a checkpointed region would make dynamo run the whole block eagerly) and
    so that it works the same on every transformers version.

    Only ``forward`` is wrapped: module hooks, FSDP2's all-gathers among them, run outside both.
    Wrapping again replaces the earlier wrapping.
    """
    if (compile or checkpoint) and not blocks:
        raise ValueError("found no repeated transformer blocks in the model (neither _no_split_modules nor a stack "
                         "of same-class layers), so none can be compiled or checkpointed; pass --no-compile "
                         "--no-gradient-checkpointing")
    for block in blocks:
        unwrap_block(block)
        vars(block)[_PLAIN_FORWARD] = vars(block).get("forward")  # None: the class's own
        forward = block.forward
        if compile:
            forward = torch.compile(forward, dynamic=True, backend=COMPILE_BACKEND)
        if checkpoint:
            forward = functools.partial(_checkpointed, forward)
        block.forward = forward


def unwrap_block(block: nn.Module) -> None:
    """Undo :func:`wrap_blocks` on one block: its ``forward`` from before again."""
    if _PLAIN_FORWARD not in vars(block):
        return
    plain = vars(block).pop(_PLAIN_FORWARD)
    if plain is None:
        vars(block).pop("forward", None)
    else:
        block.forward = plain


def _checkpointed(forward: Any, *args: Any, **kwargs: Any) -> Any:
    return torch.utils.checkpoint.checkpoint(forward, *args, use_reentrant=False, **kwargs)


_DROPOUT_NAMES = ("dropout", "pdrop", "layerdrop")


def disable_dropout(model: nn.Module) -> None:
    """Set every dropout probability to 0 (reward-model training runs without dropout).

    Besides ``nn.Dropout`` modules, transformers layers keep probabilities as float attributes
    for functional dropout (StarCoder2's ``residual_dropout`` and ``embedding_dropout``, the
    ``attention_dropout`` every attention function receives in training) and some read them from
    their config during the forward pass: all of those become 0 too, so the saved config says
    what training did.
    """
    holders: dict[int, Any] = {}  # modules and their configs, each once (modules share configs)
    for module in model.modules():
        if isinstance(module, nn.Dropout):
            module.p = 0.0
        holders[id(module)] = module
        config = getattr(module, "config", None)
        if config is not None and not isinstance(config, dict):
            for holder in [config] + [getattr(config, key, None) for key in getattr(config, "sub_configs", {})]:
                if holder is not None:
                    holders[id(holder)] = holder
    for holder in holders.values():
        for name, value in list(vars(holder).items()):
            if type(value) is float and value > 0 and any(part in name for part in _DROPOUT_NAMES):
                setattr(holder, name, 0.0)
