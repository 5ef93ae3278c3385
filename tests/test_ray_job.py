"""The build script runs unchanged as a Ray job on a real two-node cluster with no shared folder.

A head and a second node are started with `ray start` on this machine, each with a temp dir and a
scratch folder of its own; only the second offers the custom resource `miner`, which the manifest's
`ray.unit_resources` asks of every source unit, so all cloning and mining runs there while the
other stages may run on either node (the job's driver runs on the head). The output lives on an
S3 server (moto's, on loopback), the only thing the nodes share. The README's job command builds
the quickstart there; its driver is killed with SIGKILL mid-build; the same command with
`--resume` finishes it with the pinned shard bytes; the trainer then trains on the pairs straight
from S3. The nodes are terminated, never `ray stop` (which would end every Ray
instance on the machine).
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from tests.processes import processes_naming
from tests.s3server import S3Server, s3_bucket, s3_server  # noqa: F401  (fixtures)
from tests.test_end_to_end import QUICKSTART_SHA256
from tests.trainer_fixtures import tiny_model  # noqa: F401  (a fixture)

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent

pytestmark = pytest.mark.ray


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Cluster:
    dashboard: str  # the job API's address
    env: dict[str, str]  # for `ray job` commands and the trainer
    head_scratch: Path
    worker_scratch: Path


def _own_ports() -> list[str]:
    """Ports of a node's own: two nodes (and the tests' local instance) share this machine, and
    agents on Ray's default ports would collide ("no available agent")."""
    return [f"--node-manager-port={free_port()}", f"--object-manager-port={free_port()}",
            f"--dashboard-agent-listen-port={free_port()}", f"--dashboard-agent-grpc-port={free_port()}",
            f"--metrics-export-port={free_port()}", f"--runtime-env-agent-port={free_port()}"]


def _start_node(args: list[str], env: dict[str, str]) -> subprocess.Popen:
    return subprocess.Popen([str(BIN / "ray"), "start", "--block", "--node-ip-address=127.0.0.1",
                             "--disable-usage-stats", *_own_ports(), *args],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)


def _stop(node: subprocess.Popen) -> None:
    os.killpg(node.pid, signal.SIGTERM)
    try:
        node.wait(timeout=15)
    except subprocess.TimeoutExpired:
        os.killpg(node.pid, signal.SIGKILL)
        node.wait()


def _wait_for(condition, timeout: float, what: str, nodes: list[subprocess.Popen] = ()) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        for node in nodes:
            if node.poll() is not None:
                raise RuntimeError(f"a ray node ended while waiting for {what}: "
                                   f"{node.stdout.read().decode()[-2000:]}")
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.5)


