"""Preference pairs in, token ids out.

Three steps, each its own function:

1. :func:`load_pairs` reads pairs from our shard folder (``<out>/data/*.parquet``), a folder or a
   glob of Parquet / JSON-lines files, a ``datasets`` folder written by ``save_to_disk``, or a
   ``datasets`` name, and returns them with the paper's columns (see :data:`LOADED_COLUMNS`).
2. :func:`assign_system_prompts` fills empty ``system`` cells (seeded per row, see
   :mod:`trainers.prompts`).
3. :class:`PairEncoder` renders each pair with the tokenizer's chat template and tokenizes it;
   when a sequence is longer than ``max_length`` it cuts the response, never the prompt, and
   keeps the template's end-of-turn tokens so the reward is still read at the same kind of token.

No row is dropped silently: a pair that cannot be used (empty response, prompt alone too long,
identical responses in training, responses that become identical once truncated, in training and
evaluation) is skipped and counted by reason in :class:`DataReport`.
"""

from __future__ import annotations

import glob as globlib
import json
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from codeprefs.core.locations import RemoteLocationError, require_local
from codeprefs.core.records import is_saved_dataset, read_table, saved_dataset_tables
from codeprefs.schema import TRAINING_COLUMNS, parse_aspect, stable_id
from trainers.prompts import PromptKind, evaluation_prompt, training_prompt

# The columns every loaded table has, in this order: what training and evaluation read of a pair
# (not the shards' full codeprefs.schema.PAIR_COLUMNS), with its id and the subset results group by.
LOADED_COLUMNS: tuple[str, ...] = ("id", *TRAINING_COLUMNS, "subset")
REQUIRED_COLUMNS: tuple[str, ...] = ("input", "chosen", "rejected", "language", "aspect")
_TEXT_COLUMNS = LOADED_COLUMNS[1:]  # all but the id


class DataError(ValueError):
    """The pairs cannot be read or used; the message names the input and what is wrong."""


# -- 1. loading ---------------------------------------------------------------------------------

def load_pairs(source: str | Path, split: str | None = None) -> pa.Table:
    """Read preference pairs from ``source`` and return them with :data:`LOADED_COLUMNS`.

    ``source`` may be a shard output folder (its ``data/*.parquet``), a folder of Parquet or
    JSON-lines files, a glob of such files, a single file, a folder saved with
    ``datasets.Dataset.save_to_disk``, or a ``datasets`` name (``split`` defaults to ``train``).
    The paper's benchmark spells the prompt column ``prompt``; it is read as ``input``.
    """
    text = str(source)
    try:
        require_local(text, "pairs source")
    except RemoteLocationError as error:
        raise DataError(str(error)) from None
    table = _read_any(text, split)
    return normalize_columns(table, text)


def _read_any(source: str, split: str | None) -> pa.Table:
    if any(char in source for char in "*?["):
        files = sorted(globlib.glob(source, recursive=True))
        if not files:
            raise DataError(f"{source}: the glob matches no file")
        return _read_files([Path(f) for f in files], source)
    path = Path(source).expanduser()
    if path.is_file():
        return _read_files([path], source)
    if path.is_dir():
        if is_saved_dataset(path):
            return _read_saved_dataset(path, split)
        shards = sorted((path / "data").glob("*.parquet")) if (path / "data").is_dir() else []
        if shards:
            return _read_files(_pick_split(shards, split, source), source)
        for pattern in ("*.parquet", "*.jsonl", "*.json"):
            files = sorted(path.glob(pattern)) or sorted(path.rglob(pattern))
            folders = sorted({str(file.parent) for file in files})
            if len(folders) > 1:  # e.g. one folder per config or split: never mix them silently
                raise DataError(f"{source}: {pattern} files in several folders ({', '.join(folders)}); "
                                "point at one of them or pass a glob")
            if files:
                return _read_files(files, source)
        raise DataError(f"{source}: no data/*.parquet, *.parquet, *.jsonl or saved dataset in this folder")
    if source.startswith((".", "/", "~")) or source.endswith((".parquet", ".jsonl", ".json")):
        raise DataError(f"{source}: no such file or folder")
    return _read_hub_dataset(source, split)


