"""An export of many commit rows: the driver's peak memory, and the source stage from 1 to 2 CPUs (#15).

    .venv/bin/python benchmarks/bench_export_scale.py /path/to/bare/repo.git [--rows 1000000] [--cpus 1 2]

The export (Parquet, written under a temporary folder) is the paper's schema at scale, with no
network: its ``remote`` is ``file://`` of the given bare repository (a ``fetch``ed mirror such as
psf/requests). It holds every single-file commit of that repository with its real message
(the rows that reach the fetch of contents), and then filler rows up to ``--rows``: commits of
the same repository named with messages the message filter or the criteria drop ("Merge pull
request", "Update README", "wip", a version bump...). So every row goes through listing, the
message filter and criteria labelling, as most of a real export does, and only real commits are
fetched.

For each CPU count it runs ``codeprefs build`` as a command (a fresh local Ray instance with
``ray.num_cpus``), polls the peak resident memory (VmHWM) of the driver process alone (the command's own
process, not Ray's workers) and reads the stages' times from the build's progress lines. It
prints rows/s of the source stage (list, message, criteria, fetch, scope) per CPU count, per
core, and the speed-up from the fewest CPUs to the most (goal: >= 1.7x from 1 to 2), and the
driver's peak RSS (goal: under 1.5 GB).

The export is written as one row group (pyarrow's default for up to 1 Mi rows; ``--row-group-rows``
to change it) with the real commits spread evenly through it, so each unit of ``--unit-rows``
(default: the source's ``unit_rows``, 50,000) has its share of fetches. Before the build it
times listing, the message filter and criteria on the first unit in its own process, no Ray.

Measured 2026-12-05, development machine (2 cores, 24 GiB, no GPU), psf/requests (3,493 real
single-file commits; about 3% of rows survive message and criteria and are fetched). The
machine is shared: the load average moved between 1 and 57 during these runs (printed per build).

* 20,000 rows, before units were cut inside a row group: one unit, 1 CPU 426 rows/s, 2 CPUs
  341 rows/s (0.80x): a second CPU had nothing to run.
* 200,000 rows, one row group, 4 units (16:35 UTC): source stage 1 CPU 133.0 s (1,504 rows/s),
  2 CPUs 35.1 s (5,698 rows/s): 3.79x, driver peak RSS 306/331 MiB. Superlinear because the
  load fell from 25 to 13 between the two builds: not a scaling figure.
* 1,000,000 rows, one row group, 20 units, run a (17:01, order 1 then 2 CPUs): 1 CPU 176.0 s
  (5,682 rows/s, load 1.1 -> 20.1, a test of this branch ran beside its end), 2 CPUs 110.0 s
  (9,091 rows/s, load 20.1 -> 28.7): **1.60x**; driver peak RSS 397/449 MiB.
* 1,000,000 rows, run b (17:12, order 2 then 1 CPUs): 2 CPUs 94.0 s (10,638 rows/s, load 16.9
  -> 22.0), 1 CPU 139.0 s (7,194 rows/s, load 22.0 -> 13.3): **1.48x**; driver peak RSS
  426/405 MiB. Whole builds (Ray start, planning, validate ~64 s, write ~16 s): 199 s and 345 s.
* One unit, no Ray (rows/s, one core; at load ~1 / ~20): listing 40,685 / 17,909, message
  filter 705,572 / 346,421, criteria 71,941 / 34,113 (on the rows the message filter keeps).

Measured again 2026-12-06 02:06 UTC on an idle machine (load average 0.6-1.9 throughout, no other
session's work), 1,000,000 rows written in 20 row groups of 50,000 rows (``--row-group-rows
50000``), after the switch to Ray Data's first Parquet reader:

* one unit, no Ray: listing 46,617 rows/s, message filter 710,330 rows/s, criteria 79,669 rows/s;
* 1 CPU: source stage 61.0 s (**16,393 rows/s**), validate 28.3 s, write 11.2 s, whole build
  111.2 s, driver peak RSS 441 MiB;
* 2 CPUs: source stage 32.2 s (**31,056 rows/s**, 15,528 per core), validate 24.4 s, write
  12.3 s, whole build 78.0 s, driver peak RSS 469 MiB;
* source stage speed-up 1 -> 2 CPUs: **1.89x** (goal >= 1.7x: met). The earlier 1.48x / 1.60x
  were the loaded machine's. Validate scales 1.16x and write not at all (11.2 s vs 12.3 s):
  both mostly move 1M rows that the message filter dropped (only ~0.35% are real commits) and
  were not profiled further here; the write stage is the one to look at before a 30M-row run
  (see the README's scale-out estimate).

The driver's peak RSS goal (< 1.5 GB) holds with room: 449 MiB at 1,000,000 rows; the driver
reads only the Parquet footer, the units' rows go from the workers to the stage folder.

The 1 -> 2 CPU goal (>= 1.7x) is not shown: 1.48x and 1.60x, with 20 units evenly split
between two workers. Why, as far as these runs tell:

* the machine was not idle: with a load average of 15-28 on 2 cores, a second Ray worker does
  not get a second free core, and the 1-CPU build of run a had a near-idle machine at its start
  while the 2-CPU build did not. The same 1-CPU build took 176 s in run a and 139 s in run b;
  the noise is larger than the gap. The measurement still wants an idle machine;
* listing, message and criteria are a small part of the stage: 20 units x about 2 s of CPU
  (the one-unit rates above) is about 40 s of the 139-176 s 1-CPU stage. The rest is likely the
  fetch of the ~3% surviving commits (``git fetch --depth=2`` subprocesses against one local
  repository, which compete with the workers for the same 2 cores, and a per-host slot pool
  shared across the cluster) and Ray Data's per-task start; per-step times inside the Ray
  build were not measured, so this split is an estimate;
* a unit cut from one large row group decodes the group from its start up to its last row
  (Parquet cannot seek inside a group): measured, the first 50,000-row unit of the 1,000,000-row
  file reads in 0.04 s and the last in 1.08 s, about 11 s of decoding across the 20 units. It is
  work done in parallel, so it adds time at both CPU counts rather than limiting the speed-up;
  an export written in row groups of at most ``unit_rows`` rows avoids it.
"""

