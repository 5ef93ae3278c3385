"""The registry of the eight languages: file extensions and tree-sitter grammars."""

from __future__ import annotations

import functools
import importlib
from dataclasses import dataclass

from tree_sitter import Language as Grammar

from codeprefs.core.schema import Language


@dataclass(frozen=True)
class LanguageSpec:
    """How codeprefs recognises and parses one language."""

    language: Language
    extensions: tuple[str, ...]
    grammar_module: str  # the PyPI grammar wheel's module, e.g. ``tree_sitter_python``
    grammar_function: str = "language"  # the function in it that returns the grammar pointer


LANGUAGES: dict[Language, LanguageSpec] = {
    spec.language: spec
    for spec in (
        LanguageSpec(Language.C, (".c", ".h"), "tree_sitter_c"),
        LanguageSpec(
            Language.CPP,
            (".cpp", ".cc", ".cxx", ".c++", ".hpp", ".hh", ".hxx", ".h++"),
            "tree_sitter_cpp",
        ),
        LanguageSpec(Language.CSHARP, (".cs",), "tree_sitter_c_sharp"),
        LanguageSpec(Language.GO, (".go",), "tree_sitter_go"),
        LanguageSpec(Language.JAVA, (".java",), "tree_sitter_java"),
        LanguageSpec(Language.JAVASCRIPT, (".js", ".mjs", ".cjs"), "tree_sitter_javascript"),
        LanguageSpec(Language.PYTHON, (".py",), "tree_sitter_python"),
        LanguageSpec(Language.RUBY, (".rb",), "tree_sitter_ruby"),
    )
}

# ``.h`` is listed under C but is ambiguous: see :mod:`codeprefs.parsers.headers`.
AMBIGUOUS_EXTENSIONS: frozenset[str] = frozenset({".h"})

_BY_EXTENSION: dict[str, Language] = {
    extension: spec.language for spec in LANGUAGES.values() for extension in spec.extensions
}

C_SOURCE_EXTENSIONS: frozenset[str] = frozenset({".c"})
CPP_SOURCE_EXTENSIONS: frozenset[str] = frozenset(LANGUAGES[Language.CPP].extensions)


def extension_of(path: str) -> str:
    """The lower-cased extension of a repository path (``"src/A.CPP"`` -> ``".cpp"``)."""
    name = path.rpartition("/")[2]
    dot = name.rfind(".")
    return name[dot:].lower() if 0 < dot < len(name) - 1 else ""


def language_for_path(path: str) -> Language | None:
    """The language a path's extension names, ``None`` if it is none of the eight.

    ``.h`` maps to C here; callers that can see the repository resolve it with
    :func:`codeprefs.parsers.headers.resolve_header_language`.
    """
    return _BY_EXTENSION.get(extension_of(path))


def is_ambiguous(path: str) -> bool:
    return extension_of(path) in AMBIGUOUS_EXTENSIONS


@functools.cache
def grammar(language: Language) -> Grammar:
    """The tree-sitter grammar of ``language`` (loaded once per process)."""
    spec = LANGUAGES[Language(language)]
    module = importlib.import_module(spec.grammar_module)
    return Grammar(getattr(module, spec.grammar_function)())
