"""Paths a manifest writes, read against the manifest's folder and written back relative to it.

A manifest's relative paths (files of a source, benchmarks, a tokenizer folder, local
repositories) mean "next to the manifest", whatever the current directory: the build and its
sources read each such path through :func:`resolve_path`, so they agree on what ``~``, an
absolute and a relative path name. (Globs are expanded earlier, by the manifest itself.)

The way back keeps local absolute paths out of ``run.json`` (which ``publish`` uploads and the
card quotes). A path in the run record is written relative to the manifest's folder: the
recorded manifest therefore still reads the same inputs when it sits where the original did,
and it says nothing of the user's home or directory layout above that folder. (The
alternative, masking the absolute prefix, would leave paths that no longer name anything.)
``file://`` URLs and paths inside messages are rewritten alike.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

# An absolute path inside a text: a "/" that does not continue a word, a URL or another path.
_ABSOLUTE = re.compile(r"(?<![\w/:.~%-])/[^\s'\"`,;:()<>\[\]{}]+")
_FILE_URL = re.compile(r"file://(/[^\s'\"`,;()<>\[\]{}]*)", re.I)


def resolve_path(written: str, base_dir: Path) -> Path:
    """The local path ``written`` names: ``~`` expanded, and a relative path taken as relative to
    ``base_dir`` (the manifest's folder), not to the current directory.

    Not resolved further (symlinks, ``..``): callers that need a canonical path resolve it.
    ``~`` is expanded as the manifest's glob expansion does (:func:`os.path.expanduser`): an
    unknown ``~user`` stays as written, so it ends as a "no such file" naming it.
    """
    path = Path(os.path.expanduser(written))
    return path if path.is_absolute() else base_dir / path


def relative_to(path: str, base_dir: Path) -> str:
    """``path`` relative to ``base_dir`` (``.`` for the folder itself)."""
    return os.path.relpath(os.path.normpath(path), os.path.normpath(str(base_dir)))


def relative_text(text: str, base_dir: Path) -> str:
    """``text`` with every absolute path and ``file://`` URL in it made relative to ``base_dir``."""
    if "/" not in text:
        return text
    text = _FILE_URL.sub(lambda match: relative_to(match.group(1), base_dir), text)
    return _ABSOLUTE.sub(lambda match: relative_to(match.group(0), base_dir), text)


def relative_paths(data: Any, base_dir: Path) -> Any:
    """A copy of JSON-like ``data`` with :func:`relative_text` applied to every string."""
    if isinstance(data, str):
        return relative_text(data, base_dir)
    if isinstance(data, dict):
        return {key: relative_paths(value, base_dir) for key, value in data.items()}
    if isinstance(data, list | tuple):
        return [relative_paths(value, base_dir) for value in data]
    return data
