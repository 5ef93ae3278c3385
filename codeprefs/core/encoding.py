"""How a preference pair becomes the token sequences a reward model reads.

This is a contract two layers share: the trainer encodes every pair with it, and the length
budget (:mod:`codeprefs.filters.length`) counts a pair's tokens with it, so that a pair the budget keeps is
never cut by the trainer. :class:`PairEncoder` renders a pair with the tokenizer's chat template
(or a plain layout) and tokenizes it within ``max_length``, cutting the response, never the
prompt, and keeping the template's end-of-turn tokens.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa


class DataError(ValueError):
    """The pairs cannot be read or used; the message names the input and what is wrong."""


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
    def encode_sequences(self, systems: Sequence[str], prompts: Sequence[str],
                         responses: Sequence[str]) -> list[np.ndarray | str]:
        """Each (system, prompt, response) as one token sequence, rendered and cut exactly as
        :meth:`encode` renders and cuts a pair's side; a row that cannot be encoded gives its
        reason instead (``empty_input``, ``empty_response``, ``prompt_too_long``)."""
        start, middle, end = self._plain_special() if self.template == "plain" else ([], [], [])
        rendered = [self._render(system, prompt, response)
                    for system, prompt, response in zip(systems, prompts, responses, strict=True)]
        prompt_ids = self._ids([part.prompt for part in rendered])
        bodies = self._ids([part.body for part in rendered])
        closings = self._ids([part.closing for part in rendered])
        out: list[np.ndarray | str] = []
        for k, (prompt, response) in enumerate(zip(prompts, responses, strict=True)):
            head, close = start + prompt_ids[k] + middle, closings[k] + end
            budget = self.max_length - len(head) - len(close)
            if not prompt.strip() or not response.strip():
                out.append("empty_input" if not prompt.strip() else "empty_response")
            elif budget < 1:
                out.append("prompt_too_long")
            else:
                sequence = head + _cut(bodies[k], budget)[0] + close
                if self.pad_token_id is not None and sequence[-1] == self.pad_token_id:
                    raise DataError(f"sequences end with the pad token (id {self.pad_token_id}); a "
                                    "sequence-classification model would read its score elsewhere. Choose a "
                                    "pad token the template never emits last (--pad-token)")
                out.append(np.asarray(sequence, np.int32))
        return out

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
