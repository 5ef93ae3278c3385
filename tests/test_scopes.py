"""Change-scoped pairs (issue #13, item 1): the smallest definitions around a change.

Unit level on source text in all eight languages (a change inside one function, across two, outside
any definition, in a C/C++ header, in a nested class), then one real build.
"""

from __future__ import annotations

from pathlib import Path

import pyarrow.parquet as pq
import pytest

from codeprefs.pipelines.manifest import parse_manifest
from codeprefs.core.schema import Language
from codeprefs.parsers.definitions import imports
from codeprefs.parsers.treesitter import parse
from codeprefs.core.rows import empty_row
from codeprefs.pipelines.scopes import ScopeSettings, scope_change
from codeprefs.pipelines.steps import ScopePairs, commit_intent, scoped_prompt

# Each template has four markers: @F@ in function f, @G@ in function g, @N@ in the nested
# definition, @T@ on a top-level line outside every definition.
TEMPLATES: dict[Language, tuple[str, str, str, str, str]] = {
    # language: (template, name of f, name of g, nested scope kind, nested name)
    Language.PYTHON: ('import os\n\nLIMIT = "@T@"\n\n\ndef f(x):\n    return x + @F@\n\n\n'
                      'def g(x):\n    return x * @G@\n\n\nclass Outer:\n    class Inner:\n'
                      '        def m(self):\n            return @N@\n', "f", "g", "function", "Outer.Inner.m"),
    Language.RUBY: ('require "set"\n\nLIMIT = "@T@"\n\ndef f(x)\n  x + @F@\nend\n\ndef g(x)\n  x * @G@\nend\n\n'
                    'class Outer\n  class Inner\n    def m\n      @N@\n    end\n  end\nend\n',
                    "f", "g", "function", "Outer.Inner.m"),
    Language.JAVASCRIPT: ('import x from "@T@";\n\nfunction f(x) {\n  return x + @F@;\n}\n\n'
                          'const g = (x) => {\n  return x * @G@;\n};\n\n'
                          'class Outer {\n  m() {\n    return @N@;\n  }\n}\n', "f", "g", "function", "Outer.m"),
    Language.JAVA: ('package demo;\n\nimport java.util.@T@;\n\nclass Util {\n    static int f(int x) {\n'
                    '        return x + @F@;\n    }\n\n    static int g(int x) {\n        return x * @G@;\n    }\n}\n\n'
                    'class Outer {\n    class Inner {\n        int m() {\n            return @N@;\n        }\n'
                    '    }\n}\n', "Util.f", "Util.g", "function", "Outer.Inner.m"),
    Language.CSHARP: ('using System.@T@;\n\nstatic class Util\n{\n    static int f(int x)\n    {\n'
                      '        return x + @F@;\n    }\n\n    static int g(int x)\n    {\n        return x * @G@;\n'
                      '    }\n}\n\nclass Outer\n{\n    class Inner\n    {\n        int m()\n        {\n'
                      '            return @N@;\n        }\n    }\n}\n', "Util.f", "Util.g", "function", "Outer.Inner.m"),
    Language.GO: ('package demo\n\nimport "@T@"\n\nfunc f(x int) int {\n\treturn x + @F@\n}\n\n'
                  'func g(x int) int {\n\treturn x * @G@\n}\n\ntype Outer struct{}\n\n'
                  'func (o *Outer) m() int {\n\treturn @N@\n}\n', "f", "g", "function", "Outer.m"),
    Language.C: ('#include <stdio.h>\n\nstatic const char *LIMIT = "@T@";\n\nint f(int x) {\n    return x + @F@;\n}\n\n'
                 'int g(int x) {\n    return x * @G@;\n}\n\nstruct Outer {\n    struct Inner {\n'
                 '        int m@N@;\n    } inner;\n    int n;\n};\n', "f", "g", "class", "Outer.Inner"),
    Language.CPP: ('#include <vector>\n\nstatic const char *LIMIT = "@T@";\n\nint f(int x) {\n    return x + @F@;\n}\n\n'
                   'int g(int x) {\n    return x * @G@;\n}\n\nclass Outer {\n  class Inner {\n    int m() {\n'
                   '      return @N@;\n    }\n  };\n};\n', "f", "g", "function", "Outer.Inner.m"),
}

