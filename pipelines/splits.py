"""The training and benchmark splits of commits, by commit time and by repository.

As in the paper, training pairs come from commits before a cutoff (``train_before``) and the
benchmark from commits in a later window (``benchmark: {from, to}``, ``from`` inclusive, ``to``
exclusive; dates are UTC midnights), from repositories disjoint from the training ones.

**The repository rule.** A repository is a *training repository* when its earliest commit seen
by the build (any row of a git or export source that names it and has a commit time, whether
or not the row is later dropped) is before ``train_before``. With ``repository_disjoint``, a
benchmark row is kept only if none of the repositories it names (``repos`` of an export row,
``repo`` of a git row; names compared case-insensitively) is a training repository. Every
training row names only training repositories (its own commit is before the cutoff), so no
repository is in both splits. The rule depends only on the inputs, never on the order in which
rows arrive or on how many workers there are.

The earliest commit time per repository is a Ray Data ``groupby(...).min``; the driver receives
only the names of training repositories (one per repository, never rows), which every split
task then holds as a set.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import TYPE_CHECKING, Literal

import pyarrow as pa
from pydantic import BaseModel, ConfigDict, Field, model_validator

from codeprefs.core.drops import SPLIT, DropReason
from codeprefs.core.settings import Settings
from codeprefs.core.rows import Row
from codeprefs.pipelines.sources.export import repo_key, split_repos

if TYPE_CHECKING:
    from ray.data import Dataset

OUTSIDE_TRAIN = SPLIT.reason("not_before_train_cutoff")
OUTSIDE_WINDOW = SPLIT.reason("outside_benchmark_window")
REPOSITORY_IN_TRAIN = SPLIT.reason("repository_in_train")
NO_TIME = SPLIT.reason("no_commit_time")


class BenchmarkWindow(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, validate_by_name=True,
                              validate_by_alias=True, serialize_by_alias=True)

    start: date = Field(alias="from")  # inclusive
    end: date = Field(alias="to")  # exclusive

    @model_validator(mode="after")
    def _ordered(self) -> BenchmarkWindow:
        if self.end <= self.start:
            raise ValueError("`to` must be after `from`")
        return self


class SplitConfig(Settings):
    """The training/benchmark split of commits (git and export sources) by time and repository.

    ``train``: commits before ``train_before``. ``benchmark``: commits in the window, and with
    ``repository_disjoint`` only from repositories with no commit before ``train_before`` (so
    no repository is in both). Dates are UTC midnights.
    """

    train_before: date | None = None
    benchmark: BenchmarkWindow | None = None
    keep: Literal["train", "benchmark"] = "train"
    repository_disjoint: bool = True

    @model_validator(mode="after")
    def _complete(self) -> SplitConfig:
        if self.keep == "train" and self.train_before is None:
            raise ValueError("keep: train needs train_before")
        if self.keep == "benchmark" and self.benchmark is None:
            raise ValueError("keep: benchmark needs a benchmark window")
        if self.keep == "benchmark" and self.repository_disjoint and self.train_before is None:
            raise ValueError("repository_disjoint needs train_before (it defines a training repository)")
        if self.benchmark and self.train_before and self.benchmark.start < self.train_before:
            raise ValueError("the benchmark window must start on or after train_before")
        return self



def utc_midnight(day: date) -> int:
    """The Unix time of 00:00 UTC on ``day``."""
    return int(datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp())


@dataclass(frozen=True)
class SplitRule:
    """Which commits one build keeps (see the module doc)."""

    keep: Literal["train", "benchmark"]
    train_before: int | None = None  # Unix time, exclusive
    window: tuple[int, int] | None = None  # Unix times [start, end)
    repository_disjoint: bool = True

    @classmethod
    def from_config(cls, config: SplitConfig) -> SplitRule:
        window = None
        if config.benchmark is not None:
            window = (utc_midnight(config.benchmark.start), utc_midnight(config.benchmark.end))
        cutoff = utc_midnight(config.train_before) if config.train_before else None
        return cls(config.keep, cutoff, window, config.repository_disjoint)

    @property
    def needs_training_repositories(self) -> bool:
        return self.keep == "benchmark" and self.repository_disjoint

    def reason(self, unix_time: int | None, repositories: list[str],
               training_repositories: frozenset[str] = frozenset()) -> DropReason | None:
        """``None`` to keep a commit, else why it is outside the kept split."""
        if unix_time is None:
            return NO_TIME
        if self.keep == "train":
            assert self.train_before is not None
            return None if unix_time < self.train_before else OUTSIDE_TRAIN
        assert self.window is not None
        start, end = self.window
        if not start <= unix_time < end:
            return OUTSIDE_WINDOW
        if self.repository_disjoint and any(repo in training_repositories for repo in repositories):
            return REPOSITORY_IN_TRAIN
        return None


def row_repositories(row: Row) -> list[str]:
    """The repository keys a row names: its ``repos`` (export rows) or its ``repo``."""
    if row.get("repos"):
        return [repo_key(repo) for repo in split_repos(row["repos"])]
    return [repo_key(row["repo"])] if row.get("repo") else []


_PAIRS = pa.schema([pa.field("repository", pa.string()), pa.field("unix_time", pa.int64())])


def repository_times(batch: pa.Table) -> pa.Table:
    """One (repository, commit time) row per repository each row names (rows with a time)."""
    repositories, times = [], []
    for row in batch.select(["repo", "repos", "unix_time"]).to_pylist():
        if row["unix_time"] is None:
            continue
        for repository in row_repositories(row):
            repositories.append(repository)
            times.append(row["unix_time"])
    return pa.table([pa.array(repositories, pa.string()), pa.array(times, pa.int64())], schema=_PAIRS)


def training_repositories(listings: list[Dataset], train_before: int) -> frozenset[str]:
    """The repositories whose earliest commit in ``listings`` is before ``train_before``."""
    from ray.data.context import DataContext, ShuffleStrategy

    if not listings:
        return frozenset()
    context = DataContext.get_current()
    default = context.shuffle_strategy
    # A task-based sort shuffle: the hash shuffle starts aggregator actors for every groupby,
    # which costs seconds, and the result here is one small row per repository.
    context.shuffle_strategy = ShuffleStrategy.SORT_SHUFFLE_PULL_BASED
    try:
        pairs = [listing.map_batches(repository_times, batch_format="pyarrow") for listing in listings]
        union = pairs[0].union(*pairs[1:]) if len(pairs) > 1 else pairs[0]
        earliest = union.groupby("repository", num_partitions=_partitions()).min("unix_time")
        found = earliest.map_batches(_before, fn_kwargs={"cutoff": train_before},
                                     batch_format="pyarrow")
        return frozenset(row["repository"] for row in found.take_all())
    finally:
        context.shuffle_strategy = default


def _partitions() -> int:
    """One shuffle partition per CPU of the cluster (Ray's default of hundreds is slow here)."""
    import ray

    return max(1, int(ray.cluster_resources().get("CPU", 1)))


def _before(batch: pa.Table, cutoff: int) -> pa.Table:
    import pyarrow.compute as pc

    times = batch.column(batch.num_columns - 1)  # "min(unix_time)"
    return batch.filter(pc.less(times, cutoff)).select(["repository"])
