"""Reading build outputs and pairs from object storage (#15): stats, runs and the trainers' --data
against a real S3-compatible server (moto's, started on loopback by tests/s3server.py)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from codeprefs.core.storage import StorageError, display_url, local_copy, matching, remote_files
from codeprefs.trainers.data import DataError, load_pairs
from tests.s3server import S3Server, s3_bucket, s3_server, upload  # noqa: F401
from tests.test_cli_output import fake_output
from tests.trainer_fixtures import make_rows, tiny_model, write_shards  # noqa: F401

ROOT = Path(__file__).resolve().parents[1]


def run_cli(args: list[str], server: S3Server) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, **server.env(), "PYTHONPATH": str(ROOT), "COLUMNS": "200"}
    return subprocess.run([sys.executable, "-m", *args], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=600)


def test_credentials_never_reach_a_message():
    assert display_url("s3://KEY:SECRET@bucket/out") == "s3://bucket/out"
    assert display_url("hf://datasets/org/name") == "hf://datasets/org/name"


def test_listing_picks_files_and_names_what_is_missing(tmp_path, s3_bucket):
    output = write_shards(tmp_path / "out", make_rows(6))
    (output / ".cache" / "clones").mkdir(parents=True)
    (output / ".cache" / "clones" / "big.parquet").write_bytes(b"not for the trainer")
    (output / "rejects").mkdir()
    (output / "rejects" / "rejects.jsonl").write_text("{}\n")
    upload(output, f"{s3_bucket}/out")

    everything = remote_files(f"{s3_bucket}/out")
    assert sorted(everything) == [".cache/clones/big.parquet", "data/train-00000-of-00001.parquet",
                                  "rejects/rejects.jsonl"]
    picked = remote_files(f"{s3_bucket}/out", keep=matching("*.parquet", exclude=(".cache/", "rejects/")))
    assert list(picked) == ["data/train-00000-of-00001.parquet"]
    with local_copy(f"{s3_bucket}/out/data/train-00000-of-00001.parquet") as copy:
        assert copy.read_bytes() == (output / "data" / "train-00000-of-00001.parquet").read_bytes()
    with pytest.raises(StorageError, match=f"{s3_bucket}/nothing: no such file or folder"):
        remote_files(f"{s3_bucket}/nothing")


def test_pairs_load_from_object_storage_as_from_disk(tmp_path, s3_bucket):
    output = write_shards(tmp_path / "out", make_rows(10), shards=2)
    upload(output, f"{s3_bucket}/builds/q")
    local = load_pairs(output)
    assert load_pairs(f"{s3_bucket}/builds/q").equals(local)
    assert load_pairs(f"{s3_bucket}/builds/q/").equals(local)
    one_shard = load_pairs(f"{s3_bucket}/builds/q/data/train-00001-of-00002.parquet")
    assert one_shard.num_rows == 5 and one_shard.column("id").to_pylist() == local.column("id").to_pylist()[5:]
    with pytest.raises(DataError, match=f"pairs source {s3_bucket}/builds/none: no such file or folder"):
        load_pairs(f"{s3_bucket}/builds/none")
    with pytest.raises(DataError, match=f"{s3_bucket}/builds/q: pick a split with --split"):
        pq.write_table(pq.read_table(output / "data" / "train-00000-of-00002.parquet"),
                       tmp_path / "test-00000-of-00001.parquet")
        upload_one(tmp_path / "test-00000-of-00001.parquet", f"{s3_bucket}/builds/q/data/test-00000-of-00001.parquet")
        load_pairs(f"{s3_bucket}/builds/q")


def upload_one(path: Path, url: str) -> None:
    import s3fs

    s3fs.S3FileSystem(skip_instance_cache=True).put_file(str(path), url.removeprefix("s3://"))


def test_stats_and_runs_read_an_output_in_object_storage(tmp_path, s3_server, s3_bucket):
    output = fake_output(tmp_path / "builds" / "first")
    (output / ".cache").mkdir()
    (output / ".cache" / "run-state.json").write_text(json.dumps({"status": "complete"}))
    upload(tmp_path / "builds", f"{s3_bucket}/builds")

    local = run_cli(["codeprefs.cli", "stats", str(output)], s3_server)
    remote = run_cli(["codeprefs.cli", "stats", f"{s3_bucket}/builds/first"], s3_server)
    assert remote.returncode == 0, remote.stderr
    assert remote.stdout == local.stdout and "JavaScript" in remote.stdout

    listed = run_cli(["codeprefs.cli", "runs", f"{s3_bucket}/builds"], s3_server)
    assert listed.returncode == 0, listed.stderr
    assert f"{s3_bucket}/builds/first" in listed.stdout and "fake" in listed.stdout
    assert "codeprefs-remote-" not in listed.stdout + listed.stderr  # never the temporary copy

    missing = run_cli(["codeprefs.cli", "stats", f"{s3_bucket}/builds/absent"], s3_server)
    assert missing.returncode == 2
    assert f"{s3_bucket}/builds/absent: no such file or folder" in missing.stderr


def test_the_trainer_trains_on_pairs_in_object_storage(tmp_path, s3_server, s3_bucket, tiny_model):  # noqa: F811
    data = write_shards(tmp_path / "pairs", make_rows(8))
    upload(data, f"{s3_bucket}/pairs")
    result = run_cli(["codeprefs.trainers.train", "--data", f"{s3_bucket}/pairs", "--model", str(tiny_model),
                      "--output", str(tmp_path / "rm"), "--max-steps", "2", "--global-batch", "4"], s3_server)
    assert result.returncode == 0, result.stderr
    summary = json.loads((tmp_path / "rm" / "train_summary.json").read_text())
    assert summary["final"]["step"] == 2
    report = json.loads((tmp_path / "rm" / "data_report.json").read_text())
    assert report["kept"] == 8


def test_candidates_are_read_from_object_storage(tmp_path, s3_bucket):
    from codeprefs.trainers.candidates import EVALUATION_COLUMNS, read_candidates

    folder = tmp_path / "candidates"
    folder.mkdir()
    rows = [{"task_id": f"t{k // 3}", "candidate_id": f"c{k % 3}", "language": "Python", "prompt": "p",
             "code": f"x = {k}", "passed": k % 3 == 0, "pass_rate": float(k % 3 == 0)} for k in range(6)]
    pq.write_table(pa.Table.from_pylist(rows[3:]), folder / "candidates-00001-of-00002.parquet")
    pq.write_table(pa.Table.from_pylist(rows[:3]), folder / "candidates-00000-of-00002.parquet")
    upload(folder, f"{s3_bucket}/out/candidates")
    remote = read_candidates(f"{s3_bucket}/out/candidates", EVALUATION_COLUMNS)
    assert remote.equals(read_candidates(folder, EVALUATION_COLUMNS))
    assert remote["code"].to_pylist() == [f"x = {k}" for k in range(6)]
    pq.write_table(pa.Table.from_pylist([{"task_id": "t9"}]), tmp_path / "bad.parquet")
    upload_one(tmp_path / "bad.parquet", f"{s3_bucket}/out/candidates/bad.parquet")
    with pytest.raises(DataError, match=f"^{s3_bucket}/out/candidates/bad.parquet: no column candidate_id"):
        read_candidates(f"{s3_bucket}/out/candidates", EVALUATION_COLUMNS)


# -- builds that write to object storage ------------------------------------------------------------


def _build_to(url: str, s3_server: S3Server, cwd: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    """``codeprefs build`` of the quickstart into ``url``, as a user runs it (its own local Ray,
    whose workers inherit the server's environment)."""
    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, **s3_server.env(), "PYTHONPATH": str(root), "COLUMNS": "200"}
    return subprocess.run([sys.executable, "-m", "codeprefs.cli", "build", "--manifest",
                           str(root / "manifests" / "quickstart.yaml"), "--output", url, *extra],
                          cwd=cwd, env=env, capture_output=True, text=True, timeout=900)


