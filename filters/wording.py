"""Words of a commit message, for matching criterion terms as words (``match: word``).

Only the author's prose counts. :func:`prose_clauses` first masks what is not prose, then
splits the rest into clauses of lower-case words:

* **code**: fenced blocks (```` ``` ````) and inline spans (`` `...` ``);
* **URLs** (``scheme://...``, ``www....``) and **paths**: a token with a ``/`` or ``\\`` that starts
  at a root (``/``, ``./``, ``../``, ``~/``), has two or more separators, or ends in a file name
  with an extension (``a/b/c.py``); ``i/o`` and ``open/closed`` stay words;
* **identifiers**: a token with ``_``, a lower-to-upper case change (``hashCode``,
  ``IndexError``, ``LruCacheTest``), ``.``, ``::`` or ``#`` between word characters (``index.js``,
  ``os.path``, Ruby's ``Request#secure``), or a trailing ``()``; all-capital acronyms (``XSS``,
  ``CVE``) stay words;
* **quoted program output**: text in double quotes on one line (commit messages quote error
  messages, log lines and other commits' titles that way), lines quoted with ``>``, lines indented
  by a tab or four spaces (git's and Markdown's verbatim convention), and lines shaped like a
  stack trace or an error report (``Traceback ...``, ``File "x", line 3``, ``at a.b(C.java:1)``,
  ``SomeError: ...``).

Each masked span ends a clause, as does ``, ; : ! ?``, a sentence's full stop and a blank line,
so a phrase never straddles masked text or punctuation.

**Inflections** (:func:`word_forms`): a message word matches a term word when it is that word or
the word with one English inflectional ending: ``-s``, ``-es``, ``-ed``, ``-ing``, ``-er``,
``-ers``, with a final ``e`` dropped (``rename`` -> renaming), a final consonant doubled
(``stop`` -> stopped) or ``y`` -> ``i`` (``simplify`` -> simplified, simplifies). Derivational
endings (``-ment``, ``-ation``, ``-code``) are new words and do not match: ``align`` does not
match ``alignment``, nor ``hash`` ``hashcode``. A term word marked as a stem (``misus*``)
matches every word it starts.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterator

_FENCED = re.compile(r"```.*?(?:```|\Z)", re.DOTALL)
_INLINE_CODE = re.compile(r"`[^`\n]*`")
_DOUBLE_QUOTED = re.compile(r"\"[^\"\n]*\"|\u201c[^\u201d\n]*\u201d")
_URL = re.compile(r"\b(?:[a-zA-Z][a-zA-Z0-9+.-]*://|www\.)\S+")
_QUOTED_LINE = re.compile(
    r"^(?:[ ]{4,}|\t|\s*>).*$"  # verbatim-indented or >-quoted
    r"|^\s*(?:Traceback \(most recent call last\)|File \".*\", line \d+|at [\w$.<>/]+\(.*\)).*$"
    r"|^\s*[\w.]*(?:Error|Exception|Warning|panic|FATAL|fatal)\b:.*$",
    re.MULTILINE,
)
_TOKEN = re.compile(r"\S+")
_EDGE_PUNCTUATION = "\"'()[]{}<>,;:!?.*"
_ROOTED = re.compile(r"^(?:/|\./|\.\./|~/)")
_FILE_TAIL = re.compile(r"[/\\][^/\\]*\.[A-Za-z][A-Za-z0-9]{0,5}$")
_CAMEL = re.compile(r"[a-z0-9][A-Z]|[A-Z]{2,}[a-z]")
_DOTTED = re.compile(r"\w(?:\.|::|->|#)\w")
_CLAUSE_BREAK = re.compile(r"[,;:!?]|\.(?=\s|$)|\n\s*\n")
_WORD = re.compile(r"[a-z0-9]+")
_TERM_WORD = re.compile(r"[a-z0-9]+\*?")

MASK = "\u241e"  # stands in for masked text: neither a word character nor whitespace


def is_identifier(token: str) -> bool:
    """Whether ``token`` (surrounding punctuation removed) is a program name rather than a word."""
    return ("_" in token or _CAMEL.search(token) is not None or _DOTTED.search(token) is not None
            or token.endswith("()"))


def is_path(token: str) -> bool:
    """Whether ``token`` names a file or folder (see the module doc)."""
    separators = token.count("/") + token.count("\\")
    if separators == 0:
        return False
    return (_ROOTED.match(token) is not None or separators >= 2
            or _FILE_TAIL.search(token) is not None)


def mask_non_prose(message: str) -> str:
    """``message`` with code, URLs, paths, identifiers and quoted output replaced by :data:`MASK`."""
    text = message.replace("\r\n", "\n")
    for pattern in (_FENCED, _INLINE_CODE, _URL, _QUOTED_LINE, _DOUBLE_QUOTED):
        text = pattern.sub(f" {MASK} ", text)

    def token(match: re.Match[str]) -> str:
        raw = match.group(0)
        core = raw.strip(_EDGE_PUNCTUATION)
        if core.endswith("()") or raw.rstrip(".,;:!?").endswith("()"):
            return MASK
        if core and (is_identifier(core) or is_path(core)):
            return MASK
        return raw

    return _TOKEN.sub(token, text)


def prose_clauses(message: str) -> list[list[str]]:
    """The lower-case words of ``message``'s prose, clause by clause (see the module doc)."""
    text = mask_non_prose(message)
    clauses: list[list[str]] = []
    for part in _CLAUSE_BREAK.split(text):
        for piece in part.split(MASK):
            words = _WORD.findall(piece.lower())
            if words:
                clauses.append(words)
    return clauses


