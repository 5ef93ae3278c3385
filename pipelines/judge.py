"""LLM stages for mined pairs: rate the change, write the task it answers, vote on the pair.

The Themis paper's stages 6-8 (``../shared/reference/paper-notes.md``), run when the manifest
has a ``judge`` section, on the pairs of git and export sources that passed validation and the
length budget (the cheapest filters run first, so no request is spent on a pair they drop).
Each pair, in this order:

1. **rating** (``judge.rating``): the LLM rates 1-5 how specifically the change improves the
   pair's criterion; under ``min_score`` the pair is dropped as ``low_rating``.
2. **instruction** (``judge.instruction``): the LLM writes the task either version answers, in a
   style drawn per pair (seeded) from ``styles``; it replaces the template prompt (``input``).
3. **votes** (``judge.votes`` samples at ``judge.temperature``, A/B order randomised per sample,
   seeded): the pair is kept when the majority prefers chosen; ``judge_rejected`` when it
   prefers rejected, ``judge_tie`` on a tie.

An answer that cannot be read (no rating, no task, no verdict in any sample) or an endpoint that
keeps failing after its retries drops the pair as ``llm_error``, with the reason in
``drop_detail``. Requests go through :class:`~codeprefs.pipelines.synthesis.llm.ChatClient`: bounded
concurrency, retries, and a response cache keyed by the exact request, so a rerun sends nothing
it sent before. Request, token and cache-hit counts are summed into ``run.json`` (``llm``).
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pyarrow as pa

from codeprefs.core.drops import JUDGE, drop
from codeprefs.core.store import Store
from codeprefs.pipelines.judgesettings import JudgeSettings
from codeprefs.core.rows import Row, to_table
from codeprefs.pipelines.steps import Step
from codeprefs.pipelines.synthesis.llm import (
    ChangeRater,
    ChatClient,
    InstructionWriter,
    LLMError,
    PairJudge,
    _seeded,
)

STATS_DIR = "llm-stats"  # in the stage folder: one JSON file of counts per batch
MINED_GENERATORS = frozenset({"commit"})


class JudgePairs(Step):
    """The LLM stages above, for the mined pairs of a batch (other pairs pass untouched)."""

    drop_stage = JUDGE
    LLM_ERROR = JUDGE.reason("llm_error")
    LOW_RATING = JUDGE.reason("low_rating")
    JUDGE_REJECTED = JUDGE.reason("judge_rejected")
    JUDGE_TIE = JUDGE.reason("judge_tie")

    def __init__(self, client: ChatClient, min_score: int | None, styles: list[str] | None, votes: int,
                 temperature: float, seed: int, stats: tuple[Store, str] | None = None) -> None:
        self.client = client
        self.rater = ChangeRater(client) if min_score is not None else None
        self.min_score = min_score
        self.writer = InstructionWriter(client, seed) if styles else None
        self.styles = list(styles or [])
        self.judge = PairJudge(client, votes, temperature, seed) if votes else None
        self.seed = seed
        self.stats = stats  # (store, folder) where each batch's LLM counts go

    def process(self, row: Row) -> None:
        if row["generator"] not in MINED_GENERATORS:
            return
        try:
            self._judge(row)
        except LLMError as error:
            drop(row, self.LLM_ERROR, str(error))

    def _judge(self, row: Row) -> None:
        criterion, language = row["aspect"], row["language"]
        before, after = row["rejected"], row["chosen"]
        if self.rater is not None:
            rating = self.rater.rate(criterion, language, row["message"] or "", before, after)
            if rating.score is None:
                drop(row, self.LLM_ERROR, f"no 1-5 rating in the answer: {rating.answer[:200]!r}")
                return
            if rating.score < (self.min_score or 0):
                drop(row, self.LOW_RATING, f"rated {rating.score} for {criterion}")
                return
        if self.writer is not None:
            style = _seeded(self.seed, before, after).choice(self.styles)
            instruction = self.writer.write(language, before, after, style)
            if instruction is None:
                drop(row, self.LLM_ERROR, "the instruction answer was empty")
                return
            row["input"] = instruction
        if self.judge is not None:
            verdict = self.judge.compare(criterion, language, row["input"], after, before)
            if verdict.winner is None:
                drop(row, self.LLM_ERROR, f"no verdict in {verdict.samples} judge samples")
            elif verdict.winner == "second":
                drop(row, self.JUDGE_REJECTED, f"votes {verdict.votes}")
            elif verdict.winner == "tie":
                drop(row, self.JUDGE_TIE, f"votes {verdict.votes}")

    def __call__(self, batch: pa.Table) -> pa.Table:
        before = self.client.stats.as_dict()
        table = to_table(self.run(batch.to_pylist()))
        if self.stats is not None:
            store, prefix = self.stats
            after = self.client.stats.as_dict()
            delta = {key: after[key] - before[key] for key in after}
            store.write_bytes(f"{prefix}/{uuid.uuid4().hex}.json", json.dumps(delta).encode())
        return table


def judge_step(config: JudgeSettings, cache_dir: Path, store: Store, stats_prefix: str) -> JudgePairs:
    """The step for a manifest's ``judge`` section (its response cache under ``cache_dir``
    unless the section names one; the counts of each batch under ``stats_prefix`` of ``store``)."""
    client = ChatClient.from_config(config.llm, Path(config.llm.cache_dir) if config.llm.cache_dir else cache_dir,
                                    key="judge.llm")
    return JudgePairs(client, config.rating.min_score if config.rating else None,
                      config.instruction.styles if config.instruction else None, config.votes,
                      config.temperature, config.seed, (store, stats_prefix))


def llm_totals(store: Store, stats_prefix: str) -> dict[str, int]:
    """The counts of every batch of a judge stage, summed."""
    totals = {"requests": 0, "cache_hits": 0, "retries": 0, "prompt_tokens": 0, "completion_tokens": 0}
    for name in store.files(stats_prefix):
        if not name.endswith(".json"):
            continue
        for key, value in json.loads(store.read_bytes(name) or b"{}").items():
            totals[key] = totals.get(key, 0) + int(value)
    return totals
