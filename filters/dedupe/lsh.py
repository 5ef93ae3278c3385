"""LSH banding: how to split a signature into bands, and the bucket key of each band.

Two documents with Jaccard similarity ``s`` agree on one band of ``r`` rows with probability
``s**r`` and so become candidates (share at least one of ``b`` buckets) with probability
``P(s) = 1 - (1 - s**r)**b``, an S-curve that rises around ``(1/b)**(1/r)``.

:func:`choose_bands` picks ``(b, r)`` with ``b * r <= num_perm`` that minimises

    fp_weight * integral_0^t P(s) ds  +  fn_weight * integral_t^1 (1 - P(s)) ds

for the threshold ``t``: the area of false positives (candidates below the threshold) plus the
area of false negatives (pairs above it that never collide), equally weighted by default. The
integrals are taken numerically on a fine grid. False positives cost only work (and, without
verification, wrongly merged rows); false negatives are duplicates that survive.
"""

from __future__ import annotations

from functools import cache

import numpy as np

from codeprefs.filters.dedupe.hashing import splitmix64

_GRID = 2001


def collision_probability(similarity: float | np.ndarray, bands: int, rows: int) -> np.ndarray:
    """The probability that two documents with this Jaccard similarity share a bucket."""
    return 1.0 - (1.0 - np.asarray(similarity, dtype=np.float64) ** rows) ** bands


@cache
def choose_bands(threshold: float, num_perm: int, fp_weight: float = 0.5,
                 fn_weight: float = 0.5) -> tuple[int, int]:
    """``(bands, rows)`` minimising the weighted false positive and negative areas (module doc)."""
    if not 0.0 < threshold < 1.0:
        raise ValueError(f"threshold must be strictly between 0 and 1, got {threshold}")
    if num_perm < 1:
        raise ValueError(f"num_perm must be positive, got {num_perm}")
    below = np.linspace(0.0, threshold, _GRID)
    above = np.linspace(threshold, 1.0, _GRID)
    best: tuple[float, int, int] | None = None
    for bands in range(1, num_perm + 1):
        for rows in range(1, num_perm // bands + 1):
            false_positive = np.trapezoid(collision_probability(below, bands, rows), below)
            false_negative = np.trapezoid(1.0 - collision_probability(above, bands, rows), above)
            error = fp_weight * false_positive + fn_weight * false_negative
            if best is None or error < best[0] - 1e-15:
                best = (error, bands, rows)
    assert best is not None
    return best[1], best[2]


def band_seeds(bands: int, seed: int) -> np.ndarray:
    """One 64-bit seed per band, so equal values in different bands give different keys."""
    base = np.uint64((seed * 0x9E3779B97F4A7C15 + 1) & 0xFFFFFFFFFFFFFFFF)
    return splitmix64(np.arange(bands, dtype=np.uint64) + base)


def band_keys(signatures: np.ndarray, bands: int, rows: int, seed: int = 0) -> np.ndarray:
    """``(documents, bands)`` ``uint64`` bucket keys: a hash of each band's ``rows`` values."""
    if signatures.ndim != 2 or signatures.shape[1] < bands * rows:
        raise ValueError(f"signatures of shape {signatures.shape} are too short for "
                         f"{bands} bands of {rows} rows")
    values = signatures[:, : bands * rows].astype(np.uint64).reshape(len(signatures), bands, rows)
    keys = np.broadcast_to(band_seeds(bands, seed), (len(signatures), bands)).copy()
    for row in range(rows):
        keys = splitmix64(keys ^ values[:, :, row])
    return keys
