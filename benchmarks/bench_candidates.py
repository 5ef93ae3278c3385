"""Benchmark: candidate sets (``synthesis.candidates``) built from real HumanEval-style tasks.

    .venv/bin/python benchmarks/bench_candidates.py [--tasks 4] [--per-task 20] [--only C Go]

Builds, on a local Ray instance, the first ``--tasks`` McEval records of each language (read
in place from ../shared/data/seed-solutions, never copied) twice, into temporary folders:

* the baseline: the pairs alone (bug injection, 1 verified mutant per solution, seed 7);
* the same manifest with ``synthesis.candidates: {per_task: N, seed: 7}``.

It prints, per language and overall, the tasks that gave candidates, candidates per task (mean,
min, max), the share of candidates that pass every test, the tasks with both a passing and a
failing candidate (what re-ranking needs), the tasks dropped with their reasons, and the build
time with candidates over the baseline's (the ratio is what the candidates cost).

Measured (2026-12-05; the development machine: 2 cores, 24 GiB, no GPU, shared with five
other sessions, load average 7-9; sandbox isolation "namespaces"; McEval, the first 6 records
of each language; ``--tasks 6 --per-task 40``):

    language     tasks cand/task  min  max  passed pass+fail
    C                6     25.17    2   40   35.8%         6
    C#               6     18.83    6   38   35.4%         6
    C++              6     25.67    2   40   33.1%         6
    Go               6     26.50    5   40   28.9%         6
    Java             6     22.33    3   40   17.9%         6
    JavaScript       6     26.00    2   40   29.5%         6
    Python           6     14.83    3   37   16.9%         6
    Ruby             6     21.17   10   40   20.5%         6
    all             48     22.56    2   40   27.9%        48
    tasks dropped: none
    candidates left out: duplicate_code 6, not_sampled 69
    build: pairs only 62.5 s (47 pairs); with candidates 500.4 s (1083 candidates): 8.00x

Every task has both a passing and a failing candidate. Tasks are short (McEval's first records:
a few lines), so most have fewer distinct variants than 40: the minimum of 2 is the solution and
its readability variant, the maximum 40 is the cap (69 variants were left out by the sample).
The passing share is the solution, the readability variant and the mutants the tests do not
kill (equivalent changes, boundaries the tests do not probe); compile errors count as failing.
The candidates cost about 0.4 s each ((500.4 - 62.5) s / 1083 on 2 cores), mostly compiling.
With ``--tasks 3 --per-task 20`` (run beside the test suite, load 10-16): 24 tasks, 14.46
candidates per task, 30.3% passing, 3.06x the baseline.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from codeprefs.core.raycluster import ray_session  # noqa: E402
from codeprefs.pipelines.build import build  # noqa: E402
from codeprefs.pipelines.manifest import parse_manifest  # noqa: E402

DATA = ROOT.parent / "shared" / "data" / "seed-solutions"
MCEVAL = {"C": "C.jsonl", "C#": "C#.jsonl", "C++": "CPP.jsonl", "Go": "Go.jsonl",
          "Java": "Java.jsonl", "JavaScript": "JavaScript.jsonl", "Python": "Python.jsonl",
          "Ruby": "Ruby.jsonl"}


def manifest(data: Path, languages: list[str], tasks: int, per_task: int | None) -> dict:
    synthesis: dict = {"bug_injection": {"mutants_per_solution": 1, "seed": 7,
                                         "on_missing_toolchain": "skip"}}
    if per_task is not None:
        synthesis["candidates"] = {"per_task": per_task, "seed": 7}
    return {"name": "bench-candidates",
            "sources": [{"type": "solutions", "path": str(data / "mceval" / MCEVAL[language]),
                         "language": language, "max_records": tasks, "records_per_task": 2}
                        for language in languages],
            "synthesis": synthesis}


def timed_build(spec: dict, output: Path) -> tuple[dict, float]:
    started = time.perf_counter()
    record = build(parse_manifest(spec, ROOT), output)
    return record, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tasks", type=int, default=4, help="McEval records per language")
    parser.add_argument("--per-task", type=int, default=20)
    parser.add_argument("--only", nargs="*", help="language names to run")
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--json", type=Path, help="also write the candidates summary here")
    args = parser.parse_args()
    if not args.data.is_dir():
        sys.exit(f"no benchmark data at {args.data}")
    languages = [language for language in MCEVAL if not args.only or language in args.only]
    with tempfile.TemporaryDirectory(prefix="bench-candidates-") as folder, ray_session(num_cpus=2):
        base, base_s = timed_build(manifest(args.data, languages, args.tasks, None), Path(folder) / "pairs")
        record, with_s = timed_build(manifest(args.data, languages, args.tasks, args.per_task),
                                     Path(folder) / "candidates")
    summary = record["candidates"]
    print(f"{'language':12s} {'tasks':>5s} {'cand/task':>9s} {'min':>4s} {'max':>4s} {'passed':>7s} "
          f"{'pass+fail':>9s}")
    for name, row in [*summary["by_language"].items(), ("all", summary)]:
        print(f"{name:12s} {row['tasks']:5d} {row['per_task_mean'] or 0:9.2f} {row['per_task_min'] or 0:4d} "
              f"{row['per_task_max'] or 0:4d} {row['passed_share'] or 0:7.1%} {row['tasks_with_pass_and_fail']:9d}")
    print("tasks dropped:", summary["tasks_dropped"] or "none")
    print("candidates left out:", summary["candidates_dropped"])
    print(f"build: pairs only {base_s:.1f} s ({base['rows']['kept']} pairs); with candidates {with_s:.1f} s "
          f"({summary['candidates']} candidates): {with_s / base_s:.2f}x the baseline")
    if args.json:
        args.json.write_text(json.dumps({"summary": summary, "baseline_s": base_s, "with_candidates_s": with_s},
                                        indent=1))


if __name__ == "__main__":
    main()
