"""The stages every row passes after its source: validate, judge, clean and write.

Each reads the Parquet files of the stage before it and keeps its own under its fingerprint
(see :mod:`codeprefs.pipelines.stagecache`); rows are marked dropped, never removed, until the writer
counts and writes them (:mod:`codeprefs.pipelines.shards`).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pyarrow as pa

from codeprefs.core.files import file_sha256, json_bytes
from codeprefs.core.layout import LLM_CACHE_DIR
from codeprefs.core.inputs import input_location, local_input
from codeprefs.core.localpaths import resolve_path
from codeprefs.core.store import Store, local_cache_dir, read_parquet
from codeprefs.pipelines.manifest import Manifest
from codeprefs.filters.dedupe import BenchmarkError, decontaminate, index_for, near_dedupe
from codeprefs.filters.dedupe.decontaminate import BenchmarkIndex
from codeprefs.filters.length import LengthError, LengthSettings, PairBudget, tokenizer_fingerprint
from codeprefs.filters.validation import ValidationSettings
from codeprefs.pipelines import progress
from codeprefs.pipelines.errors import BuildError
from codeprefs.pipelines.judge import STATS_DIR as JUDGE_STATS_DIR
from codeprefs.pipelines.judge import judge_step, llm_totals
from codeprefs.pipelines.shards import WritePartition, add_partition_column
from codeprefs.pipelines.recipes import not_fingerprinted
from codeprefs.pipelines.stagecache import StageDir, write_unit
from codeprefs.pipelines.steps import BudgetPairs, Chain, ValidatePairs
from codeprefs.pipelines.synthesis.llm import LLMError

def run_dataset_stage(name: str, stage_fingerprint: str, files: list[str], store: Store,
                      transform: Callable[[Any], Any], log: Callable[[str], None]) -> list[str]:
    """Read ``files``, apply ``transform`` (a Ray dataset to a Ray dataset), keep the result.

    Unlike a source stage it is redone whole when it did not finish (it has no units).
    """
    stage = StageDir(store, name, stage_fingerprint)
    if stage.done:
        log(f"{name}: reusing {stage.rows()} rows")
        return stage.files()
    stage.clear()
    rows_in = progress.file_rows(files)
    tracker = progress.stage(name, rows_in, log, unit="rows")
    rows = transform(read_parquet(files, schema=None) if files else None)
    if rows is not None:
        progress.collect(rows.map_batches(_write_block, fn_kwargs={"store": store, "prefix": stage.prefix},
                                          batch_size=None, batch_format="pyarrow").iter_rows(),
                         tracker, lambda block: (block["rows"], block["rows"], block["kept"]))
    tracker.finish()
    stage.mark_done()
    return stage.files()


@dataclass(frozen=True)
class ValidateRecipe:
    """Everything the validate stage's steps are built from; its fingerprint hashes this, so a
    setting cannot reach the steps without reaching the fingerprint (see
    :mod:`codeprefs.pipelines.recipes`)."""

    validation: ValidationSettings
    comment_only: str  # filters.criteria.comment_only
    length: LengthSettings | None  # filters.length as written (None: no budget)
    tokenizer_files: list[Any] | None  # the tokenizer's files and hashes: a new one reruns the stage
    budget: PairBudget | None = not_fingerprinted("made of `length`, its tokenizer resolved against the "
                                                  "manifest's folder; `tokenizer_files` hashes it")
    batch_rows: int = not_fingerprinted("rows per batch: the same rows come out of any batching",
                                        default=1024)

    def step(self) -> Chain:
        return Chain([ValidatePairs(self.validation, self.comment_only),
                      *([BudgetPairs(self.budget)] if self.budget is not None else [])])


def validate_recipe(manifest: Manifest) -> ValidateRecipe:
    """The validate stage of ``manifest``; a tokenizer that cannot be loaded fails here, before
    any Ray work."""
    budget = length_budget(manifest)
    files = None
    if budget is not None and budget.tokenizer is not None:
        try:
            files = tokenizer_fingerprint(budget.tokenizer)
        except LengthError as error:
            raise BuildError(str(error)) from None
    filters = manifest.filters
    return ValidateRecipe(filters.validation, filters.criteria.comment_only, filters.length, files, budget,
                          manifest.ray.batch_rows)


def run_validate(recipe: ValidateRecipe, stage_fingerprint: str, files: list[str], store: Store,
                 log: Callable[[str], None]) -> list[str]:
    """The ``validate`` stage: tree-sitter validation of both sides, then the length budget."""
    step = recipe.step()
    return run_dataset_stage(
        "validate", stage_fingerprint, files, store, log=log,
        transform=lambda rows: rows and rows.map_batches(step, batch_size=recipe.batch_rows,
                                                         batch_format="pyarrow"))


def run_clean(manifest: Manifest, benchmarks: BenchmarkIndex | None, stage_fingerprint: str, files: list[str],
              store: Store, log: Callable[[str], None]) -> tuple[list[str], dict[str, Any]]:
    """The ``clean`` stage and its statistics (read back, marked ``reused``, when it is reused)."""
    steps: dict[str, Any] = {}
    files = run_dataset_stage("clean", stage_fingerprint, files, store,
                              clean_transform(manifest, benchmarks, steps), log)
    stats_file = StageDir(store, "clean", stage_fingerprint).relative("stats.json")
    if steps:
        store.write_bytes(stats_file, json_bytes(steps))
    elif (saved := store.read_bytes(stats_file)) is not None:
        steps = {**json.loads(saved), "reused": True}
    return files, steps


def run_judge(manifest: Manifest, stage_fingerprint: str, files: list[str], store: Store,
              log: Callable[[str], None]) -> tuple[list[str], dict[str, Any]]:
    """The ``judge`` stage (:mod:`codeprefs.pipelines.judge`) and what it cost: requests, tokens and cache
    hits of this run (none when an unchanged stage is reused)."""
    stage = StageDir(store, "judge", stage_fingerprint)
    reused = stage.done
    stats = stage.relative(JUDGE_STATS_DIR)
    try:
        step = judge_step(manifest.judge, local_cache_dir(store, LLM_CACHE_DIR), store, stats)
    except LLMError as error:
        raise BuildError(str(error)) from None
    files = run_dataset_stage(
        "judge", stage_fingerprint, files, store, log=log,
        transform=lambda rows: rows and rows.map_batches(step, batch_size=manifest.ray.batch_rows,
                                                         batch_format="pyarrow"))
    totals = llm_totals(store, stats)
    return files, ({key: 0 for key in totals} | {"reused": True}) if reused else {**totals, "reused": False}


def _write_block(block: pa.Table, store: Store, prefix: str) -> pa.Table:
    import uuid

    rows = write_unit(store, f"{prefix}/unit-{uuid.uuid4().hex}.parquet", [block])
    return pa.table({"rows": [rows], "kept": [block["drop_reason"].null_count]})


def length_budget(manifest: Manifest) -> PairBudget | None:
    """The length budget of ``filters.length`` (``None`` when not set); a tokenizer folder is
    read relative to the manifest, and one that cannot be loaded fails before any Ray work."""
    settings = manifest.filters.length
    if settings is None:
        return None
    tokenizer = settings.tokenizer
    if tokenizer is not None:
        local = resolve_path(tokenizer, manifest.base_dir)
        if local.is_dir() or tokenizer.startswith(("/", "./", "../", "~")):
            tokenizer = str(local)
    budget = PairBudget(settings.model_copy(update={"tokenizer": tokenizer}))
    if tokenizer is not None:
        try:
            budget.encoder()
        except LengthError as error:
            raise BuildError(str(error)) from None
    return budget


def load_benchmarks(manifest: Manifest) -> BenchmarkIndex | None:
    """Index the decontamination benchmarks up front, so a bad one fails before any Ray work."""
    if manifest.decontaminate is None:
        return None
    try:
        return index_for(manifest.decontaminate, manifest.base_dir, manifest.ray.scratch_dir)
    except BenchmarkError as error:
        raise BuildError(f"decontaminate.benchmarks: {error}") from None


def clean_fingerprint_settings(manifest: Manifest) -> dict[str, Any]:
    """The settings and inputs of the clean stage (empty: the stage is skipped)."""
    settings: dict[str, Any] = {}
    if manifest.decontaminate is not None:
        files = []
        for name in manifest.decontaminate.benchmarks:
            # a URL's copy on this node: its files hash as the same files on disk would
            path = local_input(input_location(name, manifest.base_dir), "benchmark", manifest.ray.scratch_dir)
            for file in sorted(path.rglob("*")) if path.is_dir() else [path]:
                if file.is_file():
                    files.append([str(file.relative_to(path.parent)), file_sha256(file)])
        settings["decontaminate"] = {**manifest.decontaminate.model_dump(mode="json"), "files": files}
    if manifest.dedupe.near is not None:
        settings["near"] = manifest.dedupe.near.model_dump(mode="json")
    return settings


def clean_transform(manifest: Manifest, benchmarks: BenchmarkIndex | None, stats: dict[str, Any]):
    """Decontaminate, then near-dedupe, as the manifest asks (marking rows, never dropping them).

    Each step's statistics go into ``stats`` for the run record.
    """

    def transform(rows):
        if rows is None:
            return None
        if manifest.decontaminate is not None and benchmarks is not None:
            stats["decontaminate"] = {}
            rows = decontaminate(rows, manifest.decontaminate, index=benchmarks,
                                 stats=stats["decontaminate"]).materialize()
        if manifest.dedupe.near is not None:
            stats["near_dedupe"] = {}
            rows = near_dedupe(rows, manifest.dedupe.near, stats=stats["near_dedupe"]).materialize()
        return rows

    return transform


# The most rows, kept and dropped, that one write task is given. Each shard's rows, its rejects
# included, meet in one task, so a build that drops most of many rows (an export of millions of
# commits) is cut into more shards than its pairs' bytes need: about 0.9 GB of Arrow a task at
# the ~430 B of a typical row, where one shard would hold them all.
MAX_ROWS_PER_SHARD = 2_000_000


def write_shards(files: list[str], store: Store, manifest: Manifest,
                 log: Callable[[str], None] = lambda line: None) -> list[dict[str, Any]]:
    """The write stage: partition, exact-dedupe and write; returns the writers' summaries.

    Shards: enough that none passes ``output.max_shard_bytes`` of pairs, nor
    :data:`MAX_ROWS_PER_SHARD` rows in all.
    """
    out = manifest.output
    rows = read_parquet(files)
    payload = sum(part["bytes"] for part in rows.map_batches(_payload_bytes, batch_format="pyarrow").take_all())
    rows_in = progress.file_rows(files)
    count = max(1, math.ceil(payload / out.max_shard_bytes), math.ceil(rows_in / MAX_ROWS_PER_SHARD))
    writer = WritePartition(store, count, manifest.dedupe.exact, out.rejects.sample_rate,
                            out.compression_level, out.row_group_rows)
    tracker = progress.stage("write", count, log, unit="shards", rows_in=rows_in)
    return progress.collect(
        rows.map_batches(add_partition_column, fn_kwargs={"count": count}, batch_format="pyarrow")
        .groupby("partition", num_partitions=count)
        .map_groups(writer.write, batch_format="pyarrow")
        .iter_rows(), tracker, _written)


def _written(summary: dict[str, Any]) -> tuple[int, int, int]:
    """Progress of the write stage from one summary row: a partition's kept count finishes it."""
    if summary["kind"] == "count" and summary["reason"] is None:
        return 1, 0, summary["rows"]
    return 0, 0, 0


def _payload_bytes(batch: pa.Table) -> pa.Table:
    import pyarrow.compute as pc

    return pa.table({"bytes": [pc.sum(batch["row_bytes"]).as_py() or 0]})
