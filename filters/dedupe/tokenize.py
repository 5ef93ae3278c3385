"""The code tokeniser shared by near-dedupe and decontamination, vectorised with numpy.

A token is either a maximal run of word bytes or one punctuation byte; whitespace separates
tokens and is never part of one. Word bytes are ASCII ``[A-Za-z0-9_]`` and every byte of a
non-ASCII UTF-8 character, so a Unicode identifier or a word in another script stays one token
(the cost: a non-ASCII symbol glued to a word joins it). So ``x=foo(a_b, 12)`` gives
``x = foo ( a_b , 12 )``; reformatting, re-indenting or re-wrapping code changes no token.

Tokens are never materialised as Python strings. :func:`iter_token_blocks` reads the text in
chunks of a fixed number of characters, cuts each chunk after its last ASCII non-word byte (so
no token and no UTF-8 character is split, except a single run of word bytes longer than
``MAX_RUN_CHUNKS * chunk_chars`` bytes, which is cut there), and returns for each chunk the
64-bit hash of every token and the byte offsets where it starts and ends in the UTF-8 text. Memory is bounded by the chunk size,
whatever the length of the document.

A token's hash is :func:`codeprefs.filters.dedupe.hashing.span_hashes` of its bytes: it depends only on
the token's bytes, so it is the same in every process and on every machine.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from codeprefs.filters.dedupe.hashing import hash_bytes, span_hashes

CHUNK_CHARS = 1 << 16  # characters read per step; bounds memory per document
MAX_RUN_CHUNKS = 4  # a run of word bytes longer than this many chunks (in bytes) is cut

# Byte classes: 0 whitespace / control, 1 word, 2 punctuation (one token per byte).
_SPACE, _WORD, _PUNCT = 0, 1, 2
BYTE_CLASS = np.full(256, _PUNCT, dtype=np.uint8)
BYTE_CLASS[:33] = _SPACE  # control characters and the space
BYTE_CLASS[127] = _SPACE  # DEL
for _low, _high in ((ord("0"), ord("9")), (ord("A"), ord("Z")), (ord("a"), ord("z"))):
    BYTE_CLASS[_low:_high + 1] = _WORD
BYTE_CLASS[ord("_")] = _WORD
BYTE_CLASS[128:] = _WORD  # every byte of a non-ASCII character

# The same rule as a regular expression, for reading and for tests (not used on the hot path).
TOKEN_PATTERN = re.compile(r"(?:[A-Za-z0-9_]|[^\x00-\x7f])+|[\x21-\x7e]")


@dataclass(frozen=True)
class SpanHashes:
    """Hashed spans of a text (a chunk's tokens, or the n-grams over them): a hash and the
    [start, end) byte offsets into the UTF-8 text of each."""

    hashes: np.ndarray  # uint64
    starts: np.ndarray  # int64
    ends: np.ndarray  # int64

    def __len__(self) -> int:
        return len(self.hashes)


def _tokens_of_bytes(data: np.ndarray, offset: int) -> SpanHashes:
    """Tokenise one chunk of UTF-8 bytes that starts at byte ``offset`` of the document."""
    classes = np.take(BYTE_CLASS, data)
    word = classes == _WORD
    starts_here = classes == _PUNCT
    ends_here = starts_here.copy()
    starts_here[0] |= word[0]
    starts_here[1:] |= word[1:] & ~word[:-1]
    ends_here[-1] |= word[-1]
    ends_here[:-1] |= word[:-1] & ~word[1:]
    starts = np.flatnonzero(starts_here)
    ends = np.flatnonzero(ends_here) + 1
    hashes = span_hashes(data, starts, ends)
    return SpanHashes(hashes, starts.astype(np.int64) + offset, ends.astype(np.int64) + offset)


def _cut_point(data: np.ndarray) -> int:
    """Index after the last ASCII non-word byte of ``data`` (0 if there is none)."""
    boundary = np.flatnonzero(np.take(BYTE_CLASS, data) != _WORD)
    return int(boundary[-1]) + 1 if len(boundary) else 0


def iter_token_blocks(text: str, *, lowercase: bool = False,
                      chunk_chars: int = CHUNK_CHARS) -> Iterator[SpanHashes]:
    """The tokens of ``text`` chunk by chunk (see the module doc); empty blocks are skipped."""
    if chunk_chars < 1:
        raise ValueError(f"chunk_chars must be positive, got {chunk_chars}")
    carry = b""
    offset = 0  # byte offset of the first byte of ``carry`` in the whole text
    for position in range(0, len(text), chunk_chars):
        piece = text[position:position + chunk_chars]
        if lowercase:
            piece = piece.lower()
        encoded = carry + piece.encode("utf-8", "surrogatepass")
        data = np.frombuffer(encoded, dtype=np.uint8)
        last = position + chunk_chars >= len(text)
        cut = len(data) if last else _cut_point(data)
        if cut == 0:  # the chunk is one run of word bytes: carry it on, or cut a very long one
            if len(data) <= MAX_RUN_CHUNKS * chunk_chars:
                carry = encoded
                continue
            cut = len(data)
        block = _tokens_of_bytes(data[:cut], offset)
        carry = encoded[cut:]
        offset += cut
        if len(block):
            yield block


def token_hashes(text: str, *, lowercase: bool = False) -> np.ndarray:
    """Every token hash of ``text`` in order (one array; use the blocks for huge texts)."""
    blocks = [block.hashes for block in iter_token_blocks(text, lowercase=lowercase)]
    return np.concatenate(blocks) if blocks else np.empty(0, dtype=np.uint64)


def tokens(text: str) -> list[str]:
    """The tokens of ``text`` as strings (the same rule, via :data:`TOKEN_PATTERN`)."""
    return TOKEN_PATTERN.findall(text)


def hash_token(token: str) -> int:
    """The hash :func:`iter_token_blocks` gives ``token`` (pure Python, for tests and debugging)."""
    return hash_bytes(token.encode("utf-8", "surrogatepass"))
