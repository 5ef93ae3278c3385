"""Commit-message filters, criteria labelling from the shipped term lists, pair validation."""

from __future__ import annotations

from pathlib import Path

import pytest

from codeprefs import filters
from codeprefs.core.schema import Aspect, Language
from codeprefs.filters.criteria import (
    TERM_FILES,
    ContextRule,
    CriteriaLabeler,
    CriteriaSettings,
    load_context,
    load_terms,
)
from codeprefs.filters.messages import MessageFilter
from codeprefs.filters.testfiles import is_test_path
from codeprefs.filters.validation import PairValidator, ValidationSettings


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
        (PY_AFTER, PY_AFTER.replace("    ", "\t"), ValidationSettings(), "unchanged_after_whitespace"),
        (PY_AFTER * 10, PY_BEFORE, ValidationSettings(max_bytes=200), "chosen_too_large"),
        (PY_AFTER, PY_BEFORE * 10, ValidationSettings(max_bytes=200), "rejected_too_large"),
        ("x\n", "y\n", ValidationSettings(min_depth=4), "chosen_too_shallow"),
        ("def f(:\n  x = (1 +\n", PY_BEFORE, ValidationSettings(), "chosen_syntax_error"),
        (PY_AFTER, "def f(:\n  x = (1 +\n", ValidationSettings(), "rejected_syntax_error"),
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
    strict_bound = PairValidator(ValidationSettings(max_error_fraction=0.0))
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


@pytest.mark.parametrize("message", [
    "redis-trib: Remove duplicated key in hash initialization.",
    "Add WITHOUT ROWID to SQLite benchmark index",
    "Issue #2334 - HTTPAuthDigest - Making it thread-safe for concurrent requests",
    "Fixed view caching, should not be enabled in development",
    "Use constant-time comparison for the session token",
])
def test_a_weak_runtime_term_alone_labels_no_runtime_efficiency(labeler, message):
    found = labeler.label(message)
    assert found is None or Aspect.RUNTIME_EFFICIENCY not in found.aspects


@pytest.mark.parametrize("message", [
    "Cache the compiled pattern: parsing was slow on large inputs",  # caching + a cue
    "Optimize CPU cache efficiency on dict while it's being rehashed, index lookups",
    "Use a hash set for membership tests; quadratic before",
    "Speed up lookups with an index",  # a strong term next to a weak one
])
def test_a_weak_runtime_term_counts_next_to_an_efficiency_claim(labeler, message):
    assert Aspect.RUNTIME_EFFICIENCY in labeler.label(message).aspects


def test_secure_is_weak_and_ruby_method_references_are_identifiers(labeler):
    assert labeler.label("Use Request#ssl? for Request#secure? if available") is None
    assert labeler.label("Make the cookie helper secure by default") is None
    found = labeler.label("Make cookies secure against session hijacking attacks")
    assert found is not None and found.aspect == Aspect.SECURITY_HARDNESS
    assert labeler.label("fixed random access file exhaust random mmap file use wrong limit count") is None


def test_context_rules_are_data_with_provenance_and_name_real_terms(tmp_path):
    rules = load_context()
    assert "hash" in rules[Aspect.RUNTIME_EFFICIENCY].weak and "faster" in rules[Aspect.RUNTIME_EFFICIENCY].cues
    assert rules[Aspect.MEMORY_EFFICIENCY] == ContextRule()
    for name in ("runtime_eff.list", "sec.list"):
        assert "Source:" in (Path(filters.__file__).parent / "terms" / "context" / name).read_text()
    (tmp_path / "context").mkdir()
    for filename in TERM_FILES.values():
        (tmp_path / filename).write_text("speed up\n")
    (tmp_path / "context" / "runtime_eff.list").write_text("weak hash\n")
    with pytest.raises(ValueError, match=r"weak terms not in the list: \['hash'\]"):
        CriteriaLabeler(load_terms(tmp_path), context=load_context(tmp_path))
    (tmp_path / "context" / "runtime_eff.list").write_text("strong hash\n")
    with pytest.raises(ValueError, match="is not 'weak <term>' or 'cue <phrase>'"):
        load_context(tmp_path)


@pytest.mark.parametrize(("path", "test"), [
    ("tests/test_requests.py", True), ("util/env_posix_test.cc", True), ("cmd/root_test.go", True),
    ("src/test/java/com/google/gson/GsonTest.java", True), ("Src/Newtonsoft.Json.Tests/Linq/JValueTests.cs", True),
    ("lib/router.spec.ts", True), ("spec/sinatra_spec.rb", True), ("__tests__/app.js", True),
    ("util/coding_unittest.cc", True), ("src/TestUtils.java", True),
    ("requests/auth.py", False), ("src/attestation.c", False), ("lib/latest.js", False),
    ("contest/main.go", False), ("src/Testing.java", False), ("lib/protest.rb", False),
    ("benchmarks/db_bench_sqlite3.cc", False),
])
def test_test_files_are_found_by_each_languages_conventions(path, test):
    assert is_test_path(path) is test


def test_labelled_changes_to_test_files_are_dropped_and_counted_unless_kept():
    from codeprefs.core.rows import empty_row
    from codeprefs.pipelines.steps import LabelCriteria

    def rows():
        made = []
        for path, message in [("src/parser.py", "Fix bug: crash when the list is empty"),
                              ("tests/test_parser.py", "Fix bug: crash when the list is empty"),
                              ("tests/test_parser.py", "Bump the version number please")]:
            row = empty_row()
            row.update(path=path, message=message)
            made.append(row)
        return made

    fates = [(row["aspect"], row["drop_reason"]) for row in LabelCriteria().run(rows())]
    assert [reason for _, reason in fates] == [None, "test_file", "no_criterion"]
    assert fates[0][0] == "Functional_Correctness"
    kept = LabelCriteria(CriteriaSettings(test_files="keep")).run(rows())
    assert [row["drop_reason"] for row in kept] == [None, None, "no_criterion"]
