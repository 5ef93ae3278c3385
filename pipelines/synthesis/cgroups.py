"""Per-job memory cgroups: the sandbox's memory limit then counts every page a job touches.

``RLIMIT_DATA`` bounds heap and private mappings only; shared memory (an anonymous
``MAP_SHARED`` mapping, a ``/dev/shm`` file, ``memfd``, SysV segments) escapes it. A memory
cgroup counts all of it. Each job gets a cgroup of its own, created in a *base* cgroup:

* cgroup v2 (``memory.max``, ``memory.swap.max = 0``, OOM kills read from ``memory.events``):
  the base is ``$CODEPREFS_SANDBOX_CGROUP`` when set (a delegated sub-tree, e.g. one systemd
  gives a service with ``Delegate=yes``), else the cgroup this process runs in. The memory
  controller must be enabled, or enable-able, in the base's ``cgroup.subtree_control``; cgroup
  v2's "no internal processes" rule forbids that in a non-root cgroup that holds processes, so
  on such machines set ``CODEPREFS_SANDBOX_CGROUP`` to an empty delegated cgroup.
* cgroup v1 (``memory.limit_in_bytes`` and ``memory.memsw.limit_in_bytes`` where swap is
  accounted, OOM kills read from ``memory.oom_control``): the base is this process's cgroup in
  the memory hierarchy (v1 has no "no internal processes" rule).

Only cgroups named ``codeprefs-<hex>`` that this module created are ever written or removed.
:func:`memory_cgroups` probes once per process by creating and removing one.
"""

from __future__ import annotations

import contextlib
import functools
import os
import signal
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

ENV_BASE = "CODEPREFS_SANDBOX_CGROUP"
PREFIX = "codeprefs-"


@dataclass(frozen=True)
class MemoryCgroups:
    """Where job cgroups are made (``base``) and which cgroup version governs memory there."""

    version: int  # 1 or 2
    base: Path
    home: Path  # the cgroup this process runs in (in the same hierarchy as ``base``)

    @property
    def mode(self) -> str:
        return f"cgroup-v{self.version}"

    def create(self) -> JobCgroup:
        """A new, empty job cgroup without a limit yet (the jail sets one per step)."""
        path = self.base / f"{PREFIX}{uuid.uuid4().hex}"
        path.mkdir()
        job = JobCgroup(self.version, path, self.home)
        try:
            if self.version == 2:
                _write_if_present(path / "memory.swap.max", "0")
                _write_if_present(path / "memory.oom.group", "0")
        except OSError:
            job.remove()
            raise
        return job


@dataclass(frozen=True)
class JobCgroup:
    """One job's cgroup; :meth:`spec` is what the jail needs to use it."""

    version: int
    path: Path
    home: Path

    def spec(self) -> dict:
        return {"version": self.version, "path": str(self.path), "home": str(self.home)}

    def remove(self, attempts: int = 100) -> None:
        """Kill what is still in the cgroup (only the job's processes can be), then remove it."""
        for _ in range(attempts):
            try:
                self.path.rmdir()
                return
            except FileNotFoundError:
                return
            except OSError:
                for pid in _members(self.path):
                    with contextlib.suppress(OSError):
                        os.kill(pid, signal.SIGKILL)
                time.sleep(0.02)
        raise OSError(f"could not remove the job cgroup {self.path}: processes are still in it")


def _members(path: Path) -> list[int]:
    try:
        return [int(line) for line in (path / "cgroup.procs").read_text().split()]
    except (OSError, ValueError):
        return []


def _write_if_present(path: Path, value: str) -> None:
    if path.exists():
        path.write_text(value)


def _mounts() -> list[tuple[str, str, set[str]]]:
    """(mount point, file system type, super options) of every mount."""
    found = []
    with open("/proc/self/mountinfo", encoding="utf-8") as handle:
        for line in handle:
            before, _, after = line.partition(" - ")
            fields, tail = before.split(), after.split()
            if len(fields) >= 5 and len(tail) >= 3:
                found.append((fields[4].replace("\\040", " "), tail[0], set(tail[2].split(","))))
    return found


def _own_cgroups() -> tuple[str | None, str | None]:
    """(this process's v2 cgroup path, its v1 memory cgroup path), from /proc/self/cgroup."""
    unified = memory = None
    with open("/proc/self/cgroup", encoding="utf-8") as handle:
        for line in handle:
            hierarchy, controllers, path = line.rstrip("\n").split(":", 2)
            if hierarchy == "0" and controllers == "":
                unified = path
            elif "memory" in controllers.split(","):
                memory = path
    return unified, memory


def _v2_base(base: Path) -> bool:
    """Whether job cgroups under ``base`` get the memory controller (enabling it if needed)."""
    if "memory" not in (base / "cgroup.controllers").read_text().split():
        return False
    if "memory" not in (base / "cgroup.subtree_control").read_text().split():
        (base / "cgroup.subtree_control").write_text("+memory")
    return True


def locate() -> MemoryCgroups | None:
    """Where this machine lets the sandbox make memory cgroups (None: nowhere)."""
    if os.geteuid() != 0 and not os.environ.get(ENV_BASE):
        return None
    try:
        unified, memory = _own_cgroups()
        mounts = _mounts()
    except OSError:
        return None
    v2_root = next((Path(point) for point, kind, _ in mounts if kind == "cgroup2"), None)
    v1_root = next((Path(point) for point, kind, options in mounts
                    if kind == "cgroup" and "memory" in options), None)
    delegated = os.environ.get(ENV_BASE)
    if delegated:
        base = Path(delegated)
        if (base / "cgroup.controllers").exists():
            home = v2_root / unified.lstrip("/") if v2_root and unified else base
            with contextlib.suppress(OSError):
                if _v2_base(base):
                    return MemoryCgroups(2, base, home)
            return None
        home = v1_root / memory.lstrip("/") if v1_root and memory else base
        return MemoryCgroups(1, base, home) if (base / "memory.limit_in_bytes").exists() else None
    if v2_root is not None and unified is not None and memory is None:
        base = v2_root / unified.lstrip("/")
        with contextlib.suppress(OSError):
            if _v2_base(base):
                return MemoryCgroups(2, base, base)
    if v1_root is not None and memory is not None:
        base = v1_root / memory.lstrip("/")
        if (base / "memory.limit_in_bytes").exists():
            return MemoryCgroups(1, base, base)
    return None


@functools.cache
def memory_cgroups() -> MemoryCgroups | None:
    """The machine's memory cgroups when a job cgroup can really be made there (probed once)."""
    found = locate()
    if found is None:
        return None
    try:
        probe = found.create()
    except OSError:
        return None
    try:
        limit = probe.path / ("memory.max" if found.version == 2 else "memory.limit_in_bytes")
        limit.write_text(str(64 << 20))
    except OSError:
        return None
    finally:
        with contextlib.suppress(OSError):
            probe.remove()
    return found
