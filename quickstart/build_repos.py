"""Build the embedded quickstart repositories from their declarative histories.

Each folder ``quickstart/histories/<name>/`` describes one small project: ``history.toml`` lists
its commits in order and ``files/`` holds every version of every file those commits write
(``files/ringbuf.c@2`` is the second version of ``ringbuf.c``). This script replays each history
into a fresh git repository and writes it as one bundle, ``quickstart/repos/<name>.bundle``,
which ``manifests/quickstart.yaml`` mines.

    python quickstart/build_repos.py            # rewrite the bundles whose history changed
    python quickstart/build_repos.py --check    # exit 1 if a bundle is missing or stale
    python quickstart/build_repos.py --keep-repos /tmp/qs   # also leave the repositories there

Builds are deterministic: one fixed author and committer, commit dates that step from a fixed
epoch, ``main`` as the default branch, and no global or system git configuration, so the same
history gives the same commit SHAs on any machine with git 2.29 or later. Only the standard library
and the git CLI are used (Python 3.11+ for tomllib); ``make quickstart-data`` runs it.

``history.toml`` format::

    language = "C"                                   # what every kept pair is labelled
    description = "A ring buffer and string helpers"

    [[commit]]
    message = "Initial commit"
    write = { "src/ringbuf.c" = "ringbuf.c@1" }      # repository path = snapshot in files/
    drop = "list/root_commit"                        # the fate the tests expect

    [[commit]]
    message = "Fix logic error in ringbuf_push"
    write = { "src/ringbuf.c" = "ringbuf.c@2" }
    keep = "Functional_Correctness"

A commit may also ``delete = ["path"]``, ``rename = { "old" = "new" }`` (applied before
``write``), be made on a side branch (``branch = "fix/x"``, created from ``main`` at first use),
or merge such a branch into ``main`` with ``--no-ff`` (``merge = "fix/x"``). ``keep`` (the
expected primary criterion) and ``drop`` (the expected ``stage/reason``) are not used here; they
state what the pipeline must make of the commit and ``tests/test_quickstart_data.py`` checks it.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

QUICKSTART_DIR = Path(__file__).resolve().parent
HISTORIES_DIR = QUICKSTART_DIR / "histories"
BUNDLES_DIR = QUICKSTART_DIR / "repos"
HISTORY_FILE = "history.toml"
SNAPSHOTS_DIR = "files"

MAIN_BRANCH = "main"
AUTHOR_NAME = "Quickstart Developer"
AUTHOR_EMAIL = "developer@quickstart.codeprefs.invalid"
EPOCH = 1_704_103_200  # 2024-01-01T10:00:00Z, the date of every history's first commit
COMMIT_INTERVAL_S = 6 * 3600 + 17 * 60  # each later commit is this much after the one before

# Flags on every git call: nothing outside the repository may change what gets committed.
_GIT_FLAGS: tuple[str, ...] = (
    "-c", "core.hooksPath=/dev/null",
    "-c", "core.autocrlf=false",
    "-c", "core.fileMode=false",
    "-c", "core.quotePath=false",
    "-c", "commit.gpgSign=false",
    "-c", "init.defaultBranch=" + MAIN_BRANCH,
    "-c", "advice.detachedHead=false",
)
_COMMIT_KEYS = frozenset({"message", "write", "delete", "rename", "branch", "merge", "keep", "drop"})
_TOP_KEYS = frozenset({"language", "description", "commit"})
_BRANCH_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/-]*$")


class HistoryError(ValueError):
    """A history file is invalid or cannot be replayed; the message names the file and commit."""


@dataclass(frozen=True)
class CommitSpec:
    """One entry of ``history.toml``: what to change, how to commit it, and its expected fate."""

    number: int  # 1-based position in the history
    message: str
    write: dict[str, str]  # repository path -> snapshot file name under files/
    delete: tuple[str, ...] = ()
    rename: dict[str, str] | None = None  # old path -> new path
    branch: str | None = None  # made on this side branch instead of main
    merge: str | None = None  # a --no-ff merge of this side branch into main
    keep: str | None = None  # expected primary criterion of the pair it yields
    drop: str | None = None  # expected "stage/reason" it is dropped with


@dataclass(frozen=True)
class History:
    """A parsed ``history.toml`` and the folder its snapshots live in."""

    name: str
    folder: Path
    language: str
    description: str
    commits: tuple[CommitSpec, ...]

    def snapshot(self, name: str) -> Path:
        return self.folder / SNAPSHOTS_DIR / name


@dataclass(frozen=True)
class BuiltRepo:
    """A replayed history: the repository and the SHA each commit entry produced."""

    history: History
    path: Path
    shas: tuple[str, ...]  # shas[i] is the commit made for history.commits[i]

    @property
    def head(self) -> str:
        return self.shas[-1]


# -- reading histories --------------------------------------------------------------------------


def history_folders(root: Path = HISTORIES_DIR) -> list[Path]:
    """Every folder under ``root`` that holds a ``history.toml``, sorted by name."""
    return sorted(p.parent for p in root.glob(f"*/{HISTORY_FILE}"))


def load_history(folder: Path) -> History:
    """Parse and check ``folder/history.toml``; raises :class:`HistoryError` naming the problem."""
    path = folder / HISTORY_FILE
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as error:
        raise HistoryError(f"{path}: cannot read history: {error}") from None
    unknown = set(data) - _TOP_KEYS
    if unknown:
        raise HistoryError(f"{path}: unknown key(s) {sorted(unknown)}")
    entries = data.get("commit")
    if not isinstance(entries, list) or not entries:
        raise HistoryError(f"{path}: expected at least one [[commit]] entry")
    if not isinstance(data.get("language"), str):
        raise HistoryError(f"{path}: 'language' (a string) is required")
    history = History(
        name=folder.name, folder=folder, language=data["language"],
        description=str(data.get("description", "")),
        commits=tuple(_commit_spec(path, number, entry) for number, entry in enumerate(entries, 1)),
    )
    _check_snapshots(path, history)
    return history


def _commit_spec(path: Path, number: int, entry: object) -> CommitSpec:
    where = f"{path}: commit {number}"
    if not isinstance(entry, dict):
        raise HistoryError(f"{where}: expected a table")
    unknown = set(entry) - _COMMIT_KEYS
    if unknown:
        raise HistoryError(f"{where}: unknown key(s) {sorted(unknown)}")
    message = entry.get("message")
    if not isinstance(message, str) or not message.strip():
        raise HistoryError(f"{where}: 'message' is required")
    if ("keep" in entry) == ("drop" in entry):
        raise HistoryError(f"{where}: give exactly one of 'keep' (criterion) or 'drop' (stage/reason)")
    if "drop" in entry and "/" not in str(entry["drop"]):
        raise HistoryError(f"{where}: 'drop' must read 'stage/reason', got {entry['drop']!r}")
    spec = CommitSpec(
        number=number, message=message,
        write=_string_map(where, "write", entry.get("write", {})),
        delete=tuple(_string_list(where, "delete", entry.get("delete", []))),
        rename=_string_map(where, "rename", entry.get("rename", {})) or None,
        branch=entry.get("branch"), merge=entry.get("merge"),
        keep=entry.get("keep"), drop=entry.get("drop"),
    )
    for branch in (spec.branch, spec.merge):
        if branch is not None and (not isinstance(branch, str) or not _BRANCH_NAME.match(branch)
                                   or branch == MAIN_BRANCH):
            raise HistoryError(f"{where}: invalid side branch name {branch!r}")
    changes = bool(spec.write or spec.delete or spec.rename)
    if spec.merge is not None and (changes or spec.branch is not None):
        raise HistoryError(f"{where}: a merge entry takes only 'message' and 'keep'/'drop'")
    if spec.merge is None and not changes:
        raise HistoryError(f"{where}: changes nothing (give 'write', 'delete' or 'rename')")
    for repo_path in [*spec.write, *spec.delete, *(spec.rename or {}), *(spec.rename or {}).values()]:
        pure = PurePosixPath(repo_path)
        if pure.is_absolute() or ".." in pure.parts or not pure.parts:
            raise HistoryError(f"{where}: path {repo_path!r} must be relative, inside the repository")
    return spec


def _string_map(where: str, key: str, value: object) -> dict[str, str]:
    if not isinstance(value, dict) or not all(isinstance(k, str) and isinstance(v, str)
                                              for k, v in value.items()):
        raise HistoryError(f"{where}: '{key}' must map strings to strings")
    return dict(value)


def _string_list(where: str, key: str, value: object) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise HistoryError(f"{where}: '{key}' must be a list of strings")
    return list(value)


def _check_snapshots(path: Path, history: History) -> None:
    snapshots_dir = (history.folder / SNAPSHOTS_DIR).resolve()
    for spec in history.commits:
        for snapshot in spec.write.values():
            if snapshots_dir not in history.snapshot(snapshot).resolve().parents:
                raise HistoryError(f"{path}: commit {spec.number}: snapshot {snapshot!r} is not "
                                   f"inside {SNAPSHOTS_DIR}/")
            if not history.snapshot(snapshot).is_file():
                raise HistoryError(f"{path}: commit {spec.number}: no snapshot "
                                   f"{SNAPSHOTS_DIR}/{snapshot}")


# -- replaying a history ------------------------------------------------------------------------


def commit_date(number: int) -> str:
    """The fixed author and committer date of the ``number``-th commit (1-based), git's format."""
    return f"{EPOCH + (number - 1) * COMMIT_INTERVAL_S} +0000"