OLD = {"@F@": "1", "@G@": "1", "@N@": "1", "@T@": "a"}
NEW = {"@F@": "2", "@G@": "2", "@N@": "2", "@T@": "b"}


def render(template: str, changed: tuple[str, ...]) -> str:
    for marker, value in OLD.items():
        template = template.replace(marker, NEW[marker] if marker in changed else value)
    return template


def line_of(text: str, needle: str) -> int:
    """1-based line of the first line containing ``needle``."""
    return next(i for i, line in enumerate(text.splitlines(), 1) if needle in line)


def scoped(language: Language, *changed: str, **settings):
    template = TEMPLATES[language][0]
    old, new = render(template, ()), render(template, changed)
    return old, new, scope_change(old, new, language, ScopeSettings(**settings))


@pytest.mark.parametrize("language", list(TEMPLATES), ids=lambda language: language.value)
def test_change_inside_one_function(language):
    old, new, pairs = scoped(language, "@F@")
    name = TEMPLATES[language][1]
    assert [(p.scope, p.name) for p in pairs] == [("function", name)]
    pair = pairs[0]
    assert "1" in pair.rejected and "2" in pair.chosen and pair.rejected.replace("1", "2") == pair.chosen
    # the spans are the function's lines, the same in both versions here
    first = line_of(old, "f(")
    assert pair.rejected_span == pair.chosen_span and pair.rejected_span[0] <= first <= pair.rejected_span[1]
    lines = old.splitlines(keepends=True)
    assert "".join(lines[pair.rejected_span[0] - 1:pair.rejected_span[1]]) == pair.rejected
    assert "g(" not in pair.chosen and pair.changed_lines == 2
    assert pair.signals["chosen"].error_bytes == 0 and pair.signals["chosen"].depth >= 3


@pytest.mark.parametrize("language", list(TEMPLATES), ids=lambda language: language.value)
def test_change_across_two_functions_gives_one_pair_each(language):
    _, _, pairs = scoped(language, "@F@", "@G@")
    assert [(p.scope, p.name) for p in pairs] == [("function", TEMPLATES[language][1]),
                                                   ("function", TEMPLATES[language][2])]
    assert all(p.changed_lines == 2 for p in pairs)


@pytest.mark.parametrize("language", list(TEMPLATES), ids=lambda language: language.value)
def test_change_across_more_definitions_than_allowed_gives_their_common_scope(language):
    """Past max_definitions: the smallest definition holding every change, else the file."""
    old, new, pairs = scoped(language, "@F@", "@G@", max_definitions=1)
    if language in (Language.JAVA, Language.CSHARP):  # f and g are methods of class Util
        assert [(p.scope, p.name) for p in pairs] == [("class", "Util")]
        assert pairs[0].chosen.startswith("static class Util" if language is Language.CSHARP else "class Util")
    else:
        assert [(p.scope, p.rejected, p.chosen) for p in pairs] == [("file", old, new)]


@pytest.mark.parametrize("language", list(TEMPLATES), ids=lambda language: language.value)
def test_change_outside_any_definition_gives_a_window(language):
    old, new, pairs = scoped(language, "@T@", window_lines=1)
    top = next(i for i, (a, b) in enumerate(zip(old.splitlines(), new.splitlines()), 1) if a != b)
    assert [(p.scope, p.name) for p in pairs] == [("window", None)]
    pair = pairs[0]
    first = max(1, top - 1)
    assert pair.rejected_span == pair.chosen_span == (first, top + 1)
    assert pair.rejected == "".join(old.splitlines(keepends=True)[first - 1:top + 1])
    assert pair.chosen == "".join(new.splitlines(keepends=True)[first - 1:top + 1])


