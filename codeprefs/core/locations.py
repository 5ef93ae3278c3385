"""Where codeprefs reads and writes: local paths, and URLs refused where a path is expected.

``Path("s3://bucket/q")`` is the relative folder ``s3:/bucket/q``: taken as a path, a URL would
quietly become a local folder under the current directory (a build "to S3" that exits 0 and
uploads nothing). Until a scheme is supported, every option, argument and manifest key that
names a file or folder refuses a URL with an error naming it. Git repositories are not paths
(``repos`` entries take https, ssh and file URLs) and do not go through here.
"""

from __future__ import annotations

import re
from pathlib import Path

_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")


class RemoteLocationError(ValueError):
    """A URL where only a local path is supported."""


def url_scheme(text: str) -> str | None:
    """The scheme of ``text`` when it is written as a URL (``s3``, ``hf``, ``file``...), else None."""
    match = _SCHEME.match(text.strip())
    return match.group(1).lower() if match else None


def require_local(text: str, what: str = "") -> str:
    """``text`` unchanged when it is a local path; a :class:`RemoteLocationError` naming ``what``
    (the option or key, when the caller's error does not already name it) and ``text`` when it
    is a URL (``file://`` included: write the path itself)."""
    scheme = url_scheme(text)
    if scheme is None:
        return text
    named = f"{what} {text!r}" if what else repr(text)
    if scheme == "file":
        raise RemoteLocationError(f"{named} is a file:// URL; write the local path itself")
    raise RemoteLocationError(
        f"{named} is a URL ({scheme}://), and codeprefs reads and writes local files only "
        f"for now (object storage is not supported yet); give a local path, on a file system every "
        f"node sees for a multi-node build")


def local_path(text: str, what: str = "") -> Path:
    """:func:`require_local`, as a :class:`~pathlib.Path`."""
    return Path(require_local(text, what))


def local_path_argument(text: str) -> str:
    """An ``argparse`` ``type=`` for path options: the text unchanged, or a usage error for a URL."""
    import argparse

    try:
        return require_local(text)
    except RemoteLocationError as error:
        raise argparse.ArgumentTypeError(str(error)) from None
