"""The user prompt (``input``) of a synthesized pair, made deterministically from the record.

A record may carry its own natural-language instruction (McEval's ``instruction`` field); the
manifest maps it with ``fields.instruction`` and it is used as written. Otherwise the prompt's
code (signature, docstring or comments, imports) becomes a completion request.
"""

from __future__ import annotations

from codeprefs.core.schema import Language
from codeprefs.pipelines.synthesis.languages import syntax_of


def task_instruction(language: Language, prompt: str, given: str | None = None) -> str:
    """The instruction a user would give for this task."""
    if given and given.strip():
        return given.strip()
    fence = syntax_of(language).fence
    return (
        f"Complete the following {Language(language).value} code. Keep what is given and write "
        "the rest so that the code does what its signature and comments describe. Reply with "
        "the complete code.\n\n"
        f"```{fence}\n{prompt.strip()}\n```"
    )
