"""Cache-stage outputs kept on disk under their fingerprints, so reruns redo only what changed.

A **cache stage** is a phase of the build whose output is cached (``source``, ``validate``,
``judge``, ``clean``, ``candidates``; ``write`` is fingerprinted too). It is not a *drop stage*, the name a
dropped row carries in ``drop_stage`` (:mod:`codeprefs.core.drops`): one cache stage runs several
drop stages. Each cache stage writes its rows as Parquet files into
``<output>/.cache/stages/<stage>/<fingerprint>/``. A cache stage's fingerprint hashes its own
settings, the fingerprints of the cache stages it reads, the input fingerprints (pinned commits,
file hashes) and the code fingerprint, so a change anywhere upstream gives new fingerprints from
there on, and an unchanged cache stage finds its finished output again.

The stage folders live in the build's store (:mod:`codeprefs.core.store`: a local folder or object
storage), where the workers of every node write them. Work is written in **units**:
``unit-<key>.parquet``, put in place atomically (a temporary name and a rename, or one PUT), so a
crash never leaves half a unit. In the source stage a unit is a repository at a commit or a
chunk of a file, keyed by what it is, and after a crash the finished units are kept; other cache
stages are finished when their ``_SUCCESS`` file, which lists their files and rows, exists.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import importlib
import json
import re
from collections.abc import Iterable
from pathlib import Path, PurePosixPath
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from codeprefs.core.layout import STAGES_DIR
from codeprefs.core.store import LocalStore, Store, parquet_metadata
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
    """The cache folder of one cache stage run with one fingerprint, in a build's store."""

    def __init__(self, store: Store, stage: str, stage_fingerprint: str) -> None:
        self.store = store
        self.stage = stage
        self.fingerprint = stage_fingerprint
        self.prefix = (STAGES_DIR / stage / stage_fingerprint).as_posix()

    def relative(self, name: str) -> str:
        """The store path of the file ``name`` of this stage."""
        return f"{self.prefix}/{name}"

    @property
    def done(self) -> bool:
        return self.store.is_file(self.relative(SUCCESS))

    def unit_name(self, key: str) -> str:
        return self.relative(f"unit-{key}.parquet")

    def unit_path(self, key: str) -> str:
        """The full location (local path or URL) of the unit ``key``, as readers are given it."""
        return self.store.at(self.unit_name(key))

    def unit_done(self, key: str) -> bool:
        return self.store.is_file(self.unit_name(key))

    def units(self) -> set[str]:
        """The keys of the units kept now (one listing, for a stage of many units)."""
        return {name.rsplit("/", 1)[-1].removeprefix("unit-").removesuffix(".parquet")
                for name in self.store.files(self.prefix) if _UNIT.match(name.rsplit("/", 1)[-1])}

    def _success(self) -> dict[str, Any]:
        data = self.store.read_bytes(self.relative(SUCCESS))
        if data is None:
            raise FileNotFoundError(f"{self.store.at(self.relative(SUCCESS))}: the stage is not finished")
        return json.loads(data)

    def files(self) -> list[str]:
        """The finished stage's files (full locations), in a stable order."""
        return [self.store.at(self.relative(name)) for name in self._success()["files"]]

    def rows(self) -> int:
        return self._success()["rows"]

    def clear(self) -> None:
        self.store.remove_tree(self.prefix)

    def mark_done(self) -> None:
        """Record every unit file and the total row count; the stage is then finished."""
        names = sorted(name.rsplit("/", 1)[-1] for name in self.store.files(self.prefix)
                       if _UNIT.match(name.rsplit("/", 1)[-1]))
        rows = sum(parquet_rows(self.store.at(self.relative(name))) for name in names)
        self.store.write_bytes(self.relative(SUCCESS), json.dumps(
            {"stage": self.stage, "fingerprint": self.fingerprint, "files": names, "rows": rows}).encode())


_UNIT = re.compile(r"^unit-[0-9a-f]+\.parquet$")


def parquet_rows(location: str) -> int:
    """The rows of the Parquet file at ``location`` (a local path or a URL), from its footer."""
    return parquet_metadata(location).num_rows


def write_unit(store: Store, relative: str, batches: Iterable[pa.Table], schema: pa.Schema = WORK_SCHEMA) -> int:
    """Stream ``batches`` into the Parquet file ``relative`` of ``store``, put in place atomically
    (see :mod:`codeprefs.core.store`); return the rows.

    Memory stays bounded by one batch, whatever the size of the unit.
    """
    rows = 0
    with store.writing(relative) as temporary, pq.ParquetWriter(temporary, schema, compression="zstd") as writer:
        for batch in batches:
            if batch.num_rows:
                writer.write_table(batch.cast(schema))
                rows += batch.num_rows
    return rows


def prune_stages(store: Store, source_units: dict[str, set[str]], used: dict[str, str | None],
                 unit_stages: dict[str, dict[str, set[str]]] | None = None) -> None:
    """Drop cached stage outputs a run did not use (superseded settings, inputs or units).

    ``source_units``: each source stage folder's fingerprint -> the unit keys it still holds;
    ``used``: each dataset stage -> the fingerprint the run used (``None``: the stage was skipped);
    ``unit_stages``: other stages kept in units (``candidates``), like ``source_units`` each.
    """
    kept = {"source": source_units, **(unit_stages or {})}
    for relative in store.files(STAGES_DIR.as_posix()):
        parts = PurePosixPath(relative).relative_to(STAGES_DIR.as_posix()).parts
        if len(parts) < 3:
            continue
        stage, folder, name = parts[0], parts[1], parts[-1]
        if stage in kept:
            units = kept[stage].get(folder)
            if units is None or (_UNIT.match(name) and len(parts) == 3
                                 and name.removeprefix("unit-").removesuffix(".parquet") not in units):
                store.remove(relative)
        elif stage in used and folder != used[stage]:
            store.remove(relative)
    if isinstance(store, LocalStore):  # object stores have no empty folders to leave behind
        _remove_empty_folders(store.path(STAGES_DIR))


def _remove_empty_folders(root: Path) -> None:
    for folder in sorted((path for path in root.rglob("*") if path.is_dir()), key=lambda p: -len(p.parts)):
        with contextlib.suppress(OSError):
            folder.rmdir()
