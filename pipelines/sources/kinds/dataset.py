"""The ``dataset`` source kind: pairs from an existing preference dataset.

A ``datasets`` folder written by ``save_to_disk``, Parquet or JSON Lines files, or a Hub name.
Planning finds the files, checks that each has the columns the mapping needs and hashes them;
a unit is one chunk of a file. Rows come from :class:`~codeprefs.pipelines.steps.ListRecords` with the
source's :class:`~codeprefs.pipelines.sources.dataset.DatasetRules`, then
:class:`~codeprefs.pipelines.steps.AssemblePairs` (see :mod:`codeprefs.pipelines.sources.dataset`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import Field, field_validator, model_validator

from codeprefs.core.patterns import expand_patterns
from codeprefs.core.records import UNIT_ROWS
from codeprefs.core.schema import parse_aspect, parse_language
from codeprefs.pipelines.sources.base import (
    PathList,
    PlanContext,
    Planned,
    SourceSettings,
    SourceWork,
    UnitPipeline,
    plan_each,
)
from codeprefs.pipelines.sources.dataset import (
    DatasetColumns,
    DatasetFilter,
    DatasetRules,
    file_chunks,
    known_columns,
    plan_dataset,
)
from codeprefs.pipelines.sources.kinds.export import fingerprint_files
from codeprefs.pipelines.recipes import not_fingerprinted
from codeprefs.pipelines.steps import AssemblePairs, Chain, ListRecords


class DatasetSource(SourceSettings):
    """Pairs from an existing preference dataset: a ``datasets`` folder, files, or a Hub name."""

    type: Literal["dataset"]
    path: PathList | None = None  # a save_to_disk folder, or Parquet/JSONL files or globs (paths or URLs)
    name: str | None = None  # a Hub dataset (needs the network)
    split: str = "train"
    columns: DatasetColumns = DatasetColumns()
    language: str | None = None  # a constant, when the data have no language column
    aspect: str | None = None  # a constant, when the data have no criterion column
    filters: list[DatasetFilter] = Field(default_factory=list)
    subset: str = "dataset"
    license: str | None = None  # declared for the dataset card
    # Rows of a unit (one Ray task): about this many per unit, a Parquet row group cut if larger.
    unit_rows: int = Field(default=UNIT_ROWS, ge=1)

    @field_validator("language")
    @classmethod
    def _known_language(cls, language: str | None) -> str | None:
        return None if language is None else parse_language(language).value

    @field_validator("aspect")
    @classmethod
    def _known_aspect(cls, aspect: str | None) -> str | None:
        return None if aspect is None else parse_aspect(aspect).value

    @model_validator(mode="after")
    def _path_or_name(self) -> DatasetSource:
        if (self.path is None) == (self.name is None):
            raise ValueError("give exactly one of path (local files) or name (a Hub dataset)")
        return self

    def expanded(self, base_dir: Path) -> DatasetSource:
        if self.path is None:
            return self
        return self.model_copy(update={"path": expand_patterns(self.path, base_dir)})


@dataclass(frozen=True)
class DatasetRecipe:
    """Everything a dataset source's rows are built from."""

    source: dict[str, Any]  # its settings but its paths, which the units and `files` cover
    files: list[dict[str, Any]]  # every file read: path as written, bytes, sha256
    rules: DatasetRules
    batch_rows: int = not_fingerprinted("rows per batch: the same rows come out of any batching",
                                        default=1024)
    scratch_dir: str | None = not_fingerprinted(
        "the manifest's node-local scratch folder, where a node copies an input read from a URL: "
        "where the copy lives does not change its bytes", default=None)

    def pipeline(self, split: Any) -> UnitPipeline:
        return UnitPipeline(ListRecords(self.rules, scratch_dir=self.scratch_dir), [Chain([AssemblePairs()])], self.batch_rows)


class DatasetKind:
    type: ClassVar[str] = "dataset"
    settings: ClassVar[type[DatasetSource]] = DatasetSource
    mines_commits: ClassVar[bool] = False

    def plan(self, sources: Sequence[tuple[int, DatasetSource]], context: PlanContext) -> Planned:
        return plan_each(sources, lambda index, source: self._plan_one(index, source, context))

    def _plan_one(self, index: int, source: DatasetSource, context: PlanContext) -> SourceWork:
        rules = DatasetRules.from_source(source)
        needed = rules.needed_columns()
        files = plan_dataset(source, context.base_dir, context.scratch_dir)
        for file in files:
            columns = known_columns(file)
            missing = sorted(needed - set(columns)) if columns is not None else []
            if missing:
                raise ValueError(f"{file.label}: no column {', '.join(missing)} (it has {columns}); "
                                 "map ours to theirs with `columns:`, or give language/aspect constants")
        extra = {"name": source.name, "split": source.split} if source.name else {}
        inputs = fingerprint_files([({"type": "dataset", "path": file.label, **extra}, Path(file.local_path()))
                                    for file in files])
        recipe = DatasetRecipe(source.model_dump(mode="json", exclude={"path"}), inputs, rules,
                               context.batch_rows, context.scratch_dir)
        return SourceWork(index, [chunk.to_item() for chunk in file_chunks(files, source.unit_rows)], recipe)
