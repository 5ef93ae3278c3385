"""Connect to Ray the same way from a laptop, a test and a Ray job.

* With an address (the manifest's ``ray.address`` or ``RAY_ADDRESS``, which ``ray job submit``
  sets for the job's driver) the build joins that cluster.
* Without one it starts a local instance of its own (``address="local"``: never one another
  program started) with usage stats off, no dashboard, and a temp dir of its own, made fresh
  under ``CODEPREFS_RAY_TMPDIR`` (default: the system temp folder) and removed after shutdown.
  Two builds on one machine, or a build while the tests run, therefore never share a session
  folder, its port files or its sockets, and neither stops the other's instance. Ray's socket
  paths must stay under 107 bytes, so that folder's path is kept short (an over-long
  ``CODEPREFS_RAY_TMPDIR`` is refused, naming it). Ray >= 2.5x turns token authentication on for a new local instance and writes
  ``~/.ray/auth_token``; a later ``ray start``/``ray job submit`` without the same setting then
  fails to authenticate. A local instance therefore runs with ``RAY_AUTH_MODE=disabled`` unless
  the caller set ``RAY_AUTH_MODE`` itself; set it the same way for ``ray start``, the job CLI
  and drivers.
* Parquet files are read with Ray Data's first reader (``use_datasource_v2 = False``): the
  second starts 32 actor processes per read (see ``ray_session``).
* Ray Data's shuffles (groupby, join) run their map and reduce tasks in worker pools of their
  own. With Ray's default cap on idle workers (one per CPU) every shuffle then kills and
  restarts worker processes, several seconds each on a small machine; a local instance
  therefore keeps up to three idle workers per CPU (``RAY_num_workers_soft_limit``, unless
  the caller set it). Set the same variable for ``ray start`` on a cluster.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import subprocess
import tempfile
import threading
from collections.abc import Callable, Iterator

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")


# Ray puts sockets at <temp dir>/session_<date>_<time>_<micros>_<pid>/sockets/plasma_store: 64
# bytes after the temp dir at most, and a unix socket path holds 107.
_SOCKET_SUFFIX_BYTES = 64
_SOCKET_PATH_MAX = 107


def ray_address(configured: str | None) -> str | None:
    return configured or os.environ.get("RAY_ADDRESS") or None


def make_temp_dir() -> str:
    """A fresh, short temp dir for one local Ray instance, under ``CODEPREFS_RAY_TMPDIR`` if set
    (else the system temp folder, or ``/tmp`` when that one's path is too long).

    Raises ``ValueError`` naming ``CODEPREFS_RAY_TMPDIR`` when its path leaves no room for Ray's
    socket paths.
    """
    room = _SOCKET_PATH_MAX - _SOCKET_SUFFIX_BYTES - len("/cpr-ray-xxxxxxxx")
    configured = os.environ.get("CODEPREFS_RAY_TMPDIR")
    parent = os.path.abspath(configured or tempfile.gettempdir())
    if not configured and len(parent.encode()) > room:  # e.g. macOS's long $TMPDIR
        parent = "/tmp"
    if len(parent.encode()) > room:
        raise ValueError(f"CODEPREFS_RAY_TMPDIR={parent} is {len(parent.encode())} bytes long: Ray's socket "
                         f"paths under it would pass {_SOCKET_PATH_MAX} bytes; use a folder of at most "
                         f"{room} bytes (e.g. under /tmp)")
    os.makedirs(parent, exist_ok=True)
    return tempfile.mkdtemp(prefix="cpr-ray-", dir=parent)


# How often Ray's own driver checks that its local raylet lives (then it ends the process with
# exit status 1 and no word). Our watch below looks ten times a second, so it speaks first.
os.environ.setdefault("RAY_raylet_death_check_interval_milliseconds", "3000")
WATCH_INTERVAL_S = 0.1


class RayletWatch(threading.Thread):
    """Calls ``on_death`` once if the raylet of the local instance this session started dies.

    Without it, a driver whose raylet is killed is ended by Ray's core worker with exit status 1
    and nothing said; ``on_death`` can say what died (and end the process itself).
    """

    def __init__(self, raylet: subprocess.Popen, on_death: Callable[[], None]) -> None:
        super().__init__(name="codeprefs-raylet-watch", daemon=True)
        self._raylet = raylet
        self._on_death = on_death
        self._stop = threading.Event()

    def run(self) -> None:
        while not self._stop.wait(WATCH_INTERVAL_S):
            if self._raylet.poll() is not None:
                self._on_death()
                return

    def stop(self) -> None:
        self._stop.set()


def _local_raylet() -> subprocess.Popen | None:
    """The raylet process of the local instance ``ray.init`` just started, if Ray exposes it."""
    from ray._private import ray_constants, worker

    node = getattr(worker, "_global_node", None)
    infos = (getattr(node, "all_processes", None) or {}).get(ray_constants.PROCESS_TYPE_RAYLET) or []
    return infos[0].process if infos else None


@contextlib.contextmanager
def ray_session(address: str | None = None, num_cpus: int | None = None,
                on_raylet_death: Callable[[], None] | None = None) -> Iterator[None]:
    """Initialise Ray for the length of the block (reusing a session already initialised).

    ``on_raylet_death`` is called (from another thread) if the raylet of a local instance this
    session started dies under it; it should end the process, which Ray would otherwise end
    with exit status 1 and no message.
    """
    import ray
    from ray.data import DataContext

    if ray.is_initialized():
        yield
        return
    target = ray_address(address)
    temp_dir = None
    if target:
        ray.init(address=target, logging_level=logging.WARNING, log_to_driver=True)
    else:
        os.environ.setdefault("RAY_AUTH_MODE", "disabled")
        os.environ.setdefault("RAY_num_workers_soft_limit", str(3 * (num_cpus or os.cpu_count() or 1)))
        temp_dir = make_temp_dir()
        try:
            ray.init(address="local", num_cpus=num_cpus, include_dashboard=False,
                     logging_level=logging.WARNING, _temp_dir=temp_dir)
        except BaseException:
            shutil.rmtree(temp_dir, ignore_errors=True)
            raise
    context = DataContext.get_current()
    context.enable_progress_bars = False
    # Ray Data's second Parquet reader (the default since 2.5x) starts a pool of 32 FooterReader
    # actors, fresh worker processes, for every read_parquet, however few its files: 1-2 s a read
    # on a small machine, and a build reads the files of each stage before it. The first reader
    # reads footers in the driver for a few files and in ordinary (reused) tasks for many:
    # 0.2-0.5 s a read, the same rows (tests/test_end_to_end.py pins the shard bytes).
    context.use_datasource_v2 = False
    raylet = _local_raylet() if temp_dir is not None and on_raylet_death is not None else None
    watch = RayletWatch(raylet, on_raylet_death) if raylet is not None else None
    if watch is not None:
        watch.start()
    try:
        yield
    finally:
        if watch is not None:
            watch.stop()  # before shutdown, which ends the raylet on purpose
        ray.shutdown()
        if temp_dir is not None:  # only the folder this session made
            shutil.rmtree(temp_dir, ignore_errors=True)