@pytest.mark.parametrize("language", list(TEMPLATES), ids=lambda language: language.value)
def test_change_in_a_nested_definition_has_a_qualified_name(language):
    _, _, pairs = scoped(language, "@N@")
    _, _, _, kind, name = TEMPLATES[language]
    assert [(p.scope, p.name) for p in pairs] == [(kind, name)]
    if name.count(".") == 2:  # the enclosing headers are the prompt's read-only context
        assert "Outer" in pairs[0].context and "Inner" in pairs[0].context


C_HEADER = ("#ifndef GEO_H\n#define GEO_H\n\nstruct point { int x; int y; };\n\n"
            "static inline int area(int w, int h) {\n    return w * @F@;\n}\n\n#endif\n")
CPP_HEADER = ("#pragma once\n#include <string>\n\nnamespace geo {\nclass Shape {\n public:\n"
              "  virtual ~Shape() = default;\n  int sides() const {\n    return @F@;\n  }\n};\n}  // namespace geo\n")


@pytest.mark.parametrize(("language", "header", "name"), [(Language.C, C_HEADER, "area"),
                                                          (Language.CPP, CPP_HEADER, "Shape.sides")])
def test_change_in_a_header(language, header, name):
    old, new = render(header, ()), render(header, ("@F@",))
    pairs = scope_change(old, new, language)
    assert [(p.scope, p.name) for p in pairs] == [("function", name)]
    assert pairs[0].signals["rejected"].error_bytes == 0


def test_added_method_climbs_to_its_class_and_added_function_to_a_window():
    old = "class A:\n    def m(self):\n        return 1\n\n\nX = 1\n"
    with_method = old.replace("        return 1\n", "        return 1\n\n    def n(self):\n        return 2\n")
    pairs = scope_change(old, with_method, Language.PYTHON)
    assert [(p.scope, p.name, p.rejected_span, p.chosen_span) for p in pairs] == [("class", "A", (1, 3), (1, 6))]
    with_function = old + "\n\ndef h():\n    return 3\n"
    pairs = scope_change(old, with_function, Language.PYTHON, ScopeSettings(window_lines=1))
    assert [(p.scope, p.rejected_span, p.chosen_span) for p in pairs] == [("window", (6, 6), (6, 10))]


def test_a_change_between_the_members_of_a_long_class_gives_a_window_named_by_the_class():
    members = "".join(f"    def m{i}(self):\n        return {i}\n\n" for i in range(100))
    old = "import os\n\n\nclass Big:\n    LIMIT = 1\n\n" + members
    new = old.replace("    LIMIT = 1\n", "    LIMIT = 2\n    MARGIN = 3\n")
    pairs = scope_change(old, new, Language.PYTHON, ScopeSettings(window_lines=2))
    assert [(p.scope, p.name, p.rejected_span, p.chosen_span) for p in pairs] == [
        ("window", "Big", (3, 7), (3, 8))]
    assert pairs[0].rejected == "\nclass Big:\n    LIMIT = 1\n\n    def m0(self):\n"
    # below the bound, the class itself is the pair
    pairs = scope_change(old, new, Language.PYTHON, ScopeSettings(max_class_lines=400))
    assert [(p.scope, p.name, p.rejected_span) for p in pairs] == [("class", "Big", (4, 305))]
    prompt = scoped_prompt("Raise the limit", "big.py", "Python",
                           scope_change(old, new, Language.PYTHON, ScopeSettings(window_lines=2))[0])
    assert "Lines: 3-7 of the file before the change, inside type Big" in prompt


