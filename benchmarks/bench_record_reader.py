"""Benchmark: a Parquet solutions file read in chunks of a few records, old way against new.

    .venv/bin/python benchmarks/bench_record_reader.py [--records 20000] [--chunk 4] [--row-group 1000]

The old solutions reader read the whole file and sliced it for every chunk (quadratic in the file
size); :func:`codeprefs.core.records.read_rows` reads only the row groups that hold the chunk.
Both read every chunk of the file, as the synthesis tasks do together; the rows must be equal.
A file written as one row group (``--row-group 0``) gains nothing: that group is the whole file.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from codeprefs.core.records import read_rows  # noqa: E402


def old_read(path: Path, start: int, count: int) -> list[dict]:
    """What pipelines/sources/solutions.py did before the core reader, for each chunk."""
    return pq.ParquetFile(path).read().slice(start, count).to_pylist()


def timed(read, path: Path, records: int, chunk: int) -> tuple[float, list[dict]]:
    began = time.perf_counter()
    rows = [row for start in range(0, records, chunk) for row in read(path, start, chunk)]
    return time.perf_counter() - began, rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=20_000)
    parser.add_argument("--chunk", type=int, default=4)
    parser.add_argument("--row-group", type=int, default=1000, help="rows a row group; 0: one group")
    args = parser.parse_args()
    table = pa.table({
        "task_id": [f"t/{n}" for n in range(args.records)],
        "prompt": [f"def f{n}(x):\n    \"\"\"Return x plus {n}.\"\"\"\n" for n in range(args.records)],
        "canonical_solution": [f"    return x + {n}\n" for n in range(args.records)],
        "test": [f"assert f{n}(1) == {n + 1}\n" * 4 for n in range(args.records)],
    })
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "tasks.parquet"
        pq.write_table(table, path, row_group_size=args.row_group or args.records)
        groups = pq.ParquetFile(path).metadata.num_row_groups
        new_seconds, new_rows = timed(read_rows, path, args.records, args.chunk)
        old_seconds, old_rows = timed(old_read, path, args.records, args.chunk)
    assert new_rows == old_rows == table.to_pylist()
    print(f"{args.records} records, {groups} row groups, chunks of {args.chunk}: "
          f"old {old_seconds:.1f} s, new {new_seconds:.1f} s ({old_seconds / new_seconds:.0f}x)")


if __name__ == "__main__":
    main()
