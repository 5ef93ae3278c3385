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
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from codeprefs.manifest import GitSource, Manifest
from codeprefs.raycluster import ray_session
from filters.dedupe import BenchmarkError, decontaminate, index_for, near_dedupe
from filters.dedupe.decontaminate import BenchmarkIndex
from filters.messages import MessageFilter
from filters.validation import ValidationConfig
from pipelines.runrecord import RUN_RECORD, code_version, funnel, write_json_atomic
from pipelines.shards import (
    WritePartition,
    add_partition_column,
    empty_shard,
    remove_stale_files,
    shard_name,
    write_parquet_atomic,
)
from pipelines.sources.gitrepo import GitError, RepoSpec, ResolvedRepo, resolve
from pipelines.steps import (
    AssemblePairs,
    Chain,
    FilterMessages,
    LabelCriteria,
    ListCommits,
    ReadContents,
    ValidatePairs,
    repo_task,
)

CACHE_DIR = ".cache"


class BuildError(RuntimeError):
    """The build cannot start or finish; the message says which input or step is at fault."""


def resolve_inputs(manifest: Manifest) -> list[tuple[GitSource, ResolvedRepo | None, str | None]]:
    """Pin each repository of each source to a commit: (source, pinned repo, error text)."""
    pinned = []
    for index, source in enumerate(manifest.sources):
        for repo_text in source.repos:
            spec = RepoSpec.parse(repo_text, manifest.base_dir)
            try:
                pinned.append((source, resolve(spec, source.rev), None))
            except GitError as error:
                if source.on_error != "skip":
                    raise BuildError(f"sources.{index}.repos: {error}") from None
                pinned.append((source, None, str(error)))
    return pinned


def _input_record(source: GitSource, repo: ResolvedRepo | None, error: str | None, name: str) -> dict:
    if repo is None:
        return {"type": source.type, "repo": name, "rev": source.rev, "sha": None,
                "status": "error", "error": error}
    return {"type": source.type, "repo": repo.spec.name, "kind": repo.spec.kind, "rev": repo.rev,
            "sha": repo.sha, "status": repo.status}


def git_rows(manifest: Manifest, tasks: list[dict], cache_dir: Path):
    """The Ray dataset of every commit of the git sources, through the per-row stages."""
    import ray.data

    filters = manifest.filters
    validation = ValidationConfig(**filters.validation.model_dump())
    per_row = Chain([
        FilterMessages(MessageFilter(filters.message.min_length, filters.message.max_length)),
        LabelCriteria(filters.criteria.match, filters.criteria.terms_dir),
        ReadContents(max_bytes=validation.max_bytes),
        AssemblePairs(),
        ValidatePairs(validation),
    ])
    return (
        ray.data.from_items(tasks, override_num_blocks=len(tasks))
        .map_batches(ListCommits(str(cache_dir)), batch_size=1, batch_format="pyarrow")
        .map_batches(per_row, batch_size=manifest.ray.batch_rows, batch_format="pyarrow")
    )


def load_benchmarks(manifest: Manifest) -> BenchmarkIndex | None:
    """Index the decontamination benchmarks up front, so a bad one fails before any Ray work."""
    if manifest.decontaminate is None:
        return None
    try:
        return index_for(manifest.decontaminate, manifest.base_dir)
    except BenchmarkError as error:
        raise BuildError(f"decontaminate.benchmarks: {error}") from None


def clean_rows(manifest: Manifest, rows, benchmarks: BenchmarkIndex | None):
    """Decontaminate, then near-dedupe ``rows`` as the manifest asks (marking, never filtering).

    Returns the rows (materialised) and each step's statistics for the run record.
    """
    report: dict[str, Any] = {}
    if manifest.decontaminate is not None and benchmarks is not None:
        stats: dict[str, Any] = {}
        rows = decontaminate(rows, manifest.decontaminate, index=benchmarks, stats=stats).materialize()
        report["decontaminate"] = stats
    if manifest.dedupe.near is not None:
        stats = {}
        rows = near_dedupe(rows, manifest.dedupe.near, stats=stats).materialize()
        report["near_dedupe"] = stats
    return rows, report


def build(manifest: Manifest, output: str | Path, manifest_path: str | None = None) -> dict[str, Any]:
    """Run the whole build; returns the run record also written to ``<output>/run.json``."""
    started = time.time()
    output_dir = Path(output).expanduser().resolve()
    output_dir.mkdir(parents=True, exist_ok=True)
    pinned = resolve_inputs(manifest)
    benchmarks = load_benchmarks(manifest)
    inputs = []
    tasks = []
    for source, repo, error in pinned:
        name = repo.spec.name if repo else error.split(":")[0] if error else "?"
        inputs.append(_input_record(source, repo, error, name))
        if repo is not None and repo.status == "ok":
            tasks.append(repo_task(repo, source.subset, source.max_commits, source.on_error))

    out = manifest.output
    with ray_session(manifest.ray.address, manifest.ray.num_cpus):
        # Every source contributes a dataset of rows with WORK_SCHEMA; they are written together.
        parts = []
        if tasks:
            parts.append(git_rows(manifest, tasks, output_dir / CACHE_DIR))
        summaries: list[dict[str, Any]] = []
        count = 1
        step_stats: dict[str, Any] = {}
        if parts:
            rows = (parts[0].union(*parts[1:]) if len(parts) > 1 else parts[0]).materialize()
            rows, step_stats = clean_rows(manifest, rows, benchmarks)
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
    files = {s["path"]: s for s in summaries if s["kind"] == "file"}
    for index in range(count):  # a partition that received no row still gets its (empty) shard
        name = shard_name(index, count)
        if name not in files:
            files[name] = {"path": name, **write_parquet_atomic(
                empty_shard(), output_dir / name, out.compression_level, out.row_group_rows)}
    rejects = sorted((s for s in summaries if s["kind"] == "rejects"), key=lambda s: s["path"])
    keep = set(files) | {s["path"] for s in rejects}
    removed = remove_stale_files(output_dir, keep)

    drops: Counter[tuple[str, str]] = Counter()
    kept = 0
    for s in summaries:
        if s["kind"] == "count":
            if s["reason"] is None:
                kept += s["rows"]
            else:
                drops[(s["stage"], s["reason"])] += s["rows"]
    written = sum(f["rows"] for f in files.values())
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
        "steps": step_stats,
        "outputs": [_file_record(files[name]) for name in sorted(files)],
        "rejects": [_file_record(r) for r in rejects],
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


def _file_record(summary: dict[str, Any]) -> dict[str, Any]:
    return {key: summary[key] for key in ("path", "rows", "bytes", "sha256")}
