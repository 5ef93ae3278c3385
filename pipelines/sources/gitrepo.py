"""Read-only access to git repositories through the git CLI.

Everything here treats a repository as untrusted input, and git never starts a program that a
repository's config, the user's global config or the system's config names:

* every git command runs with ``GIT_CONFIG_NOSYSTEM=1`` and ``GIT_CONFIG_GLOBAL=/dev/null``, and
  without the caller's ``GIT_*`` variables (no ``GIT_CONFIG_COUNT``, ``GIT_SSH_COMMAND``, ...),
  so only the config of the repository it runs in (and ``-c`` options) apply;
* a repository named in a manifest is never the repository a command runs in: a local path is
  first copied (a bare repository that fetches its branches, tags and remote-tracking
  branches through ``upload-pack``) and a URL or bundle cloned bare into the node's scratch
  folder (:mod:`codeprefs.core.scratch`), and every later command runs in that copy, whose
  config git wrote. The only
  process that touches the source is ``git upload-pack``, which git keeps safe to run on an
  untrusted repository (it honours ``uploadpack.packObjectsHook`` only from protected config, and
  no lazy fetches: ``GIT_NO_LAZY_FETCH=1``);
* transports are limited to ``file``, ``git``, ``http(s)`` and ``ssh`` (``GIT_ALLOW_PROTOCOL``),
  so no ``ext::`` command can be named by a URL or an ``insteadOf`` rewrite;
* git's ownership check stays on (``safe.directory`` is never overridden).

The ``-c`` options of :data:`SAFE_CONFIG` (hooks, fsmonitor, pager, external diff, signature
display off) only harden the cache copies further.

The history walk is one streaming ``git log --raw -z`` (blob ids included, so file contents are
read by blob id with ``git cat-file --batch`` and no tree is walked twice); it was the fastest
of the approaches measured (see ``benchmarks/bench_mining.py``).
"""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import hashlib
import os
import shutil
import signal
import subprocess
import tempfile
from collections import OrderedDict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, NamedTuple
from urllib.parse import urlsplit

from codeprefs.core.localpaths import resolve_path
from codeprefs.core.redact import redact_text
from codeprefs.pipelines.sources.gitprogress import PROGRESS_INTERVAL_S, TransferProgress
from codeprefs.pipelines.sources.reponame import repository_name

SAFE_CONFIG: tuple[str, ...] = (
    "-c", "core.hooksPath=/dev/null",
    "-c", "core.fsmonitor=false",
    "-c", "core.pager=cat",
    "-c", "diff.external=",
    "-c", "log.showSignature=false",
    "-c", "core.quotePath=false",
)

_GIT_ENV = {
    "GIT_TERMINAL_PROMPT": "0",
    "GIT_CONFIG_NOSYSTEM": "1",
    "GIT_CONFIG_GLOBAL": "/dev/null",
    "GIT_ALLOW_PROTOCOL": "file:git:http:https:ssh",
    "GIT_NO_LAZY_FETCH": "1",
    "GIT_ATTR_NOSYSTEM": "1",
    "GIT_ASKPASS": "",
    "SSH_ASKPASS": "",
    "GIT_OPTIONAL_LOCKS": "0",
    "LC_ALL": "C",
}
REGULAR_FILE_MODES = frozenset({"100644", "100755"})
DEFAULT_CLONE_TIMEOUT_S = 3600.0
LISTING_TIMEOUT_S = 120.0  # ls-remote and bundle list-heads: at most this (or the clone time-out)


class GitError(RuntimeError):
    """A git command failed; the message names the repository and git's own words."""

    def __init__(self, message: str, stderr: str = "") -> None:
        super().__init__(redact_text(message))  # a URL's credentials never reach a message
        self.stderr = redact_text(stderr)  # git's full error output, for callers that classify failures


class GitTimeout(GitError):
    """A git command ran past its time limit and was killed (with every process it started)."""


