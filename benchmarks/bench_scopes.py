"""Scope kinds and changed share of a build's pairs (issue #13: change-scoped pairs).

    python benchmarks/bench_scopes.py OUT [OUT ...]

For each build folder: pairs per ``scope`` and the median *changed share* of a pair, the lines
its line diff removes plus adds over the lines of both sides (``pipelines.scopes.hunks``).
"""

from __future__ import annotations

import statistics
import sys
from collections import Counter
from pathlib import Path

import pyarrow.parquet as pq

from codeprefs.pipelines.scopes import hunks, split_lines


def changed_share(chosen: str, rejected: str) -> float:
    old, new = split_lines(rejected.encode("utf-8")), split_lines(chosen.encode("utf-8"))
    changed = sum((i2 - i1) + (j2 - j1) for i1, i2, j1, j2 in hunks(old, new))
    return changed / max(1, len(old) + len(new))


def summarize(output: Path) -> dict:
    table = pq.read_table(sorted((output / "data").glob("*.parquet")),
                          columns=["scope", "chosen", "rejected", "source"])
    rows = [row for row in table.to_pylist() if row["source"] == "git"]
    shares = [changed_share(row["chosen"], row["rejected"]) for row in rows]
    return {"pairs": len(rows), "scopes": dict(Counter(row["scope"] for row in rows)),
            "median_changed_share": round(statistics.median(shares), 4) if shares else None,
            "under_1pct": sum(share < 0.01 for share in shares)}


if __name__ == "__main__":
    for folder in sys.argv[1:]:
        print(folder, summarize(Path(folder)))
