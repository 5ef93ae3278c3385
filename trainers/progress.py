"""Progress of a long scoring run: rows done of the total, rows per second, time left.

:class:`ScoreProgress` is what the scorer hands its ``on_progress`` callback after a batch (at most
every ``progress_every`` seconds, and once at the end); :meth:`ScoreProgress.line` is the line
``codeprefs score`` writes to stderr. Batches run longest rows first, so the time left is
estimated from the tokens left, not the rows left (the first rows are the slowest).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field


@dataclass
class ScoreProgress:
    """Counts of one scoring run so far (rows and tokens done, of their totals)."""

    rows_total: int
    tokens_total: int
    rows_done: int = 0
    tokens_done: int = 0
    started: float = field(default_factory=time.monotonic)
    finished: bool = False

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self.started

    @property
    def rows_per_second(self) -> float:
        elapsed = self.elapsed
        return self.rows_done / elapsed if elapsed > 0 else 0.0

    @property
    def remaining(self) -> float | None:
        """Seconds left at the token rate so far; None before the first batch is done."""
        if self.finished:
            return 0.0
        if self.tokens_done <= 0:
            return None
        return self.elapsed * max(0, self.tokens_total - self.tokens_done) / self.tokens_done

    def advance(self, rows: int, tokens: int) -> None:
        self.rows_done += rows
        self.tokens_done += tokens

    def line(self) -> str:
        """``score: 1,024/10,000 rows (10.2%), 85.3 rows/s, 12s elapsed, ETA 1m45s``."""
        share = 100 * self.rows_done / self.rows_total if self.rows_total else 100.0
        remaining = self.remaining
        tail = "done" if self.finished else f"ETA {_duration(remaining) if remaining is not None else '?'}"
        return (f"score: {self.rows_done:,}/{self.rows_total:,} rows ({share:.1f}%), "
                f"{self.rows_per_second:,.1f} rows/s, {_duration(self.elapsed)} elapsed, {tail}")


def _duration(seconds: float) -> str:
    seconds = round(seconds)
    hours, rest = divmod(seconds, 3600)
    minutes, seconds = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes:02d}m"
    return f"{minutes}m{seconds:02d}s" if minutes else f"{seconds}s"