def test_a_change_to_the_own_lines_of_a_long_function_holding_definitions_gives_a_window():
    """lodash's 10,000-line runInContext is a module in all but name: a change to its own lines
    gave the whole function as a pair (over the side bound, so dropped: 253 pairs of lodash)."""
    helpers = "".join(f"  function helper{i}(x) {{\n    return x + {i};\n  }}\n\n" for i in range(60))
    old = f"function runInContext(context) {{\n  var LIMIT = 1;\n\n{helpers}  return helper0;\n}}\n"
    new = old.replace("  var LIMIT = 1;\n", "  var LIMIT = 2;\n")
    [pair] = scope_change(old, new, Language.JAVASCRIPT, ScopeSettings(window_lines=2))
    assert (pair.scope, pair.name, pair.within, pair.rejected_span) == ("window", "runInContext", "function", (1, 4))
    assert "inside function runInContext" in scoped_prompt("Raise the limit", "lodash.js", "JavaScript", pair)
    # a change inside one of its functions is still that function's pair
    inner = old.replace("return x + 7;", "return x + 70;")
    assert [(p.scope, p.name) for p in scope_change(old, inner, Language.JAVASCRIPT)] == [
        ("function", "runInContext.helper7")]
    # a long function that holds no definition is still the pair
    flat = "function long(x) {\n" + "".join(f"  x = x + {i};\n" for i in range(300)) + "  return x;\n}\n"
    [pair] = scope_change(flat, flat.replace("x = x + 5;", "x = x - 5;"), Language.JAVASCRIPT)
    assert (pair.scope, pair.name, pair.within) == ("function", "long", None)


# A function with a one-line doc comment right above it (the line holding @D@), between two
# others, in each language (in a class where the language has methods).
DOCUMENTED: dict[Language, tuple[str, str]] = {
    Language.JAVA: ("class K {\n    int a() { return 1; }\n\n    /** Adds @D@. */\n"
                    "    int f(int x) {\n        return x + 1;\n    }\n\n    int b() { return 2; }\n}\n", "K.f"),
    Language.CSHARP: ("class K\n{\n    int A() { return 1; }\n\n    /// <summary>Adds @D@.</summary>\n"
                      "    int F(int x)\n    {\n        return x + 1;\n    }\n\n    int B() { return 2; }\n}\n", "K.F"),
    Language.GO: ("package k\n\nfunc a() int { return 1 }\n\n// F: Adds @D@.\n"
                  "func F(x int) int {\n\treturn x + 1\n}\n\nfunc b() int { return 2 }\n", "F"),
    Language.C: ("int a(void) { return 1; }\n\n/* Adds @D@. */\nint f(int x) {\n  return x + 1;\n}\n\n"
                 "int b(void) { return 2; }\n", "f"),
    Language.JAVASCRIPT: ("function a() { return 1; }\n\n/** Adds @D@. */\nfunction f(x) {\n  return x + 1;\n}\n\n"
                          "function b() { return 2; }\n", "f"),
    Language.RUBY: ("class K\n  def a\n    1\n  end\n\n  # Adds @D@.\n  def f(x)\n    x + 1\n  end\n\n"
                    "  def b\n    2\n  end\nend\n", "K.f"),
    Language.PYTHON: ("def a():\n    return 1\n\n\n# Adds @D@.\n@staticmethod\ndef f(x):\n    return x + 1\n\n\n"
                      "def b():\n    return 2\n", "f"),
    Language.CPP: ("int a() { return 1; }\n\n// Adds @D@.\ntemplate <typename T>\nT f(T x) {\n  return x + 1;\n}\n\n"
                   "int b() { return 2; }\n", "f"),
}


