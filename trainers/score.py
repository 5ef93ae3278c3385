"""Score code with a trained reward model: one score per (prompt, response) row.

    python -m trainers.score --model ckpt/ --data rows.parquet --output scores.parquet
    codeprefs score --model ckpt/ --data rows.jsonl --output scores.parquet --criterion Security_Hardness

Each row is rendered exactly as the trainer renders one side of a pair (chat template or plain
layout, the response cut to ``--max-length``, never the prompt), so a pair's chosen response
scored here gets the evaluator's chosen score. Rows are scored in padding-free packs like
training (two rows per packed pair, so no row is computed twice) and written back in input order
with a ``score`` column. A row that cannot be scored (empty prompt or response, a prompt alone
longer than ``--max-length``) stops the run naming its index: no row is skipped silently.

From Python::

    scorer = RewardScorer.from_pretrained("ckpt/")
    scores = scorer.score(["Write a function ..."], ["def f(): ..."], criterion="Runtime_Efficiency")
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch

from codeprefs.core.encoding import DataError, PairEncoder
from codeprefs.core.locations import local_path_argument
from codeprefs.core.prompts import evaluation_prompt
from codeprefs.core.records import read_table
from codeprefs.core.schema import parse_aspect
from codeprefs.trainers.attention import choose_attention
from codeprefs.trainers.distributed import resolve_device
from codeprefs.trainers.evaluate import add_model_options, model_dtype, score_sequences
from codeprefs.trainers.model import RewardModel
from codeprefs.trainers.packcheck import fall_back_to_padding
from codeprefs.trainers.tokenizer import load_tokenizer


class RewardScorer:
    """A reward model and its tokenizer's rendering, ready to score (prompt, response) rows."""

    def __init__(self, model: RewardModel, encoder: PairEncoder, device: torch.device,
                 micro_batch_tokens: int = 16384) -> None:
        self.model = model
        self.encoder = encoder
        self.device = device
        self.micro_batch_tokens = micro_batch_tokens

    @classmethod
    def from_pretrained(cls, path: str | Path, *, device: str = "auto", dtype: str = "auto",
                        attention: str = "auto", template: str = "auto", backbone: str = "auto",
                        max_length: int = 4096, micro_batch_tokens: int = 16384) -> RewardScorer:
        """Load a checkpoint the trainer wrote (causal or encoder backbone)."""
        tokenizer = load_tokenizer(path)
        target = resolve_device(device)
        model = RewardModel.from_pretrained(path, backbone=backbone, dtype=model_dtype(dtype, target),
                                            attn_implementation=choose_attention(attention, target),
                                            pad_token_id=tokenizer.pad_token_id).to(target)
        fall_back_to_padding(model, lambda problem: print(f"warning: {problem}", file=sys.stderr))
        return cls(model, PairEncoder(tokenizer, max_length, template), target, micro_batch_tokens)

    def score(self, prompts: Sequence[str], responses: Sequence[str], systems: Sequence[str | None] | None = None,
              criterion: str | None = None) -> np.ndarray:
        """The score of each (prompt, response), in order.

        ``systems`` gives each row's system prompt; else ``criterion`` conditions every row on
        that criterion's system prompt (as the evaluator's ``own``); else rows have none.
        Raises :class:`DataError` naming the first rows that cannot be scored.
        """
        if len(prompts) != len(responses):
            raise DataError(f"{len(prompts)} prompts but {len(responses)} responses")
        if systems is None:
            text = evaluation_prompt("own", parse_aspect(criterion).value, None)[1] if criterion else ""
            systems = [text] * len(prompts)
        sequences = self.encoder.encode_sequences([s or "" for s in systems], prompts, responses)
        bad = [(index, reason) for index, reason in enumerate(sequences) if isinstance(reason, str)]
        if bad:
            listed = ", ".join(f"row {index}: {reason}" for index, reason in bad[:5])
            raise DataError(f"{len(bad)} row(s) cannot be scored ({listed}{' ...' if len(bad) > 5 else ''})")
        return score_sequences(self.model, sequences, self.micro_batch_tokens, self.device)


def score_file(model: str | Path, data: str | Path, output: str | Path, *, prompt_column: str | None = None,
               response_column: str = "response", system_column: str | None = None,
               criterion: str | None = None, **options) -> pa.Table:
    """Score every row of ``data`` (Parquet or JSON Lines); write it with ``score`` to ``output``."""
    table = _read_rows(Path(data))
    prompt_column = prompt_column or ("prompt" if "prompt" in table.column_names else "input")
    for role, column in (("prompt", prompt_column), ("response", response_column), ("system", system_column)):
        if column is not None and column not in table.column_names:
            raise DataError(f"{data}: no {role} column {column!r} (it has {', '.join(table.column_names)})")
    if system_column is not None and criterion is not None:
        raise DataError("give --system-column or --criterion, not both")
    text = {name: [value if value is not None else "" for value in table[name].to_pylist()]
            for name in {prompt_column, response_column, *([system_column] if system_column else [])}}
    scorer = RewardScorer.from_pretrained(model, **options)
    scores = scorer.score(text[prompt_column], text[response_column],
                          text[system_column] if system_column else None, criterion)
    scored = table.append_column("score", pa.array(scores, pa.float64()))
    Path(output).parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(scored, output)
    return scored


def _read_rows(data: Path) -> pa.Table:
    if not data.is_file():
        raise DataError(f"{data}: no such file")
    try:
        return read_table(data)
    except (pa.ArrowInvalid, OSError, ValueError) as error:
        raise DataError(f"{data}: cannot read it: {error}") from None


def build_parser() -> argparse.ArgumentParser:
    """The command line of ``python -m trainers.score`` (every option documented, with its default)."""
    parser = argparse.ArgumentParser(prog="python -m trainers.score", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--model", required=True, help="reward model folder written by the trainer (or a HF id)")
    parser.add_argument("--data", required=True, type=local_path_argument,
                        help="rows to score: a Parquet or JSON Lines file")
    parser.add_argument("--output", required=True, type=local_path_argument,
                        help="Parquet file: every input row, in order, with its score")
    parser.add_argument("--prompt-column", default=None, help="the prompt column (default: prompt, else input)")
    parser.add_argument("--response-column", default="response", help="the response column")
    parser.add_argument("--system-column", default=None, help="a column of system prompts (default: none)")
    parser.add_argument("--criterion", default=None,
                        help="condition every row on this criterion's system prompt, e.g. Runtime_Efficiency")
    parser.add_argument("--max-length", type=int, default=4096,
                        help="tokens per sequence; a longer response is cut, a prompt alone too long is an error")
    add_model_options(parser)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m trainers.score``: returns the exit code (2 for bad input)."""
    args = build_parser().parse_args(argv)
    try:
        scored = score_file(args.model, args.data, args.output, prompt_column=args.prompt_column,
                            response_column=args.response_column, system_column=args.system_column,
                            criterion=args.criterion, max_length=args.max_length,
                            micro_batch_tokens=args.micro_batch_tokens, device=args.device, dtype=args.dtype,
                            attention=args.attention, template=args.template, backbone=args.backbone)
    except (DataError, OSError, ValueError) as error:  # bad input: say what, no traceback
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"scored {scored.num_rows} row(s) into {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
