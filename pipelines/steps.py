"""The steps of a build, one small class each.

A step takes a batch of rows (a pyarrow table with :data:`codeprefs.core.rows.WORK_SCHEMA`) and
returns the same rows, having filled columns in or marked rows as dropped. Steps hold only
their configuration, so Ray ships them to workers as they are; each one can also be called on
a plain list of row dicts, which is how the tests drive them.

Data flows one way: ListCommits -> SplitCommits -> FilterMessages -> LabelCriteria ->
ReadContents -> AssemblePairs -> ValidatePairs -> BudgetPairs; the shard writer (:mod:`codeprefs.pipelines.shards`) then
dedupes and writes. Export sources start with ListRecords and read contents with FetchContents
(criteria are labelled before any fetch, so no fetch is spent on a commit without one); dataset
sources start with ListRecords and go straight to AssemblePairs.

Each step that drops rows declares its drop stage once (``drop_stage``, from the registry
:mod:`codeprefs.core.drops`) and holds the reasons it drops rows for as class constants: both are
checked when the class is defined, so a misspelt reason fails on import, not after the shards.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections import defaultdict
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import Any, Protocol

import pyarrow as pa

from codeprefs.core.drops import (
    CONTENT,
    CRITERIA,
    LENGTH,
    LIST,
    MESSAGE,
    SCOPE,
    SPLIT,
    VALIDATE,
    DropsAt,
    drop,
)
from codeprefs.core.inputs import local_input
from codeprefs.core.records import FileChunk, Malformed, Where, located_records
from codeprefs.core.schema import Language, stable_id
from codeprefs.core.scratch import clones_dir, remotes_dir
from codeprefs.filters.classifier import CriteriaClassifier, combine
from codeprefs.filters.criteria import (
    CriteriaLabeler,
    CriteriaSettings,
    load_context,
    load_exclusions,
    load_stems,
    load_terms,
)
from codeprefs.filters.length import PairBudget
from codeprefs.filters.messages import MessageFilter
from codeprefs.filters.testfiles import is_test_path
from codeprefs.filters.validation import PairValidator, ValidationSettings
from codeprefs.parsers.headers import HeaderContext, resolve_header_language
from codeprefs.parsers.languages import is_ambiguous, language_for_path
from codeprefs.core.rows import Row, empty_row, has_nul, to_table, to_tables
from codeprefs.pipelines.scopes import FILE, ScopedPair, ScopeSettings, file_pair, scope_change
from codeprefs.pipelines.sources.export import ExportRules, split_repos
from codeprefs.pipelines.sources.gitrepo import (
    DEFAULT_CLONE_TIMEOUT_S,
    REGULAR_FILE_MODES,
    Commit,
    GitError,
    RepoSpec,
    ResolvedRepo,
    blob_sizes,
    changed_file,
    iter_commits,
    list_files,
    materialize,
    read_blobs,
)
from codeprefs.pipelines.sources.remote import (
    FetchSettings,
    HostSlots,
    Located,
    RemoteCache,
    Retrieved,
    Retriever,
    Slots,
)
from codeprefs.pipelines.splits import SplitRule, row_repositories


class Step(DropsAt):
    """One step: marks drops at its ``drop_stage`` and fills columns in, row by row."""

    def process(self, row: Row) -> None:
        raise NotImplementedError

    def run(self, rows: list[Row]) -> list[Row]:
        for row in rows:
            if row["drop_reason"] is None:
                self.process(row)
        return rows

    def __call__(self, batch: pa.Table) -> pa.Table:
        return to_table(self.run(batch.to_pylist()))


class Chain:
    """Several steps applied in order to one batch (a single Ray map task)."""

    def __init__(self, steps: list[Step]) -> None:
        self.steps = steps

    def __call__(self, batch: pa.Table) -> pa.Table:
        rows = batch.to_pylist()
        for step in self.steps:
            rows = step.run(rows)
        return to_table(rows)


# -- source -------------------------------------------------------------------------------------


def repo_task(repo: ResolvedRepo, subset: str, max_commits: int | None, on_error: str,
              clone_timeout_s: float = DEFAULT_CLONE_TIMEOUT_S) -> Row:
    """The one-row input of :class:`ListCommits` for one repository."""
    return {
        "repo_name": repo.spec.name, "repo_kind": repo.spec.kind, "repo_location": repo.spec.location,
        "rev": repo.rev, "sha": repo.sha, "subset": subset, "max_commits": max_commits,
        "on_error": on_error, "clone_timeout_s": float(clone_timeout_s),
    }


class ListCommits(DropsAt):
    """Walk one repository's history and emit one row per commit.

    Structural filters happen here, before any file is read: merges, root commits, commits that
    change no file or several files, files not modified in place (added, deleted, renamed,
    type-changed), non-regular files (symlinks, submodules) and files in none of the eight
    languages are marked dropped at drop stage ``list``.
    """

    drop_stage = LIST
    REPO_ERROR = LIST.reason("repo_error")
    MERGE_COMMIT = LIST.reason("merge_commit")
    ROOT_COMMIT = LIST.reason("root_commit")
    NO_FILE_CHANGE = LIST.reason("no_file_change")
    MULTIPLE_FILES = LIST.reason("multiple_files")
    NOT_MODIFIED_IN_PLACE = LIST.reason("not_modified_in_place")
    NOT_REGULAR_FILE = LIST.reason("not_regular_file")
    NOT_TARGET_LANGUAGE = LIST.reason("not_target_language")

    def __init__(self, scratch_dir: str | None = None, yield_rows: int = 4096) -> None:
        self.scratch_dir = scratch_dir  # the manifest's ray.scratch_dir; resolved on the worker's node
        self.yield_rows = yield_rows

    def __call__(self, batch: pa.Table) -> Iterator[pa.Table]:
        for task in batch.to_pylist():
            yield from to_tables(self.rows_for(task), self.yield_rows)

    def rows_for(self, task: Row) -> Iterator[Row]:
        spec = RepoSpec(task["repo_name"], task["repo_kind"], task["repo_location"])
        repo = ResolvedRepo(spec, task["rev"], task["sha"], "ok")
        try:
            git_dir = materialize(repo, clones_dir(self.scratch_dir),
                                  timeout=task.get("clone_timeout_s") or DEFAULT_CLONE_TIMEOUT_S)
            context = HeaderContext.from_paths(list_files(git_dir, repo.sha, spec.name))
            for commit in iter_commits(git_dir, repo.sha, spec.name, task["max_commits"]):
                yield self.commit_row(task, str(git_dir), commit, context)
        except GitError as error:
            if task["on_error"] != "skip":
                raise
            row = empty_row()
            row.update(id=stable_id(spec.name, "repo_error"), repo=spec.name, source="git",
                       subset=task["subset"], message=str(error))
            drop(row, self.REPO_ERROR)
            yield row

    def commit_row(self, task: Row, git_dir: str, commit: Commit, context: HeaderContext) -> Row:
        row = empty_row()
        change = commit.changes[0] if len(commit.changes) == 1 else None
        path = change.path if change else None
        row.update(
            id=stable_id(task["repo_name"], commit.sha, path),
            source="git", subset=task["subset"], generator="commit", repo=task["repo_name"],
            commit=commit.sha, parent=commit.parents[0] if commit.parents else None, path=path,
            unix_time=commit.unix_time, message=commit.message, git_dir=git_dir,
            strict_syntax=False,
        )
        if len(commit.parents) > 1:
            drop(row, self.MERGE_COMMIT)
        elif not commit.parents:
            drop(row, self.ROOT_COMMIT)
        elif not commit.changes:
            drop(row, self.NO_FILE_CHANGE)
        elif change is None:
            drop(row, self.MULTIPLE_FILES)
        elif change.status != "M":
            drop(row, self.NOT_MODIFIED_IN_PLACE)
        elif change.old_mode not in REGULAR_FILE_MODES or change.new_mode not in REGULAR_FILE_MODES:
            drop(row, self.NOT_REGULAR_FILE)
        else:
            language = language_for_path(change.path)
            if language is None:
                drop(row, self.NOT_TARGET_LANGUAGE)
            else:
                if is_ambiguous(change.path):  # None: decided from the content later
                    language = context.decide(change.path)
                row.update(language=language, old_blob=change.old_blob, new_blob=change.new_blob)
        return row


class RecordRules(Protocol):
    """Turns one record of a file into a work row (export and dataset sources)."""

    def row(self, label: str, position: int, record: dict[str, Any] | Malformed,
            where: Where | None = None) -> Row: ...


class ListRecords(DropsAt):
    """Read one chunk of a record file and emit one row per record.

    ``rules`` decides what a record becomes and drops the ones it refuses at stage ``list``
    (:class:`~codeprefs.pipelines.sources.export.ExportRules`,
    :class:`~codeprefs.pipelines.sources.dataset.DatasetRules`).
    """

    drop_stage = LIST

    def __init__(self, rules: RecordRules, yield_rows: int = 4096, scratch_dir: str | None = None) -> None:
        self.rules = rules
        self.yield_rows = yield_rows
        self.scratch_dir = scratch_dir  # the manifest's ray.scratch_dir; resolved on the worker's node

    def __call__(self, batch: pa.Table) -> Iterator[pa.Table]:
        for item in batch.to_pylist():
            chunk = FileChunk(**item)
            # A chunk of a file at a URL is read from this node's copy; rows keep its label.
            chunk = replace(chunk, path=str(local_input(chunk.path, chunk.label, self.scratch_dir)))
            rows = (self.rules.row(chunk.label, position, record, where)
                    for position, where, record in located_records(chunk))
            yield from to_tables(rows, self.yield_rows)


class SplitCommits(Step):
    """Keep the commits of one split (see :mod:`codeprefs.pipelines.splits`); drop the rest at ``split``."""

    drop_stage = SPLIT

    def __init__(self, rule: SplitRule, training_repositories: frozenset[str] = frozenset()) -> None:
        self.rule = rule
        self.training_repositories = training_repositories

    def process(self, row: Row) -> None:
        reason = self.rule.reason(row["unix_time"], row_repositories(row), self.training_repositories)
        if reason:
            drop(row, reason)


# -- filters on the commit --------------------------------------------------------------------


class FilterMessages(Step):
    """Drop commits whose message states no single real intent (see :mod:`codeprefs.filters.messages`)."""

    drop_stage = MESSAGE

    def __init__(self, message_filter: MessageFilter = MessageFilter()) -> None:
        self.message_filter = message_filter

    def process(self, row: Row) -> None:
        reason = self.message_filter.reject_reason(row["message"] or "")
        if reason:
            drop(row, reason)


class LabelCriteria(Step):
    """Label the commit with the criteria its message names; no criterion, no pair. A labelled
    change to a test file is dropped as ``test_file`` unless ``test_files`` is ``keep`` (see
    :mod:`codeprefs.filters.testfiles`)."""

    drop_stage = CRITERIA
    NO_CRITERION = CRITERIA.reason("no_criterion")
    TEST_FILE = CRITERIA.reason("test_file")

    def __init__(self, settings: CriteriaSettings = CriteriaSettings(),
                 classifier: CriteriaClassifier | None = None) -> None:
        """``classifier`` (the model of ``settings.classifier``, loaded by the caller) labels the
        messages, combined with the term rule as ``settings.classifier_mode`` says (see
        :func:`codeprefs.filters.classifier.combine`)."""
        terms_dir = settings.terms_dir
        self.labeler = CriteriaLabeler(load_terms(terms_dir), match=settings.match,
                                       stems=load_stems(terms_dir), exclusions=load_exclusions(terms_dir),
                                       context=load_context(terms_dir))
        self.drop_test_files = settings.test_files == "drop"
        self.classifier = classifier
        self.classifier_mode = settings.classifier_mode

    def run(self, rows: list[Row]) -> list[Row]:
        live = [row for row in rows if row["drop_reason"] is None]
        if self.classifier is None:
            for row in live:
                self._label(row, None)
            return rows
        # the whole batch in one pass through the classifier
        predicted = self.classifier.predict([row["message"] or "" for row in live])
        for row, classified in zip(live, predicted, strict=True):
            self._label(row, classified)
        return rows

    def process(self, row: Row) -> None:
        classified = self.classifier.predict([row["message"] or ""])[0] if self.classifier is not None else None
        self._label(row, classified)

    def _label(self, row: Row, classified: dict | None) -> None:
        """Label ``row`` by the term rule, combined with ``classified`` (the classifier's
        criteria and probabilities) when there is a classifier."""
        found = self.labeler.label(row["message"] or "")
        if self.classifier is not None and classified is not None:
            found = combine(found, classified, self.classifier, self.classifier_mode)
        if found is None:
            drop(row, self.NO_CRITERION)
            return
        if self.drop_test_files and is_test_path(row["path"] or ""):
            drop(row, self.TEST_FILE)
            return
        row["aspect"] = found.aspect.value
        row["aspects"] = [aspect.value for aspect in found.aspects]


# -- file contents ------------------------------------------------------------------------------


def _is_binary(data: bytes) -> bool:
    """A NUL byte anywhere in ``data`` (git's heuristic looks at the first 8,000 bytes only)."""
    return b"\0" in data


class ReadContents(Step):
    """Read the file before (rejected) and after (chosen) the commit, with one git call per repo.

    Sizes are checked first (``cat-file --batch-check``), so an oversized file is never read.
    Drops: ``file_too_large``, ``blob_missing``, ``binary``, ``non_utf8``. A ``.h`` file whose
    language the repository tree left open is decided here from its content.
    """

    drop_stage = CONTENT
    BLOB_MISSING = CONTENT.reason("blob_missing")
    FILE_TOO_LARGE = CONTENT.reason("file_too_large")
    BINARY = CONTENT.reason("binary")
    NON_UTF8 = CONTENT.reason("non_utf8")

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes

    def run(self, rows: list[Row]) -> list[Row]:
        by_repo: dict[str, list[Row]] = defaultdict(list)
        for row in rows:
            if row["drop_reason"] is None:
                by_repo[row["git_dir"]].append(row)
        for git_dir, repo_rows in by_repo.items():
            self._read_repo(Path(git_dir), repo_rows)
        return rows

    def _read_repo(self, git_dir: Path, rows: list[Row]) -> None:
        what = rows[0]["repo"]
        sizes = blob_sizes(git_dir, [b for r in rows for b in (r["old_blob"], r["new_blob"])], what)
        wanted: list[Row] = []
        for row in rows:
            old_size, new_size = sizes[row["old_blob"]], sizes[row["new_blob"]]
            if old_size is None or new_size is None:
                drop(row, self.BLOB_MISSING)
            elif max(old_size, new_size) > self.max_bytes:
                drop(row, self.FILE_TOO_LARGE)
            else:
                wanted.append(row)
        contents = read_blobs(git_dir, [b for r in wanted for b in (r["old_blob"], r["new_blob"])], what)
        for row in wanted:
            old, new = contents.get(row["old_blob"]), contents.get(row["new_blob"])
            if old is None or new is None:
                drop(row, self.BLOB_MISSING)
                continue
            if _is_binary(old) or _is_binary(new):
                drop(row, self.BINARY)
                continue
            try:
                row["rejected"], row["chosen"] = old.decode("utf-8"), new.decode("utf-8")
            except UnicodeDecodeError:
                drop(row, self.NON_UTF8)
                continue
            if row["language"] is None:
                row["language"] = resolve_header_language(row["path"], new).value


class FetchContents(Step):
    """Get each exported commit from its remotes, then read both file versions.

    Commits are retrieved through :class:`~codeprefs.pipelines.sources.remote.Retriever`, each distinct
    commit once per batch, ``max_concurrent`` git commands at a time in threads: the caches
    first; then one fetch per repository for the commits of the batch it would be asked for
    first; then, for what is still missing, ``git fetch --depth=2`` from each allowed
    repository of the row's ``repos`` in turn. The file is then located with ``git diff-tree``
    against the parent and read as in :class:`ReadContents`.
    Drops: ``repo_vanished``, ``commit_not_found``, ``fetch_timeout``, ``fetch_failed``,
    ``root_commit``, ``file_missing`` (the commit did not modify the file),
    ``not_regular_file``, ``read_error``, and those of :class:`ReadContents`.
    """

    drop_stage = CONTENT
    FETCH_FAILED = CONTENT.reason("fetch_failed")
    ROOT_COMMIT = CONTENT.reason("root_commit")
    READ_ERROR = CONTENT.reason("read_error")
    FILE_MISSING = CONTENT.reason("file_missing")
    NOT_REGULAR_FILE = CONTENT.reason("not_regular_file")

    def __init__(self, settings: FetchSettings, scratch_dir: str | None, rules: ExportRules, max_bytes: int,
                 slots: Slots | None = None) -> None:
        self.settings = settings
        self.scratch_dir = scratch_dir  # the manifest's ray.scratch_dir; resolved on the worker's node
        self.rules = rules
        self.max_bytes = max_bytes
        self.slots = slots  # None: a per-process limit (tests, a single machine)

    def run(self, rows: list[Row]) -> list[Row]:
        groups: dict[tuple[str, tuple[str, ...]], list[Row]] = defaultdict(list)  # by commit
        for row in rows:
            if row["drop_reason"] is None:
                candidates = self.rules.allowed_repos(split_repos(row["repos"]), row["path"])
                groups[(row["commit"], tuple(candidates))].append(row)
        if not groups:
            return rows
        retriever = Retriever(self.settings, RemoteCache(remotes_dir(self.scratch_dir, self.settings.remote)),
                              self.slots or HostSlots(self.settings.max_concurrent))
        keys = list(groups)
        with ThreadPoolExecutor(max_workers=min(self.settings.max_concurrent, len(keys))) as pool:
            # 1. the caches: no network work for a commit any of its repositories holds already
            cached = dict(zip(keys, pool.map(lambda key: retriever.cached(key[0], list(key[1])), keys)))
            # 2. one fetch per repository for the commits it is the first to be asked for
            list(pool.map(lambda batch: retriever.prefetch(*batch), self._batches(retriever, cached)))
            # 3. per commit: the caches again, then single fetches from each repository in turn
            list(pool.map(lambda key: self._commit(retriever, key, groups[key], cached[key]), keys))
        return ReadContents(self.max_bytes).run(rows)

    def _batches(self, retriever: Retriever,
                 cached: dict[tuple[str, tuple[str, ...]], Located | None]) -> list[tuple[str, list[str]]]:
        wanted: dict[str, list[str]] = defaultdict(list)  # repository -> commits to fetch
        for (sha, candidates), located in cached.items():
            first = None if located else retriever.first_to_try(sha, list(candidates))
            if first is not None:
                wanted[first].append(sha)
        if self.settings.batch <= 1:
            return []
        return [(repo, shas) for repo, shas in wanted.items() if len(shas) > 1]

    def _commit(self, retriever: Retriever, key: tuple[str, tuple[str, ...]], rows: list[Row],
                located: Located | None) -> None:
        sha, candidates = key
        found = Retrieved(located) if located else retriever.retrieve(sha, list(candidates))
        for row in rows:
            if found.located is None:
                # the remotes' failure names (pipelines.sources.remote), each a registered reason
                drop(row, CONTENT.reason(found.reason) if found.reason else self.FETCH_FAILED)
            elif found.located.parent is None:
                drop(row, self.ROOT_COMMIT)
            else:
                try:
                    self._locate_file(row, found.located)
                except GitError:
                    drop(row, self.READ_ERROR)

    def _locate_file(self, row: Row, located: Located) -> None:
        git_dir, sha, path = located.git_dir, row["commit"], row["path"]
        change = changed_file(git_dir, located.parent, sha, path, located.repo)
        if change is None or change.status in ("A", "D"):
            drop(row, self.FILE_MISSING)
            return
        if (change.status != "M" or change.old_mode not in REGULAR_FILE_MODES
                or change.new_mode not in REGULAR_FILE_MODES):
            drop(row, self.NOT_REGULAR_FILE)
            return
        row.update(git_dir=str(git_dir), repo=located.repo, parent=located.parent,
                   old_blob=change.old_blob, new_blob=change.new_blob)
        if row["language"] is None:  # a .h file: the tree at the commit decides, if it can
            context = HeaderContext.from_paths(list_files(git_dir, sha, located.repo))
            row["language"] = context.decide(path)


# -- the pair -----------------------------------------------------------------------------------


def _subject(message: str) -> str:
    return message.strip().splitlines()[0].strip().rstrip(".")


def commit_prompt(message: str, path: str, language: str) -> str:
    """The instruction for a whole-file mined pair, derived only from the commit (no model involved)."""
    return (
        f"{_subject(message)}.\n\n"
        f"Language: {language}\n"
        f"File: {path}\n"
        "Write the complete contents of the file."
    )


# Lines of a commit message that say nothing of the change: trailers, and lines that only
# point elsewhere (an issue or pull-request number, a URL, a cherry-pick note).
_TRAILER = re.compile(r"^\s*[A-Z][\w-]*(?:-by|-Id|-id)\s*:|^\s*(?:Change-Id|Bug|Fixes|Closes|Refs?|See|"
                      r"Issue|PR|Cc)\s*:|^\s*\(cherry picked from|^\s*(?:#\d+|\S+://\S+|[\w.-]+/[\w.-]+#\d+)\s*$"
                      r"|^\s*(?i:fix(?:es|ed)?|close[sd]?|resolve[sd]?|refs?|see)\s+(?:#\d+|\S+#\d+|\S+://\S+)[\s,.]*$")
BODY_CHARS = 600


def commit_intent(message: str, max_chars: int = BODY_CHARS) -> str:
    """The commit's intent for a prompt: its subject, then its body's prose (trailers and
    reference-only lines removed, blank runs squeezed), cut at a word to ``max_chars``.

    The subject alone is often unintelligible ("Fix #1249", "misc refactoring"); the body is
    where authors say what was wrong and why the change fixes it."""
    lines = message.replace("\r\n", "\n").strip().splitlines()
    subject = _subject(message)
    body: list[str] = []
    for line in lines[1:]:
        if _TRAILER.search(line):
            continue
        if line.strip() or (body and body[-1]):
            body.append(line.rstrip())
    text = "\n".join(body).strip()
    if len(text) > max_chars:
        text = text[:max_chars].rsplit(None, 1)[0] + " ..."
    return f"{subject}.\n\n{text}" if text else f"{subject}."


_SCOPE_NOUNS = {"function": "Function", "class": "Type"}
_FENCES = {"C": "c", "C#": "csharp", "C++": "cpp", "Go": "go", "Java": "java", "JavaScript": "javascript",
           "Python": "python", "Ruby": "ruby"}


def scoped_prompt(message: str, path: str, language: str, pair: ScopedPair) -> str:
    """The instruction for a change-scoped pair: the commit's intent, the language, the file, the
    definition (or the lines of a window) and read-only context from the file before the commit."""
    if pair.scope in _SCOPE_NOUNS:
        where = f"{_SCOPE_NOUNS[pair.scope]}: {pair.name}"
        task = f"Write the complete {pair.scope if pair.scope == 'function' else 'type'} `{pair.name}` after this change."
    else:
        where = f"Lines: {pair.rejected_span[0]}-{pair.rejected_span[1]} of the file before the change"
        if pair.name:  # a window inside a long class, or a long function holding definitions
            where += f", inside {'function' if pair.within == 'function' else 'type'} {pair.name}"
        task = "Write these lines of the file after this change."
    context = ""
    if pair.context:
        fence = "```"
        context = (f"Context (read-only, from the file before the change):\n"
                   f"{fence}{_FENCES.get(language, '')}\n{pair.context}\n{fence}\n")
    return (
        f"{commit_intent(message)}\n\n"
        f"Language: {language}\n"
        f"File: {path}\n"
        f"{where}\n"
        f"{context}"
        f"{task}"
    )


class ScopePairs(Step):
    """Cut each commit's file pair down to the definitions its change touches (see
    :mod:`codeprefs.pipelines.scopes`): one row per changed definition, a window, or the whole file
    (``pairs.scope: file`` keeps the whole files). Drops: ``unchanged_in_scope`` (the two
    versions have the same lines)."""

    drop_stage = SCOPE
    UNCHANGED_IN_SCOPE = SCOPE.reason("unchanged_in_scope")

    def __init__(self, settings: ScopeSettings = ScopeSettings()) -> None:
        self.settings = settings

    def run(self, rows: list[Row]) -> list[Row]:
        out: list[Row] = []
        for row in rows:
            if row["drop_reason"] is not None or row["chosen"] is None or row["rejected"] is None:
                out.append(row)
                continue
            out.extend(self.scoped(row))
        return out

    def scoped(self, row: Row) -> list[Row]:
        if self.settings.scope == FILE:  # exactly today's pair, with its scope recorded
            pairs = [file_pair(row["rejected"], row["chosen"], 0)]
        else:
            pairs = scope_change(row["rejected"], row["chosen"], Language(row["language"]), self.settings)
        if not pairs:
            drop(row, self.UNCHANGED_IN_SCOPE)
            return [row]
        out = []
        for pair in pairs:
            scoped = dict(row)
            scoped.update(
                chosen=pair.chosen, rejected=pair.rejected, scope=pair.scope, scope_name=pair.name,
                chosen_start_line=pair.chosen_span[0], chosen_end_line=pair.chosen_span[1],
                rejected_start_line=pair.rejected_span[0], rejected_end_line=pair.rejected_span[1],
                scope_signals=None if pair.signals is None else json.dumps(
                    {side: report.as_dict() for side, report in pair.signals.items()}, sort_keys=True))
            if pair.scope != FILE:
                scoped["input"] = scoped_prompt(row["message"] or "", row["path"], row["language"], pair)
            if len(pairs) > 1:  # one id per definition (overloads share a name: their span tells
                # them apart); a single pair keeps the commit's id
                scoped["id"] = stable_id(row["id"], pair.scope, pair.name, str(pair.rejected_span[0]))
            out.append(scoped)
        return out


def dedupe_key(input_text: str, chosen: str, rejected: str) -> str:
    digest = hashlib.sha256()
    for part in (input_text, chosen, rejected):
        digest.update(part.encode("utf-8"))
        digest.update(b"\x00")
    return digest.hexdigest()


class AssemblePairs(Step):
    """Turn a commit with its two file versions into a pair: prompt, sizes, dedupe key (it
    drops no row)."""

    def process(self, row: Row) -> None:
        if row["input"] is None:
            row["input"] = commit_prompt(row["message"], row["path"], row["language"])
        row["chosen_bytes"] = len(row["chosen"].encode("utf-8"))
        row["rejected_bytes"] = len(row["rejected"].encode("utf-8"))
        row["row_bytes"] = row["chosen_bytes"] + row["rejected_bytes"] + len(row["input"]) + len(
            row["message"] or ""
        )
        row["dedupe_key"] = dedupe_key(row["input"], row["chosen"], row["rejected"])


class ValidatePairs(Step):
    """Tree-sitter validation of both sides (see :mod:`codeprefs.filters.validation`); a comment-only
    change is relabelled Readability_Maintainability or dropped as ``comment_only``
    (``filters.criteria.comment_only``) says.

    A pair with a NUL character in its input, chosen or rejected text is dropped as ``binary``
    first: the sources check their own contents, this is the last guard before the shards.
    """

    drop_stage = VALIDATE
    BINARY = VALIDATE.reason("binary")

    def __init__(self, settings: ValidationSettings = ValidationSettings(), comment_only: str = "readability") -> None:
        self.validator = PairValidator(settings, comment_only)  # type: ignore[arg-type]

    def process(self, row: Row) -> None:
        if has_nul(row["input"], row["chosen"], row["rejected"]):  # whatever the source checked
            drop(row, self.BINARY)
            return
        signals = json.loads(row["scope_signals"]) if row.get("scope_signals") else None
        verdict = self.validator.check(
            Language(row["language"]), row["chosen"], row["rejected"], strict=bool(row["strict_syntax"]),
            aspect=row["aspect"], aspects=row["aspects"], signals=signals,
        )
        for side in ("chosen", "rejected"):
            report = getattr(verdict, side)
            if report is not None:
                row[f"{side}_nodes"] = report.nodes
                row[f"{side}_error_fraction"] = round(report.error_fraction, 6)
        if verdict.reason:
            drop(row, verdict.reason)
        else:
            row["aspect"] = verdict.aspect


class BudgetPairs(Step):
    """The length budget (:mod:`codeprefs.filters.length`): a pair whose prompt plus longer side exceeds
    ``filters.length`` (tokens with a tokenizer, else bytes) is dropped as ``too_long``."""

    drop_stage = LENGTH
    TOO_LONG = LENGTH.reason("too_long")

    def __init__(self, budget: PairBudget) -> None:
        self.budget = budget

    def process(self, row: Row) -> None:
        size = self.budget.size(row["system"], row["input"] or "", row["chosen"] or "", row["rejected"] or "")
        if size > self.budget.limit:
            drop(row, self.TOO_LONG,
                 f"prompt + longer side: {size} {self.budget.unit} > {self.budget.limit}")
