"""Both versions of a changed file, parsed incrementally and through a cache
(:mod:`codeprefs.parsers.versions`): the trees and definitions are those of fresh parses."""

from __future__ import annotations

import pytest
from tree_sitter import Tree

from codeprefs.core.schema import Language
from codeprefs.parsers.definitions import definitions
from codeprefs.parsers.treesitter import ParseLimitExceeded, ParseLimits, parse
from codeprefs.parsers.versions import LineEdit, ParseCache, Parsed, parse_versions
from codeprefs.pipelines.scopes import ScopeSettings, common_ends, scope_change, split_lines

# Three functions in each language; the tests change, insert and delete lines of the second.
SOURCES: dict[Language, str] = {
    Language.PYTHON: "import os\n\n\ndef f(x):\n    return x + 1\n\n\ndef g(x):\n    y = x * 2\n    return y\n\n\n"
                     "class K:\n    def h(self):\n        return 3\n",
    Language.RUBY: "def f(x)\n  x + 1\nend\n\ndef g(x)\n  y = x * 2\n  y\nend\n\nclass K\n  def h\n    3\n  end\nend\n",
    Language.JAVASCRIPT: "function f(x) {\n  return x + 1;\n}\n\nfunction g(x) {\n  const y = x * 2;\n  return y;\n}\n\n"
                         "class K {\n  h() {\n    return 3;\n  }\n}\n",
    Language.JAVA: "class K {\n    int f(int x) {\n        return x + 1;\n    }\n\n    int g(int x) {\n"
                   "        int y = x * 2;\n        return y;\n    }\n\n    int h() {\n        return 3;\n    }\n}\n",
    Language.CSHARP: "class K\n{\n    int f(int x)\n    {\n        return x + 1;\n    }\n\n    int g(int x)\n    {\n"
                     "        int y = x * 2;\n        return y;\n    }\n\n    int h()\n    {\n        return 3;\n    }\n}\n",
    Language.GO: "package k\n\nfunc f(x int) int {\n\treturn x + 1\n}\n\nfunc g(x int) int {\n\ty := x * 2\n"
                 "\treturn y\n}\n\nfunc h() int {\n\treturn 3\n}\n",
    Language.C: "#include <stdio.h>\n\nint f(int x) {\n    return x + 1;\n}\n\nint g(int x) {\n    int y = x * 2;\n"
                "    return y;\n}\n\nint h(void) {\n    return 3;\n}\n",
    Language.CPP: "#include <vector>\n\nint f(int x) {\n    return x + 1;\n}\n\nint g(int x) {\n    int y = x * 2;\n"
                  "    return y;\n}\n\nclass K {\n  int h() {\n    return 3;\n  }\n};\n",
}

# Edits of the line holding "x * 2": changed, a line inserted after it, the line deleted.
EDITS = {
    "change": lambda line: line.replace("x * 2", "x * 4"),
    "insert": lambda line: line + line.replace("y", "z", 1),
    "delete": lambda line: "",
}


def edited(source: str, how: str) -> str:
    lines = source.splitlines(keepends=True)
    index = next(i for i, line in enumerate(lines) if "x * 2" in line)
    lines[index] = EDITS[how](lines[index])
    return "".join(lines)


def line_edit(old: bytes, new: bytes) -> LineEdit:
    old_lines, new_lines = split_lines(old), split_lines(new)
    prefix, suffix = common_ends(old_lines, new_lines)
    old_end, new_end = len(old_lines) - suffix, len(new_lines) - suffix
    return LineEdit(prefix, old_end, new_end, sum(map(len, old_lines[:prefix])),
                    sum(map(len, old_lines[:old_end])), sum(map(len, new_lines[:new_end])))


def shape(tree: Tree) -> list[tuple]:
    """Every node of ``tree`` in order, with its type, span and error flags."""
    out, stack = [], [tree.root_node]
    while stack:
        node = stack.pop()
        out.append((node.type, node.start_byte, node.end_byte, tuple(node.start_point), tuple(node.end_point),
                    node.is_error, node.is_missing))
        stack.extend(reversed(node.children))
    return out


@pytest.mark.parametrize("how", sorted(EDITS))
@pytest.mark.parametrize("language", list(SOURCES), ids=lambda language: language.value)
def test_the_incremental_version_is_the_fresh_parse(language, how):
    old = SOURCES[language].encode()
    new = edited(SOURCES[language], how).encode()
    assert old != new
    before, after = parse_versions(old, new, line_edit(old, new), language, ParseLimits(), ParseCache())
    for parsed, source in ((before, old), (after, new)):
        fresh = parse(source, language)
        assert not fresh.root_node.has_error
        assert shape(parsed.tree) == shape(fresh)
        assert parsed.definitions == tuple(definitions(fresh, source, language))
    assert {d.name.rsplit(".", 1)[-1] for d in after.definitions} >= {"f", "g", "h"}


