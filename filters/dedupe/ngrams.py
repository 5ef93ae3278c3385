"""Hashed token n-grams (shingles), produced block by block with bounded memory.

An n-gram is ``n`` consecutive tokens of :mod:`codeprefs.filters.dedupe.tokenize`. Its 64-bit hash is
``splitmix64(sum_k token_hash[j + k] * M_k + salt)`` with fixed odd multipliers ``M_k``, so the
hash depends on the tokens and their order only; ``salt`` separates the n-grams of different
fields of one row (so the n-gram sets of ``chosen`` and ``rejected`` are kept apart).

Blocks follow the tokeniser's chunks: the last ``n - 1`` tokens of a chunk are carried into
the next, so the n-grams are exactly those of the whole text, in order.
"""

from __future__ import annotations

from collections.abc import Iterator
from functools import cache

import numpy as np

from codeprefs.filters.dedupe.hashing import MASK64, splitmix64
from codeprefs.filters.dedupe.tokenize import CHUNK_CHARS, SpanHashes, iter_token_blocks

_SHORT_TEXT_MIX = 0xA0761D6478BD642F


@cache
def multipliers(n: int) -> np.ndarray:
    """The fixed odd 64-bit multiplier of each of the ``n`` positions of an n-gram."""
    return splitmix64(np.arange(1, n + 1, dtype=np.uint64) * np.uint64(0x9E3779B97F4A7C15)) | np.uint64(1)


def field_salt(index: int) -> np.uint64:
    """The salt of the ``index``-th field of a row (0 for a single-field document)."""
    if index == 0:
        return np.uint64(0)
    return splitmix64(np.array([index], dtype=np.uint64))[0]


def _combine(hashes: np.ndarray, n: int, count: int, salt: np.uint64) -> np.ndarray:
    weights = multipliers(n)
    total = hashes[:count] * weights[0]
    for k in range(1, n):
        total += hashes[k:k + count] * weights[k]
    total += salt
    return splitmix64(total)


def iter_ngram_blocks(text: str, n: int, *, salt: np.uint64 = np.uint64(0), lowercase: bool = False,
                      whole_if_short: bool = False,
                      chunk_chars: int = CHUNK_CHARS) -> Iterator[SpanHashes]:
    """The n-grams of ``text``, in order, block by block (empty blocks are skipped).

    ``whole_if_short``: a text with at least one but fewer than ``n`` tokens gives one n-gram
    made of all its tokens (so short texts can still match their copies); otherwise it gives
    none.
    """
    if n < 1:
        raise ValueError(f"n-gram size must be at least 1, got {n}")
    pending_hashes = np.empty(0, dtype=np.uint64)
    pending_starts = np.empty(0, dtype=np.int64)
    pending_ends = np.empty(0, dtype=np.int64)
    produced = False
    for block in iter_token_blocks(text, lowercase=lowercase, chunk_chars=chunk_chars):
        hashes = np.concatenate([pending_hashes, block.hashes])
        starts = np.concatenate([pending_starts, block.starts])
        ends = np.concatenate([pending_ends, block.ends])
        count = len(hashes) - n + 1
        if count > 0:
            produced = True
            yield SpanHashes(_combine(hashes, n, count, salt), starts[:count], ends[n - 1:])
        keep = min(len(hashes), n - 1)
        pending_hashes = hashes[len(hashes) - keep:].copy()  # copies: free the block
        pending_starts = starts[len(starts) - keep:].copy()
        pending_ends = ends[len(ends) - keep:].copy()
    if not produced and whole_if_short and len(pending_hashes):
        short = len(pending_hashes)
        total = _combine(pending_hashes, short, 1, salt)[0]
        marker = np.uint64((short * _SHORT_TEXT_MIX) & MASK64)
        mixed = splitmix64(np.array([total ^ marker], dtype=np.uint64))
        yield SpanHashes(mixed, pending_starts[:1], pending_ends[-1:])


def ngram_set(texts: list[str | None], n: int, *, lowercase: bool = False,
              whole_if_short: bool = True) -> np.ndarray:
    """The sorted distinct n-gram hashes of a row's fields (field ``i`` salted with ``i``)."""
    parts = [
        block.hashes
        for index, text in enumerate(texts)
        if text
        for block in iter_ngram_blocks(text, n, salt=field_salt(index), lowercase=lowercase,
                                       whole_if_short=whole_if_short)
    ]
    if not parts:
        return np.empty(0, dtype=np.uint64)
    return np.unique(np.concatenate(parts))


def jaccard(left: np.ndarray, right: np.ndarray) -> float:
    """Exact Jaccard similarity of two sorted distinct hash sets (two empty sets: 0.0)."""
    union = len(left) + len(right)
    if union == 0:
        return 0.0
    common = len(np.intersect1d(left, right, assume_unique=True))
    return common / (union - common)
