"""The preference-pair row: the one place its columns and their types are defined.

Every shard codeprefs writes has exactly :data:`PAIR_SCHEMA`. The first columns follow the
Themis paper's published layout (``system, input, chosen, rejected, language, aspect`` plus an
id and source labels), so the trainer, the Hub viewer and the paper's own scripts read them
unchanged. Provenance and validation signals follow; they are null where they do not apply (a
synthesized pair has no commit).
"""

from __future__ import annotations

import hashlib
from enum import StrEnum

import pyarrow as pa


class Language(StrEnum):
    """The eight languages codeprefs mines and synthesizes, spelled as in the shards."""

    C = "C"
    CSHARP = "C#"
    CPP = "C++"
    GO = "Go"
    JAVA = "Java"
    JAVASCRIPT = "JavaScript"
    PYTHON = "Python"
    RUBY = "Ruby"


class Aspect(StrEnum):
    """The five criteria a pair can be preferred on (the paper's benchmark labels)."""

    FUNCTIONAL_CORRECTNESS = "Functional_Correctness"
    RUNTIME_EFFICIENCY = "Runtime_Efficiency"
    MEMORY_EFFICIENCY = "Memory_Efficiency"
    READABILITY_MAINTAINABILITY = "Readability_Maintainability"
    SECURITY_HARDNESS = "Security_Hardness"


# Other spellings seen in public data (the paper's benchmark writes CSharp and Cpp).
_LANGUAGE_ALIASES: dict[str, Language] = {
    "c": Language.C,
    "c#": Language.CSHARP,
    "csharp": Language.CSHARP,
    "cs": Language.CSHARP,
    "c-sharp": Language.CSHARP,
    "c++": Language.CPP,
    "cpp": Language.CPP,
    "cxx": Language.CPP,
    "go": Language.GO,
    "golang": Language.GO,
    "java": Language.JAVA,
    "javascript": Language.JAVASCRIPT,
    "js": Language.JAVASCRIPT,
    "python": Language.PYTHON,
    "py": Language.PYTHON,
    "ruby": Language.RUBY,
    "rb": Language.RUBY,
}

_ASPECT_ALIASES: dict[str, Aspect] = {
    "functional_correctness": Aspect.FUNCTIONAL_CORRECTNESS,
    "functionality": Aspect.FUNCTIONAL_CORRECTNESS,
    "fc": Aspect.FUNCTIONAL_CORRECTNESS,
    "runtime_efficiency": Aspect.RUNTIME_EFFICIENCY,
    "runtime_eff": Aspect.RUNTIME_EFFICIENCY,
    "execution_efficiency": Aspect.RUNTIME_EFFICIENCY,
    "memory_efficiency": Aspect.MEMORY_EFFICIENCY,
    "memory_eff": Aspect.MEMORY_EFFICIENCY,
    "readability_maintainability": Aspect.READABILITY_MAINTAINABILITY,
    "readability": Aspect.READABILITY_MAINTAINABILITY,
    "security_hardness": Aspect.SECURITY_HARDNESS,
    "security": Aspect.SECURITY_HARDNESS,
    "sec": Aspect.SECURITY_HARDNESS,
}


def parse_language(name: str) -> Language:
    """Map any common spelling (``"cpp"``, ``"CSharp"``, ``"C#"``) to a :class:`Language`."""
    language = _LANGUAGE_ALIASES.get(str(name).strip().lower())
    if language is None:
        known = ", ".join(language.value for language in Language)
        raise ValueError(f"unknown language {name!r}; expected one of: {known}")
    return language


def parse_aspect(name: str) -> Aspect:
    """Map a criterion name (benchmark label or term-list name) to an :class:`Aspect`."""
    aspect = _ASPECT_ALIASES.get(str(name).strip().lower().replace(" ", "_").replace("&", ""))
    if aspect is None:
        known = ", ".join(aspect.value for aspect in Aspect)
        raise ValueError(f"unknown criterion {name!r}; expected one of: {known}")
    return aspect


PAIR_SCHEMA = pa.schema(
    [
        # -- the paper's columns ------------------------------------------------------------
        pa.field("id", pa.string(), nullable=False),
        pa.field("source", pa.string(), nullable=False),  # git | solutions | dataset
        pa.field("subset", pa.string(), nullable=False),
        pa.field("language", pa.string(), nullable=False),
        pa.field("aspect", pa.string(), nullable=False),  # the primary criterion
        pa.field("aspects", pa.list_(pa.string()), nullable=False),  # every matched criterion
        pa.field("system", pa.string()),
        pa.field("input", pa.string(), nullable=False),
        pa.field("chosen", pa.string(), nullable=False),
        pa.field("rejected", pa.string(), nullable=False),
        # -- provenance of mined pairs --------------------------------------------------------
        pa.field("repo", pa.string()),
        pa.field("commit", pa.string()),
        pa.field("parent", pa.string()),
        pa.field("path", pa.string()),
        pa.field("unix_time", pa.int64()),
        pa.field("message", pa.string()),
        # -- how the pair was made ------------------------------------------------------------
        pa.field("generator", pa.string(), nullable=False),  # "commit", "mutation:<op>", ...
        pa.field("verification", pa.string()),  # e.g. "executed:mutant_failed"; null if none
        # -- validation signals (tree-sitter) --------------------------------------------------
        pa.field("chosen_bytes", pa.int64(), nullable=False),
        pa.field("rejected_bytes", pa.int64(), nullable=False),
        pa.field("chosen_nodes", pa.int64(), nullable=False),
        pa.field("rejected_nodes", pa.int64(), nullable=False),
        pa.field("chosen_error_fraction", pa.float64(), nullable=False),
        pa.field("rejected_error_fraction", pa.float64(), nullable=False),
        # -- the scope of a mined pair (pipelines.scopes); null for dataset and synthesized rows --
        pa.field("scope", pa.string()),  # function | class | window | file
        pa.field("scope_name", pa.string()),  # the definition's qualified name, e.g. Class.method
        pa.field("chosen_start_line", pa.int64()),  # 1-based, inclusive, in the file after the commit
        pa.field("chosen_end_line", pa.int64()),
        pa.field("rejected_start_line", pa.int64()),  # in the file before the commit
        pa.field("rejected_end_line", pa.int64()),
    ]
)

PAIR_COLUMNS: tuple[str, ...] = tuple(PAIR_SCHEMA.names)

# The columns a consumer needs to train or evaluate (the paper's minimal layout).
TRAINING_COLUMNS: tuple[str, ...] = ("system", "input", "chosen", "rejected", "language", "aspect")


def stable_id(*parts: str | None) -> str:
    """A 32-hex-digit id that depends only on ``parts`` (a hash of the provenance)."""
    digest = hashlib.sha256()
    for part in parts:
        digest.update(b"\x00" if part is None else part.encode("utf-8", "surrogatepass"))
        digest.update(b"\x1f")
    return digest.hexdigest()[:32]
