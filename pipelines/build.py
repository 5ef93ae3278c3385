"""The build driver: manifest in, shards and ``run.json`` out, with the work done on Ray.

The driver stays thin. It validates the manifest, pins every repository to a commit (failing
fast, before any Ray work, on a missing or corrupt one), then describes the pipeline as Ray
Data stages: one ``ListCommits`` task per repository, the per-row stages in batches, one
writer task per shard partition. Only per-file summaries and per-reason counts come back to
the driver, never rows.
"""

from __future__ import annotations

import math
import time
from concurrent.futures import ThreadPoolExecutor
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from codeprefs.manifest import DatasetSource, ExportSource, GitSource, Manifest, SolutionsSource
from codeprefs.raycluster import ray_session
from filters.messages import MessageFilter
from filters.validation import ValidationConfig
from pipelines.runrecord import RUN_RECORD, code_version, funnel, write_json_atomic
from pipelines.shards import (
    WritePartition,
    add_partition_column,
    empty_shard,
    publish_staged,
    remove_stale_files,
    shard_name,
    write_parquet_atomic,
)
from pipelines.sources.dataset import DatasetRules
from pipelines.sources.export import ExportRules
from pipelines.sources.fileplan import FilePlan, plan_file_sources
from pipelines.sources.gitrepo import GitError, RepoSpec, ResolvedRepo, resolve
from pipelines.sources.remote import ClusterHostSlots, FetchSettings
from pipelines.splits import SplitRule, training_repositories
from pipelines.steps import (
    AssemblePairs,
    Chain,
    FetchContents,
    FilterMessages,
    LabelCriteria,
    ListCommits,
    ListRecords,
    ReadContents,
    RecordRules,
    SplitCommits,
    Step,
    ValidatePairs,
    repo_task,
)

CACHE_DIR = ".cache"


class BuildError(RuntimeError):
    """The build cannot start or finish; the message says which input or step is at fault."""


def resolve_inputs(manifest: Manifest, workers: int = 16) -> list[tuple[GitSource, ResolvedRepo | None, str | None]]:
    """Pin each repository of each source to a commit: (source, pinned repo, error text).

    Runs a few git look-ups at a time (``ls-remote`` of a URL waits on the network).
    """
    jobs = [(index, source, RepoSpec.parse(repo_text, manifest.base_dir))
            for index, source in enumerate(manifest.sources) if isinstance(source, GitSource)
            for repo_text in source.repos]

    def pin(job):
        index, source, spec = job
        try:
            return source, resolve(spec, source.rev), None
        except GitError as error:
            if source.on_error != "skip":
                raise BuildError(f"sources.{index}.repos: {error}") from None
            return source, None, str(error)

    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(pin, jobs))


def _input_record(source: GitSource, repo: ResolvedRepo | None, error: str | None) -> dict:
    if repo is None:  # GitError messages start with the repository's name
        return {"type": source.type, "repo": (error or "?").split(": ")[0], "rev": source.rev,
                "sha": None, "status": "error", "error": error}
    return {"type": source.type, "repo": repo.spec.name, "kind": repo.spec.kind, "rev": repo.rev,
            "sha": repo.sha, "status": repo.status}


def _listing(plan: FilePlan, rules: RecordRules):
    """One ``ListRecords`` task per chunk of the source's files."""
    import ray.data

    return ray.data.from_items([chunk.to_item() for chunk in plan.chunks],
                               override_num_blocks=len(plan.chunks)).map_batches(
        ListRecords(rules), batch_size=1, batch_format="pyarrow")


def export_rules(plan: FilePlan) -> ExportRules:
    source = plan.source
    assert isinstance(source, ExportSource)
    return ExportRules(source.subset, frozenset(source.licenses), plan.allowlists)


def git_listing(tasks: list[dict], cache_dir: Path):
    """One ``ListCommits`` task per repository: every commit, structural drops marked."""
    import ray.data

    return ray.data.from_items(tasks, override_num_blocks=len(tasks)).map_batches(
        ListCommits(str(cache_dir)), batch_size=1, batch_format="pyarrow")


def _commit_filters(manifest: Manifest, split: Step | None) -> list[Step]:
    filters = manifest.filters
    return [
        *([split] if split is not None else []),
        FilterMessages(MessageFilter(filters.message.min_length, filters.message.max_length)),
        LabelCriteria(filters.criteria.match, filters.criteria.terms_dir),
    ]