@pytest.fixture
def two_nodes(s3_server: S3Server, tmp_path: Path):  # noqa: F811
    base = {**os.environ, **s3_server.env(), "RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0",
            "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
    base.pop("RAY_ADDRESS", None)
    scratch = {name: tmp_path / f"scratch-{name}" for name in ("head", "worker")}
    temp = {name: tempfile.mkdtemp(prefix=f"cpr-{name[0]}-", dir="/tmp") for name in ("head", "worker")}
    gcs, dashboard = free_port(), free_port()
    nodes = [_start_node(["--head", f"--port={gcs}", "--num-cpus=1", "--include-dashboard=true",
                          "--dashboard-host=127.0.0.1", f"--dashboard-port={dashboard}", f"--temp-dir={temp['head']}"],
                         {**base, "CODEPREFS_SCRATCH_DIR": str(scratch["head"])})]
    try:
        address = f"http://127.0.0.1:{dashboard}"

        def answers() -> bool:
            try:
                with urllib.request.urlopen(f"{address}/api/version", timeout=2) as answer:
                    return answer.status == 200
            except OSError:
                return False

        _wait_for(answers, 90, "the head's dashboard", nodes)
        nodes.append(_start_node([f"--address=127.0.0.1:{gcs}", "--num-cpus=2", '--resources={"miner": 2}',
                                  f"--temp-dir={temp['worker']}"],
                                 {**base, "CODEPREFS_SCRATCH_DIR": str(scratch["worker"])}))

        def two_alive() -> bool:
            with urllib.request.urlopen(f"{address}/nodes?view=summary", timeout=5) as answer:
                summary = json.loads(answer.read())["data"]["summary"]
            return sum(node["raylet"]["state"] == "ALIVE" for node in summary) == 2

        _wait_for(two_alive, 90, "the second node to join", nodes)
        yield Cluster(address, base, scratch["head"], scratch["worker"])
    finally:
        for node in reversed(nodes):
            _stop(node)
        for folder in temp.values():
            subprocess.run(["rm", "-rf", folder], check=False)


def _submit(cluster: Cluster, manifest: Path, output: str, *extra: str,
            wait: bool = True) -> subprocess.CompletedProcess[str]:
    """The README's job command, verbatim but for the manifest and output (and ``extra`` flags)."""
    command = [str(BIN / "ray"), "job", "submit", "--address", cluster.dashboard, "--working-dir", ".",
               *([] if wait else ["--no-wait"]), "--",
               "python", "pipelines/build_prefs.py", "--manifest", str(manifest), "--output", output, *extra]
    for _ in range(30):  # the head answers before its job agent has registered
        submit = subprocess.run(command, env=cluster.env, capture_output=True, text=True, timeout=600, cwd=ROOT)
        if "No available agent to submit job" not in submit.stderr + submit.stdout:
            return submit
        time.sleep(2)
    return submit


def test_a_job_on_two_nodes_builds_to_s3_resumes_after_kill_9_and_trains(two_nodes, s3_bucket, tmp_path,
                                                                          tiny_model):  # noqa: F811
    import s3fs

    # The quickstart manifest, its units pinned to nodes offering `miner`.
    manifest = tmp_path / "quickstart.yaml"
    manifest.write_text(yaml.safe_dump({**yaml.safe_load((ROOT / "manifests" / "quickstart.yaml").read_text()),
                                        "sources": [{"type": "git", "repos": [str(ROOT / "quickstart/repos/*.bundle")]}],
                                        "ray": {"unit_resources": {"miner": 1}}}))
    url = f"{s3_bucket}/runs/quickstart"
    root = url.removeprefix("s3://")
    fs = s3fs.S3FileSystem(skip_instance_cache=True)

    def units_written() -> int:
        fs.invalidate_cache()
        return sum(1 for path in (fs.find(f"{root}/.cache/stages/source") if fs.exists(f"{root}/.cache") else [])
                   if path.rsplit("/", 1)[-1].startswith("unit-"))

    started = _submit(two_nodes, manifest, url, wait=False)
    assert started.returncode == 0, started.stdout[-3000:] + started.stderr[-3000:]
    _wait_for(lambda: units_written() >= 1, 300, "a first source unit on S3")
    drivers = processes_naming(root)  # the job's entrypoint: its shell and the build's python
    assert drivers, "the job's driver is not running on this machine"
    for pid in drivers:
        os.kill(pid, signal.SIGKILL)
    fs.invalidate_cache()
    assert not fs.exists(f"{root}/data"), "the kill came after the shards were written"
    assert json.loads(fs.cat_file(f"{root}/.cache/run-state.json"))["status"] != "complete"

    resumed = _submit(two_nodes, manifest, url, "--resume")
    log = resumed.stdout + resumed.stderr
    assert resumed.returncode == 0 and "succeeded" in log.lower(), log[-4000:]
    fs.invalidate_cache()
    written = {path.removeprefix(root + "/"): hashlib.sha256(fs.cat_file(path)).hexdigest()
               for path in fs.find(root) if path.endswith(".parquet") and "/.cache/" not in path}
    assert written == QUICKSTART_SHA256  # byte-identical to an uninterrupted local build
    record = json.loads(fs.cat_file(f"{root}/run.json"))
    assert record["resumed"] is True and record["stages"][0]["units_reused"] >= 1
    assert not fs.exists(f"{root}/.cache/lease.json")  # the dead driver's lease was taken over, then released

    # The units ran on the second node, the only one with `miner`: it cloned all eight repositories
    # into its own scratch folder; the head's holds none (planning pins a bundle without cloning
    # it), nor does the output.
    assert len(list((two_nodes.worker_scratch / "clones").glob("*.git"))) == 8
    assert not (two_nodes.head_scratch / "clones").exists()
    assert not any("/clones/" in path for path in fs.find(root))

    env = {**two_nodes.env, "PYTHONPATH": str(ROOT)}
    train = subprocess.run([sys.executable, "-m", "codeprefs.trainers.train", "--data", url, "--model", str(tiny_model),
                            "--output", str(tmp_path / "rm"), "--max-steps", "2", "--global-batch", "4"],
                           cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert train.returncode == 0, train.stderr[-3000:]
    assert json.loads((tmp_path / "rm" / "train_summary.json").read_text())["final"]["step"] == 2
    assert json.loads((tmp_path / "rm" / "data_report.json").read_text())["kept"] == record["rows"]["kept"]
