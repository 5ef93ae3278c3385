"""Mining throughput: the git source vs a plain ``git log --name-status`` over the same history.

    .venv/bin/python benchmarks/bench_mining.py /path/to/repo [/path/to/other ...]

For each repository this times, in one process on one core:

* **baseline**: ``git log -M --name-status`` of the whole history, output read and discarded;
* **source**: the codeprefs git source: the ``git log --raw`` walk with every structural filter
  (ListCommits), the message filter and criteria labelling, reading both file versions of
  every surviving commit through ``git cat-file`` (ReadContents) and cutting them down to the
  changed definitions (ScopePairs, the default ``pairs.scope: function``) - everything up to
  validation.

It prints commits/s of each and the ratio (goal: the source within 2x of the baseline).

Measured 2026-11-26 on the development machine (2 cores, 24 GiB, no GPU), best of 3 runs::

    repository                                commits  git log c/s  source c/s  slowdown pairs read
    JamesNK/Newtonsoft.Json                      1915       12,346       8,404     1.47x         26
    expressjs/express                            6158       46,262      24,404     1.90x        219
    google/gson                                  2226       17,092      10,751     1.59x         87
    google/leveldb                                444       15,580       7,995     1.95x         40
    psf/requests                                 6489       53,950      26,048     2.07x        217
    redis/redis                                 12272       27,412       8,815     3.11x       1064
    sinatra/sinatra                              4684       45,076      24,296     1.86x        149
    spf13/cobra                                  1106       38,402      19,134     2.01x         58

The walk and its filters cost 1.2-1.4x of ``git log``; the rest is reading file contents
(redis: 1,064 pairs of large C files).

Measured again 2026-12-04 (same machine, best of 3), now with the change-scoped pairs of
``pairs.scope: function`` (the new default) and the word rule for criteria::

    repository                                commits  git log c/s  source c/s  slowdown pairs read
    spf13/cobra                                  1106       59,565       1,799    33.11x         66
    sinatra/sinatra                              4684       60,742       1,835    33.10x        147
    expressjs/express                            6158       71,948       6,391    11.26x        258
    psf/requests                                 6489       76,201       2,452    31.08x        246

Diffing only between the lines both versions share at their start and end then brought
spf13/cobra to 29.6x (1,953 c/s) and psf/requests to 24.9x (3,017 c/s), with the same pairs.
Finding definitions with one tree-sitter query (the walk in C; the same definitions on 793
real files of the eight repositories) then brought them to 20.4x (2,952 c/s) and 17.0x
(4,563 c/s), same pairs, byte-identical quickstart shards. The 2x goal is still missed, and the
scope stage is why: before these two changes it took 3.9 s of 4.4 s on psf/requests (a Python
walk over every tree node 1.6 s, whole-file ``difflib`` 1.3 s, parses 0.6 s); now the run
takes 2.1 s, of which tree-sitter parsing both versions of the 201 surviving files is 0.6 s and
the criteria word rule 0.25 s, against 0.08 s of ``git log``. Parsing is inherent to scoping, so
2x of ``git log`` holds for the file-scope walk only (``pairs.scope: file``).

Before and after the architecture change of issue #14 (fc2aa52 vs the change, 2026-12-05, same
machine, best of 3, two alternating runs each): psf/requests 7,351 and 7,635 c/s before, 7,513
and 7,730 c/s after, the same 203 pairs; pallets/itsdangerous 10,293 and 10,207 c/s: no slowdown.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from codeprefs.pipelines.sources.gitrepo import SAFE_CONFIG, RepoSpec, resolve  # noqa: E402
from codeprefs.pipelines.steps import (  # noqa: E402
    FilterMessages,
    LabelCriteria,
    ListCommits,
    ReadContents,
    ScopePairs,
    repo_task,
)


def time_git_log(repo: Path, sha: str) -> tuple[float, int]:
    started = time.perf_counter()
    process = subprocess.Popen(["git", *SAFE_CONFIG, "-C", str(repo), "log", "-M", "--name-status",
                                "--format=%H", sha], stdout=subprocess.PIPE)
    assert process.stdout is not None
    while process.stdout.read(1 << 20):
        pass
    process.wait()
    elapsed = time.perf_counter() - started
    count = int(subprocess.run(["git", "-C", str(repo), "rev-list", "--count", sha],
                               capture_output=True, text=True, check=True).stdout)
    return elapsed, count


def time_source(repo: Path, sha_repo, cache: Path) -> tuple[float, int, int]:
    started = time.perf_counter()
    task = repo_task(sha_repo, "bench", None, "fail")
    filters = [FilterMessages(), LabelCriteria(), ReadContents(max_bytes=256 * 1024), ScopePairs()]
    batch, commits = [], 0
    kept = 0
    for row in ListCommits(str(cache)).rows_for(task):
        commits += 1
        batch.append(row)
        if len(batch) == 512:
            for step in filters:
                batch = step.run(batch)
            kept += sum(1 for r in batch if r["drop_reason"] is None)
            batch = []
    for step in filters:
        batch = step.run(batch)
    kept += sum(1 for r in batch if r["drop_reason"] is None)
    return time.perf_counter() - started, commits, kept


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("repos", nargs="+", type=Path)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    print(f"{'repository':40s} {'commits':>8s} {'git log c/s':>12s} {'source c/s':>11s} "
          f"{'slowdown':>9s} {'pairs read':>10s}")
    with tempfile.TemporaryDirectory() as cache:
        for repo in args.repos:
            pinned = resolve(RepoSpec.parse(str(repo), Path.cwd()))
            baseline = min(time_git_log(repo, pinned.sha)[0] for _ in range(args.runs))
            count = time_git_log(repo, pinned.sha)[1]
            runs = [time_source(repo, pinned, Path(cache)) for _ in range(args.runs)]
            source = min(r[0] for r in runs)
            commits, kept = runs[0][1], runs[0][2]
            assert commits == count, f"source saw {commits} commits, git rev-list {count}"
            print(f"{str(repo)[-40:]:40s} {count:8d} {count / baseline:12,.0f} {count / source:11,.0f} "
                  f"{source / baseline:8.2f}x {kept:10d}", flush=True)


if __name__ == "__main__":
    main()
