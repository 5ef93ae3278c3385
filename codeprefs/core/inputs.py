"""Manifest inputs at object-storage URLs, made local on the node that reads them.

A manifest may name its inputs (export files, dataset files and ``save_to_disk`` folders,
solutions files, decontamination benchmarks, export allowlists) by URL (``s3://bucket/x.jsonl``)
where it names a local path. The readers stay local-file readers: :func:`local_input` gives them
a local path, a URL's object downloaded into the node's scratch folder
(:mod:`codeprefs.core.scratch`)::

    inputs/<32 hex>/<name>      one copy of the object (a file, or a whole folder) named <name>
                                (the URL's last part, so its format reads from its name);
                                <32 hex>: sha256 of the URL and of the object's identity

The identity is the object's ETag or, where the filesystem gives none, its size and modification
time (for a folder: those of every file in it). A node therefore downloads an input once and
reuses its copy for every later read, by any build, as long as the object is unchanged; a
changed object has another identity, so another key, and is downloaded again. Each copy is
written under a temporary name and renamed into place, so a reader sees a whole copy or none,
and two tasks racing on one node both end with the same bytes.

Nodes share no folder: every worker that reads an input calls :func:`local_input` on its own node
(units keep the URL as written), never relying on a copy the driver made. Credentials come from
each filesystem's own environment; messages name URLs through
:func:`~codeprefs.core.storage.display_url`.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import uuid
from pathlib import Path, PurePosixPath
from typing import Any

from codeprefs.core.localpaths import resolve_path
from codeprefs.core.scratch import INPUTS, scratch_dir
from codeprefs.core.storage import StorageError, display_url, is_remote, remote_filesystem, scrubbed


def input_location(written: str, base_dir: Path) -> str:
    """What a manifest's path or URL names: a URL as written, or the local path (relative paths
    against the manifest's folder, ``base_dir``)."""
    return written if is_remote(written) else str(resolve_path(written, base_dir))


def local_input(location: str | Path, what: str, scratch: str | None = None) -> Path:
    """A local path holding the input at ``location``.

    A local path is returned as is (unchecked). A URL is downloaded into this node's scratch
    folder (``scratch``: the manifest's ``ray.scratch_dir``, see :mod:`codeprefs.core.scratch`)
    once per version of the object, and the copy's path returned; a folder URL is copied whole.
    Raises :class:`~codeprefs.core.storage.StorageError` naming ``what`` and the URL when nothing
    is there or it cannot be read.
    """
    location = str(location)
    if not is_remote(location):
        return Path(location)
    named = f"{what} {display_url(location)}".strip()
    fs, root = remote_filesystem(location, what)
    root = root.rstrip("/")
    try:
        info = fs.info(root)
        files = _folder_files(fs, root) if info.get("type") == "directory" else None
    except FileNotFoundError:
        raise StorageError(f"{named}: no such file") from None
    except Exception as error:  # OSError, or the client's own (botocore's ParamValidationError...)
        raise StorageError(f"{named}: cannot read it ({scrubbed(error, location)})") from None
    if files == {}:
        raise StorageError(f"{named}: no such file (an empty folder)")
    identity = _identity(info) if files is None else "\n".join(
        f"{relative}\t{_identity(detail)}" for relative, (_, detail) in sorted(files.items()))
    key = hashlib.sha256(f"{display_url(location)}\n{identity}".encode()).hexdigest()[:32]
    name = PurePosixPath(root).name or "input"
    folder = scratch_dir(scratch) / INPUTS / key
    target = folder / name
    if target.exists():
        return target
    folder.mkdir(parents=True, exist_ok=True)
    temporary = folder / f".{name}.{uuid.uuid4().hex}.part"
    try:
        if files is None:
            _download(fs, root, temporary, named, location)
        else:
            for relative, (path, _) in sorted(files.items()):
                (temporary / relative).parent.mkdir(parents=True, exist_ok=True)
                _download(fs, path, temporary / relative, named, location)
        try:
            os.rename(temporary, target)
        except OSError:
            if not target.exists():  # not a lost race with another task of this node
                raise
    finally:
        if temporary.is_dir():
            shutil.rmtree(temporary, ignore_errors=True)
        elif temporary.exists():
            temporary.unlink()
    return target


def _folder_files(fs: Any, root: str) -> dict[str, tuple[str, dict[str, Any]]]:
    """{path relative to ``root``: (full path, info)} of every file under the folder ``root``."""
    found = fs.find(root, detail=True)
    return {str(PurePosixPath(path).relative_to(PurePosixPath(root))): (path, detail)
            for path, detail in found.items() if detail.get("type") != "directory"}


def _identity(info: dict[str, Any]) -> str:
    """An object's version: its ETag, else its size and modification time."""
    etag = info.get("ETag") or info.get("etag")
    if etag:
        return f"etag:{str(etag).strip(chr(34))}"
    modified = next((info[k] for k in ("mtime", "LastModified", "last_modified", "updated", "created")
                     if info.get(k) is not None), "")
    return f"size:{info.get('size')}:modified:{modified}"


def _download(fs: Any, path: str, target: Path, named: str, location: str) -> None:
    try:
        fs.get_file(path, str(target))
    except FileNotFoundError:
        raise StorageError(f"{named}: no such file (it went away while being read)") from None
    except Exception as error:  # OSError, or the client's own
        raise StorageError(f"{named}: cannot read it ({scrubbed(error, location)})") from None

