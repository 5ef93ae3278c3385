"""The build driver: manifest in, shards and ``run.json`` out, with the work done on Ray.

The driver stays thin. It validates the manifest, pins every input (repositories to commits,
files to hashes; a missing or corrupt one fails before any work), fingerprints every stage, and
describes the work as Ray Data stages. Only per-unit and per-file summaries and per-reason
counts come back to the driver, never rows.

Stages, each kept under ``<output>/.cache/stages/<stage>/<fingerprint>/`` (see
:mod:`pipelines.stagecache`):

``source``
    one per manifest source: every unit of work (a repository, a chunk of an export, dataset or
    solutions file) becomes rows in one Ray task: listing, the split, message and criteria
    filters, file contents (read or fetched), synthesis, and the assembled pair. Finished units
    survive a crash.
``validate``
    tree-sitter validation of every pair, then the length budget (``filters.length``, see
    :mod:`filters.length`) on the final prompt and sides.
``clean``
    decontamination and near-dedupe (only when the manifest asks for them).
``write``
    exact dedupe and the shards (:mod:`pipelines.shards`), the measures of what the pairs teach
    (:mod:`pipelines.quality`, ``run.json: quality``), then ``run.json``.

A stage whose fingerprint is unchanged is not run again; a rerun of an unchanged manifest with
the same inputs does no work at all.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import math
import os
import shutil
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa

from codeprefs.core.files import file_sha256, write_json_atomic
from codeprefs.core.layout import CACHE_DIR, LLM_CACHE_DIR, LOCK, REMOTES_DIR, RUN_RECORD, RUN_STATE, STAGES_DIR
from codeprefs.core.localpaths import relative_paths, relative_to, resolve_path
from codeprefs.manifest import DatasetSource, ExportSource, GitSource, Manifest, SolutionsSource
from codeprefs.raycluster import ray_session
from codeprefs.redact import redact_data, redact_text
from filters.dedupe import BenchmarkError, decontaminate, index_for, near_dedupe
from filters.dedupe.decontaminate import BenchmarkIndex
from filters.length import LengthError, PairBudget, tokenizer_fingerprint
from filters.messages import MessageFilter
from filters.validation import ValidationConfig
from pipelines import progress
from pipelines.outputdir import describe_foreign, inspect_output, removable
from pipelines.quality import quality_summary
from pipelines.judge import STATS_DIR as JUDGE_STATS_DIR
from pipelines.judge import judge_step, llm_totals
from pipelines.rayfailure import ray_failure
from pipelines.runrecord import RecordError, code_version, funnel
from pipelines.shards import (
    WritePartition,
    add_partition_column,
    final_names,
    publish_staged,
    remove_stale_files,
)
from pipelines.scopes import ScopeSettings
from pipelines.sources.dataset import DatasetRules
from pipelines.sources.export import ExportRules
from pipelines.sources.fileplan import FilePlan, plan_file_sources
from pipelines.sources.gitrepo import GitError, RepoSpec, ResolvedRepo, resolve
from pipelines.sources.remote import ClusterHostSlots, FetchSettings
from pipelines.splits import SplitRule, training_repositories
from pipelines.synthesis.llm import LLMError
from pipelines.stagecache import StageDir, code_fingerprint, fingerprint, unit_key, write_unit
from pipelines.steps import (
    AssemblePairs,
    BudgetPairs,
    Chain,
    FetchContents,
    FilterMessages,
    LabelCriteria,
    ListCommits,
    ListRecords,
    ReadContents,
    RecordRules,
    ScopePairs,
    SplitCommits,
    Step,
    ValidatePairs,
    repo_task,
)


class BuildError(RuntimeError):
    """The build cannot start or finish; the message says which input or step is at fault."""

    def __init__(self, message: str) -> None:
        super().__init__(redact_text(message))  # a URL's credentials never reach the user's screen


# -- pinning the inputs -----------------------------------------------------------------------------


def resolve_inputs(manifest: Manifest, workers: int = 16, cache_dir: Path | None = None,
                   ) -> list[tuple[GitSource, ResolvedRepo | None, str | None]]:
    """Pin each repository of each git source to a commit: (source, pinned repo, error text).

    Runs a few git look-ups at a time (``ls-remote`` of a URL waits on the network). A local
    repository is copied into ``cache_dir`` first (a temporary folder without one), where its
    revision is read: no git command runs in the repository itself.
    """
    jobs = [(index, source, RepoSpec.parse(entry, manifest.base_dir) if isinstance(entry, str)
             else RepoSpec.parse(entry.location, manifest.base_dir, entry.name))
            for index, source in enumerate(manifest.sources) if isinstance(source, GitSource)
            for entry in source.repos]
    _check_unique_names([(index, spec) for index, _, spec in jobs])

    def pin(job):
        index, source, spec = job
        try:
            return source, resolve(spec, source.rev, cache_dir=cache_dir,
                                   clone_timeout=source.clone_timeout_s), None
        except GitError as error:
            if source.on_error != "skip":
                raise BuildError(f"sources.{index}.repos: {error}") from None
            return source, None, str(error)

    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(pin, jobs))


def _check_unique_names(specs: list[tuple[int, RepoSpec]]) -> None:
    """Two different repositories must not share a public name (their rows would mix)."""
    seen: dict[str, tuple[int, RepoSpec]] = {}
    for index, spec in specs:
        first = seen.setdefault(spec.name, (index, spec))
        if first[1].location != spec.location:
            raise BuildError(
                f"sources.{index}.repos: {first[1].location} (sources.{first[0]}) and {spec.location} "
                f"would both be named {spec.name!r} in the rows: give one a name, e.g. "
                f"{{path: {spec.location}, name: owner/{spec.name.rsplit('/', 1)[-1]}}}")


def _input_record(source: GitSource, repo: ResolvedRepo | None, error: str | None) -> dict:
    if repo is None:  # GitError messages start with the repository's name
        return {"type": source.type, "repo": (error or "?").split(": ")[0], "rev": source.rev,
                "sha": None, "status": "error", "error": error}
    return {"type": source.type, "repo": repo.spec.name, "kind": repo.spec.kind, "rev": repo.rev,
            "sha": repo.sha, "status": repo.status}


def plan_solutions(manifest: Manifest, cache_dir: Path):
    """Check every solutions source and split its files into chunks, before any Ray work.

    Returns (the synthesis plan, [(index, source, chunks)], one input record per source). A
    missing toolchain with ``on_missing_toolchain: fail`` stops the build here; with ``skip`` it
    is logged once and recorded in the input record.
    """
    from pipelines.sources.solutions import SolutionsError, plan_chunks
    from pipelines.synthesis.settings import SynthesisPlan

    plan = SynthesisPlan(manifest.synthesis, cache_dir)
    work = []
    inputs = []
    for index, source in enumerate(manifest.sources):
        if not isinstance(source, SolutionsSource):
            continue
        try:
            missing = plan.check_toolchains(source)
        except RuntimeError as error:
            raise BuildError(f"sources.{index}: {error}") from None
        # Rows name their file in `repo` as the manifest would from its folder: never an absolute
        # local path (it would reach the shards and a publish).
        files = [(relative_to(name, manifest.base_dir) if Path(name).expanduser().is_absolute() else name,
                  resolve_path(name, manifest.base_dir)) for name in source.path]
        try:
            chunks = plan_chunks(files, source.records_per_task, source.format, source.max_records)
        except SolutionsError as error:
            raise BuildError(f"sources.{index}.path: {error}") from None
        record = plan.input_record(source, chunks, missing)
        record["files"] = [{"path": name, "bytes": path.stat().st_size, "sha256": file_sha256(path)}
                           for name, path in files]
        inputs.append(record)
        work.append((index, source, chunks))
    return plan, work, inputs


# -- the source stage: units of work, each turned into rows by one task ---------------------------


class UnitPipeline:
    """What one unit of a source becomes: a listing step, then per-row steps batch by batch.

    ``listing`` takes a one-row table (the unit) and returns a table or yields tables;
    ``steps`` each take a batch table and return it with columns filled in or drops marked.
    """

    def __init__(self, listing: Callable[[pa.Table], Any], steps: list[Callable[[pa.Table], pa.Table]],
                 batch_rows: int) -> None:
        self.listing = listing
        self.steps = steps
        self.batch_rows = batch_rows

    def batches(self, unit: dict[str, Any]) -> Iterator[pa.Table]:
        listed = self.listing(pa.Table.from_pylist([unit]))
        for table in [listed] if isinstance(listed, pa.Table) else listed:
            for start in range(0, table.num_rows, self.batch_rows):
                batch = table.slice(start, self.batch_rows)
                for step in self.steps:
                    batch = step(batch)
                yield batch


_UNIT_RESULT = pa.schema([("unit_key", pa.string()), ("rows", pa.int64()), ("error", pa.string())])


class RunUnits:
    """The Ray task of the source stage: run each unit and keep its rows in the stage folder.

    A unit that raises (a corrupt repository, a malformed record) reports its error instead of
    failing the task, so the other units still finish and are kept; the driver then stops the
    build naming the unit. A worker that dies is retried by Ray.
    """

    def __init__(self, stage_path: str, pipeline: UnitPipeline) -> None:
        self.stage_path = Path(stage_path)
        self.pipeline = pipeline

    def __call__(self, batch: pa.Table) -> pa.Table:
        done = []
        for item in batch.to_pylist():
            key, unit = item["unit_key"], json.loads(item["unit"])
            try:
                rows = write_unit(self.stage_path / f"unit-{key}.parquet", self.pipeline.batches(unit))
            except Exception as error:  # reported to the driver, which stops the build
                done.append({"unit_key": key, "rows": 0, "error": _unit_error(error)})
                continue
            done.append({"unit_key": key, "rows": rows, "error": None})
        return pa.Table.from_pylist(done, schema=_UNIT_RESULT)


def _unit_error(error: Exception) -> str:
    """What the driver reports for a failed unit: a corrupt file's own message names the file."""
    from pipelines.sources.records import RecordFileError

    return str(error) if isinstance(error, RecordFileError) else f"{type(error).__name__}: {error}"


