"""Deterministic Parquet shards in the Hugging Face layout, written crash-safely.

Rows are hash-partitioned into ``N`` partitions (``N`` from the total payload and the shard size
cap) by the canonical key of their unordered pair of code versions ({chosen, rejected}, see
:func:`pair_key`), so every exact duplicate and every inverse of a pair lands in the same
partition. Each partition is then handled by one task, which

1. drops every kept row whose (chosen, rejected) is another pair's (rejected, chosen) at stage
   ``dedupe`` (reason ``inverse_pair``): a commit and its revert, or an A->B->A history, teach
   both orders; both sides go, whichever input they carry. Rows removed earlier by
   decontamination or near-dedupe still count as the other side (they passed validation),
2. keeps the lowest ``id`` of each group of rows with the same (input, chosen, rejected) and marks
   the others dropped at stage ``dedupe`` (reason ``exact_duplicate``),
3. writes the kept rows, sorted by ``id``, to ``data/.staging/part-0000k.parquet`` and the
   (sampled) dropped rows to ``rejects/.staging/part-0000k.parquet`` of the build's store, each
   put in place atomically (a temporary name and a rename, or one PUT: :mod:`codeprefs.core.store`),
   so a crash never leaves half a file,
4. returns one summary row per file and per (stage, reason) count.

The driver then renames the non-empty staged files to ``data/train-0000i-of-0000M.parquet``
(and ``rejects/rejects-...``): an empty Parquet file breaks ``datasets.load_dataset``, so a
partition that received no row gets no shard, and a build that keeps no row writes none. The same rows always give the same partitions,
order, names and bytes, whatever the number of workers.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from codeprefs.core.drops import DEDUPE, VALIDATED_DROP_STAGES, mark_dropped
from codeprefs.core.files import file_sha256
from codeprefs.core.store import LocalStore, Store
from codeprefs.core.layout import CANDIDATES_DIR
from codeprefs.core.schema import PAIR_COLUMNS, PAIR_SCHEMA
from codeprefs.core.rows import REJECTS_SCHEMA

DATA_DIR = "data"
REJECTS_DIR = "rejects"
SPLIT = "train"

STAGING = ".staging"

SUMMARY_SCHEMA = pa.schema(
    [
        pa.field("kind", pa.string()),  # "shard", "rejects" or "count"
        pa.field("partition", pa.int32()),
        pa.field("path", pa.string()),  # relative to the output folder (files)
        pa.field("rows", pa.int64()),
        pa.field("bytes", pa.int64()),
        pa.field("sha256", pa.string()),
        pa.field("stage", pa.string()),  # (counts)
        pa.field("reason", pa.string()),  # null: kept rows
    ]
)


def shard_name(index: int, count: int) -> str:
    return f"{DATA_DIR}/{SPLIT}-{index:05d}-of-{count:05d}.parquet"


def rejects_name(index: int, count: int) -> str:
    return f"{REJECTS_DIR}/rejects-{index:05d}-of-{count:05d}.parquet"


def staged_name(folder: str, partition: int) -> str:
    return f"{folder}/{STAGING}/part-{partition:05d}.parquet"


def hash_fraction(hex_digest: str) -> float:
    """A number in [0, 1) from a hex digest: deterministic sampling and partitioning."""
    return int(hex_digest[:13], 16) / float(1 << 52)


def partition_of(row_key: str, count: int) -> int:
    return int(row_key[:13], 16) % count


INVERSE_PAIR = DEDUPE.reason("inverse_pair")
EXACT_DUPLICATE = DEDUPE.reason("exact_duplicate")



def _digest(text: str) -> bytes:
    return hashlib.sha256(text.encode("utf-8")).digest()


def pair_key(chosen: str, rejected: str) -> str:
    """A hex key of the unordered pair {chosen, rejected}: the same for a pair and its inverse."""
    first, second = sorted((_digest(chosen), _digest(rejected)))
    return hashlib.sha256(first + second).hexdigest()


def _is_validated_pair(row: dict) -> bool:
    return (row["chosen"] is not None and row["rejected"] is not None
            and (row["drop_reason"] is None or row["drop_stage"] in VALIDATED_DROP_STAGES))


def add_partition_column(batch: pa.Table, count: int) -> pa.Table:
    """Partition validated pairs by :func:`pair_key`, other (dropped) rows by id."""
    rows = batch.select(["id", "chosen", "rejected", "drop_stage", "drop_reason"]).to_pylist()
    keys = [pair_key(row["chosen"], row["rejected"]) if _is_validated_pair(row) else row["id"] for row in rows]
    partitions = pa.array([partition_of(key, count) for key in keys], pa.int32())
    return batch.append_column("partition", partitions)


def _mark_inverse_pairs(kept: pa.Table, dropped: pa.Table) -> tuple[pa.Table, pa.Table]:
    """Split ``kept`` into (rows with no inverse, rows whose inverse is a validated row)."""
    if kept.num_rows == 0:
        return kept, kept
    validated = [row for row in dropped.select(["chosen", "rejected", "drop_stage", "drop_reason"]).to_pylist()
                 if _is_validated_pair(row)]
    sides = kept.select(["chosen", "rejected"]).to_pylist()
    ordered = {(_digest(row["chosen"]), _digest(row["rejected"])) for row in [*sides, *validated]}
    inverse = [(_digest(row["rejected"]), _digest(row["chosen"])) in ordered
               and row["chosen"] != row["rejected"] for row in sides]
    mask = pa.array(inverse, pa.bool_())
    return kept.filter(pc.invert(mask)), kept.filter(mask)


def write_parquet_atomic(table: pa.Table, store: Store, relative: str, compression_level: int,
                         row_group_rows: int) -> dict:
    """Write ``table`` to the file ``relative`` of ``store``, put in place atomically (see
    :mod:`codeprefs.core.store`); return its file summary (rows, bytes, sha256)."""
    with store.writing(relative) as temporary:
        pq.write_table(
            table, temporary, compression="zstd", compression_level=compression_level,
            row_group_size=row_group_rows, write_statistics=True,
        )
        info = {"rows": table.num_rows, "bytes": temporary.stat().st_size, "sha256": file_sha256(temporary)}
    return info


def _mark_exact_duplicates(kept: pa.Table) -> tuple[pa.Table, pa.Table]:
    """Split ``kept`` into (first row of each dedupe key by lowest id, the other rows)."""
    if kept.num_rows == 0:
        return kept, kept
    ordered = kept.sort_by([("dedupe_key", "ascending"), ("id", "ascending")])
    keys = ordered["dedupe_key"].to_pylist()
    first = [index == 0 or keys[index] != keys[index - 1] for index in range(len(keys))]
    mask = pa.array(first)
    return ordered.filter(mask), ordered.filter(pc.invert(mask))


class WritePartition:
    """Dedupe and write one partition; returns a :data:`SUMMARY_SCHEMA` table (see module doc)."""

    def __init__(self, store: Store, count: int, exact_dedupe: bool, rejects_sample_rate: float,
                 compression_level: int, row_group_rows: int) -> None:
        self.store = store
        self.count = count
        self.exact_dedupe = exact_dedupe
        self.rejects_sample_rate = rejects_sample_rate
        self.compression_level = compression_level
        self.row_group_rows = row_group_rows

    def write(self, group: pa.Table) -> pa.Table:
        index = group["partition"][0].as_py()
        dropped_mask = pc.is_valid(group["drop_reason"])
        kept = group.filter(pc.invert(dropped_mask))
        dropped = group.filter(dropped_mask)
        kept, inverses = _mark_inverse_pairs(kept, dropped)
        dropped = pa.concat_tables([dropped, mark_dropped(inverses, INVERSE_PAIR)])
        if self.exact_dedupe:
            kept, duplicates = _mark_exact_duplicates(kept)
            dropped = pa.concat_tables([dropped, mark_dropped(duplicates, EXACT_DUPLICATE)])
        summary: list[dict] = []
        shard = kept.sort_by("id").select(list(PAIR_COLUMNS)).cast(PAIR_SCHEMA)
        if shard.num_rows:
            name = staged_name(DATA_DIR, index)
            info = write_parquet_atomic(shard, self.store, name, self.compression_level, self.row_group_rows)
            summary.append({"kind": "shard", "partition": index, "path": name, **info})
        summary.append({"kind": "count", "stage": None, "reason": None, "rows": shard.num_rows})
        for (stage, reason), rows in _count_reasons(dropped).items():
            summary.append({"kind": "count", "stage": stage, "reason": reason, "rows": rows})
        sampled = self._sample(dropped)
        if sampled.num_rows:
            name = staged_name(REJECTS_DIR, index)
            info = write_parquet_atomic(sampled, self.store, name, self.compression_level, self.row_group_rows)
            summary.append({"kind": "rejects", "partition": index, "path": name, **info})
        return pa.Table.from_pylist(summary, schema=SUMMARY_SCHEMA)

    def _sample(self, dropped: pa.Table) -> pa.Table:
        if self.rejects_sample_rate < 1.0:
            ids = dropped["id"].to_pylist()
            mask = pa.array([hash_fraction(i) < self.rejects_sample_rate for i in ids], pa.bool_())
            dropped = dropped.filter(mask)
        return dropped.sort_by("id").select(REJECTS_SCHEMA.names).cast(REJECTS_SCHEMA)


def _count_reasons(dropped: pa.Table) -> dict[tuple[str, str], int]:
    if dropped.num_rows == 0:
        return {}
    grouped = dropped.group_by(["drop_stage", "drop_reason"]).aggregate([("id", "count")])
    return {
        (stage, reason): count
        for stage, reason, count in zip(
            grouped["drop_stage"].to_pylist(), grouped["drop_reason"].to_pylist(),
            grouped["id_count"].to_pylist(), strict=True,
        )
    }


def publish_staged(store: Store, staged: list[dict], kind: str) -> list[dict]:
    """Rename staged partition files to their final, contiguous names; return file records.

    ``kind`` is ``"shard"`` or ``"rejects"``. The order follows the partition index, so the
    names depend only on the data.
    """
    ordered = sorted(staged, key=lambda s: s["partition"])
    records = []
    for item, final in zip(ordered, final_names(ordered, kind), strict=True):
        store.move(item["path"], final)
        records.append({"path": final, "rows": item["rows"], "bytes": item["bytes"],
                        "sha256": item["sha256"]})
    return records


def final_names(staged: list[dict], kind: str) -> list[str]:
    """The names :func:`publish_staged` gives ``staged`` files, in the same order."""
    name = shard_name if kind == "shard" else rejects_name
    return [name(position, len(staged)) for position in range(len(staged))]


def remove_stale_files(store: Store, removable: Callable[[str], bool]) -> list[str]:
    """Delete the files under ``data/``, ``rejects/`` and ``candidates/`` that ``removable``
    allows (relative paths: an earlier run's own files this run did not write again, and the
    staging and temporary files a crashed run left), then empty staging folders; return what
    was deleted. A symbolic link is never deleted (nor followed)."""
    removed = []
    for folder in (DATA_DIR, REJECTS_DIR, CANDIDATES_DIR):
        for relative in store.files(folder):
            if isinstance(store, LocalStore) and store.path(relative).is_symlink():
                continue
            if removable(relative):
                store.remove(relative)
                removed.append(relative)
        if isinstance(store, LocalStore):
            staging = store.path(f"{folder}/{STAGING}")
            if staging.is_dir() and not any(staging.iterdir()):
                staging.rmdir()
    return removed
