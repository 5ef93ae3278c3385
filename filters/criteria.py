"""Label a commit message with the five criteria by matching the seed term lists.

Each term list (``filters/terms/*.list``, Apache-2.0, from the Themis reference code) names one
criterion. A message can match several criteria. Three rules (``match``):

* ``word`` (the default): terms match as whole words or phrases of the author's prose, with
  English inflections, never inside identifiers, paths, code spans, URLs or quoted program
  output (the rule is spelled out in :mod:`codeprefs.filters.wording`). The lists' truncated stems
  (``class misus``) are named in ``filters/terms/stems.list`` and match every word they start.
  A term does not count where it lies inside one of its criterion's exclusion phrases
  (``filters/terms/exclusions/<list>``, e.g. ``fix documentation`` for ``fix do``), each file
  headed by where its phrases came from. A criterion's context rules
  (``filters/terms/context/<list>``) name its *weak* terms, topics more often mentioned than
  claimed (``hash``, ``index``, ``caching`` for Runtime_Efficiency): a weak term counts only when
  the message also holds a non-weak term of the criterion or one of its *cue* words (``faster``,
  ``performance``). A ``terms_dir`` of one's own may hold its own ``stems.list``,
  ``exclusions/`` and ``context/``; without them no term is a stem, nothing is excluded and no
  term is weak.
* ``substring``: the paper's rule, a lower-case substring anywhere (``rce`` inside ``source``).
* ``word_start``: a substring that starts a word (``rce`` no longer inside ``source``, but
  ``hash`` still inside ``hashcode``).

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

from codeprefs.core.settings import Settings
from codeprefs.core.schema import Aspect
from codeprefs.filters.wording import PhraseIndex, prose_clauses, term_words

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

MatchMode = Literal["word", "substring", "word_start"]
STEMS_FILE = "stems.list"
EXCLUSIONS_DIR = "exclusions"
CONTEXT_DIR = "context"


class CriteriaSettings(Settings):
    """How commit messages are labelled (this module) and what a change confined to comments,
    docstrings and whitespace may be labelled (:mod:`codeprefs.filters.validation`): the manifest's
    ``filters.criteria``."""

    # word: whole words with inflections, prose only (the default); substring: the paper's rule
    match: MatchMode = "word"
    # a folder with the five *.list files (and optionally stems.list, exclusions/); default: shipped
    terms_dir: str | None = None
    # a comment-only change: relabelled Readability_Maintainability when that criterion matched,
    # else dropped (readability); always dropped (drop); left as labelled (keep)
    comment_only: Literal["readability", "drop", "keep"] = "readability"
    # a mined change to a test file (filters.testfiles): dropped as test_file (drop), or labelled
    # like any other file (keep)
    test_files: Literal["drop", "keep"] = "drop"
    # a model file of `codeprefs criteria train` (filters.classifier), relative to the manifest's
    # folder: its classifiers label the messages instead of the term rule (the term rule still
    # labels the criteria the model has no classifier for); null: the term rule alone
    classifier: str | None = None
    # how the classifier's labels combine with the term rule's, for the criteria it has a
    # classifier for: replace (the classifier's alone), union (either), agree (both)
    classifier_mode: Literal["replace", "union", "agree"] = "replace"


@dataclass(frozen=True)
class ContextRule:
    """A criterion's weak terms, and the cue phrases that let them count (see the module doc)."""

    weak: tuple[str, ...] = ()
    cues: tuple[str, ...] = ()


@dataclass(frozen=True)
class CriteriaMatch:
    """The criteria a message matched: the primary one, all of them, and the terms found."""

    aspect: Aspect
    aspects: tuple[Aspect, ...]  # in PRIMARY_PRIORITY order
    terms: dict[Aspect, tuple[str, ...]]


