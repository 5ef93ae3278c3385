"""Filters: commit-message rules, criteria labelling, and tree-sitter pair validation."""

from codeprefs.filters.criteria import CriteriaLabeler, CriteriaMatch, load_terms
from codeprefs.filters.messages import MessageFilter, MessageFilterSettings
from codeprefs.filters.validation import PairValidator, PairVerdict, ValidationSettings

__all__ = [
    "CriteriaLabeler",
    "CriteriaMatch",
    "MessageFilter",
    "MessageFilterSettings",
    "PairValidator",
    "PairVerdict",
    "ValidationSettings",
    "load_terms",
]
