"""The build driver: manifest in, shards and ``run.json`` out, with the work done on Ray.

The driver stays thin and knows no source kind by name. Each kind the manifest uses
(:mod:`codeprefs.pipelines.sources.kinds`) plans its sources: pins every input (repositories to commits,
files to hashes; a missing or corrupt one fails before any work) and cuts it into units with a
recipe for their rows. The driver fingerprints every stage, makes the commit split once, and
runs the source stage (:mod:`codeprefs.pipelines.sourcestage`), the shared stages
(:mod:`codeprefs.pipelines.stages`) and the writer on Ray. Only per-unit and per-file summaries and
per-reason counts come back to the driver, never rows.

Stages, each kept under ``<output>/.cache/stages/<stage>/<fingerprint>/`` (see
:mod:`codeprefs.pipelines.stagecache`):

``source``
    one per manifest source: every unit of work (a repository, a chunk of an export, dataset or
    solutions file) becomes rows in one Ray task: listing, the split, message and criteria
    filters, file contents (read or fetched), synthesis, and the assembled pair. Finished units
    survive a crash.
``validate``
    tree-sitter validation of every pair, then the length budget (``filters.length``, see
    :mod:`codeprefs.filters.length`) on the final prompt and sides.
``clean``
    decontamination and near-dedupe (only when the manifest asks for them).
``candidates``
    only with ``synthesis.candidates``: each solutions source's candidate sets, executed unit by
    unit like the source stage (:mod:`codeprefs.pipelines.candidatestage`), written to
    ``candidates/``; never mixed into the pairs.
``write``
    exact dedupe and the shards (:mod:`codeprefs.pipelines.shards`), the measures of what the pairs teach
    (:mod:`codeprefs.pipelines.quality`, ``run.json: quality``), then ``run.json``.

A stage whose fingerprint is unchanged is not run again; a rerun of an unchanged manifest with
the same inputs does no work at all.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from codeprefs.core.candidateset import candidates_name
from codeprefs.core.files import json_bytes
from codeprefs.core.layout import RUN_RECORD, STAGES_DIR
from codeprefs.core.localpaths import relative_paths
from codeprefs.core.raycluster import ray_session
from codeprefs.core.redact import redact_data, redact_text
from codeprefs.core.store import LocalStore, StorageError, Store, local_cache_dir, open_store
from codeprefs.filters.classifier import ClassifierError
from codeprefs.filters.dedupe.decontaminate import BenchmarkIndex
from codeprefs.pipelines.candidatestage import candidates_fingerprint, run_candidate_stage, write_candidates
from codeprefs.pipelines.errors import BuildError
from codeprefs.pipelines.manifest import Manifest
from codeprefs.pipelines.outputdir import describe_foreign, inspect_output, removable
from codeprefs.pipelines.quality import quality_summary
from codeprefs.pipelines.rayfailure import ray_failure
from codeprefs.pipelines.recipes import settings_data
from codeprefs.pipelines.runlock import RunLock, up_to_date
from codeprefs.pipelines.runrecord import (
    RecordError,
    code_version,
    count_rows,
    funnel,
    no_pairs_warning,
    skipped_inputs_warnings,
    relative_manifest_path,
)
from codeprefs.pipelines.shards import final_names, publish_staged, remove_stale_files
from codeprefs.pipelines.sources.base import PlanContext, SourceError, SourceWork
from codeprefs.pipelines.sources.commits import CommitSteps
from codeprefs.pipelines.sources.kinds import SOURCE_KINDS
from codeprefs.pipelines.sourcestage import commit_split, run_source_stage
from codeprefs.pipelines.stagecache import code_fingerprint, fingerprint, prune_stages
from codeprefs.pipelines.stages import (
    clean_fingerprint_settings,
    load_benchmarks,
    run_clean,
    run_judge,
    ValidateRecipe,
    run_validate,
    validate_recipe,
    write_shards,
)

__all__ = ["BuildError", "Plan", "build", "plan_build"]

# -- planning: every source kind pins its inputs and cuts them into units -------------------------


@dataclass
class Plan:
    """Everything the driver decided before Ray starts."""

    inputs: list[dict[str, Any]]
    works: list[SourceWork]
    validation: ValidateRecipe
    fingerprints: dict[str, Any] = field(default_factory=dict)


def plan_build(manifest: Manifest, output: Store | Path) -> Plan:
    """Plan every source through its kind (no Ray needed); a missing or corrupt input fails here."""
    output_dir = local_cache_dir(output, "") if isinstance(output, Store) else output
    try:
        commit_steps = CommitSteps.from_manifest(manifest)
    except ClassifierError as error:
        raise BuildError(f"filters.criteria.classifier: {error}") from None
    context = PlanContext(base_dir=manifest.base_dir, output_dir=output_dir,
                          commit_steps=commit_steps, synthesis=manifest.synthesis,
                          batch_rows=manifest.ray.batch_rows, scratch_dir=manifest.ray.scratch_dir)
    works: list[SourceWork] = []
    inputs: list[tuple[int, dict[str, Any]]] = []
    for kind in SOURCE_KINDS:
        sources = [(index, source) for index, source in enumerate(manifest.sources)
                   if isinstance(source, kind.settings)]
        if not sources:
            continue
        try:
            planned = kind.plan(sources, context)
        except SourceError as error:
            raise BuildError(str(error)) from None
        works += planned.works
        inputs += planned.inputs
    works.sort(key=lambda work: work.index)
    if manifest.split is not None:  # which commits a split keeps may depend on every commit source
        split_key = fingerprint(manifest.split.model_dump(mode="json"),
                                [[work.unit_keys, settings_data(work.recipe)] for work in works
                                 if work.split_listing is not None])
        for work in works:
            if work.split_listing is not None:
                work.split_key = split_key
    return Plan([record for _, record in sorted(inputs, key=lambda item: item[0])], works,
                validate_recipe(manifest))


def fingerprints(manifest: Manifest, works: list[SourceWork], validation: ValidateRecipe,
                 clean: dict[str, Any]) -> dict[str, Any]:
    """Every stage's fingerprint, each covering its settings and everything upstream."""
    sources = [work.fingerprint() for work in works]
    code = code_fingerprint()
    validate = fingerprint("validate", settings_data(validation), sources, code)
    judged = (fingerprint("judge", manifest.judge.model_dump(mode="json"), validate, code)
              if manifest.judge is not None else None)
    before_clean = judged or validate
    cleaned = fingerprint("clean", clean, before_clean, code) if clean else before_clean
    candidates = candidates_fingerprint([work.candidates for work in works if work.candidates is not None])
    write = fingerprint("write", manifest.dedupe.exact, manifest.output.model_dump(mode="json"), cleaned, code,
                        *([candidates] if candidates else []))
    return {"code": code, "sources": sources, "validate": validate, "judge": judged,
            "clean": cleaned if clean else None, "candidates": candidates, "write": write}


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
    try:
        store = open_store(output)
    except StorageError as error:
        raise BuildError(str(error)) from None
    try:
        return _build(manifest, store, manifest_path, resume=resume, restart=restart, force=force,
                      started=started, log=log)
    except OSError as error:
        if store.local:
            raise  # the CLI names the file (a full disk, an unwritable folder)
        raise BuildError(f"cannot read or write the output {store}: {type(error).__name__}: {error}") from None


