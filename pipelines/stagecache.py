"""Cache-stage outputs kept on disk under their fingerprints, so reruns redo only what changed.

A **cache stage** is a phase of the build whose output is cached (``source``, ``validate``,
``judge``, ``clean``, ``candidates``; ``write`` is fingerprinted too). It is not a *drop stage*, the name a
dropped row carries in ``drop_stage`` (:mod:`codeprefs.core.drops`): one cache stage runs several
drop stages. Each cache stage writes its rows as Parquet files into
``<output>/.cache/stages/<stage>/<fingerprint>/``. A cache stage's fingerprint hashes its own
settings, the fingerprints of the cache stages it reads, the input fingerprints (pinned commits,
file hashes) and the code fingerprint, so a change anywhere upstream gives new fingerprints from
there on, and an unchanged cache stage finds its finished output again.

Work is written in **units**: ``unit-<key>.parquet``, through a temporary name and a rename,
so a crash never leaves half a unit. In the source stage a unit is a repository at a commit or a
chunk of a file, keyed by what it is, and after a crash the finished units are kept; other cache
stages are finished when their ``_SUCCESS`` file, which lists their files and rows, exists.
"""

from __future__ import annotations

import functools
import hashlib
import importlib
import json
import shutil
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from codeprefs.core.files import atomic_write, write_text_atomic
from codeprefs.core.layout import STAGES_DIR
from codeprefs.core.rows import WORK_SCHEMA

SUCCESS = "_SUCCESS"
# The packages whose code shapes rows (the trainer and the application do not).
_CODE_PACKAGES = ("codeprefs.core", "codeprefs.parsers", "codeprefs.filters", "codeprefs.pipelines")


@functools.cache
def code_fingerprint() -> str:
    """A hash of the code that shapes rows: every module and data file of the build packages,
    wherever they are installed (a checkout, an editable install or a wheel)."""
    digest = hashlib.sha256()
    for package in _CODE_PACKAGES:
        folder = Path(importlib.import_module(package).__file__).resolve().parent
        for path in sorted(folder.rglob("*")):
            if path.is_file() and path.suffix in (".py", ".list") and "__pycache__" not in path.parts:
                digest.update(f"{package}/{path.relative_to(folder).as_posix()}".encode())
                digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def fingerprint(*parts: Any) -> str:
    """A short stable hash of JSON-serialisable ``parts``."""
    text = json.dumps(parts, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def unit_key(*parts: Any) -> str:
    return fingerprint("unit", *parts)


class StageDir:
    """The cache folder of one cache stage run with one fingerprint."""

    def __init__(self, output_dir: Path, stage: str, stage_fingerprint: str) -> None:
        self.stage = stage
        self.fingerprint = stage_fingerprint
        self.path = output_dir / STAGES_DIR / stage / stage_fingerprint

    @property
    def done(self) -> bool:
        return (self.path / SUCCESS).is_file()

    def unit_path(self, key: str) -> Path:
        return self.path / f"unit-{key}.parquet"

    def unit_done(self, key: str) -> bool:
        return self.unit_path(key).is_file()

    def files(self) -> list[str]:
        """The finished stage's files (absolute paths), in a stable order."""
        listing = json.loads((self.path / SUCCESS).read_text())
        return [str(self.path / name) for name in listing["files"]]

    def rows(self) -> int:
        return json.loads((self.path / SUCCESS).read_text())["rows"]

    def mark_done(self) -> None:
        """Record every unit file and the total row count; the stage is then finished."""
        names = sorted(p.name for p in self.path.glob("unit-*.parquet"))
        rows = sum(pq.read_metadata(self.path / name).num_rows for name in names)
        write_text_atomic(self.path / SUCCESS, json.dumps({"stage": self.stage, "fingerprint": self.fingerprint,
                                                           "files": names, "rows": rows}))


def write_unit(path: Path, batches: Iterable[pa.Table], schema: pa.Schema = WORK_SCHEMA) -> int:
    """Stream ``batches`` into the Parquet file ``path`` via a temporary name; return the rows.

    Memory stays bounded by one batch, whatever the size of the unit.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = 0
    with atomic_write(path) as temporary, pq.ParquetWriter(temporary, schema, compression="zstd") as writer:
        for batch in batches:
            if batch.num_rows:
                writer.write_table(batch.cast(schema))
                rows += batch.num_rows
    return rows


def prune_stages(output_dir: Path, source_units: dict[str, set[str]], used: dict[str, str | None],
                 unit_stages: dict[str, dict[str, set[str]]] | None = None) -> None:
    """Drop cached stage outputs a run did not use (superseded settings, inputs or units).

    ``source_units``: each source stage folder's fingerprint -> the unit keys it still holds;
    ``used``: each dataset stage -> the fingerprint the run used (``None``: the stage was skipped);
    ``unit_stages``: other stages kept in units (``candidates``), like ``source_units`` each.
    """
    root = output_dir / STAGES_DIR
    for stage, units in {"source": source_units, **(unit_stages or {})}.items():
        folder_root = root / stage
        for folder in sorted(folder_root.iterdir()) if folder_root.is_dir() else []:
            if folder.name not in units:
                shutil.rmtree(folder, ignore_errors=True)
                continue
            for unit in folder.glob("unit-*.parquet"):
                if unit.name.removeprefix("unit-").removesuffix(".parquet") not in units[folder.name]:
                    unit.unlink()
    for stage, fingerprint_used in used.items():
        for folder in sorted((root / stage).iterdir()) if (root / stage).is_dir() else []:
            if folder.name != fingerprint_used:
                shutil.rmtree(folder, ignore_errors=True)
