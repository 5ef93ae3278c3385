"""Progress of a build, stage by stage: units done of the total, rows in and out, time.

The build driver only sees small per-unit (or per-block) results coming back from Ray Data, so
progress is read off those results as they stream in (:func:`collect`), never by extra work on
the rows. Two ways to show it:

* :class:`RichReporter`, on a terminal: one live bar per stage with units, rows in/out, elapsed
  time and an estimate of the rest.
* :class:`PlainReporter`, anywhere else (a pipe, a file, a Ray job's log): one line per stage at
  most every ``interval`` seconds while it runs, and one when it finishes.

The CLI picks one with :func:`reporting`; without it a build logs plain lines through its ``log``
callable. :func:`ray_logs_to_file` sends Ray Data's own INFO lines to a file instead of the
console (``--verbose`` keeps them on the console).
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import pyarrow.parquet as pq

from codeprefs.core.store import arrow_location, parquet_metadata


@dataclass
class StageProgress:
    """What one stage has done so far; ``reporter`` is told of every change."""

    name: str
    total: int  # units of work in the stage (reused ones included)
    unit: str = "units"
    done: int = 0
    rows_in: int = 0
    rows_out: int = 0
    started: float = field(default_factory=time.monotonic)
    finished: float | None = None
    reporter: Reporter | None = None

    @property
    def elapsed(self) -> float:
        return (self.finished or time.monotonic()) - self.started

    @property
    def remaining(self) -> float | None:
        """Seconds left at the pace so far (None before the first unit is done)."""
        if self.finished is not None:
            return 0.0
        if self.done <= 0 or self.total <= 0:
            return None
        return self.elapsed * max(0, self.total - self.done) / self.done

    def advance(self, units: int = 1, rows_in: int = 0, rows_out: int = 0) -> None:
        self.done += units
        self.rows_in += rows_in
        self.rows_out += rows_out
        if self.reporter is not None:
            self.reporter.update(self)

    def finish(self) -> None:
        if self.finished is None:
            self.finished = time.monotonic()
            if self.reporter is not None:
                self.reporter.finish(self)

    def line(self) -> str:
        """``validate: 40/120 rows, rows in 120 out 35, 3.2s elapsed, ~6s left``."""
        left = "done" if self.finished is not None else (
            "estimating" if self.remaining is None else f"~{_seconds(self.remaining)} left")
        return (f"{self.name}: {self.done}/{self.total} {self.unit}, rows in {self.rows_in} out {self.rows_out}, "
                f"{_seconds(self.elapsed)} elapsed, {left}")


def _seconds(value: float) -> str:
    if value < 60:
        return f"{value:.1f}s"
    minutes, seconds = divmod(int(value), 60)
    return f"{minutes}m{seconds:02d}s" if minutes < 60 else f"{minutes // 60}h{minutes % 60:02d}m"


class Reporter(Protocol):
    def start(self, stage: StageProgress) -> None: ...

    def update(self, stage: StageProgress) -> None: ...

    def finish(self, stage: StageProgress) -> None: ...


class PlainReporter:
    """Plain log lines: per stage at most one every ``interval`` seconds, and one when it finishes.

    A stage that shows no progress for ``interval`` seconds still gets a line (its elapsed time)
    from a background timer, so a long stall is visible.
    """

    def __init__(self, log: Callable[[str], None], interval: float = 10.0, timer: bool = True) -> None:
        self.log = log
        self.interval = interval
        self.timer = timer
        self._last: dict[int, float] = {}
        self._active: dict[int, StageProgress] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._timer: threading.Thread | None = None

    def _emit(self, stage: StageProgress) -> None:
        self._last[id(stage)] = time.monotonic()
        self.log(f"progress: {stage.line()}")

    def start(self, stage: StageProgress) -> None:
        with self._lock:
            self._active[id(stage)] = stage
            self._last[id(stage)] = time.monotonic()
            if self.timer and self._timer is None:
                self._timer = threading.Thread(target=self._tick, name="build-progress", daemon=True)
                self._timer.start()

    def update(self, stage: StageProgress) -> None:
        with self._lock:
            if time.monotonic() - self._last.get(id(stage), 0.0) >= self.interval:
                self._emit(stage)

    def finish(self, stage: StageProgress) -> None:
        with self._lock:
            self._active.pop(id(stage), None)
            self._emit(stage)

    def _tick(self) -> None:
        while not self._stop.wait(min(1.0, self.interval)):
            with self._lock:
                for stage in list(self._active.values()):
                    if time.monotonic() - self._last.get(id(stage), 0.0) >= self.interval:
                        self._emit(stage)

    def close(self) -> None:
        self._stop.set()


class RichReporter:
    """Live rich progress bars on a terminal, one per stage, left on screen when it finishes."""

    def __init__(self, console: Any) -> None:
        from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

        self.progress = Progress(
            TextColumn("[bold]{task.description}"), BarColumn(),
            TextColumn("{task.completed}/{task.total} {task.fields[unit]}"),
            TextColumn("rows in {task.fields[rows_in]} out {task.fields[rows_out]}"),
            TimeElapsedColumn(), TimeRemainingColumn(), console=console, transient=False)
        self._tasks: dict[int, Any] = {}

    def start(self, stage: StageProgress) -> None:
        if not self._tasks:
            self.progress.start()
        self._tasks[id(stage)] = self.progress.add_task(
            stage.name, total=stage.total, completed=stage.done, unit=stage.unit,
            rows_in=stage.rows_in, rows_out=stage.rows_out)

    def update(self, stage: StageProgress) -> None:
        task = self._tasks.get(id(stage))
        if task is not None:
            self.progress.update(task, completed=stage.done, rows_in=stage.rows_in, rows_out=stage.rows_out)

    def finish(self, stage: StageProgress) -> None:
        self.update(stage)
        task = self._tasks.get(id(stage))
        if task is not None:
            self.progress.stop_task(task)

    def close(self) -> None:
        if self._tasks:
            self.progress.stop()


_reporter: contextvars.ContextVar[Reporter | None] = contextvars.ContextVar("build_progress", default=None)


@contextlib.contextmanager
def reporting(reporter: Reporter) -> Iterator[Reporter]:
    """Show the progress of the builds run inside the block with ``reporter``."""
    token = _reporter.set(reporter)
    try:
        yield reporter
    finally:
        _reporter.reset(token)
        close = getattr(reporter, "close", None)
        if close is not None:
            close()


def stage(name: str, total: int, log: Callable[[str], None], *, unit: str = "units", done: int = 0,
          rows_in: int = 0, rows_out: int = 0) -> StageProgress:
    """Start tracking a stage with the active reporter (without one: plain lines through ``log``,
    on progress and at the end, with no background timer)."""
    reporter = _reporter.get() or PlainReporter(log, timer=False)
    progress = StageProgress(name, total, unit, done, rows_in, rows_out, reporter=reporter)
    reporter.start(progress)
    return progress


def collect(results: Iterable[dict[str, Any]], progress: StageProgress,
            count: Callable[[dict[str, Any]], tuple[int, int, int]]) -> list[dict[str, Any]]:
    """All of ``results`` (e.g. a Ray dataset's ``iter_rows()``), advancing ``progress`` as each arrives.

    ``count`` maps one result to (units, rows in, rows out). The stage is finished when the
    results are exhausted; an error leaves it unfinished (the build reports the error).
    """
    rows = []
    for row in results:
        rows.append(row)
        progress.advance(*count(row))
    progress.finish()
    return rows


def file_rows(files: Iterable[str | Path]) -> int:
    """Rows in Parquet ``files`` (local paths or URLs), from their footers only."""
    return sum(parquet_metadata(str(file)).num_rows for file in files)


def kept_rows(path: str | Path, drop_column: str = "drop_reason") -> int:
    """Rows of a stage file not marked dropped (``drop_column`` null), from the footer's
    statistics when the writer kept them, else from that one column."""
    metadata = parquet_metadata(str(path))
    index = metadata.schema.names.index(drop_column)
    kept = 0
    for group in range(metadata.num_row_groups):
        column = metadata.row_group(group).column(index)
        if column.statistics is None or not column.statistics.has_null_count:
            filesystem, local = arrow_location(str(path))
            return pq.read_table(local, columns=[drop_column], filesystem=filesystem)[drop_column].null_count
        kept += column.statistics.null_count
    return kept


class _LazyFileHandler(logging.FileHandler):
    """A log file created on the first line only (a build refused early leaves no file behind)."""

    def __init__(self, path: Path) -> None:
        super().__init__(path, encoding="utf-8", delay=True)

    def _open(self):
        Path(self.baseFilename).parent.mkdir(parents=True, exist_ok=True)
        return super()._open()


@contextlib.contextmanager
def ray_logs_to_file(path: Path | None, verbose: bool = False) -> Iterator[None]:
    """Send Ray Data's driver-side log lines ("Starting execution of Dataset ...", INFO and up)
    to ``path`` instead of the console; with ``verbose`` (or no path) leave them on the console.

    The file is made on the first such line, i.e. once the build has started its Ray work.
    """
    import ray.data  # noqa: F401  (configures the ray.data logger and its console handler)

    if verbose or path is None:
        yield
        return
    logger = logging.getLogger("ray.data")
    console = [h for h in logger.handlers
               if isinstance(h, logging.StreamHandler) and not isinstance(h, logging.FileHandler)]
    to_file = _LazyFileHandler(path)
    to_file.setLevel(logging.INFO)
    to_file.setFormatter(logging.Formatter("%(asctime)s\t%(levelname)s %(filename)s:%(lineno)s -- %(message)s"))
    for handler in console:
        logger.removeHandler(handler)
    logger.addHandler(to_file)
    try:
        yield
    finally:
        logger.removeHandler(to_file)
        to_file.close()
        for handler in console:
            logger.addHandler(handler)
