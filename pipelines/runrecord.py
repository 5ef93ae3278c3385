"""``run.json``: what a build read, what it did to every row, and what it wrote."""

from __future__ import annotations

import json
import os
import subprocess
from collections import Counter
from pathlib import Path, PurePosixPath
from typing import Any

import codeprefs
from codeprefs.core.drops import STAGES
from codeprefs.core.layout import CACHE_DIR, RUN_RECORD, RUN_STATE
from codeprefs.core.store import Store
from codeprefs.pipelines.sources.gitrepo import SAFE_CONFIG, git_env


class RecordError(ValueError):
    """A run record or run state that cannot be read (truncated, not JSON); names the file."""


def read_record_file(path: Path) -> dict[str, Any] | None:
    """The JSON object in ``path``, or ``None`` when there is no such file.

    A file that is not a JSON object (a truncated write, a disk error, an edit) raises
    :class:`RecordError` naming it.
    """
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as error:
        raise RecordError(f"{path} cannot be read ({error})") from None
    return parse_record(data, str(path))


def read_store_record(store: Store, relative: str | PurePosixPath) -> dict[str, Any] | None:
    """:func:`read_record_file` for the file ``relative`` of a build's store (local or remote)."""
    try:
        data = store.read_bytes(str(relative))
    except OSError as error:
        raise RecordError(f"{store.at(relative)} cannot be read ({error})") from None
    return None if data is None else parse_record(data, store.at(relative))