def git_env() -> dict[str, str]:
    """The environment every git command runs in (see the module doc): the caller's, less its
    ``GIT_*`` variables, with no system or global config and a short list of transports."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    env.update(_GIT_ENV)
    return env


_env = git_env


def run_git(
    args: Iterable[str],
    *,
    git_dir: str | Path | None = None,
    what: str,
    input: bytes | None = None,
    timeout: float | None = 600,
    check: bool = True,
    config: Iterable[str] = (),
    progress: TransferProgress | None = None,
) -> subprocess.CompletedProcess[bytes]:
    """Run one git command; ``what`` names the repository in any error.

    The command runs in a process group of its own: on timeout the whole group is killed (git
    starts helpers such as ``upload-pack`` or ``remote-https`` that would otherwise hold its pipes
    open), and :class:`GitTimeout` is raised. ``config`` adds ``-c key=value`` options;
    ``progress`` logs the command's start, its progress while it runs, and its end.
    """
    args = list(args)
    command = ["git", *SAFE_CONFIG, *config]
    if git_dir is not None:
        command += ["-C", str(git_dir)]
    command += args
    with progress or contextlib.nullcontext():
        process = subprocess.Popen(
            command, stdin=subprocess.PIPE if input is not None else subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=git_env(), start_new_session=True,
        )
        try:
            stdout, stderr = process.communicate(input, timeout=timeout)
        except subprocess.TimeoutExpired:
            _kill_group(process)
            process.communicate()
            received = f", {progress.received_mib():.1f} MiB received" if progress else ""
            raise GitTimeout(f"{what}: `git {' '.join(args[:3])}` made no end within its time limit "
                             f"of {timeout:g} s{received}; it was killed") from None
        except BaseException:
            _kill_group(process)
            process.communicate()
            raise
        result = subprocess.CompletedProcess(command, process.returncode, stdout, stderr)
        if check and result.returncode != 0:
            text = stderr.decode("utf-8", "replace").strip()
            lines = text.splitlines()
            detail = lines[-1] if lines else f"exit code {result.returncode}"
            if "dubious ownership" in text:
                detail = ("git refuses to read a repository owned by another user (its config "
                          "could run programs); copy it or change its owner")
            raise GitError(f"{what}: `git {' '.join(args[:3])}` failed: {detail}", text)
    return result


def _kill_group(process: subprocess.Popen) -> None:
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


# -- naming and resolving repositories ----------------------------------------------------------

RepoKind = Literal["path", "url", "bundle"]


@dataclass(frozen=True)
class RepoSpec:
    """A repository as a manifest names it: a local path, a clone URL, or a git bundle file."""

    name: str  # its public name (pipelines.sources.reponame): rows' `repo`, part of every row's id
    kind: RepoKind
    location: str  # absolute path, or the URL

    @classmethod
    def parse(cls, text: str, base_dir: Path, name: str | None = None) -> RepoSpec:
        """The entry ``text`` of a manifest; ``name``: the public name the manifest gives it."""
        if "://" in text or text.startswith("git@"):
            return cls(name=repository_name(text, "url", text, name), kind="url", location=text)
        path = resolve_path(text, base_dir).resolve()
        kind: RepoKind = "bundle" if path.is_file() and path.suffix == ".bundle" else "path"
        return cls(name=repository_name(text, kind, str(path), name), kind=kind, location=str(path))

    def cache_path(self, cache_dir: Path) -> Path:
        digest = hashlib.sha256(self.location.encode()).hexdigest()[:16]
        stem = Path(urlsplit(self.location).path).stem or "repo"
        return cache_dir / f"{stem}-{digest}.git"


@dataclass(frozen=True)
class ResolvedRepo:
    """A repository pinned to one commit before any work starts (its input fingerprint)."""

    spec: RepoSpec
    rev: str
    sha: str | None  # None: the repository has no commits
    status: Literal["ok", "empty"]


def resolve(spec: RepoSpec, rev: str = "HEAD", timeout: float = LISTING_TIMEOUT_S, *,
            cache_dir: Path | None = None,
            clone_timeout: float = DEFAULT_CLONE_TIMEOUT_S) -> ResolvedRepo:
    """Pin ``rev`` of ``spec`` to a commit sha.

    A URL or bundle is only listed (``ls-remote``, ``bundle list-heads``; at most ``timeout``
    seconds). A local path is copied into ``cache_dir`` first (see :func:`local_copy`; a
    temporary folder without one) and ``rev``, any revision expression, is read in the copy, so
    no git command ever runs in the repository itself. Raises :class:`GitError` (naming the
    repository) when it is missing, not a repository, or corrupt; returns status ``empty`` for a
    repository without commits.
    """
    what = spec.name
    if spec.kind == "path":
        if cache_dir is None:
            with tempfile.TemporaryDirectory(prefix="codeprefs-resolve-") as scratch:
                return resolve(spec, rev, timeout, cache_dir=Path(scratch), clone_timeout=clone_timeout)
        heads = _list_heads(spec, min(timeout, clone_timeout))
        if not heads:
            return ResolvedRepo(spec, rev, None, "empty")
        copy = spec.cache_path(cache_dir)
        with locked_repository(copy):  # builds sharing the copy may move its refs: read them first
            _update_copy(spec, copy, heads.get("HEAD"), clone_timeout, PROGRESS_INTERVAL_S)
            found = run_git(["rev-parse", "--verify", "-q", f"{rev}^{{commit}}"], git_dir=copy,
                            what=what, check=False)
        if found.returncode == 0:
            return ResolvedRepo(spec, rev, found.stdout.decode().strip(), "ok")
        raise GitError(f"{what}: cannot read revision {rev!r} of {spec.location}: the repository is "
                       "corrupt or lacks it")
    heads = _list_heads(spec, min(timeout, clone_timeout))
    if not heads:
        return ResolvedRepo(spec, rev, None, "empty")
    for candidate in (rev, f"refs/heads/{rev}", f"refs/tags/{rev}"):
        if candidate in heads:
            return ResolvedRepo(spec, rev, heads[candidate], "ok")
    if len(rev) == 40 and all(c in "0123456789abcdef" for c in rev):
        return ResolvedRepo(spec, rev, rev, "ok")
    raise GitError(f"{what}: revision {rev!r} not found among {sorted(heads)[:5]}")


def _list_heads(spec: RepoSpec, timeout: float) -> dict[str, str]:
    """ref -> sha of the repository (``HEAD`` included when it points at a commit)."""
    what = spec.name
    if spec.kind == "path":
        if not Path(spec.location).exists():
            raise GitError(f"{what}: no such repository path: {spec.location}")
        listing = run_git(["ls-remote", "--", spec.location], what=what, timeout=timeout, check=False)
        if listing.returncode != 0:
            text = listing.stderr.decode("utf-8", "replace")
            if "dubious ownership" in text:
                raise GitError(f"{what}: git refuses to read {spec.location}: it is owned by another "
                               "user (its config could run programs); copy it or change its owner", text)
            raise GitError(f"{what}: not a git repository: {spec.location}", text)
    elif spec.kind == "bundle":
        listing = run_git(["bundle", "list-heads", spec.location], what=what, timeout=timeout)
    else:
        listing = run_git(["ls-remote", "--", spec.location], what=what, timeout=timeout)
    heads = {}
    for line in listing.stdout.decode().splitlines():
        sha, _, ref = line.partition("\t" if "\t" in line else " ")
        heads[ref.strip()] = sha.strip()
    return heads


@contextlib.contextmanager
def locked_repository(target: Path) -> Iterator[None]:
    """An exclusive lock on one cache repository (threads and processes alike)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target.with_name(target.name + ".lock"), "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _has_commit(git_dir: Path, sha: str, what: str) -> bool:
    return run_git(["cat-file", "-e", f"{sha}^{{commit}}"], git_dir=git_dir, what=what,
                   check=False).returncode == 0