@pytest.mark.parametrize("language", list(DOCUMENTED), ids=lambda language: language.value)
def test_a_change_to_a_doc_comment_gives_its_definition_with_the_doc(language):
    template, name = DOCUMENTED[language]
    old, new = template.replace("@D@", "one"), template.replace("@D@", "one to x")
    doc_line = next(number for number, line in enumerate(template.splitlines(), 1) if "@D@" in line)
    [pair] = scope_change(old, new, language)
    assert (pair.scope, pair.name) == ("function", name)
    assert pair.rejected_span[0] == pair.chosen_span[0] == doc_line  # the doc is in the pair
    assert "Adds one to x." in pair.chosen and "Adds one." in pair.rejected and "x + 1" in pair.chosen

    # a change of the body alone keeps the pair to the definition itself, without its doc
    [body] = scope_change(old, old.replace("x + 1", "x + 2"), language)
    assert (body.scope, body.name) == ("function", name) and "Adds" not in body.chosen
    assert body.rejected_span[0] == doc_line + 1

    # a doc added where there was none gives the definition with its new doc
    bare = "".join(line for line in old.splitlines(keepends=True) if "Adds" not in line)
    [added] = scope_change(bare, old, language)
    assert (added.scope, added.name) == ("function", name)
    assert "Adds one." in added.chosen and "Adds" not in added.rejected and added.chosen_span[0] == doc_line


def test_a_definition_changed_by_blank_lines_alone_beside_real_changes_is_no_pair():
    old = "def f(x):\n    y = x + 1\n    return y\n\n\ndef g(x):\n    y = x * 2\n    return y\n"
    new = old.replace("x + 1", "x + 3").replace("    y = x * 2\n", "    y = x * 2\n\n")
    assert [(p.scope, p.name) for p in scope_change(old, new, Language.PYTHON)] == [("function", "f")]
    # the blank line alone is still a pair (validation decides what a whitespace change is worth)
    spaced = old.replace("    y = x * 2\n", "    y = x * 2\n\n")
    assert [(p.scope, p.name) for p in scope_change(old, spaced, Language.PYTHON)] == [("function", "g")]


def test_hunks_far_apart_outside_definitions_give_a_window_each():
    constants = "".join(f"LIMIT_{i} = {i}\n" for i in range(60))
    old = "import os\n\n" + constants
    new = old.replace("LIMIT_3 = 3\n", "LIMIT_3 = 30\n").replace("LIMIT_50 = 50\n", "LIMIT_50 = 500\n")
    pairs = scope_change(old, new, Language.PYTHON, ScopeSettings(window_lines=2))
    assert [(p.scope, p.rejected_span, p.chosen_span, p.changed_lines) for p in pairs] == [
        ("window", (4, 8), (4, 8), 2), ("window", (51, 55), (51, 55), 2)]
    assert "LIMIT_3 = 30" in pairs[0].chosen and "LIMIT_50" not in pairs[0].chosen
    # hunks whose windows would meet share one window
    near = old.replace("LIMIT_3 = 3\n", "LIMIT_3 = 30\n").replace("LIMIT_7 = 7\n", "LIMIT_7 = 70\n")
    assert [p.rejected_span for p in scope_change(old, near, Language.PYTHON, ScopeSettings(window_lines=2))] == [
        (4, 12)]
    # a group of blank lines only, beside a real change, is no window of its own
    spaced = new.replace("LIMIT_30 = 30\n", "LIMIT_30 = 30\n\n")
    assert [p.rejected_span for p in scope_change(old, spaced, Language.PYTHON, ScopeSettings(window_lines=2))] == [
        (4, 8), (51, 55)]
    only_blank = old.replace("LIMIT_30 = 30\n", "LIMIT_30 = 30\n\n")
    assert [p.scope for p in scope_change(old, only_blank, Language.PYTHON, ScopeSettings(window_lines=2))] == [
        "window"]  # a change of blank lines alone is still its pair (validation decides)
    # more groups than max_definitions is a sweep: one window over them all
    [sweep] = scope_change(old, new, Language.PYTHON, ScopeSettings(window_lines=2, max_definitions=1))
    assert (sweep.scope, sweep.rejected_span) == ("window", (4, 55))


