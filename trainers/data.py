"""Preference pairs in, token ids out.

Three steps, each its own function:

1. :func:`load_pairs` reads pairs from our shard folder (``<out>/data/*.parquet``), a folder or a
   glob of Parquet / JSON-lines files, a ``datasets`` folder written by ``save_to_disk``, or a
   ``datasets`` name, and returns them with the paper's columns (see :data:`LOADED_COLUMNS`).
2. :func:`assign_system_prompts` fills empty ``system`` cells (seeded per row, see
   :mod:`codeprefs.core.prompts`).
3. :class:`~codeprefs.core.encoding.PairEncoder` renders each pair with the tokenizer's chat template and tokenizes it;
   when a sequence is longer than ``max_length`` it cuts the response, never the prompt, and
   keeps the template's end-of-turn tokens so the reward is still read at the same kind of token.

No row is dropped silently: a pair that cannot be used (empty response, prompt alone too long,
identical responses in training, responses that become identical once truncated, in training and
evaluation) is skipped and counted by reason in :class:`DataReport`.
"""

from __future__ import annotations

import glob as globlib
import json
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

from codeprefs.core.locations import RemoteLocationError, require_local
from codeprefs.core.storage import StorageError, display_url, is_remote, local_copy, matching
from codeprefs.core.records import is_saved_dataset, read_table, saved_dataset_tables
from codeprefs.core.schema import TRAINING_COLUMNS, parse_aspect, stable_id
from codeprefs.core.encoding import DataError, DataReport
from codeprefs.core.prompts import PromptKind, evaluation_prompt, training_prompt

# The columns every loaded table has, in this order: what training and evaluation read of a pair
# (not the shards' full codeprefs.core.schema.PAIR_COLUMNS), with its id and the subset results group by.
LOADED_COLUMNS: tuple[str, ...] = ("id", *TRAINING_COLUMNS, "subset")
REQUIRED_COLUMNS: tuple[str, ...] = ("input", "chosen", "rejected", "language", "aspect")
_TEXT_COLUMNS = LOADED_COLUMNS[1:]  # all but the id


# -- 1. loading ---------------------------------------------------------------------------------

def load_pairs(source: str | Path, split: str | None = None) -> pa.Table:
    """Read preference pairs from ``source`` and return them with :data:`LOADED_COLUMNS`.

    ``source`` may be a shard output folder (its ``data/*.parquet``), a folder of Parquet or
    JSON-lines files, a glob of such files, a single file, a folder saved with
    ``datasets.Dataset.save_to_disk``, or a ``datasets`` name (``split`` defaults to ``train``).
    The paper's benchmark spells the prompt column ``prompt``; it is read as ``input``.
    """
    text = str(source)
    if is_remote(text):
        return normalize_columns(_read_remote(text, split), display_url(text))
    try:
        require_local(text, "pairs source")
    except RemoteLocationError as error:
        raise DataError(str(error)) from None
    table = _read_any(text, split)
    return normalize_columns(table, text)


# The files a pairs source can hold; a build output's .cache (clones, stage caches) and rejects
# are never downloaded.
_PAIR_FILES = matching("*.parquet", "*.jsonl", "*.json", "*.arrow", exclude=(".cache/", "rejects/"))


def _read_remote(url: str, split: str | None) -> pa.Table:
    """A pairs source in object storage (``s3://bucket/out``...): read from a local copy of its
    data files, with errors naming the URL rather than the copy."""
    try:
        with local_copy(url, "pairs source", _PAIR_FILES) as copy:
            try:
                return _read_any(str(copy), split)
            except DataError as error:
                raise DataError(str(error).replace(str(copy), display_url(url))) from None
    except StorageError as error:
        raise DataError(str(error)) from None