def _pick_split(files: list[Path], split: str | None, source: str) -> list[Path]:
    """Shards named ``<split>-NNNNN-of-NNNNN.parquet``: those of ``split`` (or of the only split)."""
    splits = sorted({file.name.split("-")[0] for file in files})
    if split is None:
        if len(splits) > 1:
            raise DataError(f"{source}: pick a split with --split (its data/ has {', '.join(splits)})")
        return files
    chosen = [file for file in files if file.name.split("-")[0] == split]
    if not chosen:
        raise DataError(f"{source}: no data/{split}-*.parquet (its data/ has {', '.join(splits)})")
    return chosen


def _read_files(files: Sequence[Path], source: str) -> pa.Table:
    tables = []
    for file in files:
        try:
            if file.suffix not in (".parquet", ".jsonl", ".json"):
                raise DataError(f"{file}: unsupported file type (expected .parquet, .jsonl or .json)")
            tables.append(read_table(file))
        except (pa.ArrowInvalid, OSError) as error:
            raise DataError(f"{file}: cannot read it: {error}") from None
    if not tables:
        raise DataError(f"{source}: no files to read")
    try:
        return pa.concat_tables(tables, promote_options="permissive")
    except pa.ArrowInvalid as error:
        raise DataError(f"{source}: the files have incompatible columns: {error}") from None


def _read_saved_dataset(path: Path, split: str | None) -> pa.Table:
    splits = saved_dataset_tables(path)
    if None in splits:  # a single Dataset: no splits to pick from
        return splits[None]
    names = [str(name) for name in splits]
    chosen = split or ("train" if "train" in splits else names[0] if len(names) == 1 else None)
    if chosen is None or chosen not in splits:
        raise DataError(f"{path}: pick a split with --split (it has {', '.join(names)})")
    return splits[chosen]


def _read_hub_dataset(name: str, split: str | None) -> pa.Table:
    import datasets

    try:
        loaded = datasets.load_dataset(name, split=split or "train")
    except Exception as error:  # the datasets library raises many kinds; name the input
        raise DataError(f"{name}: not a file, folder or loadable dataset ({type(error).__name__}: {error})") from None
    return loaded.with_format("arrow")[:]


def normalize_columns(table: pa.Table, source: str) -> pa.Table:
    """Check and reshape ``table`` to :data:`LOADED_COLUMNS` (string columns, nulls as empty text).

    ``system`` may be missing (all empty); ``subset`` falls back to ``source`` then ``"all"``;
    ``id`` falls back to a hash of (input, chosen, rejected).
    """
    names = set(table.column_names)
    if "input" not in names and "prompt" in names:
        table = table.rename_columns(["input" if n == "prompt" else n for n in table.column_names])
        names = set(table.column_names)
    missing = [column for column in REQUIRED_COLUMNS if column not in names]
    if missing:
        raise DataError(f"{source}: missing column(s) {', '.join(repr(m) for m in missing)}; "
                        f"found {', '.join(sorted(names)) or 'none'}")
    rows = table.num_rows
    columns: dict[str, pa.Array] = {}
    for column in _TEXT_COLUMNS:
        if column in names:
            values = table[column]
        elif column == "subset" and "source" in names:
            values = table["source"]
        else:
            values = pa.array(["all" if column == "subset" else ""] * rows, pa.string())
        if not (pa.types.is_string(values.type) or pa.types.is_large_string(values.type)
                or pa.types.is_null(values.type)):
            raise DataError(f"{source}: column {column!r} must hold text, not {values.type}")
        columns[column] = pc.fill_null(values.cast(pa.string()), "")
    if "id" in names:
        ids = table["id"]
    else:
        ids = pa.array([stable_id(i, c, r) for i, c, r in zip(
            columns["input"].to_pylist(), columns["chosen"].to_pylist(), columns["rejected"].to_pylist(),
            strict=True)], pa.string())
    return pa.table({"id": ids, **{c: columns[c] for c in LOADED_COLUMNS[1:]}})


