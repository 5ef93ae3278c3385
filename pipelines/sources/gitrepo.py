"""Read-only access to git repositories through the git CLI.

Everything here treats a repository as untrusted input: git runs with hooks pointed at
/dev/null, fsmonitor off, no pager, no external diff or textconv drivers, and no terminal
prompts. Remote and bundle repositories are cloned bare (never a work tree) into a cache.

The history walk is one streaming ``git log --raw -z`` (blob ids included, so file contents are
read by blob id with ``git cat-file --batch`` and no tree is walked twice); it was the fastest
of the approaches measured (see ``benchmarks/bench_mining.py``).
"""

from __future__ import annotations

import atexit
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

from codeprefs.redact import redact_text
from pipelines.sources.reponame import repository_name

SAFE_CONFIG: tuple[str, ...] = (
    "-c", "core.hooksPath=/dev/null",
    "-c", "core.fsmonitor=false",
    "-c", "safe.directory=*",
    "-c", "core.pager=cat",
    "-c", "diff.external=",
    "-c", "protocol.file.allow=always",
    "-c", "core.quotePath=false",
)

_GIT_ENV = {
    "GIT_TERMINAL_PROMPT": "0",
    "GIT_CONFIG_NOSYSTEM": "1",
    "GIT_ASKPASS": "",
    "SSH_ASKPASS": "",
    "GIT_OPTIONAL_LOCKS": "0",
    "LC_ALL": "C",
}
REGULAR_FILE_MODES = frozenset({"100644", "100755"})


class GitError(RuntimeError):
    """A git command failed; the message names the repository and git's own words."""

    def __init__(self, message: str, stderr: str = "") -> None:
        super().__init__(redact_text(message))  # a URL's credentials never reach a message
        self.stderr = redact_text(stderr)  # git's full error output, for callers that classify failures


class GitTimeout(GitError):
    """A git command ran past its time limit and was killed (with every process it started)."""


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    env.update(_GIT_ENV)
    env["GIT_CONFIG_GLOBAL"] = "/dev/null"
    return env


def run_git(
    args: Iterable[str],
    *,
    git_dir: str | Path | None = None,
    what: str,
    input: bytes | None = None,
    timeout: float | None = 600,
    check: bool = True,
    config: Iterable[str] = (),
) -> subprocess.CompletedProcess[bytes]:
    """Run one git command; ``what`` names the repository in any error.

    The command runs in a process group of its own: on timeout the whole group is killed (git
    starts helpers such as ``upload-pack`` or ``remote-https`` that would otherwise hold its pipes
    open), and :class:`GitTimeout` is raised. ``config`` adds ``-c key=value`` options.
    """
    args = list(args)
    command = ["git", *SAFE_CONFIG, *config]
    if git_dir is not None:
        command += ["-C", str(git_dir)]
    command += args
    process = subprocess.Popen(
        command, stdin=subprocess.PIPE if input is not None else subprocess.DEVNULL,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=_env(), start_new_session=True,
    )
    try:
        stdout, stderr = process.communicate(input, timeout=timeout)
    except subprocess.TimeoutExpired:
        _kill_group(process)
        process.communicate()
        raise GitTimeout(f"{what}: `git {' '.join(args[:3])}` timed out after {timeout}s") from None
    except BaseException:
        _kill_group(process)
        process.communicate()
        raise
    result = subprocess.CompletedProcess(command, process.returncode, stdout, stderr)
    if check and result.returncode != 0:
        text = stderr.decode("utf-8", "replace").strip()
        lines = text.splitlines()
        detail = lines[-1] if lines else f"exit code {result.returncode}"
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
        path = Path(os.path.expanduser(text))
        if not path.is_absolute():
            path = base_dir / path
        path = path.resolve()
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


def resolve(spec: RepoSpec, rev: str = "HEAD", timeout: float = 120) -> ResolvedRepo:
    """Pin ``rev`` of ``spec`` to a commit sha without cloning anything.

    Raises :class:`GitError` (naming the repository) when it is missing, not a repository, or
    corrupt; returns status ``empty`` for a repository without commits.
    """
    what = spec.name
    if spec.kind == "path":
        if not Path(spec.location).exists():
            raise GitError(f"{what}: no such repository path: {spec.location}")
        probe = run_git(["rev-parse", "--git-dir"], git_dir=spec.location, what=what, check=False)
        if probe.returncode != 0:
            raise GitError(f"{what}: not a git repository: {spec.location}")
        found = run_git(["rev-parse", "--verify", "-q", f"{rev}^{{commit}}"], git_dir=spec.location,
                        what=what, check=False)
        if found.returncode == 0:
            return ResolvedRepo(spec, rev, found.stdout.decode().strip(), "ok")
        refs = run_git(["for-each-ref", "--count=1"], git_dir=spec.location, what=what, check=False)
        if refs.returncode == 0 and not refs.stdout.strip():
            return ResolvedRepo(spec, rev, None, "empty")
        raise GitError(f"{what}: cannot read revision {rev!r} of {spec.location}: the repository is "
                       "corrupt or lacks it")
    if spec.kind == "bundle":
        listing = run_git(["bundle", "list-heads", spec.location], what=what, timeout=timeout)
    else:
        listing = run_git(["ls-remote", "--", spec.location], what=what, timeout=timeout)
    heads = {}
    for line in listing.stdout.decode().splitlines():
        sha, _, ref = line.partition("\t" if "\t" in line else " ")
        heads[ref.strip()] = sha.strip()
    if not heads:
        return ResolvedRepo(spec, rev, None, "empty")
    for candidate in (rev, f"refs/heads/{rev}", f"refs/tags/{rev}"):
        if candidate in heads:
            return ResolvedRepo(spec, rev, heads[candidate], "ok")
    if len(rev) == 40 and all(c in "0123456789abcdef" for c in rev):
        return ResolvedRepo(spec, rev, rev, "ok")
    raise GitError(f"{what}: revision {rev!r} not found among {sorted(heads)[:5]}")


def materialize(repo: ResolvedRepo, cache_dir: Path, timeout: float = 3600) -> Path:
    """A local git directory holding ``repo.sha``: the path itself, or a bare clone in the cache."""
    if repo.spec.kind == "path":
        return Path(repo.spec.location)
    target = repo.spec.cache_path(cache_dir)
    what = repo.spec.name
    if target.exists():
        has = run_git(["cat-file", "-e", f"{repo.sha}^{{commit}}"], git_dir=target, what=what,
                      check=False)
        if has.returncode == 0:
            return target
        run_git(["fetch", "--quiet", "--no-tags", "--no-write-fetch-head", repo.spec.location,
                 repo.sha or repo.rev],
                git_dir=target, what=what, timeout=timeout)
        return target
    cache_dir.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".clone-", dir=cache_dir))
    try:
        run_git(["clone", "--bare", "--quiet", "--no-tags", "--", repo.spec.location,
                 str(staging / "repo.git")], what=what, timeout=timeout)
        forget_origin(staging / "repo.git", what)
        try:
            os.rename(staging / "repo.git", target)
        except OSError:
            if not target.exists():  # another task finished the same clone first otherwise
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def forget_origin(git_dir: Path, what: str) -> None:
    """Remove the clone's record of where it came from: the URL may hold credentials."""
    run_git(["config", "--file", str(git_dir / "config"), "--remove-section", "remote.origin"],
            what=what, check=False, timeout=60)


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
