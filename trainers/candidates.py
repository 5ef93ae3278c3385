"""Read a candidate set: the ``candidates/`` Parquet a build writes (issue #16), or one file.

One row per candidate: ``task_id, candidate_id, language, prompt, code, generator, outcome,
passed, passed_tests, total_tests, pass_rate``. A reader asks only for the columns it uses
(:data:`SELECTION_COLUMNS` to pick the best candidates, :data:`EVALUATION_COLUMNS` to measure the
ranking) and gets every column of the files, sorted by ``(task_id, candidate_id)``. Bad input is
an error naming the file and the column: no file, an unreadable or empty one, a missing column, a
column of the wrong type, a null where a value is needed, a pass rate outside [0, 1], an unknown
language, a ``(task_id, candidate_id)`` given twice.
"""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from codeprefs.core.encoding import DataError
from codeprefs.core.schema import Language
from codeprefs.core.storage import StorageError, display_url, is_remote, local_copy

SELECTION_COLUMNS = ("task_id", "candidate_id", "prompt", "code")
EVALUATION_COLUMNS = (*SELECTION_COLUMNS, "language", "passed", "pass_rate")

_TYPES = {"task_id": pa.types.is_string, "candidate_id": pa.types.is_string, "prompt": pa.types.is_string,
          "code": pa.types.is_string, "language": pa.types.is_string, "passed": pa.types.is_boolean,
          "pass_rate": lambda kind: pa.types.is_floating(kind) or pa.types.is_integer(kind)}
_TYPE_NAMES = {"passed": "bool", "pass_rate": "a number"}


def candidate_files(path: str | Path) -> list[Path]:
    """The Parquet files of a candidates folder (sorted by name), or ``[path]`` for a file."""
    path = Path(path)
    if path.is_dir():
        files = sorted(path.glob("*.parquet"))
        if not files:
            raise DataError(f"{path}: no *.parquet file in this candidates folder")
        return files
    if not path.is_file():
        raise DataError(f"{path}: no such candidates file or folder")
    return [path]


def _check(table: pa.Table, path: Path, required: tuple[str, ...]) -> pa.Table:
    missing = [column for column in required if column not in table.column_names]
    if missing:
        raise DataError(f"{path}: no column {', '.join(missing)} (it has {', '.join(table.column_names)})")
    for column in required:
        kind = table.schema.field(column).type
        if pa.types.is_large_string(kind):
            table = table.set_column(table.column_names.index(column), column, table[column].cast(pa.string()))
        elif not _TYPES[column](kind):
            raise DataError(f"{path}: column {column} is {kind}, expected {_TYPE_NAMES.get(column, 'string')}")
        nulls = table[column].null_count
        if nulls:
            first = table[column].is_null().to_pylist().index(True)
            raise DataError(f"{path}: column {column} has {nulls} null value(s) (first at row {first})")
    if "pass_rate" in required:
        rates = table["pass_rate"].cast(pa.float64())
        outside = pc.or_(pc.less(rates, 0.0), pc.greater(rates, 1.0)).to_pylist()
        if any(outside):
            row = outside.index(True)
            raise DataError(f"{path}: column pass_rate is {rates[row].as_py()} at row {row}, outside [0, 1]")
    if "language" in required:
        known = {language.value for language in Language}
        unknown = sorted(set(table["language"].to_pylist()) - known)
        if unknown:
            raise DataError(f"{path}: column language has unknown value(s) {', '.join(map(repr, unknown))} "
                            f"(expected one of {', '.join(sorted(known))})")
    return table


def read_candidates(path: str | Path, required: tuple[str, ...] = SELECTION_COLUMNS) -> pa.Table:
    """Every candidate under ``path`` (folder or file, local or an object-storage URL such as
    ``s3://bucket/out/candidates``), checked, sorted by (task_id, candidate_id)."""
    if is_remote(str(path)):
        url = str(path)
        try:
            with local_copy(url, "candidates", _top_level_parquet) as copy:
                try:
                    return _read_local(copy, required)
                except DataError as error:
                    raise DataError(str(error).replace(str(copy), display_url(url).rstrip("/"))) from None
        except StorageError as error:
            raise DataError(str(error)) from None
    return _read_local(path, required)


def _top_level_parquet(relative: str) -> bool:
    return "/" not in relative and relative.endswith(".parquet")


def _read_local(path: str | Path, required: tuple[str, ...]) -> pa.Table:
    tables, sources = [], []
    for file in candidate_files(path):
        try:
            table = pq.read_table(file)
        except (pa.ArrowInvalid, OSError) as error:
            raise DataError(f"{file}: cannot read it as Parquet: {error}") from None
        tables.append(_check(table, file, required))
        sources += [str(file)] * table.num_rows
    total = sum(table.num_rows for table in tables)
    if total == 0:
        raise DataError(f"{path}: no candidate (the file{'s are' if len(tables) > 1 else ' is'} empty)")
    table = pa.concat_tables(tables, promote_options="permissive") if len(tables) > 1 else tables[0]
    table = table.append_column("__source", pa.array(sources, pa.string()))
    table = table.sort_by([("task_id", "ascending"), ("candidate_id", "ascending")])
    tasks, ids, files = (table[name].to_pylist() for name in ("task_id", "candidate_id", "__source"))
    for k in range(1, len(ids)):
        if tasks[k] == tasks[k - 1] and ids[k] == ids[k - 1]:
            where = files[k] if files[k] == files[k - 1] else f"{files[k - 1]} and {files[k]}"
            raise DataError(f"{where}: columns (task_id, candidate_id) repeat ({tasks[k]!r}, {ids[k]!r})")
    return table.drop_columns(["__source"])