@dataclass
class SourceWork:
    """One manifest source's share of the source stage.

    Its folder is keyed by the source's settings; inside it, each unit's rows are keyed by the
    unit itself (a repository at a commit, a chunk of a file with that file's hash). A new
    commit in one repository therefore reruns that repository only, and a changed setting
    reruns the whole source.
    """

    index: int
    units: list[dict[str, Any]]
    settings: dict[str, Any]  # everything besides the units that shapes its rows
    make_pipeline: Callable[[], UnitPipeline]  # called inside the Ray session
    reused_units: int = 0

    @property
    def settings_fingerprint(self) -> str:
        return fingerprint("source", self.settings, code_fingerprint())

    @property
    def unit_keys(self) -> list[str]:
        return list(dict.fromkeys(unit_key(unit) for unit in self.units))

    def fingerprint(self) -> str:
        """What the stage's output depends on: the settings and every unit."""
        return fingerprint(self.settings_fingerprint, self.unit_keys)

    def stage(self, output_dir: Path) -> StageDir:
        return StageDir(output_dir, "source", self.settings_fingerprint)


def _commit_filters(manifest: Manifest, split: Step | None) -> list[Step]:
    filters = manifest.filters
    return [
        *([split] if split is not None else []),
        FilterMessages(MessageFilter(filters.message.min_length, filters.message.max_length)),
        LabelCriteria(filters.criteria.match, filters.criteria.terms_dir, filters.criteria.test_files),
    ]