from __future__ import annotations

import argparse
import os
import random
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
FILLER_MESSAGES = ("Merge pull request #{n} from someone/branch", "Update README.md", "wip", "Bump version to 2.{n}.0",
                   "Merge branch 'main' into feature-{n}", "Release {n}", "typo", "Update CHANGELOG")
# A stage's last progress line: "source 0: 4/4 units, ..., 4m41s elapsed, done" (progress._seconds).
_DONE = re.compile(r"progress: (?P<stage>[\w -]+?): .*?, (?P<elapsed>[\dhms.]+) elapsed, done")


def _elapsed_s(text: str) -> float:
    """Seconds of ``12.5s``, ``4m41s`` or ``1h02m`` (how progress lines write them)."""
    match = re.fullmatch(r"(?:(?P<h>\d+)h)?(?:(?P<m>\d+)m)?(?:(?P<s>[\d.]+)s)?", text)
    if not match or not text:
        raise ValueError(f"elapsed time {text!r} not understood")
    return 3600 * int(match["h"] or 0) + 60 * int(match["m"] or 0) + float(match["s"] or 0)



def single_file_commits(repo: Path) -> list[dict]:
    """Every commit of ``repo`` that modifies exactly one file, as export rows."""
    log = subprocess.run(["git", "-C", str(repo), "log", "--no-merges", "--format=%x00%H%x01%ct%x01%B%x01",
                          "--name-status", "--no-renames"], capture_output=True, text=True, check=True).stdout
    rows = []
    for entry in log.split("\x00")[1:]:
        sha, unix_time, message, changes = entry.split("\x01")
        files = [line.split("\t") for line in changes.strip().splitlines() if line.strip()]
        if len(files) == 1 and files[0][0] == "M":
            rows.append({"commit": sha, "subject": message.strip().splitlines()[0] if message.strip() else "",
                         "message": message.strip(), "repos": "bench/repo", "license": "mit",
                         "old_file": files[0][1], "new_file": files[0][1], "unix_time": int(unix_time)})
    return rows