def load_terms(terms_dir: str | Path | None = None) -> dict[Aspect, tuple[str, ...]]:
    """Read the five term lists (one term a line) from ``terms_dir`` or the shipped copy."""
    root = _terms_root(terms_dir)
    terms: dict[Aspect, tuple[str, ...]] = {}
    for aspect, filename in TERM_FILES.items():
        path = root / filename
        if not path.is_file():
            raise FileNotFoundError(f"criterion term list missing: {path}")
        lines = path.read_text(encoding="utf-8").splitlines()
        terms[aspect] = tuple(sorted({line.strip().lower() for line in lines if line.strip()}))
    return terms


def _data_lines(path: Path) -> list[str]:
    """The non-blank, non-comment (``#``) lines of a data file, lower-cased and trimmed."""
    lines = path.read_text(encoding="utf-8").splitlines()
    return [line.strip().lower() for line in lines if line.strip() and not line.lstrip().startswith("#")]


def _terms_root(terms_dir: str | Path | None):
    return Path(terms_dir) if terms_dir else resources.files(__package__) / "terms"


def load_stems(terms_dir: str | Path | None = None) -> tuple[str, ...]:
    """The stem-marked terms (``class misus*``) of ``terms_dir`` or the shipped copy; none if absent."""
    path = _terms_root(terms_dir) / STEMS_FILE
    return tuple(_data_lines(path)) if path.is_file() else ()


def load_exclusions(terms_dir: str | Path | None = None) -> dict[Aspect, tuple[str, ...]]:
    """Each criterion's exclusion phrases (``exclusions/<term list name>``); empty if absent."""
    root = _terms_root(terms_dir) / EXCLUSIONS_DIR
    exclusions: dict[Aspect, tuple[str, ...]] = {}
    for aspect, filename in TERM_FILES.items():
        path = root / filename
        exclusions[aspect] = tuple(_data_lines(path)) if path.is_file() else ()
    return exclusions


def load_context(terms_dir: str | Path | None = None) -> dict[Aspect, ContextRule]:
    """Each criterion's context rule (``context/<term list name>``: ``weak <term>`` and
    ``cue <phrase>`` lines); an empty rule where the file is absent."""
    root = _terms_root(terms_dir) / CONTEXT_DIR
    rules: dict[Aspect, ContextRule] = {}
    for aspect, filename in TERM_FILES.items():
        path = root / filename
        weak: list[str] = []
        cues: list[str] = []
        for number, line in enumerate(_data_lines(path) if path.is_file() else [], 1):
            kind, _, phrase = line.partition(" ")
            if kind not in ("weak", "cue") or not phrase.strip():
                raise ValueError(f"{path}: line {number} ({line!r}) is not 'weak <term>' or 'cue <phrase>'")
            (weak if kind == "weak" else cues).append(phrase.strip())
        rules[aspect] = ContextRule(tuple(weak), tuple(cues))
    return rules


def _is_word_char(char: str) -> bool:
    return char.isalnum() or char == "_"