def _build(manifest: Manifest, store: Store, manifest_path: str | None, *, resume: bool, restart: bool,
           force: bool, started: float, log: Callable[[str], None]) -> dict[str, Any]:
    folder = _inspect(store, restart)
    foreign = folder.foreign_files()
    if foreign and not force:
        raise BuildError(describe_foreign(store, foreign))
    if foreign:
        log(f"--force: building next to {len(foreign)} file(s) no codeprefs run wrote; they are kept")
    plan = plan_build(manifest, store)
    benchmarks = load_benchmarks(manifest)
    clean_settings = clean_fingerprint_settings(manifest)
    plan.fingerprints = fingerprints(manifest, plan.works, plan.validation, clean_settings)
    if isinstance(store, LocalStore):
        store.root.mkdir(parents=True, exist_ok=True)
    with RunLock(store) as lock:
        folder = _inspect(store, restart)  # again, now that no other build can change it
        lock.files = folder.owned()
        state = folder.state or {}
        interrupted = state if state.get("status") == "running" else None
        if restart:
            store.remove_tree(STAGES_DIR.as_posix())
        elif interrupted and not resume:
            raise BuildError(f"{store} holds an interrupted run (state {interrupted.get('at')}): rerun "
                             "with --resume to finish it, or --restart to discard its partial work")
        previous = None if restart else up_to_date(store, plan.fingerprints["write"])
        if previous is not None and not interrupted:
            log("up to date: same manifest, inputs and code as the last run; nothing to do")
            return {**previous, "up_to_date": True}
        lock.mark("running", plan.fingerprints)
        try:
            record = _execute(manifest, plan, store, manifest_path, started, resumed=bool(interrupted),
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


def _inspect(store: Store, restart: bool):
    """The output folder's record and state; a damaged one stops the build unless ``restart``."""
    try:
        return inspect_output(store, ignore_damage=restart)
    except RecordError as error:
        raise BuildError(f"{error}: rerun with --restart to discard it and rebuild the output") from None


def _execute(manifest: Manifest, plan: Plan, store: Store, manifest_path: str | None,
             started: float, resumed: bool, benchmarks: BenchmarkIndex | None, lock: RunLock,
             log: Callable[[str], None]) -> dict[str, Any]:
    fps = plan.fingerprints
    with ray_session(manifest.ray.address, manifest.ray.num_cpus, on_raylet_death=_raylet_died):
        resources = manifest.ray.unit_resources
        split = commit_split(manifest.split, plan.works, store, resources)  # once, for every commit source
        source_files = [f for work in plan.works for f in run_source_stage(work, split, store, log, resources)]
        candidate_works = [work.candidates for work in plan.works if work.candidates is not None]
        candidate_files = [f for work in candidate_works for f in run_candidate_stage(work, store, log)]
        lock.check()
        files = run_validate(plan.validation, fps["validate"], source_files, store, log)
        steps: dict[str, Any] = {}
        llm = None
        if fps.get("judge") is not None:
            files, llm = run_judge(manifest, fps["judge"], files, store, log)
        if fps["clean"] is not None:
            files, steps = run_clean(manifest, benchmarks, fps["clean"], files, store, log)
        lock.check()
        summaries = write_shards(files, store, manifest, log) if files else []
        candidates = None
        if candidate_works:
            lock.add_files([candidates_name(0, 1)])  # recorded before it is written
            candidates = write_candidates(candidate_files, store, manifest.output.compression_level,
                                          manifest.output.row_group_rows)
        quality = quality_summary([store.at(s["path"]) for s in summaries if s["kind"] == "shard"],
                                  plan.validation.budget.tokenizer if plan.validation.budget else None)
    staged = {kind: [s for s in summaries if s["kind"] == kind] for kind in ("shard", "rejects")}
    earlier = set(lock.files)  # recorded before the new names are, so they stay deletable
    lock.add_files([name for kind, files in staged.items() for name in final_names(files, kind)])
    shards = publish_staged(store, staged["shard"], "shard")  # none when no row was kept
    rejects = publish_staged(store, staged["rejects"], "rejects")
    this_run = {f["path"] for f in shards + rejects + (candidates["files"] if candidates else [])}
    removed = remove_stale_files(store, lambda relative: removable(relative, earlier, this_run))
    lock.files = this_run

    kept, drops = count_rows(summaries)
    written = sum(f["rows"] for f in shards)
    if written != kept:
        raise BuildError(f"row accounting mismatch: {kept} rows kept but {written} written")
    prune_stages(store, {work.settings_fingerprint: set(work.unit_keys) for work in plan.works},
                 {stage: plan.fingerprints.get(stage) for stage in ("validate", "judge", "clean")},
                 {"candidates": {work.settings_fingerprint: set(work.unit_keys) for work in candidate_works}})
    stages = funnel(drops, kept)
    warnings = skipped_inputs_warnings(plan.inputs) + ([] if kept else [no_pairs_warning(stages, plan.inputs)])
    for warning in warnings:
        log(f"warning: {warning}")

    record = {
        "name": manifest.name,
        "manifest_path": relative_manifest_path(manifest_path, store.root) if isinstance(store, LocalStore) else None,
        "manifest": manifest.resolved(),
        "code": {**code_version(), "fingerprint": fps["code"]},
        "inputs": plan.inputs,
        "fingerprints": fps,
        "resumed": resumed,
        "stages": [{"stage": "source", "source": work.index, "fingerprint": work.settings_fingerprint,
                    "units": len(work.unit_keys), "units_reused": work.reused_units} for work in plan.works]
        + [{"stage": "candidates", "source": work.index, "fingerprint": work.settings_fingerprint,
            "units": len(work.unit_keys), "units_reused": work.reused_units} for work in candidate_works],
        "rows": {"total": kept + sum(drops.values()), "kept": kept, "dropped": sum(drops.values())},
        "funnel": stages,
        "warnings": warnings,
        "steps": steps,
        **({"llm": llm} if llm is not None else {}),
        **({"candidates": candidates} if candidates is not None else {}),
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
    lock.check()
    store.write_bytes(RUN_RECORD, json_bytes(record))
    return record
