"""A lease: one build at a time on an output prefix in object storage, which has no locks.

The lease is one small JSON object (``.cache/lease.json``): who holds it (a random token, the
host and the process id, for messages) and until when. A build

* **takes** it with a conditional PUT that succeeds only when no lease exists (S3
  ``If-None-Match: *``), or, when the one there has expired (its holder died without releasing it),
  with a PUT conditional on that expired object's ETag (``If-Match``), so of two builds taking over
  the same expired lease one wins and the other is refused;
* **renews** it from a background thread every third of its duration, each PUT conditional on the
  ETag of its own last write: if anyone else wrote the lease in between, the build has lost it
  and stops at its next state change (:meth:`Lease.check`) instead of writing over another
  build's files;
* **releases** it by deleting the object when it finishes.

A driver killed with ``kill -9`` leaves its lease until it expires; a new build on the same host
whose recorded holder process no longer exists takes it over at once (the test of a resume after
a kill relies on that), any other waits (``wait``) or is refused naming the holder and the expiry.

Guarantees by filesystem: on S3 (and S3-compatible servers that implement conditional writes,
like MinIO and moto) both conditions are enforced by the server, so two builds never both hold
the lease. Other fsspec filesystems get ``mode="create"`` (exclusive where the filesystem
implements it, check-then-write elsewhere) and unconditional renewals: exclusion there is best
effort, and the README says so.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

DEFAULT_SECONDS = 120.0


class LeaseError(RuntimeError):
    """The lease is held by another build, or was lost while this build ran."""


@dataclass(frozen=True)
class Holder:
    token: str
    host: str
    pid: int
    expires: float  # seconds since the epoch

    @classmethod
    def parse(cls, data: bytes) -> Holder | None:
        try:
            fields = json.loads(data)
            return cls(str(fields["token"]), str(fields["host"]), int(fields["pid"]), float(fields["expires"]))
        except (ValueError, KeyError, TypeError):
            return None  # damaged: treated as expired

    def dump(self) -> bytes:
        return json.dumps({"token": self.token, "host": self.host, "pid": self.pid, "expires": self.expires,
                           "expires_at": datetime.fromtimestamp(self.expires, UTC).isoformat()}).encode()

    def describe(self) -> str:
        until = datetime.fromtimestamp(self.expires, UTC).isoformat(timespec="seconds")
        return f"process {self.pid} on {self.host}, lease until {until}"

    def dead_here(self) -> bool:
        """Whether the holder ran on this host and its process is gone (a killed driver)."""
        if self.host != socket.gethostname():
            return False
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return True
        except PermissionError:  # alive, another user's
            return False
        return False


class Lease:
    """The lease on ``key`` of the fsspec filesystem ``fs`` (see the module doc)."""

    def __init__(self, fs: Any, key: str, where: str, seconds: float = DEFAULT_SECONDS) -> None:
        self.fs = fs
        self.key = key
        self.where = where  # for messages: the output's URL
        self.seconds = seconds
        self.token = uuid.uuid4().hex
        self._etag: str | None = None
        self._lost: str | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._conditional = "s3" in _protocols(fs)

    # -- the object ---------------------------------------------------------------------------

    def _read(self) -> tuple[Holder | None, str | None, bool]:
        """(holder, etag, exists) of the lease object now."""
        self.fs.invalidate_cache()
        try:
            info = self.fs.info(self.key)
            data = self.fs.cat_file(self.key)
        except FileNotFoundError:
            return None, None, False
        return Holder.parse(data), info.get("ETag"), True

    def _put(self, *, create: bool = False, match: str | None = None) -> bool:
        """Write our holder record; ``False`` when the condition failed."""
        mine = Holder(self.token, socket.gethostname(), os.getpid(), time.time() + self.seconds)
        kwargs: dict[str, Any] = {}
        if match is not None and self._conditional:
            kwargs["IfMatch"] = match
        try:
            self.fs.pipe_file(self.key, mine.dump(), mode="create" if create else "overwrite", **kwargs)
        except FileExistsError:
            return False
        except OSError as error:
            if _precondition_failed(error):
                return False
            raise
        if self._conditional:
            self.fs.invalidate_cache()
            self._etag = self.fs.info(self.key).get("ETag")
        return True

    # -- taking, renewing, releasing --------------------------------------------------------

    def acquire(self, wait: float = 0.0) -> Lease:
        """Take the lease, waiting up to ``wait`` seconds for a live holder's lease to expire."""
        deadline = time.monotonic() + wait
        while True:
            holder, etag, exists = self._read()
            if not exists:
                if self._put(create=True):
                    break
            elif holder is None or holder.expires < time.time() or holder.dead_here():
                if self._put(match=etag):
                    break
            elif time.monotonic() >= deadline:
                raise LeaseError(f"another build is running on {self.where} ({holder.describe()}); "
                                 "wait for it to finish, or, if it died on another node, until its lease expires")
            else:
                time.sleep(min(1.0, max(0.0, deadline - time.monotonic())))
                continue
            # The condition failed: another build took it between our read and our write.
            holder, _, _ = self._read()
            if holder is not None and holder.token != self.token:
                raise LeaseError(f"another build is running on {self.where} ({holder.describe()})")
        self._thread = threading.Thread(target=self._renew_loop, name="codeprefs-lease", daemon=True)
        self._thread.start()
        return self

    def _renew_loop(self) -> None:
        failing_since: float | None = None
        while not self._stop.wait(self.seconds / 3):
            try:
                renewed = self._put(match=self._etag)
            except OSError as error:  # the store is unreachable: keep trying until the lease would expire
                failing_since = failing_since or time.time()
                if time.time() - failing_since > self.seconds:
                    self._lost = f"it could not be renewed for {self.seconds:.0f} s ({error})"
                    return
                continue
            if not renewed:
                self._lost = "another build wrote the lease"
                return
            failing_since = None

    def check(self) -> None:
        """Raise :class:`LeaseError` when the lease was lost (see the module doc)."""
        if self._lost is not None:
            raise LeaseError(f"this build lost its lease on {self.where}: {self._lost}; another build may be "
                             "writing there, so this one stops")

    def release(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        holder, _, exists = self._read()
        if exists and holder is not None and holder.token == self.token:
            try:
                self.fs.rm_file(self.key)
            except FileNotFoundError:
                pass


def _protocols(fs: Any) -> tuple[str, ...]:
    protocol = fs.protocol
    return tuple(protocol) if isinstance(protocol, (tuple, list)) else (protocol,)


def _precondition_failed(error: OSError) -> bool:
    text = str(error)
    return "PreconditionFailed" in text or "pre-conditions" in text or "412" in text