@pytest.mark.ray
def test_a_build_to_object_storage_writes_the_same_shards_as_to_disk(tmp_path, s3_bucket, s3_server):
    import hashlib

    import s3fs

    from tests.test_end_to_end import QUICKSTART_SHA256

    url = f"{s3_bucket}/builds/quickstart"
    first = _build_to(url, s3_server, tmp_path)
    assert first.returncode == 0, first.stderr[-3000:]
    assert f"to {url}/data" in first.stdout
    fs = s3fs.S3FileSystem(skip_instance_cache=True)
    root = url.removeprefix("s3://")
    written = {path.removeprefix(root + "/"): hashlib.sha256(fs.cat_file(path)).hexdigest()
               for path in fs.find(root) if path.endswith(".parquet") and "/.cache/" not in path}
    assert written == QUICKSTART_SHA256  # byte-identical to the pinned local build
    state = json.loads(fs.cat_file(f"{root}/.cache/run-state.json"))
    assert state["status"] == "complete" and sorted(state["files"]) == sorted(QUICKSTART_SHA256)
    assert json.loads(fs.cat_file(f"{root}/run.json"))["rows"]["kept"] > 0
    assert not fs.exists(f"{root}/.cache/lease.json")  # released
    assert list(tmp_path.iterdir()) == []  # nothing local: no s3:/ folder, no out/

    again = _build_to(url, s3_server, tmp_path)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "up to date" in again.stdout

    # A damaged run state is named by its URL; --restart removes the stage cache and the run's
    # files from the bucket and builds afresh, to the same bytes; an object no run wrote (which
    # takes --force to build beside, as on disk) stays.
    stale_unit = next(path for path in fs.find(f"{root}/.cache/stages") if "/unit-" in path)
    fs.pipe_file(f"{root}/notes.txt", b"kept: no codeprefs run wrote it")
    fs.pipe_file(f"{root}/.cache/run-state.json", b'{"status": "comp')
    refused = _build_to(url, s3_server, tmp_path)
    assert refused.returncode == 2 and f"{url}/.cache/run-state.json" in refused.stderr.replace("\n", "")
    assert "--restart" in refused.stderr
    fs.invalidate_cache()
    unit_written = fs.info(stale_unit)["LastModified"]
    restarted = _build_to(url, s3_server, tmp_path, "--restart", "--force")
    assert restarted.returncode == 0, restarted.stderr[-3000:]
    fs.invalidate_cache()
    assert {path.removeprefix(root + "/"): hashlib.sha256(fs.cat_file(path)).hexdigest()
            for path in fs.find(root) if path.endswith(".parquet") and "/.cache/" not in path} == QUICKSTART_SHA256
    assert fs.info(stale_unit)["LastModified"] > unit_written  # rewritten, not reused
    assert fs.cat_file(f"{root}/notes.txt") == b"kept: no codeprefs run wrote it"
    assert json.loads(fs.cat_file(f"{root}/.cache/run-state.json"))["status"] == "complete"
    assert list(tmp_path.iterdir()) == []


