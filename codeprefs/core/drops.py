"""The drop registry: every stage a row can be dropped at, in pipeline order, and its reasons.

Rows are never filtered out mid-pipeline: a drop stage that rejects a row writes its name to the
row's ``drop_stage`` column and a reason to ``drop_reason``, and the writer counts and samples
the dropped rows (``run.json``'s funnel, ``rejects/``). Those two columns are read by people and
by tools long after the build, so their values are a contract. This module is the one place
that names them:

* a :class:`DropStage` lists the reasons it may write; asking it for any other reason
  (:meth:`DropStage.reason`) raises :class:`UnknownDropReason`. Modules take their reasons as
  module or class constants, so a misspelt reason fails when the module is imported, not after
  the shards are written;
* :data:`DROP_STAGES` holds the stages in pipeline order, the order of ``run.json``'s funnel;
* :func:`drop` marks one row (a dict), :func:`mark_dropped` the rows of an Arrow table; both
  take a :class:`DropReason`, never bare text, and both let the first drop win.

"Drop stage" is not a build's cache stage (``source``, ``validate``, ``judge``, ``clean``,
``write``: the phases whose outputs are cached under ``.cache/stages/``); one cache stage runs
several drop stages, and two drop stages (``validate``, ``judge``) share a cache stage's name.
This module imports nothing of codeprefs' upper layers.
"""

from __future__ import annotations

from collections.abc import Iterable, MutableMapping
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

# How much of a drop's ``detail`` (why, in words: a program's exit status and first lines) a
# row keeps for ``rejects/``.
DETAIL_CHARS = 2000


class UnknownDropReason(ValueError):
    """A drop stage or reason the registry does not list (a typo, or one not registered yet)."""


class DropReason(str):
    """A registered reason of one drop stage: the text written to ``drop_reason``.

    It is a ``str`` equal to that text, so the functions that return one (a filter's reject
    reason, a split rule's) read and compare as before; :attr:`stage` says where it drops a row.
    Two stages' reasons of the same name (``binary``) compare equal as text: compare
    :attr:`stage` too where that matters. Make one with :meth:`DropStage.reason`.
    """

    stage: DropStage

    def __new__(cls, text: str, stage: DropStage) -> DropReason:
        reason = super().__new__(cls, text)
        reason.stage = stage
        return reason

    def __reduce__(self) -> tuple[Any, tuple[str, str]]:  # pickled (Ray) as a registry lookup
        return _registered_reason, (self.stage.name, str(self))

    def __repr__(self) -> str:
        return f"DropReason({self.stage.name}/{str(self)})"


class ReasonFamily:
    """A registered reason that names its subject after a colon (``ratio_below_min:a/b``):
    :meth:`about` makes the reason for one subject."""

    def __init__(self, stage: DropStage, name: str) -> None:
        self.stage = stage
        self.name = name

    def about(self, subject: str) -> DropReason:
        return DropReason(f"{self.name}:{subject}", self.stage)

    def __repr__(self) -> str:
        return f"ReasonFamily({self.stage.name}/{self.name}:*)"


class DropStage:
    """A stage a row can be dropped at, with every reason it may give.

    ``families`` are reasons written with a subject (``name:subject``, see :class:`ReasonFamily`).
    """

    def __init__(self, name: str, reasons: Iterable[str], families: Iterable[str] = ()) -> None:
        self.name = name
        self.reasons: tuple[str, ...] = tuple(reasons)
        self.families: tuple[str, ...] = tuple(families)
        clashes = [r for r in self.reasons if self.reasons.count(r) > 1 or r in self.families or ":" in r]
        if clashes:
            raise ValueError(f"drop stage {name!r}: reasons listed twice or with a colon: {sorted(set(clashes))}")

    def reason(self, name: str) -> DropReason:
        """The reason ``name`` of this stage (a plain name, or a family's ``name:subject``);
        :class:`UnknownDropReason` when the stage does not list it."""
        family, colon, _ = name.partition(":")
        if name in self.reasons or (colon and family in self.families):
            return DropReason(name, self)
        raise UnknownDropReason(
            f"drop stage {self.name!r} has no reason {name!r} (known: {', '.join(self.reasons)}"
            + (f"; with a subject: {', '.join(f'{f}:...' for f in self.families)}" if self.families else "")
            + "); add it to codeprefs/core/drops.py")

    def family(self, name: str) -> ReasonFamily:
        """The reason family ``name`` of this stage (:class:`UnknownDropReason` if not listed)."""
        if name not in self.families:
            raise UnknownDropReason(f"drop stage {self.name!r} has no reason family {name!r} "
                                    f"(known: {', '.join(self.families) or 'none'})")
        return ReasonFamily(self, name)

    def __reduce__(self) -> tuple[Any, tuple[str]]:  # pickled (Ray) as a registry lookup
        return drop_stage, (self.name,)

    def __repr__(self) -> str:
        return f"DropStage({self.name!r})"


