"""Read correct solutions (prompt, solution, tests) from JSONL or Parquet files.

The driver only plans: :func:`plan_chunks` splits every file into chunks of a few records
(JSONL by line, Parquet by row), cheaply, without parsing a record. Ray tasks then read their
chunk with :func:`read_chunk`, so more workers read and synthesize more records at once. The
files are read by :mod:`codeprefs.core.records` (a Parquet chunk reads only its row groups).

A record that cannot be used is never dropped silently: a malformed one (not JSON, nested too
deeply, not an object, a required field missing or not text) becomes a :class:`SolutionRecord` whose ``error``
names the file and line (or Parquet row); the caller raises it or counts it.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import Field

from codeprefs.core.inputs import local_input
from codeprefs.core.records import (
    Malformed,
    RecordFileError,
    count_records,
    jsonl_line_starts,
    jsonl_records,
    read_rows,
)
from codeprefs.core.schema import parse_language
from codeprefs.core.storage import StorageError
from codeprefs.pipelines.sources.base import SourceSettings

FORMATS = ("jsonl", "parquet")


class SolutionsError(ValueError):
    """A solutions file cannot be read; the message names the file (and line)."""


class SolutionFields(SourceSettings):
    """Which record field holds what (optional ones may be null or absent in records)."""

    prompt: str = "prompt"
    solution: str = "canonical_solution"
    tests: str = "test"
    task_id: str | None = "task_id"  # ids and provenance; the line number when absent
    entry_point: str | None = "entry_point"  # Python tests that only define check(candidate)
    instruction: str | None = None  # a ready-made natural-language task, used as `input`


class LanguageField(SourceSettings):
    """The record field that holds each record's language."""

    field: str = Field(min_length=1)


@dataclass(frozen=True)
class SolutionRecord:
    """One record, located by file and line (or row) for ids and error messages."""

    file: str  # as the manifest names it (relative paths stay relative: ids do not move)
    line: int  # 1-based line of a JSONL file, 1-based row of a Parquet file
    task_id: str | None = None
    language: str | None = None  # canonical name; None when unknown (see ``error``)
    prompt: str = ""
    solution: str = ""
    tests: str = ""
    entry_point: str | None = None
    instruction: str | None = None
    error: str | None = None  # why the record is malformed
    unknown_language: str | None = None  # the value of the language field, when not one of ours

    @property
    def where(self) -> str:
        return f"{self.file}:{self.line}"

    @property
    def key(self) -> str:
        """What identifies the record within its file: its task id, else its line."""
        return self.task_id or f"line:{self.line}"


def format_of(path: str, declared: str = "auto") -> str:
    if declared != "auto":
        return declared
    suffixes = [suffix.lower() for suffix in Path(path).suffixes]
    if ".parquet" in suffixes:
        return "parquet"
    if ".jsonl" in suffixes or ".json" in suffixes or ".ndjson" in suffixes:
        return "jsonl"
    raise SolutionsError(f"{path}: cannot tell the format from the name; set `format` to jsonl or parquet")


def plan_chunks(files: list[tuple[str, str | Path]], records_per_chunk: int, file_format: str = "auto",
                max_records: int | None = None, scratch_dir: str | None = None) -> list[dict[str, Any]]:
    """Split ``files`` ((name as written, resolved path or URL)) into chunks of ``records_per_chunk``.

    ``max_records`` caps the records taken from each file (the first ones). A URL is read through
    this node's copy (:func:`codeprefs.core.inputs.local_input`; ``scratch_dir``: the manifest's
    ``ray.scratch_dir``), and its chunks name the URL: each worker reads its own node's copy.
    """
    chunks: list[dict[str, Any]] = []
    for name, location in files:
        kind = format_of(str(location), file_format)
        try:
            path = local_input(location, "solutions file", scratch_dir)
            if kind == "jsonl":
                starts = jsonl_line_starts(path)[:max_records]
                size = path.stat().st_size
                for first in range(0, len(starts), records_per_chunk):
                    group = starts[first:first + records_per_chunk]
                    after = first + records_per_chunk
                    end = starts[after][1] if after < len(starts) else size
                    chunks.append({"file": name, "path": str(location), "format": kind,
                                   "first_line": group[0][0], "start": group[0][1], "end": end,
                                   "count": len(group)})
            else:
                rows = count_records(path, "parquet")
                rows = min(rows, max_records) if max_records else rows
                for first in range(0, rows, records_per_chunk):
                    count = min(records_per_chunk, rows - first)
                    chunks.append({"file": name, "path": str(location), "format": kind,
                                   "first_line": first + 1, "start": first, "end": first + count,
                                   "count": count})
        except StorageError as error:
            raise SolutionsError(str(error)) from None
        except OSError as error:
            raise SolutionsError(f"{name}: cannot read: {error.strerror or error}") from None
        except Exception as error:  # pyarrow raises its own types for a corrupt Parquet file
            if kind == "parquet":
                raise SolutionsError(f"{name}: not a readable Parquet file: {error}") from None
            raise
    return chunks


