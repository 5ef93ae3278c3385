"""The node-local scratch folder: where clones, fetched remotes and copied inputs of a build live.

A multi-node build has no file system that every node sees (its output may be object storage),
so the copies of git repositories a worker mines, and the objects an export source fetches,
stay on the worker's own disk and never in the output. Each node resolves the folder for itself,
when a task runs there (not on the driver when the build is planned), because each node may have
its own disk layout:

1. ``CODEPREFS_SCRATCH_DIR`` in the worker's environment (set per node, e.g. for ``ray start``);
2. else the manifest's ``ray.scratch_dir``;
3. else ``$XDG_CACHE_HOME/codeprefs`` (an absolute ``XDG_CACHE_HOME`` only, as the XDG spec
   says), else ``~/.cache/codeprefs``.

``~`` is expanded on the node. Inside it::

    clones/<name>-<16 hex>.git      a bare copy of one git source repository (16 hex: sha256 of
                                    its path or URL), with <name>-<16 hex>.git.lock beside it
    remotes/<16 hex>/...            an export source's fetched objects per remote URL template
                                    (see pipelines.sources.remote for what is inside)
    inputs/<32 hex>/<name>          a manifest input read from a URL (an export, dataset,
                                    solutions, benchmark or allowlist file or folder), one copy
                                    per version of the object (see codeprefs.core.inputs)

Several builds on one node share the folder; each clone and each remote repository is changed
only under its own file lock, which is enough because the folder is local to the node (an input
copy is never changed: it is renamed into place whole). Where
clones live never changes a row, so the setting is not part of any fingerprint.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

SCRATCH_ENV = "CODEPREFS_SCRATCH_DIR"
CLONES = "clones"
REMOTES = "remotes"
INPUTS = "inputs"


class ScratchError(ValueError):
    """The scratch folder is not usable; the message names it and where it was set."""


def default_scratch_dir() -> Path:
    """``$XDG_CACHE_HOME/codeprefs`` (when that is absolute), else ``~/.cache/codeprefs``."""
    xdg = os.environ.get("XDG_CACHE_HOME", "")
    base = Path(xdg) if os.path.isabs(xdg) else Path(os.path.expanduser("~")) / ".cache"
    return base / "codeprefs"


def check_configured(written: str) -> str:
    """A manifest's ``ray.scratch_dir`` as written, if usable on any node: absolute or under
    ``~`` (a relative path would name a folder of the driver's manifest directory, which
    another node does not have)."""
    if not written.strip():
        raise ValueError("is empty; leave it out for the default (~/.cache/codeprefs)")
    if not (os.path.isabs(written) or written.startswith("~")):
        raise ValueError(f"{written!r} is relative; give an absolute path or one under ~ (each node "
                         "resolves it on its own disk)")
    return written


def scratch_dir(configured: str | None = None) -> Path:
    """This node's scratch folder (see the module doc), created if missing.

    ``configured``: the manifest's ``ray.scratch_dir``. Raises :class:`ScratchError` naming the
    folder and its origin when it is relative or cannot be made a folder.
    """
    from_env = os.environ.get(SCRATCH_ENV, "").strip()
    if from_env:
        origin, written = SCRATCH_ENV, from_env
    elif configured:
        origin, written = "ray.scratch_dir", configured
    else:
        origin, written = "the default scratch folder", str(default_scratch_dir())
    path = Path(os.path.expanduser(written))
    if not path.is_absolute():
        raise ScratchError(f"{origin}={written} is a relative path: give an absolute path (it is "
                           "resolved on each node)")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise ScratchError(f"{origin}={path} cannot be used as the node's scratch folder for "
                           f"clones: {error.strerror or error}") from None
    return path


def clones_dir(configured: str | None = None) -> Path:
    """Where this node keeps its copies of git source repositories."""
    return scratch_dir(configured) / CLONES


def remotes_dir(configured: str | None, template: str) -> Path:
    """Where this node keeps the objects fetched through one export ``remote`` template.

    Keyed by the template, so two builds whose templates reach different repositories under one
    host and ``owner/name`` (two mirrors on one server) never share objects or failure records.
    """
    digest = hashlib.sha256(template.encode()).hexdigest()[:16]
    return scratch_dir(configured) / REMOTES / digest
