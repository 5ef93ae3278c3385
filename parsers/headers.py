"""Decide whether a ``.h`` header is C or C++.

The rule, first match wins:

1. **Repository**: the tree has C++ sources and no ``.c`` file -> C++; ``.c`` files and no C++
   sources -> C.
2. **Directory**: in a mixed repository, the header's own directory decides when it holds more
   of one kind of source than the other.
3. **Content**: C++-only syntax (``namespace``, ``template <``, ``class X {``/``:``, access
   specifiers, ``std::``, ``extern "C"`` guards excepted) -> C++.
4. **Parse**: both grammars parse it; the one leaving fewer bytes under ERROR nodes wins,
   ties go to C (every C header is also close to valid C++, not the other way round).
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import PurePosixPath

from codeprefs.core.schema import Language
from codeprefs.parsers.languages import C_SOURCE_EXTENSIONS, CPP_SOURCE_EXTENSIONS, extension_of

_CPP_ONLY = re.compile(
    rb"^\s*namespace\b|\btemplate\s*<|^\s*class\s+\w+[^;(]*[:{]|^\s*(public|private|protected)\s*:"
    rb"|\bstd::|\bconstexpr\b|\bnullptr\b|^\s*using\s+namespace\b",
    re.MULTILINE,
)


@dataclass(frozen=True)
class HeaderContext:
    """How many C and C++ source files a repository tree holds, overall and per directory."""

    c_files: int = 0
    cpp_files: int = 0
    by_directory: dict[str, tuple[int, int]] = field(default_factory=dict)

    @classmethod
    def from_paths(cls, paths: Iterable[str]) -> HeaderContext:
        c_by_dir: Counter[str] = Counter()
        cpp_by_dir: Counter[str] = Counter()
        for path in paths:
            extension = extension_of(path)
            directory = str(PurePosixPath(path).parent)
            if extension in C_SOURCE_EXTENSIONS:
                c_by_dir[directory] += 1
            elif extension in CPP_SOURCE_EXTENSIONS:
                cpp_by_dir[directory] += 1
        directories = set(c_by_dir) | set(cpp_by_dir)
        return cls(
            c_files=sum(c_by_dir.values()),
            cpp_files=sum(cpp_by_dir.values()),
            by_directory={d: (c_by_dir[d], cpp_by_dir[d]) for d in directories},
        )

    def decide(self, path: str) -> Language | None:
        """Steps 1 and 2 of the rule: ``None`` when the tree alone does not decide."""
        if self.cpp_files and not self.c_files:
            return Language.CPP
        if self.c_files and not self.cpp_files:
            return Language.C
        c_here, cpp_here = self.by_directory.get(str(PurePosixPath(path).parent), (0, 0))
        if cpp_here > c_here:
            return Language.CPP
        if c_here > cpp_here:
            return Language.C
        return None


def resolve_header_language(
    path: str, source: bytes | None = None, context: HeaderContext | None = None
) -> Language:
    """The language of the header at ``path``, by the rule in this module's docstring."""
    if context is not None:
        decided = context.decide(path)
        if decided is not None:
            return decided
    if source is None:
        return Language.C
    if _CPP_ONLY.search(source):
        return Language.CPP
    return _fewer_errors(source)


def _fewer_errors(source: bytes) -> Language:
    from codeprefs.parsers.treesitter import ParseLimitExceeded, error_spans, parse

    try:
        c_errors = error_spans(parse(source, Language.C).root_node)[1]
        cpp_errors = error_spans(parse(source, Language.CPP).root_node)[1]
    except ParseLimitExceeded:
        return Language.C
    return Language.CPP if cpp_errors < c_errors else Language.C
