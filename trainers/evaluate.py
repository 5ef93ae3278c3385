"""Score preference pairs with a reward model and write the paper's result files.

    python -m trainers.evaluate --model ckpt/ --data bench/ --output eval/

``results.json``::

    {"overall": {"accuracy", "total_examples", "correct_predictions", "mean_score_difference",
                 "median_score_difference", "std_score_difference"},
     "by_aspect": {name: {"accuracy", "count"}}, "by_language": {...}, "by_subset": {...}}

values rounded to 4 decimals, groups in sorted order, the standard deviation with one degree of
freedom (null with fewer than two pairs). ``scores.parquet`` has one row per pair, in the order
of the data, indexed by ``id`` (pandas index, as the paper writes it) with the columns
``chosen_score, rejected_score, correct, score_diff, language, aspect, subset``. A pair is correct
when its chosen score is strictly greater than its rejected score: ties count as wrong.

``--rerank CANDIDATES`` (a ``candidates/`` folder or one Parquet file, see
:mod:`codeprefs.trainers.candidates`) also scores every candidate, conditioned on
``--rerank-criterion``'s system prompt (Functional_Correctness by default), adds a ``reranking``
section to ``results.json`` (Hits@1, Hits@K, MRR, Spearman and Kendall of score with pass rate,
overall and by language, with task counts and the random and shortest-first baselines; see
:mod:`codeprefs.trainers.ranking`) and writes ``candidate_scores.parquet``: one row per candidate
in (task_id, candidate_id) order with ``task_id, candidate_id, language, generator`` (when the
candidates have it) ``, passed, pass_rate, score, rank``, ``rank`` being the model's order within
the task with ties broken against it (incorrect first). With ``--rerank`` alone (no ``--data``)
only those two files are written, and ``results.json`` holds only ``reranking``.

Nothing is skipped quietly: a batch that fails stops the run, and a pair that cannot be scored
(empty response, prompt longer than ``--max-length``) is an error naming its id, unless
``--skip-invalid`` is given, which writes those ids and reasons to ``skipped.json``. A pair
whose two sides the length cut makes identical is never evaluated (it would be a tie the model
cannot avoid): it is left out with a warning and listed in ``skipped.json``, not an error.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import torch

from codeprefs.core.locations import local_path_argument
from codeprefs.core.prompts import evaluation_prompt
from codeprefs.core.schema import parse_aspect
from codeprefs.core.storage import location_argument
from codeprefs.trainers.attention import choose_attention
from codeprefs.trainers.candidates import EVALUATION_COLUMNS, read_candidates
from codeprefs.core.encoding import DataReport, EncodedPair, PairEncoder
from codeprefs.trainers.data import DataError, evaluation_system_prompts, load_pairs
from codeprefs.trainers.distributed import Context, all_reduce_max, gather_objects, resolve_device
from codeprefs.trainers.model import RewardModel
from codeprefs.trainers.packcheck import fall_back_to_padding
from codeprefs.trainers.packing import batch_cost, pack_by_budget
from codeprefs.trainers.ranking import reranking_metrics
from codeprefs.trainers.tokenizer import load_tokenizer

_EMPTY = np.zeros(0, np.int32)
SCORE_COLUMNS = ("id", "chosen_score", "rejected_score", "correct", "score_diff", "language", "aspect", "subset")


@torch.no_grad()
def score_pairs(model: RewardModel, pairs: Sequence[EncodedPair], micro_batch_tokens: int,
                device: torch.device, context: Context | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(chosen scores, rejected scores) in the order of ``pairs``; any failure propagates.

    With a process group (scoring a sharded model during training), rank ``r`` scores pairs
    ``r, r + world, ...``, every rank runs the same number of forward passes (FSDP's collectives
    must match; a rank with fewer rescores its first batch) and every rank gets all the scores.
    """
    ranks, rank = (context.world_size, context.rank) if context is not None and context.grouped else (1, 0)
    mine = list(range(rank, len(pairs), ranks))
    groups = pack_by_budget(mine, [batch_cost(pairs[i], model.packs) for i in mine], micro_batch_tokens)
    passes = all_reduce_max(len(groups), context) if ranks > 1 else len(groups)
    chosen = np.full(len(pairs), np.nan)
    rejected = np.full(len(pairs), np.nan)
    training = model.training
    model.eval()
    try:
        for k in range(passes):
            group = groups[k] if k < len(groups) else (groups[0] if groups else [0])
            members = [pairs[i] for i in group]
            batch = model.batch(members).to(device)
            rewards = model(batch).rewards.double().cpu().numpy()
            if k < len(groups):
                chosen[group], rejected[group] = rewards[0::2], rewards[1::2]
    finally:
        model.train(training)
    if ranks > 1:
        for their_chosen, their_rejected in gather_objects((chosen, rejected), context):
            seen = ~np.isnan(their_chosen)
            chosen[seen], rejected[seen] = their_chosen[seen], their_rejected[seen]
    if np.isnan(chosen).any() or np.isnan(rejected).any():
        raise RuntimeError(f"{int(np.isnan(chosen).sum())} pair(s) got no score or a NaN score")
    return chosen, rejected