def term_words(term: str) -> tuple[str, ...]:
    """A term's words, split as message words are (``self-assign`` -> self, assign)."""
    return tuple(_TERM_WORD.findall(term.lower()))


def _undouble(base: str) -> Iterator[str]:
    yield base
    if len(base) >= 3 and base[-1] == base[-2] and base[-1] not in "aeiouls":
        yield base[:-1]  # stopped -> stop (but not "fill" -> "fil")


@functools.lru_cache(maxsize=1 << 16)
def word_forms(word: str) -> frozenset[str]:
    """``word`` and the base words it may inflect (see the module doc). Cached: a history's
    messages repeat their words, and every message is matched against three phrase lists."""
    forms = {word}
    if len(word) > 4 and word.endswith(("ies", "ied")):
        forms.add(word[:-3] + "y")
    for ending in ("ers", "es", "s", "ed", "ing", "er"):
        if word.endswith(ending) and len(word) - len(ending) >= 2:
            base = word[: -len(ending)]
            if ending == "s" and base.endswith(("s", "u")):  # "class", "bus" are not plurals of cla/bu
                continue
            forms.update(_undouble(base))
            if ending != "es" and ending != "s":
                forms.add(base + "e")  # renamed, renaming, renamer -> rename
    return frozenset(forms)


class PhraseIndex:
    """Find terms, given as word tuples (a trailing ``*`` marks a stem), in message clauses."""

    def __init__(self, phrases: dict[str, tuple[str, ...]]) -> None:
        self.phrases = phrases
        self._by_first: dict[str, list[tuple[str, tuple[str, ...]]]] = {}
        self._stem_first: list[tuple[str, tuple[str, ...]]] = []
        for name, words in phrases.items():
            if not words:
                continue
            if words[0].endswith("*"):
                self._stem_first.append((name, words))
            else:
                self._by_first.setdefault(words[0], []).append((name, words))
        # every stem's prefix, for one C-level test before the stems are scanned word by word
        self._stem_prefixes = tuple(words[0][:-1] for _, words in self._stem_first)
        # a message word -> the phrases that may start at it (messages repeat their words)
        self._starting: dict[str, tuple[tuple[str, tuple[str, ...]], ...]] = {}

    _MAX_WORDS_KEPT = 1 << 16  # the word cache starts over past this many words

    def _candidates(self, word: str) -> tuple[tuple[str, tuple[str, ...]], ...]:
        """The phrases whose first word ``word`` matches (by its forms, or a stem it starts with)."""
        found = self._starting.get(word)
        if found is None:
            candidates = [c for form in word_forms(word) for c in self._by_first.get(form, ())]
            if self._stem_prefixes and word.startswith(self._stem_prefixes):
                candidates += [c for c in self._stem_first if word.startswith(c[1][0][:-1])]
            if len(self._starting) >= self._MAX_WORDS_KEPT:
                self._starting.clear()
            found = self._starting[word] = tuple(candidates)
        return found

    @staticmethod
    def _word_matches(pattern: str, word: str, forms: frozenset[str]) -> bool:
        if pattern.endswith("*"):
            return word.startswith(pattern[:-1])
        return pattern in forms

    def find(self, clauses: list[list[str]]) -> list[tuple[str, int, int, int]]:
        """Every match as (phrase name, clause index, first word, word after the last)."""
        found = []
        for number, words in enumerate(clauses):
            for start, word in enumerate(words):
                for name, pattern in self._candidates(word):
                    end = start + len(pattern)
                    if end <= len(words) and all(
                        self._word_matches(pattern[k], words[start + k], word_forms(words[start + k]))
                        for k in range(1, len(pattern))
                    ):
                        found.append((name, number, start, end))
        return found