def test_a_lease_admits_one_build_and_is_taken_over_once_expired_or_its_holder_died(s3_bucket):
    import socket
    import time

    import s3fs

    from codeprefs.core.lease import Holder, Lease, LeaseError

    fs = s3fs.S3FileSystem(skip_instance_cache=True)
    key = f"{s3_bucket.removeprefix('s3://')}/out/.cache/lease.json"
    first = Lease(fs, key, "s3://out", seconds=30).acquire()
    with pytest.raises(LeaseError, match=r"another build is running on s3://out \(process \d+ on"):
        Lease(fs, key, "s3://out", seconds=30).acquire()
    first.release()
    assert not fs.exists(key)

    # An expired lease (a holder on another node that died) is taken over.
    fs.pipe_file(key, Holder("old", "another-node", 1, time.time() - 1).dump())
    second = Lease(fs, key, "s3://out", seconds=30).acquire()
    assert Holder.parse(fs.cat_file(key)).token == second.token
    second.release()

    # A live lease whose holder process on this host is gone (kill -9 of a driver) is taken over.
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    fs.pipe_file(key, Holder("killed", socket.gethostname(), dead.pid, time.time() + 600).dump())
    third = Lease(fs, key, "s3://out", seconds=30).acquire()
    assert Holder.parse(fs.cat_file(key)).token == third.token

    # Somebody else writing the lease makes the holder lose it at its next renewal.
    third.seconds = 3
    fs.pipe_file(key, Holder("intruder", "another-node", 1, time.time() + 600).dump())
    deadline = time.monotonic() + 20
    while third._lost is None and time.monotonic() < deadline:
        time.sleep(0.2)
    with pytest.raises(LeaseError, match="lost its lease"):
        third.check()
    third.release()
    assert Holder.parse(fs.cat_file(key)).token == "intruder"  # not ours: left in place
