"""Faults on the output side: a full disk or an unwritable folder stops the build with a clear
message and leaves no partial shard."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def run_build(manifest: Path, output: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "RAY_AUTH_MODE": "disabled"}
    env.pop("RAY_ADDRESS", None)
    return subprocess.run([sys.executable, str(ROOT / "pipelines" / "build_prefs.py"), "--manifest",
                           str(manifest), "--output", str(output)],
                          capture_output=True, text=True, cwd=ROOT, env=env, timeout=600)


@pytest.fixture
def small_filesystem(tmp_path):
    """A 512 KB tmpfs (needs root, as the machines this project runs on give)."""
    mount_point = tmp_path / "small"
    mount_point.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=512k", "tmpfs", str(mount_point)],
                             capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here: {mounted.stderr.strip()}")
    yield mount_point
    subprocess.run(["umount", "-l", str(mount_point)], check=False)


@pytest.fixture
def manifest_with_data(make_repo, tmp_path):
    """A repository whose pairs (random, incompressible text) take a few megabytes."""
    repo = make_repo("big")
    for index in range(40):
        body = "\n".join(f"KEY_{k} = '{os.urandom(24).hex()}'" for k in range(600))
        repo.commit(f"Fix bug number {index} in the keys", {"keys.py": body + "\n"})
    manifest = tmp_path / "run.yaml"
    manifest.write_text(f"name: faults\nsources:\n  - type: git\n    repos: [{repo.path}]\n")
    return manifest


def test_a_full_disk_stops_the_build_with_a_clear_message_and_no_shard(small_filesystem, manifest_with_data):
    output = small_filesystem / "out"
    result = run_build(manifest_with_data, output)
    assert result.returncode == 2, result.stderr[-2000:]
    assert "No space left on device" in result.stderr
    shards = list((output / "data").glob("train-*")) if (output / "data").exists() else []
    assert shards == []
    leftovers = [p for p in output.rglob("*.tmp")]
    assert leftovers == []
    assert not (output / "run.json").exists()


def test_an_unwritable_output_folder_is_named(tmp_path, manifest_with_data, small_filesystem):
    subprocess.run(["mount", "-o", "remount,ro", str(small_filesystem)], check=True)
    result = run_build(manifest_with_data, small_filesystem / "out")
    assert result.returncode == 2
    assert "Read-only file system" in result.stderr and str(small_filesystem / "out") in result.stderr

    a_file = tmp_path / "not-a-folder"
    a_file.write_text("x")
    result = run_build(manifest_with_data, a_file / "out")
    assert result.returncode == 2
    assert str(a_file) in result.stderr
