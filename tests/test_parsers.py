"""Language registry, bounded tree-sitter parsing, syntax signals and .h resolution."""

from __future__ import annotations

import time

import pytest

from codeprefs.core.schema import Language, parse_language
from codeprefs.parsers.headers import HeaderContext, resolve_header_language
from codeprefs.parsers.languages import LANGUAGES, language_for_path
from codeprefs.parsers.treesitter import (
    ParseLimitExceeded,
    ParseLimits,
    ast_depth,
    depth_at_least,
    inspect_source,
    parse,
)

VALID = {
    Language.C: b"#include <stdio.h>\nint add(int a, int b) { return a + b; }\n",
    Language.CPP: b"#include <vector>\nint sum(const std::vector<int>& v) { int s = 0; for (int x : v) s += x; return s; }\n",
    Language.CSHARP: b"class A { int Add(int a, int b) { return a + b; } }\n",
    Language.GO: b"package main\n\nfunc add(a int, b int) int { return a + b }\n",
    Language.JAVA: b"class A { int add(int a, int b) { return a + b; } }\n",
    Language.JAVASCRIPT: b"function add(a, b) { return a + b; }\nmodule.exports = { add };\n",
    Language.PYTHON: b"def add(a, b):\n    return a + b\n",
    Language.RUBY: b"def add(a, b)\n  a + b\nend\n",
}

BROKEN = {
    Language.C: b"int add(int a, int b) { return a + ; }\n",
    Language.CPP: b"int f() { return (1 + ; }\n",
    Language.CSHARP: b"class A { int Add(int a int b) { return a + b } }\n",
    Language.GO: b"package main\nfunc add(a int b int) int { return a + }\n",
    Language.JAVA: b"class A { int add(int a, int b) { return a + ; } }\n",
    Language.JAVASCRIPT: b"function add(a, b) { return a + ; }\n",
    Language.PYTHON: b"def add(a, b:\n    return a +\n",
    Language.RUBY: b"def add(a, b\n  a + \n",
}


@pytest.mark.parametrize(
    ("path", "language"),
    [
        ("src/a.c", Language.C), ("include/a.h", Language.C), ("a.cpp", Language.CPP),
        ("a.cc", Language.CPP), ("a.cxx", Language.CPP), ("a.c++", Language.CPP),
        ("a.hpp", Language.CPP), ("a.hh", Language.CPP), ("a.hxx", Language.CPP),
        ("a.h++", Language.CPP), ("A.cs", Language.CSHARP), ("main.go", Language.GO),
        ("A.java", Language.JAVA), ("a.js", Language.JAVASCRIPT), ("a.mjs", Language.JAVASCRIPT),
        ("a.cjs", Language.JAVASCRIPT), ("a.py", Language.PYTHON), ("a.rb", Language.RUBY),
        ("SRC/MAIN.CPP", Language.CPP),
    ],
)
def test_extensions_map_to_languages(path, language):
    assert language_for_path(path) is language


@pytest.mark.parametrize("path", ["README.md", "Makefile", "a.ts", "a.pyc", "a.rs", "noext"])
def test_other_files_have_no_language(path):
    assert language_for_path(path) is None


def test_every_language_is_registered_and_spelled_like_the_paper():
    assert {spec.language for spec in LANGUAGES.values()} == set(Language)
    assert parse_language("CSharp") is Language.CSHARP
    assert parse_language("Cpp") is Language.CPP
    with pytest.raises(ValueError, match="unknown language 'Rust'"):
        parse_language("Rust")


@pytest.mark.parametrize("language", list(Language))
def test_valid_code_parses_without_errors(language):
    report = inspect_source(VALID[language], language)
    assert report.error_nodes == 0
    assert report.error_fraction == 0.0
    assert report.min_depth_reached
    assert report.nodes > 5


@pytest.mark.parametrize("language", list(Language))
def test_broken_code_has_error_nodes(language):
    report = inspect_source(BROKEN[language], language)
    assert report.has_error
    assert report.error_nodes >= 1


def test_error_fraction_counts_only_bytes_under_error_nodes():
    good = b"def ok(a):\n    return a\n" * 50
    bad = b"x = (1 +\n"
    report = inspect_source(good + bad, Language.PYTHON)
    assert report.has_error
    assert 0 < report.error_fraction < 0.05


def test_depth_helpers_agree_with_the_full_walk():
    tree = parse(VALID[Language.PYTHON], Language.PYTHON)
    depth = ast_depth(tree.root_node)
    assert depth >= 4
    assert depth_at_least(tree.root_node, depth)
    assert not depth_at_least(tree.root_node, depth + 1)
    shallow = parse(b"x\n", Language.PYTHON)
    assert ast_depth(shallow.root_node) == 3  # module > expression_statement > identifier
    assert not depth_at_least(parse(b"", Language.PYTHON).root_node, 2)


def test_size_cap_is_checked_before_parsing():
    with pytest.raises(ParseLimitExceeded) as caught:
        parse(b"x = 1\n" * 1000, Language.PYTHON, ParseLimits(max_bytes=100))
    assert caught.value.reason == "too_large"


def test_hostile_input_hits_the_time_limit_instead_of_hanging():
    hostile = b"x = [" * 400_000  # unclosed brackets: slow error recovery
    started = time.monotonic()
    with pytest.raises(ParseLimitExceeded) as caught:
        parse(hostile, Language.PYTHON, ParseLimits(max_bytes=10_000_000, timeout_s=0.2))
    assert caught.value.reason == "parse_timeout"
    assert time.monotonic() - started < 5
    # The parser is usable again right after a cancelled parse.
    assert not parse(VALID[Language.PYTHON], Language.PYTHON).root_node.has_error


def test_deeply_nested_input_does_not_crash():
    nested = b"x = " + b"(" * 50_000 + b"1" + b")" * 50_000 + b"\n"
    report = inspect_source(nested, Language.PYTHON, ParseLimits(timeout_s=10))
    assert report.nbytes == len(nested)


C_HEADER = b"#ifndef RING_H\n#define RING_H\nstruct ring { int head; int tail; };\nint ring_push(struct ring *r, int v);\n#endif\n"
CPP_HEADER = b"#pragma once\nnamespace geo {\nclass Point {\n public:\n  double x, y;\n};\n}\n"


def test_header_follows_a_pure_cpp_repository():
    context = HeaderContext.from_paths(["src/a.cpp", "src/b.cc", "include/ring.h"])
    assert resolve_header_language("include/ring.h", C_HEADER, context) is Language.CPP


def test_header_follows_a_pure_c_repository():
    context = HeaderContext.from_paths(["src/a.c", "src/b.c", "include/geo.h"])
    assert resolve_header_language("include/geo.h", CPP_HEADER, context) is Language.C


def test_header_in_a_mixed_repository_follows_its_directory_then_its_content():
    context = HeaderContext.from_paths(["lib/a.c", "lib/b.c", "bindings/x.cpp", "bindings/y.cpp",
                                        "lib/z.cpp"])
    assert resolve_header_language("lib/ring.h", CPP_HEADER, context) is Language.C
    assert resolve_header_language("bindings/ring.h", C_HEADER, context) is Language.CPP
    assert resolve_header_language("other/geo.h", CPP_HEADER, context) is Language.CPP
    assert resolve_header_language("other/ring.h", C_HEADER, context) is Language.C
