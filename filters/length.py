"""The length budget: a pair must fit the trainer's context before it is kept.

A pair's size is its prompt plus its longer side, measured the way the trainer will see it:

* with a tokenizer (``filters.length.tokenizer``: a local folder or a Hugging Face id), in tokens
  of the sequence the trainer renders (:meth:`codeprefs.core.encoding.PairEncoder.sequence_lengths`: the
  system prompt, the prompt and the response in the tokenizer's chat template, or the plain
  layout, closing tokens included). A row without a ``system`` text is measured with the longest
  system prompt the trainer may draw for it (all five criteria), so no draw pushes it over;
* without one, in UTF-8 bytes of ``input`` plus the longer of ``chosen`` and ``rejected``
  (``max_bytes``, default :data:`DEFAULT_MAX_BYTES`).

A pair over the budget is dropped as ``too_long``; the trainer would otherwise cut its responses,
and in many mined pairs the first difference lies past the cut, so both sides become identical.
"""

from __future__ import annotations

import hashlib
from functools import cache
from pathlib import Path
from typing import Any, Literal

from pydantic import Field

from codeprefs.core.encoding import DataError, PairEncoder
from codeprefs.core.prompts import render_prompt
from codeprefs.core.settings import Settings
from codeprefs.core.schema import Aspect

# 4,096 tokens x 3 bytes per token. Code tokenizers (StarCoder, Qwen2.5-Coder, Llama 3) average
# about 3 to 3.5 bytes of source per token; 3 errs toward dropping, so a pair under this byte
# budget is very likely under 4,096 tokens. Set a tokenizer for an exact count.
DEFAULT_MAX_BYTES = 4096 * 3


class LengthSettings(Settings):
    """The length budget of a pair, prompt plus longer side (the manifest's ``filters.length``):
    tokens of the trainer's rendering with ``tokenizer`` (a local folder or a Hugging Face id),
    else bytes."""

    tokenizer: str | None = None
    max_tokens: int = Field(default=4096, ge=8)
    # without a tokenizer: UTF-8 bytes of input + the longer side; 4,096 tokens x 3 bytes/token
    max_bytes: int = Field(default=DEFAULT_MAX_BYTES, ge=1)
    template: Literal["auto", "chat", "plain"] = "auto"  # as the trainer's --template


class LengthError(ValueError):
    """The length budget's tokenizer cannot be loaded; the message names it."""


def is_local(tokenizer: str) -> bool:
    """Whether ``tokenizer`` names a local folder (else a Hugging Face id)."""
    return Path(tokenizer).expanduser().is_dir() or tokenizer.startswith(("/", "./", "../", "~"))


def tokenizer_fingerprint(tokenizer: str) -> str:
    """What the budget's counts depend on: a local folder's file hashes, or a Hub id as given."""
    if not is_local(tokenizer):
        return f"hub:{tokenizer}"
    folder = Path(tokenizer).expanduser()
    if not folder.is_dir():
        raise LengthError(f"filters.length.tokenizer: {tokenizer}: no such folder")
    digest = hashlib.sha256()
    for file in sorted(p for p in folder.rglob("*") if p.is_file()):
        digest.update(str(file.relative_to(folder)).encode() + b"\0")
        digest.update(hashlib.sha256(file.read_bytes()).digest())
    return digest.hexdigest()


@cache
def load_tokenizer(tokenizer: str) -> Any:
    """The tokenizer (once per process); a local folder is read without any network access."""
    from transformers import AutoTokenizer

    local = is_local(tokenizer)
    try:
        return AutoTokenizer.from_pretrained(str(Path(tokenizer).expanduser()) if local else tokenizer,
                                             local_files_only=local)
    except Exception as error:  # transformers raises OSError, ValueError, ...; name the input
        raise LengthError(f"filters.length.tokenizer: cannot load {tokenizer!r}: "
                          f"{type(error).__name__}: {error}") from None


class PairBudget:
    """Measures a pair against the budget: tokens with a tokenizer, else bytes."""

    def __init__(self, settings: LengthSettings = LengthSettings()) -> None:
        self.settings = settings
        self._encoder: Any = None

    @property
    def tokenizer(self) -> str | None:
        return self.settings.tokenizer

    @property
    def unit(self) -> str:
        return "tokens" if self.tokenizer else "bytes"

    @property
    def limit(self) -> int:
        return self.settings.max_tokens if self.tokenizer else self.settings.max_bytes

    def encoder(self) -> Any:
        """The trainer's encoder for this tokenizer (loaded on first use, in the worker)."""
        if self._encoder is None:
            try:
                self._encoder = PairEncoder(load_tokenizer(self.tokenizer), max(self.settings.max_tokens, 8),
                                            self.settings.template)
            except DataError as error:
                raise LengthError(f"filters.length: {self.tokenizer}: {error}") from None
        return self._encoder

    def size(self, system: str | None, prompt: str, chosen: str, rejected: str) -> int:
        """The pair's prompt plus its longer side, in :attr:`unit`."""
        if not self.tokenizer:
            longer = max(len(chosen.encode("utf-8")), len(rejected.encode("utf-8")))
            return len(prompt.encode("utf-8")) + longer
        system_text = system or render_prompt(list(Aspect))
        return max(self.encoder().sequence_lengths(system_text, prompt, [chosen, rejected]))

    def fits(self, system: str | None, prompt: str, chosen: str, rejected: str) -> bool:
        return self.size(system, prompt, chosen, rejected) <= self.limit

    def __getstate__(self) -> dict[str, Any]:  # shipped to Ray workers without the tokenizer
        return {**self.__dict__, "_encoder": None}
