"""The sandbox contains hostile programs: loops, fork bombs, floods of output, writes, network."""

from __future__ import annotations

import os
import shutil
import socket
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from codeprefs.pipelines.synthesis.sandbox import (
    MEMORY_LIMIT_MODES,
    Limits,
    Sandbox,
    SandboxError,
    Step,
    detect_isolation,
    memory_limit_mode,
)

PYTHON = "python3"
NAMESPACES = detect_isolation() == "namespaces"
needs_namespaces = pytest.mark.skipif(
    not NAMESPACES, reason="namespaces isolation needs root and a working `unshare --net --pid --mount`")
ISOLATIONS = ["rlimits"] + (["namespaces"] if NAMESPACES else [])


@pytest.fixture(scope="module", params=ISOLATIONS)
def sandbox(request) -> Sandbox:
    # Not under pytest's tmp_path: its folders are private (0700) and jobs run as other uids.
    root = tempfile.mkdtemp(prefix=f"codeprefs-sandbox-test-{request.param}-")
    yield Sandbox(request.param, root=root)
    shutil.rmtree(root, ignore_errors=True)


def run_python(sandbox: Sandbox, code: str, **limits) -> object:
    [result] = sandbox.run({"main.py": code}, [Step("run", [PYTHON, "main.py"], Limits(**limits))])
    return result


def test_a_normal_program_runs_in_a_fresh_folder_with_a_scrubbed_environment(sandbox, monkeypatch):
    monkeypatch.setenv("CODEPREFS_SECRET", "do-not-leak")
    result = run_python(sandbox, "import os\nprint(sorted(os.listdir('.')), os.environ.get('CODEPREFS_SECRET'))\n")
    assert result.status == "ok"
    assert result.stdout.strip().endswith("None")
    assert "'main.py'" in result.stdout


def test_an_infinite_loop_is_stopped_by_the_cpu_limit(sandbox):
    started = time.monotonic()
    result = run_python(sandbox, "while True:\n    pass\n", wall_s=10, cpu_s=1)
    assert result.status == "cpu_limit"
    assert time.monotonic() - started < 6


def test_a_sleeping_program_is_stopped_by_the_wall_clock(sandbox):
    result = run_python(sandbox, "import time\nwhile True:\n    time.sleep(0.1)\n", wall_s=1, cpu_s=5)
    assert result.status == "timeout"
    assert result.wall_s < 3


def test_a_flood_of_output_is_cut_off(sandbox):
    result = run_python(sandbox, "while True:\n    print('x' * 1000)\n", wall_s=10, output_kb=64)
    assert result.status == "output_limit"
    assert len(result.stdout) <= 16 * 1024


def test_a_huge_file_is_stopped_by_the_file_size_limit(sandbox):
    code = "with open('big', 'wb') as f:\n    while True:\n        f.write(b'x' * 65536)\n"
    result = run_python(sandbox, code, wall_s=10, file_mb=4)
    assert result.status in ("file_limit", "exit")  # SIGXFSZ, or EFBIG when it is caught
    assert result.status != "ok"


def test_memory_is_limited(sandbox):
    result = run_python(sandbox, "block = bytearray(3 * 1024 ** 3)\nprint('allocated')\n", memory_mb=256)
    assert result.status == "exit"
    assert "MemoryError" in result.stderr


def _live_processes(uid: int) -> int:
    """Processes of ``uid`` that are not zombies (a zombie is dead, waiting to be reaped)."""
    count = 0
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if os.stat(f"/proc/{entry}").st_uid != uid:
                    continue
                with open(f"/proc/{entry}/stat") as handle:
                    count += handle.read().rsplit(")", 1)[1].split()[0] != "Z"
            except OSError:
                pass
    return count


@pytest.mark.skipif(os.geteuid() != 0, reason="a bounded fork bomb needs a uid of its own (root only)")
def test_a_fork_bomb_is_bounded_and_leaves_nothing_behind(sandbox):
    # Each child forks again; RLIMIT_NPROC (the job's own uid) stops it at 24 processes.
    code = ("import os, time\n"
            "for _ in range(200):\n"
            "    try:\n        os.fork()\n    except OSError:\n        pass\n"
            "time.sleep(30)\n")
    with sandbox.slot() as slot:
        uid = sandbox.uid_for(slot)
        started = time.monotonic()
        [result] = sandbox.run({"main.py": code}, [Step("run", [PYTHON, "main.py"],
                                                        Limits(wall_s=2, processes=24))], slot=slot)
        assert result.status == "timeout"
        assert time.monotonic() - started < 10
        deadline = time.monotonic() + 5  # SIGKILL is delivered asynchronously
        while _live_processes(uid) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert _live_processes(uid) == 0, "every process of the job must be gone"


@needs_namespaces
def test_writing_outside_the_job_folder_fails():
    sandbox = Sandbox("namespaces")
    targets = ["/tmp/codeprefs-escape-test",
               str(Path(sandbox.root) / "escape"), str(Path.home() / "codeprefs-escape-test")]
    # /dev/shm is the job's own tmpfs: writable, and gone with the job
    code = "open('/dev/shm/codeprefs-escape-test', 'w').write('x')\n"
    for target in targets:
        code += (f"try:\n    open({target!r}, 'w').write('x')\n    print('WROTE {target}')\n"
                 f"except OSError as error:\n    print('blocked', error.strerror)\n")
    code += "open('inside.txt', 'w').write('ok')\nprint('inside ok')\n"
    [result] = sandbox.run({"main.py": code}, [Step("run", [PYTHON, "main.py"])])
    assert result.status == "ok"
    assert "WROTE" not in result.stdout
    assert result.stdout.count("blocked") == len(targets)
    assert "inside ok" in result.stdout
    for target in [*targets, "/dev/shm/codeprefs-escape-test"]:
        assert not os.path.exists(target)


