"""Where a build keeps what it writes: a local folder, or a prefix in object storage.

A :class:`Store` is a build's output folder addressed by relative POSIX paths (``run.json``,
``data/train-00000-of-00001.parquet``, ``.cache/stages/...``). The driver and the Ray workers share
it: a worker on any node writes its units and staged shards there, so a multi-node cluster needs no
file system every node sees. Two kinds:

:class:`LocalStore`
    a local folder (one machine, or a shared POSIX file system mounted on every node).
:class:`ObjectStore`
    a URL an fsspec filesystem implements: ``s3://bucket/prefix`` (s3fs), ``gs://`` (needs
    ``gcsfs``), ``memory://`` and others. Credentials come from each filesystem's usual environment
    and configuration (see :mod:`codeprefs.core.storage`); a store pickles as its URL only, so no
    credential travels to the workers: each process resolves its own.

What "atomic" means for each (the guarantee every reader relies on: a file it sees is complete):

* local: the bytes go to a hidden temporary name in the same folder, are fsynced, and renamed over
  the final name (:func:`codeprefs.core.files.atomic_write`), so a reader sees the old file or the
  new one;
* object storage: the bytes go to a local temporary file, which one PUT (or one multipart upload,
  completed in one request) turns into the object; S3 and GCS make an object visible only once
  it is complete, so a reader sees the old object or the new one, never part of one. A *move*
  (staged shard to final name) is a server-side copy then a delete: the final object appears whole,
  but two names exist for a moment, which is why the run state records the final names first.

Run locks differ too (see :mod:`codeprefs.pipelines.runlock`): a local folder is locked with
``flock``; object storage has no locks, so a build holds a *lease* there, an object written with a
conditional PUT and renewed while the build runs.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path, PurePosixPath
from typing import Any

from codeprefs.core.files import atomic_write
from codeprefs.core.storage import StorageError, display_url, is_remote, remote_filesystem


class Store:
    """A build's output folder; see the module doc. Paths given to methods are relative."""

    #: Whether this is a local folder (the fast paths: rename, flock, direct reads).
    local: bool = True

    def at(self, relative: str | PurePosixPath) -> str:
        """The full location of ``relative``: a local path or a URL, as readers are given it."""
        raise NotImplementedError

    def exists(self, relative: str) -> bool:
        raise NotImplementedError

    def is_file(self, relative: str) -> bool:
        raise NotImplementedError

    def size(self, relative: str) -> int | None:
        """The size in bytes of the file ``relative`` (``None``: no such file)."""
        raise NotImplementedError

    def read_bytes(self, relative: str) -> bytes | None:
        """The bytes of the file ``relative`` (``None``: no such file)."""
        raise NotImplementedError

    def files(self, prefix: str = "") -> list[str]:
        """The relative paths of every file under ``prefix`` (a folder; ``""``: the whole store),
        sorted; none when it does not exist."""
        raise NotImplementedError

    def remove(self, relative: str) -> None:
        """Delete the file ``relative`` (nothing when it does not exist)."""
        raise NotImplementedError

    def remove_tree(self, prefix: str) -> None:
        """Delete everything under the folder ``prefix`` (nothing when it does not exist)."""
        raise NotImplementedError

    def move(self, source: str, target: str) -> None:
        """Give the file ``source`` the name ``target`` (replacing it); see the module doc."""
        raise NotImplementedError

    @contextmanager
    def writing(self, relative: str) -> Iterator[Path]:
        """Yield a local path to write ``relative``'s new content to; when the block finishes, the
        file is put in place atomically (module doc); when it raises, nothing changes."""
        raise NotImplementedError
        yield  # pragma: no cover

    def write_bytes(self, relative: str, data: bytes) -> None:
        with self.writing(relative) as temporary:
            temporary.write_bytes(data)


