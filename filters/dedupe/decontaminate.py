"""Decontamination: drop rows whose prompt shares an n-gram with a benchmark prompt.

Following the paper, a row is contaminated when one of its checked fields (the prompt,
``input``, by default) shares a token n-gram (13 tokens by default) with a prompt of any
benchmark. Both sides are tokenised the same way (:mod:`codeprefs.filters.dedupe.tokenize`, lower-cased
by default) and compared by 64-bit n-gram hashes.

The benchmark side is small: its n-gram hashes are built once in the driver
(:func:`build_index`), put in the Ray object store once, and read by every map task, which
checks its rows in parallel (:class:`FindOverlaps`). A contaminated row is marked dropped at
stage ``decontaminate`` with reason ``benchmark_overlap``; ``decontam_benchmark`` names the
benchmark (the path as written in the manifest, the first one in manifest order that has the
n-gram) and ``decontam_ngram`` holds the first shared n-gram of the row, as written in the row
(lower-cased when ``lowercase`` is on, whitespace runs collapsed to one space).

Benchmarks are JSONL (``.jsonl``, or ``.json`` holding JSON lines or one list of records),
Parquet (``.parquet``), or a folder: one saved with ``datasets``' ``save_to_disk`` (a
``Dataset`` or a ``DatasetDict``, every split read) or a folder of such JSONL/Parquet files.
A benchmark prompt with fewer tokens than ``ngram`` holds no n-gram and cannot match; such
prompts are counted in the stats.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from codeprefs.core.drops import DECONTAMINATE, mark_dropped
from codeprefs.core.inputs import input_location, local_input
from codeprefs.core.records import (
    Malformed,
    RecordFileError,
    column_names,
    file_records,
    is_saved_dataset,
    read_table,
    saved_dataset_tables,
)
from codeprefs.filters.dedupe.ngrams import iter_ngram_blocks
from codeprefs.filters.dedupe.settings import DecontaminateSettings
from codeprefs.core.rows import WORK_SCHEMA
from codeprefs.core.storage import StorageError, display_url, is_remote

BENCHMARK_OVERLAP = DECONTAMINATE.reason("benchmark_overlap")
_DATA_SUFFIXES = (".jsonl", ".json", ".parquet")
_WHITESPACE = re.compile(r"\s+")


class BenchmarkError(ValueError):
    """A benchmark file is missing, unreadable, or lacks the prompt field; the message names it."""


# -- reading benchmarks ---------------------------------------------------------------------------


def _prompts_from_records(records: list[dict[str, Any] | Malformed], column: str,
                          where: str) -> list[str | None]:
    prompts = []
    for number, record in enumerate(records, start=1):
        if isinstance(record, Malformed):
            raise BenchmarkError(f"{where}: record {number} is not a JSON object")
        if column not in record:
            raise BenchmarkError(f"{where}: record {number} has no field {column!r} "
                                 f"(it has {sorted(record)[:20]})")
        prompts.append(record[column])
    return prompts


def _read_json(path: Path, column: str) -> list[str | None]:
    """A JSON Lines file, or a ``.json`` file holding one array of records."""
    try:
        records = [record for _, _, record in file_records(path)]
    except OSError as error:
        raise BenchmarkError(f"cannot read benchmark {path}: {error}") from None
    except RecordFileError as error:  # a JSON array that does not parse
        raise BenchmarkError(f"benchmark {path} is not valid JSON lines: {error.cause}") from None
    # Checked in the order the whole file always was: its text decodes, every line parses, and
    # only then is a record looked at.
    malformed = [record for record in records if isinstance(record, Malformed)]
    for record in malformed:
        if record.kind == "not_utf8":
            raise BenchmarkError(f"cannot read benchmark {path}: {record.cause}")
    for record in malformed:
        if record.kind != "not_object":
            raise BenchmarkError(f"benchmark {path} is not valid JSON lines: {record.cause}")
    return _prompts_from_records(records, column, str(path))


def _column_prompts(table: pa.Table, column: str, where: str) -> list[str | None]:
    if column not in table.column_names:
        raise BenchmarkError(f"{where}: no column {column!r} (it has {table.column_names[:20]})")
    return table[column].to_pylist()


def _read_parquet(path: Path, column: str) -> list[str | None]:
    try:
        names = column_names(path) or []
    except (OSError, pa.ArrowInvalid) as error:
        raise BenchmarkError(f"cannot read benchmark {path}: {error}") from None
    if column not in names:
        raise BenchmarkError(f"{path}: no column {column!r} (it has {names[:20]})")
    return read_table(path, columns=[column])[column].to_pylist()


def _read_saved_dataset(path: Path, column: str) -> list[str | None]:
    try:
        splits = saved_dataset_tables(path)
    except (OSError, ValueError, FileNotFoundError) as error:
        raise BenchmarkError(f"cannot load the datasets folder {path}: {error}") from None
    prompts: list[str | None] = []
    for name in sorted(splits, key=lambda split: split or ""):  # every split, by name
        prompts.extend(_column_prompts(splits[name], column, str(path)))
    return prompts


def read_benchmark_prompts(path: Path, column: str) -> list[str | None]:
    """The ``column`` value of every record of the benchmark at ``path`` (see the module doc)."""
    if not path.exists():
        raise BenchmarkError(f"benchmark {path} does not exist")
    if path.is_dir():
        if is_saved_dataset(path):
            return _read_saved_dataset(path, column)
        files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix in _DATA_SUFFIXES)
        if not files:
            raise BenchmarkError(f"benchmark folder {path} holds no .jsonl, .json or .parquet file")
        prompts: list[str | None] = []
        for file in files:
            prompts.extend(read_benchmark_prompts(file, column))
        return prompts
    if path.suffix in (".jsonl", ".json"):
        return _read_json(path, column)
    if path.suffix == ".parquet":
        return _read_parquet(path, column)
    raise BenchmarkError(f"benchmark {path}: unsupported file type (expected .jsonl, .json, .parquet "
                         "or a datasets folder)")


# -- the index ------------------------------------------------------------------------------------


@dataclass
class BenchmarkIndex:
    """Every benchmark n-gram hash (sorted, distinct) and the benchmark it first appears in."""

    hashes: np.ndarray  # uint64, sorted, distinct
    sources: np.ndarray  # int32 index into ``names``
    names: list[str]
    ngram: int
    lowercase: bool
    stats: dict[str, Any] = field(default_factory=dict)

    def lookup(self, hashes: np.ndarray) -> np.ndarray:
        """For each hash, the index of the benchmark that has it, or -1."""
        if len(self.hashes) == 0:
            return np.full(len(hashes), -1, dtype=np.int32)
        position = np.minimum(np.searchsorted(self.hashes, hashes), len(self.hashes) - 1)
        found = self.hashes[position] == hashes
        return np.where(found, self.sources[position], -1).astype(np.int32)


def _prompt_ngrams(prompt: str, ngram: int, lowercase: bool) -> np.ndarray:
    blocks = [block.hashes for block in iter_ngram_blocks(prompt, ngram, lowercase=lowercase)]
    return np.concatenate(blocks) if blocks else np.empty(0, dtype=np.uint64)


def build_index(benchmarks: list[tuple[str, Path]], column: str, ngram: int,
                lowercase: bool = True) -> BenchmarkIndex:
    """Read each ``(name, path)`` benchmark and index the n-grams of its ``column`` prompts."""
    per_benchmark: list[np.ndarray] = []
    stats: dict[str, Any] = {}
    for name, path in benchmarks:
        try:
            prompts = read_benchmark_prompts(path, column)
        except BenchmarkError as error:
            if not is_remote(name):
                raise
            # a URL's benchmark is read from this node's copy: name the URL, not the copy
            raise BenchmarkError(str(error).replace(str(path), display_url(name))) from None
        hashes: list[np.ndarray] = []
        missing = short = 0
        for number, prompt in enumerate(prompts, start=1):
            if prompt is None:
                missing += 1
                continue
            if not isinstance(prompt, str):
                shown = display_url(name) if is_remote(name) else path
                raise BenchmarkError(f"{shown}: record {number}: {column!r} is a "
                                     f"{type(prompt).__name__}, not text")
            found = _prompt_ngrams(prompt, ngram, lowercase)
            if len(found) == 0:
                short += 1
            hashes.append(found)
        distinct = np.unique(np.concatenate(hashes)) if hashes else np.empty(0, dtype=np.uint64)
        per_benchmark.append(distinct)
        stats[name] = {"prompts": len(prompts), "missing_prompts": missing,
                       "prompts_shorter_than_ngram": short, "ngrams": int(len(distinct))}
    if per_benchmark:
        every = np.concatenate(per_benchmark)
        owner = np.concatenate([np.full(len(h), i, dtype=np.int32) for i, h in enumerate(per_benchmark)])
    else:
        every, owner = np.empty(0, dtype=np.uint64), np.empty(0, dtype=np.int32)
    distinct, first = np.unique(every, return_index=True)  # first: the earliest benchmark
    return BenchmarkIndex(distinct, owner[first], [name for name, _ in benchmarks], ngram, lowercase,
                          stats)


# -- checking rows ---------------------------------------------------------------------------------


def first_overlap(text: str, index: BenchmarkIndex) -> tuple[str, str] | None:
    """``(benchmark name, shared n-gram)`` for the first n-gram of ``text`` in ``index``, or None."""
    for block in iter_ngram_blocks(text, index.ngram, lowercase=index.lowercase):
        sources = index.lookup(block.hashes)
        hits = np.flatnonzero(sources >= 0)
        if len(hits):
            hit = int(hits[0])
            written = (text.lower() if index.lowercase else text).encode("utf-8", "surrogatepass")
            ngram = written[int(block.starts[hit]):int(block.ends[hit])].decode("utf-8", "replace")
            return index.names[int(sources[hit])], _WHITESPACE.sub(" ", ngram)
    return None


class FindOverlaps:
    """Map task: mark live rows whose checked fields share an n-gram with the benchmarks."""

    def __init__(self, index_ref: Any, fields: list[str]) -> None:
        self.index_ref = index_ref  # an ObjectRef to the BenchmarkIndex (or the index itself)
        self.fields = fields

    def _index(self) -> BenchmarkIndex:
        if isinstance(self.index_ref, BenchmarkIndex):
            return self.index_ref
        import ray

        return ray.get(self.index_ref)

    def __call__(self, batch: pa.Table) -> pa.Table:
        index = self._index()
        live = pc.is_null(batch["drop_reason"]).to_pylist()
        texts = [batch[name].to_pylist() for name in self.fields]
        benchmark: list[str | None] = batch["decontam_benchmark"].to_pylist()
        shared: list[str | None] = batch["decontam_ngram"].to_pylist()
        contaminated = [False] * batch.num_rows
        for row in range(batch.num_rows):
            if not live[row]:
                continue
            for column in texts:
                text = column[row]
                found = first_overlap(text, index) if text else None
                if found:
                    benchmark[row], shared[row] = found
                    contaminated[row] = True
                    break
        for name, values in (("decontam_benchmark", benchmark), ("decontam_ngram", shared)):
            batch = batch.set_column(batch.schema.get_field_index(name), name, pa.array(values, pa.string()))
        batch = mark_dropped(batch, BENCHMARK_OVERLAP, where=pa.array(contaminated, pa.bool_()))
        return batch.select(WORK_SCHEMA.names).cast(WORK_SCHEMA)


def resolve_benchmarks(config: DecontaminateSettings, base_dir: Path | None,
                       scratch_dir: str | None = None) -> list[tuple[str, Path]]:
    """``(name as written, path)`` of each benchmark; relative paths against ``base_dir``. A URL
    is read through this node's copy (:func:`codeprefs.core.inputs.local_input`, in the scratch
    folder the manifest's ``ray.scratch_dir`` names)."""
    resolved = []
    for name in config.benchmarks:
        try:
            path = local_input(input_location(name, base_dir or Path.cwd()), "benchmark", scratch_dir)
        except StorageError as error:
            raise BenchmarkError(str(error)) from None
        if not path.exists():
            raise BenchmarkError(f"benchmark {name!r} does not exist (looked for {path})")
        resolved.append((name, path))
    return resolved


