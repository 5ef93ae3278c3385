"""Builds started together on one machine each get a Ray instance of their own and both finish.

Real builds as CLI subprocesses, each starting its own local Ray instance, side by side with the
test session's own instance (``ray_local``), which must survive them.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml

from tests.samples import commit_stats_history

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.ray


@pytest.fixture
def manifest(make_repo, tmp_path) -> Path:
    repo = make_repo("repo")
    commit_stats_history(repo)
    path = tmp_path / "manifest.yaml"
    path.write_text(yaml.safe_dump({"name": "together", "sources": [{"type": "git", "repos": [str(repo.path)]}],
                                    "ray": {"num_cpus": 1}}))
    return path


@pytest.fixture
def ray_parent():
    """A short folder the builds' Ray temp dirs go under (``CODEPREFS_RAY_TMPDIR``)."""
    parent = tempfile.mkdtemp(prefix="cpr-t-", dir="/tmp")
    yield Path(parent)
    shutil.rmtree(parent, ignore_errors=True)


def start_build(command: list[str], manifest: Path, output: Path, parent: Path,
                base_env: dict[str, str] | None = None) -> subprocess.Popen:
    env = {**(os.environ if base_env is None else base_env), "PYTHONPATH": str(ROOT),
           "CODEPREFS_RAY_TMPDIR": str(parent)}
    env.pop("RAY_ADDRESS", None)
    return subprocess.Popen([sys.executable, *command, "--manifest", str(manifest), "--output", str(output)],
                            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def finish(build: subprocess.Popen) -> str:
    output, _ = build.communicate(timeout=600)
    assert build.returncode == 0, output[-4000:]
    return output


def shard_rows(output: Path) -> int:
    shards = sorted((output / "data").glob("train-*.parquet"))
    assert shards, f"no shards under {output}"
    return sum(pq.read_metadata(shard).num_rows for shard in shards)


def test_two_builds_started_together_both_finish(tmp_path, manifest, ray_parent):
    first = start_build(["pipelines/build_prefs.py"], manifest, tmp_path / "one", ray_parent)
    second = start_build(["-m", "codeprefs.cli", "build"], manifest, tmp_path / "two", ray_parent)
    finish(first)
    finish(second)
    assert shard_rows(tmp_path / "one") == shard_rows(tmp_path / "two") > 0
    # Each build removed the temp dir its own Ray session made, and nothing else.
    assert list(ray_parent.iterdir()) == []


def test_a_build_leaves_the_test_sessions_ray_running(ray_local, tmp_path, manifest):
    # The build gets the test session's own CODEPREFS_RAY_TMPDIR (or none): the same parent folder.
    parent = Path(os.environ.get("CODEPREFS_RAY_TMPDIR") or tempfile.gettempdir())
    node = ray_local.get_runtime_context().get_node_id()
    before = set(parent.iterdir())
    env = {key: value for key, value in os.environ.items() if key != "CODEPREFS_RAY_TMPDIR"}
    finish(start_build(["pipelines/build_prefs.py"], manifest, tmp_path / "out", parent, env))
    assert shard_rows(tmp_path / "out") > 0

    @ray_local.remote
    def answer() -> int:
        return 42

    assert ray_local.get(answer.remote(), timeout=120) == 42
    assert ray_local.get_runtime_context().get_node_id() == node
    assert ray_local.nodes()[0]["Alive"]
    # The build removed the Ray temp dir it made, and only that one.
    assert all(path.exists() for path in before)
    left = [path.name for path in set(parent.iterdir()) - before if path.name.startswith(("session_", "cpr-ray-"))]
    assert left == []
