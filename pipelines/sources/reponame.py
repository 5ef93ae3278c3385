"""The public name of a mined repository: what rows carry in ``repo`` and the card lists.

Never a local path (it would publish the user's directory layout) and never a credential:

* the ``name`` the manifest gives the entry (``repos: [{path: ..., name: owner/repo}]``);
* a URL repository: the URL without credentials (:func:`codeprefs.core.redact.public_url`);
* a local repository (a path or a ``file://`` URL): its ``remote.origin.url`` when that is a
  network URL (credentials removed), else its folder name without ``.git``;
* a bundle: its file name without ``.bundle``.

The origin URL is read from the repository's config file as a plain file (``git config --file``
without includes, no system or global config), so nothing the repository configures runs.
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path
from urllib.parse import unquote, urlsplit

from codeprefs.core.redact import public_url

_SCP = re.compile(r"^[^/@:\s]+@[^/:\s]+:")  # git@github.com:owner/name.git
_NETWORK_SCHEMES = frozenset({"http", "https", "ssh", "git", "git+ssh", "ssh+git", "ftp", "ftps"})


def is_local_url(text: str) -> bool:
    """A ``file://`` URL: a local repository written as a URL."""
    return text.lower().startswith("file://")


def local_path_of(text: str) -> str:
    """The path of a ``file://`` URL."""
    return unquote(urlsplit(text).path)


def _config_file(repository: Path) -> Path | None:
    dot_git = repository / ".git"
    if dot_git.is_dir():
        return dot_git / "config"
    if dot_git.is_file():  # a linked work tree or submodule: "gitdir: <path>"
        pointer = dot_git.read_text(encoding="utf-8", errors="replace").strip()
        if pointer.startswith("gitdir:"):
            target = Path(pointer[7:].strip())
            target = target if target.is_absolute() else repository / target
            common = target / "commondir"  # a linked work tree shares its main repository's config
            if common.is_file():
                target = target / common.read_text(encoding="utf-8").strip()
            return target / "config"
        return None
    if (repository / "HEAD").is_file() and (repository / "config").is_file():  # bare
        return repository / "config"
    return None


def origin_url(repository: str | Path) -> str | None:
    """``remote.origin.url`` of a local repository, read from its config file alone."""
    config = _config_file(Path(repository))
    if config is None or not config.is_file():
        return None
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    env.update(GIT_CONFIG_NOSYSTEM="1", GIT_CONFIG_GLOBAL="/dev/null", LC_ALL="C")
    try:
        found = subprocess.run(["git", "config", "--file", str(config), "--no-includes", "--get",
                                "remote.origin.url"], capture_output=True, text=True, env=env,
                               stdin=subprocess.DEVNULL, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return found.stdout.strip() or None if found.returncode == 0 else None


def is_network_url(text: str) -> bool:
    """An address another machine can reach (not a path, not ``file://``)."""
    if _SCP.match(text):
        return True
    scheme = text.partition("://")[0].lower() if "://" in text else ""
    return scheme in _NETWORK_SCHEMES


def folder_name(path: str | Path) -> str:
    """The repository's folder name without ``.git`` (the parent's for a ``.git`` folder)."""
    path = Path(os.path.normpath(str(path)))
    name = path.parent.name if path.name == ".git" else path.name
    return name.removesuffix(".git") or "repo"


def repository_name(written: str, kind: str, location: str, given: str | None = None) -> str:
    """The public name of a repository (see the module doc).

    ``written``: the entry as the manifest writes it; ``kind``: ``path``, ``url`` or ``bundle``;
    ``location``: the resolved path or the URL; ``given``: the manifest's ``name`` for it.
    """
    if given:
        return given
    if kind == "bundle":
        return Path(location).name.removesuffix(".bundle")
    if kind == "url" and not is_local_url(location):
        return public_url(written)
    path = local_path_of(location) if kind == "url" else location
    origin = origin_url(path)
    if origin and is_network_url(origin):
        return public_url(origin)
    return folder_name(path)
