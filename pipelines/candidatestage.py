"""The candidates stage: candidate sets for re-ranking, written beside the pair shards.

A source may ask for candidate sets besides its pairs (a solutions source with
``synthesis.candidates``): its :class:`~codeprefs.pipelines.sources.base.SourceWork` then carries
a *candidate recipe* (its fields are everything the candidates are made of; ``stage()`` makes the
Ray stage, whose ``batches(unit)`` yields the unit's rows in
:data:`~codeprefs.pipelines.synthesis.candidates.CANDIDATE_WORK_SCHEMA`). Like the source stage,
one Ray task per unit (a chunk of a file) runs the programs and keeps the unit's rows under
``.cache/stages/candidates/<fingerprint>/``, so a crash loses only the units in flight and a
rerun with the same settings and inputs runs nothing.

Then one Ray task reads every unit, leaves out the dropped rows (they are only counted) and
writes the candidates, sorted by (``task_id``, ``candidate_id``), to
``candidates/candidates-00000-of-00001.parquet`` (:mod:`codeprefs.core.candidateset`): the same
manifest and inputs give the same bytes. Candidates never reach the pair shards or dedupe.
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from codeprefs.core.candidateset import CANDIDATE_COLUMNS, CANDIDATE_SCHEMA, candidates_name
from codeprefs.core.store import Store, arrow_location
from codeprefs.pipelines import progress
from codeprefs.pipelines.errors import BuildError
from codeprefs.pipelines.recipes import settings_data
from codeprefs.pipelines.shards import write_parquet_atomic
from codeprefs.pipelines.sourcestage import _unit_error
from codeprefs.pipelines.stagecache import StageDir, code_fingerprint, fingerprint, unit_key, write_unit

STAGE = "candidates"


@dataclass
class CandidateWork:
    """One source's share of the candidates stage: its units and its candidate recipe."""

    index: int  # the source's, in the manifest
    units: list[dict[str, Any]]
    recipe: Any  # e.g. pipelines.synthesis.candidates.CandidateRecipe
    reused_units: int = 0

    @property
    def settings_fingerprint(self) -> str:
        return fingerprint(STAGE, settings_data(self.recipe), code_fingerprint())

    @property
    def unit_keys(self) -> list[str]:
        return list(dict.fromkeys(unit_key(unit) for unit in self.units))

    def fingerprint(self) -> str:
        return fingerprint(self.settings_fingerprint, self.unit_keys)

    def stage(self, store: Store) -> StageDir:
        return StageDir(store, STAGE, self.settings_fingerprint)


def candidates_fingerprint(works: list[CandidateWork]) -> str | None:
    """The fingerprint of every source's candidate sets (None: the build makes none)."""
    return fingerprint(STAGE, [work.fingerprint() for work in works]) if works else None


_UNIT_RESULT = pa.schema([("unit_key", pa.string()), ("rows", pa.int64()), ("kept", pa.int64()),
                          ("error", pa.string())])


class RunCandidateUnits:
    """The Ray task of the stage: each unit's rows into ``unit-<key>.parquet`` (or its error)."""

    def __init__(self, folder: StageDir, stage: Any) -> None:
        from codeprefs.pipelines.synthesis.candidates import CANDIDATE_WORK_SCHEMA

        self.folder = folder
        self.stage = stage
        self.schema = CANDIDATE_WORK_SCHEMA

    def __call__(self, batch: pa.Table) -> pa.Table:
        done = []
        for item in batch.to_pylist():
            key, unit = item["unit_key"], json.loads(item["unit"])
            try:
                rows = write_unit(self.folder.store, self.folder.unit_name(key), self.stage.batches(unit), self.schema)
            except Exception as error:  # reported to the driver, which stops the build
                done.append({"unit_key": key, "rows": 0, "kept": 0, "error": _unit_error(error)})
                continue
            kept = progress.kept_rows(self.folder.unit_path(key))
            done.append({"unit_key": key, "rows": rows, "kept": kept, "error": None})
        return pa.Table.from_pylist(done, schema=_UNIT_RESULT)