@pytest.mark.parametrize("language", list(SOURCES), ids=lambda language: language.value)
def test_a_version_with_errors_is_parsed_afresh(language):
    good = SOURCES[language].encode()
    broken = SOURCES[language].replace("x * 2", "x * (2 +").encode()
    for old, new in ((good, broken), (broken, good)):
        before, after = parse_versions(old, new, line_edit(old, new), language, ParseLimits(), ParseCache())
        assert shape(before.tree) == shape(parse(old, language))
        assert shape(after.tree) == shape(parse(new, language))
        assert after.definitions == tuple(definitions(parse(new, language), new, language))
    assert parse(broken, language).root_node.has_error


def test_a_cached_version_is_not_parsed_again_and_gives_the_same_definitions():
    language = Language.PYTHON
    first, second = SOURCES[language].encode(), edited(SOURCES[language], "change").encode()
    third = edited(SOURCES[language], "insert").encode()
    cache = ParseCache()
    one = parse_versions(first, second, line_edit(first, second), language, ParseLimits(), cache)
    assert (cache.hits, cache.misses, len(cache)) == (0, 2, 2)
    # the next commit of the file starts from the version the first one ended with
    two = parse_versions(second, third, line_edit(second, third), language, ParseLimits(), cache)
    assert (cache.hits, cache.misses, len(cache)) == (1, 3, 3)
    assert two[0] is one[1]
    assert two[0].definitions == tuple(definitions(parse(second, language), second, language))
    assert shape(two[1].tree) == shape(parse(third, language))
    # the cached tree was not edited by the incremental parse made from it
    assert shape(one[1].tree) == shape(parse(second, language))


def test_the_cache_keys_versions_by_language():
    cache = ParseCache()
    source = b"int f(int x) {\n    return x;\n}\n"
    new = source.replace(b"x;", b"x + 1;")
    parse_versions(source, new, line_edit(source, new), Language.C, ParseLimits(), cache)
    before, _ = parse_versions(source, new, line_edit(source, new), Language.CPP, ParseLimits(), cache)
    assert (cache.hits, cache.misses) == (0, 4)
    assert shape(before.tree) == shape(parse(source, Language.CPP))


def test_the_cache_drops_the_least_recently_used_past_its_bounds():
    cache = ParseCache(max_entries=2, max_bytes=1000)
    versions = [f"def f():\n    return {n}\n".encode() for n in range(4)]
    tree = parse(versions[0], Language.PYTHON)
    keys = [ParseCache.key(v, Language.PYTHON) for v in versions]
    cache.put(keys[0], Parsed(tree, ()), 10)
    cache.put(keys[1], Parsed(tree, ()), 10)
    assert cache.get(keys[0]) is not None  # 0 is now the most recently used
    cache.put(keys[2], Parsed(tree, ()), 10)
    assert len(cache) == 2 and cache.get(keys[1]) is None and cache.get(keys[0]) is not None
    cache.put(keys[3], Parsed(tree, ()), 995)  # over the byte bound with the others: they go
    assert len(cache) == 1 and cache.nbytes == 995 and cache.get(keys[3]) is not None
    cache.put(keys[1], Parsed(tree, ()), 1001)  # larger than the whole cache: not kept
    assert cache.get(keys[1]) is None and cache.nbytes == 995


def test_cache_bounds_must_not_be_negative():
    with pytest.raises(ValueError, match="max_entries=-1"):
        ParseCache(max_entries=-1)


def test_a_cached_version_still_obeys_a_smaller_size_cap():
    cache = ParseCache()
    old = SOURCES[Language.GO].encode()
    new = edited(SOURCES[Language.GO], "change").encode()
    parse_versions(old, new, line_edit(old, new), Language.GO, ParseLimits(), cache)
    with pytest.raises(ParseLimitExceeded, match="too_large"):
        parse_versions(old, new, line_edit(old, new), Language.GO, ParseLimits(max_bytes=len(old) - 1), cache)


@pytest.mark.parametrize("language", list(SOURCES), ids=lambda language: language.value)
def test_scoped_pairs_are_the_same_with_or_without_the_cache(language):
    source = SOURCES[language]
    # the last change reverts the first: both of its versions are in the cache by then
    versions = [source, edited(source, "change"), edited(source, "insert"), source]
    warm = ParseCache()
    for old, new in zip(versions, versions[1:]):
        expected = scope_change(old, new, language, ScopeSettings(), ParseCache(max_entries=0))
        assert expected, (old, new)
        assert scope_change(old, new, language, ScopeSettings(), warm) == expected
    assert warm.hits >= 2


def test_clear_forgets_every_version():
    cache = ParseCache()
    old = SOURCES[Language.RUBY].encode()
    new = edited(SOURCES[Language.RUBY], "delete").encode()
    parse_versions(old, new, line_edit(old, new), Language.RUBY, ParseLimits(), cache)
    cache.clear()
    assert (len(cache), cache.nbytes) == (0, 0)
    parse_versions(old, new, line_edit(old, new), Language.RUBY, ParseLimits(), cache)
    assert (cache.hits, cache.misses) == (0, 4)
