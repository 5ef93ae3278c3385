"""Reruns: a first build, an unchanged rerun, and a rerun after changing one late setting.

    .venv/bin/python benchmarks/bench_rerun.py [--manifest manifests/quickstart.yaml]

Runs the real build (local Ray) three times into one temporary output folder and prints the
seconds of each, with the ratio to the first build:

* first: every stage runs;
* unchanged: same manifest, inputs and code: must do no work ("up to date");
* validation changed (``filters.validation.max_error_fraction``): the source stage is reused,
  validation and writing run again.

Measured 2026-11-26 on the development machine (2 cores, 24 GiB), quickstart manifest (8
repositories, 83 commits)::

    first build                    14.7 s  (1.00x)  0 of 8 source units reused
    unchanged rerun                 0.0 s  (0.00x)  up to date (no Ray started; 0.5 s as a command)
    validation setting changed     11.7 s  (0.80x)  8 of 8 source units reused (mostly Ray start-up)

Before and after the architecture change of issue #14 (fc2aa52 vs the change, 2026-12-05, same
machine): the quickstart build as a command (``pipelines/build_prefs.py``, fresh output), six
alternating runs each on an otherwise idle machine: median 13.94 s before, 13.78 s after (runs
13.2-15.2 s and 13.4-15.1 s): no slowdown. (Earlier runs while other work loaded the machine
spread over 11.6-19.2 s and showed nothing either way.) The per-row work is unchanged too: the
same validate step on the quickstart's 93 rows, 20 times in one process, 0.38 s both.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from codeprefs.pipelines.manifest import load_manifest  # noqa: E402
from codeprefs.pipelines.build import build  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--manifest", type=Path, default=ROOT / "manifests" / "quickstart.yaml")
    args = parser.parse_args()
    manifest = load_manifest(args.manifest)
    with tempfile.TemporaryDirectory() as folder:
        output = Path(folder) / "out"
        timings = []
        for label, current in (
            ("first build", manifest),
            ("unchanged rerun", manifest),
            ("validation setting changed", manifest.model_copy(update={"filters": manifest.filters.model_copy(
                update={"validation": manifest.filters.validation.model_copy(update={"max_error_fraction": 0.2})})})),
        ):
            current._base_dir = manifest.base_dir
            started = time.perf_counter()
            record = build(current, output)
            seconds = time.perf_counter() - started
            timings.append(seconds)
            reused = sum(stage["units_reused"] for stage in record.get("stages", []))
            units = sum(stage["units"] for stage in record.get("stages", []))
            note = "up to date" if record.get("up_to_date") else f"{reused} of {units} source units reused"
            print(f"{label:28s} {seconds:6.1f} s  ({seconds / timings[0]:.2f}x)  {note}", flush=True)


if __name__ == "__main__":
    main()