class CriteriaLabeler:
    """Match messages against every criterion's terms in one Aho-Corasick pass."""

    def __init__(
        self,
        terms: dict[Aspect, tuple[str, ...]] | None = None,
        match: MatchMode = "word",
        stems: tuple[str, ...] | None = None,
        exclusions: dict[Aspect, tuple[str, ...]] | None = None,
        context: dict[Aspect, ContextRule] | None = None,
    ) -> None:
        """``stems``, ``exclusions`` and ``context`` default to the shipped ones with the shipped
        terms (``terms=None``) and to none with terms of one's own."""
        if match not in ("word", "substring", "word_start"):
            raise ValueError(f"unknown criteria match rule {match!r}; expected word, substring or word_start")
        shipped = terms is None
        self.terms = terms if terms is not None else load_terms()
        self.match = match
        self.stems = stems if stems is not None else (load_stems() if shipped else ())
        self.exclusions = exclusions if exclusions is not None else (
            load_exclusions() if shipped else {aspect: () for aspect in Aspect})
        self.context = context if context is not None else (
            load_context() if shipped else {aspect: ContextRule() for aspect in Aspect})
        self._words = self._word_index() if match == "word" else None
        self._automaton = ahocorasick.Automaton()
        owners: dict[str, set[Aspect]] = {}
        for aspect, aspect_terms in self.terms.items():
            for term in aspect_terms:
                owners.setdefault(term, set()).add(aspect)
        for term, aspects in owners.items():
            self._automaton.add_word(term, (term, frozenset(aspects)))
        self._automaton.make_automaton()

    def __reduce__(self):  # rebuild instead of pickling the automaton
        return (type(self), (self.terms, self.match, self.stems, self.exclusions, self.context))

    def _word_index(self) -> tuple[PhraseIndex, dict[str, frozenset[Aspect]], PhraseIndex, PhraseIndex]:
        marked = {stem.replace("*", ""): stem for stem in self.stems}
        every_term = {term for aspect_terms in self.terms.values() for term in aspect_terms}
        unknown = sorted(set(marked) - every_term)
        if unknown:
            raise ValueError(f"{STEMS_FILE}: not a term of any list: {unknown}")
        owners: dict[str, set[Aspect]] = {}
        for aspect, aspect_terms in self.terms.items():
            for term in aspect_terms:
                owners.setdefault(term, set()).add(aspect)
        terms = PhraseIndex({term: term_words(marked.get(term, term)) for term in owners})
        excluded = PhraseIndex({f"{aspect.value}\t{phrase}": term_words(phrase)
                                for aspect, phrases in self.exclusions.items() for phrase in phrases})
        for aspect, rule in self.context.items():
            stray = sorted(set(rule.weak) - set(self.terms.get(aspect, ())))
            if stray:
                raise ValueError(f"{CONTEXT_DIR}/{TERM_FILES[aspect]}: weak terms not in the list: {stray}")
        cues = PhraseIndex({f"{aspect.value}\t{phrase}": term_words(phrase)
                            for aspect, rule in self.context.items() for phrase in rule.cues})
        return terms, {term: frozenset(aspects) for term, aspects in owners.items()}, excluded, cues

    def _label_words(self, message: str) -> dict[Aspect, set[str]]:
        assert self._words is not None
        terms, owners, excluded, cues = self._words
        clauses = prose_clauses(message)
        blocked: dict[Aspect, list[tuple[int, int, int]]] = {}
        for name, clause, start, end in excluded.find(clauses):
            blocked.setdefault(Aspect(name.split("\t", 1)[0]), []).append((clause, start, end))
        found: dict[Aspect, set[str]] = {}
        for term, clause, start, end in terms.find(clauses):
            for aspect in owners[term]:
                if any(c == clause and s <= start and end <= e for c, s, e in blocked.get(aspect, ())):
                    continue
                found.setdefault(aspect, set()).add(term)
        cued = {Aspect(name.split("\t", 1)[0]) for name, *_ in cues.find(clauses)} if found else set()
        for aspect in list(found):
            if aspect not in cued and found[aspect] <= set(self.context[aspect].weak):
                del found[aspect]  # weak terms alone: a topic mentioned, no claim made
        return found

    def label(self, message: str) -> CriteriaMatch | None:
        """The criteria ``message`` matches, or ``None`` when it matches none."""
        if self.match == "word":
            return self._result(self._label_words(message))
        text = message.lower()
        found: dict[Aspect, set[str]] = {}
        for end, (term, aspects) in self._automaton.iter(text):
            if self.match == "word_start":
                start = end - len(term) + 1
                if start > 0 and _is_word_char(text[start - 1]) and _is_word_char(term[0]):
                    continue
            for aspect in aspects:
                found.setdefault(aspect, set()).add(term)
        return self._result(found)

    @staticmethod
    def _result(found: dict[Aspect, set[str]]) -> CriteriaMatch | None:
        if not found:
            return None
        ordered = tuple(aspect for aspect in PRIMARY_PRIORITY if aspect in found)
        primary = max(ordered, key=lambda aspect: len(found[aspect]))  # first max wins ties
        return CriteriaMatch(
            aspect=primary,
            aspects=ordered,
            terms={aspect: tuple(sorted(found[aspect])) for aspect in ordered},
        )
