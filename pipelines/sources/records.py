"""A record of an export or dataset file becomes one work row, or a counted drop.

Reading the files (formats, chunks, malformed records, corrupt files) is
:mod:`codeprefs.core.records`; what a record means is each source's rules
(:class:`~codeprefs.pipelines.sources.export.ExportRules`, :class:`~codeprefs.pipelines.sources.dataset.DatasetRules`).
This module holds the step they share: fill the row, or drop it with a reason naming the record.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

from codeprefs.core.drops import LIST, DropReason, drop
from codeprefs.core.records import Malformed, Where

MALFORMED_ROW = LIST.reason("malformed_row")


def finish_row(row: dict[str, Any], record: dict[str, Any] | Malformed,
               fill: Callable[[dict[str, Any], dict[str, Any]], DropReason | Malformed | None],
               where: Where | None = None) -> dict[str, Any]:
    """Fill ``row`` from ``record`` with ``fill``; a malformed record, a field of the wrong type
    (``fill`` returns :class:`Malformed`) or a reason ``fill`` returns (a registered reason of
    drop stage ``list``) marks the row dropped. A malformed row is counted as ``malformed_row``,
    and its ``message`` says ``<file>:<line>: <what is wrong>`` (``where`` locates a record that
    parsed but is malformed)."""
    if not isinstance(record, Malformed):
        try:
            reason = fill(row, record)
        except RecursionError:  # a value nested too deeply to turn into text
            reason = Malformed("a field nested too deeply")
        if not isinstance(reason, Malformed):
            if reason:
                drop(row, reason)
            return row
        record = reason
    if not record.where and where is not None:
        record = replace(record, where=where())
    row["message"] = record.describe()
    drop(row, MALFORMED_ROW)
    return row
