"""Reading and writing whole files safely: content hashes and atomic replacement.

The files a build reads back or publishes (shards, rejects, cache units and ``_SUCCESS``,
``run.json``, the run state, fetch failure records) are written through :func:`atomic_write`,
so a crash, a full disk or a killed worker leaves either the complete new file or whatever was
there before, never half a file that a rerun, a reader or a publish would take for a finished
one.
"""

from __future__ import annotations

import hashlib
import json
import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

_CHUNK = 1 << 20  # bytes read at a time: hashing a multi-GB shard needs no more memory than this


def file_sha256(path: Path) -> str:
    """The hex sha256 of the file at ``path``, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def folder_sha256(folder: Path, pattern: str = "*") -> str:
    """The hex sha256 of the files under ``folder`` matching ``pattern`` (at any depth): their
    paths relative to ``folder`` and their contents, in path order, so a renamed, added, removed
    or edited file changes it."""
    digest = hashlib.sha256()
    for path in sorted(folder.rglob(pattern)):
        if path.is_file():
            digest.update(path.relative_to(folder).as_posix().encode() + b"\0")
            digest.update(file_sha256(path).encode() + b"\n")
    return digest.hexdigest()


def temporary_name(path: Path) -> Path:
    """Where :func:`atomic_write` writes ``path`` first: a hidden name in the same folder.

    The same folder, so that the final :func:`os.replace` is a rename within one file system
    (atomic); a random part, so that two writers of the same path never share a temporary file.
    The shape ``.<name>.<32 hex>.tmp`` is what :mod:`codeprefs.pipelines.outputdir` recognises as a
    leftover of a killed writer.
    """
    return path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")


@contextmanager
def atomic_write(path: Path) -> Iterator[Path]:
    """Yield a temporary path to write ``path``'s new content to; on leaving, put it in place.

    When the block finishes, the temporary file is flushed to disk (fsync, so that after a power
    loss the renamed file does not turn out empty) and renamed over ``path``. When the block
    raises, the temporary file is removed and ``path`` is left untouched. The folder must exist.
    """
    temporary = temporary_name(path)
    try:
        yield temporary
        with open(temporary, "rb") as handle:
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


def write_text_atomic(path: Path, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` through :func:`atomic_write`."""
    with atomic_write(path) as temporary:
        temporary.write_text(text, encoding="utf-8")


def json_bytes(data: dict[str, Any]) -> bytes:
    """``data`` as indented JSON (the form of ``run.json`` and the run state, meant to be read
    by people too)."""
    return (json.dumps(data, indent=2, sort_keys=False) + "\n").encode("utf-8")


def write_json_atomic(path: Path, data: dict[str, Any]) -> None:
    """Write ``data`` to ``path`` as :func:`json_bytes` through :func:`atomic_write`."""
    with atomic_write(path) as temporary:
        temporary.write_bytes(json_bytes(data))
