"""Tree-sitter validation of a preference pair.

Checks, cheapest first; the first failure names the drop reason:

1. each side is at most ``max_bytes`` (``chosen_too_large`` / ``rejected_too_large``);
2. chosen and rejected differ after whitespace normalisation, unless the pair may be labelled
   Readability_Maintainability (see below) (``unchanged_after_whitespace``);
3. each side parses within the time limit (``chosen_parse_timeout`` / ...);
4. each side is at least ``min_depth`` levels deep (``chosen_too_shallow`` / ...);
5. syntax errors. Tree-sitter grammars reject some valid code (macro-heavy C++ above all), so
   mined code, which compiled in its project, is kept while the share of its bytes under ERROR
   nodes is at most ``max_error_fraction`` on each side; synthesized code (``strict=True``)
   must have no ERROR or MISSING node at all (``chosen_syntax_error`` / ...);
6. a change confined to comments, docstrings and whitespace (the same tree-sitter tokens once
   comments and Python docstrings are dropped, :func:`codeprefs.parsers.treesitter.code_tokens`) can only
   improve Readability_Maintainability. With ``comment_only="readability"`` (the default) such a
   pair's ``aspect`` becomes Readability_Maintainability when its message matched that criterion
   (``aspects``), else it is dropped (``comment_only_change``); ``"drop"`` drops every such pair;
   ``"keep"`` leaves its label alone.

A whitespace-only change is a comment-only change too, and is kept only as
Readability_Maintainability: relabelled as above with ``"readability"``, kept only when already
so labelled with ``"keep"``, dropped with ``"drop"``; its drop reason stays
``unchanged_after_whitespace``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from pydantic import Field
from tree_sitter import Tree

from codeprefs.core.drops import VALIDATE, DropReason
from codeprefs.core.settings import Settings
from codeprefs.core.schema import Aspect, Language
from codeprefs.parsers.treesitter import ParseLimitExceeded, ParseLimits, SyntaxReport, inspect_tree, parse, same_code

CommentOnly = Literal["readability", "drop", "keep"]
READABILITY = Aspect.READABILITY_MAINTAINABILITY.value

# The drop reasons of the checks above (drop stage ``validate``), per side where a side fails.
SIDES = ("chosen", "rejected")
TOO_LARGE = {side: VALIDATE.reason(f"{side}_too_large") for side in SIDES}
# a parse limit broken (parsers.treesitter.ParseLimitExceeded's reasons)
PARSE_LIMIT = {(side, limit): VALIDATE.reason(f"{side}_{limit}")
               for side in SIDES for limit in ("too_large", "parse_timeout")}
TOO_SHALLOW = {side: VALIDATE.reason(f"{side}_too_shallow") for side in SIDES}
SYNTAX_ERROR = {side: VALIDATE.reason(f"{side}_syntax_error") for side in SIDES}
UNCHANGED_AFTER_WHITESPACE = VALIDATE.reason("unchanged_after_whitespace")
COMMENT_ONLY_CHANGE = VALIDATE.reason("comment_only_change")


class ValidationSettings(Settings):
    """The limits of the checks above (the manifest's ``filters.validation``)."""

    max_bytes: int = Field(default=256 * 1024, ge=1)  # per side
    min_depth: int = Field(default=3, ge=1)
    max_error_fraction: float = Field(default=0.10, ge=0.0, le=1.0)  # mined code
    parse_timeout_s: float = Field(default=5.0, gt=0)


@dataclass(frozen=True)
class PairVerdict:
    """The outcome for one pair: ``reason`` is ``None`` when it is kept; ``aspect`` is the pair's
    criterion afterwards (relabelled for a comment-only change)."""

    reason: DropReason | None
    chosen: SyntaxReport | None = None
    rejected: SyntaxReport | None = None
    aspect: str | None = None


def normalise_whitespace(code: str) -> str:
    return " ".join(code.split())


def readability_only(aspect: str | None, aspects: Sequence[str] | None, comment_only: CommentOnly,
                     whitespace_only: bool) -> str | None:
    """The criterion a comment-only (or whitespace-only) pair keeps, or ``None`` to drop it."""
    if comment_only == "drop":
        return None
    if comment_only == "keep":
        return aspect if (not whitespace_only or aspect == READABILITY) else None
    matched = {*(aspects or ()), *([aspect] if aspect else [])}
    return READABILITY if READABILITY in matched else None


class PairValidator:
    def __init__(self, settings: ValidationSettings = ValidationSettings(),
                 comment_only: CommentOnly = "readability") -> None:
        if comment_only not in ("readability", "drop", "keep"):
            raise ValueError(f"unknown comment_only rule {comment_only!r}; expected readability, drop or keep")
        self.settings = settings
        self.comment_only = comment_only
        self._limits = ParseLimits(max_bytes=settings.max_bytes, timeout_s=settings.parse_timeout_s)

    def check(self, language: Language, chosen: str, rejected: str, strict: bool = False,
              aspect: str | None = None, aspects: Sequence[str] | None = None,
              signals: Mapping[str, Mapping[str, int]] | None = None) -> PairVerdict:
        """Validate a pair labelled ``aspect`` (its message matched ``aspects``); see the module doc.

        ``signals`` (a change-scoped pair, :mod:`codeprefs.pipelines.scopes`): each side's nodes, errors and
        depth measured on its whole file under the scope's byte range; they replace the signals
        of the side parsed alone, which would blame a method for the class missing around it.
        """
        sides = {"chosen": chosen.encode("utf-8"), "rejected": rejected.encode("utf-8")}
        for side, source in sides.items():
            if len(source) > self.settings.max_bytes:
                return PairVerdict(TOO_LARGE[side], aspect=aspect)
        whitespace_only = normalise_whitespace(chosen) == normalise_whitespace(rejected)
        if whitespace_only:
            aspect = readability_only(aspect, aspects, self.comment_only, whitespace_only=True)
            if aspect is None:
                return PairVerdict(UNCHANGED_AFTER_WHITESPACE)
        reports: dict[str, SyntaxReport] = {}
        trees: dict[str, Tree] = {}
        for side, source in sides.items():
            try:
                trees[side] = parse(source, language, self._limits)
            except ParseLimitExceeded as error:
                return PairVerdict(PARSE_LIMIT[side, error.reason], aspect=aspect, **reports)
            reports[side] = (inspect_tree(trees[side], source, self.settings.min_depth) if signals is None
                             else self._scoped_report(signals[side]))
        for side, report in reports.items():
            if not report.min_depth_reached:
                return PairVerdict(TOO_SHALLOW[side], aspect=aspect, **reports)
        for side, report in reports.items():
            broken = report.has_error if strict else report.error_fraction > self.settings.max_error_fraction
            if broken:
                return PairVerdict(SYNTAX_ERROR[side], aspect=aspect, **reports)
        if not whitespace_only and same_code((trees["chosen"], trees["rejected"]),
                                             (sides["chosen"], sides["rejected"]), language):
            aspect = readability_only(aspect, aspects, self.comment_only, whitespace_only=False)
            if aspect is None:
                return PairVerdict(COMMENT_ONLY_CHANGE, **reports)
        return PairVerdict(None, aspect=aspect, **reports)

    def _scoped_report(self, signal: Mapping[str, int]) -> SyntaxReport:
        return SyntaxReport(nbytes=signal["nbytes"], nodes=signal["nodes"], error_nodes=signal["error_nodes"],
                            error_bytes=signal["error_bytes"],
                            min_depth_reached=signal["depth"] >= self.settings.min_depth)