def test_the_prompt_carries_the_message_body_without_trailers_or_bare_references():
    message = ("Fix #1249\n\nThe cache kept entries of closed sessions, so a reused id\r\n"
               "returned another user's data.\n\nFixes #1249\nSee https://example.com/i/1249\n"
               "Signed-off-by: A Dev <a@example.com>\n")
    assert commit_intent(message) == ("Fix #1249.\n\nThe cache kept entries of closed sessions, so a reused id\n"
                                      "returned another user's data.")
    assert commit_intent("Subject only.") == "Subject only."
    long = commit_intent("Subject\n\n" + "word " * 400)
    assert len(long) < 640 and long.endswith("word ...")
    pair = scope_change("def f():\n    return 1\n", "def f():\n    return 2\n", Language.PYTHON)[0]
    prompt = scoped_prompt(message, "a.py", "Python", pair)
    assert prompt.startswith("Fix #1249.\n\nThe cache kept entries") and "Signed-off-by" not in prompt
    assert "https://" not in prompt and "Function: f" in prompt


def test_overloads_are_matched_by_position():
    old = "class A {\n  int m(int x) { return x; }\n  int m() { return 0; }\n}\n"
    new = old.replace("return 0", "return 1")
    pairs = scope_change(old, new, Language.JAVA)
    assert [(p.name, p.rejected_span) for p in pairs] == [("A.m", (3, 3))]
    assert pairs[0].rejected == "  int m() { return 0; }\n"


def test_overloads_changed_by_one_commit_get_ids_of_their_own():
    old = ("class A {\n  int m(int x) { return x; }\n\n  int n() { return 5; }\n\n"
           "  int m() { return 0; }\n}\n")
    new = old.replace("return x", "return x + 1").replace("return 0", "return 1")
    row = {**empty_row(), "id": "c0ffee", "language": "Java", "path": "A.java", "message": "Fix bug in m",
           "rejected": old, "chosen": new}
    rows = ScopePairs().scoped(row)
    assert [r["scope_name"] for r in rows] == ["A.m", "A.m"]
    assert len({r["id"] for r in rows}) == 2  # the two overloads are two pairs, two ids


def test_javascript_functions_assigned_to_properties_and_keys_are_definitions():
    """Express-style code defines most functions as `obj.name = function` or `key: function`."""
    old = ("var res = module.exports = {};\n\nres.send = function send(body) {\n  var chunk = body;\n"
           "  return this;\n};\n\nmodule.exports = {\n  get: function (key) {\n    return this.map[key];\n"
           "  }\n};\n")
    new = old.replace("var chunk = body;", "var chunk = body || '';").replace("this.map[key]", "this.map.get(key)")
    pairs = scope_change(old, new, Language.JAVASCRIPT)
    assert [(p.scope, p.name, p.rejected_span) for p in pairs] == [
        ("function", "res.send", (3, 6)), ("function", "get", (9, 11))]
    assert pairs[0].rejected.startswith("res.send = function send(body) {")


def test_each_include_reaches_the_prompt_context_once():
    old = "#include <stdio.h>\n#include <atomic>\n\nint f(int a) {\n  return a + 1;\n}\n"
    assert imports(parse(old.encode(), Language.C), old.encode(), Language.C) == [(0, 0), (1, 1)]
    [pair] = scope_change(old, old.replace("a + 1", "a + 2"), Language.C)
    assert pair.context.count("#include <stdio.h>") == 1 and pair.context.count("#include <atomic>") == 1


def test_identical_versions_give_no_pair_and_file_scope_keeps_the_files():
    text = TEMPLATES[Language.GO][0]
    assert scope_change(text, text, Language.GO) == []
    old, new, pairs = scoped(Language.GO, "@F@", scope="file")
    assert [(p.scope, p.rejected, p.chosen) for p in pairs] == [("file", old, new)]


def test_blank_lines_between_definitions_give_no_pair():
    old = "def first(a):\n    return a + 1\n\ndef second(b):\n    return b * 2\n"
    spaced = old.replace("\n\ndef second", "\n\n\n\ndef second")
    assert scope_change(old, spaced, Language.PYTHON) == []  # the neighbours' text is unchanged
    changed = spaced.replace("return b * 2", "return b * 3")
    [pair] = scope_change(old, changed, Language.PYTHON)  # the real change still gives its pair
    assert pair.name == "second" and pair.chosen != pair.rejected


