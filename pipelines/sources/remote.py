"""Commits fetched from remote repositories into a local cache, each at most once.

The cache is a folder of bare repositories, one per remote repository, in the scratch folder of
the node the fetching task runs on (``<root>``: :func:`codeprefs.core.scratch.remotes_dir`, one
per ``remote`` template; node-local, so a task on another node fetches again)::

    <root>/<host>/<owner>/<name>.git           every object fetched from that repository
    <root>/failures/<host>/<owner>/<name>/     permanent failures: repo.json (the repository is
                                               gone) and <sha>.json (it lacks the commit)
    <root>/fetch.log                           one line per fetch command run

The object store is the cache: a commit whose object and first parent's object are present is
never fetched again, and a recorded permanent failure is never retried, so a rerun (or a
resumed run) of the same export does no network work for what it already has.

Getting one commit (:meth:`Retriever.retrieve`) tries the repositories that hold it in order:
first every repository's cache, then the network, one repository at a time, at most
``max_repo_tries`` of them. A fetch is ``git fetch --depth=2 <url> <sha>`` (the commit and its
parent), run under a time limit that kills it, in a per-repository file lock (concurrent fetches
into one repository would race on its ``shallow`` file) and in one of ``max_concurrent`` slots of
the remote's host. Transient failures (time-outs, network errors) are retried with exponential
backoff; permanent ones (``repo_vanished``, ``commit_not_found``) are recorded and not retried.
:meth:`Retriever.prefetch` first asks one repository for many commits in one command (one
connection and one pack instead of one per commit); whatever it did not get goes the way above.

Host slots: :class:`HostSlots` bounds the fetches of one process; :class:`ClusterHostSlots`
bounds them across a Ray cluster through one small actor that leases slots (a lease expires
after the fetch time limit, so a worker that dies holding one cannot starve the others).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol
from urllib.parse import urlsplit

from codeprefs.core.files import write_text_atomic
from codeprefs.pipelines.sources.gitrepo import GitError, GitTimeout, fetch_commits, init_bare, locked_repository, run_git

REPO_VANISHED = "repo_vanished"
COMMIT_NOT_FOUND = "commit_not_found"
FETCH_TIMEOUT = "fetch_timeout"
FETCH_FAILED = "fetch_failed"
PERMANENT_FAILURES = frozenset({REPO_VANISHED, COMMIT_NOT_FOUND})
# When every repository of a commit failed, the reason reported is the most transient one:
# a rerun may still succeed where it says so.
_REPORT_ORDER = (FETCH_TIMEOUT, FETCH_FAILED, COMMIT_NOT_FOUND, REPO_VANISHED)

# git's words (lower-cased) for a repository that is gone or was never public.
_VANISHED = (
    "repository not found", "does not appear to be a git repository", "could not read username",
    "repository not exported", "authentication failed", "returned error: 404",
    "returned error: 410", "returned error: 451", "no such repository",
)
# ... and for a repository that does not have the commit.
_NOT_FOUND = (
    "not our ref", "unadvertised object", "couldn't find remote ref", "no such remote ref",
    "not a valid object", "upload-pack: not our",
)


def classify_failure(stderr: str) -> str:
    """``repo_vanished``, ``commit_not_found`` or (anything else) ``fetch_failed``."""
    text = stderr.lower()
    if any(words in text for words in _NOT_FOUND):
        return COMMIT_NOT_FOUND
    if any(words in text for words in _VANISHED):
        return REPO_VANISHED
    return FETCH_FAILED


def remote_url(template: str, repo: str) -> str:
    return template.format(repo=repo)


def host_of(url: str) -> str:
    """The host a URL reaches (``file`` for local paths), the unit of concurrency limits."""
    scp = re.match(r"^[^/@:]+@([^:/]+):", url)  # git@github.com:owner/name.git
    if scp:
        return scp.group(1).lower()
    parts = urlsplit(url)
    if parts.hostname:
        return parts.hostname.lower() + (f":{parts.port}" if parts.port else "")
    return parts.scheme or "file"


@dataclass(frozen=True)
class FetchSettings:
    remote: str  # URL template with {repo}
    timeout_s: float = 120
    retries: int = 2
    backoff_s: float = 1.0
    max_repo_tries: int = 3
    max_concurrent: int = 8  # per host
    batch: int = 64  # commits asked of one repository in one fetch (1: one fetch per commit)


@dataclass(frozen=True)
class Located:
    """A commit found in a cache repository, with its first parent (``None``: a root commit)."""

    git_dir: Path
    repo: str
    parent: str | None


@dataclass(frozen=True)
class Retrieved:
    """The outcome for one commit: where it is, or why it could not be had."""

    located: Located | None
    reason: str | None = None  # a drop reason when ``located`` is None
    fetches: int = 0  # fetch commands run for it


class RemoteCache:
    """The cache folder (see the module doc); paths are lower-cased ``owner/name``."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    def git_dir(self, host: str, repo: str) -> Path:
        return self.root / _safe(host) / f"{repo.lower()}.git"

    def _failure_dir(self, host: str, repo: str) -> Path:
        return self.root / "failures" / _safe(host) / repo.lower()

    def known_failure(self, host: str, repo: str, sha: str) -> str | None:
        """The permanent failure recorded for (repository, commit), if any."""
        folder = self._failure_dir(host, repo)
        for name in ("repo.json", f"{sha}.json"):
            try:
                return json.loads((folder / name).read_text(encoding="utf-8"))["reason"]
            except (OSError, ValueError, KeyError):
                continue
        return None

    def remember_failure(self, host: str, repo: str, sha: str, reason: str, detail: str) -> None:
        folder = self._failure_dir(host, repo)
        folder.mkdir(parents=True, exist_ok=True)
        name = "repo.json" if reason == REPO_VANISHED else f"{sha}.json"
        record = {"repo": repo, "host": host, "commit": sha, "reason": reason,
                  "detail": detail[-500:], "recorded_at": int(time.time())}
        write_text_atomic(folder / name, json.dumps(record) + "\n")

    def log_fetch(self, repo: str, sha: str, outcome: str) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        line = f"{int(time.time())}\t{repo}\t{sha}\t{outcome}\n".encode()
        descriptor = os.open(self.root / "fetch.log", os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(descriptor, line)  # one small O_APPEND write: lines never interleave
        finally:
            os.close(descriptor)

    def locked(self, git_dir: Path) -> contextlib.AbstractContextManager[None]:
        """An exclusive lock on one cache repository (processes and threads alike)."""
        return locked_repository(git_dir)


def _safe(host: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", host)


def locate(git_dir: Path, repo: str, sha: str) -> Located | None:
    """The commit in ``git_dir`` if both it and its first parent are there, else ``None``.

    Reads the raw commit object, because a later shallow fetch may mark this commit as a
    shallow boundary, which hides its parent from ancestry expressions such as ``sha~1``.
    """
    if not (git_dir / "HEAD").exists():
        return None
    commit = run_git(["cat-file", "commit", sha], git_dir=git_dir, what=repo, check=False, timeout=60)
    if commit.returncode != 0:
        return None
    parent = None
    for line in commit.stdout.split(b"\n"):
        if not line:
            break  # end of the header
        if line.startswith(b"parent "):
            parent = line[7:].decode()
            break
    if parent is not None:
        found = run_git(["cat-file", "-e", parent], git_dir=git_dir, what=repo, check=False, timeout=60)
        if found.returncode != 0:
            return None
    return Located(git_dir, repo, parent)


class Slots(Protocol):
    """Bounds concurrent fetches per host: ``with slots.slot(host): fetch``."""

    def slot(self, host: str) -> contextlib.AbstractContextManager[None]: ...


class HostSlots:
    """At most ``limit`` concurrent fetches per host within this process."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._lock = threading.Lock()
        self._semaphores: dict[str, threading.Semaphore] = {}

    @contextlib.contextmanager
    def slot(self, host: str) -> Iterator[None]:
        with self._lock:
            semaphore = self._semaphores.setdefault(host, threading.Semaphore(self.limit))
        with semaphore:
            yield


class SlotLeases:
    """The state of :class:`ClusterHostSlots`' actor: leased slots per host, with deadlines."""

    def __init__(self, limit: int, lease_s: float) -> None:
        self.limit = limit
        self.lease_s = lease_s
        self.holders: dict[str, dict[str, float]] = {}
        self.peak: dict[str, int] = {}

    def acquire(self, host: str, token: str) -> bool:
        now = time.monotonic()
        held = self.holders.setdefault(host, {})
        for holder, deadline in list(held.items()):
            if deadline < now:  # its worker died holding it
                del held[holder]
        if len(held) >= self.limit:
            return False
        held[token] = now + self.lease_s
        self.peak[host] = max(self.peak.get(host, 0), len(held))
        return True

    def release(self, host: str, token: str) -> None:
        self.holders.get(host, {}).pop(token, None)

    def peaks(self) -> dict[str, int]:
        return dict(self.peak)


class ClusterHostSlots:
    """At most ``limit`` concurrent fetches per host across a Ray cluster (see the module doc).

    Created by the driver, which owns the actor; the object pickles to the workers with its
    actor handle.
    """

    def __init__(self, limit: int, lease_s: float) -> None:
        import ray

        self.actor = ray.remote(num_cpus=0)(SlotLeases).remote(limit, lease_s)

    @contextlib.contextmanager
    def slot(self, host: str) -> Iterator[None]:
        import ray

        token = uuid.uuid4().hex
        delay = 0.01
        while not ray.get(self.actor.acquire.remote(host, token)):
            time.sleep(delay)
            delay = min(delay * 2, 0.25)
        try:
            yield
        finally:
            self.actor.release.remote(host, token)

    def peaks(self) -> dict[str, int]:
        import ray

        return ray.get(self.actor.peaks.remote())


class Retriever:
    """Get commits into the cache (see the module doc); safe to use from many threads."""

    def __init__(self, settings: FetchSettings, cache: RemoteCache, slots: Slots) -> None:
        self.settings = settings
        self.cache = cache
        self.slots = slots

    def _targets(self, repos: list[str]) -> list[tuple[str, str]]:
        """(repository, host) of the first ``max_repo_tries`` repositories."""
        return [(repo, host_of(remote_url(self.settings.remote, repo)))
                for repo in repos[: self.settings.max_repo_tries]]

    def cached(self, sha: str, repos: list[str]) -> Located | None:
        """Commit ``sha`` from the cache of any of ``repos``, without network work."""
        for repo, host in self._targets(repos):
            located = locate(self.cache.git_dir(host, repo), repo, sha)
            if located is not None:
                return located
        return None

    def first_to_try(self, sha: str, repos: list[str]) -> str | None:
        """The repository a fetch of ``sha`` would try first (none recorded as failing for it)."""
        for repo, host in self._targets(repos):
            if self.cache.known_failure(host, repo, sha) is None:
                return repo
        return None

    def prefetch(self, repo: str, shas: list[str]) -> None:
        """Fetch many commits of one repository with one command per ``batch`` of them.

        Best effort and never retried: :meth:`retrieve` then finds the commits this fetched in
        the cache and fetches the others one by one (one missing commit fails a whole batch).
        A repository found gone is recorded, so that no single fetch tries it again.
        """
        host = host_of(remote_url(self.settings.remote, repo))
        url = remote_url(self.settings.remote, repo)
        git_dir = init_bare(self.cache.git_dir(host, repo), repo)
        batch = max(1, self.settings.batch)
        for start in range(0, len(shas), batch):
            chunk = shas[start : start + batch]
            with self.cache.locked(git_dir):
                try:
                    with self.slots.slot(host):
                        fetch_commits(git_dir, url, chunk, what=repo, timeout=self.settings.timeout_s)
                    outcome, detail = "ok", ""
                except GitTimeout as error:
                    outcome, detail = FETCH_TIMEOUT, str(error)
                except GitError as error:
                    outcome, detail = classify_failure(error.stderr or str(error)), str(error)
                self.cache.log_fetch(repo, ",".join(chunk), f"batch:{outcome}")
            if outcome == REPO_VANISHED:
                self.cache.remember_failure(host, repo, chunk[0], outcome, detail)
                return
            if outcome == FETCH_TIMEOUT:  # a slow remote: leave the rest to retrieve()
                return

    def retrieve(self, sha: str, repos: list[str]) -> Retrieved:
        """Find or fetch commit ``sha`` from the first of ``repos`` (in order) that has it."""
        located = self.cached(sha, repos)  # a cache that has it already: no network at all
        if located is not None:
            return Retrieved(located)
        reasons: list[str] = []
        fetches = 0
        for repo, host in self._targets(repos):
            known = self.cache.known_failure(host, repo, sha)
            if known is not None:
                reasons.append(known)
                continue
            located, reason, attempts = self._fetch(repo, host, sha)
            fetches += attempts
            if located is not None:
                return Retrieved(located, None, fetches)
            reasons.append(reason)
        reason = min(reasons, key=_REPORT_ORDER.index) if reasons else REPO_VANISHED
        return Retrieved(None, reason, fetches)

    def _fetch(self, repo: str, host: str, sha: str) -> tuple[Located | None, str, int]:
        settings = self.settings
        url = remote_url(settings.remote, repo)
        git_dir = init_bare(self.cache.git_dir(host, repo), repo)
        attempts = 0
        with self.cache.locked(git_dir):
            located = locate(git_dir, repo, sha)  # another task may have fetched it meanwhile
            if located is not None:
                return located, "", 0
            reason, detail = FETCH_FAILED, ""
            for attempt in range(settings.retries + 1):
                if attempt:
                    time.sleep(settings.backoff_s * 2 ** (attempt - 1))
                attempts += 1
                try:
                    with self.slots.slot(host):
                        fetch_commits(git_dir, url, [sha], what=repo, timeout=settings.timeout_s)
                except GitTimeout as error:
                    reason, detail = FETCH_TIMEOUT, str(error)
                except GitError as error:
                    reason, detail = classify_failure(error.stderr or str(error)), str(error)
                else:
                    located = locate(git_dir, repo, sha)
                    reason = "ok" if located is not None else COMMIT_NOT_FOUND
                    detail = "the fetch succeeded but the commit or its parent is missing"
                self.cache.log_fetch(repo, sha, reason)
                if located is not None:
                    return located, "", attempts
                if reason in PERMANENT_FAILURES:
                    self.cache.remember_failure(host, repo, sha, reason, detail)
                    return None, reason, attempts
        return None, reason, attempts

