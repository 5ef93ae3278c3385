"""Paths and globs as a manifest writes them, expanded against the manifest's folder.

An object-storage URL (``s3://bucket/exports/*.jsonl``) is taken where a path is: a plain URL is
kept as written, a glob is expanded by its filesystem into full URLs (see
:mod:`codeprefs.core.inputs` for how a URL is read).
"""

from __future__ import annotations

import glob
import os
from pathlib import Path
from typing import Literal

from codeprefs.core.locations import RemoteLocationError, require_local, url_scheme
from codeprefs.core.storage import StorageError, display_url, is_remote, remote_filesystem, scrubbed


class PatternError(ValueError):
    """A path or glob names nothing, or a URL no filesystem reads; the message quotes it."""


def expand_patterns(patterns: list[str], base_dir: Path, check: Literal["none", "file", "exists"] = "none",
                    noun: str = "", repositories: bool = False) -> list[str]:
    """Expand the globs of ``patterns`` against ``base_dir``, sorted.

    Matches of a relative pattern stay relative, as written, so that row ids do not depend on
    the checkout. ``check``: ``none`` keeps plain paths as written; ``file`` keeps only files and
    requires a plain path to be one; ``exists`` requires a plain path to exist. ``noun`` names
    what the patterns are in error messages. URLs are kept as written for ``repositories`` (git
    remotes); elsewhere an object-storage URL is checked (and expanded) through its filesystem
    (:func:`_expand_url`), never read as a relative path, and a ``file://`` URL is refused.
    """
    label = f"{noun} pattern" if noun else "pattern"
    keep = {"none": lambda path: True, "file": os.path.isfile, "exists": os.path.exists}[check]
    expanded: list[str] = []
    for text in patterns:
        if "\x00" in text:
            raise PatternError(f"{text!r} holds a NUL character")
        if repositories and ("://" in text or text.startswith("git@")):
            expanded.append(text)
            continue
        if is_remote(text):
            expanded.extend(_expand_url(text, check, noun, label))
            continue
        try:
            require_local(text)
        except RemoteLocationError as error:
            raise PatternError(str(error)) from None
        pattern = os.path.expanduser(text)
        absolute = pattern if os.path.isabs(pattern) else str(base_dir / pattern)
        if not glob.has_magic(pattern):
            if check == "file" and not keep(absolute):
                raise PatternError(f"no such file: {text!r}")
            if check == "exists" and not keep(absolute):
                raise PatternError(f"{noun} {text!r} does not exist (looked for {absolute})")
            expanded.append(text)
            continue
        matches = sorted(match for match in glob.glob(absolute) if keep(match))
        if not matches:
            raise PatternError(f"{label} {text!r} matches {'no file' if check == 'file' else 'nothing'}")
        expanded.extend(matches if os.path.isabs(pattern) else [os.path.relpath(m, base_dir) for m in matches])
    return expanded


def _expand_url(text: str, check: Literal["none", "file", "exists"], noun: str, label: str) -> list[str]:
    """A URL pattern as full URLs, sorted: a plain one kept as written (checked as ``check``
    asks), a glob expanded by the filesystem. Errors name the URL without credentials."""
    shown = repr(display_url(text))
    try:
        fs, path = remote_filesystem(text, noun)
        if not glob.has_magic(path):
            if check == "file" and not fs.isfile(path):
                raise PatternError(f"no such file: {shown}")
            if check == "exists" and not fs.exists(path):
                raise PatternError(f"{noun} {shown} does not exist")
            return [text]
        found = fs.glob(path, detail=True)
    except StorageError as error:
        raise PatternError(str(error)) from None
    except PatternError:
        raise
    except Exception as error:  # OSError, or the client's own (botocore's NoCredentialsError...)
        raise PatternError(f"{label} {shown}: cannot list it ({scrubbed(error, text)})") from None
    scheme = url_scheme(text)
    matches = sorted(f"{scheme}://{match.lstrip('/')}" for match, info in found.items()
                     if check != "file" or info.get("type") == "file")
    if not matches:
        raise PatternError(f"{label} {shown} matches {'no file' if check == 'file' else 'nothing'}")
    return matches
