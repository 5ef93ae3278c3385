"""Connect to Ray the same way from a laptop, a test and a Ray job.

* With an address (the manifest's ``ray.address`` or ``RAY_ADDRESS``, which ``ray job submit``
  sets for the job's driver) the build joins that cluster.
* Without one it starts a local instance with usage stats off, no dashboard, and a temp dir of
  its own. Ray >= 2.5x turns token authentication on for a new local instance and writes
  ``~/.ray/auth_token``; a later ``ray start``/``ray job submit`` without the same setting then
  fails to authenticate. A local instance therefore runs with ``RAY_AUTH_MODE=disabled`` unless
  the caller set ``RAY_AUTH_MODE`` itself; set it the same way for ``ray start``, the job CLI
  and drivers.
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
import tempfile
from collections.abc import Iterator

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")


def ray_address(configured: str | None) -> str | None:
    return configured or os.environ.get("RAY_ADDRESS") or None


@contextlib.contextmanager
def ray_session(address: str | None = None, num_cpus: int | None = None) -> Iterator[None]:
    """Initialise Ray for the length of the block (reusing a session already initialised)."""
    import ray
    from ray.data import DataContext

    if ray.is_initialized():
        yield
        return
    target = ray_address(address)
    if target:
        ray.init(address=target, logging_level=logging.WARNING, log_to_driver=True)
    else:
        os.environ.setdefault("RAY_AUTH_MODE", "disabled")
        os.environ.setdefault("RAY_num_workers_soft_limit", str(3 * (num_cpus or os.cpu_count() or 1)))
        temp_dir = os.environ.get("CODEPREFS_RAY_TMPDIR") or os.path.join(
            tempfile.gettempdir(), f"codeprefs-ray-{os.getuid()}"
        )
        ray.init(num_cpus=num_cpus, include_dashboard=False, logging_level=logging.WARNING,
                 _temp_dir=temp_dir)
    DataContext.get_current().enable_progress_bars = False
    try:
        yield
    finally:
        ray.shutdown()
