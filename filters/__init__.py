"""Filters: commit-message rules, criteria labelling, and tree-sitter pair validation."""

from filters.criteria import CriteriaLabeler, CriteriaMatch, load_terms
from filters.messages import MessageFilter
from filters.validation import PairValidator, PairVerdict, ValidationConfig

__all__ = [
    "CriteriaLabeler",
    "CriteriaMatch",
    "MessageFilter",
    "PairValidator",
    "PairVerdict",
    "ValidationConfig",
    "load_terms",
]
