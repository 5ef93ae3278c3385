"""Manifest-driven reruns: no work when nothing changed, only the changed stages otherwise, and
a run killed mid-way (driver or worker, kill -9) finished by --resume with identical shards."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import yaml

from codeprefs.pipelines.manifest import parse_manifest
from codeprefs.pipelines.build import build
from tests.processes import kill_processes_naming

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.ray


def fast_repo(path: Path, commits: int, lines: int = 100) -> Path:
    """A real repository of ``commits`` single-file fixes, written at once with git fast-import."""
    path.mkdir(parents=True)
    subprocess.run(["git", "init", "-q", "-b", "main", str(path)], check=True)
    body = "\n".join(f"def helper_{k}(value):\n    return value + {k}\n" for k in range(lines))
    stream = []
    for i in range(commits):
        content = f"# revision {i} of {path.name}\n{body}\n\ndef current():\n    return {i}\n".encode()
        message = (f"Fix bug number {i} in current" if i else "Add module").encode()
        stream += [b"commit refs/heads/main\n",
                   f"committer T <t@example.com> {1_600_000_000 + i * 60} +0000\n".encode(),
                   f"data {len(message)}\n".encode() + message + b"\n",
                   f"M 100644 inline mod.py\ndata {len(content)}\n".encode() + content + b"\n"]
    subprocess.run(["git", "-C", str(path), "fast-import", "--quiet"], input=b"".join(stream), check=True)
    return path


def shard_digests(output: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted((output / "data").iterdir())}


def test_unchanged_rerun_does_no_work_and_changes_rerun_only_later_stages(ray_local, tmp_path, make_repo):
    first, second = make_repo("first"), make_repo("second")
    for repo in (first, second):
        repo.commit("Add module", {"m.py": "def f(x):\n    return x - 1\n"})
        repo.commit("Fix bug: f subtracted one", {"m.py": "def f(x):\n    return x\n"})
    data = {"name": "r", "sources": [{"type": "git", "repos": [str(first.path), str(second.path)]}]}
    out = tmp_path / "out"
    lines: list[str] = []
    record = build(parse_manifest(data, tmp_path), out, log=lines.append)
    assert record["stages"][0]["units_reused"] == 0 and record["stages"][0]["units"] == 2
    digests = shard_digests(out)

    again = build(parse_manifest(data, tmp_path), out, log=lines.append)
    assert again["up_to_date"] is True
    assert again["finished_at"] == record["finished_at"]  # run.json untouched
    assert lines[-1].startswith("up to date")

    # A validation setting: the source stage is reused, validation and writing run again.
    lines.clear()
    data["filters"] = {"validation": {"max_error_fraction": 0.2}}
    changed = build(parse_manifest(data, tmp_path), out, log=lines.append)
    assert "up_to_date" not in changed
    assert changed["stages"][0]["units_reused"] == 2
    assert not any(line.startswith("validate: reusing") for line in lines)
    assert shard_digests(out) == digests

    # An output setting: sources and validation are reused, only the writer runs.
    lines.clear()
    data["output"] = {"compression_level": 9}
    build(parse_manifest(data, tmp_path), out, log=lines.append)
    assert any(line.startswith("validate: reusing") for line in lines)

    # A new commit in one repository reruns that repository's unit only.
    second.commit("Fix bug: f returned the wrong value", {"m.py": "def f(x):\n    return +x\n"})
    newer = build(parse_manifest(data, tmp_path), out, log=lines.append)
    assert newer["stages"][0]["units_reused"] == 1
    assert newer["rows"]["kept"] == record["rows"]["kept"] + 1

    # A repository added to the source runs alone; the others are reused.
    third = make_repo("third")
    third.commit("Add module", {"m.py": "def g(x):\n    return x * 3\n"})
    third.commit("Fix bug: g tripled", {"m.py": "def g(x):\n    return x * 2\n"})
    data["sources"][0]["repos"].append(str(third.path))
    added = build(parse_manifest(data, tmp_path), out, log=lines.append)
    assert added["stages"][0]["units_reused"] == 2 and added["stages"][0]["units"] == 3

    # A message-filter setting changes the source stage itself: every unit runs again.
    data["filters"]["message"] = {"min_length": 12}
    rerun = build(parse_manifest(data, tmp_path), out, log=lines.append)
    assert rerun["stages"][0]["units_reused"] == 0
    stage_root = out / ".cache" / "stages" / "source"
    assert [p.name for p in stage_root.iterdir()] == [rerun["stages"][0]["fingerprint"]]  # old pruned


def _start_build(manifest: Path, output: Path, env: dict[str, str], *extra: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, str(ROOT / "pipelines" / "build_prefs.py"), "--manifest", str(manifest),
         "--output", str(output), *extra],
        env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        start_new_session=True)


def _make_quickstart(manifest: Path, output: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """``make quickstart`` itself, pointed at ``manifest`` and ``output`` and at this interpreter
    (its venv stamp taken as made)."""
    stamp = ROOT / "Makefile"  # any file that exists: make treats it as up to date with -o
    return subprocess.run(
        ["make", "--no-print-directory", "-C", str(ROOT), "quickstart", f"STAMP={stamp}", "-o", str(stamp),
         f"BIN={Path(sys.executable).parent}", f"QUICKSTART_MANIFEST={manifest}", f"QUICKSTART_OUT={output}"],
        env=env, capture_output=True, text=True, timeout=900)


def _descendants(root: int) -> list[int]:
    """The processes under ``root`` (children, their children, ...), read from /proc."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        parent = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(parent, []).append(int(entry))
    found, todo = [], [root]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def _command(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def _units(output: Path) -> list[Path]:
    return sorted((output / ".cache" / "stages" / "source").glob("*/unit-*.parquet"))


def _wait_for(condition, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def _kill_ray_processes(temp_dir: Path) -> None:
    """Kill whatever a killed driver's local Ray instance left running (matched by its temp dir)."""
    kill_processes_naming(str(temp_dir))


@pytest.fixture(scope="module")
def crash_setup(tmp_path_factory):
    """Five repositories of 1,200 commits, a manifest that mines them one at a time, and the
    output of an uninterrupted build to compare with."""
    base = tmp_path_factory.mktemp("crash")
    repos = [fast_repo(base / f"repo{i}", 1200) for i in range(5)]
    manifest = base / "crash.yaml"
    manifest.write_text(yaml.safe_dump({
        "name": "crash", "ray": {"num_cpus": 1},
        "sources": [{"type": "git", "repos": [str(r) for r in repos]}]}))
    temp_dir = Path(tempfile.mkdtemp(prefix="cpr-", dir="/tmp"))  # Ray's socket paths must stay short
    env = {**os.environ, "CODEPREFS_RAY_TMPDIR": str(temp_dir), "RAY_AUTH_MODE": "disabled"}
    env.pop("RAY_ADDRESS", None)
    clean = base / "clean"
    done = _make_quickstart(manifest, clean, env)  # the make target's resuming form on a fresh output
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads((clean / "run.json").read_text())["resumed"] is False
    yield manifest, env, clean
    _kill_ray_processes(temp_dir)
    shutil.rmtree(temp_dir, ignore_errors=True)


def test_kill_9_of_the_driver_then_resume_gives_the_clean_shards(crash_setup, tmp_path):
    manifest, env, clean = crash_setup
    out = tmp_path / "out"
    run = _start_build(manifest, out, env)
    _wait_for(lambda: len(_units(out)) >= 1, 300, "a first finished unit")
    os.killpg(run.pid, signal.SIGKILL)
    run.wait()
    finished_before = len(_units(out))
    assert 1 <= finished_before < 5, "the kill came too late to interrupt the source stage"
    assert not (out / "data").exists() or not list((out / "data").glob("train-*"))

    refused = _start_build(manifest, out, env)
    assert refused.wait(timeout=300) == 2
    assert "--resume" in refused.stderr.read()

    resumed = _start_build(manifest, out, env, "--resume")
    assert resumed.wait(timeout=600) == 0, resumed.stderr.read()[-3000:]
    record = json.loads((out / "run.json").read_text())
    assert record["resumed"] is True
    assert record["stages"][0]["units_reused"] >= finished_before
    assert shard_digests(out) == shard_digests(clean)
    assert record["rows"] == json.loads((clean / "run.json").read_text())["rows"]


def test_kill_9_of_a_worker_mid_run_is_retried_without_loss(crash_setup, tmp_path):
    manifest, env, clean = crash_setup
    out = tmp_path / "out"
    run = _start_build(manifest, out, env)

    def unit_worker() -> int | None:
        for pid in os.listdir("/proc"):
            try:
                title = Path(f"/proc/{pid}/cmdline").read_bytes()
            except OSError:
                continue
            if b"RunUnits" in title and pid.isdigit():
                return int(pid)
        return None

    killed = None
    deadline = time.monotonic() + 300
    while killed is None:  # the worker between two units may come and go: kill one that is there
        assert time.monotonic() < deadline, "no worker ran a unit"
        pid = unit_worker()
        if pid is not None and _units(out):
            try:
                os.kill(pid, signal.SIGKILL)
                killed = pid
            except ProcessLookupError:
                pass
        time.sleep(0.05)
    assert run.wait(timeout=600) == 0, run.stderr.read()[-3000:]
    assert shard_digests(out) == shard_digests(clean)
    record = json.loads((out / "run.json").read_text())
    assert record["rows"] == json.loads((clean / "run.json").read_text())["rows"]


def test_ray_dying_under_a_build_says_so_in_a_few_lines_and_make_quickstart_resumes(crash_setup, tmp_path):
    manifest, env, clean = crash_setup
    out = tmp_path / "out"
    run = _start_build(manifest, out, env)
    _wait_for(lambda: len(_units(out)) >= 1, 300, "a first finished unit")
    raylets = [pid for pid in _descendants(run.pid) if b"raylet/raylet" in _command(pid)]
    assert len(raylets) == 1, [_command(pid) for pid in _descendants(run.pid)]
    os.kill(raylets[0], signal.SIGKILL)
    try:
        stdout, stderr = run.communicate(timeout=300)
    finally:
        for pid in _descendants(run.pid):  # whatever of this build's Ray instance is left
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    assert run.returncode == 2, f"{stderr[-3000:]}\nstdout: {stdout[-2000:]}"
    # What codeprefs prints: one error naming what died and --resume, and no traceback. (Ray's
    # own log records before it are Ray's logging, which --verbose/log-file routing governs.)
    own = stderr[stderr.rindex("error: "):]
    assert len(own.strip().splitlines()) <= 5, stderr[-3000:]
    assert "raylet" in own and "--resume" in own and "Traceback" not in own
    assert len(_units(out)) < 5, "Ray died too late to interrupt the source stage"

    resumed = _make_quickstart(manifest, out, env)  # the make target resumes by itself
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    record = json.loads((out / "run.json").read_text())
    assert record["resumed"] is True
    assert shard_digests(out) == shard_digests(clean)
    assert record["rows"] == json.loads((clean / "run.json").read_text())["rows"]


@pytest.fixture(scope="module")
def export_crash_setup(tmp_path_factory):
    """An export of 12,000 rows in one Parquet row group (1,200 real commits of a repository
    reached over ``file://``, the rest commits the message filter drops), 1,000 rows a unit,
    and the output of an uninterrupted build to compare with."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    base = tmp_path_factory.mktemp("export-crash")
    repo = fast_repo(base / "remotes" / "acme" / "crash", 1200)
    log = subprocess.run(["git", "-C", str(repo), "log", "--format=%H %ct"], capture_output=True, text=True,
                         check=True).stdout.split()
    real = [{"commit": sha, "subject": f"Fix bug number {i} in current", "message": f"Fix bug number {i} in current",
             "repos": "acme/crash", "license": "mit", "old_file": "mod.py", "new_file": "mod.py",
             "unix_time": int(time_)} for i, (sha, time_) in enumerate(zip(log[::2], log[1::2]))]
    rows = [real[k // 10] if k % 10 == 0 else {**real[k // 10], "subject": "wip", "message": "wip"}
            for k in range(12_000)]
    pq.write_table(pa.Table.from_pylist(rows), base / "export.parquet", row_group_size=len(rows))
    manifest = base / "export-crash.yaml"
    manifest.write_text(yaml.safe_dump({
        "name": "export-crash", "ray": {"num_cpus": 1}, "pairs": {"scope": "file"},
        "sources": [{"type": "export", "path": "export.parquet", "unit_rows": 1000,
                     "remote": f"file://{base / 'remotes'}/{{repo}}"}]}))
    temp_dir = Path(tempfile.mkdtemp(prefix="cpx-", dir="/tmp"))  # Ray's socket paths must stay short
    env = {**os.environ, "CODEPREFS_RAY_TMPDIR": str(temp_dir), "RAY_AUTH_MODE": "disabled"}
    env.pop("RAY_ADDRESS", None)
    clean = base / "clean"
    done = _start_build(manifest, clean, env)
    assert done.wait(timeout=900) == 0, done.stderr.read()[-3000:]
    record = json.loads((clean / "run.json").read_text())
    assert record["stages"][0]["units"] == 12 and record["rows"]["total"] == 12_000
    assert record["rows"]["kept"] > 1000  # the real commits (but the root commit) became pairs
    yield manifest, env, clean
    _kill_ray_processes(temp_dir)
    shutil.rmtree(temp_dir, ignore_errors=True)


def test_kill_9_of_an_export_build_then_resume_gives_the_clean_shards(export_crash_setup, tmp_path):
    """The units cut inside one row group are kept one by one: a killed build resumes from them."""
    manifest, env, clean = export_crash_setup
    out = tmp_path / "out"
    run = _start_build(manifest, out, env)
    _wait_for(lambda: len(_units(out)) >= 1, 600, "a first finished unit")
    os.killpg(run.pid, signal.SIGKILL)
    run.wait()
    finished_before = len(_units(out))
    assert 1 <= finished_before < 12, "the kill came too late to interrupt the source stage"

    refused = _start_build(manifest, out, env)
    assert refused.wait(timeout=300) == 2
    assert "--resume" in refused.stderr.read()

    resumed = _start_build(manifest, out, env, "--resume")
    assert resumed.wait(timeout=900) == 0, resumed.stderr.read()[-3000:]
    record = json.loads((out / "run.json").read_text())
    assert record["resumed"] is True
    assert record["stages"][0]["units_reused"] >= finished_before
    assert shard_digests(out) == shard_digests(clean)
    assert record["rows"] == json.loads((clean / "run.json").read_text())["rows"]
