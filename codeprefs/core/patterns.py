"""Paths and globs as a manifest writes them, expanded against the manifest's folder."""

from __future__ import annotations

import glob
import os
from pathlib import Path
from typing import Literal

from codeprefs.core.locations import RemoteLocationError, require_local


class PatternError(ValueError):
    """A path or glob names nothing, or is not a local path; the message quotes it."""


def expand_patterns(patterns: list[str], base_dir: Path, check: Literal["none", "file", "exists"] = "none",
                    noun: str = "", repositories: bool = False) -> list[str]:
    """Expand the globs of ``patterns`` against ``base_dir``, sorted.

    Matches of a relative pattern stay relative, as written, so that row ids do not depend on
    the checkout. ``check``: ``none`` keeps plain paths as written; ``file`` keeps only files and
    requires a plain path to be one; ``exists`` requires a plain path to exist. ``noun`` names
    what the patterns are in error messages. URLs are kept as written for ``repositories`` (git
    remotes) and refused everywhere else, never read as relative paths.
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