# What the copy of a local repository holds: its branches, tags and remote-tracking branches,
# not every ref (a mirror of a hosted repository has thousands of refs/pull/* refs, some naming
# objects it never received, which would fail the whole copy).
LOCAL_REFS = ("+refs/heads/*:refs/heads/*", "+refs/tags/*:refs/tags/*", "+refs/remotes/*:refs/remotes/*")


def _clone(spec: RepoSpec, target: Path, timeout: float, progress_every: float) -> None:
    """Clone ``spec`` bare into ``target`` (atomically: a staging folder renamed into place)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".clone-", dir=target.parent))
    try:
        try:
            if spec.kind == "path":  # objects through upload-pack (no hardlinks, no config read)
                run_git(["init", "--quiet", "--bare", "--template=", str(staging / "repo.git")],
                        what=spec.name, timeout=60)
                _fetch(spec, staging / "repo.git", list(LOCAL_REFS), timeout, progress_every)
            else:
                run_git(["clone", "--bare", "--no-tags", "--quiet", "--", spec.location,
                         str(staging / "repo.git")], what=spec.name, timeout=timeout,
                        progress=TransferProgress("cloning", spec.location, staging, progress_every))
        except GitTimeout:
            raise
        except GitError as error:
            full = _full_disk(error.stderr)
            if full:  # the cache's file system, not the repository: say so
                raise GitError(f"{spec.name}: cannot copy the repository into {target.parent}: {full}",
                               error.stderr) from None
            if spec.kind != "path":
                raise
            raise GitError(f"{spec.name}: cannot copy the repository at {spec.location}: it is "
                           f"corrupt or unreadable ({str(error).rsplit(': ', 1)[-1]})",
                           error.stderr) from None
        forget_origin(staging / "repo.git", spec.name)
        try:
            os.rename(staging / "repo.git", target)
        except OSError:
            if not (target / "HEAD").exists():  # another task finished the same clone first otherwise
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _full_disk(stderr: str) -> str | None:
    """git's line saying the disk or quota is full, if its error output has one."""
    for line in stderr.splitlines():
        if "No space left on device" in line or "Disk quota exceeded" in line:
            return line.strip().removeprefix("fatal: ").removeprefix("error: ")
    return None


