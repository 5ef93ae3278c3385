"""Label a commit message with the five criteria by matching the seed term lists.

Each term list (``filters/terms/*.list``, Apache-2.0, from the Themis reference code) names one
criterion. A message matches a criterion when it contains one of its terms as a lower-case
substring (``match="substring"``, the paper's rule) or only where the term starts a word
(``match="word_start"``: ``rce`` no longer matches inside ``source``, while stems such as
``class misus`` still match ``class misuse``). A message can match several criteria.

**Primary criterion** (the ``aspect`` column): the criterion with the most distinct matched
terms; a tie goes to the rarer, more specific criterion in this order: Security_Hardness,
Memory_Efficiency, Runtime_Efficiency, Functional_Correctness, Readability_Maintainability.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Literal

import ahocorasick

from codeprefs.schema import Aspect

TERM_FILES: dict[Aspect, str] = {
    Aspect.FUNCTIONAL_CORRECTNESS: "functionality.list",
    Aspect.RUNTIME_EFFICIENCY: "runtime_eff.list",
    Aspect.MEMORY_EFFICIENCY: "memory_eff.list",
    Aspect.READABILITY_MAINTAINABILITY: "readability.list",
    Aspect.SECURITY_HARDNESS: "sec.list",
}

# Tie-break order for the primary criterion: most specific first.
PRIMARY_PRIORITY: tuple[Aspect, ...] = (
    Aspect.SECURITY_HARDNESS,
    Aspect.MEMORY_EFFICIENCY,
    Aspect.RUNTIME_EFFICIENCY,
    Aspect.FUNCTIONAL_CORRECTNESS,
    Aspect.READABILITY_MAINTAINABILITY,
)

MatchMode = Literal["substring", "word_start"]


@dataclass(frozen=True)
class CriteriaMatch:
    """The criteria a message matched: the primary one, all of them, and the terms found."""

    aspect: Aspect
    aspects: tuple[Aspect, ...]  # in PRIMARY_PRIORITY order
    terms: dict[Aspect, tuple[str, ...]]


def load_terms(terms_dir: str | Path | None = None) -> dict[Aspect, tuple[str, ...]]:
    """Read the five term lists (one term a line) from ``terms_dir`` or the shipped copy."""
    root = Path(terms_dir) if terms_dir else resources.files("filters") / "terms"
    terms: dict[Aspect, tuple[str, ...]] = {}
    for aspect, filename in TERM_FILES.items():
        path = root / filename
        if not path.is_file():
            raise FileNotFoundError(f"criterion term list missing: {path}")
        lines = path.read_text(encoding="utf-8").splitlines()
        terms[aspect] = tuple(sorted({line.strip().lower() for line in lines if line.strip()}))
    return terms


def _is_word_char(char: str) -> bool:
    return char.isalnum() or char == "_"


class CriteriaLabeler:
    """Match messages against every criterion's terms in one Aho-Corasick pass."""

    def __init__(
        self,
        terms: dict[Aspect, tuple[str, ...]] | None = None,
        match: MatchMode = "substring",
    ) -> None:
        self.terms = terms if terms is not None else load_terms()
        self.match = match
        self._automaton = ahocorasick.Automaton()
        owners: dict[str, set[Aspect]] = {}
        for aspect, aspect_terms in self.terms.items():
            for term in aspect_terms:
                owners.setdefault(term, set()).add(aspect)
        for term, aspects in owners.items():
            self._automaton.add_word(term, (term, frozenset(aspects)))
        self._automaton.make_automaton()

    def __reduce__(self):  # rebuild instead of pickling the automaton
        return (type(self), (self.terms, self.match))

    def label(self, message: str) -> CriteriaMatch | None:
        """The criteria ``message`` matches, or ``None`` when it matches none."""
        text = message.lower()
        found: dict[Aspect, set[str]] = {}
        for end, (term, aspects) in self._automaton.iter(text):
            if self.match == "word_start":
                start = end - len(term) + 1
                if start > 0 and _is_word_char(text[start - 1]) and _is_word_char(term[0]):
                    continue
            for aspect in aspects:
                found.setdefault(aspect, set()).add(term)
        if not found:
            return None
        ordered = tuple(aspect for aspect in PRIMARY_PRIORITY if aspect in found)
        primary = max(ordered, key=lambda aspect: len(found[aspect]))  # first max wins ties
        return CriteriaMatch(
            aspect=primary,
            aspects=ordered,
            terms={aspect: tuple(sorted(found[aspect])) for aspect in ordered},
        )
