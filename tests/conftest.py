"""Shared fixtures: real git repositories built in the test, and one local Ray instance."""

from __future__ import annotations

import atexit
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("RAY_DEDUP_LOGS", "0")

# Builds keep clones and fetched remotes in a node-local scratch folder (codeprefs.core.scratch),
# by default under the user's cache: the session gives its own, so no test reads a clone an
# earlier session left there or leaves one behind, and drops a CODEPREFS_SCRATCH_DIR of the
# shell, which would override every manifest's ray.scratch_dir. Set before any Ray worker starts
# (workers inherit this environment).
_SESSION_CACHE = tempfile.mkdtemp(prefix="codeprefs-test-cache-")
os.environ["XDG_CACHE_HOME"] = _SESSION_CACHE
os.environ.pop("CODEPREFS_SCRATCH_DIR", None)
atexit.register(shutil.rmtree, _SESSION_CACHE, ignore_errors=True)

_GIT_ENV = {
    "GIT_AUTHOR_NAME": "Test Author",
    "GIT_AUTHOR_EMAIL": "author@example.com",
    "GIT_COMMITTER_NAME": "Test Author",
    "GIT_COMMITTER_EMAIL": "author@example.com",
    "GIT_CONFIG_GLOBAL": "/dev/null",
    "GIT_CONFIG_NOSYSTEM": "1",
}


class GitRepo:
    """A real git repository with a tiny API for writing history in tests."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._tick = 0
        path.mkdir(parents=True, exist_ok=True)
        self.git("init", "-q", "-b", "main")

    def git(self, *args: str, input: bytes | None = None) -> str:
        self._tick += 1
        stamp = f"{1_600_000_000 + self._tick * 60} +0000"
        env = {**os.environ, **_GIT_ENV, "GIT_AUTHOR_DATE": stamp, "GIT_COMMITTER_DATE": stamp}
        result = subprocess.run(["git", "-C", str(self.path), *args], env=env, input=input,
                                capture_output=True, check=True)
        return result.stdout.decode()

    def write(self, relative: str, content: str | bytes) -> None:
        target = self.path / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            target.write_bytes(content)
        else:
            target.write_text(content, encoding="utf-8")

    def commit(self, message: str, files: dict[str, str | bytes] | None = None,
               remove: tuple[str, ...] = ()) -> str:
        """Write ``files``, delete ``remove``, commit everything; return the new sha."""
        for relative, content in (files or {}).items():
            self.write(relative, content)
        for relative in remove:
            self.git("rm", "-q", relative)
        self.git("add", "-A")
        self.git("commit", "-q", "--allow-empty", "-m", message)
        return self.head()

    def rename(self, old: str, new: str, message: str) -> str:
        self.git("mv", old, new)
        self.git("commit", "-q", "-m", message)
        return self.head()

    def head(self) -> str:
        return self.git("rev-parse", "HEAD").strip()


@pytest.fixture
def make_repo(tmp_path: Path):
    """Factory: ``make_repo("name")`` -> a fresh :class:`GitRepo` under the test's tmp dir."""

    def factory(name: str = "repo") -> GitRepo:
        return GitRepo(tmp_path / name)

    return factory


@pytest.fixture(scope="session")
def ray_local():
    """One local Ray instance for the whole session (builds reuse it instead of starting their own)."""
    import ray

    from codeprefs.core.raycluster import ray_session

    with ray_session(num_cpus=2):
        yield ray