def _git_env(date: str | None = None) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("GIT_")}
    env.update({
        "GIT_CONFIG_GLOBAL": "/dev/null",
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_TERMINAL_PROMPT": "0",
        "GIT_AUTHOR_NAME": AUTHOR_NAME,
        "GIT_AUTHOR_EMAIL": AUTHOR_EMAIL,
        "GIT_COMMITTER_NAME": AUTHOR_NAME,
        "GIT_COMMITTER_EMAIL": AUTHOR_EMAIL,
        "LC_ALL": "C",
        "TZ": "UTC",
    })
    if date is not None:
        env["GIT_AUTHOR_DATE"] = date
        env["GIT_COMMITTER_DATE"] = date
    return env


def git(*args: str, cwd: Path | None = None, input: str | None = None, date: str | None = None,
        check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run git with the isolated configuration above; raises :class:`HistoryError` on failure."""
    result = subprocess.run(
        ["git", *_GIT_FLAGS, *args], cwd=cwd, input=input, capture_output=True, text=True,
        env=_git_env(date), stdin=None if input is not None else subprocess.DEVNULL,
    )
    if check and result.returncode != 0:
        detail = (result.stderr or result.stdout).strip()
        raise HistoryError(f"`git {' '.join(args)}` failed in {cwd}: {detail}")
    return result


def build_repository(history: History, target: Path) -> BuiltRepo:
    """Replay ``history`` into a new repository at ``target`` (which must not exist yet)."""
    if target.exists():
        raise HistoryError(f"{target}: already exists; build into a new folder")
    target.mkdir(parents=True)
    git("init", "--quiet", "--object-format=sha1", f"--initial-branch={MAIN_BRANCH}", "--template=",
        cwd=target)
    shas: list[str] = []
    side_branches: set[str] = set()
    for spec in history.commits:
        where = f"{history.folder / HISTORY_FILE}: commit {spec.number}"
        date = commit_date(spec.number)
        try:
            if spec.merge is not None:
                sha = _merge(target, spec, side_branches, date)
            else:
                sha = _commit(history, target, spec, side_branches, date)
        except HistoryError as error:
            raise HistoryError(f"{where}: {error}") from None
        shas.append(sha)
    if side_branches:
        raise HistoryError(f"{history.folder / HISTORY_FILE}: side branch(es) never merged: "
                           f"{sorted(side_branches)}")
    return BuiltRepo(history, target, tuple(shas))


def _commit(history: History, repo: Path, spec: CommitSpec, side_branches: set[str], date: str) -> str:
    if spec.branch is not None:
        if spec.branch not in side_branches:
            git("branch", spec.branch, MAIN_BRANCH, cwd=repo)
            side_branches.add(spec.branch)
        git("checkout", "--quiet", spec.branch, cwd=repo)
    for old, new in (spec.rename or {}).items():
        (repo / new).parent.mkdir(parents=True, exist_ok=True)
        git("mv", "--", old, new, cwd=repo)
    for repo_path, snapshot in spec.write.items():
        destination = repo / repo_path
        destination.parent.mkdir(parents=True, exist_ok=True)
        destination.write_bytes(history.snapshot(snapshot).read_bytes())
        destination.chmod(0o644)  # the recorded mode must not depend on the umask
        git("add", "--", repo_path, cwd=repo)
    for repo_path in spec.delete:
        git("rm", "--quiet", "--", repo_path, cwd=repo)
    sha = _record(repo, spec.message, date)
    if spec.branch is not None:
        git("checkout", "--quiet", MAIN_BRANCH, cwd=repo)
    return sha


def _merge(repo: Path, spec: CommitSpec, side_branches: set[str], date: str) -> str:
    assert spec.merge is not None
    if spec.merge not in side_branches:
        raise HistoryError(f"no open side branch {spec.merge!r} to merge")
    merged = git("merge", "--no-ff", "--no-commit", "--quiet", spec.merge, cwd=repo, date=date,
                 check=False)
    if merged.returncode != 0:
        raise HistoryError(f"merging {spec.merge!r} into {MAIN_BRANCH} failed (a conflict?): "
                           f"{(merged.stderr or merged.stdout).strip()}")
    sha = _record(repo, spec.message, date)
    git("branch", "--quiet", "-D", spec.merge, cwd=repo)
    side_branches.discard(spec.merge)
    return sha


def _record(repo: Path, message: str, date: str) -> str:
    """Commit what is staged with ``message`` at ``date``; returns the new commit's SHA."""
    # --cleanup=verbatim: the message is stored exactly, whatever git version strips by default.
    git("commit", "--quiet", "--no-verify", "--cleanup=verbatim", "--file=-", cwd=repo,
        input=message.strip() + "\n", date=date)
    return git("rev-parse", "HEAD", cwd=repo).stdout.strip()


# -- bundles ------------------------------------------------------------------------------------


def bundle_path(name: str, bundles_dir: Path = BUNDLES_DIR) -> Path:
    return bundles_dir / f"{name}.bundle"


def bundle_heads(bundle: Path) -> dict[str, str]:
    """The refs a bundle carries and the commit each points to (``HEAD`` included)."""
    listing = git("bundle", "list-heads", str(bundle)).stdout
    heads = {}
    for line in listing.splitlines():
        sha, _, ref = line.partition(" ")
        heads[ref.strip()] = sha.strip()
    return heads


def expected_heads(built: BuiltRepo) -> dict[str, str]:
    """The refs a bundle of ``built`` must carry: ``HEAD`` and ``main``, both at the last commit."""
    return {"HEAD": built.head, f"refs/heads/{MAIN_BRANCH}": built.head}


def write_bundle(built: BuiltRepo, bundle: Path) -> None:
    """Bundle ``HEAD`` and ``main`` of ``built`` into ``bundle`` (replaced atomically)."""
    bundle.parent.mkdir(parents=True, exist_ok=True)
    staging = bundle.with_name(f".{bundle.name}.tmp")
    git("bundle", "create", "--quiet", str(staging), "HEAD", MAIN_BRANCH, cwd=built.path)
    os.replace(staging, bundle)


def check_bundle_clones(bundle: Path, scratch: Path) -> str:
    """Clone ``bundle`` bare into ``scratch`` and return the branch its HEAD points to."""
    clone = scratch / f"{bundle.stem}.git"
    git("clone", "--bare", "--quiet", str(bundle), str(clone))
    return git("symbolic-ref", "HEAD", cwd=clone).stdout.strip()


def bundle_is_current(built: BuiltRepo, bundle: Path) -> bool:
    """Whether ``bundle`` exists and carries exactly the history just built."""
    return bundle.is_file() and bundle_heads(bundle) == expected_heads(built)


# -- command line -------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("names", nargs="*", help="histories to build (default: all)")
    parser.add_argument("--histories", type=Path, default=HISTORIES_DIR)
    parser.add_argument("--bundles", type=Path, default=BUNDLES_DIR)
    parser.add_argument("--check", action="store_true",
                        help="write nothing; exit 1 if a bundle is missing or differs from its history")
    parser.add_argument("--force", action="store_true", help="rewrite bundles that are up to date")
    parser.add_argument("--keep-repos", type=Path, metavar="DIR",
                        help="leave the built repositories in DIR (it must not hold them yet)")
    args = parser.parse_args(argv)

    folders = history_folders(args.histories)
    if args.names:
        known = {folder.name: folder for folder in folders}
        missing = sorted(set(args.names) - set(known))
        if missing:
            parser.error(f"no history named {', '.join(missing)} under {args.histories}")
        folders = [known[name] for name in args.names]
    if not folders:
        parser.error(f"no {HISTORY_FILE} found under {args.histories}")

    problems: list[str] = []
    with tempfile.TemporaryDirectory(prefix="codeprefs-quickstart-") as scratch:
        repos_root = args.keep_repos or Path(scratch) / "repos"
        for folder in folders:
            try:
                built = build_repository(load_history(folder), repos_root / folder.name)
            except HistoryError as error:
                problems.append(str(error))
                continue
            bundle = bundle_path(folder.name, args.bundles)
            current = bundle_is_current(built, bundle)
            if args.check:
                status = "up to date" if current else "STALE" if bundle.is_file() else "MISSING"
                if not current:
                    problems.append(f"{bundle}: {status.lower()}; run quickstart/build_repos.py")
            elif current and not args.force:
                status = "up to date"
            else:
                write_bundle(built, bundle)
                head = check_bundle_clones(bundle, Path(scratch))
                if head != f"refs/heads/{MAIN_BRANCH}":
                    problems.append(f"{bundle}: a clone's HEAD points to {head!r}, not {MAIN_BRANCH}")
                status = f"wrote {bundle.stat().st_size} bytes"
            print(f"{folder.name:<20} {len(built.shas):>3} commits  {built.head[:12]}  {status}")
        if not args.names:
            wanted = {bundle_path(folder.name, args.bundles) for folder in folders}
            for orphan in sorted(set(args.bundles.glob("*.bundle")) - wanted):
                problems.append(f"{orphan}: no history builds this bundle; delete it")
        if args.keep_repos:
            print(f"repositories left in {args.keep_repos}")
    for problem in problems:
        print(f"error: {problem}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