def parse_record(data: bytes, name: str) -> dict[str, Any]:
    """The JSON object in ``data`` read from ``name``; :class:`RecordError` naming it when it is
    not one."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise RecordError(f"{name} cannot be read ({error})") from None
    try:
        parsed = json.loads(text)
    except json.JSONDecodeError as error:
        raise RecordError(f"{name} is damaged: not valid JSON ({error.msg} at line {error.lineno})") from None
    if not isinstance(parsed, dict):
        raise RecordError(f"{name} is damaged: a JSON {type(parsed).__name__}, not an object")
    return parsed


def code_version() -> dict[str, Any]:
    """The package version and, in a git checkout, the commit and whether it had local edits."""
    version: dict[str, Any] = {"codeprefs": codeprefs.__version__, "git_commit": None, "dirty": None}
    root = Path(codeprefs.__file__).resolve().parents[1]
    # The hardened environment of the git source: no global or system config, so neither the
    # user's fsmonitor nor a hook of theirs runs while the build reads its own checkout.
    safe = ["git", *SAFE_CONFIG, "-C", str(root)]
    try:
        commit = subprocess.run([*safe, "rev-parse", "HEAD"], capture_output=True, text=True,
                                timeout=10, env=git_env())
        if commit.returncode == 0:
            version["git_commit"] = commit.stdout.strip()
            status = subprocess.run([*safe, "status", "--porcelain", "-uno"], capture_output=True,
                                    text=True, timeout=30, env=git_env())
            version["dirty"] = bool(status.stdout.strip())
    except (OSError, subprocess.TimeoutExpired):
        pass
    return version


def funnel(drops: Counter[tuple[str, str]], kept: int) -> list[dict[str, Any]]:
    """Rows in, dropped by reason, and rows out for each drop stage, in pipeline order (the
    registry's, :data:`codeprefs.core.drops.STAGES`)."""
    total = kept + sum(drops.values())
    stages = []
    rows_in = total
    for stage in STAGES:
        reasons = {reason: n for (s, reason), n in sorted(drops.items()) if s == stage}
        dropped = sum(reasons.values())
        stages.append({"stage": stage, "rows_in": rows_in, "dropped": dropped,
                       "reasons": reasons, "rows_out": rows_in - dropped})
        rows_in -= dropped
    unknown = {f"{s}/{r}": n for (s, r), n in drops.items() if s not in STAGES}
    if unknown:
        raise RuntimeError(f"rows dropped at drop stages the registry does not know: {unknown}")
    return stages


def read_run_record(output_dir: str | Path) -> dict[str, Any]:
    """The ``run.json`` of ``output_dir`` (:class:`RecordError` when damaged, naming it)."""
    record = read_record_file(Path(output_dir) / RUN_RECORD)
    if record is None:
        raise FileNotFoundError(f"no {RUN_RECORD} in {output_dir}: is it a codeprefs output folder?")
    return record


def read_run_state(output_dir: str | Path) -> dict[str, Any] | None:
    """The run state of ``output_dir`` (``None`` without one; :class:`RecordError` when damaged)."""
    return read_record_file(Path(output_dir) / RUN_STATE)


def _manifest_from(output: Path, manifest_path: str | None) -> str | None:
    """The manifest's path as the user can reach it: run.json stores it relative to ``output``."""
    if not manifest_path:
        return None
    return os.path.normpath(output / manifest_path)


def list_runs(root: str | Path) -> list[dict[str, Any]]:
    """Every build output under ``root`` (a folder with ``run.json`` or an unfinished run state).

    A damaged run record or state does not stop the listing: its folder is listed with state
    ``damaged`` and ``problem`` naming the file.
    """
    root = Path(root)
    found: dict[Path, dict[str, Any]] = {}

    def damaged(output: Path, error: RecordError) -> None:
        entry = found.setdefault(output, {"output": str(output), "name": output.name, "finished_at": None,
                                          "kept": None, "total": None, "fingerprint": None,
                                          "manifest_path": None})
        entry["state"] = "damaged"
        entry["problem"] = str(error)

    for record_path in sorted(root.rglob(RUN_RECORD)) if root.is_dir() else []:
        if CACHE_DIR in record_path.parts:
            continue
        try:
            record = read_record_file(record_path) or {}
            rows = record["rows"]
        except (RecordError, KeyError, TypeError) as error:
            damaged(record_path.parent, error if isinstance(error, RecordError)
                    else RecordError(f"{record_path} is damaged: no row counts"))
            continue
        found[record_path.parent] = {
            "output": str(record_path.parent), "name": record.get("name"), "state": "complete",
            "finished_at": record.get("finished_at"), "kept": rows["kept"],
            "total": rows["total"],
            "fingerprint": record.get("fingerprints", {}).get("write"),
            "manifest_path": _manifest_from(record_path.parent, record.get("manifest_path")),
        }
    for state_path in sorted(root.rglob(RUN_STATE.name)) if root.is_dir() else []:
        output = state_path.parents[len(RUN_STATE.parts) - 1]  # the folder RUN_STATE is relative to
        try:
            state = read_record_file(state_path) or {}
        except RecordError as error:
            damaged(output, error)
            continue
        if state.get("status") == "running":
            entry = found.setdefault(output, {"output": str(output), "name": output.name, "finished_at": None,
                                              "kept": None, "total": None, "manifest_path": None})
            entry["state"] = "interrupted"
            entry["fingerprint"] = (state.get("fingerprints") or {}).get("write")
    return [found[key] for key in sorted(found)]


def count_rows(summaries: list[dict[str, Any]]) -> tuple[int, Counter[tuple[str, str]]]:
    """The rows the writer kept, and those it counted dropped by (stage, reason)."""
    drops: Counter[tuple[str, str]] = Counter()
    kept = 0
    for summary in summaries:
        if summary["kind"] == "count":
            if summary["reason"] is None:
                kept += summary["rows"]
            else:
                drops[(summary["stage"], summary["reason"])] += summary["rows"]
    return kept, drops


def relative_manifest_path(manifest_path: str | None, output_dir: Path) -> str | None:
    """The manifest's path relative to the output folder (``codeprefs runs`` resolves it)."""
    if manifest_path is None:
        return None
    return os.path.relpath(Path(manifest_path).expanduser().resolve(), output_dir)


def skipped_inputs_warnings(inputs: list[dict[str, Any]]) -> list[str]:
    """One warning per input a source skipped (``on_error: skip``), with its error: a repository
    that could not be pinned gives no row, so the funnel cannot count it."""
    return [f"skipped an input (on_error: skip): {item.get('error') or item.get('repo')}"
            for item in inputs if item.get("status") == "error"]


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
