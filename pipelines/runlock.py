"""One build at a time per output, and the state of its last run."""

from __future__ import annotations

import fcntl
import os
from datetime import UTC, datetime
from typing import Any

from codeprefs.core.files import json_bytes
from codeprefs.core.layout import LEASE, LOCK, RUN_STATE
from codeprefs.core.lease import DEFAULT_SECONDS, Lease, LeaseError
from codeprefs.core.store import LocalStore, ObjectStore, Store
from codeprefs.pipelines.errors import BuildError
from codeprefs.pipelines.outputdir import inspect_output

LEASE_SECONDS_ENV = "CODEPREFS_LEASE_SECONDS"


class RunLock:
    """One build at a time per output, and its run state (``.cache/run-state.json``).

    A local folder is locked with ``flock`` on ``.cache/lock``; object storage has no locks, so a
    build there holds a lease (:mod:`codeprefs.core.lease`, ``.cache/lease.json``), renewed while it
    runs, whose duration is ``$CODEPREFS_LEASE_SECONDS`` (default 120 s). A build that lost its
    lease stops at its next state change.

    The state says whether the last run is ``running`` (it was interrupted: killed, or Ray died
    under it; ``--resume`` finishes it), ``failed`` (it stopped on its input or settings, which
    the user fixes; a plain rerun reuses its finished units) or ``complete``, and lists the
    shards and rejects files runs wrote in the output (``files``), the only ones a build deletes.
    """

    def __init__(self, store: Store, files: set[str] | None = None) -> None:
        self.store = store
        self.files = set(files or ())
        self.fingerprints: dict[str, Any] = {}
        self._handle = None
        self._lease: Lease | None = None

    def __enter__(self) -> RunLock:
        if isinstance(self.store, LocalStore):
            lock_file = self.store.path(LOCK)
            lock_file.parent.mkdir(parents=True, exist_ok=True)
            self._handle = open(lock_file, "w")
            try:
                fcntl.flock(self._handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                self._handle.close()
                raise BuildError(f"another build is running on {self.store}") from None
        else:
            assert isinstance(self.store, ObjectStore)
            lease = Lease(self.store.fs, self.store.key(LEASE.as_posix()), str(self.store), lease_seconds())
            try:
                self._lease = lease.acquire()
            except LeaseError as error:
                raise BuildError(str(error)) from None
        return self

    def __exit__(self, *exc) -> None:
        if self._handle is not None:
            fcntl.flock(self._handle, fcntl.LOCK_UN)
            self._handle.close()
        if self._lease is not None:
            self._lease.release()

    def check(self) -> None:
        """Stop (:class:`BuildError`) when this build lost its lease on the output."""
        if self._lease is not None:
            try:
                self._lease.check()
            except LeaseError as error:
                raise BuildError(str(error)) from None

    def mark(self, status: str, fingerprints: dict[str, Any]) -> None:
        self.check()
        self.fingerprints = fingerprints
        self.store.write_bytes(RUN_STATE.as_posix(), json_bytes({
            "status": status, "fingerprints": fingerprints, "pid": os.getpid(),
            "at": datetime.now(UTC).isoformat(), "files": sorted(self.files)}))

    def add_files(self, names: list[str]) -> None:
        """Record files about to be written under their final names (before they are)."""
        self.files.update(names)
        self.mark("running", self.fingerprints)


def lease_seconds() -> float:
    """The lease duration: ``$CODEPREFS_LEASE_SECONDS``, else the default; a bad value is an
    error naming the variable."""
    text = os.environ.get(LEASE_SECONDS_ENV)
    if not text:
        return DEFAULT_SECONDS
    try:
        seconds = float(text)
    except ValueError:
        seconds = 0.0
    if not seconds >= 3:
        raise BuildError(f"{LEASE_SECONDS_ENV}={text!r}: the lease duration must be a number of seconds >= 3")
    return seconds


def up_to_date(store: Store, write_fingerprint: str) -> dict[str, Any] | None:
    """The previous run record when it came from the same fingerprint and its files are intact."""
    record = inspect_output(store).record
    if record is None or (record.get("fingerprints") or {}).get("write") != write_fingerprint:
        return None
    candidates = (record.get("candidates") or {}).get("files") or []
    for item in record.get("outputs", []) + record.get("rejects", []) + candidates:
        if store.size(item["path"]) != item["bytes"]:
            return None
    return record
