"""What the kept pairs teach, measured once when the shards are written (``run.json: quality``).

Per pair, in parallel Ray tasks over the written shards:

* the change size: lines that differ between rejected and chosen (``difflib``: lines removed
  plus lines added) over the lines of the pair (both sides);
* the size of each side: tokens of the length budget's tokenizer when ``filters.length`` names
  one, else UTF-8 bytes;
* the scope kind (the ``scope`` column when the rows have one, else ``file``: whole files);
* its criterion and its source and subset.

The driver keeps only these small numbers and summarises them: quantiles (p10, p50, p90) of the
change share and of each side's size, counts per scope kind, and criterion x source/subset counts.
``codeprefs stats`` and the dataset card read the summary; neither rereads the shards for it.
"""

from __future__ import annotations

import difflib
from collections import Counter
from typing import Any

import numpy as np
import pyarrow as pa

QUANTILES = (("p10", 0.1), ("p50", 0.5), ("p90", 0.9))


def change_share(chosen: str, rejected: str) -> float:
    """Changed lines (removed + added) over the pair's lines (both sides); 0.0 for no lines."""
    old, new = rejected.splitlines(), chosen.splitlines()
    total = len(old) + len(new)
    if total == 0:
        return 0.0
    matcher = difflib.SequenceMatcher(None, old, new, autojunk=False)
    same = sum(block.size for block in matcher.get_matching_blocks())
    return (total - 2 * same) / total


class PairMetrics:
    """A shard batch -> one small row of measures per pair (see the module docstring)."""

    def __init__(self, tokenizer: str | None = None) -> None:
        self.tokenizer = tokenizer

    def _sizes(self, texts: list[str]) -> list[int]:
        if not self.tokenizer:
            return [len(text.encode("utf-8")) for text in texts]
        from codeprefs.filters.length import load_tokenizer

        return [len(ids) for ids in load_tokenizer(self.tokenizer)(texts, add_special_tokens=False)["input_ids"]]

    def __call__(self, batch: pa.Table) -> pa.Table:
        chosen = [text or "" for text in batch["chosen"].to_pylist()]
        rejected = [text or "" for text in batch["rejected"].to_pylist()]
        scope = batch["scope"].to_pylist() if "scope" in batch.column_names else ["file"] * batch.num_rows
        return pa.table({
            "change_share": [change_share(c, r) for c, r in zip(chosen, rejected, strict=True)],
            "chosen_size": self._sizes(chosen),
            "rejected_size": self._sizes(rejected),
            "scope": [kind or "file" for kind in scope],
            "aspect": batch["aspect"],
            "source": [f"{source}/{subset}" for source, subset in
                       zip(batch["source"].to_pylist(), batch["subset"].to_pylist(), strict=True)],
        })


def _quantiles(values: list[float], digits: int) -> dict[str, float | None]:
    if not values:
        return {name: None for name, _ in QUANTILES}
    array = np.asarray(values, dtype=float)
    return {name: round(float(np.quantile(array, q)), digits) for name, q in QUANTILES}


def summarize(rows: list[dict[str, Any]], unit: str) -> dict[str, Any]:
    """The ``quality`` section of ``run.json`` from :class:`PairMetrics` rows."""
    labels: Counter[tuple[str, str]] = Counter((row["aspect"], row["source"]) for row in rows)
    return {
        "pairs": len(rows),
        "change_share": _quantiles([row["change_share"] for row in rows], 4),
        "size_unit": unit,
        "chosen_size": _quantiles([row["chosen_size"] for row in rows], 1),
        "rejected_size": _quantiles([row["rejected_size"] for row in rows], 1),
        "scope": dict(sorted(Counter(row["scope"] for row in rows).items())),
        "labels": [{"aspect": aspect, "source": source, "pairs": n}
                   for (aspect, source), n in sorted(labels.items())],
    }


def quality_summary(shard_paths: list[str], tokenizer: str | None = None) -> dict[str, Any]:
    """Measure every pair of the written shards on Ray and summarise (inside a Ray session)."""
    from codeprefs.core.store import read_parquet

    unit = "tokens" if tokenizer else "bytes"
    if not shard_paths:
        return summarize([], unit)
    rows = (read_parquet(shard_paths)
            .map_batches(PairMetrics(tokenizer), batch_format="pyarrow")
            .take_all())
    return summarize(rows, unit)