def _read_any(source: str, split: str | None) -> pa.Table:
    if any(char in source for char in "*?["):
        files = sorted(globlib.glob(source, recursive=True))
        if not files:
            raise DataError(f"{source}: the glob matches no file")
        return _read_files([Path(f) for f in files], source)
    path = Path(source).expanduser()
    if path.is_file():
        return _read_files([path], source)
    if path.is_dir():
        if is_saved_dataset(path):
            return _read_saved_dataset(path, split)
        shards = sorted((path / "data").glob("*.parquet")) if (path / "data").is_dir() else []
        if shards:
            return _read_files(_pick_split(shards, split, source), source)
        for pattern in ("*.parquet", "*.jsonl", "*.json"):
            files = sorted(path.glob(pattern)) or sorted(path.rglob(pattern))
            folders = sorted({str(file.parent) for file in files})
            if len(folders) > 1:  # e.g. one folder per config or split: never mix them silently
                raise DataError(f"{source}: {pattern} files in several folders ({', '.join(folders)}); "
                                "point at one of them or pass a glob")
            if files:
                return _read_files(files, source)
        raise DataError(f"{source}: no data/*.parquet, *.parquet, *.jsonl or saved dataset in this folder")
    if source.startswith((".", "/", "~")) or source.endswith((".parquet", ".jsonl", ".json")):
        raise DataError(f"{source}: no such file or folder")
    return _read_hub_dataset(source, split)


def _pick_split(files: list[Path], split: str | None, source: str) -> list[Path]:
    """Shards named ``<split>-NNNNN-of-NNNNN.parquet``: those of ``split`` (or of the only split)."""
    splits = sorted({file.name.split("-")[0] for file in files})
    if split is None:
        if len(splits) > 1:
            raise DataError(f"{source}: pick a split with --split (its data/ has {', '.join(splits)})")
        return files
    chosen = [file for file in files if file.name.split("-")[0] == split]
    if not chosen:
        raise DataError(f"{source}: no data/{split}-*.parquet (its data/ has {', '.join(splits)})")
    return chosen


def _read_files(files: Sequence[Path], source: str) -> pa.Table:
    tables = []
    for file in files:
        try:
            if file.suffix not in (".parquet", ".jsonl", ".json"):
                raise DataError(f"{file}: unsupported file type (expected .parquet, .jsonl or .json)")
            tables.append(read_table(file))
        except (pa.ArrowInvalid, OSError) as error:
            raise DataError(f"{file}: cannot read it: {error}") from None
    if not tables:
        raise DataError(f"{source}: no files to read")
    try:
        return pa.concat_tables(tables, promote_options="permissive")
    except pa.ArrowInvalid as error:
        raise DataError(f"{source}: the files have incompatible columns: {error}") from None


def _read_saved_dataset(path: Path, split: str | None) -> pa.Table:
    splits = saved_dataset_tables(path)
    if None in splits:  # a single Dataset: no splits to pick from
        return splits[None]
    names = [str(name) for name in splits]
    chosen = split or ("train" if "train" in splits else names[0] if len(names) == 1 else None)
    if chosen is None or chosen not in splits:
        raise DataError(f"{path}: pick a split with --split (it has {', '.join(names)})")
    return splits[chosen]


def _read_hub_dataset(name: str, split: str | None) -> pa.Table:
    import datasets

    try:
        loaded = datasets.load_dataset(name, split=split or "train")
    except Exception as error:  # the datasets library raises many kinds; name the input
        raise DataError(f"{name}: not a file, folder or loadable dataset ({type(error).__name__}: {error})") from None
    return loaded.with_format("arrow")[:]