def forget_origin(git_dir: Path, what: str) -> None:
    """Remove the clone's record of where it came from: the URL may hold credentials."""
    run_git(["config", "--file", str(git_dir / "config"), "--remove-section", "remote.origin"],
            what=what, check=False, timeout=60)


def _fetch(spec: RepoSpec, target: Path, wanted: list[str], timeout: float, progress_every: float,
           prune: bool = False) -> None:
    run_git(["fetch", "--quiet", "--no-tags", "--no-write-fetch-head", *(["--prune"] if prune else []),
             "--", spec.location, *wanted],
            git_dir=target, what=spec.name, timeout=timeout, config=FETCH_CONFIG,
            progress=TransferProgress("fetching", spec.location, target / "objects", progress_every))


def local_copy(spec: RepoSpec, cache_dir: Path, head: str | None,
               timeout: float = DEFAULT_CLONE_TIMEOUT_S,
               progress_every: float = PROGRESS_INTERVAL_S) -> Path:
    """The cache's copy of local repository ``spec``, brought up to date with every ref.

    The first call copies its branches, tags and remote-tracking branches into a new bare
    repository (:data:`LOCAL_REFS`); later ones fetch what changed. The
    copy's ``HEAD`` is detached at ``head``, the source's ``HEAD`` commit, so that revisions
    such as ``HEAD~2`` mean what they mean in the source.
    """
    target = spec.cache_path(cache_dir)
    with locked_repository(target):
        _update_copy(spec, target, head, timeout, progress_every)
    return target


def _update_copy(spec: RepoSpec, target: Path, head: str | None, timeout: float,
                 progress_every: float) -> None:
    """:func:`local_copy`'s work; the caller holds the copy's lock."""
    if (target / "HEAD").exists():
        _fetch(spec, target, list(LOCAL_REFS), timeout, progress_every, prune=True)
    else:
        _clone(spec, target, timeout, progress_every)
    if head is not None:
        if not _has_commit(target, head, spec.name):  # a detached HEAD on no branch
            _fetch(spec, target, [head], timeout, progress_every)
        run_git(["update-ref", "--no-deref", "HEAD", head], git_dir=target, what=spec.name)


