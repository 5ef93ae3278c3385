"""MinHash signatures, vectorised with numpy over fixed-size blocks of shingles.

A document is one or more text fields (a row's ``chosen`` and ``rejected``); its shingle set
is the union of the n-gram sets of its fields, each field salted apart
(:func:`codeprefs.filters.dedupe.ngrams.field_salt`). Each of the ``num_perm`` hash functions comes from
the multiply-add-shift family ``h(x) = ((a * x + b) mod 2**64) >> 32`` on the 32-bit folded
shingle hash ``x``, with ``a, b`` drawn from a seeded generator: a strongly universal family
(Dietzfelbinger 1996), computed with plain wrapping ``uint64`` arithmetic, no modulo.
Because the shift is monotone, the minimum is taken on the 64-bit values and shifted once.

Shingles of many short documents share one block, and a long document spans many blocks: a
block is a ``(num_perm, block_shingles)`` array, reduced per document with
``np.minimum.reduceat`` and folded into the running minimum. So the memory of one call is
``8 * num_perm * block_shingles`` bytes plus one tokeniser chunk, whatever the documents' sizes.
A document with no token at all has no shingle: its signature stays at the all-ones sentinel
and :meth:`MinHasher.signatures` reports it, so callers can leave it out of LSH.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from codeprefs.filters.dedupe.ngrams import field_salt, iter_ngram_blocks

EMPTY_SIGNATURE_VALUE = np.uint32(0xFFFFFFFF)
_ALL_ONES64 = np.uint64(0xFFFFFFFFFFFFFFFF)


class MinHasher:
    """Computes MinHash signatures of documents made of text fields (see the module doc)."""

    def __init__(self, num_perm: int = 256, ngram: int = 20, seed: int = 1,
                 block_shingles: int = 4096) -> None:
        if num_perm < 1 or ngram < 1 or block_shingles < 1:
            raise ValueError("num_perm, ngram and block_shingles must be positive")
        self.num_perm = num_perm
        self.ngram = ngram
        self.seed = seed
        self.block_shingles = block_shingles
        generator = np.random.default_rng(seed)
        self.a = generator.integers(0, 1 << 64, size=num_perm, dtype=np.uint64, endpoint=False)
        self.b = generator.integers(0, 1 << 64, size=num_perm, dtype=np.uint64, endpoint=False)
        self._buffer: np.ndarray | None = None

    def signatures(self, documents: Sequence[Sequence[str | None]]) -> tuple[np.ndarray, np.ndarray]:
        """``(signatures, has_shingles)`` for ``documents`` (each a sequence of field texts).

        ``signatures`` is ``(len(documents), num_perm)`` ``uint32``; ``has_shingles[i]`` is
        False when document ``i`` has no token (its signature is all :data:`EMPTY_SIGNATURE_VALUE`).
        """
        minimum = np.full((len(documents), self.num_perm), _ALL_ONES64, dtype=np.uint64)
        has_shingles = np.zeros(len(documents), dtype=bool)
        pending: list[np.ndarray] = []
        owners: list[int] = []
        buffered = 0
        for index, fields in enumerate(documents):
            for field_index, text in enumerate(fields):
                if not text:
                    continue
                for block in iter_ngram_blocks(text, self.ngram, salt=field_salt(field_index),
                                               whole_if_short=True):
                    has_shingles[index] = True
                    hashes = block.hashes
                    while len(hashes):
                        room = self.block_shingles - buffered
                        pending.append(hashes[:room])
                        owners.append(index)
                        buffered += len(pending[-1])
                        hashes = hashes[room:]
                        if buffered >= self.block_shingles:
                            self._fold(pending, owners, minimum)
                            pending, owners, buffered = [], [], 0
        if buffered:
            self._fold(pending, owners, minimum)
        return (minimum >> np.uint64(32)).astype(np.uint32), has_shingles

    def _fold(self, pieces: list[np.ndarray], owners: list[int], minimum: np.ndarray) -> None:
        """Fold one block of shingles (pieces in document order) into the running minima."""
        shingles = np.concatenate(pieces)
        folded = (shingles ^ (shingles >> np.uint64(32))) & np.uint64(0xFFFFFFFF)
        size = len(folded)
        if self._buffer is None:
            self._buffer = np.empty(self.num_perm * self.block_shingles, dtype=np.uint64)
        values = self._buffer[: self.num_perm * size].reshape(self.num_perm, size)
        np.multiply(self.a[:, None], folded[None, :], out=values)
        values += self.b[:, None]
        # One segment per run of pieces of the same document.
        lengths = np.array([len(piece) for piece in pieces])
        offsets = np.concatenate([[0], np.cumsum(lengths)[:-1]])
        owner_array = np.array(owners)
        first = np.concatenate([[True], owner_array[1:] != owner_array[:-1]])
        segment_starts = offsets[first]
        segment_owners = owner_array[first]
        block_minimum = np.minimum.reduceat(values, segment_starts, axis=1).T
        minimum[segment_owners] = np.minimum(minimum[segment_owners], block_minimum)


def estimated_jaccard(left: np.ndarray, right: np.ndarray) -> float:
    """The share of equal signature positions: the MinHash estimate of Jaccard similarity."""
    return float(np.mean(left == right))