# -- 2. system prompts --------------------------------------------------------------------------

def assign_system_prompts(table: pa.Table, seed: int) -> tuple[pa.Table, Counter[str]]:
    """Training prompts: keep a non-empty ``system``, draw one for empty cells (seeded per row).

    Returns the table with the filled ``system`` column and the count per :class:`PromptKind`.
    """
    ids = [str(value) for value in table["id"].to_pylist()]
    given = table["system"].to_pylist()
    aspects = table["aspect"].to_pylist()
    _check_aspects([a for a, s in zip(aspects, given, strict=True) if not s], "aspect")
    kinds: Counter[str] = Counter()
    filled = []
    for row_id, system, aspect in zip(ids, given, aspects, strict=True):
        if system:
            kinds[PromptKind.GIVEN] += 1
            filled.append(system)
            continue
        kind, text = training_prompt(row_id, aspect, seed)
        kinds[kind] += 1
        filled.append(text)
    return table.set_column(table.schema.get_field_index("system"), "system",
                            pa.array(filled, pa.string())), kinds


def evaluation_system_prompts(table: pa.Table, mode: str) -> tuple[pa.Table, Counter[str]]:
    """Evaluation prompts for every row: ``own`` (default), ``all``, ``none`` or ``data``."""
    aspects = table["aspect"].to_pylist()
    if mode in ("own",):
        _check_aspects(aspects, "aspect")
    kinds: Counter[str] = Counter()
    filled = []
    for aspect, given in zip(aspects, table["system"].to_pylist(), strict=True):
        kind, text = evaluation_prompt(mode, aspect, given)
        kinds[kind] += 1
        filled.append(text)
    return table.set_column(table.schema.get_field_index("system"), "system",
                            pa.array(filled, pa.string())), kinds


def _check_aspects(values: Sequence[str], column: str) -> None:
    unknown = set()
    for value in set(values):
        try:
            parse_aspect(value)
        except ValueError:
            unknown.add(value)
    if unknown:
        raise DataError(f"column {column!r}: cannot build a criteria prompt for unknown criterion "
                        f"value(s) {sorted(unknown)!r}; give those rows a system prompt or fix the labels")


# -- 3. tokenization ----------------------------------------------------------------------------

@dataclass(frozen=True)
class EncodedPair:
    """One pair as token ids: the shared prompt and each full response (template tokens included)."""

    row: int  # index of the pair in the loaded table
    prompt: np.ndarray  # int32 ids of the rendered prompt, up to the assistant turn
    chosen: np.ndarray  # int32 ids of the chosen response, end-of-turn tokens included
    rejected: np.ndarray

    @property
    def chosen_length(self) -> int:
        return len(self.prompt) + len(self.chosen)

    @property
    def rejected_length(self) -> int:
        return len(self.prompt) + len(self.rejected)

    @property
    def num_tokens(self) -> int:
        """Tokens of both sequences of the pair (what a pack holds)."""
        return self.chosen_length + self.rejected_length


@dataclass
class DataReport:
    """What happened to the loaded rows: kept, skipped by reason, responses truncated."""

    rows: int = 0
    kept: int = 0
    skipped: Counter[str] = field(default_factory=Counter)
    skipped_ids: dict[str, list[Any]] = field(default_factory=dict)
    truncated_chosen: int = 0
    truncated_rejected: int = 0
    system_prompts: Counter[str] = field(default_factory=Counter)

    def skip(self, reason: str, row_id: Any) -> None:
        self.skipped[reason] += 1
        self.skipped_ids.setdefault(reason, []).append(row_id)

    def as_dict(self) -> dict[str, Any]:
        return {"rows": self.rows, "kept": self.kept, "skipped": dict(sorted(self.skipped.items())),
                "truncated_chosen": self.truncated_chosen, "truncated_rejected": self.truncated_rejected,
                "system_prompts": dict(sorted(self.system_prompts.items()))}


@dataclass(frozen=True)
class _Rendered:
    prompt: str
    body: str  # the response up to the end of its text (what truncation may cut)
    closing: str  # template text after the response (end-of-turn), kept when truncating