# -- the registry, in pipeline order --------------------------------------------------------------

# Rows of every source: structural checks while listing (git commits, export and dataset records).
LIST = DropStage("list", reasons=(
    # git sources (pipelines.steps.ListCommits)
    "repo_error", "merge_commit", "root_commit", "no_file_change", "multiple_files",
    "not_modified_in_place", "not_regular_file", "not_target_language",
    # export and dataset records (pipelines.sources.export, pipelines.sources.dataset)
    "malformed_row", "missing_field", "not_text", "binary", "bad_sha", "bad_time", "bad_repo_name",
    "unsafe_path", "license_not_allowed", "not_in_allowlist", "unknown_language", "unknown_criterion",
), families=(
    # a dataset source's record filters, named by the column(s) they read
    "ratio_undefined", "ratio_below_min", "ratio_above_max", "not_one_of", "not_equal",
))
# The training/benchmark split (pipelines.splits) comes right after listing, so that no later
# work is spent on a commit outside the kept split.
SPLIT = DropStage("split", reasons=(
    "no_commit_time", "not_before_train_cutoff", "outside_benchmark_window", "repository_in_train",
))
MESSAGE = DropStage("message", reasons=(  # filters.messages
    "message_too_short", "message_too_long", "message_merge", "message_pi_push", "revert",
    "message_low_signal",
))
CRITERIA = DropStage("criteria", reasons=("no_criterion", "test_file"))  # filters.criteria, filters.testfiles
CONTENT = DropStage("content", reasons=(
    # reading both versions of the file (ReadContents)
    "blob_missing", "file_too_large", "binary", "non_utf8",
    # export sources: getting the commit from its remotes first (FetchContents, pipelines.sources.remote)
    "repo_vanished", "commit_not_found", "fetch_timeout", "fetch_failed", "root_commit", "read_error",
    "file_missing", "not_regular_file",
))
SCOPE = DropStage("scope", reasons=("unchanged_in_scope",))  # pipelines.scopes
# Synthesized pairs (solutions sources, pipelines.synthesis.pairs): the record and its solution...
SOLUTIONS = DropStage("solutions", reasons=(
    "malformed_record", "binary", "unknown_language", "no_solution", "solution_syntax_error",
    "solution_fails_own_tests", "solution_timeout", "solution_limit_exceeded", "solution_compile_error",
    "solution_compile_timeout", "solution_toolchain_error",
))
# ... then each variant, verified by running the tests.
VERIFY = DropStage("verify", reasons=(
    "mutant_survived", "mutant_compile_error", "mutant_toolchain_error", "no_mutant",
    "readability_no_change", "readability_structure_changed", "readability_behaviour_changed",
))
VALIDATE = DropStage("validate", reasons=(  # filters.validation; a NUL byte is "binary"
    "binary", "chosen_too_large", "rejected_too_large", "unchanged_after_whitespace",
    "chosen_parse_timeout", "rejected_parse_timeout", "chosen_too_shallow", "rejected_too_shallow",
    "chosen_syntax_error", "rejected_syntax_error", "comment_only_change",
))
LENGTH = DropStage("length", reasons=("too_long",))  # filters.length
JUDGE = DropStage("judge", reasons=("llm_error", "low_rating", "judge_rejected", "judge_tie"))  # pipelines.judge
DECONTAMINATE = DropStage("decontaminate", reasons=("benchmark_overlap",))  # filters.dedupe.decontaminate
# filters.dedupe.near (near_duplicate), then the shard writer (pipelines.shards)
DEDUPE = DropStage("dedupe", reasons=("near_duplicate", "inverse_pair", "exact_duplicate"))

