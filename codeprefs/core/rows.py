"""The in-flight row: the shard columns plus the bookkeeping the stages need.

Rows are never filtered out mid-pipeline. A drop stage that rejects a row marks it with
``drop_stage`` and ``drop_reason`` (:func:`codeprefs.core.drops.drop`, with a reason from the
drop registry) and later stages pass it through untouched; the writer then counts every dropped
row by drop stage and reason and writes a sample of them to ``rejects/``. That is how no row
disappears silently.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

import pyarrow as pa

from codeprefs.core.schema import PAIR_SCHEMA

Row = dict[str, Any]

_BOOKKEEPING = [
    pa.field("git_dir", pa.string()),  # where the worker reads blobs from
    pa.field("repos", pa.string()),  # an exported commit's repositories, comma-separated, in order
    pa.field("old_blob", pa.string()),
    pa.field("new_blob", pa.string()),
    pa.field("strict_syntax", pa.bool_()),
    # a scoped pair's syntax signals, measured on the whole file's tree (JSON; see pipelines.scopes)
    pa.field("scope_signals", pa.string()),  # synthesized code must parse with zero errors
    pa.field("row_bytes", pa.int64()),  # payload size, for sizing shards
    pa.field("dedupe_key", pa.string()),  # hash of (input, chosen, rejected)
    pa.field("dedupe_cluster", pa.string()),  # near-duplicate cluster: its representative's id
    pa.field("decontam_benchmark", pa.string()),  # the benchmark a dropped row overlaps
    pa.field("decontam_ngram", pa.string()),  # the shared n-gram, as written in the row
    pa.field("drop_stage", pa.string()),
    pa.field("drop_reason", pa.string()),
    # why, in words: for a program run, its exit status and the first lines it printed (bounded)
    pa.field("drop_detail", pa.string()),
]

WORK_SCHEMA = pa.schema([field.with_nullable(True) for field in PAIR_SCHEMA] + _BOOKKEEPING)

# rejects/ keeps the shard columns (nullable: a commit dropped early has no code) and why.
REJECTS_SCHEMA = pa.schema(
    [field.with_nullable(True) for field in PAIR_SCHEMA]
    + [WORK_SCHEMA.field(name) for name in ("old_blob", "new_blob", "dedupe_cluster", "decontam_benchmark",
                                             "decontam_ngram", "drop_stage", "drop_reason", "drop_detail")]
)


_WORK_COLUMNS = tuple(WORK_SCHEMA.names)


def empty_row() -> Row:
    return dict.fromkeys(_WORK_COLUMNS)


def to_table(rows: list[Row]) -> pa.Table:
    return pa.Table.from_pylist(rows, schema=WORK_SCHEMA)


def to_tables(rows: Iterable[Row], size: int) -> Iterator[pa.Table]:
    """``rows`` as tables of at most ``size`` rows (none for no rows)."""
    batch: list[Row] = []
    for row in rows:
        batch.append(row)
        if len(batch) >= size:
            yield to_table(batch)
            batch = []
    if batch:
        yield to_table(batch)


def has_nul(*texts: str | None) -> bool:
    """Whether any of ``texts`` holds a NUL character: such text is binary, never part of a pair."""
    return any(text is not None and "\x00" in text for text in texts)