def index_for(config: DecontaminateSettings, base_dir: Path | None = None,
              scratch_dir: str | None = None) -> BenchmarkIndex:
    """Read and index the benchmarks ``config`` names (relative paths against ``base_dir``;
    ``scratch_dir``: where URLs are copied, see :func:`resolve_benchmarks`)."""
    return build_index(resolve_benchmarks(config, base_dir, scratch_dir), config.field, config.ngram,
                       config.lowercase)


def decontaminate(rows, config: DecontaminateSettings, *, base_dir: Path | None = None,
                  index: BenchmarkIndex | None = None, stats: dict[str, Any] | None = None):
    """Mark rows of the Ray dataset ``rows`` that overlap a benchmark (see the module doc).

    ``index``: the benchmarks already indexed by :func:`index_for` (read here otherwise).
    ``stats``, if given, receives per-benchmark counts (prompts, n-grams, short prompts).
    """
    import ray

    if index is None:
        index = index_for(config, base_dir)
    if index.ngram != config.ngram or index.lowercase != config.lowercase:
        raise ValueError("the benchmark index was built with other n-gram settings than the config")
    if stats is not None:
        stats.update(benchmarks=index.stats, ngrams=int(len(index.hashes)))
    if len(index.hashes) == 0:
        return rows
    return rows.map_batches(FindOverlaps(ray.put(index), list(config.fields)), batch_format="pyarrow")
