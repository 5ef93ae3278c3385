"""Object storage: reading build outputs and pair data from URLs (``s3://``, ``gs://``, ``hf://``...).

A location is either a local path or a URL whose scheme an fsspec filesystem implements:
``s3://bucket/prefix`` (s3fs, installed with codeprefs), ``gs://`` (needs ``gcsfs``), ``hf://``
(huggingface_hub's own), ``memory://`` and any other fsspec protocol. ``file://`` stays refused
(write the path itself), as :mod:`codeprefs.core.locations` says.

Credentials come from each filesystem's usual environment and configuration (for S3: the
``AWS_*`` variables, ``~/.aws``, an instance role; ``AWS_ENDPOINT_URL`` points at an
S3-compatible server such as MinIO). codeprefs never reads, writes or prints them; URLs shown to the
user go through :func:`display_url`, which drops any ``user:password@`` part.

Reading is done through a local copy (:func:`local_copy`): the files a command needs are
downloaded into a temporary folder, which the command reads with the same code as a local output
and which is deleted afterwards. The commands that read remotely (``stats``, ``runs``, ``publish``,
the trainer's and evaluator's ``--data``) read every byte of what they download anyway, so a copy
costs one transfer, and the local readers (Parquet row groups, JSON Lines offsets, saved datasets)
stay the only readers.
"""

from __future__ import annotations

import fnmatch
import os
import re
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path, PurePosixPath
from typing import Any

from codeprefs.core.locations import url_scheme

_USERINFO = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*://)[^/@]*@")


class StorageError(ValueError):
    """A URL that cannot be read: unknown scheme, missing filesystem package, nothing there."""


def is_remote(text: str | Path) -> bool:
    """Whether ``text`` is written as a URL other than ``file://`` (which is refused elsewhere)."""
    scheme = url_scheme(str(text))
    return scheme is not None and scheme != "file"


def display_url(url: str) -> str:
    """``url`` without credentials (``s3://key:secret@bucket`` -> ``s3://bucket``), for messages."""
    return _USERINFO.sub(r"\1", url.strip())


def remote_filesystem(url: str, what: str = "") -> tuple[Any, str]:
    """The fsspec filesystem serving ``url`` and the path inside it.

    One filesystem object per process, scheme, credentials written in the URL and credential
    environment (see :func:`_environment`), made with listings never cached (another process may
    write at any time) and reused by every file and task of the process: its client and connection
    pool cost 0.1-0.3 s to make (S3). :class:`StorageError` names ``what`` and the URL when no
    filesystem implements the scheme or its package is not installed.
    """
    import fsspec

    named = f"{what} {display_url(url)}" if what else display_url(url)
    scheme = url_scheme(url)
    if scheme is None or scheme == "file":
        raise StorageError(f"{named} is not an object-storage URL")
    try:
        # A new object costs well under a millisecond; its client is made on its first request.
        fs, path = fsspec.core.url_to_fs(url, skip_instance_cache=True, use_listings_cache=False)
    except ImportError as error:
        raise StorageError(f"{named}: reading {scheme}:// URLs needs a package that is not installed "
                           f"({error}); install it in codeprefs' environment") from None
    except ValueError as error:  # fsspec: "Protocol not known"
        raise StorageError(f"{named}: no filesystem implements {scheme}:// URLs ({error})") from None
    key = (os.getpid(), scheme.lower(), _userinfo(url), _environment())
    return _FILESYSTEMS.setdefault(key, fs), path


_FILESYSTEMS: dict[tuple[Any, ...], Any] = {}
_CREDENTIAL_PREFIXES = ("AWS_", "GOOGLE_", "GCS", "GCLOUD", "AZURE_", "HF_", "HUGGING_FACE", "FSSPEC_")


def _environment() -> tuple[tuple[str, str], ...]:
    """The environment variables a filesystem reads its credentials and endpoint from: a process
    that changes them (a test pointing at another server) gets a filesystem made with the new ones."""
    return tuple(sorted((name, value) for name, value in os.environ.items() if name.startswith(_CREDENTIAL_PREFIXES)))


