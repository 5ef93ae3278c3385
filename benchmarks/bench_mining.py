"""Mining throughput: the git source vs a plain ``git log --name-status`` over the same history.

    .venv/bin/python benchmarks/bench_mining.py [--runs 3] [--scope function|file] /path/to/repo [...]

For each repository this times, in one process on one core:

* **baseline**: ``git log -M --name-status`` of the whole history, output read and discarded;
* **source**: the codeprefs git source: the ``git log --raw`` walk with every structural filter
  (ListCommits), the message filter and criteria labelling, reading both file versions of
  every surviving commit through ``git cat-file`` (ReadContents) and cutting them down to the
  changed definitions (ScopePairs, the default ``pairs.scope: function``) - everything up to
  validation.

It prints commits/s of each and the ratio (goal: the source within 2x of the baseline), best
of ``--runs`` after one untimed run that makes the source's copy of the repository. Two more
columns, in CPU seconds (user + system, of this process and of the git commands it waited for,
which a busy machine distorts less than wall time): ``cpu slowdown``, the source against the
baseline; ``parse floor``, tree-sitter parsing both versions of every file the source scopes,
each afresh and nothing else, against the baseline: what a run that parses each file it scopes
cannot go below. Each run starts with an empty parse cache (``codeprefs.parsers.versions``).

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

Before and after incremental parsing, the parse cache and the criteria word cache (8d33560 vs
the branch ``mining``, 2026-12-05, same machine under a load average of 1 to 10 from other
work; this script run on both trees in alternation, 4-6 rounds of best of 5 or 12, the best
round of each shown; wall ratios against the best ``git log`` of all rounds; ``parse floor``
over all rounds and ``file scope``, the branch with ``--scope file``, in CPU ratios)::

    repository          git log c/s  before c/s  after c/s  before  after  parse floor  file scope
    psf/requests             60,862       4,396      5,946   13.8x  10.2x   3.4-6.2x       2.5x
    spf13/cobra              48,644       2,293      2,878   21.2x  16.9x   5.2-10x        3.3x
    expressjs/express        57,653       6,744      8,357    8.5x   6.9x   1.4-3.6x       3.4x

The same pairs before and after (a hash of every row of requests and cobra, dropped ones
included), the same scoped pairs for every single-file commit of eight repositories (up to
1,500 each, one per language) and the same criteria labels for their 36,411 messages.
In CPU seconds per step (best of 5, two alternating rounds): the scope stage went from 1.16 to
0.92 s on requests, 0.49 to 0.35 s on cobra, 0.79 to 0.74 s on express; criteria labelling
from 0.17 to 0.10, 0.075 to 0.035 and 0.12 to 0.09 s. After, the scope stage of requests
(166 files) is 0.75 s CPU: parsing 0.37 s (each old version afresh, each new one incremental;
parsing both afresh alone takes 0.70 s), definitions (one query walk per tree) 0.21 s, the
line diff 0.05 s, range reports 0.02 s, the rest 0.09 s, against 0.13-0.18 s CPU of
``git log``.

**The 2x goal is out of reach for function scope**: parsing both versions of the files a run
scopes, afresh and nothing else (the ``parse floor`` column), already takes 3.4-6.2x (requests)
and 5.2-10x (cobra) of ``git log``; with the second version parsed incrementally parsing alone
is still 2-3x on requests (0.37 s against 0.13-0.18 s). Even ``pairs.scope: file`` is now 2.5-3.4x, since the criteria
word rule (issue #13, item 2) costs about what the walk does. What is left to try: finding the
new version's definitions only in its changed ranges (``Tree.changed_ranges``) and reusing the
old version's elsewhere (up to about half of the 0.21 s), and the history walk's Python
parsing of ``git log --raw``.

Measured again 2026-12-06 (idle machine, load 0.1, best of 5), after the scope changes of that
day (windows cut per group of hunks: 212 pairs read on requests where 203 were)::

    repository          git log c/s  function c/s  ratio (cpu)     file c/s  ratio (cpu)
    psf/requests             80,682         7,151  11.28x (9.85x)    25,517  3.14x (2.85x)
    spf13/cobra              64,588         3,788  17.05x (15.13x)   14,611  4.55x (4.18x)
    expressjs/express        72,711        10,565   6.88x (6.16x)    27,858  2.65x (2.44x)

Parsing alone, as the source parses (each version before a commit afresh unless the parse cache
holds it, the version after incrementally from it), measured by timing every tree-sitter call
of a run: requests 165 fresh + 155 incremental parses, 0.31 s CPU against 0.08 s of ``git log``
(3.9x); cobra 50 + 44, 0.094 s against 0.017 s (5.5x); express 175 + 161, 0.13 s against
0.085 s (1.5x, and the walk itself is 1.2-1.4x). So the 2x goal cannot hold with function
scope on any of the three, whatever the rest costs. Tried and dropped the same day: parsing
each version incrementally from the last parsed version of the same file (a lineage cache),
with or without a bound on the edit's size. The versions between two commits that survive the
filters are far apart in history (other commits changed the file in between), so the edits
are large and an incremental parse costs about a fresh one: parse time went from 0.274 to
0.254-0.262 s on requests and from 0.085 to 0.078-0.084 s on cobra, within noise of the run
time, and the code was not kept.
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from codeprefs.core.schema import Language  # noqa: E402
from codeprefs.parsers.treesitter import ParseLimitExceeded, parse  # noqa: E402

try:  # the parse cache of a worker (absent before it was added: the bench also times older trees)
    from codeprefs.parsers.versions import thread_cache  # noqa: E402
except ImportError:
    thread_cache = None
from codeprefs.pipelines.scopes import ScopeSettings  # noqa: E402
from codeprefs.pipelines.sources.gitrepo import SAFE_CONFIG, RepoSpec, resolve  # noqa: E402
from codeprefs.pipelines.steps import (  # noqa: E402
    FilterMessages,
    LabelCriteria,
    ListCommits,
    ReadContents,
    ScopePairs,
    repo_task,
)

Versions = list[tuple[str, str, str]]  # (rejected, chosen, language) of each file the run scopes


def cpu_seconds() -> float:
    """CPU time of this process and of its finished children (the git commands), user + system."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def time_git_log(repo: Path, sha: str) -> tuple[float, float, int]:
    """Wall and CPU seconds of ``git log -M --name-status``, and the number of commits."""
    started, cpu = time.perf_counter(), cpu_seconds()
    process = subprocess.Popen(["git", *SAFE_CONFIG, "-C", str(repo), "log", "-M", "--name-status",
                                "--format=%H", sha], stdout=subprocess.PIPE)
    assert process.stdout is not None
    while process.stdout.read(1 << 20):
        pass
    process.wait()
    elapsed, cpu = time.perf_counter() - started, cpu_seconds() - cpu
    count = int(subprocess.run(["git", "-C", str(repo), "rev-list", "--count", sha],
                               capture_output=True, text=True, check=True).stdout)
    return elapsed, cpu, count


