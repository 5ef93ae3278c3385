"""Tree-sitter validation of a preference pair.

Checks, cheapest first; the first failure names the drop reason:

1. each side is at most ``max_bytes`` (``chosen_too_large`` / ``rejected_too_large``);
2. chosen and rejected differ after whitespace normalisation (``unchanged_after_whitespace``);
3. each side parses within the time limit (``chosen_parse_timeout`` / ...);
4. each side is at least ``min_depth`` levels deep (``chosen_too_shallow`` / ...);
5. syntax errors. Tree-sitter grammars reject some valid code (macro-heavy C++ above all), so
   mined code, which compiled in its project, is kept while the share of its bytes under ERROR
   nodes is at most ``max_error_fraction`` on each side; synthesized code (``strict=True``)
   must have no ERROR or MISSING node at all (``chosen_syntax_error`` / ...).
"""

from __future__ import annotations

from dataclasses import dataclass

from codeprefs.schema import Language
from parsers.treesitter import ParseLimitExceeded, ParseLimits, SyntaxReport, inspect_source


@dataclass(frozen=True)
class ValidationConfig:
    max_bytes: int = 256 * 1024
    min_depth: int = 3
    max_error_fraction: float = 0.10
    parse_timeout_s: float = 5.0


@dataclass(frozen=True)
class PairVerdict:
    """The outcome for one pair: ``reason`` is ``None`` when it is kept."""

    reason: str | None
    chosen: SyntaxReport | None = None
    rejected: SyntaxReport | None = None


def normalise_whitespace(code: str) -> str:
    return " ".join(code.split())


class PairValidator:
    def __init__(self, config: ValidationConfig = ValidationConfig()) -> None:
        self.config = config
        self._limits = ParseLimits(max_bytes=config.max_bytes, timeout_s=config.parse_timeout_s)

    def check(self, language: Language, chosen: str, rejected: str, strict: bool = False) -> PairVerdict:
        sides = {"chosen": chosen.encode("utf-8"), "rejected": rejected.encode("utf-8")}
        for side, source in sides.items():
            if len(source) > self.config.max_bytes:
                return PairVerdict(f"{side}_too_large")
        if normalise_whitespace(chosen) == normalise_whitespace(rejected):
            return PairVerdict("unchanged_after_whitespace")
        reports: dict[str, SyntaxReport] = {}
        for side, source in sides.items():
            try:
                reports[side] = inspect_source(source, language, self._limits, self.config.min_depth)
            except ParseLimitExceeded as error:
                return PairVerdict(f"{side}_{error.reason}", **reports)
        for side, report in reports.items():
            if not report.min_depth_reached:
                return PairVerdict(f"{side}_too_shallow", **reports)
        for side, report in reports.items():
            broken = report.has_error if strict else report.error_fraction > self.config.max_error_fraction
            if broken:
                return PairVerdict(f"{side}_syntax_error", **reports)
        return PairVerdict(None, **reports)