def export_rules(plan: FilePlan) -> ExportRules:
    source = plan.source
    assert isinstance(source, ExportSource)
    return ExportRules(source.subset, frozenset(source.licenses), plan.allowlists)


def _listing(plan: FilePlan, rules: RecordRules):
    """One ``ListRecords`` task per chunk of the source's files (used by the split pre-pass)."""
    import ray.data

    return ray.data.from_items([chunk.to_item() for chunk in plan.chunks],
                               override_num_blocks=len(plan.chunks)).map_batches(
        ListRecords(rules), batch_size=1, batch_format="pyarrow")


def git_listing(tasks: list[dict], cache_dir: Path):
    """One ``ListCommits`` task per repository (used by the split pre-pass)."""
    import ray.data

    return ray.data.from_items(tasks, override_num_blocks=len(tasks)).map_batches(
        ListCommits(str(cache_dir)), batch_size=1, batch_format="pyarrow")


def commit_split(manifest: Manifest, tasks: list[dict], plans: list[FilePlan],
                 cache_dir: Path) -> SplitCommits | None:
    """The split step of the git and export sources (``None`` without a ``split`` section).

    A benchmark split with ``repository_disjoint`` first lists every commit source once more to
    find the training repositories (see :mod:`pipelines.splits`).
    """
    if manifest.split is None:
        return None
    rule = SplitRule.from_config(manifest.split)
    training: frozenset[str] = frozenset()
    if rule.needs_training_repositories:
        assert rule.train_before is not None
        listings = [git_listing(tasks, cache_dir)] if tasks else []
        listings += [_listing(plan, export_rules(plan)) for plan in plans
                     if isinstance(plan.source, ExportSource) and plan.chunks]
        training = training_repositories(listings, rule.train_before)
    return SplitCommits(rule, training)


@dataclass
class Plan:
    """Everything the driver decided before Ray starts."""

    inputs: list[dict[str, Any]]
    works: list[SourceWork]
    fingerprints: dict[str, Any] = field(default_factory=dict)


