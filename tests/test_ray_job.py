"""The build script runs unchanged as a Ray job: real head, real `ray job submit`, head stopped."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import polars as pl
import pytest

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent

pytestmark = pytest.mark.ray


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def ray_head():
    """A real Ray head started with `ray start --head --block`; terminated (not `ray stop`,
    which would kill every Ray instance on the machine) when the test ends."""
    env = {**os.environ, "RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0",
           "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
    env.pop("RAY_ADDRESS", None)
    temp_dir = tempfile.mkdtemp(prefix="cpr-", dir="/tmp")  # Ray's socket paths must stay short
    dashboard = free_port()
    head = subprocess.Popen(
        [str(BIN / "ray"), "start", "--head", "--block", f"--port={free_port()}",
         "--include-dashboard=true", "--dashboard-host=127.0.0.1", f"--dashboard-port={dashboard}",
         # Ports of their own: another Ray instance on the machine (the tests' local one) holds
         # the agents' defaults, and a job then finds "no available agent".
         f"--dashboard-agent-listen-port={free_port()}", f"--dashboard-agent-grpc-port={free_port()}",
         f"--metrics-export-port={free_port()}", f"--runtime-env-agent-port={free_port()}",
         "--num-cpus=2", f"--temp-dir={temp_dir}", "--disable-usage-stats"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True,
    )
    address = f"http://127.0.0.1:{dashboard}"
    deadline = time.monotonic() + 90
    while True:
        try:
            with urllib.request.urlopen(f"{address}/api/version", timeout=2) as answer:
                if answer.status == 200:
                    break
        except OSError:
            pass
        if head.poll() is not None or time.monotonic() > deadline:
            head.kill()
            raise RuntimeError(f"ray head did not start: {head.stdout.read().decode()[-2000:]}")
        time.sleep(1)
    try:
        yield address, env
    finally:
        os.killpg(head.pid, signal.SIGTERM)
        try:
            head.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(head.pid, signal.SIGKILL)
            head.wait()


def test_quickstart_runs_as_a_ray_job(ray_head, tmp_path):
    """The README's job command, verbatim but for the output path, on the embedded quickstart."""
    address, env = ray_head
    out = tmp_path / "out"
    command = [str(BIN / "ray"), "job", "submit", "--address", address, "--working-dir", ".", "--",
               "python", "pipelines/build_prefs.py", "--manifest", "manifests/quickstart.yaml",
               "--output", str(out)]
    for _ in range(30):  # the head answers before its job agent has registered
        submit = subprocess.run(command, env=env, capture_output=True, text=True, timeout=400, cwd=ROOT)
        if "No available agent to submit job" not in submit.stderr + submit.stdout:
            break
        time.sleep(2)
    assert submit.returncode == 0, submit.stdout[-3000:] + submit.stderr[-3000:]
    assert "succeeded" in (submit.stdout + submit.stderr).lower()
    record = json.loads((out / "run.json").read_text())
    assert len(record["inputs"]) == 8 and all(i["status"] == "ok" for i in record["inputs"])
    pairs = pl.read_parquet(out / "data" / "*.parquet")
    assert pairs.height == record["rows"]["kept"] > 0
    assert set(pairs["language"]) == {"C", "C#", "C++", "Go", "Java", "JavaScript", "Python", "Ruby"}
    assert set(pairs["aspect"]) == {"Functional_Correctness", "Runtime_Efficiency", "Memory_Efficiency",
                                    "Readability_Maintainability", "Security_Hardness"}
