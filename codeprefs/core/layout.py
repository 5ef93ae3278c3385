"""The layout of a build's output folder: where each file a build keeps for itself lies.

The build writes these, ``runs`` lists folders by them, the output folder's cleanup decides what
it may delete by them, and ``publish`` uploads ``run.json``: they are one contract, spelled here
once. Paths are relative to the output folder::

    run.json                        the run record (public: published with the shards)
    candidates/                     candidate sets of solutions sources (synthesis.candidates;
                                    codeprefs.core.candidateset), beside the pair shards
    .cache/                         the build's own working files, never published
        lock                        held (flock) while a build runs in a local folder
        lease.json                  held (a lease, codeprefs.core.lease) while a build runs in
                                    object storage
        run-state.json              running / failed / complete, and the files runs wrote
        stages/<stage>/<fingerprint>/   cached stage outputs (pipelines.stagecache)
        llm/                        LLM responses (judge, LLM bug injection), reused by reruns
        ray.log                     Ray Data's own log lines when not shown

Copies of the manifest's git repositories, the objects export sources fetch and the inputs read
from URLs are not here:
they live in each node's scratch folder (:mod:`codeprefs.core.scratch`), because a node of a
cluster cannot clone into an output folder on object storage. Output folders of earlier
versions may still hold them as ``.cache/<name>-<16 hex>.git`` and ``.cache/remotes/``; a build
leaves those alone (``pipelines.outputdir.OWN_CACHE``).
"""

from __future__ import annotations

from pathlib import Path

RUN_RECORD = "run.json"
CACHE_DIR = ".cache"
CANDIDATES_DIR = "candidates"

LOCK = Path(CACHE_DIR) / "lock"
LEASE = Path(CACHE_DIR) / "lease.json"
RUN_STATE = Path(CACHE_DIR) / "run-state.json"
STAGES_DIR = Path(CACHE_DIR) / "stages"
LLM_CACHE_DIR = Path(CACHE_DIR) / "llm"
RAY_LOG = Path(CACHE_DIR) / "ray.log"