def normalize_columns(table: pa.Table, source: str) -> pa.Table:
    """Check and reshape ``table`` to :data:`LOADED_COLUMNS` (string columns, nulls as empty text).

    ``system`` may be missing (all empty); ``subset`` falls back to ``source`` then ``"all"``;
    ``id`` falls back to a hash of (input, chosen, rejected).
    """
    names = set(table.column_names)
    if "input" not in names and "prompt" in names:
        table = table.rename_columns(["input" if n == "prompt" else n for n in table.column_names])
        names = set(table.column_names)
    missing = [column for column in REQUIRED_COLUMNS if column not in names]
    if missing:
        raise DataError(f"{source}: missing column(s) {', '.join(repr(m) for m in missing)}; "
                        f"found {', '.join(sorted(names)) or 'none'}")
    rows = table.num_rows
    columns: dict[str, pa.Array] = {}
    for column in _TEXT_COLUMNS:
        if column in names:
            values = table[column]
        elif column == "subset" and "source" in names:
            values = table["source"]
        else:
            values = pa.array(["all" if column == "subset" else ""] * rows, pa.string())
        if not (pa.types.is_string(values.type) or pa.types.is_large_string(values.type)
                or pa.types.is_null(values.type)):
            raise DataError(f"{source}: column {column!r} must hold text, not {values.type}")
        columns[column] = pc.fill_null(values.cast(pa.string()), "")
    if "id" in names:
        ids = table["id"]
    else:
        ids = pa.array([stable_id(i, c, r) for i, c, r in zip(
            columns["input"].to_pylist(), columns["chosen"].to_pylist(), columns["rejected"].to_pylist(),
            strict=True)], pa.string())
    return pa.table({"id": ids, **{c: columns[c] for c in LOADED_COLUMNS[1:]}})


# -- 2. system prompts --------------------------------------------------------------------------

def assign_system_prompts(table: pa.Table, seed: int) -> tuple[pa.Table, Counter[str]]:
    """Training prompts: keep a non-empty ``system``, draw one for empty cells (seeded per row).

    Returns the table with the filled ``system`` column and the count per :class:`PromptKind`.
    """
    ids = [str(value) for value in table["id"].to_pylist()]
    given = table["system"].to_pylist()
    aspects = table["aspect"].to_pylist()
    _check_aspects([a for a, s in zip(aspects, given, strict=True) if not s], "aspect")
    kinds: Counter[str] = Counter()
    filled = []
    for row_id, system, aspect in zip(ids, given, aspects, strict=True):
        if system:
            kinds[PromptKind.GIVEN] += 1
            filled.append(system)
            continue
        kind, text = training_prompt(row_id, aspect, seed)
        kinds[kind] += 1
        filled.append(text)
    return table.set_column(table.schema.get_field_index("system"), "system",
                            pa.array(filled, pa.string())), kinds


def evaluation_system_prompts(table: pa.Table, mode: str) -> tuple[pa.Table, Counter[str]]:
    """Evaluation prompts for every row: ``own`` (default), ``all``, ``none`` or ``data``."""
    aspects = table["aspect"].to_pylist()
    if mode in ("own",):
        _check_aspects(aspects, "aspect")
    kinds: Counter[str] = Counter()
    filled = []
    for aspect, given in zip(aspects, table["system"].to_pylist(), strict=True):
        kind, text = evaluation_prompt(mode, aspect, given)
        kinds[kind] += 1
        filled.append(text)
    return table.set_column(table.schema.get_field_index("system"), "system",
                            pa.array(filled, pa.string())), kinds


def _check_aspects(values: Sequence[str], column: str) -> None:
    unknown = set()
    for value in set(values):
        try:
            parse_aspect(value)
        except ValueError:
            unknown.add(value)
    if unknown:
        raise DataError(f"column {column!r}: cannot build a criteria prompt for unknown criterion "
                        f"value(s) {sorted(unknown)!r}; give those rows a system prompt or fix the labels")


def write_report(report: DataReport, path: Path) -> None:
    """Write the report (and the ids of skipped rows) as JSON."""
    payload = report.as_dict() | {"skipped_ids": {k: [str(i) for i in v] for k, v in report.skipped_ids.items()}}
    path.write_text(json.dumps(payload, indent=2) + "\n")