def git_rows(manifest: Manifest, tasks: list[dict], cache_dir: Path, split: Step | None = None):
    """The Ray dataset of every commit of the git sources, through the per-row stages."""
    validation = ValidationConfig(**manifest.filters.validation.model_dump())
    per_row = Chain([
        *_commit_filters(manifest, split),
        ReadContents(max_bytes=validation.max_bytes),
        AssemblePairs(),
        ValidatePairs(validation),
    ])
    return git_listing(tasks, cache_dir).map_batches(
        per_row, batch_size=manifest.ray.batch_rows, batch_format="pyarrow")


def export_rows(manifest: Manifest, plan: FilePlan, cache_dir: Path, split: Step | None = None):
    """The Ray dataset of one export source: listed, split, filtered, fetched, validated.

    Criteria are labelled before the fetch, so no fetch is spent on a commit without one.
    Fetches are bounded per host across the cluster by one slot actor per source.
    """
    source = plan.source
    assert isinstance(source, ExportSource)
    validation = ValidationConfig(**manifest.filters.validation.model_dump())
    rules = export_rules(plan)
    settings = FetchSettings(source.remote, source.fetch_timeout_s, source.retries,
                             source.retry_backoff_s, source.max_repo_tries, source.max_concurrent_fetches)
    slots = ClusterHostSlots(source.max_concurrent_fetches, lease_s=source.fetch_timeout_s + 60)
    fetch = FetchContents(settings, str(cache_dir / "remotes"), rules, validation.max_bytes, slots)
    batch_rows = manifest.ray.batch_rows
    return (
        _listing(plan, rules)
        .map_batches(Chain(_commit_filters(manifest, split)), batch_size=batch_rows,
                     batch_format="pyarrow")
        .map_batches(fetch, batch_size=batch_rows, batch_format="pyarrow")
        .map_batches(Chain([AssemblePairs(), ValidatePairs(validation)]), batch_size=batch_rows,
                     batch_format="pyarrow")
    )


