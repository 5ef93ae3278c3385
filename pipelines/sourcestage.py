"""The source stage: every unit of every source turned into rows, one Ray task per unit.

Each unit's rows are kept in the source's stage folder as soon as the unit finishes, so a crash
loses only the units in flight, and a rerun runs only the units whose rows are not kept yet.
The commit split, which the git and export sources share, is made here once, before any unit
runs (see :func:`commit_split`).
"""

from __future__ import annotations

import json
from collections.abc import Callable

import pyarrow as pa

from codeprefs.pipelines import progress
from codeprefs.pipelines.errors import BuildError
from codeprefs.pipelines.splits import SplitConfig, SplitRule, training_repositories
from codeprefs.pipelines.sources.base import SourceWork, UnitPipeline
from codeprefs.core.store import Store
from codeprefs.pipelines.stagecache import StageDir, unit_key, write_unit
from codeprefs.pipelines.steps import SplitCommits


def commit_split(config: SplitConfig | None, works: list[SourceWork], store: Store,
                 resources: dict[str, float] | None = None) -> SplitCommits | None:
    """The split step every commit source runs (``None`` without a ``split`` section).

    A benchmark split with ``repository_disjoint`` needs the training repositories, which
    depend on every commit source: they are listed once more, here, but only when some unit
    of a commit source still has to run (see :mod:`codeprefs.pipelines.splits`). ``resources``:
    the custom Ray resources each listing task asks for (``ray.unit_resources``).
    """
    if config is None:
        return None
    rule = SplitRule.from_config(config)
    training: frozenset[str] = frozenset()
    commit_works = [work for work in works if work.split_listing is not None and work.units]
    if rule.needs_training_repositories and any(work.pending_units(store) for work in commit_works):
        assert rule.train_before is not None
        training = training_repositories([work.split_listing(work.units, resources) for work in commit_works],
                                         rule.train_before)
    return SplitCommits(rule, training)


_UNIT_RESULT = pa.schema([("unit_key", pa.string()), ("rows", pa.int64()), ("error", pa.string())])


class RunUnits:
    """The Ray task of the source stage: run each unit and keep its rows in the stage folder.

    A unit that raises (a corrupt repository, a malformed record) reports its error instead of
    failing the task, so the other units still finish and are kept; the driver then stops the
    build naming the unit. A worker that dies is retried by Ray.
    """

    def __init__(self, stage: StageDir, pipeline: UnitPipeline) -> None:
        self.stage = stage
        self.pipeline = pipeline

    def __call__(self, batch: pa.Table) -> pa.Table:
        done = []
        for item in batch.to_pylist():
            key, unit = item["unit_key"], json.loads(item["unit"])
            try:
                rows = write_unit(self.stage.store, self.stage.unit_name(key), self.pipeline.batches(unit))
            except Exception as error:  # reported to the driver, which stops the build
                done.append({"unit_key": key, "rows": 0, "error": _unit_error(error)})
                continue
            done.append({"unit_key": key, "rows": rows, "error": None})
        return pa.Table.from_pylist(done, schema=_UNIT_RESULT)


def _unit_error(error: Exception) -> str:
    """What the driver reports for a failed unit: a corrupt file's own message names the file."""
    from codeprefs.core.records import RecordFileError

    return str(error) if isinstance(error, RecordFileError) else f"{type(error).__name__}: {error}"


def run_source_stage(work: SourceWork, split: SplitCommits | None, store: Store,
                     log: Callable[[str], None], resources: dict[str, float] | None = None) -> list[str]:
    """Run the units of ``work`` whose rows are not kept yet; return the files of all its units.

    ``resources``: the custom Ray resources each unit's task asks for (``ray.unit_resources``).
    """
    import ray.data

    stage = work.stage(store)
    by_key = {unit_key(unit): unit for unit in work.units}
    kept = stage.units()
    todo = [{"unit_key": key, "unit": json.dumps(unit, sort_keys=True)}
            for key, unit in by_key.items() if key not in kept]
    work.reused_units = len(by_key) - len(todo)
    if work.reused_units:
        log(f"source {work.index}: reusing {work.reused_units} of {len(by_key)} units")
    if todo:
        tracker = progress.stage(f"source {work.index}", len(by_key), log, done=work.reused_units)
        results = progress.collect(
            ray.data.from_items(todo, override_num_blocks=len(todo))
            .map_batches(RunUnits(stage, work.recipe.pipeline(split)), batch_size=1, batch_format="pyarrow",
                         resources=resources or None)
            .iter_rows(), tracker,
            lambda done: (1, done["rows"], 0 if done["error"] else progress.kept_rows(stage.unit_path(done["unit_key"]))))
        failed = [result for result in results if result["error"]]
        if failed:
            more = f" (and {len(failed) - 1} more unit(s))" if len(failed) > 1 else ""
            raise BuildError(f"sources.{work.index}: {failed[0]['error']}{more}")
    return [stage.unit_path(key) for key in work.unit_keys]