def test_scoped_validation_uses_the_whole_files_tree():
    """A C++ method cut out of its class would not parse alone in every grammar; its signals come
    from the whole file, under the method's bytes."""
    from codeprefs.filters.validation import PairValidator

    old, new, pairs = scoped(Language.JAVA, "@N@")
    pair = pairs[0]
    verdict = PairValidator().check(Language.JAVA, pair.chosen, pair.rejected, aspect="Functional_Correctness",
                                    signals={s: r.as_dict() for s, r in pair.signals.items()})
    assert verdict.reason is None and verdict.chosen.error_bytes == 0
    assert verdict.chosen.nodes == pair.signals["chosen"].nodes


# An unbalanced #if (a function opened in both branches, closed once) makes tree-sitter wrap the
# rest of the file in one ERROR node; `add` below it still parses as a whole function_definition.
# Found in libuv's src/unix/fs.c, where every function of such a region was dropped as too shallow.
UNBALANCED_IF_C = """#include <stdlib.h>

#if defined(_WIN32)
int open_file(const char* p) {
  return 1;
#else
int open_file(const char* p) {
  return 2;
#endif
}

int add(int a, int b) {
  int c = a + b;
  return c;
}
"""


def test_a_definition_under_an_error_elsewhere_in_its_file_is_not_blamed_for_it():
    from codeprefs.filters.validation import PairValidator
    from codeprefs.pipelines.scopes import range_report

    tree = parse(UNBALANCED_IF_C.encode(), Language.C)
    error = next(child for child in tree.root_node.children if child.is_error)
    assert error.start_point[0] == 2 and error.end_point[0] >= 14  # the ERROR holds `add` too

    new = UNBALANCED_IF_C.replace("int c = a + b;", "int c = a + b + 0;")
    [pair] = scope_change(UNBALANCED_IF_C, new, Language.C)
    assert (pair.scope, pair.name) == ("function", "add")
    for report in pair.signals.values():
        assert report.error_bytes == 0 and report.error_nodes == 0 and report.depth >= 3 and report.nodes > 20
    verdict = PairValidator().check(Language.C, pair.chosen, pair.rejected, aspect="Functional_Correctness",
                                    signals={s: r.as_dict() for s, r in pair.signals.items()})
    assert verdict.reason is None

    # The broken lines themselves, under the same ERROR, still count their stray tokens as errors.
    source = UNBALANCED_IF_C.encode()
    start = source.index(b"int open_file")
    report = range_report(tree, start, source.index(b"#else"))
    assert report.error_nodes == 1 and 0 < report.error_bytes < report.nbytes


# -- a real build --------------------------------------------------------------------------------

APP_V1 = '''import math


class Shape:
    """A shape."""

    class Circle:
        def area(self, r):
            return 3.14 * r * r

        def perimeter(self, r):
            return 2 * 3.14 * r


def total(values):
    result = 0
    for value in values:
        result += value
    return result


def mean(values):
    return total(values) / len(values)
'''

APP_V2 = APP_V1.replace("return 3.14 * r * r", "return math.pi * r * r")
APP_V3 = APP_V2.replace("    result = 0\n    for value in values:\n        result += value\n    return result\n",
                        "    return sum(values)\n").replace("return total(values) / len(values)",
                                                            "return total(values) / max(1, len(values))")


@pytest.fixture
def scoped_repo(make_repo):
    repo = make_repo("scoped")
    repo.commit("Add shapes and statistics", {"app.py": APP_V1})
    repo.commit("Fix bug: use the exact value of pi in Circle.area", {"app.py": APP_V2})
    repo.commit("Fix bug: mean of an empty list raised ZeroDivisionError", {"app.py": APP_V3})
    return repo


