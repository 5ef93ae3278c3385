"""The ``solutions`` source kind: correct solutions with tests, turned into verified pairs.

Planning checks the toolchains the ``synthesis`` section needs (a missing one with
``on_missing_toolchain: fail`` stops the build here), records their versions (a new compiler
can change which mutants fail their tests, so it reruns the source) and cuts each file into
chunks of ``records_per_task`` records; a unit is one chunk, synthesized by
:class:`~codeprefs.pipelines.synthesis.pairs.SynthesizeSolutions` (see :mod:`codeprefs.pipelines.synthesis`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import Field, field_validator

from codeprefs.core.patterns import expand_patterns
from codeprefs.core.files import file_sha256
from codeprefs.core.inputs import input_location, local_input
from codeprefs.core.localpaths import relative_to
from codeprefs.core.storage import is_remote
from codeprefs.core.schema import parse_language
from codeprefs.pipelines.candidatestage import CandidateWork
from codeprefs.pipelines.recipes import not_fingerprinted
from codeprefs.pipelines.sources.base import PlanContext, Planned, SourceError, SourceSettings, SourceWork, UnitPipeline
from codeprefs.pipelines.sources.solutions import LanguageField, SolutionFields, SolutionsError, plan_chunks
from codeprefs.pipelines.steps import AssemblePairs, Chain
from codeprefs.pipelines.synthesis.plan import SynthesisPlan


class SolutionsSource(SourceSettings):
    """Correct solutions with tests, turned into verified pairs by ``synthesis``."""

    type: Literal["solutions"]
    path: str | list[str]  # files or globs; relative paths are read against the manifest
    format: Literal["auto", "jsonl", "parquet"] = "auto"  # auto: from the file extension
    language: str | LanguageField  # a language name, or {field: <record field>}
    fields: SolutionFields = SolutionFields()
    harness: Literal["humaneval"] = "humaneval"  # prompt + solution + "\n" + tests
    subset: str | None = None  # default: bug-injection / readability by pair kind
    records_per_task: int = Field(default=4, ge=1)  # records one Ray task synthesizes
    max_records: int | None = Field(default=None, ge=1)  # per file, the first ones
    on_error: Literal["fail", "skip"] = "fail"  # a malformed record stops the run, or is counted

    @field_validator("language")
    @classmethod
    def _known_language(cls, language: str | LanguageField) -> str | LanguageField:
        if isinstance(language, str):
            return parse_language(language).value
        return language

    @field_validator("path")
    @classmethod
    def _paths(cls, path: str | list[str]) -> list[str]:
        paths = [path] if isinstance(path, str) else path
        if not paths or any(not str(p).strip() for p in paths):
            raise ValueError("a path entry is empty")
        return paths

    def expanded(self, base_dir: Path) -> SolutionsSource:
        return self.model_copy(update={"path": expand_patterns(list(self.path), base_dir, "file", "path")})


@dataclass(frozen=True)
class SolutionsRecipe:
    """Everything a solutions source's pairs are built from."""

    source: dict[str, Any]  # its settings but its paths, which the units and `files` cover
    synthesis: Any  # the manifest's synthesis section
    files: list[dict[str, Any]]  # every file read: path as written, bytes, sha256
    toolchains: dict[str, str]  # the version line of each compiler and runtime that verifies
    model: SolutionsSource = not_fingerprinted("the whole source: `source` and the units cover it")
    plan: Any = not_fingerprinted("the SynthesisPlan made of `synthesis` and the cache folder")
    batch_rows: int = not_fingerprinted("rows per batch: the same rows come out of any batching",
                                        default=1024)

    def pipeline(self, split: Any) -> UnitPipeline:
        return UnitPipeline(self.plan.stage(self.model), [Chain([AssemblePairs()])], self.batch_rows)


class SolutionsKind:
    type: ClassVar[str] = "solutions"
    settings: ClassVar[type[SolutionsSource]] = SolutionsSource
    mines_commits: ClassVar[bool] = False

    def plan(self, sources: Sequence[tuple[int, SolutionsSource]], context: PlanContext) -> Planned:

        synthesis = SynthesisPlan(context.synthesis, context.cache_dir, context.scratch_dir)
        planned = Planned()
        for index, source in sources:
            try:
                missing = synthesis.check_toolchains(source)
            except RuntimeError as error:
                raise SourceError(f"sources.{index}: {error}") from None
            # Rows name their file in `repo` as the manifest would from its folder: never an
            # absolute local path (it would reach the shards and a publish); a URL as written.
            files = [(relative_to(name, context.base_dir)
                      if not is_remote(name) and Path(name).expanduser().is_absolute() else name,
                      input_location(name, context.base_dir)) for name in source.path]
            try:
                chunks = plan_chunks(files, source.records_per_task, source.format, source.max_records,
                                     context.scratch_dir)
            except SolutionsError as error:
                raise SourceError(f"sources.{index}.path: {error}") from None
            record = synthesis.input_record(source, chunks, missing)
            copies = [(name, local_input(location, "solutions file", context.scratch_dir))
                      for name, location in files]  # this node's copies, made by plan_chunks
            record["files"] = [{"path": name, "bytes": path.stat().st_size, "sha256": file_sha256(path)}
                               for name, path in copies]
            planned.inputs.append((index, record))
            # The pairs are not made of the candidate settings: changing them reruns no pair.
            pairs_synthesis = context.synthesis.model_copy(update={"candidates": None})
            recipe = SolutionsRecipe(source.model_dump(mode="json", exclude={"path"}), pairs_synthesis,
                                     record["files"], record["toolchains"], source, synthesis, context.batch_rows)
            work = SourceWork(index, chunks, recipe)
            if context.synthesis.candidates is not None:
                work.candidates = CandidateWork(index, chunks, synthesis.candidate_recipe(source, record["files"]))
            planned.works.append(work)
        return planned