def materialize(repo: ResolvedRepo, cache_dir: Path, timeout: float = DEFAULT_CLONE_TIMEOUT_S,
                progress_every: float = PROGRESS_INTERVAL_S) -> Path:
    """A bare copy of ``repo`` in ``cache_dir`` that holds ``repo.sha`` (cloned or fetched).

    On a node without the copy (a worker on another machine than the planning driver, or a
    fresh scratch folder) this clones again from the manifest's source and fetches the commit
    planning pinned; a source that no longer has it (rewritten history, a different bundle at
    the same path) is a :class:`GitError` naming the repository and the commit, never a copy
    at another commit. Clones and fetches are killed (with their helper processes) after
    ``timeout`` seconds, raising :class:`GitTimeout` naming the repository, and log progress
    every ``progress_every`` seconds while they run.
    """
    spec = repo.spec
    target = spec.cache_path(cache_dir)
    if (target / "HEAD").exists() and _has_commit(target, repo.sha, spec.name):
        return target
    if spec.kind != "url" and not Path(spec.location).exists():
        raise GitError(f"{spec.name}: {spec.location} does not exist on this node ({os.uname().nodename}), "
                       "which has no copy of it yet: a local repository or bundle must be at the same "
                       "path on every node of the cluster (or name it by URL)")
    with locked_repository(target):
        if not (target / "HEAD").exists():
            _clone(spec, target, timeout, progress_every)
        if not _has_commit(target, repo.sha, spec.name):
            try:
                _fetch(spec, target, [repo.sha or repo.rev], timeout, progress_every)
            except GitTimeout:
                raise
            except GitError as error:
                raise GitError(f"{spec.name}: {spec.location} no longer has commit {repo.sha}, to which "
                               f"{repo.rev!r} was pinned when the build was planned (its history was "
                               "rewritten or the source replaced): run the build again to pin it anew",
                               error.stderr) from None
            if not _has_commit(target, repo.sha, spec.name):
                raise GitError(f"{spec.name}: fetching commit {repo.sha} from {spec.location} did not "
                               "give that commit")
    return target


# -- walking history --------------------------------------------------------------------------


class FileChange(NamedTuple):
    """One ``git log --raw`` entry."""

    status: str  # M, A, D, R, C, T (rename/copy scores stripped)
    old_mode: str
    new_mode: str
    old_blob: str
    new_blob: str
    path: str
    old_path: str | None = None  # for renames and copies


class Commit(NamedTuple):
    sha: str
    parents: tuple[str, ...]
    unix_time: int
    message: str
    changes: tuple[FileChange, ...] = ()


_LOG_FORMAT = "%x1e%H%x1f%P%x1f%at%x1f%B%x1f"


def _nul_tokens(stream, chunk_size: int = 1 << 20) -> Iterator[bytes]:
    pending = b""
    while chunk := stream.read(chunk_size):
        pieces = (pending + chunk).split(b"\0")
        pending = pieces.pop()
        yield from pieces
    if pending:
        yield pending


def parse_log(tokens: Iterable[bytes]) -> Iterator[Commit]:
    """Parse the NUL-separated output of ``git log --raw -z --format=_LOG_FORMAT``."""
    header: tuple[str, tuple[str, ...], int, str] | None = None
    changes: list[FileChange] = []
    raw: list[str] = []
    paths_wanted = 0
    first_path = ""
    for token in tokens:
        if paths_wanted:
            path = token.decode("utf-8", "replace")
            if paths_wanted == 2:  # rename or copy: the old path comes first
                first_path = path
            else:
                old_mode, new_mode, old_blob, new_blob, status = raw
                if first_path:
                    changes.append(FileChange(status[0], old_mode, new_mode, old_blob, new_blob,
                                              path, first_path))
                    first_path = ""
                else:
                    changes.append(FileChange(status[0], old_mode, new_mode, old_blob, new_blob, path))
            paths_wanted -= 1
            continue
        if token[:1] == b"\n":
            token = token.lstrip(b"\n")
        lead = token[:1]
        if lead == b"\x1e":
            if header is not None:
                yield Commit(*header, tuple(changes))
            sha, parents, when, message = token[1:].split(b"\x1f", 3)
            header = (
                sha.decode(),
                tuple(parents.decode().split()),
                int(when or 0),
                message.removesuffix(b"\x1f").decode("utf-8", "replace"),
            )
            changes = []
        elif lead == b":":
            raw = token[1:].decode().split(" ")
            paths_wanted = 2 if raw[4][:1] in ("R", "C") else 1
        elif token:
            raise GitError(f"unexpected git log output near {token[:60]!r}")
    if header is not None:
        yield Commit(*header, tuple(changes))


