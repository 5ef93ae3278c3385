"""The ``git`` source kind: single-file commits mined from git repositories.

Planning pins each repository to a commit (a few look-ups at a time: ``ls-remote`` of a URL
waits on the network); a local repository is copied into a clone first, and its
revision read there, so no git command runs in the repository itself. Clones live in the
node-local scratch folder (:mod:`codeprefs.core.scratch`): planning's on the driver, and a
worker on another node clones again there, pinned to the same commit. One unit is one
repository at its pinned commit; its rows come from :class:`~codeprefs.pipelines.steps.ListCommits`, the
commit filters, :class:`~codeprefs.pipelines.steps.ReadContents` and the pairing.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import Field, field_validator, model_validator

from codeprefs.core.patterns import expand_patterns
from codeprefs.core.redact import public_url
from codeprefs.pipelines.recipes import not_fingerprinted
from codeprefs.pipelines.sources.base import PlanContext, Planned, SourceError, SourceSettings, SourceWork, UnitPipeline
from codeprefs.pipelines.sources.commits import CommitSteps
from codeprefs.pipelines.sources.gitrepo import GitError, RepoSpec, ResolvedRepo, resolve
from codeprefs.pipelines.steps import Chain, ListCommits, ReadContents, SplitCommits, repo_task

_PUBLIC_NAME = re.compile(r"^[A-Za-z0-9_.-]+(/[A-Za-z0-9_.-]+)*$")


class RepoEntry(SourceSettings):
    """A repository with the public name its rows carry: ``{path: /abs/x.git, name: org/x}``.

    ``path`` (or ``url``) takes anything a plain ``repos`` entry takes; ``name`` replaces the
    name otherwise derived from it (see :mod:`codeprefs.pipelines.sources.reponame`).
    """

    path: str | None = None
    url: str | None = None
    name: str | None = None

    @model_validator(mode="after")
    def _one_location(self) -> RepoEntry:
        if (self.path is None) == (self.url is None) or not (self.path or self.url or "").strip():
            raise ValueError("give exactly one of path or url")
        if self.name is not None:
            public = "://" in self.name and public_url(self.name) == self.name
            if not (public or (_PUBLIC_NAME.match(self.name) and ".." not in self.name.split("/"))):
                raise ValueError(f"name {self.name!r} must be a public name such as owner/repo "
                                 "(no local path, no credentials)")
        return self

    @property
    def location(self) -> str:
        return self.path or self.url or ""


class GitSource(SourceSettings):
    """Mine single-file commits from git repositories (local paths, clone URLs, bundles)."""

    paths_key: ClassVar[str] = "repos"

    type: Literal["git"]
    repos: list[str | RepoEntry] = Field(min_length=1)
    rev: str = "HEAD"
    subset: str = "commits"
    max_commits: int | None = Field(default=None, ge=1)  # per repository, newest first
    on_error: Literal["fail", "skip"] = "fail"  # a broken repository stops the run, or is counted
    license: str | None = None  # declared for the dataset card, e.g. "mit" or "apache-2.0"
    # per clone or fetch of one repository; past it git and its helpers are killed
    clone_timeout_s: float = Field(default=3600, gt=0)

    @field_validator("repos")
    @classmethod
    def _no_blank(cls, repos: list[str | RepoEntry]) -> list[str | RepoEntry]:
        for repo in repos:
            if isinstance(repo, str) and not repo.strip():
                raise ValueError("a repository entry is empty")
        return repos

    def expanded(self, base_dir: Path) -> GitSource:
        return self.model_copy(update={"repos": [  # an entry with a name is never a glob
            expanded for repo in self.repos
            for expanded in (expand_patterns([repo], base_dir, repositories=True) if isinstance(repo, str)
                             else [repo])]})

    def specs(self, base_dir: Path) -> list[RepoSpec]:
        return [RepoSpec.parse(entry, base_dir) if isinstance(entry, str)
                else RepoSpec.parse(entry.location, base_dir, entry.name) for entry in self.repos]


Pinned = tuple[int, GitSource, ResolvedRepo | None, str | None]


def resolve_repositories(sources: Sequence[tuple[int, GitSource]], base_dir: Path, workers: int = 16,
                         cache_dir: Path | None = None) -> list[Pinned]:
    """Pin each repository of ``sources`` to a commit: (source index, source, pinned repo, error).

    A repository that fails is an error unless its source says ``on_error: skip``; then its
    error text is returned in place of the pinned repository.
    """
    jobs = [(index, source, spec) for index, source in sources for spec in source.specs(base_dir)]
    _check_unique_names([(index, spec) for index, _, spec in jobs])

    def pin(job: tuple[int, GitSource, RepoSpec]) -> Pinned:
        index, source, spec = job
        try:
            return index, source, resolve(spec, source.rev, cache_dir=cache_dir,
                                          clone_timeout=source.clone_timeout_s), None
        except GitError as error:
            if source.on_error != "skip":
                raise SourceError(f"sources.{index}.repos: {error}") from None
            return index, source, None, str(error)

    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(pin, jobs))


def _check_unique_names(specs: list[tuple[int, RepoSpec]]) -> None:
    """Two different repositories must not share a public name (their rows would mix)."""
    seen: dict[str, tuple[int, RepoSpec]] = {}
    for index, spec in specs:
        first = seen.setdefault(spec.name, (index, spec))
        if first[1].location != spec.location:
            raise SourceError(
                f"sources.{index}.repos: {first[1].location} (sources.{first[0]}) and {spec.location} "
                f"would both be named {spec.name!r} in the rows: give one a name, e.g. "
                f"{{path: {spec.location}, name: owner/{spec.name.rsplit('/', 1)[-1]}}}")


def _input_record(source: GitSource, repo: ResolvedRepo | None, error: str | None) -> dict[str, Any]:
    if repo is None:  # GitError messages start with the repository's name
        return {"type": source.type, "repo": (error or "?").split(": ")[0], "rev": source.rev,
                "sha": None, "status": "error", "error": error}
    return {"type": source.type, "repo": repo.spec.name, "kind": repo.spec.kind, "rev": repo.rev,
            "sha": repo.sha, "status": repo.status}


@dataclass(frozen=True)
class GitRecipe:
    """Everything a git source's rows are built from."""

    # The source's settings but its repositories, which the units are (a repository more or
    # less reruns only that repository).
    source: dict[str, Any]
    commits: CommitSteps
    scratch_dir: str | None = not_fingerprinted(
        "the manifest's node-local scratch folder, resolved by each worker on its node: where clones "
        "live does not change rows (a clone holds the pinned commit or fails)")
    batch_rows: int = not_fingerprinted("rows per batch: the same rows come out of any batching",
                                        default=1024)

    def pipeline(self, split: SplitCommits | None) -> UnitPipeline:
        return UnitPipeline(ListCommits(self.scratch_dir), [Chain([
            *self.commits.filters(split), ReadContents(max_bytes=self.commits.max_bytes),
            *self.commits.pairing()])], self.batch_rows)

    def listing(self, units: list[dict[str, Any]], resources: dict[str, float] | None = None) -> Any:
        """Every commit of ``units`` as listed rows, one Ray task per repository (for the split)."""
        import ray.data

        return ray.data.from_items(units, override_num_blocks=len(units)).map_batches(
            ListCommits(self.scratch_dir), batch_size=1, batch_format="pyarrow", resources=resources or None)


class GitKind:
    type: ClassVar[str] = "git"
    settings: ClassVar[type[GitSource]] = GitSource
    mines_commits: ClassVar[bool] = True

    def plan(self, sources: Sequence[tuple[int, GitSource]], context: PlanContext) -> Planned:
        planned = Planned()
        units: dict[int, list[dict[str, Any]]] = {index: [] for index, _ in sources}
        for index, source, repo, error in resolve_repositories(sources, context.base_dir,
                                                               cache_dir=context.planning_clones()):
            planned.inputs.append((index, _input_record(source, repo, error)))
            if repo is not None and repo.status == "ok":
                units[index].append(repo_task(repo, source.subset, source.max_commits, source.on_error,
                                              source.clone_timeout_s))
        for index, source in sources:
            if not units[index]:
                continue  # every repository failed (and was skipped) or is empty
            recipe = GitRecipe(source.model_dump(mode="json", exclude={"repos"}), context.commit_steps,
                               context.scratch_dir, context.batch_rows)
            planned.works.append(SourceWork(index, units[index], recipe, split_listing=recipe.listing))
        return planned