def plan_build(manifest: Manifest, output_dir: Path) -> Plan:
    """Pin the inputs and describe every source's units (no Ray needed)."""
    # fail on a missing or corrupt input before any work
    pinned = resolve_inputs(manifest, cache_dir=output_dir / CACHE_DIR)
    try:  # export and dataset files: chunks and fingerprints, from metadata only
        plans = plan_file_sources(manifest)
    except ValueError as error:
        raise BuildError(str(error)) from None
    cache_dir = output_dir / CACHE_DIR
    filters = manifest.filters
    content_cap = filters.validation.max_bytes
    inputs: list[dict[str, Any]] = []
    works: list[SourceWork] = []
    tasks_by_source: dict[int, list[dict]] = {}
    for source, repo, error in pinned:
        inputs.append(_input_record(source, repo, error))
        if repo is not None and repo.status == "ok":
            index = next(i for i, s in enumerate(manifest.sources) if s is source)
            tasks_by_source.setdefault(index, []).append(
                repo_task(repo, source.subset, source.max_commits, source.on_error,
                          source.clone_timeout_s))
    all_tasks = [task for tasks in tasks_by_source.values() for task in tasks]
    commit_settings = {"message": filters.message.model_dump(mode="json"),
                       "criteria": filters.criteria.model_dump(mode="json"), "max_bytes": content_cap,
                       "split": manifest.split.model_dump(mode="json") if manifest.split else None,
                       "pairs": manifest.pairs.model_dump(mode="json"),
                       "parse_timeout_s": filters.validation.parse_timeout_s}
    scope_settings = ScopeSettings(**manifest.pairs.model_dump(), max_bytes=content_cap,
                                   parse_timeout_s=filters.validation.parse_timeout_s)
    if manifest.split is not None:  # which repositories are training ones depends on every source
        commit_settings["split_inputs"] = fingerprint(
            all_tasks, [plan.inputs for plan in plans if isinstance(plan.source, ExportSource)])
    split_holder: dict[str, Step | None] = {}

    def split_step() -> Step | None:  # one split for every commit source, made in the session
        if "split" not in split_holder:
            split_holder["split"] = commit_split(manifest, all_tasks, plans, cache_dir)
        return split_holder["split"]

    batch_rows = manifest.ray.batch_rows
    for index, tasks in sorted(tasks_by_source.items()):
        def git_pipeline() -> UnitPipeline:
            return UnitPipeline(ListCommits(str(cache_dir)), [Chain([
                *_commit_filters(manifest, split_step()), ReadContents(max_bytes=content_cap),
                ScopePairs(scope_settings), AssemblePairs()])], batch_rows)

        source_settings = manifest.sources[index].model_dump(mode="json", exclude={"repos"})
        works.append(SourceWork(index, tasks, {"source": source_settings, **commit_settings}, git_pipeline))
    for plan in plans:
        inputs += plan.inputs
        units = [chunk.to_item() for chunk in plan.chunks]
        settings = {"source": plan.source.model_dump(mode="json", exclude={"path"}), "files": plan.inputs}
        if isinstance(plan.source, ExportSource):
            def export_pipeline(plan: FilePlan = plan) -> UnitPipeline:
                source = plan.source
                rules = export_rules(plan)
                fetch_settings = FetchSettings(source.remote, source.fetch_timeout_s, source.retries,
                                               source.retry_backoff_s, source.max_repo_tries,
                                               source.max_concurrent_fetches)
                slots = ClusterHostSlots(source.max_concurrent_fetches, lease_s=source.fetch_timeout_s + 60)
                fetch = FetchContents(fetch_settings, str(output_dir / REMOTES_DIR), rules, content_cap, slots)
                return UnitPipeline(ListRecords(rules), [Chain(_commit_filters(manifest, split_step())),
                                                         fetch, Chain([ScopePairs(scope_settings), AssemblePairs()])],
                                    batch_rows)

            works.append(SourceWork(plan.index, units, {**settings, **commit_settings}, export_pipeline))
        else:
            def dataset_pipeline(plan: FilePlan = plan) -> UnitPipeline:
                assert isinstance(plan.source, DatasetSource)
                return UnitPipeline(ListRecords(DatasetRules.from_source(plan.source)),
                                    [Chain([AssemblePairs()])], batch_rows)

            works.append(SourceWork(plan.index, units, settings, dataset_pipeline))
    synthesis_plan, solution_work, solution_inputs = plan_solutions(manifest, cache_dir)
    inputs += solution_inputs
    for (index, source, chunks), record in zip(solution_work, solution_inputs, strict=True):
        def solutions_pipeline(source: SolutionsSource = source) -> UnitPipeline:
            return UnitPipeline(synthesis_plan.stage(source), [Chain([AssemblePairs()])], batch_rows)

        works.append(SourceWork(index, chunks, {"source": source.model_dump(mode="json", exclude={"path"}),
                                                "synthesis": manifest.synthesis.model_dump(mode="json"),
                                                "files": record["files"], "toolchains": record["toolchains"]},
                                solutions_pipeline))
    works.sort(key=lambda work: work.index)
    return Plan(inputs, works)


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
    budget = PairBudget(settings.max_tokens, tokenizer, settings.max_bytes, settings.template)
    if tokenizer is not None:
        try:
            budget.encoder()
        except LengthError as error:
            raise BuildError(str(error)) from None
    return budget


def length_fingerprint_settings(manifest: Manifest) -> dict[str, Any] | None:
    """The budget's settings, with the tokenizer's files (a changed tokenizer reruns validate)."""
    if manifest.filters.length is None:
        return None
    settings = manifest.filters.length.model_dump(mode="json")
    budget = length_budget(manifest) if settings["tokenizer"] else None
    if budget is not None and budget.tokenizer is not None:
        try:
            settings["tokenizer_files"] = tokenizer_fingerprint(budget.tokenizer)
        except LengthError as error:
            raise BuildError(str(error)) from None
    return settings


