"""Tables for the terminal and for pipes that never cut a name short.

rich shrinks a table to the console's width (80 columns when the output is not a terminal) by
cutting cells to "Functi…". Here name cells (languages, criteria, stages) are never cut: when the
full table is too wide, long column headers become their initials (``Functional_Correctness`` ->
``FC``) and a legend under the table spells each one out; free text (drop reasons) wraps at spaces.
"""

from __future__ import annotations

import polars as pl
from rich.console import Console, Group, RenderableType
from rich.table import Table
from rich.text import Text

# Columns whose cells are free text that may wrap over lines (everything else stays on one line).
WRAPPING_COLUMNS = frozenset({"reasons", "top reasons"})


def abbreviations(names: list[str]) -> dict[str, str]:
    """A short form for each name: the initials of its ``_``/space-separated words, in capitals.

    Names of one word, or whose initials would clash with another name or short form, keep their
    full spelling.
    """
    short: dict[str, str] = {}
    for name in names:
        words = name.replace("_", " ").split()
        initials = "".join(word[0] for word in words).upper()
        short[name] = initials if len(words) > 1 else name
    counts: dict[str, int] = {}
    for value in list(short.values()) + [n for n in names if short[n] != n]:
        counts[value] = counts.get(value, 0) + 1
    return {name: (value if value == name or counts[value] == 1 else name) for name, value in short.items()}


# Narrowest a wrapping column is allowed to get before headers are shortened instead.
_MIN_WRAP_WIDTH = 24


def _cells(frame: pl.DataFrame, column: str) -> list[str]:
    return ["" if value is None else str(value) for value in frame[column]]


def _needed_width(frame: pl.DataFrame, headers: dict[str, str]) -> int:
    """Columns of the table at their full cell width (wrapping ones at a modest width), borders included."""
    width = 1
    for column in frame.columns:
        longest = max([len(headers[column]), *(len(cell) for cell in _cells(frame, column))])
        width += 3 + (min(longest, _MIN_WRAP_WIDTH) if column in WRAPPING_COLUMNS else longest)
    return width


def _table(frame: pl.DataFrame, title: str, headers: dict[str, str]) -> Table:
    table = Table(title=title)
    for column in frame.columns:
        text = frame[column].dtype == pl.String
        wraps = column in WRAPPING_COLUMNS
        longest = max([len(headers[column]), *(len(cell) for cell in _cells(frame, column))])
        table.add_column(headers[column], justify="left" if text else "right", no_wrap=not wraps,
                         min_width=None if wraps else longest, overflow="fold")
    for row in frame.rows():
        table.add_row(*("" if value is None else str(value) for value in row))
    return table


def frame_renderable(frame: pl.DataFrame, title: str, console: Console) -> RenderableType:
    """``frame`` as a table that fits ``console`` if it can, with a legend for shortened headers."""
    headers = {column: column for column in frame.columns}
    if _needed_width(frame, headers) <= console.width:
        return _table(frame, title, headers)
    short = abbreviations([c for c in frame.columns if c not in WRAPPING_COLUMNS])
    headers.update({column: value for column, value in short.items() if len(value) < len(column)})
    legend = [f"{value} = {column}" for column, value in headers.items() if value != column]
    table = _table(frame, title, headers)
    return Group(table, Text("\n".join(legend))) if legend else table


def print_frame(console: Console, frame: pl.DataFrame, title: str) -> None:
    console.print(frame_renderable(frame, title, console))