def write_export(real: list[dict], total: int, path: Path, row_group_rows: int | None = None,
                 seed: int = 7) -> int:
    """``real`` and filler rows up to ``total``, the real ones spread evenly over the file (so
    every unit has its share of fetches), in row groups of ``row_group_rows`` (``None``: one
    group, pyarrow's default for a file of up to 1 Mi rows, the layout a unit must cut)."""
    rng = random.Random(seed)
    filler_count = max(0, total - len(real))
    every = max(1, (len(real) + filler_count) // max(1, len(real)))
    schema = pa.schema([(name, pa.int64() if name == "unix_time" else pa.string()) for name in real[0]])
    rows, k = [], 0
    for index in range(len(real) + filler_count):
        if index % every == 0 and index // every < len(real):
            rows.append(real[index // every])
        else:
            base = real[rng.randrange(len(real))]
            message = rng.choice(FILLER_MESSAGES).format(n=k)
            rows.append({**base, "subject": message, "message": message})
            k += 1
    pq.write_table(pa.Table.from_pylist(rows, schema), path, row_group_size=row_group_rows or len(rows))
    return len(rows)


def step_rates(path: Path, unit_rows: int) -> dict[str, float]:
    """Rows/s of listing, the message filter and criteria labelling on the export's first unit,
    in this process on one core with no Ray: what a unit costs before any fetch."""
    from codeprefs.core.records import plan_chunks
    from codeprefs.pipelines.sources.export import ExportRules
    from codeprefs.pipelines.sources.kinds.export import PERMISSIVE_LICENSES
    from codeprefs.pipelines.steps import FilterMessages, LabelCriteria, ListRecords

    chunk = plan_chunks(str(path), path.name, chunk_rows=unit_rows)[0]
    rates = {}
    started = time.perf_counter()
    rows = [row for table in ListRecords(ExportRules("commits", frozenset(PERMISSIVE_LICENSES), None))(
        pa.Table.from_pylist([chunk.to_item()])) for row in table.to_pylist()]
    rates["list"] = len(rows) / (time.perf_counter() - started)
    for name, step in (("message", FilterMessages()), ("criteria", LabelCriteria())):
        live = sum(1 for row in rows if row["drop_reason"] is None)
        started = time.perf_counter()
        rows = step.run(rows)
        rates[name] = live / (time.perf_counter() - started)
    rates["fetched"] = sum(1 for row in rows if row["drop_reason"] is None)  # rows left to fetch
    return rates


def _peak_rss(pid: int) -> int:
    """The high-water mark of ``pid``'s resident memory (Linux's VmHWM), 0 once it is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except (FileNotFoundError, ProcessLookupError):
        pass
    return 0


def run_build(manifest: Path, output: Path) -> tuple[float, dict[str, float], int, str]:
    """Wall seconds, seconds per stage, the driver's peak RSS in bytes, and stderr's tail."""
    started = time.monotonic()
    process = subprocess.Popen([sys.executable, "-m", "codeprefs.cli", "build", "--manifest", str(manifest),
                                "--output", str(output)], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True)
    peak = 0
    while process.poll() is None:
        peak = max(peak, _peak_rss(process.pid))
        time.sleep(0.2)
    stdout, stderr = process.communicate()
    wall = time.monotonic() - started
    if process.returncode != 0:
        raise SystemExit(f"build failed ({process.returncode}):\n{stderr[-3000:]}")
    stages = {match["stage"]: _elapsed_s(match["elapsed"]) for match in _DONE.finditer(stderr)}
    return wall, stages, peak, stderr[-2000:]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("repo", type=Path, help="a bare repository (e.g. /work/.mirror/psf+requests/repo)")
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--cpus", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--unit-rows", type=int, default=None, help="the source's unit_rows (default: its default)")
    parser.add_argument("--row-group-rows", type=int, default=None, help="default: one row group")
    args = parser.parse_args()
    real = single_file_commits(args.repo)
    with tempfile.TemporaryDirectory(prefix="bench-export-") as scratch:
        folder = Path(scratch)
        export = folder / "commits.parquet"
        total = write_export(real, args.rows, export, args.row_group_rows)
        from codeprefs.core.records import UNIT_ROWS, plan_chunks

        unit_rows = args.unit_rows or UNIT_ROWS
        units = len(plan_chunks(str(export), export.name, chunk_rows=unit_rows))
        print(f"export: {total:,} rows ({len(real):,} real single-file commits of {args.repo}), "
              f"{export.stat().st_size / 1e6:.1f} MB, {pq.ParquetFile(export).metadata.num_row_groups} row "
              f"group(s), {units} units of about {unit_rows:,} rows")
        rates = step_rates(export, unit_rows)
        print("one unit in this process, no Ray: " + ", ".join(
            f"{name} {rate:,.0f} rows/s" for name, rate in rates.items() if name != "fetched")
            + f" ({rates['fetched']:,.0f} of its rows left to fetch)", flush=True)
        results = {}
        for cpus in args.cpus:
            manifest = folder / f"scale-{cpus}.yaml"
            manifest.write_text(
                f"name: scale-{cpus}\nsources:\n  - type: export\n    path: commits.parquet\n"
                f"    unit_rows: {unit_rows}\n"
                f"    remote: 'file://{folder}/remotes/{{repo}}'\n"
                f"ray: {{num_cpus: {cpus}}}\n")
            link = folder / "remotes" / "bench" / "repo"  # the remote every row names: the repository
            if not link.exists():
                link.parent.mkdir(parents=True)
                link.symlink_to(args.repo.resolve())
            load_before = os.getloadavg()[0]
            wall, stages, peak, _ = run_build(manifest, folder / f"out-{cpus}")
            load = f"load average {load_before:.1f} before, {os.getloadavg()[0]:.1f} after"
            results[cpus] = (wall, stages, peak)
            source = stages.get("source 0", wall)
            print(f"{cpus} CPU(s): wall {wall:.1f} s, stages {stages}, source stage {total / source:,.0f} rows/s "
                  f"({total / source / cpus:,.0f} per core), driver peak RSS {peak / 2**20:,.0f} MiB, {load}", flush=True)
        first, last = min(args.cpus), max(args.cpus)  # whatever order they ran in
        if first != last:
            speedup = results[first][1].get("source 0", results[first][0]) / results[last][1].get("source 0", results[last][0])
            print(f"source stage speed-up {first} -> {last} CPUs: {speedup:.2f}x (goal >= 1.7x from 1 to 2)")
        print(f"driver peak RSS, largest: {max(peak for _, _, peak in results.values()) / 2**20:,.0f} MiB (goal < 1536)")


if __name__ == "__main__":
    main()
