"""The word cache of :class:`codeprefs.filters.wording.PhraseIndex`: the same matches, bounded."""

from __future__ import annotations

from codeprefs.filters.wording import PhraseIndex, prose_clauses, term_words

PHRASES = {term: term_words(term) for term in ("fix", "memory leak", "sanitiz*", "race condition")}
MESSAGE = ("Fixed a memory leak; sanitized the input.\n\nFixes leaks in memory, and a race "
           "condition that fixing the memory leak exposed")
EXPECTED = [("fix", 0, 0, 1), ("memory leak", 0, 2, 4), ("sanitiz*", 1, 0, 1), ("fix", 2, 0, 1),
            ("race condition", 3, 2, 4), ("fix", 3, 5, 6), ("memory leak", 3, 7, 9)]


def test_cached_words_give_the_matches_of_a_fresh_index():
    index = PhraseIndex(PHRASES)
    clauses = prose_clauses(MESSAGE)
    assert sorted(index.find(clauses), key=lambda m: m[1:]) == EXPECTED
    assert sorted(index.find(clauses), key=lambda m: m[1:]) == EXPECTED  # every word cached now
    assert {"fixed", "memory", "sanitized", "leaks"} <= set(index._starting)


def test_the_word_cache_starts_over_at_its_bound():
    index = PhraseIndex(PHRASES)
    index._MAX_WORDS_KEPT = 3
    clauses = prose_clauses(MESSAGE)
    for _ in range(2):
        assert sorted(index.find(clauses), key=lambda m: m[1:]) == EXPECTED
        assert 0 < len(index._starting) <= 3