class PairEncoder:
    """Render pairs with a chat template (or a plain layout) and tokenize them within ``max_length``.

    ``template`` is ``chat`` (the tokenizer's chat template), ``plain``
    (``[CLS]/[BOS] system + input [SEP] response [SEP]/[EOS]``, for tokenizers without a template,
    such as encoders'), or ``auto`` (chat when the tokenizer has one).
    """

    def __init__(self, tokenizer: Any, max_length: int, template: str = "auto") -> None:
        if max_length < 8:
            raise DataError(f"max_length must be at least 8 tokens, got {max_length}")
        self.tokenizer = tokenizer
        self.max_length = max_length
        if template == "auto":
            template = "chat" if getattr(tokenizer, "chat_template", None) else "plain"
        if template == "chat" and not getattr(tokenizer, "chat_template", None):
            raise DataError("the tokenizer has no chat template; give one with --chat-template FILE "
                            "or use --template plain")
        if template not in ("chat", "plain"):
            raise DataError(f"unknown template {template!r}; expected auto, chat or plain")
        self.template = template
        self.pad_token_id = tokenizer.pad_token_id

    # rendering -----------------------------------------------------------------------------
    def _render(self, system: str, prompt: str, response: str) -> _Rendered:
        if self.template == "plain":
            head = f"{system}\n\n{prompt}" if system else prompt
            if self.tokenizer.sep_token_id is None:  # no [SEP] between prompt and answer: a blank line
                head += "\n\n"
            return _Rendered(head, response, "")
        messages = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": prompt}]
        prompt_text = self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        full = self.tokenizer.apply_chat_template([*messages, {"role": "assistant", "content": response}],
                                                  tokenize=False)
        if not full.startswith(prompt_text):
            raise DataError("the chat template renders the prompt differently once the answer is added, so "
                            "the prompt cannot be told apart from the response; use another template")
        tail = full[len(prompt_text):]
        core = response.strip()
        end = tail.rfind(core) + len(core) if core and core in tail else len(tail)
        return _Rendered(prompt_text, tail[:end], tail[end:])

    def _ids(self, texts: list[str]) -> list[list[int]]:
        if not texts:
            return []
        return self.tokenizer(texts, add_special_tokens=False)["input_ids"]

    def _plain_special(self) -> tuple[list[int], list[int], list[int]]:
        tok = self.tokenizer
        start = [tok.cls_token_id] if tok.cls_token_id is not None else (
            [tok.bos_token_id] if tok.bos_token_id is not None else [])
        middle = [tok.sep_token_id] if tok.sep_token_id is not None else []
        end = [tok.sep_token_id] if tok.sep_token_id is not None else (
            [tok.eos_token_id] if tok.eos_token_id is not None else [])
        return start, middle, end

    def sequence_lengths(self, system: str, prompt: str, responses: Sequence[str]) -> list[int]:
        """Tokens of each whole sequence (prompt, response and closing, untruncated) exactly as
        :meth:`encode` renders and tokenizes it: what a token budget before training measures."""
        start, middle, end = self._plain_special() if self.template == "plain" else ([], [], [])
        rendered = [self._render(system, prompt, response) for response in responses]
        if not rendered:
            return []
        prompt_ids = self._ids([rendered[0].prompt])[0]
        bodies = self._ids([part.body for part in rendered])
        closings = self._ids([part.closing for part in rendered])
        head = len(start) + len(prompt_ids) + len(middle)
        return [head + len(body) + len(closing) + len(end) for body, closing in zip(bodies, closings, strict=True)]

    # encoding -------------------------------------------------------------------------------
    def encode(self, table: pa.Table, report: DataReport | None = None, drop_identical: bool = False,
               chunk_rows: int = 2048) -> tuple[list[EncodedPair], DataReport]:
        """Tokenize every usable row of ``table`` (with :data:`LOADED_COLUMNS`); count the rest."""
        report = report or DataReport()
        report.rows += table.num_rows
        pairs: list[EncodedPair] = []
        for start in range(0, table.num_rows, chunk_rows):
            chunk = table.slice(start, chunk_rows)
            pairs.extend(self._encode_chunk(chunk, start, report, drop_identical))
        report.kept = len(pairs)
        return pairs, report

    def _encode_chunk(self, chunk: pa.Table, offset: int, report: DataReport,
                      drop_identical: bool) -> list[EncodedPair]:
        ids = chunk["id"].to_pylist()
        systems, inputs = chunk["system"].to_pylist(), chunk["input"].to_pylist()
        chosens, rejecteds = chunk["chosen"].to_pylist(), chunk["rejected"].to_pylist()
        usable: list[int] = []
        rendered: list[tuple[_Rendered, _Rendered]] = []
        for index, (system, prompt, chosen, rejected) in enumerate(zip(systems, inputs, chosens, rejecteds,
                                                                       strict=True)):
            reason = _unusable(prompt, chosen, rejected, drop_identical)
            if reason:
                report.skip(reason, ids[index])
                continue
            usable.append(index)
            rendered.append((self._render(system, prompt, chosen), self._render(system, prompt, rejected)))
        prompt_ids = self._ids([c.prompt for c, _ in rendered])
        chosen_body = self._ids([c.body for c, _ in rendered])
        rejected_body = self._ids([r.body for _, r in rendered])
        closings = sorted({part.closing for pair in rendered for part in pair})
        closing_ids = dict(zip(closings, self._ids(closings), strict=True))
        start, middle, end = self._plain_special() if self.template == "plain" else ([], [], [])
        out = []
        for k, index in enumerate(usable):
            prompt = start + prompt_ids[k] + middle
            chosen_close = closing_ids[rendered[k][0].closing] + end
            rejected_close = closing_ids[rendered[k][1].closing] + end
            budget_chosen = self.max_length - len(prompt) - len(chosen_close)
            budget_rejected = self.max_length - len(prompt) - len(rejected_close)
            if min(budget_chosen, budget_rejected) < 1:
                report.skip("prompt_too_long", ids[index])
                continue
            chosen_ids, cut_chosen = _cut(chosen_body[k], budget_chosen)
            rejected_ids, cut_rejected = _cut(rejected_body[k], budget_rejected)
            chosen_seq = chosen_ids + chosen_close
            rejected_seq = rejected_ids + rejected_close
            if (cut_chosen or cut_rejected) and chosen_seq == rejected_seq:
                # the two sides differ only past the budget: the model would see the same sequence
                # twice under opposite labels (training) or score a tie it cannot avoid (evaluation)
                report.skip("identical_after_truncation", ids[index])
                continue
            report.truncated_chosen += cut_chosen
            report.truncated_rejected += cut_rejected
            if self.pad_token_id is not None and self.pad_token_id in (chosen_seq[-1], rejected_seq[-1]):
                raise DataError("sequences end with the pad token (id "
                                f"{self.pad_token_id}); a sequence-classification model would read its score "
                                "elsewhere. Choose a pad token the template never emits last (--pad-token)")
            out.append(EncodedPair(offset + index, np.asarray(prompt, np.int32), np.asarray(chosen_seq, np.int32),
                                   np.asarray(rejected_seq, np.int32)))
        return out


def _unusable(prompt: str, chosen: str, rejected: str, drop_identical: bool) -> str | None:
    if not prompt.strip():
        return "empty_input"
    if not chosen.strip():
        return "empty_chosen"
    if not rejected.strip():
        return "empty_rejected"
    if drop_identical and chosen == rejected:
        return "identical_responses"
    return None


def _cut(ids: list[int], budget: int) -> tuple[list[int], int]:
    return (ids, 0) if len(ids) <= budget else (ids[:budget], 1)


def write_report(report: DataReport, path: Path) -> None:
    """Write the report (and the ids of skipped rows) as JSON."""
    payload = report.as_dict() | {"skipped_ids": {k: [str(i) for i in v] for k, v in report.skipped_ids.items()}}
    path.write_text(json.dumps(payload, indent=2) + "\n")
