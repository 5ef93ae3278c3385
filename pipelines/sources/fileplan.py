"""The files of the export and dataset sources, made ready by the driver before any Ray work.

For each such source: its files cut into :class:`~pipelines.sources.records.FileChunk` tasks
(from sizes and Parquet/Arrow metadata only), its allowlists checked, and a fingerprint of every
file it reads (path as the manifest names it, size, sha256) for ``run.json``'s ``inputs``.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from codeprefs.core.files import file_sha256
from codeprefs.core.localpaths import resolve_path
from codeprefs.manifest import DatasetSource, ExportSource, Manifest
from pipelines.sources.dataset import DatasetRules, file_chunks, known_columns, plan_dataset
from pipelines.sources.export import load_allowlist
from pipelines.sources.records import FileChunk, plan_chunks


@dataclass
class FilePlan:
    """One export or dataset source: its chunks, its allowlists, the files it reads."""

    index: int  # in the manifest's sources
    source: ExportSource | DatasetSource
    chunks: list[FileChunk] = field(default_factory=list)
    allowlists: tuple[tuple[str, str], ...] | None = None  # (language, absolute path)
    files: list[tuple[dict[str, Any], Path]] = field(default_factory=list)  # (record, path)
    inputs: list[dict[str, Any]] = field(default_factory=list)  # the records, fingerprinted


def plan_file_sources(manifest: Manifest, workers: int = 8) -> list[FilePlan]:
    """A :class:`FilePlan` per export and dataset source, in manifest order.

    Raises ``ValueError`` starting ``sources.<index>:`` and naming the file that is missing,
    unreadable, or lacks a mapped column.
    """
    plans = []
    for index, source in enumerate(manifest.sources):
        if not isinstance(source, ExportSource | DatasetSource):
            continue
        try:
            if isinstance(source, ExportSource):
                plans.append(_plan_export(index, source, manifest.base_dir))
            else:
                plans.append(_plan_dataset(index, source, manifest.base_dir))
        except (ValueError, OSError) as error:
            raise ValueError(f"sources.{index}: {error}") from None
    with ThreadPoolExecutor(max_workers=workers) as pool:
        for plan in plans:
            plan.inputs = list(pool.map(_fingerprint, plan.files))
    return plans


def _fingerprint(job: tuple[dict[str, Any], Path]) -> dict[str, Any]:
    record, path = job
    return {**record, "bytes": path.stat().st_size, "sha256": file_sha256(path)}


def _plan_export(index: int, source: ExportSource, base_dir: Path) -> FilePlan:
    plan = FilePlan(index, source)
    for written in source.path:
        path = resolve_path(written, base_dir)
        if not path.is_file():
            raise ValueError(f"path: no such export file: {written}")
        plan.chunks += plan_chunks(str(path), written)
        plan.files.append(({"type": "export", "path": written}, path))
    if source.allowlists is not None:
        allowlists = []
        for language, written in source.allowlists.items():
            path = resolve_path(written, base_dir)
            repos = len(load_allowlist(str(path)))  # fails here, naming the file, if malformed
            allowlists.append((language, str(path)))
            plan.files.append(({"type": "allowlist", "language": language, "path": written,
                                "repos": repos}, path))
        plan.allowlists = tuple(allowlists)
    return plan


def _plan_dataset(index: int, source: DatasetSource, base_dir: Path) -> FilePlan:
    plan = FilePlan(index, source)
    files = plan_dataset(source, base_dir)
    needed = DatasetRules.from_source(source).needed_columns()
    for file in files:
        columns = known_columns(file)
        missing = sorted(needed - set(columns)) if columns is not None else []
        if missing:
            raise ValueError(f"{file.label}: no column {', '.join(missing)} (it has {columns}); "
                             "map ours to theirs with `columns:`, or give language/aspect constants")
        extra = {"name": source.name, "split": source.split} if source.name else {}
        plan.files.append(({"type": "dataset", "path": file.label, **extra}, Path(file.path)))
    plan.chunks = file_chunks(files)
    return plan