DROP_STAGES: tuple[DropStage, ...] = (
    LIST, SPLIT, MESSAGE, CRITERIA, CONTENT, SCOPE,  # mined pairs (git and export sources)
    SOLUTIONS, VERIFY,  # synthesized pairs (solutions sources)
    VALIDATE, LENGTH, JUDGE, DECONTAMINATE, DEDUPE,
)
# Candidate sets (synthesis.candidates, pipelines.synthesis.candidates) are not pairs: what they
# drop (a task that cannot be used, a candidate left out) is counted in run.json's own
# `candidates` section, not in the pairs' funnel, so this stage is registered but not in DROP_STAGES.
CANDIDATES = DropStage("candidates", reasons=(
    # the task: its record and its reference solution
    "malformed_record", "binary", "unknown_language", "no_solution", "solution_syntax_error",
    "no_toolchain", "solution_fails_own_tests", "solution_timeout", "solution_limit_exceeded",
    "solution_compile_error", "solution_compile_timeout", "solution_toolchain_error",
    # one candidate of a usable task
    "duplicate_code", "not_sampled", "llm_no_code",
))
# Their names, in pipeline order: the funnel in run.json follows it.
STAGES: tuple[str, ...] = tuple(stage.name for stage in DROP_STAGES)
# Every registered drop stage: the pairs' stages, then those counted outside the funnel.
REGISTERED_STAGES: tuple[DropStage, ...] = (*DROP_STAGES, CANDIDATES)
_BY_NAME = {stage.name: stage for stage in REGISTERED_STAGES}

# Rows dropped at these stages passed validation: they still make a kept row an inverse pair.
VALIDATED_DROP_STAGES: frozenset[str] = frozenset({DECONTAMINATE.name, DEDUPE.name})


def drop_stage(name: str) -> DropStage:
    """The registered drop stage ``name`` (:class:`UnknownDropReason` for any other)."""
    try:
        return _BY_NAME[name]
    except KeyError:
        raise UnknownDropReason(f"no drop stage {name!r} (known: {', '.join(STAGES)})") from None


def _registered_reason(stage: str, reason: str) -> DropReason:
    return drop_stage(stage).reason(reason)


class DropsAt:
    """A pipeline step that drops rows declares its :class:`DropStage` once, as ``drop_stage``
    (``None``: it never drops). Checked when the class is defined: the stage must be a
    registered one, and every :class:`DropReason` the class holds as a constant must be that
    stage's."""

    drop_stage: DropStage | None = None

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        stage = cls.drop_stage
        if stage is not None and _BY_NAME.get(getattr(stage, "name", None)) is not stage:
            raise UnknownDropReason(f"{cls.__name__}.drop_stage must be a registered DropStage "
                                    f"of codeprefs.core.drops, not {stage!r}")
        for name, value in vars(cls).items():
            if isinstance(value, DropReason) and value.stage is not stage:
                raise UnknownDropReason(f"{cls.__name__}.{name} is a reason of drop stage "
                                        f"{value.stage.name!r}, not of its own ({stage!r})")


# -- marking drops ----------------------------------------------------------------------------------


def drop(row: MutableMapping[str, Any], reason: DropReason, detail: str | None = None) -> None:
    """Mark ``row`` as dropped for ``reason`` at its stage (the first drop wins); ``detail`` (cut
    to :data:`DETAIL_CHARS`) says why in words, for ``rejects/``."""
    if not isinstance(reason, DropReason):
        raise TypeError(f"drop reasons come from the registry (codeprefs.core.drops), not {reason!r}")
    if row["drop_reason"] is None:
        row["drop_stage"] = reason.stage.name
        row["drop_reason"] = str(reason)
        row["drop_detail"] = detail[:DETAIL_CHARS] if detail else None


def mark_dropped(table: pa.Table, reason: DropReason, where: pa.Array | pa.ChunkedArray | None = None) -> pa.Table:
    """``table`` with the rows ``where`` is true (all rows when ``None``) marked dropped for
    ``reason``, the rows already dropped left as they are (the first drop wins).

    The Arrow counterpart of :func:`drop` for the stages that work on whole tables (near-dedupe,
    decontamination, the shard writer's inverse and exact duplicates); only ``drop_stage`` and
    ``drop_reason`` change."""
    if not isinstance(reason, DropReason):
        raise TypeError(f"drop reasons come from the registry (codeprefs.core.drops), not {reason!r}")
    live = pc.is_null(table["drop_reason"])
    dropping = live if where is None else pc.fill_null(pc.and_(where, live), False)
    for column, value in (("drop_stage", reason.stage.name), ("drop_reason", str(reason))):
        marked = pc.if_else(dropping, pa.scalar(value, pa.string()), table[column])
        table = table.set_column(table.schema.get_field_index(column), column, marked)
    return table
