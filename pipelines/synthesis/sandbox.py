"""Run untrusted programs: a fresh folder, no network, resource limits, nothing left behind.

A *job* is a set of files plus a list of *steps* (compile, then run). :class:`Sandbox` starts
:mod:`codeprefs.pipelines.synthesis.jail` for each job, which runs the steps and reports how each ended.
How strongly a job is isolated depends on what the machine allows; :func:`detect_isolation`
probes it once per process:

``namespaces`` (root, with ``unshare`` from util-linux)
    new mount, network and PID namespaces. No network at all (a lone loopback that is down);
    every mount read-only except a size-capped tmpfs on the job folder; each job runs as an
    unprivileged uid of its own (a *slot*, ``uid_base + n``, leased with a lock file), so
    ``RLIMIT_NPROC`` bounds a fork bomb without touching other jobs; when the job's first
    process ends, the kernel kills everything else in its PID namespace.
``rlimits`` (anything else)
    resource limits, a wall-clock timeout that kills the step's process group, a scrubbed
    environment and a temporary folder, but the network and the rest of the file system stay
    reachable. Chosen only when namespaces do not work; the build logs it once and records it.

Limits per step (:class:`Limits`): wall-clock seconds, CPU seconds, memory, file size, printed
output, processes and open files.

How strongly memory is bounded is the sandbox's ``memory_limit`` mode (:func:`memory_limit_mode`,
recorded in run.json as ``sandbox_memory_limit``):

``cgroup-v2`` / ``cgroup-v1`` (root, with a writable memory controller)
    each job runs in a memory cgroup of its own (:mod:`codeprefs.pipelines.synthesis.cgroups`), limited
    per step to ``memory_mb``; it counts every page the job touches, shared memory, ``/dev/shm``
    files and the job folder's tmpfs included. A step the OOM killer stops ends
    ``memory_limit``. The cgroup is removed after the job.
``rlimit`` (the weaker mode: no memory cgroup can be made here)
    ``RLIMIT_DATA`` bounds heap and private mappings only (``RLIMIT_AS`` would break the JVM,
    V8 and Go, which reserve far more address space than they use). With ``namespaces``
    isolation ``/dev/shm`` and the job folder are private tmpfs capped in size and SysV shared
    memory dies with the job's IPC namespace, but anonymous shared mappings and ``memfd``
    files are not bounded; the build logs that once.
In every mode ``RLIMIT_DATA`` stays, so an oversized heap allocation fails fast.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import functools
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from codeprefs.pipelines.synthesis.cgroups import JobCgroup, memory_cgroups

log = logging.getLogger(__name__)

JAIL = Path(__file__).with_name("jail.py")
SAFE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
UNSHARE = ("unshare", "--mount", "--net", "--pid", "--ipc", "--fork", "--kill-child", "--mount-proc",
           "--propagation", "private", "--")
ISOLATIONS = ("namespaces", "rlimits")
MEMORY_LIMIT_MODES = ("cgroup-v2", "cgroup-v1", "rlimit")
MiB = 1 << 20


@dataclass(frozen=True)
class Limits:
    """Resource limits of one step."""

    wall_s: float = 10.0
    cpu_s: int = 10
    memory_mb: int | None = 1024  # the job's memory cgroup where there is one, and RLIMIT_DATA
    file_mb: int = 64  # largest file a step may write
    output_kb: int = 1024  # stdout + stderr before the step is killed
    processes: int = 256  # threads count too (JVMs and Go start many)
    open_files: int = 256


@dataclass(frozen=True)
class Step:
    """One command of a job, run in the job folder (``cwd`` relative to it)."""

    name: str
    argv: Sequence[str]
    limits: Limits = Limits()
    env: Mapping[str, str] = field(default_factory=dict)
    cwd: str = "."
    writable: Sequence[str] = ()  # cache folders this step may write (namespaces mode)


@dataclass(frozen=True)
class StepResult:
    """How a step ended. ``status``: ok, exit, signal, timeout, cpu_limit, memory_limit (killed
    by its memory cgroup's OOM killer), file_limit, output_limit, launch_error (the command could not start), not_run (an earlier step failed)."""

    name: str
    status: str
    exit_code: int | None = None
    signal: int | None = None
    wall_s: float = 0.0
    stdout: str = ""
    stderr: str = ""

    @property
    def ok(self) -> bool:
        return self.status == "ok"


class SandboxError(RuntimeError):
    """The sandbox itself failed (not the program in it)."""


def _can_use_namespaces() -> bool:
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        return False
    try:
        probe = subprocess.run([*UNSHARE, "true"], capture_output=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return probe.returncode == 0


@functools.cache
def detect_isolation() -> str:
    """The strongest isolation this machine allows (probed once per process)."""
    return "namespaces" if _can_use_namespaces() else "rlimits"


def memory_limit_mode() -> str:
    """How jobs' memory is bounded on this machine: one of :data:`MEMORY_LIMIT_MODES`."""
    cgroups = memory_cgroups()
    return cgroups.mode if cgroups else "rlimit"


def default_root() -> Path:
    return Path(tempfile.gettempdir()) / f"codeprefs-sandbox-{os.geteuid()}"


class SlotPool:
    """Exclusive slots (uid + cache folder) shared by every process on the machine via flock."""

    def __init__(self, root: Path, uid_base: int, size: int) -> None:
        self.root = root
        self.uid_base = uid_base
        self.size = size
        (root / "slots").mkdir(parents=True, exist_ok=True)

    @contextlib.contextmanager
    def lease(self) -> Iterator[int]:
        """Hold the lowest free slot for the block (lowest first, so caches stay warm)."""
        while True:
            for slot in range(self.size):
                handle = open(self.root / "slots" / f"slot-{slot}.lock", "a+b")  # noqa: SIM115
                try:
                    fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    handle.close()
                    continue
                try:
                    yield slot
                finally:
                    fcntl.flock(handle, fcntl.LOCK_UN)
                    handle.close()
                return
            time.sleep(0.05)


class Sandbox:
    """Runs jobs in isolation; safe to share between threads (each job leases its own slot).

    ``memory_cgroups=False`` keeps to the weaker ``rlimit`` memory mode even where cgroups work.
    """

    def __init__(self, isolation: str = "auto", root: str | Path | None = None,
                 uid_base: int = 2_000_000, slots: int = 64, tmpfs_mb: int = 512,
                 memory_cgroups: bool = True) -> None:
        if isolation not in ("auto", *ISOLATIONS):
            raise ValueError(f"unknown isolation {isolation!r}; expected auto or one of {ISOLATIONS}")
        self.isolation = detect_isolation() if isolation == "auto" else isolation
        if self.isolation == "namespaces" and not _can_use_namespaces():
            raise SandboxError("namespaces isolation needs root and a working `unshare`")
        self.root = Path(root).resolve() if root else default_root()
        self.root.mkdir(parents=True, exist_ok=True)
        os.chmod(self.root, 0o711)
        self.as_root = os.geteuid() == 0
        if self.as_root:
            _check_reachable(self.root)
        self.slots = SlotPool(self.root, uid_base, slots)
        self.tmpfs_bytes = tmpfs_mb * MiB
        self.cgroups = _memory_cgroups() if memory_cgroups else None
        self.memory_limit = self.cgroups.mode if self.cgroups else "rlimit"
        self._lock = threading.Lock()

    def uid_for(self, slot: int) -> int | None:
        """The uid a job in ``slot`` runs as (None: the current user, when not root)."""
        return self.slots.uid_base + slot if self.as_root else None

    def cache_dir(self, slot: int, name: str) -> Path:
        """A folder that persists between jobs of ``slot`` (a warm build cache), made on demand."""
        path = self.root / "cache" / f"slot-{slot}" / name
        if not path.is_dir():
            with self._lock:
                path.mkdir(parents=True, exist_ok=True)
                uid = self.uid_for(slot)
                if uid is not None:
                    for part in (path.parent, path):
                        os.chown(part, uid, uid)
                    os.chmod(path.parent, 0o711)
                    os.chmod(path, 0o700)
        return path

    @contextlib.contextmanager
    def slot(self) -> Iterator[int]:
        """Lease a slot for several jobs that share its caches (e.g. compile, then run)."""
        with self.slots.lease() as slot:
            yield slot

    def run(self, files: Mapping[str, str | bytes], steps: Sequence[Step], slot: int | None = None,
            stop_on_failure: bool = True) -> list[StepResult]:
        """Write ``files`` into a fresh folder and run ``steps`` there, in order.

        Steps after the first one that does not end ``ok`` are reported ``not_run`` (unless
        ``stop_on_failure`` is false). Step environments get ``PATH``, ``HOME``, ``TMPDIR`` and
        ``LANG`` plus what the step sets; nothing is inherited from the caller.
        """
        if slot is None:
            with self.slots.lease() as leased:
                return self.run(files, steps, leased, stop_on_failure)
        job_dir = self.root / "jobs" / uuid.uuid4().hex
        workdir = job_dir / "work"
        workdir.mkdir(parents=True)
        os.chmod(job_dir, 0o711)
        uid = self.uid_for(slot)
        cgroup: JobCgroup | None = None
        try:
            if uid is not None and self.isolation == "rlimits":
                os.chown(workdir, uid, uid)
                os.chmod(workdir, 0o700)
            if self.cgroups is not None:
                try:
                    cgroup = self.cgroups.create()
                except OSError as error:
                    raise SandboxError(f"could not make the job's memory cgroup: {error}") from None
            job = self._job(files, steps, workdir, uid, stop_on_failure, cgroup)
            return self._launch(job, steps)
        finally:
            if cgroup is not None:
                cgroup.remove()
            if uid is not None and self.isolation == "rlimits":
                _remove_shared_memory_of(uid)
            shutil.rmtree(job_dir, ignore_errors=True)

    def _job(self, files, steps, workdir: Path, uid: int | None, stop_on_failure: bool,
             cgroup: JobCgroup | None) -> dict:
        writable = sorted({path for step in steps for path in step.writable})
        encoded = {name: base64.b64encode(content.encode("utf-8") if isinstance(content, str)
                                          else content).decode("ascii")
                   for name, content in files.items()}
        return {
            "workdir": str(workdir), "mount": self.isolation == "namespaces",
            "tmpfs_bytes": self.tmpfs_bytes, "uid": uid, "gid": uid, "files": encoded,
            # the private /dev/shm (namespaces): no larger than the job's largest memory limit
            "shm_bytes": max((step.limits.memory_mb or 0) * MiB for step in steps) or self.tmpfs_bytes,
            "cgroup": cgroup.spec() if cgroup else None,
            "writable": writable if self.isolation == "namespaces" else [],
            "stop_on_failure": stop_on_failure,
            "steps": [self._step(step, workdir) for step in steps],
        }

    def _step(self, step: Step, workdir: Path) -> dict:
        limits = step.limits
        env = {"PATH": SAFE_PATH, "HOME": str(workdir), "TMPDIR": str(workdir / "tmp"),
               "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8"}
        env.update(step.env)
        processes = limits.processes
        if not self.as_root:  # RLIMIT_NPROC counts every process of the user
            processes += _processes_of(os.getuid())
        return {
            "name": step.name, "argv": list(step.argv), "env": env, "cwd": step.cwd,
            "wall_s": limits.wall_s, "cpu_s": int(limits.cpu_s),
            "memory_bytes": limits.memory_mb * MiB if limits.memory_mb else None,
            "file_bytes": limits.file_mb * MiB, "output_bytes": limits.output_kb * 1024,
            "processes": processes, "open_files": limits.open_files,
            "writable": [str(path) for path in step.writable],
        }

    def _launch(self, job: dict, steps: Sequence[Step]) -> list[StepResult]:
        command = [sys.executable, "-I", "-S", str(JAIL)]
        if job["mount"]:
            command = [*UNSHARE, *command]
        budget = sum(step.limits.wall_s for step in steps) + 30
        process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                   stderr=subprocess.PIPE, start_new_session=True,
                                   env={"PATH": SAFE_PATH, "LANG": "C.UTF-8"})
        try:
            out, err = process.communicate(json.dumps(job).encode(), timeout=budget)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.communicate()
            raise SandboxError(f"the sandbox did not finish within {budget:.0f}s") from None
        finally:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
        if not job["mount"] and job["uid"] is not None:
            _kill_uid(job["uid"])
        try:
            report = json.loads(out)
        except ValueError:
            raise SandboxError(f"the sandbox failed: {err.decode('utf-8', 'replace')[-2000:]}") from None
        if report["setup_error"]:
            raise SandboxError(f"sandbox setup failed: {report['setup_error']}")
        results = [StepResult(**{key: value for key, value in r.items()
                                 if key in StepResult.__dataclass_fields__})
                   for r in report["steps"]]
        ran = {result.name for result in results}
        results += [StepResult(step.name, "not_run") for step in steps if step.name not in ran]
        return results


def _check_reachable(root: Path) -> None:
    """Jobs run as other uids: every folder above the root must let others through (o+x)."""
    for folder in [root, *root.parents]:
        if not os.stat(folder).st_mode & 0o001:
            raise SandboxError(f"sandbox root {root}: {folder} is not searchable by other users "
                               "(the sandbox's uids); pick a root under a folder with o+x, e.g. /tmp")


_memory_cgroups = memory_cgroups


def _remove_shared_memory_of(uid: int) -> None:
    """Delete what a job (uid) left in the host's /dev/shm (``rlimits`` isolation shares it)."""
    with contextlib.suppress(OSError):
        for entry in os.scandir("/dev/shm"):
            with contextlib.suppress(OSError):
                if entry.stat(follow_symlinks=False).st_uid == uid:
                    if entry.is_dir(follow_symlinks=False):
                        shutil.rmtree(entry.path, ignore_errors=True)
                    else:
                        os.unlink(entry.path)


def _processes_of(uid: int) -> int:
    count = 0
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            with contextlib.suppress(OSError):
                count += os.stat(f"/proc/{entry}").st_uid == uid
    return count


def _kill_uid(uid: int) -> None:
    """SIGKILL every process of ``uid``, a few rounds (a fork bomb may be mid-fork)."""
    for _ in range(5):
        found = False
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                with contextlib.suppress(OSError):
                    if os.stat(f"/proc/{entry}").st_uid == uid:
                        os.kill(int(entry), signal.SIGKILL)
                        found = True
        if not found:
            return
        time.sleep(0.02)
