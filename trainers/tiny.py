"""Tiny random-weight models and a tokenizer built on the spot: for tests, smoke runs, benchmarks.

Nothing here downloads anything. :func:`tiny_tokenizer` trains a byte-level BPE on a few strings
(every byte is in the alphabet, so any text tokenizes) and gives it a ChatML-like chat template;
:func:`qwen3_config` describes a Qwen3-shaped model of any size (``tiny`` or ``0.6b``).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
SPECIAL_TOKENS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>")

_CORPUS = (
    "def add(a, b):\n    return a + b\n",
    "int main(void) { printf(\"%d\\n\", 42); return 0; }\n",
    "for (let i = 0; i < items.length; i++) { total += items[i]; }\n",
    "Write a function that returns the sum of a list of numbers.\n",
    "func Sum(xs []int) int { s := 0; for _, x := range xs { s += x }; return s }\n",
    "public static int max(int[] values) { return Arrays.stream(values).max().getAsInt(); }\n",
    "You review answers to programming requests. Judge the answer by the criteria below.\n",
)


def _corpus() -> list[str]:
    from codeprefs.core.schema import Aspect
    from codeprefs.core.prompts import render_prompt

    return list(_CORPUS) + [render_prompt(list(Aspect))] + [render_prompt([aspect]) for aspect in Aspect]


def tiny_tokenizer(vocab_size: int = 512, texts: Sequence[str] = ()) -> Any:
    """A byte-level BPE tokenizer with pad ``<|endoftext|>`` (id 0) and a ChatML chat template.

    Its training text includes the criteria prompts, so system prompts take few tokens, and
    ``texts`` (e.g. code, for a benchmark that wants real code to take a realistic number of tokens).
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast


    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=list(SPECIAL_TOKENS),
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tokenizer.train_from_iterator(_corpus() * 4 + list(texts), trainer)
    wrapped = PreTrainedTokenizerFast(tokenizer_object=tokenizer, pad_token="<|endoftext|>",
                                      eos_token="<|im_end|>")
    wrapped.chat_template = CHAT_TEMPLATE
    return wrapped


def qwen3_config(size: str = "tiny", vocab_size: int | None = None, pad_token_id: int = 0,
                 tie_word_embeddings: bool = True) -> Any:
    """A Qwen3 config: ``tiny`` (2 layers, hidden 64) or ``0.6b`` (Qwen3-0.6B's shape)."""
    from transformers import Qwen3Config

    shapes = {
        "tiny": dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                     num_key_value_heads=2, head_dim=16, vocab_size=512, max_position_embeddings=4096),
        "0.6b": dict(hidden_size=1024, intermediate_size=3072, num_hidden_layers=28, num_attention_heads=16,
                     num_key_value_heads=8, head_dim=128, vocab_size=151936, max_position_embeddings=40960),
    }
    shape = dict(shapes[size])
    if vocab_size is not None:
        shape["vocab_size"] = vocab_size
    return Qwen3Config(**shape, rms_norm_eps=1e-6, rope_parameters={"rope_type": "default", "rope_theta": 1e6},
                       tie_word_embeddings=tie_word_embeddings, pad_token_id=pad_token_id,
                       eos_token_id=pad_token_id, bos_token_id=None, attention_dropout=0.0)


def save_tiny_causal_lm(path: str | Path, seed: int = 0, tie_word_embeddings: bool = True) -> Path:
    """Write a random tiny Qwen3 causal LM and its tokenizer to ``path`` (a ``--model`` folder)."""
    import torch
    from transformers import Qwen3ForCausalLM

    path = Path(path)
    tokenizer = tiny_tokenizer()
    config = qwen3_config("tiny", vocab_size=len(tokenizer), pad_token_id=tokenizer.pad_token_id,
                          tie_word_embeddings=tie_word_embeddings)
    torch.manual_seed(seed)
    Qwen3ForCausalLM(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def tiny_encoder_tokenizer(vocab_size: int = 512) -> Any:
    """A byte-level BPE tokenizer with BERT's special tokens and no chat template."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=["[PAD]", "[CLS]", "[SEP]", "[UNK]"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tokenizer.train_from_iterator(_corpus() * 4, trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tokenizer, pad_token="[PAD]", cls_token="[CLS]",
                                   sep_token="[SEP]", unk_token="[UNK]")


def save_tiny_encoder(path: str | Path, seed: int = 0) -> Path:
    """Write a random tiny BERT (masked-LM checkpoint) and its tokenizer to ``path``."""
    import torch
    from transformers import BertConfig, BertForMaskedLM

    path = Path(path)
    tokenizer = tiny_encoder_tokenizer()
    config = BertConfig(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=512, pad_token_id=tokenizer.pad_token_id)
    torch.manual_seed(seed)
    BertForMaskedLM(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path