def _raw_records(chunk: dict[str, Any], scratch_dir: str | None = None
                 ) -> Iterator[tuple[int, dict[str, Any] | None, str | None]]:
    """(line, record, why it is malformed) for every record of ``chunk``, as
    :mod:`codeprefs.core.records` reads them; only the wording of a malformed record is ours.
    A chunk of a file at a URL is read from this node's copy."""
    try:
        path = str(local_input(chunk["path"], "solutions file", scratch_dir))
    except StorageError as error:
        raise SolutionsError(str(error)) from None
    if chunk["format"] == "jsonl":
        located = jsonl_records(path, chunk["file"], chunk["start"], chunk["end"],
                                first_line=chunk["first_line"], limit=chunk["count"])
        for _, where, record in located:
            if isinstance(record, Malformed):
                yield where.line(), None, _problem(record)
            else:
                yield where.line(), record, None
        return
    try:
        rows = read_rows(path, chunk["start"], chunk["end"] - chunk["start"], label=chunk["file"])
    except RecordFileError as error:
        raise SolutionsError(f"{chunk['file']}: not a readable Parquet file (rows {chunk['start'] + 1}-"
                             f"{chunk['end']}): {error.cause}") from None
    for offset, row in enumerate(rows):
        yield chunk["start"] + offset + 1, row, None


def _problem(record: Malformed) -> str:
    """What a malformed line is, in the words solutions errors have always used."""
    if record.kind == "not_object":
        return f"expected a JSON object, got {record.cause}"
    if record.kind == "too_deep":
        return "nested too deeply"
    return f"not valid JSON ({record.cause})"


def _text(record: dict, field: str | None, required: bool) -> tuple[str | None, str | None]:
    """(value, problem) of an optional or required text field."""
    if field is None:
        return None, None
    value = record.get(field)
    if value is None:
        return None, f"missing field {field!r}" if required else None
    if isinstance(value, (int, float)) and not isinstance(value, bool) and not required:
        return str(value), None
    if not isinstance(value, str):
        return None, f"field {field!r} is {type(value).__name__}, expected text"
    return value, None


def read_chunk(chunk: dict[str, Any], fields: SolutionFields, language: str | None,
               language_field: str | None, scratch_dir: str | None = None) -> Iterator[SolutionRecord]:
    """The records of one chunk. ``language`` is the source's constant language, or
    ``language_field`` names the field that holds each record's language. ``scratch_dir``: the
    manifest's ``ray.scratch_dir``, where a node copies a file read from a URL."""
    name = chunk["file"]
    for line, record, problem in _raw_records(chunk, scratch_dir):
        base = {"file": name, "line": line}
        if record is None:
            yield SolutionRecord(**base, error=f"{name}:{line}: {problem}")
            continue
        values: dict[str, str | None] = {}
        problems = []
        for attribute, required in (("prompt", True), ("tests", True), ("solution", False),
                                    ("task_id", False), ("entry_point", False),
                                    ("instruction", False)):
            value, issue = _text(record, getattr(fields, attribute), required)
            values[attribute] = value
            if issue:
                problems.append(issue)
        record_language = language
        unknown = None
        if language_field is not None:
            raw_language, issue = _text(record, language_field, True)
            if issue:
                problems.append(issue)
            else:
                try:
                    record_language = parse_language(raw_language).value
                except ValueError:
                    record_language, unknown = None, raw_language
        if problems:
            yield SolutionRecord(**base, error=f"{name}:{line}: " + "; ".join(problems))
            continue
        yield SolutionRecord(
            **base, task_id=values["task_id"], language=record_language,
            prompt=values["prompt"] or "", solution=values["solution"] or "",
            tests=values["tests"] or "", entry_point=values["entry_point"],
            instruction=values["instruction"], unknown_language=unknown,
        )