def iter_commits(git_dir: Path, sha: str, what: str, max_count: int | None = None) -> Iterator[Commit]:
    """Every commit reachable from ``sha``, newest first, with its raw file changes.

    Merge commits are listed without changes; renames are detected (``-M``) so that a renamed
    file is reported as ``R``, never as a modification.
    """
    args = ["log", "-M", "--raw", "--no-abbrev", "-z", "--encoding=UTF-8", "--no-ext-diff",
            "--no-textconv", "--diff-merges=off", "--no-color", f"--format={_LOG_FORMAT}"]
    if max_count:
        args.append(f"--max-count={max_count}")
    command = ["git", *SAFE_CONFIG, "-C", str(git_dir), *args, sha, "--"]
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          stdin=subprocess.DEVNULL, env=_env()) as process:
        assert process.stdout is not None and process.stderr is not None
        yield from parse_log(_nul_tokens(process.stdout))
        error = process.stderr.read()
        if process.wait() != 0:
            lines = error.decode("utf-8", "replace").strip().splitlines()
            raise GitError(f"{what}: `git log` failed: {lines[-1] if lines else process.returncode}")


def list_files(git_dir: Path, sha: str, what: str) -> list[str]:
    """Every file path in the tree of commit ``sha``."""
    out = run_git(["ls-tree", "-r", "-z", "--name-only", sha], git_dir=git_dir, what=what).stdout
    return [p.decode("utf-8", "replace") for p in out.split(b"\0") if p]


# -- commits from a remote ----------------------------------------------------------------------

# Fetches into a cache repository never run maintenance: a background ``gc --auto`` would outlive
# the command's time limit, and concurrent fetches would race on it.
FETCH_CONFIG: tuple[str, ...] = (
    "-c", "gc.auto=0",
    "-c", "maintenance.auto=false",
    "-c", "fetch.writeCommitGraph=false",
    "-c", "protocol.version=2",
)


def init_bare(target: Path, what: str) -> Path:
    """An empty bare repository at ``target``, created atomically (safe when tasks race)."""
    if (target / "HEAD").exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".init-", dir=target.parent))
    try:
        run_git(["init", "--quiet", "--bare", "--template=", str(staging / "repo.git")], what=what,
                timeout=60)
        try:
            os.rename(staging / "repo.git", target)
        except OSError:
            if not (target / "HEAD").exists():
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def fetch_commits(git_dir: Path, url: str, shas: list[str], *, what: str, depth: int = 2,
                  timeout: float = 120) -> None:
    """Fetch commits ``shas`` and ``depth - 1`` ancestors of each from ``url`` into ``git_dir``.

    One command for all of them (it fails as a whole if the remote lacks any). No ref and no
    FETCH_HEAD are written (the objects are the cache). Raises :class:`GitTimeout` past
    ``timeout`` seconds and :class:`GitError` (with git's stderr) when the remote refuses.
    """
    run_git(["fetch", "--quiet", "--no-tags", "--no-write-fetch-head", "--no-recurse-submodules",
             f"--depth={depth}", "--", url, *shas],
            git_dir=git_dir, what=what, timeout=timeout, config=FETCH_CONFIG)


