"""Commit export rows (the paper's export schema) checked and turned into work rows.

An export row names one single-file commit::

    {"commit": "<40 hex>", "subject": "...", "message": "...", "repos": "owner/a,owner/b",
     "license": "mit", "old_file": "src/x.py", "new_file": "src/x.py", "unix_time": 1546300800}

Every check below runs before any network work; a row that fails one is dropped at stage
``list`` with the reason in brackets:

* the record is a JSON object (``malformed_row``) with every field (``missing_field``), each of
  its type: text, ``repos`` text or a list of text, ``unix_time`` a number or text
  (``malformed_row``; rejects name the file and line);
* the message, which becomes the pair's input, holds no NUL character (``binary``);
* ``commit`` is a full hexadecimal sha (``bad_sha``), ``unix_time`` an integer (``bad_time``);
* every name in ``repos`` is a plain ``owner/name`` (``bad_repo_name``), so that it can go into
  a URL and a cache path;
* both paths are relative, without ``.``/``..`` segments, NUL or control characters
  (``unsafe_path``), and the same path (``not_modified_in_place``);
* the licence is in the allowlist (``license_not_allowed``), the extension one of the eight
  languages (``not_target_language``), and, with allowlists, at least one repository is in the
  language's allowlist (``not_in_allowlist``; a ``.h`` file may be in the C or the C++ list).
"""

from __future__ import annotations

import functools
import json
import re
from dataclasses import dataclass
from typing import Any

from codeprefs.core.drops import LIST, DropReason
from codeprefs.core.inputs import local_input
from codeprefs.core.storage import StorageError, display_url, is_remote
from codeprefs.core.records import Malformed, Where
from codeprefs.core.schema import Language, stable_id
from codeprefs.parsers.languages import is_ambiguous, language_for_path
from codeprefs.core.rows import Row, empty_row, has_nul
from codeprefs.pipelines.sources.records import finish_row

REQUIRED_FIELDS: tuple[str, ...] = ("commit", "repos", "license", "old_file", "new_file", "unix_time")

_SHA = re.compile(r"[0-9a-f]{40}|[0-9a-f]{64}")
_REPO_PART = re.compile(r"[A-Za-z0-9_.-]+")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
# The reasons a record is dropped for (drop stage ``list``), as the module doc lists them.
MISSING_FIELD = LIST.reason("missing_field")
BINARY = LIST.reason("binary")
BAD_SHA = LIST.reason("bad_sha")
BAD_TIME = LIST.reason("bad_time")
BAD_REPO_NAME = LIST.reason("bad_repo_name")
UNSAFE_PATH = LIST.reason("unsafe_path")
NOT_MODIFIED_IN_PLACE = LIST.reason("not_modified_in_place")
LICENSE_NOT_ALLOWED = LIST.reason("license_not_allowed")
NOT_TARGET_LANGUAGE = LIST.reason("not_target_language")
NOT_IN_ALLOWLIST = LIST.reason("not_in_allowlist")


def split_repos(value: Any) -> list[str]:
    """The repositories of an export row: a comma-separated string (or a list), in order."""
    parts = value if isinstance(value, list) else str(value).split(",")
    return [str(part).strip() for part in parts if str(part).strip()]


def is_repo_name(name: str) -> bool:
    """``owner/name`` with only letters, digits, ``_ . -`` and no ``.``/``..`` part."""
    parts = name.split("/")
    return len(parts) == 2 and all(
        _REPO_PART.fullmatch(part) and part not in (".", "..") for part in parts
    )


def is_safe_path(path: str) -> bool:
    """A relative repository path with no ``.``, ``..`` or empty segment and no control bytes."""
    if not path or path.startswith("/") or _CONTROL.search(path):
        return False
    return all(segment not in ("", ".", "..") for segment in path.split("/"))


def repo_key(name: str) -> str:
    """The case-insensitive key of a repository name (GitHub names ignore case)."""
    return name.strip().lower()


@functools.lru_cache(maxsize=32)
def load_allowlist(path: str, scratch_dir: str | None = None) -> frozenset[str]:
    """The repository keys of an allowlist file (a JSON array of ``"owner/repo"``): a local path,
    or a URL read through this node's copy (:func:`codeprefs.core.inputs.local_input`; the
    manifest's ``ray.scratch_dir`` is ``scratch_dir``)."""
    shown = display_url(path) if is_remote(path) else path
    try:
        data = json.loads(local_input(path, "allowlist", scratch_dir).read_text(encoding="utf-8"))
    except StorageError:
        raise
    except (OSError, ValueError) as error:
        raise ValueError(f"allowlist {shown}: cannot read it as JSON: {error}") from None
    if not isinstance(data, list) or not all(isinstance(item, str) for item in data):
        raise ValueError(f"allowlist {shown}: expected a JSON array of \"owner/repo\" strings")
    return frozenset(repo_key(item) for item in data)


