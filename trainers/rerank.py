"""Best-of-N: keep each task's top-k candidates by reward model score.

    python -m trainers.rerank --model ckpt/ --candidates out/candidates/ --output best.parquet [--top-k 1]
    codeprefs rerank --model ckpt/ --candidates candidates.parquet --output best.parquet --top-k 3

The candidates (a ``candidates/`` folder or one Parquet file, see
:mod:`codeprefs.trainers.candidates`; only ``task_id, candidate_id, prompt, code`` are required)
are scored as ``trainers.evaluate --rerank`` scores them: each (prompt, code) conditioned on
``--criterion``'s system prompt, Functional_Correctness by default. The output holds, for every
task in ``task_id`` order, its ``min(k, candidates)`` best candidates with every input column plus
``score`` and ``rank`` (1 = best). Order within a task: score descending, then ``candidate_id``
ascending; equal scores get no special treatment (unlike the evaluation, which breaks ties
against the model). A candidate that cannot be scored stops the run naming it.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from codeprefs.core.encoding import DataError
from codeprefs.core.locations import local_path_argument
from codeprefs.core.schema import parse_aspect
from codeprefs.core.storage import location_argument
from codeprefs.trainers.candidates import SELECTION_COLUMNS, read_candidates
from codeprefs.trainers.evaluate import add_model_options, score_candidates
from codeprefs.trainers.score import RewardScorer


def top_k(candidates: pa.Table, scores: np.ndarray, k: int) -> pa.Table:
    """Each task's ``k`` best rows of ``candidates`` with ``score`` and ``rank`` (tasks by
    task_id; in a task by score descending, then candidate_id)."""
    if k < 1:
        raise DataError(f"--top-k must be at least 1, got {k}")
    scored = candidates.append_column("score", pa.array(scores, pa.float64()))
    ordered = scored.sort_by([("task_id", "ascending"), ("score", "descending"), ("candidate_id", "ascending")])
    tasks = ordered["task_id"].to_pylist()
    ranks = np.ones(len(tasks), np.int32)
    for row in range(1, len(tasks)):
        if tasks[row] == tasks[row - 1]:
            ranks[row] = ranks[row - 1] + 1
    ranked = ordered.append_column("rank", pa.array(ranks, pa.int32()))
    return ranked.filter(pc.less_equal(ranked["rank"], k))


def rerank(model: str | Path, candidates: str | Path, output: str | Path, *, top: int = 1,
           criterion: str = "Functional_Correctness", **options) -> pa.Table:
    """Score ``candidates`` with the reward model at ``model``; write and return the top ``top`` per task."""
    if top < 1:
        raise DataError(f"--top-k must be at least 1, got {top}")
    parse_aspect(criterion)  # an unknown criterion fails before the model loads
    table = read_candidates(candidates, SELECTION_COLUMNS)
    scorer = RewardScorer.from_pretrained(model, **options)
    scores = score_candidates(scorer.model, scorer.encoder, table, criterion, scorer.micro_batch_tokens,
                              scorer.device)
    best = top_k(table, scores, top)
    Path(output).parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(best, output)
    return best


def build_parser() -> argparse.ArgumentParser:
    """The command line of ``python -m trainers.rerank`` (every option documented, with its default)."""
    parser = argparse.ArgumentParser(prog="python -m trainers.rerank", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--model", required=True, help="reward model folder written by the trainer (or a HF id)")
    parser.add_argument("--candidates", required=True, type=location_argument,
                        help="a candidates/ folder of Parquet files, or one Parquet file; local or an object-storage URL")
    parser.add_argument("--output", required=True, type=local_path_argument,
                        help="Parquet file: each task's top-k candidates with score and rank")
    parser.add_argument("--top-k", type=int, default=1, help="candidates kept per task")
    parser.add_argument("--criterion", default="Functional_Correctness",
                        help="criterion whose system prompt conditions the scores")
    parser.add_argument("--max-length", type=int, default=4096,
                        help="tokens per sequence; a longer candidate is cut, a prompt alone too long is an error")
    add_model_options(parser)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m trainers.rerank``: returns the exit code (2 for bad input)."""
    args = build_parser().parse_args(argv)
    try:
        best = rerank(args.model, args.candidates, args.output, top=args.top_k, criterion=args.criterion,
                      max_length=args.max_length, micro_batch_tokens=args.micro_batch_tokens, device=args.device,
                      dtype=args.dtype, attention=args.attention, template=args.template, backbone=args.backbone)
    except (DataError, OSError, ValueError) as error:  # bad input: say what, no traceback
        print(f"error: {error}", file=sys.stderr)
        return 2
    tasks = len(set(best["task_id"].to_pylist()))
    print(f"kept {best.num_rows} candidate(s) of {tasks} task(s) in {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