class LocalStore(Store):
    """A local folder (see the module doc)."""

    local = True

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root).expanduser().resolve()

    def __str__(self) -> str:
        return str(self.root)

    def __repr__(self) -> str:
        return f"LocalStore({str(self.root)!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, LocalStore) and other.root == self.root

    def __hash__(self) -> int:
        return hash(self.root)

    def path(self, relative: str | PurePosixPath = "") -> Path:
        """The local path of ``relative``."""
        return self.root / relative if str(relative) else self.root

    def at(self, relative: str | PurePosixPath) -> str:
        return str(self.path(relative))

    def exists(self, relative: str) -> bool:
        return self.path(relative).exists()

    def is_file(self, relative: str) -> bool:
        return self.path(relative).is_file()

    def size(self, relative: str) -> int | None:
        path = self.path(relative)
        return path.stat().st_size if path.is_file() else None

    def read_bytes(self, relative: str) -> bytes | None:
        try:
            return self.path(relative).read_bytes()
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            return None

    def files(self, prefix: str = "") -> list[str]:
        folder = self.path(prefix)
        if not folder.is_dir():
            return []
        return sorted(path.relative_to(self.root).as_posix() for path in folder.rglob("*")
                      if path.is_file() or path.is_symlink())

    def remove(self, relative: str) -> None:
        self.path(relative).unlink(missing_ok=True)

    def remove_tree(self, prefix: str) -> None:
        shutil.rmtree(self.path(prefix), ignore_errors=True)

    def move(self, source: str, target: str) -> None:
        self.path(target).parent.mkdir(parents=True, exist_ok=True)
        os.replace(self.path(source), self.path(target))

    @contextmanager
    def writing(self, relative: str) -> Iterator[Path]:
        path = self.path(relative)
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_write(path) as temporary:
            yield temporary


class ObjectStore(Store):
    """A prefix in object storage, through fsspec (see the module doc)."""

    local = False

    def __init__(self, url: str) -> None:
        self.url = url.strip().rstrip("/")
        self._fs, self._root = remote_filesystem(self.url, "--output")
        self._root = self._root.rstrip("/")

    # Pickled as the URL: each process builds its own filesystem from its own credentials.
    def __reduce__(self):
        return (ObjectStore, (self.url,))

    def __str__(self) -> str:
        return display_url(self.url)

    def __repr__(self) -> str:
        return f"ObjectStore({display_url(self.url)!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ObjectStore) and other.url == self.url

    def __hash__(self) -> int:
        return hash(self.url)

    @property
    def fs(self) -> Any:
        """The fsspec filesystem (its listings are never cached: see :meth:`fresh`)."""
        return self._fs

    @property
    def protocol(self) -> str:
        return self.url.split("://", 1)[0].lower()

    def key(self, relative: str | PurePosixPath = "") -> str:
        """The filesystem's own path of ``relative`` (``bucket/prefix/relative`` for S3)."""
        return f"{self._root}/{relative}" if str(relative) else self._root

    def at(self, relative: str | PurePosixPath) -> str:
        return f"{self.url}/{relative}"

    def _fresh(self) -> None:
        # Another process (a worker, another build) may have written since the last listing.
        self._fs.invalidate_cache()

    def exists(self, relative: str) -> bool:
        self._fresh()
        return bool(self._fs.exists(self.key(relative)))

    def is_file(self, relative: str) -> bool:
        self._fresh()
        return bool(self._fs.isfile(self.key(relative)))

    def size(self, relative: str) -> int | None:
        self._fresh()
        try:
            info = self._fs.info(self.key(relative))
        except FileNotFoundError:
            return None
        return int(info["size"]) if info.get("type") == "file" else None

    def read_bytes(self, relative: str) -> bytes | None:
        try:
            return self._fs.cat_file(self.key(relative))
        except (FileNotFoundError, IsADirectoryError):
            return None

    def files(self, prefix: str = "") -> list[str]:
        self._fresh()
        root = self.key(prefix)
        try:
            found = self._fs.find(root)
        except FileNotFoundError:
            return []
        base = PurePosixPath(self._root)
        return sorted(str(PurePosixPath(path).relative_to(base)) for path in found
                      if PurePosixPath(path) != PurePosixPath(root) or prefix == "")

    def remove(self, relative: str) -> None:
        try:
            self._fs.rm_file(self.key(relative))
        except FileNotFoundError:
            pass

    def remove_tree(self, prefix: str) -> None:
        keys = [self.key(relative) for relative in self.files(prefix)]
        if keys:
            self._fs.rm(keys)  # batched: one request per thousand objects on S3

    def move(self, source: str, target: str) -> None:
        self._fs.copy(self.key(source), self.key(target))
        self.remove(source)

    @contextmanager
    def writing(self, relative: str) -> Iterator[Path]:
        with tempfile.TemporaryDirectory(prefix="codeprefs-upload-") as scratch:
            temporary = Path(scratch) / PurePosixPath(relative).name
            yield temporary
            try:
                self._fs.put_file(str(temporary), self.key(relative))
            except (OSError, PermissionError) as error:
                raise OSError(f"cannot write {display_url(self.at(relative))} "
                              f"({type(error).__name__}: {error})") from None