def time_source(repo: Path, sha_repo, cache: Path, scope: str,
                versions: Versions | None = None) -> tuple[float, float, int, int]:
    """Wall and CPU seconds of the source up to validation, commits seen and pairs kept; the
    versions the scope stage gets are added to ``versions`` when given."""
    if thread_cache is not None:
        thread_cache().clear()  # each run parses what it needs: no versions left by the last one
    started, cpu = time.perf_counter(), cpu_seconds()
    task = repo_task(sha_repo, "bench", None, "fail")
    reads = [FilterMessages(), LabelCriteria(), ReadContents(max_bytes=256 * 1024)]
    scoping = ScopePairs(ScopeSettings(scope=scope))
    batch, commits = [], 0
    kept = 0

    def finish(batch: list) -> int:
        for step in reads:
            batch = step.run(batch)
        if versions is not None:
            versions.extend((r["rejected"], r["chosen"], r["language"]) for r in batch
                            if r["drop_reason"] is None and r["chosen"] is not None)
        return sum(1 for r in scoping.run(batch) if r["drop_reason"] is None)

    for row in ListCommits(str(cache)).rows_for(task):
        commits += 1
        batch.append(row)
        if len(batch) == 512:
            kept += finish(batch)
            batch = []
    kept += finish(batch)
    return time.perf_counter() - started, cpu_seconds() - cpu, commits, kept


def time_parses(versions: Versions) -> float:
    """CPU seconds tree-sitter takes to parse both versions of every scoped file, each afresh:
    what a run that parses every file it scopes cannot go below."""
    cpu = cpu_seconds()
    for rejected, chosen, language in versions:
        for text in (rejected, chosen):
            try:
                parse(text.encode("utf-8"), Language(language))
            except ParseLimitExceeded:
                pass
    return cpu_seconds() - cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("repos", nargs="+", type=Path)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--scope", choices=("function", "file"), default="function",
                        help="pairs.scope of the source (default: function, the manifest's default)")
    args = parser.parse_args()
    print(f"{'repository':40s} {'commits':>8s} {'git log c/s':>12s} {'source c/s':>11s} "
          f"{'slowdown':>9s} {'cpu slowdown':>12s} {'parse floor':>11s} {'pairs read':>10s}")
    with tempfile.TemporaryDirectory() as cache:
        for repo in args.repos:
            pinned = resolve(RepoSpec.parse(str(repo), Path.cwd()))
            time_source(repo, pinned, Path(cache), args.scope)  # the copy of the repository, made once
            baselines = [time_git_log(repo, pinned.sha) for _ in range(args.runs)]
            baseline, baseline_cpu, count = (min(b[0] for b in baselines), min(b[1] for b in baselines),
                                             baselines[0][2])
            versions: Versions = []
            runs = [time_source(repo, pinned, Path(cache), args.scope, versions if not i else None)
                    for i in range(args.runs)]
            source, source_cpu = min(r[0] for r in runs), min(r[1] for r in runs)
            commits, kept = runs[0][2], runs[0][3]
            assert commits == count, f"source saw {commits} commits, git rev-list {count}"
            floor = min(time_parses(versions) for _ in range(args.runs))
            print(f"{str(repo)[-40:]:40s} {count:8d} {count / baseline:12,.0f} {count / source:11,.0f} "
                  f"{source / baseline:8.2f}x {source_cpu / baseline_cpu:11.2f}x {floor / baseline_cpu:10.2f}x "
                  f"{kept:10d}", flush=True)


if __name__ == "__main__":
    main()