def run_candidate_stage(work: CandidateWork, store: Store, log: Callable[[str], None]) -> list[str]:
    """Run the units of ``work`` whose rows are not kept yet; return the files of all its units."""
    import ray.data

    from codeprefs.pipelines.synthesis.llm import LLMError

    stage = work.stage(store)
    by_key = {unit_key(unit): unit for unit in work.units}
    kept = stage.units()
    todo = [{"unit_key": key, "unit": json.dumps(unit, sort_keys=True)}
            for key, unit in by_key.items() if key not in kept]
    work.reused_units = len(by_key) - len(todo)
    if work.reused_units:
        log(f"candidates {work.index}: reusing {work.reused_units} of {len(by_key)} units")
    if todo:
        try:
            runner = RunCandidateUnits(stage, work.recipe.stage())
        except LLMError as error:
            raise BuildError(f"sources.{work.index}: {error}") from None
        tracker = progress.stage(f"candidates {work.index}", len(by_key), log, done=work.reused_units)
        results = progress.collect(
            ray.data.from_items(todo, override_num_blocks=len(todo))
            .map_batches(runner, batch_size=1, batch_format="pyarrow").iter_rows(),
            tracker, lambda done: (1, done["rows"], done["kept"]))
        failed = [result for result in results if result["error"]]
        if failed:
            more = f" (and {len(failed) - 1} more unit(s))" if len(failed) > 1 else ""
            raise BuildError(f"sources.{work.index}: candidates: {failed[0]['error']}{more}")
    return [stage.unit_path(key) for key in work.unit_keys]


def write_candidates(files: list[str], store: Store, compression_level: int,
                     row_group_rows: int) -> dict[str, Any]:
    """Write the candidates of the stage's ``files`` (in one Ray task); return what
    ``run.json`` says of them: the files written and the counts (see :func:`summarize`)."""
    import ray.data

    item = {"files": json.dumps(files), "compression_level": compression_level, "row_group_rows": row_group_rows}
    [result] = ray.data.from_items([item]).map_batches(_write, fn_kwargs={"store": store}, batch_size=1,
                                                       batch_format="pyarrow").take_all()
    return json.loads(result["summary"])


def _write(batch: pa.Table, store: Store) -> pa.Table:
    from codeprefs.pipelines.synthesis.candidates import CANDIDATE_WORK_SCHEMA

    [item] = batch.to_pylist()
    files = json.loads(item["files"])
    rows = pa.concat_tables([_read(file, CANDIDATE_WORK_SCHEMA) for file in files]) if files else None
    summary = summarize(rows)
    written = []
    if rows is not None:
        kept = rows.filter(pc.is_null(rows["drop_reason"]))
        if kept.num_rows:
            kept = kept.sort_by([("task_id", "ascending"), ("candidate_id", "ascending")])
            table = kept.select(list(CANDIDATE_COLUMNS)).cast(CANDIDATE_SCHEMA)
            name = candidates_name(0, 1)
            info = write_parquet_atomic(table, store, name, item["compression_level"], item["row_group_rows"])
            written.append({"path": name, **info})
    summary["files"] = written
    return pa.table({"summary": [json.dumps(summary)]})


def _read(location: str, schema: pa.Schema) -> pa.Table:
    filesystem, path = arrow_location(location)
    return pq.read_table(path, schema=schema, filesystem=filesystem)


def summarize(rows: pa.Table | None) -> dict[str, Any]:
    """The counts ``run.json``'s ``candidates`` section gives: tasks with candidates, candidates
    per task (mean, min, max), passed share, tasks with both a passing and a failing candidate,
    each overall and by language, and the dropped rows by reason (tasks and candidates)."""
    from codeprefs.pipelines.synthesis.candidates import CANDIDATE_REASONS

    per_task: dict[str, list[bool]] = defaultdict(list)
    language_of: dict[str, str] = {}
    dropped: Counter[str] = Counter()
    dropped_tasks: Counter[str] = Counter()
    for row in (rows.select(["task_id", "candidate_id", "language", "passed", "drop_reason"]).to_pylist()
                if rows is not None else []):
        if row["drop_reason"] is None:
            per_task[row["task_id"]].append(bool(row["passed"]))
            language_of[row["task_id"]] = row["language"]
        elif row["drop_reason"] in CANDIDATE_REASONS:
            dropped[row["drop_reason"]] += 1
        else:
            dropped_tasks[row["drop_reason"]] += 1

    def counts(tasks: list[str]) -> dict[str, Any]:
        sizes = [len(per_task[task]) for task in tasks]
        passed = sum(sum(per_task[task]) for task in tasks)
        total = sum(sizes)
        return {"tasks": len(tasks), "candidates": total, "passed": passed,
                "passed_share": round(passed / total, 4) if total else None,
                "per_task_mean": round(total / len(tasks), 2) if tasks else None,
                "per_task_min": min(sizes, default=None), "per_task_max": max(sizes, default=None),
                "tasks_with_pass_and_fail": sum(1 for task in tasks if 0 < sum(per_task[task]) < len(per_task[task]))}

    tasks = sorted(per_task)
    languages = sorted(set(language_of.values()))
    return {**counts(tasks),
            "by_language": {language: counts([t for t in tasks if language_of[t] == language])
                            for language in languages},
            "tasks_dropped": dict(sorted(dropped_tasks.items())),
            "candidates_dropped": dict(sorted(dropped.items()))}