def score_sequences(model: RewardModel, sequences: Sequence[np.ndarray], micro_batch_tokens: int,
                    device: torch.device) -> np.ndarray:
    """The score of each whole token sequence (one side of a pair, as rendered by
    :meth:`PairEncoder.encode_sequences`), in order."""
    if not sequences:
        return np.zeros(0)
    # Two rows per "pair" with an empty shared prompt: each row's whole sequence is one side,
    # so a pack holds every row once (an odd last row is paired with itself).
    pairs = [EncodedPair(k, _EMPTY, sequences[k], sequences[min(k + 1, len(sequences) - 1)])
             for k in range(0, len(sequences), 2)]
    first, second = score_pairs(model, pairs, micro_batch_tokens, device)
    scores = np.empty(len(sequences))
    scores[0::2] = first
    scores[1::2] = second[: len(sequences) // 2]
    return scores


def score_candidates(model: RewardModel, encoder: PairEncoder, candidates: pa.Table, criterion: str,
                     micro_batch_tokens: int, device: torch.device) -> np.ndarray:
    """The score of each candidate's (prompt, code), conditioned on ``criterion``'s system prompt;
    a candidate that cannot be scored is an error naming it."""
    system = evaluation_prompt("own", parse_aspect(criterion).value, None)[1]
    sequences = encoder.encode_sequences([system] * candidates.num_rows, candidates["prompt"].to_pylist(),
                                         candidates["code"].to_pylist())
    bad = [(k, reason) for k, reason in enumerate(sequences) if isinstance(reason, str)]
    if bad:
        tasks, ids = candidates["task_id"], candidates["candidate_id"]
        listed = ", ".join(f"{tasks[k].as_py()}/{ids[k].as_py()}: {reason}" for k, reason in bad[:5])
        raise DataError(f"{len(bad)} candidate(s) cannot be scored ({listed}{' ...' if len(bad) > 5 else ''})")
    return score_sequences(model, sequences, micro_batch_tokens, device)


def candidate_scores_frame(candidates: pa.Table, scores: np.ndarray) -> pd.DataFrame:
    """One row per candidate, in the table's order, with its score and the model's rank within its
    task (score descending, ties broken against the model: incorrect first, then candidate_id)."""
    names = ("task_id", "candidate_id", "language", "generator", "passed", "pass_rate")
    frame = pd.DataFrame({name: candidates[name].to_pylist() for name in names if name in candidates.column_names})
    frame["pass_rate"] = frame["pass_rate"].astype(float)
    frame["score"] = scores.astype(float)
    order = frame.sort_values(["task_id", "score", "passed", "candidate_id"], ascending=[True, False, True, True],
                              kind="stable")
    frame["rank"] = (order.groupby("task_id", sort=False).cumcount() + 1).reindex(frame.index).astype("int32")
    return frame


def reranking_results(candidates: pa.Table, scores: np.ndarray, k: int,
                      criterion: str) -> tuple[pd.DataFrame, dict[str, Any]]:
    """The candidate scores frame and the ``reranking`` section of ``results.json``."""
    frame = candidate_scores_frame(candidates, scores)
    figures = frame.assign(length=[len(code) for code in candidates["code"].to_pylist()])
    try:
        section = reranking_metrics(figures, k)
    except ValueError as error:
        raise DataError(str(error)) from None
    return frame, {"criterion": parse_aspect(criterion).value, **section}


def compile_results(scores: pd.DataFrame) -> dict[str, Any]:
    """The paper's ``results.json`` dictionary from a scores frame (see module doc)."""
    differences = scores["score_diff"].astype(float)
    total = len(scores)
    std = differences.std(ddof=1) if total > 1 else None
    results: dict[str, Any] = {"overall": {
        "accuracy": round(float(scores["correct"].mean()), 4) if total else 0.0,
        "total_examples": int(total),
        "correct_predictions": int(scores["correct"].sum()),
        "mean_score_difference": round(float(differences.mean()), 4) if total else None,
        "median_score_difference": round(float(differences.median()), 4) if total else None,
        "std_score_difference": round(float(std), 4) if std is not None else None,
    }}
    for key, column in (("by_aspect", "aspect"), ("by_language", "language"), ("by_subset", "subset")):
        groups = scores.groupby(column, sort=True)["correct"]
        results[key] = {str(name): {"accuracy": round(float(values.mean()), 4), "count": len(values)}
                        for name, values in groups}
    return results


def scores_frame(table: pa.Table, rows: Sequence[int], chosen: np.ndarray, rejected: np.ndarray) -> pd.DataFrame:
    """One row per scored pair: ids and labels from ``table`` rows ``rows``, plus the scores."""
    picked = table.take(pa.array(rows, pa.int64()))
    frame = pd.DataFrame({
        "id": picked["id"].to_pylist(),
        "chosen_score": chosen.astype(float),
        "rejected_score": rejected.astype(float),
        "correct": chosen > rejected,
        "score_diff": (chosen - rejected).astype(float),
        "language": picked["language"].to_pylist(),
        "aspect": picked["aspect"].to_pylist(),
        "subset": picked["subset"].to_pylist(),
    })
    return frame


def write_results(output: Path, scores: pd.DataFrame, results: dict[str, Any]) -> None:
    output.mkdir(parents=True, exist_ok=True)
    scores.set_index("id").to_parquet(output / "scores.parquet", index=True)
    (output / "results.json").write_text(json.dumps(results, indent=2) + "\n")


def model_dtype(requested: str, device: torch.device) -> torch.dtype:
    """The weights' dtype for ``requested`` (``auto``: bfloat16 on a GPU, float32 on a CPU)."""
    if requested == "auto":
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    return {"bfloat16": torch.bfloat16, "float32": torch.float32, "float16": torch.float16}[requested]


@dataclass
class EvalSet:
    """Pairs to score: the table (ids and labels), its encoded pairs, and what was skipped."""

    table: pa.Table
    pairs: list[EncodedPair]
    report: DataReport

    def results(self, chosen: np.ndarray, rejected: np.ndarray) -> tuple[pd.DataFrame, dict[str, Any]]:
        """The scores frame and the paper's results for scores in the order of ``pairs``."""
        scores = scores_frame(self.table, [pair.row for pair in self.pairs], chosen, rejected)
        if len(scores) + sum(self.report.skipped.values()) != self.table.num_rows:
            raise RuntimeError(f"scored {len(scores)} of {self.table.num_rows} pairs")
        return scores, compile_results(scores)


# Pairs left out by design, never an error: two sides the length cut makes identical would be
# scored as a tie the model cannot avoid (they are listed in skipped.json like the others).
NEVER_EVALUATED = frozenset({"identical_after_truncation"})


def load_eval_set(data: str, tokenizer: Any, *, split: str | None = None, prompts: str = "own",
                  max_length: int = 4096, template: str = "auto", skip_invalid: bool = False) -> EvalSet:
    """Read and encode ``data`` for scoring; a pair that cannot be scored is an error unless ``skip_invalid``."""
    table = load_pairs(data, split)
    table, _ = evaluation_system_prompts(table, prompts)
    pairs, report = PairEncoder(tokenizer, max_length, template).encode(table)
    if report.skipped:
        described = "; ".join(f"{reason}: {', '.join(map(str, ids[:5]))}{' ...' if len(ids) > 5 else ''}"
                              for reason, ids in sorted(report.skipped_ids.items()))
        if not skip_invalid and set(report.skipped) - NEVER_EVALUATED:
            raise DataError(f"{data}: {sum(report.skipped.values())} pair(s) cannot be scored ({described}); "
                            "fix them, raise --max-length, or pass --skip-invalid")
        print(f"warning: skipped {sum(report.skipped.values())} pair(s): {described}", file=sys.stderr)
    if not pairs:
        raise DataError(f"{data}: no pair to score")
    return EvalSet(table, pairs, report)


@dataclass
class RerankSet:
    """Candidates to re-rank (read by :func:`codeprefs.trainers.candidates.read_candidates`) and how."""

    candidates: pa.Table
    encoder: PairEncoder
    k: int = 10
    criterion: str = "Functional_Correctness"


def evaluate(model_path: str | Path, data: str | None, output: str | Path, *, split: str | None = None,
             prompts: str = "own", max_length: int = 4096, micro_batch_tokens: int = 16384,
             device: str = "auto", dtype: str = "auto", attention: str = "auto", template: str = "auto",
             backbone: str = "auto", skip_invalid: bool = False, rerank: str | Path | None = None,
             hits_k: int = 10, rerank_criterion: str = "Functional_Correctness") -> dict[str, Any]:
    """Score ``data`` (pairs) and/or the candidates ``rerank`` with the reward model at
    ``model_path``; write and return the results."""
    if data is None and rerank is None:
        raise DataError("nothing to evaluate: give pairs (--data), candidates (--rerank) or both")
    if hits_k < 1:
        raise DataError(f"--hits-k must be at least 1, got {hits_k}")
    parse_aspect(rerank_criterion)  # an unknown criterion fails before any work
    tokenizer = load_tokenizer(model_path)
    eval_set = None if data is None else load_eval_set(data, tokenizer, split=split, prompts=prompts,
                                                        max_length=max_length, template=template,
                                                        skip_invalid=skip_invalid)
    rerank_set = None if rerank is None else RerankSet(read_candidates(rerank, EVALUATION_COLUMNS),
                                                       PairEncoder(tokenizer, max_length, template),
                                                       hits_k, rerank_criterion)
    return evaluate_set(model_path, eval_set, output, pad_token_id=tokenizer.pad_token_id,
                        micro_batch_tokens=micro_batch_tokens, device=device, dtype=dtype, attention=attention,
                        backbone=backbone, rerank=rerank_set)


def evaluate_set(model_path: str | Path, eval_set: EvalSet | None, output: str | Path, *, pad_token_id: int | None,
                 micro_batch_tokens: int = 16384, device: str = "auto", dtype: str = "auto",
                 attention: str = "auto", backbone: str = "auto", rerank: RerankSet | None = None) -> dict[str, Any]:
    """Score pairs already read by :func:`load_eval_set` (and candidates, with ``rerank``) with the
    reward model at ``model_path``; write and return the results (the trainer's final evaluation
    reuses the set it checked)."""
    target = resolve_device(device)
    output = Path(output)
    if eval_set is not None and eval_set.report.skipped:
        output.mkdir(parents=True, exist_ok=True)
        (output / "skipped.json").write_text(json.dumps(
            {reason: [str(i) for i in ids] for reason, ids in eval_set.report.skipped_ids.items()}, indent=2) + "\n")
    model = RewardModel.from_pretrained(model_path, backbone=backbone, dtype=model_dtype(dtype, target),
                                        attn_implementation=choose_attention(attention, target),
                                        pad_token_id=pad_token_id).to(target)
    fall_back_to_padding(model, lambda problem: print(f"warning: {problem}", file=sys.stderr))
    results: dict[str, Any] = {}
    if eval_set is not None:
        scores, results = eval_set.results(*score_pairs(model, eval_set.pairs, micro_batch_tokens, target))
    if rerank is not None:
        candidate_scores = score_candidates(model, rerank.encoder, rerank.candidates, rerank.criterion,
                                            micro_batch_tokens, target)
        frame, results["reranking"] = reranking_results(rerank.candidates, candidate_scores, rerank.k,
                                                        rerank.criterion)
        output.mkdir(parents=True, exist_ok=True)
        frame.to_parquet(output / "candidate_scores.parquet", index=False)
    if eval_set is not None:
        write_results(output, scores, results)
    else:
        (output / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    return results


def add_model_options(parser: argparse.ArgumentParser) -> None:
    """How a reward model is loaded and run to score: the options ``evaluate`` and ``score`` share."""
    parser.add_argument("--micro-batch-tokens", type=int, default=16384,
                        help="tokens per packed forward pass (bounds activation memory)")
    parser.add_argument("--device", default="auto",
                        help="torch device: auto (cuda when available, else cpu), cpu, cuda or cuda:N")
    parser.add_argument("--dtype", default="auto", choices=["auto", "bfloat16", "float32", "float16"],
                        help="weights' dtype: auto is bfloat16 on a GPU, float32 on a CPU")
    parser.add_argument("--attention", default="auto", help="auto, varlen, flash_attention_2, sdpa or eager")
    parser.add_argument("--template", default="auto", choices=["auto", "chat", "plain"],
                        help="how a pair becomes tokens: the chat template, plain separators, or auto "
                             "(chat when the tokenizer has a template)")
    parser.add_argument("--backbone", default="auto", choices=["auto", "causal", "encoder"],
                        help="model kind: a causal LM, an encoder, or auto (from the model's config)")


def build_parser() -> argparse.ArgumentParser:
    """The command line of ``python -m trainers.evaluate`` (every option documented, with its default)."""
    parser = argparse.ArgumentParser(prog="python -m trainers.evaluate", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--model", required=True, help="reward model folder (or a HF id)")
    parser.add_argument("--data", default=None, type=location_argument,
                        help="pairs: shard folder, Parquet/JSONL, saved dataset or name; a folder or file may be "
                             "an object-storage URL (s3://bucket/out); without it, --rerank is required")
    parser.add_argument("--output", required=True, type=local_path_argument, help="folder for results.json and scores.parquet")
    parser.add_argument("--split", default=None,
                        help="split to read from a saved dataset or a datasets name (default there: train)")
    parser.add_argument("--prompts", default="own", choices=["own", "all", "none", "data"],
                        help="system prompt: the row's criterion, all criteria, none, or the data's own")
    parser.add_argument("--max-length", type=int, default=4096,
                        help="tokens per sequence; a longer response is cut, a prompt alone too long is an error "
                             "(or skipped with --skip-invalid)")
    add_model_options(parser)
    parser.add_argument("--skip-invalid", action="store_true",
                        help="skip pairs that cannot be scored (listed in skipped.json) instead of failing")
    parser.add_argument("--rerank", default=None, type=location_argument, metavar="CANDIDATES",
                        help="also re-rank these candidates (a candidates/ folder or a Parquet file, local or an "
                             "object-storage URL): a reranking "
                             "section in results.json and candidate_scores.parquet")
    parser.add_argument("--hits-k", type=int, default=10, help="K of the reranking section's Hits@K")
    parser.add_argument("--rerank-criterion", default="Functional_Correctness",
                        help="criterion whose system prompt conditions the candidates' scores")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m trainers.evaluate``: returns the exit code (2 for bad input)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        results = evaluate(args.model, args.data, args.output, split=args.split, prompts=args.prompts,
                           max_length=args.max_length, micro_batch_tokens=args.micro_batch_tokens,
                           device=args.device, dtype=args.dtype, attention=args.attention, template=args.template,
                           backbone=args.backbone, skip_invalid=args.skip_invalid, rerank=args.rerank,
                           hits_k=args.hits_k, rerank_criterion=args.rerank_criterion)
    except (DataError, OSError, ValueError) as error:  # bad input: say what, no traceback
        print(f"error: {error}", file=sys.stderr)
        return 2
    if "overall" in results:
        print(json.dumps(results["overall"]))
    if "reranking" in results:
        print(json.dumps({"reranking": {key: value for key, value in results["reranking"]["overall"].items()
                                        if key != "baselines"}}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