@dataclass(frozen=True)
class ExportRules:
    """What an export row must satisfy; allowlist files are read lazily, once per process."""

    subset: str
    licenses: frozenset[str]
    allowlists: tuple[tuple[str, str], ...] | None = None  # (language, absolute path or URL)
    scratch_dir: str | None = None  # the manifest's ray.scratch_dir: where a node copies a URL

    def allowed_repos(self, repos: list[str], path: str) -> list[str]:
        """The repositories of ``repos`` allowed for the language of ``path``, in order."""
        if self.allowlists is None:
            return repos
        languages = {language_for_path(path)}
        if is_ambiguous(path):
            languages |= {Language.C, Language.CPP}
        allowed: frozenset[str] = frozenset()
        for language, file in self.allowlists:
            if language in languages:
                allowed |= load_allowlist(file, self.scratch_dir)
        return [repo for repo in repos if repo_key(repo) in allowed]

    def row(self, label: str, position: int, record: dict[str, Any] | Malformed,
            where: Where | None = None) -> Row:
        """The work row of the record at ``position`` of export file ``label``.

        It is dropped at ``list`` when it fails a check. The id of a row that passes is a hash
        of its provenance (repositories, commit, path), so only a record repeated verbatim
        shares it (and its pair is then an exact duplicate); a refused record is named by its
        file and position instead.
        """
        row = empty_row()
        row.update(source="git", subset=self.subset, generator="commit", strict_syntax=False,
                   id=stable_id("export", label, str(position)))
        return finish_row(row, record, self._fill, where)

    def _fill(self, row: Row, record: dict[str, Any]) -> DropReason | Malformed | None:
        message = record.get("message") or record.get("subject")
        if any(record.get(name) in (None, "", []) for name in REQUIRED_FIELDS) or not message:
            return MISSING_FIELD
        wrong = _wrong_type(record)
        if wrong:
            return Malformed(wrong)
        sha, repos = str(record["commit"]).strip().lower(), split_repos(record["repos"])
        old_file, new_file = str(record["old_file"]), str(record["new_file"])
        row.update(commit=sha, message=str(message), path=new_file,
                   repos=",".join(repos), repo=repos[0] if repos else None)
        if has_nul(str(message)):  # it becomes the pair's input
            return BINARY
        if not _SHA.fullmatch(sha):
            return BAD_SHA
        unix_time = _integer(record["unix_time"])
        if unix_time is None:
            return BAD_TIME
        row["unix_time"] = unix_time
        if not repos:
            return MISSING_FIELD
        if not all(is_repo_name(repo) for repo in repos):
            return BAD_REPO_NAME
        if not (is_safe_path(old_file) and is_safe_path(new_file)):
            return UNSAFE_PATH
        if old_file != new_file:
            return NOT_MODIFIED_IN_PLACE
        if str(record["license"]).strip().lower() not in self.licenses:
            return LICENSE_NOT_ALLOWED
        language = language_for_path(new_file)
        if language is None:
            return NOT_TARGET_LANGUAGE
        if not self.allowed_repos(repos, new_file):
            return NOT_IN_ALLOWLIST
        row["language"] = None if is_ambiguous(new_file) else language.value  # .h: decided later
        row["id"] = stable_id("export", row["repos"], sha, new_file)
        return None


_TEXT_FIELDS = ("commit", "license", "old_file", "new_file", "subject", "message")


def _wrong_type(record: dict[str, Any]) -> str | None:
    """What is wrong with the types of ``record``'s fields (``None``: nothing)."""
    for name in _TEXT_FIELDS:
        value = record.get(name)
        if value is not None and not isinstance(value, str):
            return f"field {name!r} is {type(value).__name__}, expected text"
    repos = record["repos"]
    if not (isinstance(repos, str) or (isinstance(repos, list) and all(isinstance(r, str) for r in repos))):
        return f"field 'repos' is {type(repos).__name__}, expected text or a list of text"
    if not isinstance(record["unix_time"], int | float | str):
        return f"field 'unix_time' is {type(record['unix_time']).__name__}, expected a number"
    return None


_INT64 = 2**63


def _integer(value: Any) -> int | None:
    """``value`` as a time in seconds, or ``None`` when it is not a 64-bit integer."""
    if isinstance(value, bool):
        return None
    number: int | None = None
    if isinstance(value, int):
        number = value
    elif isinstance(value, float) and value.is_integer():
        number = int(value)
    elif isinstance(value, str) and re.fullmatch(r"-?\d{1,12}", value.strip()):
        number = int(value)
    return number if number is not None and -_INT64 <= number < _INT64 else None
