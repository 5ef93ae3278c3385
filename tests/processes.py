"""Processes of this machine by their command line, read from /proc (for tests that must end
exactly what their own build started, matched by its temp dir or port, and nothing else)."""

from __future__ import annotations

import contextlib
import os
import signal
from pathlib import Path


def processes_naming(text: str) -> dict[int, str]:
    """pid -> command line of every process whose command line contains ``text``."""
    found = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            command = Path(f"/proc/{entry}/cmdline").read_bytes()
        except OSError:
            continue
        if text.encode() in command:
            found[int(entry)] = command.replace(b"\0", b" ").decode(errors="replace")
    return found


def kill_processes_naming(text: str) -> None:
    """SIGKILL every process whose command line contains ``text`` (a temp dir of our own)."""
    for pid in processes_naming(text):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
