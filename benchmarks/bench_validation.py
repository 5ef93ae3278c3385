"""Validation cost vs raw parsing, and how often real mined code has tree-sitter errors.

    .venv/bin/python benchmarks/bench_validation.py LANGUAGE=/path/to/repo [...]
    e.g. C=redis Go=cobra C++=leveldb C#=Newtonsoft.Json Java=gson JavaScript=express \
         Python=requests Ruby=sinatra

For each repository, the git source collects up to ``--pairs`` real single-file commits in the
given language (structural filters only, so that message wording does not bias the sample) and
reads both versions of the file. Then, per language, in one process:

* **raw**: ``parser.parse(bytes)`` of chosen and rejected (a plain tree-sitter parse, no limits);
* **validate**: :class:`codeprefs.filters.validation.PairValidator` on the same pair (size caps, whitespace
  comparison, bounded parses, error walk, depth check).

It prints the time ratio validate/raw (goal: within 1.3x), the share of files (both sides of
every pair) with any ERROR/MISSING node, and the share of pairs the default filter (at most 10%
of bytes under ERROR nodes on each side) drops for syntax errors.

Measured figures and the machine are in README.md ("Benchmarks").
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tree_sitter import Parser  # noqa: E402

from codeprefs.core.schema import Language, parse_language  # noqa: E402
from codeprefs.filters.validation import PairValidator, ValidationSettings  # noqa: E402
from codeprefs.parsers.languages import grammar  # noqa: E402
from codeprefs.parsers.treesitter import error_spans  # noqa: E402
from codeprefs.pipelines.sources.gitrepo import RepoSpec, resolve  # noqa: E402
from codeprefs.pipelines.steps import ListCommits, ReadContents, repo_task  # noqa: E402


def collect_pairs(repo: Path, language: Language, limit: int, cache: Path) -> list[tuple[str, str]]:
    pinned = resolve(RepoSpec.parse(str(repo), Path.cwd()))
    rows = [row for row in ListCommits(str(cache)).rows_for(repo_task(pinned, "bench", None, "fail"))
            if row["drop_reason"] is None and row["language"] in (language.value, None)]
    rows = ReadContents(max_bytes=256 * 1024).run(rows)
    pairs = [(r["chosen"], r["rejected"]) for r in rows
             if r["drop_reason"] is None and r["language"] == language.value]
    return pairs[:limit]


def measure(language: Language, pairs: list[tuple[str, str]], runs: int) -> dict[str, float]:
    encoded = [(c.encode(), r.encode()) for c, r in pairs]
    parser = Parser(grammar(language))
    validator = PairValidator(ValidationSettings())

    def raw() -> None:
        for chosen, rejected in encoded:
            parser.parse(chosen)
            parser.parse(rejected)

    def validate() -> None:
        for chosen, rejected in pairs:
            validator.check(language, chosen, rejected)

    timings = {}
    for name, work in (("raw", raw), ("validate", validate)):
        work()  # warm-up
        best = float("inf")
        for _ in range(runs):
            started = time.perf_counter()
            work()
            best = min(best, time.perf_counter() - started)
        timings[name] = best
    with_errors = sum(
        1 for pair in encoded for side in pair if error_spans(parser.parse(side).root_node)[0] > 0
    )
    dropped = sum(
        1 for chosen, rejected in pairs
        if (validator.check(language, chosen, rejected).reason or "").endswith("syntax_error")
    )
    return {
        "raw_s": timings["raw"], "validate_s": timings["validate"],
        "ratio": timings["validate"] / timings["raw"],
        "files_with_errors": with_errors / (2 * len(pairs)), "pairs_dropped": dropped / len(pairs),
        "megabytes": sum(len(c) + len(r) for c, r in encoded) / 1e6,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("repos", nargs="+", help="LANGUAGE=/path/to/repo")
    parser.add_argument("--pairs", type=int, default=300)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    print(f"{'language':11s} {'pairs':>5s} {'MB':>6s} {'raw s':>7s} {'validate s':>10s} {'ratio':>6s} "
          f"{'files w/ error':>14s} {'pairs dropped':>13s}  repository")
    with tempfile.TemporaryDirectory() as cache:
        for item in args.repos:
            name, _, path = item.partition("=")
            language = parse_language(name)
            pairs = collect_pairs(Path(path), language, args.pairs, Path(cache))
            if not pairs:
                print(f"{language.value:11s} no pairs found in {path}")
                continue
            m = measure(language, pairs, args.runs)
            print(f"{language.value:11s} {len(pairs):5d} {m['megabytes']:6.1f} {m['raw_s']:7.3f} "
                  f"{m['validate_s']:10.3f} {m['ratio']:5.2f}x {m['files_with_errors']:13.1%} "
                  f"{m['pairs_dropped']:12.1%}  {path}", flush=True)


if __name__ == "__main__":
    main()
