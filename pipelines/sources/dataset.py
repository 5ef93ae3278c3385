"""Existing preference datasets as a source: their rows mapped onto ours and filtered.

Where the data come from (:func:`plan_dataset`, run by the driver, which reads only metadata):

* ``path`` naming one folder: a ``datasets`` folder written by ``save_to_disk`` (a
  ``DatasetDict`` folder: the ``split`` is taken);
* ``path`` naming files or globs: Parquet or JSON Lines files;
* ``name``: a Hub dataset, downloaded once by the driver with ``datasets.load_dataset`` into the
  Hugging Face cache (on a cluster the cache must be on a file system every node sees).

A ``path`` may be a URL (``s3://bucket/pairs/*.parquet``, a ``save_to_disk`` folder's URL): the
driver plans from its node's copy (:mod:`codeprefs.core.inputs`; a folder is copied whole), and the
chunks name the URL (a folder's Arrow files by the folder's URL and their place in it), so each
worker copies only the file it reads onto its own node.

Every case becomes :class:`~codeprefs.core.records.FileChunk` descriptions (Arrow files for
``datasets`` folders and the Hub) that Ray tasks read. Each record then becomes one work row
(:meth:`DatasetRules.row`); a record is dropped at stage ``list`` when

* a mapped ``input``/``chosen``/``rejected`` is missing or empty (``missing_field``), not a
  string (``not_text``) or holds a NUL character anywhere (``binary``);
* a declared filter rejects it: ``ratio_below_min:<num>/<den>``, ``ratio_above_max:...``,
  ``ratio_undefined:...`` (a missing, non-numeric or non-positive value), ``not_equal:<col>``,
  ``not_one_of:<col>``;
* its language or criterion is none we know (``unknown_language``, ``unknown_criterion``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa
from pydantic import model_validator

from codeprefs.core.drops import LIST, DropReason
from codeprefs.core.inputs import input_location, local_input
from codeprefs.core.storage import is_remote
from codeprefs.core.records import UNIT_ROWS, FileChunk, Malformed, Where, column_names, plan_chunks, record_format
from codeprefs.core.schema import parse_aspect, parse_language, stable_id
from codeprefs.core.rows import Row, empty_row, has_nul
from codeprefs.pipelines.sources.base import SourceSettings
from codeprefs.pipelines.sources.records import finish_row

if TYPE_CHECKING:
    from codeprefs.pipelines.sources.kinds.dataset import DatasetSource

# The reasons a record is dropped for (drop stage ``list``), as the module doc lists them.
MISSING_FIELD = LIST.reason("missing_field")
NOT_TEXT = LIST.reason("not_text")
BINARY = LIST.reason("binary")
UNKNOWN_LANGUAGE = LIST.reason("unknown_language")
UNKNOWN_CRITERION = LIST.reason("unknown_criterion")
RATIO_UNDEFINED = LIST.family("ratio_undefined")
RATIO_BELOW_MIN = LIST.family("ratio_below_min")
RATIO_ABOVE_MAX = LIST.family("ratio_above_max")
NOT_ONE_OF = LIST.family("not_one_of")
NOT_EQUAL = LIST.family("not_equal")
_TEXT = ("input", "chosen", "rejected")


class DatasetColumns(SourceSettings):
    """Our column <- their column. ``system`` may be absent from the data (it is then null)."""

    input: str = "input"
    chosen: str = "chosen"
    rejected: str = "rejected"
    system: str = "system"
    language: str = "language"
    aspect: str = "aspect"


class RatioFilter(SourceSettings):
    """Keep rows where ``ratio[0] / ratio[1]`` is at least ``min`` (and at most ``max``)."""

    ratio: tuple[str, str]  # their columns: numerator, denominator
    min: float | None = None
    max: float | None = None

    @model_validator(mode="after")
    def _a_bound(self) -> RatioFilter:
        if self.min is None and self.max is None:
            raise ValueError("a ratio filter needs min or max")
        return self


Scalar = str | int | float | bool


class ValueFilter(SourceSettings):
    """Keep rows whose ``column`` equals ``equals`` (or is one of ``one_of``)."""

    column: str
    equals: Scalar | None = None
    one_of: list[Scalar] | None = None

    @model_validator(mode="after")
    def _one_test(self) -> ValueFilter:
        if (self.equals is None) == (self.one_of is None):
            raise ValueError("a value filter needs exactly one of equals, one_of")
        return self


DatasetFilter = RatioFilter | ValueFilter


@dataclass(frozen=True)
class DatasetFile:
    """One file of a dataset source: where it is, what it is called, and how to read it."""

    path: str  # absolute, or a URL
    label: str  # the name in row ids: as written in the manifest, or hub:<name>/<split>/<file>
    local: str = ""  # where this node reads it (a URL's copy); empty: ``path`` itself

    def local_path(self) -> str:
        return self.local or self.path


def plan_dataset(source: DatasetSource, base_dir: Path, scratch: str | None = None) -> list[DatasetFile]:
    """The files of ``source``; raises ``ValueError`` naming the input when they cannot be had.

    A path may be a URL: it is read through this node's copy (``scratch``: the manifest's
    ``ray.scratch_dir``, see :mod:`codeprefs.core.inputs`), and its files keep their URLs (a
    ``save_to_disk`` folder's Arrow files: the folder's URL and their place in it), which each
    worker reads through its own node's copy.
    """
    if source.name is not None:
        return _hub_files(source)
    assert source.path is not None
    locations = [input_location(written, base_dir) for written in source.path]
    copies = [local_input(location, "dataset path", scratch) for location in locations]
    if len(source.path) == 1 and copies[0].is_dir():
        return _saved_files(source, copies[0], locations[0])
    files = []
    for written, location, path in zip(source.path, locations, copies):
        if not path.is_file():
            raise ValueError(f"no such file: {written}" + (" (a folder must be the only path)"
                                                            if path.is_dir() else ""))
        record_format(str(path))
        files.append(DatasetFile(location, written, str(path)))
    return files


def _arrow_files(dataset: Any, label: str, copied: tuple[Path, str] | None = None) -> list[DatasetFile]:
    """The Arrow files of ``dataset``; ``copied``: (the local copy of a folder, its URL), so a
    file of the copy is named by its URL."""
    files = [entry["filename"] for entry in dataset.cache_files]
    if not files:
        raise ValueError(f"{label}: the dataset has no files on disk (an in-memory dataset?)")
    if copied is None:
        return [DatasetFile(name, f"{label}/{Path(name).name}") for name in files]
    folder, url = copied
    return [DatasetFile(f"{url.rstrip('/')}/{Path(name).resolve().relative_to(folder.resolve()).as_posix()}",
                        f"{label}/{Path(name).name}", name) for name in files]


def _saved_files(source: DatasetSource, folder: Path, location: str) -> list[DatasetFile]:
    import datasets

    written = source.path[0]  # type: ignore[index]
    try:
        loaded = datasets.load_from_disk(str(folder))
    except (FileNotFoundError, ValueError) as error:
        raise ValueError(f"{written}: not a datasets folder written by save_to_disk ({error})") from None
    copied = (folder, location) if is_remote(location) else None
    if isinstance(loaded, datasets.DatasetDict):
        if source.split not in loaded:
            raise ValueError(f"{written}: no split {source.split!r} (it has {sorted(loaded)})")
        return _arrow_files(loaded[source.split], f"{written}/{source.split}", copied)
    return _arrow_files(loaded, written, copied)


def _hub_files(source: DatasetSource) -> list[DatasetFile]:
    import datasets

    try:
        loaded = datasets.load_dataset(source.name, split=source.split)
    except Exception as error:  # offline, unknown name, no such split: all stop the build here
        raise ValueError(f"Hub dataset {source.name!r} (split {source.split!r}) cannot be "
                         f"loaded: {type(error).__name__}: {error}") from None
    return _arrow_files(loaded, f"hub:{source.name}/{source.split}")


def file_chunks(files: list[DatasetFile], unit_rows: int = UNIT_ROWS) -> list[FileChunk]:
    """Every file cut into chunks of about ``unit_rows`` rows (a unit of work each), naming the
    file by its path or URL."""
    return [replace(chunk, path=file.path) for file in files
            for chunk in plan_chunks(file.local_path(), file.label, chunk_rows=unit_rows)]


def known_columns(file: DatasetFile) -> list[str] | None:
    """The column names of a Parquet or Arrow file (``None`` for JSON Lines: per record)."""
    try:
        return column_names(file.local_path())
    except (OSError, pa.ArrowException) as error:
        raise ValueError(f"{file.label}: cannot read {record_format(file.local_path())} file: {error}") from None


@dataclass(frozen=True)
class DatasetRules:
    """How one dataset source's records become rows (see the module doc)."""

    subset: str
    columns: tuple[tuple[str, str], ...]  # (ours, theirs)
    language: str | None = None  # a constant
    aspect: str | None = None  # a constant
    filters: tuple[RatioFilter | ValueFilter, ...] = ()

    @classmethod
    def from_source(cls, source: DatasetSource) -> DatasetRules:
        return cls(source.subset, tuple(source.columns.model_dump().items()), source.language,
                   source.aspect, tuple(source.filters))

    def needed_columns(self) -> set[str]:
        """Their columns every record must have (the optional ``system`` is not one)."""
        mapping = dict(self.columns)
        needed = {mapping[name] for name in _TEXT}
        if self.language is None:
            needed.add(mapping["language"])
        if self.aspect is None:
            needed.add(mapping["aspect"])
        for rule in self.filters:
            needed |= set(rule.ratio) if isinstance(rule, RatioFilter) else {rule.column}
        return needed

    def row(self, label: str, position: int, record: dict[str, Any] | Malformed,
            where: Where | None = None) -> Row:
        row = empty_row()
        row.update(id=stable_id("dataset", label, str(position)), source="dataset",
                   subset=self.subset, generator="dataset", strict_syntax=False)
        return finish_row(row, record, self._fill, where)

    def _fill(self, row: Row, record: dict[str, Any]) -> DropReason | None:
        mapping = dict(self.columns)
        for name in _TEXT:
            value = record.get(mapping[name])
            if value is None or value == "":
                return MISSING_FIELD
            if not isinstance(value, str):
                return NOT_TEXT
            if has_nul(value):
                return BINARY
            row[name] = value
        system = record.get(mapping["system"])
        if system is not None and not isinstance(system, str):
            return NOT_TEXT
        row["system"] = system or None
        for rule in self.filters:
            reason = _filter_reason(rule, record)
            if reason:
                return reason
        try:
            language = parse_language(self.language or record.get(mapping["language"]) or "")
        except ValueError:
            return UNKNOWN_LANGUAGE
        try:
            aspect = parse_aspect(self.aspect or record.get(mapping["aspect"]) or "")
        except ValueError:
            return UNKNOWN_CRITERION
        row.update(language=language.value, aspect=aspect.value, aspects=[aspect.value])
        return None


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or value is None:
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _filter_reason(rule: RatioFilter | ValueFilter, record: dict[str, Any]) -> DropReason | None:
    if isinstance(rule, RatioFilter):
        name = f"{rule.ratio[0]}/{rule.ratio[1]}"
        numerator, denominator = (_number(record.get(column)) for column in rule.ratio)
        if numerator is None or denominator is None or numerator < 0 or denominator <= 0:
            return RATIO_UNDEFINED.about(name)
        ratio = numerator / denominator
        if rule.min is not None and ratio < rule.min:
            return RATIO_BELOW_MIN.about(name)
        if rule.max is not None and ratio > rule.max:
            return RATIO_ABOVE_MAX.about(name)
        return None
    value = record.get(rule.column)
    if rule.one_of is not None:
        return None if value in rule.one_of else NOT_ONE_OF.about(rule.column)
    return None if value == rule.equals else NOT_EQUAL.about(rule.column)