def _rows(out: Path) -> list[dict]:
    table = pq.read_table(sorted((out / "data").glob("*.parquet")))
    return sorted(table.to_pylist(), key=lambda row: (row["unix_time"], row["chosen_start_line"]))


@pytest.mark.ray
def test_build_keeps_function_scoped_rows(ray_local, tmp_path, scoped_repo):
    from codeprefs.pipelines.build import build

    manifest = parse_manifest({"name": "scoped", "sources": [{"type": "git", "repos": [str(scoped_repo.path)]}]},
                              tmp_path)
    assert manifest.pairs.scope == "function"
    record = build(manifest, tmp_path / "out")
    rows = _rows(tmp_path / "out")
    got = [(r["scope"], r["scope_name"], r["rejected_start_line"], r["rejected_end_line"],
            r["chosen_start_line"], r["chosen_end_line"]) for r in rows]
    assert got == [("function", "Shape.Circle.area", 8, 9, 8, 9),
                   ("function", "total", 15, 19, 15, 16),
                   ("function", "mean", 22, 23, 19, 20)]
    assert rows[0]["rejected"] == "        def area(self, r):\n            return 3.14 * r * r\n"
    assert rows[0]["chosen"] == "        def area(self, r):\n            return math.pi * r * r\n"
    assert rows[0]["input"] == (
        "Fix bug: use the exact value of pi in Circle.area.\n\nLanguage: Python\nFile: app.py\n"
        "Function: Shape.Circle.area\nContext (read-only, from the file before the change):\n"
        "```python\nimport math\n...\nclass Shape:\n    class Circle:\n```\n"
        "Write the complete function `Shape.Circle.area` after this change.")
    # two definitions of one commit: two rows with their own ids and the commit's intent
    assert rows[1]["commit"] == rows[2]["commit"] and rows[1]["id"] != rows[2]["id"]
    assert all(r["input"].startswith("Fix bug: mean of an empty list raised ZeroDivisionError.") for r in rows[1:])
    assert all(r["chosen_error_fraction"] == 0.0 and r["chosen_nodes"] > 5 for r in rows)
    assert record["rows"]["kept"] == 3


@pytest.mark.ray
def test_build_with_file_scope_keeps_whole_files(ray_local, tmp_path, scoped_repo):
    from codeprefs.pipelines.build import build
    from codeprefs.pipelines.steps import commit_prompt

    manifest = parse_manifest({"name": "whole", "sources": [{"type": "git", "repos": [str(scoped_repo.path)]}],
                               "pairs": {"scope": "file"}}, tmp_path)
    build(manifest, tmp_path / "out")
    rows = _rows(tmp_path / "out")
    assert [(r["rejected"], r["chosen"]) for r in rows] == [(APP_V1, APP_V2), (APP_V2, APP_V3)]
    assert [r["input"] for r in rows] == [commit_prompt(r["message"], "app.py", "Python") for r in rows]
    assert [(r["scope"], r["scope_name"], r["rejected_start_line"], r["rejected_end_line"]) for r in rows] == [
        ("file", None, 1, APP_V1.count("\n")), ("file", None, 1, APP_V2.count("\n"))]


def test_a_macro_before_a_namespace_is_no_function_named_namespace():
    # fmt's FMT_BEGIN_NAMESPACE: tree-sitter-cpp reads "MACRO namespace detail {...}" as a
    # function definition named "namespace", which made whole namespaces one pair
    old = ("FMT_BEGIN_NAMESPACE\nnamespace detail {\ntemplate <typename T> int write(T x) {\n  return 1;\n}\n"
           "int other() {\n  return 2;\n}\n}\nFMT_END_NAMESPACE\n")
    pairs = scope_change(old, old.replace("return 1;", "return 3;"), Language.CPP)
    assert [(p.scope, p.name, p.rejected_span) for p in pairs] == [("function", "write", (3, 5))]
