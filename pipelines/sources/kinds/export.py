"""The ``export`` source kind: commits listed in an export file, contents fetched from remotes.

Each row of an export names one single-file commit and the repositories that hold it (see
:mod:`codeprefs.pipelines.sources.export` for its checks). Planning cuts the files into chunks of about
``unit_rows`` rows from their sizes and metadata (:func:`~codeprefs.core.records.plan_chunks`),
checks the allowlists and hashes every file it reads; a unit is one chunk.
Its rows come from :class:`~codeprefs.pipelines.steps.ListRecords`, the commit filters (criteria are
labelled before any fetch, so no fetch is spent on a commit without one),
:class:`~codeprefs.pipelines.steps.FetchContents` and the pairing.
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import Field, field_validator

from codeprefs.core.patterns import expand_patterns
from codeprefs.core.files import file_sha256
from codeprefs.core.inputs import input_location, local_input
from codeprefs.core.locations import require_local
from codeprefs.core.storage import is_remote, remote_filesystem
from codeprefs.core.schema import parse_language
from codeprefs.pipelines.recipes import not_fingerprinted
from codeprefs.pipelines.sources.base import (
    PathList,
    PlanContext,
    Planned,
    SourceSettings,
    SourceWork,
    UnitPipeline,
    plan_each,
)
from codeprefs.pipelines.sources.commits import CommitSteps
from codeprefs.pipelines.sources.export import ExportRules, load_allowlist
from codeprefs.core.records import UNIT_ROWS, plan_chunks
from codeprefs.pipelines.sources.remote import ClusterHostSlots, FetchSettings
from codeprefs.pipelines.steps import Chain, FetchContents, ListRecords, SplitCommits

# The paper's permissive licences (SPDX ids, lower case), the default licence allowlist.
PERMISSIVE_LICENSES: tuple[str, ...] = (
    "mit", "apache-2.0", "bsd-2-clause", "bsd-3-clause", "isc", "cc0-1.0", "epl-1.0", "mpl-2.0",
    "unlicense", "agpl-3.0", "lgpl-2.1", "artistic-2.0",
)


class ExportSource(SourceSettings):
    """Commits listed in an export file (the paper's schema); file contents fetched from remotes.

    Each row has ``commit, subject, message, repos, license, old_file, new_file, unix_time``
    (``repos``: comma-separated ``owner/repo`` names that hold the commit, tried in order).
    """

    type: Literal["export"]
    path: PathList  # JSONL or Parquet files or globs, relative to the manifest's folder, or URLs
    remote: str = "https://github.com/{repo}.git"  # clone URL of a repository named in `repos`
    licenses: list[str] = Field(default_factory=lambda: list(PERMISSIVE_LICENSES))
    allowlists: dict[str, str] | None = None  # language -> JSON array of "owner/repo" (a path or URL)
    max_repo_tries: int = Field(default=3, ge=1)  # repositories of `repos` tried per commit
    fetch_timeout_s: float = Field(default=120, gt=0)  # per git command; the process is killed
    retries: int = Field(default=2, ge=0)  # extra attempts after a transient failure
    retry_backoff_s: float = Field(default=1.0, ge=0)  # doubled after each attempt
    max_concurrent_fetches: int = Field(default=8, ge=1)  # per host, across the whole cluster
    subset: str = "commits"
    # Rows of a unit (one Ray task): about this many per unit whatever the file's layout (a
    # Parquet row group larger than it is cut), so a large export keeps every CPU busy.
    unit_rows: int = Field(default=UNIT_ROWS, ge=1)

    @field_validator("remote")
    @classmethod
    def _remote_has_repo(cls, remote: str) -> str:
        if "{repo}" not in remote:
            raise ValueError("must contain {repo}, e.g. https://github.com/{repo}.git")
        try:
            remote.format(repo="owner/name")
        except (KeyError, IndexError, ValueError) as error:
            raise ValueError(f"only {{repo}} may be substituted: {error}") from None
        return remote

    @field_validator("licenses")
    @classmethod
    def _lower_licenses(cls, licenses: list[str]) -> list[str]:
        return list(dict.fromkeys(license.strip().lower() for license in licenses if license.strip()))

    @field_validator("allowlists")
    @classmethod
    def _known_languages(cls, allowlists: dict[str, str] | None) -> dict[str, str] | None:
        if allowlists is None:
            return None
        checked = {}
        for language, path in allowlists.items():
            if is_remote(path):
                remote_filesystem(path, "allowlist")  # a scheme nothing reads fails here; no request is sent
            else:
                require_local(path)
            checked[parse_language(language).value] = path
        return checked

    def expanded(self, base_dir: Path) -> ExportSource:
        return self.model_copy(update={"path": expand_patterns(self.path, base_dir)})

    def fetch_settings(self) -> FetchSettings:
        return FetchSettings(remote=self.remote, timeout_s=self.fetch_timeout_s, retries=self.retries,
                             backoff_s=self.retry_backoff_s, max_repo_tries=self.max_repo_tries,
                             max_concurrent=self.max_concurrent_fetches)


@dataclass(frozen=True)
class ExportRecipe:
    """Everything an export source's rows are built from."""

    source: dict[str, Any]  # its settings but its paths, which the units and `files` cover
    files: list[dict[str, Any]]  # every export and allowlist file read: path, bytes, sha256
    commits: CommitSteps
    rules: ExportRules = not_fingerprinted("made of `source` and the allowlists, which `files` hashes")
    fetch: FetchSettings = not_fingerprinted("made of `source`")
    scratch_dir: str | None = not_fingerprinted(
        "the manifest's node-local scratch folder, resolved by each worker on its node: where fetched "
        "remotes live does not change rows (a fetch gives the exported commit or fails)")
    batch_rows: int = not_fingerprinted("rows per batch: the same rows come out of any batching",
                                        default=1024)

    def pipeline(self, split: SplitCommits | None) -> UnitPipeline:
        # One fetch slot pool per host for the whole cluster (a Ray actor: made in the session).
        slots = ClusterHostSlots(self.fetch.max_concurrent, lease_s=self.fetch.timeout_s + 60)
        fetch = FetchContents(self.fetch, self.scratch_dir, self.rules,
                              self.commits.max_bytes, slots)
        return UnitPipeline(ListRecords(self.rules, scratch_dir=self.scratch_dir), [Chain(self.commits.filters(split)), fetch,
                                                      Chain(self.commits.pairing())], self.batch_rows)

    def listing(self, units: list[dict[str, Any]], resources: dict[str, float] | None = None) -> Any:
        """Every record of ``units`` as listed rows, one Ray task per chunk (for the split)."""
        import ray.data

        return ray.data.from_items(units, override_num_blocks=len(units)).map_batches(
            ListRecords(self.rules, scratch_dir=self.scratch_dir), batch_size=1, batch_format="pyarrow",
            resources=resources or None)


def fingerprint_files(files: list[tuple[dict[str, Any], Path]], workers: int = 8) -> list[dict[str, Any]]:
    """Each ``(record, path)`` as its input record with the file's size and sha256."""
    def one(job: tuple[dict[str, Any], Path]) -> dict[str, Any]:
        record, path = job
        return {**record, "bytes": path.stat().st_size, "sha256": file_sha256(path)}

    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(one, files))


