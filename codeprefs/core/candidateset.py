"""Candidate sets: many executed responses per task, for re-ranking (``<output>/candidates/``).

A build with ``synthesis.candidates`` writes, beside the pair shards, one or more Parquet files
``candidates/candidates-0000i-of-0000N.parquet`` with one row per candidate, sorted by
(``task_id``, ``candidate_id``). The columns are a contract shared with their reader,
:mod:`codeprefs.trainers.candidates` (re-ranking and best-of-N), and spelled here for the writer:

``task_id``        stable id of the task: the solutions file as the manifest names it, ``:``,
                   the record's task id (or ``line:N``)
``candidate_id``   ``<task_id>/<generator>/<n>``, unique within the task
``language``       a :class:`codeprefs.core.schema.Language` value (``Python``, ``C++``...)
``prompt``         the instruction a model is given (the ``input`` of the task's pairs)
``code``           the candidate, as a pair side holds it (prompt's code + completion)
``generator``      ``solution``, ``mutation:<operator>``, ``readability:<kind>`` or ``llm``
``outcome``        the verifier's verdict (``passed``, ``failed``, ``timeout``, ``compile_error``...)
``passed``         every test passed
``passed_tests``   tests passed, where the harness counts them (null otherwise)
``total_tests``    tests run, where the harness counts them (null otherwise)
``pass_rate``      passed_tests / total_tests when known, else 1.0 if passed else 0.0
"""

from __future__ import annotations

import pyarrow as pa

from codeprefs.core.layout import CANDIDATES_DIR

CANDIDATE_SCHEMA = pa.schema([
    pa.field("task_id", pa.string(), nullable=False),
    pa.field("candidate_id", pa.string(), nullable=False),
    pa.field("language", pa.string()),
    pa.field("prompt", pa.string()),
    pa.field("code", pa.string()),
    pa.field("generator", pa.string()),
    pa.field("outcome", pa.string()),
    pa.field("passed", pa.bool_()),
    pa.field("passed_tests", pa.int32()),
    pa.field("total_tests", pa.int32()),
    pa.field("pass_rate", pa.float64()),
])
CANDIDATE_COLUMNS: tuple[str, ...] = tuple(CANDIDATE_SCHEMA.names)


def candidates_name(index: int, count: int) -> str:
    """A candidates file's path relative to the output folder."""
    return f"{CANDIDATES_DIR}/candidates-{index:05d}-of-{count:05d}.parquet"
