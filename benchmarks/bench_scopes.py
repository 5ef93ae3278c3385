"""Scope kinds and changed share of a build's pairs (issue #13: change-scoped pairs).

    python benchmarks/bench_scopes.py OUT [OUT ...]

For each build folder, over its mined pairs (``source: git``): the median *changed share* of a
pair, the lines its line diff removes plus adds over the lines of both sides (the measure
``codeprefs stats`` reports, :func:`codeprefs.pipelines.quality.change_share`; goal: a median
of 10% or more), pairs under 1%, and the same per scope kind and per repository.

Measured 2026-12-06 on the development machine: a default build (``pairs.scope: function``) of
eight real repositories, one per language (DaveGamble/cJSON, Humanizr/Humanizer, google/leveldb,
spf13/cobra, jhy/jsoup, expressjs/express, psf/requests, sinatra/sinatra; 25,763 commits)::

    all        845 pairs  median 11.1%  under 1%: 30
    scope      function 605: 11.1%   window 165: 10.7%   class 65: 11.8%   file 10: 37.5%
    repository express 211: 14.3%   sinatra 102: 14.3%   jsoup 78: 14.7%   Humanizer 51: 13.2%
               cobra 60: 11.8%   requests 200: 8.5%   cJSON 106: 7.9%   leveldb 37: 6.7%

By the pair's length: under 20 lines 20.0% (268 pairs), 20-49 lines 8.7% (305), 50-99 lines
5.2% (164), 100-199 lines 3.6% (95), 200 or more 2.5% (13). The same build with
``pairs.scope: file`` keeps 324 pairs (whole files run into the length budget) at a median of
2.5%, 83 of them under 1%. Six other repositories (libuv/libuv, lodash/lodash, pallets/flask,
rack/rack, restsharp/RestSharp, square/okhttp; 31,205 commits): 1,517 pairs at 11.1%.

Before six changes of the same day the eight gave 795 pairs at 10.8% and the six 818 at
10.6%: windows of hunks far apart are cut one per group, files over the side bound are read
up to ``pairs.max_file_bytes`` (lodash.js), a long function holding definitions gives windows
(lodash's ``runInContext``), an ERROR node elsewhere in a file no longer sinks the functions
under it (libuv's fs.c), and a change that touches the comments right above a definition
gives that definition with its doc (where it gave a window or the enclosing class), and a
definition changed by blank lines alone beside real changes is no pair of its own.
"""

from __future__ import annotations

import statistics
import sys
from collections import defaultdict
from pathlib import Path

import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from codeprefs.pipelines.quality import change_share  # noqa: E402


def _summary(shares: list[float]) -> dict:
    return {"pairs": len(shares),
            "median_changed_share": round(statistics.median(shares), 4) if shares else None,
            "under_1pct": sum(share < 0.01 for share in shares)}


def summarize(output: Path) -> dict:
    """The changed share of ``output``'s mined pairs: overall, per scope kind and per repository."""
    table = pq.read_table(sorted((output / "data").glob("*.parquet")),
                          columns=["scope", "chosen", "rejected", "source", "repo"])
    rows = [row for row in table.to_pylist() if row["source"] == "git"]
    by_scope: dict[str, list[float]] = defaultdict(list)
    by_repo: dict[str, list[float]] = defaultdict(list)
    for row in rows:
        share = change_share(row["chosen"], row["rejected"])
        by_scope[row["scope"]].append(share)
        by_repo[row["repo"]].append(share)
    return {**_summary([share for shares in by_scope.values() for share in shares]),
            "scopes": {scope: _summary(shares) for scope, shares in sorted(by_scope.items())},
            "repositories": {repo: _summary(shares) for repo, shares in sorted(by_repo.items())}}


if __name__ == "__main__":
    for folder in sys.argv[1:]:
        found = summarize(Path(folder))
        print(f"{folder}: {found['pairs']} pairs, median changed share {found['median_changed_share']}, "
              f"{found['under_1pct']} under 1%")
        for group in ("scopes", "repositories"):
            for name, summary in found[group].items():
                print(f"  {name:40s} {summary['pairs']:6d} pairs  median {summary['median_changed_share']}  "
                      f"under 1%: {summary['under_1pct']}")
