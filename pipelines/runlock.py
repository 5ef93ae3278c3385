"""One build at a time per output folder, and the state of its last run."""

from __future__ import annotations

import fcntl
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from codeprefs.pipelines.errors import BuildError
from codeprefs.pipelines.outputdir import inspect_output
from codeprefs.core.files import write_json_atomic
from codeprefs.core.layout import CACHE_DIR, LOCK, RUN_STATE


class RunLock:
    """One build at a time per output folder, and its run state (``.cache/run-state.json``).

    The state says whether the last run is ``running`` (it was interrupted: killed, or Ray died
    under it; ``--resume`` finishes it), ``failed`` (it stopped on its input or settings, which
    the user fixes; a plain rerun reuses its finished units) or ``complete``, and lists the
    shards and rejects files runs wrote in the folder (``files``), the only ones a build deletes.
    """

    def __init__(self, output_dir: Path, files: set[str] | None = None) -> None:
        self.path = output_dir / CACHE_DIR
        self.lock_file = output_dir / LOCK
        self.state = output_dir / RUN_STATE
        self.files = set(files or ())
        self.fingerprints: dict[str, Any] = {}
        self._handle = None

    def __enter__(self) -> RunLock:
        self.path.mkdir(parents=True, exist_ok=True)
        self._handle = open(self.lock_file, "w")
        try:
            fcntl.flock(self._handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise BuildError(f"another build is running on {self.path.parent}") from None
        return self

    def __exit__(self, *exc) -> None:
        fcntl.flock(self._handle, fcntl.LOCK_UN)
        self._handle.close()

    def mark(self, status: str, fingerprints: dict[str, Any]) -> None:
        self.fingerprints = fingerprints
        write_json_atomic(self.state, {"status": status, "fingerprints": fingerprints, "pid": os.getpid(),
                                       "at": datetime.now(UTC).isoformat(), "files": sorted(self.files)})

    def add_files(self, names: list[str]) -> None:
        """Record files about to be written under their final names (before they are)."""
        self.files.update(names)
        self.mark("running", self.fingerprints)


def up_to_date(output_dir: Path, write_fingerprint: str) -> dict[str, Any] | None:
    """The previous run record when it came from the same fingerprint and its files are intact."""
    record = inspect_output(output_dir).record
    if record is None or (record.get("fingerprints") or {}).get("write") != write_fingerprint:
        return None
    candidates = (record.get("candidates") or {}).get("files") or []
    for item in record.get("outputs", []) + record.get("rejects", []) + candidates:
        file = output_dir / item["path"]
        if not file.is_file() or file.stat().st_size != item["bytes"]:
            return None
    return record