def fingerprints(manifest: Manifest, works: list[SourceWork], clean: dict[str, Any]) -> dict[str, Any]:
    """Every stage's fingerprint, each covering its settings and everything upstream."""
    sources = [work.fingerprint() for work in works]
    code = code_fingerprint()
    validate = fingerprint("validate", manifest.filters.validation.model_dump(mode="json"),
                           manifest.filters.criteria.comment_only, length_fingerprint_settings(manifest),
                           sources, code)
    judged = (fingerprint("judge", manifest.judge.model_dump(mode="json"), validate, code)
              if manifest.judge is not None else None)
    before_clean = judged or validate
    cleaned = fingerprint("clean", clean, before_clean, code) if clean else before_clean
    write = fingerprint("write", manifest.dedupe.exact, manifest.output.model_dump(mode="json"), cleaned, code)
    return {"code": code, "sources": sources, "validate": validate, "judge": judged,
            "clean": cleaned if clean else None, "write": write}


def run_source_stage(work: SourceWork, output_dir: Path, log: Callable[[str], None]) -> list[str]:
    """Run the units of ``work`` whose rows are not kept yet; return the files of all its units."""
    import ray.data

    stage = work.stage(output_dir)
    stage.path.mkdir(parents=True, exist_ok=True)
    by_key = {unit_key(unit): unit for unit in work.units}
    todo = [{"unit_key": key, "unit": json.dumps(unit, sort_keys=True)}
            for key, unit in by_key.items() if not stage.unit_done(key)]
    work.reused_units = len(by_key) - len(todo)
    if work.reused_units:
        log(f"source {work.index}: reusing {work.reused_units} of {len(by_key)} units")
    if todo:
        tracker = progress.stage(f"source {work.index}", len(by_key), log, done=work.reused_units)
        results = progress.collect(
            ray.data.from_items(todo, override_num_blocks=len(todo))
            .map_batches(RunUnits(str(stage.path), work.make_pipeline()), batch_size=1, batch_format="pyarrow")
            .iter_rows(), tracker,
            lambda done: (1, done["rows"], 0 if done["error"] else progress.kept_rows(stage.unit_path(done["unit_key"]))))
        failed = [result for result in results if result["error"]]
        if failed:
            more = f" (and {len(failed) - 1} more unit(s))" if len(failed) > 1 else ""
            raise BuildError(f"sources.{work.index}: {failed[0]['error']}{more}")
    return [str(stage.unit_path(key)) for key in work.unit_keys]


def run_dataset_stage(name: str, stage_fingerprint: str, files: list[str], output_dir: Path,
                      transform: Callable[[Any], Any], log: Callable[[str], None]) -> list[str]:
    """Read ``files``, apply ``transform`` (a Ray dataset to a Ray dataset), keep the result.

    Unlike a source stage it is redone whole when it did not finish (it has no units).
    """
    import ray.data

    stage = StageDir(output_dir, name, stage_fingerprint)
    if stage.done:
        log(f"{name}: reusing {stage.rows()} rows")
        return stage.files()
    shutil.rmtree(stage.path, ignore_errors=True)
    stage.path.mkdir(parents=True)
    rows_in = progress.file_rows(files)
    tracker = progress.stage(name, rows_in, log, unit="rows")
    rows = transform(ray.data.read_parquet(files, schema=None) if files else None)
    if rows is not None:
        progress.collect(rows.map_batches(_write_block, fn_kwargs={"folder": str(stage.path)}, batch_size=None,
                                          batch_format="pyarrow").iter_rows(),
                         tracker, lambda block: (block["rows"], block["rows"], block["kept"]))
    tracker.finish()
    stage.mark_done()
    return stage.files()


def _run_judge(manifest: Manifest, stage_fingerprint: str, files: list[str], output_dir: Path,
               log: Callable[[str], None]) -> tuple[list[str], dict[str, Any]]:
    """The ``judge`` stage (:mod:`pipelines.judge`) and what it cost: requests, tokens and cache
    hits of this run (none when an unchanged stage is reused)."""
    stage = StageDir(output_dir, "judge", stage_fingerprint)
    reused = stage.done
    try:
        step = judge_step(manifest.judge, output_dir / LLM_CACHE_DIR, stage.path / JUDGE_STATS_DIR)
    except LLMError as error:
        raise BuildError(str(error)) from None
    files = run_dataset_stage(
        "judge", stage_fingerprint, files, output_dir, log=log,
        transform=lambda rows: rows and rows.map_batches(step, batch_size=manifest.ray.batch_rows,
                                                         batch_format="pyarrow"))
    totals = llm_totals(stage.path / JUDGE_STATS_DIR)
    return files, ({key: 0 for key in totals} | {"reused": True}) if reused else {**totals, "reused": False}


