"""Deterministic 64-bit hashing of byte spans and strings, vectorised with numpy.

Every hash here depends only on the bytes hashed: the same in every process, on every machine
and under every ``PYTHONHASHSEED``, which is what makes dedupe results independent of how the
work is spread over Ray workers.

A span's hash is ``splitmix64(poly ^ length * L)`` where ``poly = sum_j (byte_j + 1) * B**j``
modulo 2**64 with a fixed odd ``B``. All spans of one buffer are hashed at once from the prefix
sums of ``(byte_j + 1) * B**j``: ``poly(span) = (prefix[end] - prefix[start]) * B**-start``
(``B`` is odd, so invertible modulo 2**64).
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

MASK64 = (1 << 64) - 1
_BASE = 0x9E3779B97F4A7C15 | 1
_LENGTH_MIX = np.uint64(0xD6E8FEB86659FD93)


def splitmix64(values: np.ndarray) -> np.ndarray:
    """The splitmix64 finaliser, element-wise on a ``uint64`` array (returns a new array)."""
    x = np.array(values, dtype=np.uint64, copy=True)
    x ^= x >> np.uint64(30)
    x *= np.uint64(0xBF58476D1CE4E5B9)
    x ^= x >> np.uint64(27)
    x *= np.uint64(0x94D049BB133111EB)
    x ^= x >> np.uint64(31)
    return x


class _Powers:
    """``B ** i`` and ``B ** -i`` modulo 2**64 for ``i < n``, grown on demand, one per process."""

    forward = np.ones(1, dtype=np.uint64)
    inverse = np.ones(1, dtype=np.uint64)

    @classmethod
    def upto(cls, n: int) -> tuple[np.ndarray, np.ndarray]:
        if len(cls.forward) < n:
            size = max(n, 2 * len(cls.forward))
            cls.forward = _cumulative_powers(_BASE, size)
            cls.inverse = _cumulative_powers(pow(_BASE, -1, 1 << 64), size)
        return cls.forward, cls.inverse


def _cumulative_powers(base: int, size: int) -> np.ndarray:
    factors = np.full(size, base, dtype=np.uint64)
    factors[0] = 1
    return np.cumprod(factors, dtype=np.uint64)  # wraps modulo 2**64


def span_hashes(data: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """The hash of each byte span ``data[starts[i]:ends[i]]`` of one ``uint8`` buffer."""
    size = len(data)
    forward, inverse = _Powers.upto(size + 1)
    weighted = data.astype(np.uint64)
    weighted += np.uint64(1)
    weighted *= forward[:size]
    prefix = np.zeros(size + 1, dtype=np.uint64)
    np.cumsum(weighted, out=prefix[1:])
    polynomial = (prefix[ends] - prefix[starts]) * inverse[starts]
    lengths = (ends - starts).astype(np.uint64)
    return splitmix64(polynomial ^ (lengths * _LENGTH_MIX))


def hash_bytes(data: bytes) -> int:
    """The hash :func:`span_hashes` gives ``data`` (pure Python, for tests and debugging)."""
    total, power = 0, 1
    for byte in data:
        total = (total + (byte + 1) * power) & MASK64
        power = (power * _BASE) & MASK64
    mixed = total ^ ((len(data) * int(_LENGTH_MIX)) & MASK64)
    return int(splitmix64(np.array([mixed], dtype=np.uint64))[0])


def hash_strings(values: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """The hash of each UTF-8 value of a pyarrow string array (a null hashes like ``""``)."""
    if isinstance(values, pa.ChunkedArray):
        parts = [hash_strings(chunk) for chunk in values.chunks]
        return np.concatenate(parts) if parts else np.empty(0, dtype=np.uint64)
    if pa.types.is_string(values.type) or pa.types.is_binary(values.type):
        offset_type = np.int32
    elif pa.types.is_large_string(values.type) or pa.types.is_large_binary(values.type):
        offset_type = np.int64
    else:
        raise TypeError(f"expected a string array, got {values.type}")
    if len(values) == 0:
        return np.empty(0, dtype=np.uint64)
    _, offsets_buffer, data_buffer = values.buffers()
    offsets = np.frombuffer(offsets_buffer, dtype=offset_type)[values.offset: values.offset + len(values) + 1]
    offsets = offsets.astype(np.int64)
    if data_buffer is None or offsets[-1] == offsets[0]:
        data = np.empty(0, dtype=np.uint8)
    else:
        data = np.frombuffer(data_buffer, dtype=np.uint8)[offsets[0]: offsets[-1]]
    relative = offsets - offsets[0]
    return span_hashes(data, relative[:-1], relative[1:])