def plan_solutions(manifest: Manifest, cache_dir: Path):
    """Check every solutions source and split its files into chunks, before any Ray work.

    Returns (the synthesis plan, [(source, chunks)], one input record per source). A missing
    toolchain with ``on_missing_toolchain: fail`` stops the build here; with ``skip`` it is
    logged once and recorded in the input record.
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
        files = [(name, _resolve_path(name, manifest.base_dir)) for name in source.path]
        try:
            chunks = plan_chunks(files, source.records_per_task, source.format, source.max_records)
        except SolutionsError as error:
            raise BuildError(f"sources.{index}.path: {error}") from None
        inputs.append(plan.input_record(source, chunks, missing))
        work.append((source, chunks))
    return plan, work, inputs


def solutions_rows(manifest: Manifest, plan, work):
    """The Ray dataset of the solutions sources' rows (None when there is no record).

    One Ray task per chunk reads and synthesizes its records (see
    :mod:`pipelines.synthesis.pairs`); the pairs are then assembled and validated like mined
    ones, with zero syntax errors allowed.
    """
    import ray.data

    datasets = [
        ray.data.from_items(chunks, override_num_blocks=len(chunks))
        .map_batches(plan.stage(source), batch_size=1, batch_format="pyarrow")
        for source, chunks in work if chunks
    ]
    if not datasets:
        return None
    validation = ValidationConfig(**manifest.filters.validation.model_dump())
    rows = datasets[0].union(*datasets[1:]) if len(datasets) > 1 else datasets[0]
    return rows.map_batches(Chain([AssemblePairs(), ValidatePairs(validation)]),
                            batch_size=manifest.ray.batch_rows, batch_format="pyarrow")


def _resolve_path(name: str, base_dir: Path) -> Path:
    path = Path(name).expanduser()
    return path if path.is_absolute() else base_dir / path


def dataset_rows(manifest: Manifest, plan: FilePlan):
    """The Ray dataset of one dataset source: records mapped and filtered, pairs validated."""
    source = plan.source
    assert isinstance(source, DatasetSource)
    validation = ValidationConfig(**manifest.filters.validation.model_dump())
    return _listing(plan, DatasetRules.from_source(source)).map_batches(
        Chain([AssemblePairs(), ValidatePairs(validation)]), batch_size=manifest.ray.batch_rows,
        batch_format="pyarrow")


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


def build(manifest: Manifest, output: str | Path, manifest_path: str | None = None) -> dict[str, Any]:
    """Run the whole build; returns the run record also written to ``<output>/run.json``."""
    started = time.time()
    pinned = resolve_inputs(manifest)  # fail on a missing or corrupt input before any work
    try:  # export and dataset files: chunks and fingerprints, from metadata only
        plans = plan_file_sources(manifest)
    except ValueError as error:
        raise BuildError(str(error)) from None
    output_dir = Path(output).expanduser().resolve()
    output_dir.mkdir(parents=True, exist_ok=True)
    inputs = []
    tasks = []
    for source, repo, error in pinned:
        inputs.append(_input_record(source, repo, error))
        if repo is not None and repo.status == "ok":
            tasks.append(repo_task(repo, source.subset, source.max_commits, source.on_error))
    inputs += [record for plan in plans for record in plan.inputs]
    synthesis_plan, solution_work, solution_inputs = plan_solutions(manifest, output_dir / CACHE_DIR)
    inputs.extend(solution_inputs)

    out = manifest.output
    cache_dir = output_dir / CACHE_DIR
    with ray_session(manifest.ray.address, manifest.ray.num_cpus):
        # Every source contributes a dataset of rows with WORK_SCHEMA; they are written together.
        split = commit_split(manifest, tasks, plans, cache_dir)
        parts = []
        if tasks:
            parts.append(git_rows(manifest, tasks, cache_dir, split))
        for plan in plans:
            if not plan.chunks:  # empty files: no rows
                continue
            if isinstance(plan.source, ExportSource):
                parts.append(export_rows(manifest, plan, cache_dir, split))
            else:
                parts.append(dataset_rows(manifest, plan))
        synthesized = solutions_rows(manifest, synthesis_plan, solution_work)
        if synthesized is not None:
            parts.append(synthesized)
        summaries: list[dict[str, Any]] = []
        count = 1
        if parts:
            rows = (parts[0].union(*parts[1:]) if len(parts) > 1 else parts[0]).materialize()
            payload = sum(part["bytes"] for part in rows.map_batches(_payload_bytes,
                                                                      batch_format="pyarrow").take_all())
            count = max(1, math.ceil(payload / out.max_shard_bytes))
            writer = WritePartition(str(output_dir), count, manifest.dedupe.exact,
                                    out.rejects.sample_rate, out.compression_level, out.row_group_rows)
            summaries = (
                rows.map_batches(add_partition_column, fn_kwargs={"count": count},
                                 batch_format="pyarrow")
                .groupby("partition", num_partitions=count)
                .map_groups(writer.write, batch_format="pyarrow")
                .take_all()
            )
    shards = publish_staged(output_dir, [s for s in summaries if s["kind"] == "shard"], "shard")
    if not shards:  # no row kept: one empty shard keeps the layout (datasets cannot load it)
        name = shard_name(0, 1)
        shards = [{"path": name, **write_parquet_atomic(
            empty_shard(), output_dir / name, out.compression_level, out.row_group_rows)}]
    rejects = publish_staged(output_dir, [s for s in summaries if s["kind"] == "rejects"], "rejects")
    removed = remove_stale_files(output_dir, {f["path"] for f in shards + rejects})

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

    record = {
        "name": manifest.name,
        "manifest_path": manifest_path,
        "manifest": manifest.resolved(),
        "code": code_version(),
        "inputs": inputs,
        "rows": {"total": kept + sum(drops.values()), "kept": kept, "dropped": sum(drops.values())},
        "funnel": funnel(drops, kept),
        "outputs": shards,
        "rejects": rejects,
        "removed_stale_files": removed,
        "started_at": datetime.fromtimestamp(started, UTC).isoformat(),
        "finished_at": datetime.now(UTC).isoformat(),
        "seconds": round(time.time() - started, 3),
    }
    write_json_atomic(output_dir / RUN_RECORD, record)
    return record


def _payload_bytes(batch):
    import pyarrow as pa
    import pyarrow.compute as pc

    return pa.table({"bytes": [pc.sum(batch["row_bytes"]).as_py() or 0]})