def changed_file(git_dir: Path, parent: str, sha: str, path: str, what: str) -> FileChange | None:
    """How commit ``sha`` changed ``path`` against ``parent``; ``None`` if it did not.

    The parent is named explicitly: in a shallow repository a commit fetched as a boundary has
    no visible parents. Raises :class:`GitError` when either commit is not in ``git_dir``. The
    path is matched literally (no pathspec magic).
    """
    out = run_git(["--literal-pathspecs", "diff-tree", "-r", "-z", "--raw", "--no-abbrev",
                   "--no-renames", "--no-ext-diff", "--no-textconv", parent, sha, "--", path],
                  git_dir=git_dir, what=what, timeout=120).stdout
    tokens = out.split(b"\0")
    for index in range(0, len(tokens) - 1, 2):
        raw, name = tokens[index], tokens[index + 1].decode("utf-8", "replace")
        if not raw.startswith(b":") or name != path:
            continue
        old_mode, new_mode, old_blob, new_blob, status = raw[1:].decode().split(" ")
        return FileChange(status[0], old_mode, new_mode, old_blob, new_blob, name)
    return None


# -- reading blobs --------------------------------------------------------------------------------


class BlobReader:
    """A long-lived ``git cat-file --batch-command --buffer`` on one repository.

    Commands go out in chunks small enough to fit a pipe buffer, each closed by ``flush``, so
    writing never waits on unread output and one process serves every batch of a worker.
    """

    _CHUNK = 400  # commands per flush: ~19 KB of input, well under a 64 KB pipe buffer

    def __init__(self, git_dir: Path, what: str) -> None:
        self.what = what
        self._process = subprocess.Popen(
            ["git", *SAFE_CONFIG, "-C", str(git_dir), "cat-file", "--batch-command", "--buffer"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=_env(),
        )

    def _ask(self, verb: str, blobs: list[str]) -> Iterator[tuple[str, int | None, bytes | None]]:
        process = self._process
        assert process.stdin is not None and process.stdout is not None
        for start in range(0, len(blobs), self._CHUNK):
            chunk = blobs[start : start + self._CHUNK]
            try:
                process.stdin.write("".join(f"{verb} {blob}\n" for blob in chunk).encode() + b"flush\n")
                process.stdin.flush()
            except BrokenPipeError:
                raise GitError(f"{self.what}: git cat-file exited unexpectedly") from None
            for blob in chunk:
                header = process.stdout.readline()
                if not header:
                    raise GitError(f"{self.what}: git cat-file exited unexpectedly")
                fields = header.split()
                if len(fields) != 3 or fields[1] != b"blob":
                    yield blob, None, None  # "<sha> missing", or not a blob
                    continue
                size = int(fields[2])
                data = None
                if verb == "contents":
                    data = process.stdout.read(size)
                    process.stdout.read(1)  # the newline after the content
                yield blob, size, data

    def sizes(self, blobs: Iterable[str]) -> dict[str, int | None]:
        """The size of each blob, ``None`` for a missing one."""
        return {blob: size for blob, size, _ in self._ask("info", list(dict.fromkeys(blobs)))}

    def contents(self, blobs: Iterable[str]) -> dict[str, bytes]:
        """The contents of each blob that exists."""
        return {blob: data for blob, _, data in self._ask("contents", list(dict.fromkeys(blobs)))
                if data is not None}

    def close(self) -> None:
        if self._process.poll() is None:
            self._process.stdin.close()  # type: ignore[union-attr]
            try:
                self._process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._process.kill()
        self._process.stdout.close()  # type: ignore[union-attr]


_readers: OrderedDict[str, BlobReader] = OrderedDict()
_MAX_READERS = 16


def blob_reader(git_dir: Path, what: str) -> BlobReader:
    """This process's reader for ``git_dir`` (the least recently used of 16 is closed)."""
    key = str(git_dir)
    reader = _readers.pop(key, None)
    if reader is None or reader._process.poll() is not None:
        reader = BlobReader(git_dir, what)
    _readers[key] = reader
    while len(_readers) > _MAX_READERS:
        _readers.popitem(last=False)[1].close()
    return reader


@atexit.register
def _close_readers() -> None:
    while _readers:
        _readers.popitem()[1].close()


def blob_sizes(git_dir: Path, blobs: Iterable[str], what: str) -> dict[str, int | None]:
    """The size of each blob, ``None`` for a missing one."""
    return blob_reader(git_dir, what).sizes(blobs)


def read_blobs(git_dir: Path, blobs: Iterable[str], what: str) -> dict[str, bytes]:
    """The contents of each blob that exists."""
    return blob_reader(git_dir, what).contents(blobs)