@needs_namespaces
def test_the_network_is_unreachable_even_on_loopback():
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    port = server.getsockname()[1]
    code = (f"import socket\ntry:\n    socket.create_connection(('127.0.0.1', {port}), timeout=2)\n"
            "    print('connected')\nexcept OSError as error:\n    print('refused', error)\n"
            "try:\n    socket.create_connection(('1.1.1.1', 80), timeout=2)\n    print('internet')\n"
            "except OSError as error:\n    print('unreachable', error)\n")
    [result] = Sandbox("namespaces").run({"main.py": code}, [Step("run", [PYTHON, "main.py"])])
    server.setblocking(False)  # a completed connection would wait in the backlog
    try:
        accepted = [server.accept()]
    except BlockingIOError:
        accepted = []
    server.close()
    assert result.status == "ok"
    assert "connected" not in result.stdout and "internet" not in result.stdout
    assert not accepted, "the host's loopback server must see no connection"


def test_later_steps_do_not_run_after_a_failure(sandbox):
    results = sandbox.run({"a.py": "raise SystemExit(3)\n", "b.py": "print('b')\n"},
                          [Step("first", [PYTHON, "a.py"]), Step("second", [PYTHON, "b.py"])])
    assert [(r.name, r.status, r.exit_code) for r in results] == [("first", "exit", 3),
                                                                   ("second", "not_run", None)]


def test_a_missing_command_is_a_launch_error(sandbox):
    [result] = sandbox.run({}, [Step("run", ["codeprefs-no-such-command"])])
    assert result.status == "launch_error"


def test_unknown_isolation_is_an_error():
    with pytest.raises(ValueError, match="unknown isolation"):
        Sandbox("chroot")


@pytest.mark.skipif(os.geteuid() != 0, reason="only root runs jobs as other uids")
def test_a_root_other_uids_cannot_reach_is_refused(tmp_path):
    private = tmp_path / "private"
    private.mkdir(mode=0o700)
    os.chmod(tmp_path, 0o700)
    with pytest.raises(SandboxError, match="not searchable"):
        Sandbox("rlimits", root=private / "sandbox")

# Touches every page of a 3 GiB shared mapping: shmem, which RLIMIT_DATA does not count.
SHARED_MAPPING = ("import mmap\n"
                  "size, step = 3 * 1024 ** 3, 64 * 1024 ** 2\n"
                  "block = mmap.mmap(-1, size, flags=mmap.MAP_SHARED | mmap.MAP_ANONYMOUS)\n"
                  "for offset in range(0, size, step):\n"
                  "    block[offset:offset + step] = b'x' * step\n"
                  "print('touched', size)\n")
# A 3 GiB file in /dev/shm (tmpfs: memory, not disk), written 64 MiB at a time.
SHM_FILE = ("import os\n"
            "chunk = b'x' * (64 * 1024 ** 2)\n"
            "with open('/dev/shm/codeprefs-hog', 'wb') as handle:\n"
            "    for _ in range(48):\n"
            "        handle.write(chunk)\n"
            "print('wrote 3 GiB')\n")
needs_memory_cgroup = pytest.mark.skipif(
    memory_limit_mode() not in ("cgroup-v1", "cgroup-v2"),
    reason="a per-job memory cgroup needs root and a writable memory controller")


def _job_cgroups(sandbox: Sandbox) -> list[str]:
    return sorted(path.name for path in sandbox.cgroups.base.iterdir() if path.name.startswith("codeprefs-"))


@needs_memory_cgroup
@pytest.mark.parametrize("code", [SHARED_MAPPING, SHM_FILE], ids=["shared-mmap", "dev-shm-file"])
def test_shared_memory_counts_against_the_memory_limit(sandbox, code):
    result = run_python(sandbox, code, memory_mb=1024, file_mb=4096, wall_s=60, cpu_s=60)
    assert result.status == "memory_limit", (result.status, result.stdout, result.stderr)
    assert "touched" not in result.stdout and "wrote" not in result.stdout
    assert sandbox.memory_limit in ("cgroup-v1", "cgroup-v2")
    assert _job_cgroups(sandbox) == [], "each job's cgroup is removed afterwards"


@needs_memory_cgroup
def test_parallel_jobs_each_get_a_cgroup_and_a_normal_program_still_passes(sandbox):
    normal = "block = bytearray(200 * 1024 ** 2)\nprint('fine', len(block))\n"
    with ThreadPoolExecutor(3) as pool:
        results = list(pool.map(lambda code: run_python(sandbox, code, memory_mb=1024, wall_s=60,
                                                         cpu_s=60),
                                [normal, SHARED_MAPPING, normal]))
    assert [r.status for r in results] == ["ok", "memory_limit", "ok"]
    assert "fine" in results[0].stdout
    assert _job_cgroups(sandbox) == []


def test_the_memory_limit_mode_is_reported(sandbox):
    assert sandbox.memory_limit == memory_limit_mode()
    assert sandbox.memory_limit in MEMORY_LIMIT_MODES


@needs_namespaces
def test_without_cgroups_dev_shm_is_still_a_capped_private_tmpfs():
    root = tempfile.mkdtemp(prefix="codeprefs-sandbox-test-rlimit-memory-")
    try:
        sandbox = Sandbox("namespaces", root=root, memory_cgroups=False)
        assert sandbox.memory_limit == "rlimit"
        result = run_python(sandbox, SHM_FILE, memory_mb=256, file_mb=4096, wall_s=60, cpu_s=60)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    assert result.status == "exit"
    assert "No space left on device" in result.stderr
    assert not os.path.exists("/dev/shm/codeprefs-hog")