def _write_block(block: pa.Table, folder: str) -> pa.Table:
    import uuid

    rows = write_unit(Path(folder) / f"unit-{uuid.uuid4().hex}.parquet", [block])
    return pa.table({"rows": [rows], "kept": [block["drop_reason"].null_count]})


# -- the run ----------------------------------------------------------------------------------------


class RunLock:
    """One build at a time per output folder, and its run state (``.cache/run-state.json``).

    The state says whether the last run is ``running`` (it was interrupted: killed, or Ray died
    under it; ``--resume`` finishes it), ``failed`` (it stopped on its input or settings, which
    the user fixes; a plain rerun reuses its finished units) or ``complete``, and lists the
    shards and rejects files runs wrote in the folder (``files``), the only ones a build deletes.
    """

    def __init__(self, output_dir: Path, files: set[str] | None = None) -> None:
        self.path = output_dir / CACHE_DIR
        self.lock_file = output_dir / LOCK
        self.state = output_dir / RUN_STATE
        self.files = set(files or ())
        self.fingerprints: dict[str, Any] = {}
        self._handle = None

    def __enter__(self) -> RunLock:
        self.path.mkdir(parents=True, exist_ok=True)
        self._handle = open(self.lock_file, "w")
        try:
            fcntl.flock(self._handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise BuildError(f"another build is running on {self.path.parent}") from None
        return self

    def __exit__(self, *exc) -> None:
        fcntl.flock(self._handle, fcntl.LOCK_UN)
        self._handle.close()

    def mark(self, status: str, fingerprints: dict[str, Any]) -> None:
        self.fingerprints = fingerprints
        write_json_atomic(self.state, {"status": status, "fingerprints": fingerprints, "pid": os.getpid(),
                                       "at": datetime.now(UTC).isoformat(), "files": sorted(self.files)})

    def add_files(self, names: list[str]) -> None:
        """Record files about to be written under their final names (before they are)."""
        self.files.update(names)
        self.mark("running", self.fingerprints)


def up_to_date(output_dir: Path, write_fingerprint: str) -> dict[str, Any] | None:
    """The previous run record when it came from the same fingerprint and its files are intact."""
    record = inspect_output(output_dir).record
    if record is None or (record.get("fingerprints") or {}).get("write") != write_fingerprint:
        return None
    for item in record.get("outputs", []) + record.get("rejects", []):
        file = output_dir / item["path"]
        if not file.is_file() or file.stat().st_size != item["bytes"]:
            return None
    return record


def build(manifest: Manifest, output: str | Path, manifest_path: str | None = None, *,
          resume: bool = False, restart: bool = False, force: bool = False,
          log: Callable[[str], None] = lambda line: None) -> dict[str, Any]:
    """Run the build; return the run record (also in ``<output>/run.json``).

    An unchanged manifest over unchanged inputs returns the existing record without any work.
    A run that was interrupted (killed, or Ray died under it) must be continued with ``resume``
    (finished units and stages are reused; with nothing to finish it is a plain build) or
    discarded with ``restart``, which also rebuilds over a damaged run record or state. A run
    that failed on its input needs neither: once the input is fixed a plain rerun reuses what
    it finished. A folder holding files no codeprefs run wrote is refused unless ``force``;
    a build only ever deletes files a codeprefs run recorded there.
    """
    started = time.time()
    log = _redacting(log)
    output_dir = Path(output).expanduser().resolve()
    folder = _inspect(output_dir, restart)
    foreign = folder.foreign_files()
    if foreign and not force:
        raise BuildError(describe_foreign(output_dir, foreign))
    if foreign:
        log(f"--force: building next to {len(foreign)} file(s) no codeprefs run wrote; they are kept")
    plan = plan_build(manifest, output_dir)
    benchmarks = load_benchmarks(manifest)
    clean_settings = clean_fingerprint_settings(manifest)
    plan.fingerprints = fingerprints(manifest, plan.works, clean_settings)
    output_dir.mkdir(parents=True, exist_ok=True)
    with RunLock(output_dir) as lock:
        folder = _inspect(output_dir, restart)  # again, now that no other build can change it
        lock.files = folder.owned()
        state = folder.state or {}
        interrupted = state if state.get("status") == "running" else None
        if restart:
            shutil.rmtree(output_dir / STAGES_DIR, ignore_errors=True)
        elif interrupted and not resume:
            raise BuildError(f"{output_dir} holds an interrupted run (state {interrupted.get('at')}): rerun "
                             "with --resume to finish it, or --restart to discard its partial work")
        previous = None if restart else up_to_date(output_dir, plan.fingerprints["write"])
        if previous is not None and not interrupted:
            log("up to date: same manifest, inputs and code as the last run; nothing to do")
            return {**previous, "up_to_date": True}
        lock.mark("running", plan.fingerprints)
        try:
            record = _execute(manifest, plan, output_dir, manifest_path, started, resumed=bool(interrupted),
                              benchmarks=benchmarks, lock=lock, log=log)
        except Exception as error:
            died = ray_failure(error)
            if died is None:  # the build's own failure (an input, a setting): nothing to resume
                with contextlib.suppress(OSError):  # a full disk: the original error says so
                    lock.mark("failed", plan.fingerprints)
                raise
            # Still "running": an interrupted run, whose finished work --resume reuses.
            raise BuildError(interrupted_message(died)) from None
        lock.mark("complete", plan.fingerprints)
    return record


def interrupted_message(what_died: str) -> str:
    """What the user reads when Ray dies under a build (the run stays resumable)."""
    return (f"the build was interrupted: {what_died}. The work finished so far is kept; rerun the "
            "same command with --resume to finish the build")


def _raylet_died() -> None:
    """The local raylet died under the build: say so and end, before Ray ends the process
    without a word (exit 1). The run state still says ``running``, so ``--resume`` finishes it."""
    sys.stderr.write("error: " + interrupted_message(
        "the local Ray node (its raylet process) died (LocalRayletDiedError)") + "\n")
    sys.stderr.flush()
    os._exit(2)


def _redacting(log: Callable[[str], None]) -> Callable[[str], None]:
    return lambda line: log(redact_text(line))


def _inspect(output_dir: Path, restart: bool):
    """The output folder's record and state; a damaged one stops the build unless ``restart``."""
    try:
        return inspect_output(output_dir, ignore_damage=restart)
    except RecordError as error:
        raise BuildError(f"{error}: rerun with --restart to discard it and rebuild the output") from None


def load_benchmarks(manifest: Manifest) -> BenchmarkIndex | None:
    """Index the decontamination benchmarks up front, so a bad one fails before any Ray work."""
    if manifest.decontaminate is None:
        return None
    try:
        return index_for(manifest.decontaminate, manifest.base_dir)
    except BenchmarkError as error:
        raise BuildError(f"decontaminate.benchmarks: {error}") from None


def clean_fingerprint_settings(manifest: Manifest) -> dict[str, Any]:
    """The settings and inputs of the clean stage (empty: the stage is skipped)."""
    settings: dict[str, Any] = {}
    if manifest.decontaminate is not None:
        files = []
        for name in manifest.decontaminate.benchmarks:
            path = resolve_path(name, manifest.base_dir)
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


def _execute(manifest: Manifest, plan: Plan, output_dir: Path, manifest_path: str | None,
             started: float, resumed: bool, benchmarks: BenchmarkIndex | None, lock: RunLock,
             log: Callable[[str], None]) -> dict[str, Any]:
    fps = plan.fingerprints
    validation = ValidationConfig(**manifest.filters.validation.model_dump())
    with ray_session(manifest.ray.address, manifest.ray.num_cpus, on_raylet_death=_raylet_died):
        source_files = [f for work in plan.works for f in run_source_stage(work, output_dir, log)]
        budget = length_budget(manifest)
        validate = Chain([ValidatePairs(validation, manifest.filters.criteria.comment_only),
                          *([BudgetPairs(budget)] if budget is not None else [])])
        files = run_dataset_stage(
            "validate", fps["validate"], source_files, output_dir, log=log,
            transform=lambda rows: rows and rows.map_batches(validate, batch_size=manifest.ray.batch_rows,
                                                             batch_format="pyarrow"))
        steps: dict[str, Any] = {}
        llm = None
        if fps.get("judge") is not None:
            files, llm = _run_judge(manifest, fps["judge"], files, output_dir, log)
        if fps["clean"] is not None:
            files = run_dataset_stage("clean", fps["clean"], files, output_dir,
                                      clean_transform(manifest, benchmarks, steps), log)
            stats_file = StageDir(output_dir, "clean", fps["clean"]).path / "stats.json"
            if steps:
                write_json_atomic(stats_file, steps)
            elif stats_file.is_file():
                steps = {**json.loads(stats_file.read_text()), "reused": True}
        summaries = _write(files, output_dir, manifest, log) if files else []
        quality = quality_summary([str(output_dir / s["path"]) for s in summaries if s["kind"] == "shard"],
                                  budget.tokenizer if budget is not None else None)
    staged = {kind: [s for s in summaries if s["kind"] == kind] for kind in ("shard", "rejects")}
    earlier = set(lock.files)  # recorded before the new names are, so they stay deletable
    lock.add_files([name for kind, files in staged.items() for name in final_names(files, kind)])
    shards = publish_staged(output_dir, staged["shard"], "shard")  # none when no row was kept
    rejects = publish_staged(output_dir, staged["rejects"], "rejects")
    this_run = {f["path"] for f in shards + rejects}
    removed = remove_stale_files(output_dir, lambda relative: removable(relative, earlier, this_run))
    lock.files = this_run

    drops: Counter[tuple[str, str]] = Counter()
    kept = 0
    for s in summaries:
        if s["kind"] == "count":
            if s["reason"] is None:
                kept += s["rows"]
            else:
                drops[(s["stage"], s["reason"])] += s["rows"]
    written = sum(f["rows"] for f in shards)
    if written != kept:
        raise BuildError(f"row accounting mismatch: {kept} rows kept but {written} written")
    _prune_stages(output_dir, plan)
    stages = funnel(drops, kept)
    warnings = [] if kept else [no_pairs_warning(stages, plan.inputs)]
    for warning in warnings:
        log(f"warning: {warning}")

    record = {
        "name": manifest.name,
        "manifest_path": _manifest_path(manifest_path, output_dir),
        "manifest": manifest.resolved(),
        "code": {**code_version(), "fingerprint": fps["code"]},
        "inputs": plan.inputs,
        "fingerprints": fps,
        "resumed": resumed,
        "stages": [{"stage": "source", "source": work.index, "fingerprint": work.settings_fingerprint,
                    "units": len(work.unit_keys), "units_reused": work.reused_units} for work in plan.works],
        "rows": {"total": kept + sum(drops.values()), "kept": kept, "dropped": sum(drops.values())},
        "funnel": stages,
        "warnings": warnings,
        "steps": steps,
        **({"llm": llm} if llm is not None else {}),
        "quality": quality,
        "outputs": shards,
        "rejects": rejects,
        "removed_stale_files": removed,
        "started_at": datetime.fromtimestamp(started, UTC).isoformat(),
        "finished_at": datetime.now(UTC).isoformat(),
        "seconds": round(time.time() - started, 3),
    }
    # Published as is (and quoted by the card): no credential, no absolute local path.
    record = redact_data(relative_paths(record, manifest.base_dir))
    write_json_atomic(output_dir / RUN_RECORD, record)
    return record


def _manifest_path(manifest_path: str | None, output_dir: Path) -> str | None:
    """The manifest's path relative to the output folder (``codeprefs runs`` resolves it)."""
    if manifest_path is None:
        return None
    return os.path.relpath(Path(manifest_path).expanduser().resolve(), output_dir)


def no_pairs_warning(stages: list[dict[str, Any]], inputs: list[dict[str, Any]]) -> str:
    """Why a build kept no pair: the stage that dropped the last rows, with its reasons."""
    total = stages[0]["rows_in"] if stages else 0
    if total == 0:
        statuses = Counter(str(item.get("status", "ok")) for item in inputs)
        described = ", ".join(f"{n} {status}" for status, n in sorted(statuses.items())) or "none"
        return f"no pair kept: the sources gave no candidate row (inputs: {described}); no shard was written"
    last = next(stage for stage in stages if stage["rows_out"] == 0)
    reasons = ", ".join(f"{reason} {n}" for reason, n in sorted(last["reasons"].items(), key=lambda kv: -kv[1]))
    return (f"no pair kept: stage '{last['stage']}' dropped all {last['rows_in']} rows that reached it "
            f"({reasons}) of {total} candidate rows; no shard was written")


def _write(files: list[str], output_dir: Path, manifest: Manifest,
           log: Callable[[str], None] = lambda line: None) -> list[dict[str, Any]]:
    """The write stage: partition, exact-dedupe and write; returns the writers' summaries."""
    import ray.data

    out = manifest.output
    rows = ray.data.read_parquet(files)
    payload = sum(part["bytes"] for part in rows.map_batches(_payload_bytes, batch_format="pyarrow").take_all())
    count = max(1, math.ceil(payload / out.max_shard_bytes))
    writer = WritePartition(str(output_dir), count, manifest.dedupe.exact, out.rejects.sample_rate,
                            out.compression_level, out.row_group_rows)
    tracker = progress.stage("write", count, log, unit="shards", rows_in=progress.file_rows(files))
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


def _prune_stages(output_dir: Path, plan: Plan) -> None:
    """Drop cached stage outputs this run did not use (superseded settings, inputs or units)."""
    root = output_dir / STAGES_DIR
    keep_units: dict[str, set[str]] = {}
    for work in plan.works:
        keep_units.setdefault(work.settings_fingerprint, set()).update(
            f"unit-{key}.parquet" for key in work.unit_keys)
    for folder in sorted((root / "source").iterdir()) if (root / "source").is_dir() else []:
        if folder.name not in keep_units:
            shutil.rmtree(folder, ignore_errors=True)
            continue
        for unit in folder.glob("unit-*.parquet"):
            if unit.name not in keep_units[folder.name]:
                unit.unlink()
    used = {f"{stage}/{plan.fingerprints.get(stage)}" for stage in ("validate", "judge", "clean")}
    for stage in ("validate", "judge", "clean"):
        for folder in sorted((root / stage).iterdir()) if (root / stage).is_dir() else []:
            if f"{stage}/{folder.name}" not in used:
                shutil.rmtree(folder, ignore_errors=True)


def _payload_bytes(batch: pa.Table) -> pa.Table:
    import pyarrow.compute as pc

    return pa.table({"bytes": [pc.sum(batch["row_bytes"]).as_py() or 0]})

