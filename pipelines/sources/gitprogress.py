"""Progress lines for slow git transfers (clones and fetches), and URLs safe to print.

A clone of a large or slow remote can run for minutes without a word from git (it runs with
``--quiet``); :class:`TransferProgress` logs one line when the transfer starts, one every
``interval`` seconds while it runs (elapsed time and how much has arrived in the target
folder so far), and one when it ends. Lines go to the ``codeprefs.git`` logger (to stderr when
nothing else configured logging), which Ray forwards from its workers to the driver's terminal.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
from pathlib import Path
from types import TracebackType
from urllib.parse import urlsplit, urlunsplit

PROGRESS_INTERVAL_S = 30.0

_logger = logging.getLogger("codeprefs.git")


def logger() -> logging.Logger:
    """The ``codeprefs.git`` logger, printing to stderr when logging is not configured."""
    if not _logger.handlers and not logging.getLogger().handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(message)s"))
        _logger.addHandler(handler)
    if _logger.level == logging.NOTSET:
        _logger.setLevel(logging.INFO)
    return _logger


def without_userinfo(location: str) -> str:
    """``location`` with the ``user:password@`` part of a URL removed (host and port kept)."""
    if "://" not in location:
        return location.split("@", 1)[1] if location.startswith("git@") else location
    parts = urlsplit(location)
    if "@" not in parts.netloc:
        return location
    return urlunsplit(parts._replace(netloc=parts.netloc.rsplit("@", 1)[1]))


def folder_bytes(folder: Path) -> int:
    """Bytes of the files under ``folder`` (0 when it does not exist); files may vanish meanwhile."""
    total = 0
    for root, _, files in os.walk(folder):
        for name in files:
            try:
                total += os.lstat(os.path.join(root, name)).st_size
            except OSError:
                continue
    return total


class TransferProgress:
    """``with TransferProgress("cloning", url, folder): run the clone`` (see the module doc)."""

    def __init__(self, action: str, location: str, folder: Path,
                 interval: float = PROGRESS_INTERVAL_S) -> None:
        self.action = action
        self.label = without_userinfo(location)
        self.folder = folder
        self.interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._report, daemon=True, name="git-progress")
        self._started = 0.0
        self._base = 0

    def received_mib(self) -> float:
        return max(0, folder_bytes(self.folder) - self._base) / (1 << 20)

    def elapsed(self) -> float:
        return time.monotonic() - self._started

    def _report(self) -> None:
        while not self._stop.wait(self.interval):
            logger().info("still %s %s (%.0f s, %.1f MiB received)", self.action, self.label,
                          self.elapsed(), self.received_mib())

    def __enter__(self) -> TransferProgress:
        self._started = time.monotonic()
        self._base = folder_bytes(self.folder)
        logger().info("%s %s", self.action, self.label)
        self._thread.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self._stop.set()
        self._thread.join()
        outcome = "done" if error is None else "failed"
        logger().info("%s %s: %s after %.1f s (%.1f MiB received)", self.action, self.label,
                      outcome, self.elapsed(), self.received_mib())