def scrubbed(error: BaseException, location: str) -> str:
    """The filesystem's words about ``error``, less any ``user:password`` written in ``location``
    (a filesystem that does not take them may quote them back as part of a bucket name)."""
    text = f"{type(error).__name__}: {error}"
    credentials = _userinfo(location)
    return text.replace(credentials, "***") if credentials else text


def _userinfo(location: str) -> str:
    """The ``user:password`` part of a URL (empty when it has none)."""
    head, _, rest = location.strip().partition("://")
    authority = rest.split("/", 1)[0]
    return authority.rpartition("@")[0] if head and "@" in authority else ""


def _relative(path: str, root: str) -> str:
    return str(PurePosixPath(path).relative_to(PurePosixPath(root)))


def remote_files(url: str, what: str = "", keep: Callable[[str], bool] | None = None) -> dict[str, str]:
    """The files under ``url`` (a file or a folder), as {path relative to ``url``: full path}.

    ``keep`` picks among the relative paths (all of them without it). A URL where nothing exists
    is a :class:`StorageError` naming it; so is one the filesystem refuses (no such bucket, access
    denied), with the filesystem's own words.
    """
    fs, root = remote_filesystem(url, what)
    named = f"{what} {display_url(url)}" if what else display_url(url)
    root = root.rstrip("/")
    try:
        if fs.isfile(root):
            name = PurePosixPath(root).name
            return {name: root} if keep is None or keep(name) else {}
        found = fs.find(root)
    except Exception as error:  # OSError, or the client's own (botocore's NoCredentialsError...)
        raise StorageError(f"{named}: cannot list it ({scrubbed(error, url)})") from None
    if not found:
        raise StorageError(f"{named}: no such file or folder")
    files = {_relative(path, root): path for path in sorted(found)}
    return {rel: path for rel, path in files.items() if keep is None or keep(rel)}


def matching(*patterns: str, exclude: tuple[str, ...] = ()) -> Callable[[str], bool]:
    """A ``keep`` for :func:`remote_files`: the relative path matches a pattern (``fnmatch``; ``*``
    spans folders) and lies under none of the ``exclude`` prefixes."""
    def keep(relative: str) -> bool:
        if any(relative == prefix.rstrip("/") or relative.startswith(prefix) for prefix in exclude):
            return False
        return any(fnmatch.fnmatchcase(relative, pattern) for pattern in patterns)
    return keep


@contextmanager
def local_copy(url: str, what: str = "", keep: Callable[[str], bool] | None = None) -> Iterator[Path]:
    """Download the files under ``url`` that ``keep`` picks into a temporary folder, yield it, and
    delete it afterwards. A single-file URL yields the path of its copy; a folder, the folder
    (the files keep their relative paths). Nothing picked is a :class:`StorageError`."""
    fs, root = remote_filesystem(url, what)
    files = remote_files(url, what, keep)
    if not files:
        named = f"{what} {display_url(url)}" if what else display_url(url)
        raise StorageError(f"{named}: none of its files is one this command reads")
    single = len(files) == 1 and next(iter(files.values())).rstrip("/") == root.rstrip("/")
    with tempfile.TemporaryDirectory(prefix="codeprefs-remote-") as scratch:
        # The folder is named as the URL's last part, so what names an output by its folder
        # (publish's commit messages) reads the same for a copy.
        base = Path(scratch) / (PurePosixPath(root.rstrip("/")).name or "copy")
        for relative, path in files.items():
            target = base / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            try:
                fs.get_file(path, str(target))
            except (OSError, PermissionError) as error:
                raise StorageError(f"{display_url(url)}: cannot read {relative} "
                                   f"({type(error).__name__}: {error})") from None
        yield base / next(iter(files)) if single else base


def location_argument(text: str) -> str:
    """An ``argparse`` ``type=`` for options that read a local path or an object-storage URL: the
    text unchanged. A ``file://`` URL, or a scheme no installed filesystem implements, is a usage
    error naming it, before any model or data is loaded."""
    import argparse

    from codeprefs.core.locations import local_path_argument

    if not is_remote(text):
        return local_path_argument(text)
    try:
        remote_filesystem(text)  # builds the filesystem object only: no request is sent
    except StorageError as error:
        raise argparse.ArgumentTypeError(str(error)) from None
    return text
