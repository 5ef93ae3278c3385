"""Language registry and bounded tree-sitter parsing for the eight languages."""

from codeprefs.parsers.headers import resolve_header_language
from codeprefs.parsers.languages import LANGUAGES, grammar, language_for_path
from codeprefs.parsers.treesitter import (
    ParseLimitExceeded,
    ParseLimits,
    SyntaxReport,
    ast_depth,
    inspect_source,
    parse,
)

__all__ = [
    "LANGUAGES",
    "ParseLimitExceeded",
    "ParseLimits",
    "SyntaxReport",
    "ast_depth",
    "grammar",
    "inspect_source",
    "language_for_path",
    "parse",
    "resolve_header_language",
]
