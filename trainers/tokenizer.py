"""The tokenizer of a model folder or Hub id, made ready for reward pairs.

Both the trainer and the evaluator read a tokenizer the same way (and the evaluator must read
the trainer's saved one exactly as training did), so the one place that does it lives below both.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from codeprefs.trainers.data import DataError


def check_model_source(source: str | Path) -> None:
    """Fail clearly on a local model path that does not exist (rather than as a bad Hub id)."""
    text = str(source)
    if not Path(text).expanduser().exists() and (text.startswith(("/", "./", "../", "~")) or text.endswith("/")):
        raise FileNotFoundError(f"{text}: no such model folder")


def load_tokenizer(source: str | Path, chat_template: str | None = None, pad_token: str | None = None) -> Any:
    """The tokenizer at ``source``, with an optional chat template file and pad token."""
    # Imported here: transformers takes seconds to import, and the command lines' --help and
    # input errors should not wait for it.
    from transformers import AutoTokenizer

    check_model_source(source)
    tokenizer = AutoTokenizer.from_pretrained(source)
    if chat_template:
        tokenizer.chat_template = Path(chat_template).read_text()
    if pad_token is not None:
        if pad_token not in tokenizer.get_vocab():
            raise DataError(f"--pad-token {pad_token!r} is not in the vocabulary of {source}")
        tokenizer.pad_token = pad_token
    if tokenizer.pad_token_id is None:
        if tokenizer.eos_token_id is None:
            raise DataError(f"{source}: the tokenizer has neither a pad nor an eos token")
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer
