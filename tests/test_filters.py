"""Commit-message filters, criteria labelling from the shipped term lists, pair validation."""

from __future__ import annotations

import pytest

from codeprefs.schema import Aspect, Language
from filters.criteria import CriteriaLabeler, load_terms
from filters.messages import MessageFilter
from filters.validation import PairValidator, ValidationConfig


@pytest.mark.parametrize(
    ("message", "reason"),
    [
        ("fix typo", "message_too_short"),  # 8 characters
        ("0123456789", "message_too_short"),  # exactly 10: the bound is strict
        ("x" * 15000, "message_too_long"),  # exactly 15000: strict too
        ("Merge branch 'dev' into main", "message_merge"),
        ("merged the parser changes", "message_merge"),
        ("deploy: pi push to the board", "message_pi_push"),
        ("please push pi image now", "message_pi_push"),
        ("Initial commit", "message_low_signal"),  # 14 characters
        ("Update README.md", "message_low_signal"),
        ("work in progress...", "message_low_signal"),
        ("Add files via upload", "message_low_signal"),
    ],
)
def test_message_filter_reasons(message, reason):
    assert MessageFilter().reject_reason(message) == reason


@pytest.mark.parametrize(
    "message",
    ["01234567890", "Fix off-by-one error in the ring buffer", "x" * 14999,
     "  Avoid quadratic string concatenation in the logger  "],
)
def test_message_filter_keeps_real_messages(message):
    assert MessageFilter().reject_reason(message) is None


def test_shipped_term_lists_load_for_all_five_criteria():
    terms = load_terms()
    assert set(terms) == set(Aspect)
    assert all(len(t) >= 20 for t in terms.values())
    assert "buffer overflow" in terms[Aspect.SECURITY_HARDNESS]
    assert all(term == term.lower() for t in terms.values() for term in t)


def test_missing_term_list_is_a_clear_error(tmp_path):
    (tmp_path / "sec.list").write_text("xss\n")
    with pytest.raises(FileNotFoundError, match="functionality.list"):
        load_terms(tmp_path)


@pytest.fixture(scope="module")
def labeler():
    return CriteriaLabeler()  # the default rule: match="word"


@pytest.mark.parametrize(
    ("message", "aspect"),
    [
        ("Prevent SQL injection in the login query", Aspect.SECURITY_HARDNESS),
        ("Reduce memory usage of the cache", Aspect.MEMORY_EFFICIENCY),
        ("Speed up parsing by caching compiled regexes", Aspect.RUNTIME_EFFICIENCY),
        ("Improve readability of the scheduler", Aspect.READABILITY_MAINTAINABILITY),
    ],
)
def test_primary_criterion(labeler, message, aspect):
    found = labeler.label(message)
    assert found is not None
    assert found.aspect is aspect
    assert aspect in found.aspects


def test_multi_label_lists_every_criterion_and_ties_go_to_the_more_specific(labeler):
    found = labeler.label("Fix buffer overflow and speed up the hot loop")
    assert found is not None
    assert set(found.aspects) >= {Aspect.SECURITY_HARDNESS, Aspect.RUNTIME_EFFICIENCY}
    assert found.aspect is Aspect.SECURITY_HARDNESS  # one term each: security outranks speed


def test_primary_goes_to_the_criterion_with_most_distinct_terms():
    terms = {aspect: () for aspect in Aspect}
    terms[Aspect.SECURITY_HARDNESS] = ("xss",)
    terms[Aspect.READABILITY_MAINTAINABILITY] = ("rename", "simplify")
    found = CriteriaLabeler(terms).label("Rename and simplify the xss helper")
    assert found.aspect is Aspect.READABILITY_MAINTAINABILITY
    assert found.aspects == (Aspect.SECURITY_HARDNESS, Aspect.READABILITY_MAINTAINABILITY)


def test_no_criterion(labeler):
    assert labeler.label("Bump copyright year in the header") is None


def test_substring_and_word_start_matching():
    terms = {aspect: () for aspect in Aspect}
    terms[Aspect.SECURITY_HARDNESS] = ("rce",)
    terms[Aspect.FUNCTIONAL_CORRECTNESS] = ("class misus",)
    substring = CriteriaLabeler(terms, match="substring")
    word_start = CriteriaLabeler(terms, match="word_start")
    assert substring.label("Move source files") is not None  # the paper's rule: plain substring
    assert word_start.label("Move source files") is None
    assert word_start.label("Block RCE via template names").aspect is Aspect.SECURITY_HARDNESS
    assert word_start.label("Fix class misuse in parser").aspect is Aspect.FUNCTIONAL_CORRECTNESS


PY_BEFORE = "def mean(values):\n    total = 0\n    for v in values:\n        total += v\n    return total / len(values) - 1\n"
PY_AFTER = "def mean(values):\n    total = 0\n    for v in values:\n        total += v\n    return total / len(values)\n"


def test_valid_pair_is_kept_with_signals():
    verdict = PairValidator().check(Language.PYTHON, PY_AFTER, PY_BEFORE)
    assert verdict.reason is None
    assert verdict.chosen.nodes > 10 and verdict.rejected.nodes > verdict.chosen.nodes


@pytest.mark.parametrize(
    ("chosen", "rejected", "config", "reason"),
    [
        (PY_AFTER, PY_AFTER.replace("    ", "\t"), ValidationConfig(), "unchanged_after_whitespace"),
        (PY_AFTER * 10, PY_BEFORE, ValidationConfig(max_bytes=200), "chosen_too_large"),
        (PY_AFTER, PY_BEFORE * 10, ValidationConfig(max_bytes=200), "rejected_too_large"),
        ("x\n", "y\n", ValidationConfig(min_depth=4), "chosen_too_shallow"),
        ("def f(:\n  x = (1 +\n", PY_BEFORE, ValidationConfig(), "chosen_syntax_error"),
        (PY_AFTER, "def f(:\n  x = (1 +\n", ValidationConfig(), "rejected_syntax_error"),
    ],
)
def test_validation_reasons(chosen, rejected, config, reason):
    assert PairValidator(config).check(Language.PYTHON, chosen, rejected).reason == reason


def test_mined_code_tolerates_a_few_error_bytes_but_synthesized_code_none():
    noisy = PY_AFTER * 30 + "x = = 1\n"  # one byte under an ERROR node
    mined = PairValidator().check(Language.PYTHON, noisy, PY_BEFORE, strict=False)
    synthesized = PairValidator().check(Language.PYTHON, noisy, PY_BEFORE, strict=True)
    assert mined.reason is None
    assert 0 < mined.chosen.error_fraction < 0.01
    assert synthesized.reason == "chosen_syntax_error"
    strict_bound = PairValidator(ValidationConfig(max_error_fraction=0.0))
    assert strict_bound.check(Language.PYTHON, noisy, PY_BEFORE).reason == "chosen_syntax_error"


# -- precise criteria: the default word rule (issue #13, item 2) ---------------------------------


@pytest.mark.parametrize(
    "message",
    [
        "Move resource loading to the source tree and force a reload",  # rce in source/resource/force
        "Override hashcode in the model",  # hash in hashcode
        "Catch IndexError when the list is empty",  # index in IndexError
        "Add LruCacheTest for the eviction order",  # lru in LruCacheTest
        "Seed SecureRandom from the clock in tests",  # secure in SecureRandom
        "Fix documentation of the public methods",  # fix do in Fix documentation
        "Code alignment in the header",  # align in Code alignment
    ],
)
def test_default_word_rule_fires_on_none_of_the_issues_false_positives(labeler, message):
    found = labeler.label(message)
    assert found is None, (message, found)


@pytest.mark.parametrize(
    ("message", "aspect"),
    [
        ("Fix memory leak in parser", Aspect.MEMORY_EFFICIENCY),
        ("Prevent SQL injection", Aspect.SECURITY_HARDNESS),
        ("Speed up lookup with a hash map", Aspect.RUNTIME_EFFICIENCY),
        ("Rename variables for clarity", Aspect.READABILITY_MAINTAINABILITY),
        ("Fixed memory leaks in the tokenizer", Aspect.MEMORY_EFFICIENCY),  # inflections
        ("Fixes class misuse in the parser", Aspect.FUNCTIONAL_CORRECTNESS),  # a stem of the list
        ("Sanitized user input before rendering", Aspect.SECURITY_HARDNESS),  # stem: sanitiz
        ("Simplified the retry loop", Aspect.READABILITY_MAINTAINABILITY),  # y -> ied
        ("Block RCE via template names", Aspect.SECURITY_HARDNESS),
    ],
)
def test_default_word_rule_keeps_true_positives(labeler, message, aspect):
    found = labeler.label(message)
    assert found is not None and found.aspect is aspect, (message, found)


@pytest.mark.parametrize(
    "message",
    [
        "Handle `hash` collisions in `lru` lookups",  # code spans
        "Update link to https://example.com/secure/index.html",  # URL
        "Move helpers from src/secure/index.py",  # path
        "Tidy parse_index_secure and hashCode",  # snake_case and camelCase identifiers
        'Handle the "memory leak detected" warning text',  # quoted program output
        "Tidy the parser output\n\n    Traceback (most recent call last):\n    IndexError: index out of range",
        "Tidy the parser output\n\n> secure hash index",  # quoted with >
    ],
)
def test_default_word_rule_ignores_code_paths_urls_and_quoted_output(labeler, message):
    assert labeler.label(message) is None, message


def test_exclusions_suppress_a_term_in_its_excluded_context(labeler):
    assert labeler.label("Fix index error in the pager") is None  # runtime 'index' in an error name
    assert labeler.label("Align comments in the header") is None  # 'align' in its formatting sense
    found = labeler.label("Align the buffer with the page size")
    assert found is not None and found.aspect is Aspect.FUNCTIONAL_CORRECTNESS


def test_paper_rule_is_kept_exactly_by_match_substring():
    substring = CriteriaLabeler(match="substring")
    for message in ("Move source files", "Fix documentation typos", "Add LruCacheTest"):
        assert substring.label(message) is not None, message


def test_shipped_exclusions_and_stems_name_their_provenance():
    from importlib import resources

    root = resources.files("filters") / "terms"
    for path in [root / "stems.list", *sorted((root / "exclusions").iterdir())]:
        header = [line for line in path.read_text(encoding="utf-8").splitlines() if line.startswith("#")]
        assert any("source" in line.lower() or "from" in line.lower() for line in header), path


# -- comment-only and whitespace-only changes (issue #13, items 2 and 3) ------------------------

PY_DOCUMENTED = ('"""Statistics."""\n\n\ndef mean(values):\n    """The mean of values."""\n'
                 "    total = 0  # running sum\n    for v in values:\n        total += v\n"
                 "    return total / len(values)\n")
COMMENT_CHANGES = {
    Language.PYTHON: (PY_AFTER, PY_DOCUMENTED),
    Language.C: ("int f(int x) {\n  /* twice */\n  return x * 2;\n}\n",
                 "int f(int x) {\n  // double it\n  return x * 2;\n}\n"),
    Language.JAVA: ("class A {\n  /** Twice. */\n  int f(int x) { return x * 2; }\n}\n",
                    "class A {\n  int f(int x) { return x * 2; } // twice\n}\n"),
    Language.GO: ("package a\n\n// F doubles.\nfunc F(x int) int { return x * 2 }\n",
                  "package a\n\nfunc F(x int) int {\n\treturn x * 2 // twice\n}\n"),
    Language.RUBY: ("# doubles\ndef f(x)\n  x * 2\nend\n", "def f(x)\n  x * 2 # twice\nend\n"),
}


@pytest.mark.parametrize("language", list(COMMENT_CHANGES))
def test_comment_only_change_is_readability_or_dropped(language):
    chosen, rejected = COMMENT_CHANGES[language]
    validator = PairValidator()
    functional = validator.check(language, chosen, rejected, aspect="Functional_Correctness",
                                 aspects=["Functional_Correctness"])
    assert functional.reason == "comment_only_change"
    both = validator.check(language, chosen, rejected, aspect="Functional_Correctness",
                           aspects=["Functional_Correctness", "Readability_Maintainability"])
    assert both.reason is None and both.aspect == "Readability_Maintainability"
    dropping = PairValidator(comment_only="drop")
    assert dropping.check(language, chosen, rejected, aspect="Readability_Maintainability",
                          aspects=["Readability_Maintainability"]).reason == "comment_only_change"
    keeping = PairValidator(comment_only="keep")
    kept = keeping.check(language, chosen, rejected, aspect="Functional_Correctness",
                         aspects=["Functional_Correctness"])
    assert kept.reason is None and kept.aspect == "Functional_Correctness"


def test_a_code_change_next_to_a_comment_change_is_not_comment_only():
    chosen = PY_DOCUMENTED.replace("return total / len(values)", "return total / max(len(values), 1)")
    verdict = PairValidator().check(Language.PYTHON, chosen, PY_AFTER, aspect="Functional_Correctness",
                                    aspects=["Functional_Correctness"])
    assert verdict.reason is None and verdict.aspect == "Functional_Correctness"
    in_string = PY_AFTER.replace("def mean", 'LABEL = "a  b"\n\n\ndef mean')
    spaced = in_string.replace('"a  b"', '"a b"')  # whitespace inside a string is code
    verdict = PairValidator().check(Language.PYTHON, in_string, spaced, aspect="Functional_Correctness",
                                    aspects=["Functional_Correctness"])
    assert verdict.reason != "comment_only_change"


def test_whitespace_only_change_is_kept_only_as_readability():
    tabs = PY_AFTER.replace("    ", "\t")
    validator = PairValidator()
    assert validator.check(Language.PYTHON, PY_AFTER, tabs, aspect="Functional_Correctness",
                           aspects=["Functional_Correctness"]).reason == "unchanged_after_whitespace"
    kept = validator.check(Language.PYTHON, PY_AFTER, tabs, aspect="Readability_Maintainability",
                           aspects=["Readability_Maintainability"])
    assert kept.reason is None and kept.chosen is not None
    assert PairValidator(comment_only="keep").check(
        Language.PYTHON, PY_AFTER, tabs, aspect="Functional_Correctness",
        aspects=["Functional_Correctness", "Readability_Maintainability"]).reason == "unchanged_after_whitespace"


@pytest.mark.parametrize(
    "message",
    ['Revert "Fix memory leak in parser"\n\nThis reverts commit 0123456789abcdef0123456789abcdef01234567.',
     "Undo the cache change\n\nThis reverts commit abc1234 because it broke the build.",
     'revert "Speed up the lookup table"'],
)
def test_revert_commits_are_dropped_at_the_message_stage(message):
    assert MessageFilter().reject_reason(message) == "revert"


def test_a_message_mentioning_a_revert_in_prose_is_kept():
    assert MessageFilter().reject_reason("Fix the revert button in the editor") is None