class ExportKind:
    type: ClassVar[str] = "export"
    settings: ClassVar[type[ExportSource]] = ExportSource
    mines_commits: ClassVar[bool] = True

    def plan(self, sources: Sequence[tuple[int, ExportSource]], context: PlanContext) -> Planned:
        return plan_each(sources, lambda index, source: self._plan_one(index, source, context))

    def _plan_one(self, index: int, source: ExportSource, context: PlanContext) -> SourceWork:
        # A URL is read (planned, hashed) through this node's copy; units and rules keep the URL,
        # and each worker reads it through its own node's copy.
        chunks, files = [], []
        for written in source.path:
            location = input_location(written, context.base_dir)
            path = local_input(location, "export file", context.scratch_dir)
            if not path.is_file():
                raise ValueError(f"path: no such export file: {written}")
            chunks += [replace(chunk, path=location)
                       for chunk in plan_chunks(str(path), written, chunk_rows=source.unit_rows)]
            files.append(({"type": "export", "path": written}, path))
        allowlists = None
        if source.allowlists is not None:
            allowlists = []
            for language, written in source.allowlists.items():
                location = input_location(written, context.base_dir)
                path = local_input(location, "allowlist", context.scratch_dir)
                repos = len(load_allowlist(str(path)))  # fails here, naming the file, if malformed
                allowlists.append((language, location))
                files.append(({"type": "allowlist", "language": language, "path": written, "repos": repos}, path))
        rules = ExportRules(source.subset, frozenset(source.licenses),
                            tuple(allowlists) if allowlists is not None else None, context.scratch_dir)
        recipe = ExportRecipe(source.model_dump(mode="json", exclude={"path"}), fingerprint_files(files),
                              context.commit_steps, rules, source.fetch_settings(), context.scratch_dir,
                              context.batch_rows)
        return SourceWork(index, [chunk.to_item() for chunk in chunks], recipe, split_listing=recipe.listing)