def open_store(location: str | Path) -> Store:
    """The store at ``location``: a URL gives an :class:`ObjectStore` (a scheme no installed
    filesystem implements is a :class:`~codeprefs.core.storage.StorageError` naming it), anything
    else a :class:`LocalStore`."""
    if isinstance(location, Store):
        return location
    if is_remote(str(location)):
        return ObjectStore(str(location))
    return LocalStore(location)


def local_cache_dir(store: Store, relative: str | PurePosixPath) -> Path:
    """A local folder for what a build caches in files a store cannot hold (an SQLite database of
    LLM answers): ``relative`` inside a local output; for object storage, a folder of this node's
    scratch folder (:mod:`codeprefs.core.scratch`) named after the output's URL,
    so reruns on the same node reuse it."""
    if isinstance(store, LocalStore):
        return store.path(relative)
    import hashlib

    from codeprefs.core.scratch import scratch_dir

    assert isinstance(store, ObjectStore)
    name = hashlib.sha256(store.url.encode()).hexdigest()[:16]
    return scratch_dir() / "outputs" / name / relative


def arrow_location(location: str) -> tuple[Any, str]:
    """(pyarrow filesystem or ``None``, path) to read ``location`` (a local path or a URL) with
    pyarrow: ``pq.read_metadata(path, filesystem=fs)``, ``ray.data.read_parquet(paths,
    filesystem=fs)``. URLs are read through their fsspec filesystem, the one that wrote them."""
    if not is_remote(location):
        return None, location
    import pyarrow.fs as pafs

    fs, path = remote_filesystem(location)
    return pafs.PyFileSystem(pafs.FSSpecHandler(fs)), path


def parquet_metadata(location: str) -> Any:
    """The footer (``pyarrow.parquet.FileMetaData``) of the Parquet file at ``location``, a local
    path or a URL. A URL's file is opened without read-ahead: the footer's few KiB are fetched,
    not the first block of the file (up to 50 MiB with s3fs' defaults) as a plain open would."""
    import pyarrow.parquet as pq

    if not is_remote(location):
        return pq.read_metadata(location)
    fs, path = remote_filesystem(location)
    with fs.open(path, "rb", cache_type="none") as handle:
        return pq.read_metadata(handle)


def arrow_locations(locations: list[str]) -> tuple[Any, list[str]]:
    """:func:`arrow_location` for files of one store (one filesystem for all of them)."""
    if not locations or not is_remote(locations[0]):
        return None, list(locations)
    filesystem, _ = arrow_location(locations[0])
    paths = [_strip(location) for location in locations]
    return filesystem, paths


def read_parquet(files: list[str], **options: Any) -> Any:
    """A Ray dataset of the Parquet ``files``: local paths, or URLs of one store (read through the
    fsspec filesystem that wrote them). ``options`` go to ``ray.data.read_parquet``."""
    import ray.data

    filesystem, paths = arrow_locations(files)
    return ray.data.read_parquet(paths, filesystem=filesystem, **options)


def _strip(url: str) -> str:
    """``s3://bucket/key`` -> ``bucket/key`` (the path an fsspec filesystem takes)."""
    import fsspec

    return fsspec.core.strip_protocol(url)


__all__ = ["LocalStore", "ObjectStore", "Store", "StorageError", "arrow_location", "arrow_locations",
           "local_cache_dir", "open_store", "parquet_metadata", "read_parquet"]
