"""Criteria system prompts: which ones a row gets, and their wording.

A prompt always names the two general criteria (helpfulness, harmlessness) first and then either
the row's own code criterion or all five code criteria. Training rows whose ``system`` is empty
get one at load time, drawn from a random generator seeded by (seed, row key), so a row gets the
same prompt whatever the order, sharding or number of workers:

* 15% no system prompt,
* 20% all criteria (the five code criteria in a per-row shuffled order),
* 65% the row's own criterion.

At evaluation the row's own criterion is the default; ``all`` (fixed order) and ``none`` are there
on request.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from enum import StrEnum

from codeprefs.core.schema import Aspect, parse_aspect


class PromptKind(StrEnum):
    """How a row's system prompt was chosen."""

    NONE = "none"  # no system message at all
    ALL = "all"  # general criteria + all five code criteria
    OWN = "own"  # general criteria + the row's own criterion
    GIVEN = "given"  # the data already had a system prompt (training) or it was kept (evaluation)


GENERAL_CRITERIA: tuple[tuple[str, str], ...] = (
    ("Helpfulness", "it does what the user asked for, completely and without detours."),
    ("Harmlessness", "it contains nothing that could damage a system, leak data or mislead the user."),
)

CODE_CRITERIA: dict[Aspect, tuple[str, str]] = {
    Aspect.FUNCTIONAL_CORRECTNESS: (
        "Functional correctness",
        "the code computes what the task requires, including edge cases, without bugs.",
    ),
    Aspect.RUNTIME_EFFICIENCY: (
        "Runtime efficiency",
        "the code reaches the result in little time, with suitable algorithms and data structures.",
    ),
    Aspect.MEMORY_EFFICIENCY: (
        "Memory efficiency",
        "the code needs little memory and avoids needless copies, buffers and allocations.",
    ),
    Aspect.READABILITY_MAINTAINABILITY: (
        "Readability and maintainability",
        "the code is easy to read, well named and structured, and simple to change later.",
    ),
    Aspect.SECURITY_HARDNESS: (
        "Security hardness",
        "the code checks its inputs and withstands misuse such as injection, overflows and leaks.",
    ),
}

# The paper's training mix: (none, all criteria, own criterion).
TRAINING_MIX: tuple[float, float, float] = (0.15, 0.20, 0.65)

_PREAMBLE = (
    "You review answers to programming requests. Judge the answer by the criteria below, "
    "listed in order of importance; an answer is better on a criterion when"
)


def render_prompt(aspects: Sequence[Aspect]) -> str:
    """The system prompt naming the general criteria, then ``aspects`` in the given order."""
    lines = [_PREAMBLE + ":"]
    for name, meaning in GENERAL_CRITERIA:
        lines.append(f"- {name}: {meaning}")
    for aspect in aspects:
        name, meaning = CODE_CRITERIA[aspect]
        lines.append(f"- {name}: {meaning}")
    return "\n".join(lines)


def training_prompt(row_key: str, aspect: str, seed: int,
                    mix: tuple[float, float, float] = TRAINING_MIX) -> tuple[PromptKind, str]:
    """Draw the system prompt of a training row whose ``system`` is empty.

    ``row_key`` identifies the row (its id); ``aspect`` is its criterion in any spelling
    :func:`codeprefs.core.schema.parse_aspect` accepts. Returns the kind drawn and the prompt text
    (empty for :attr:`PromptKind.NONE`).
    """
    rng = random.Random(f"codeprefs-system-prompt:{seed}:{row_key}")
    draw = rng.random()
    none_share, all_share, _ = mix
    if draw < none_share:
        return PromptKind.NONE, ""
    if draw < none_share + all_share:
        order = list(Aspect)
        rng.shuffle(order)
        return PromptKind.ALL, render_prompt(order)
    return PromptKind.OWN, render_prompt([parse_aspect(aspect)])


def evaluation_prompt(mode: str, aspect: str, given: str | None) -> tuple[PromptKind, str]:
    """The system prompt of an evaluation row.

    ``mode`` is ``own`` (the row's criterion), ``all`` (all five in a fixed order), ``none``, or
    ``data`` (the row's own ``system`` text, none when empty).
    """
    if mode == PromptKind.OWN:
        return PromptKind.OWN, render_prompt([parse_aspect(aspect)])
    if mode == PromptKind.ALL:
        return PromptKind.ALL, render_prompt(list(Aspect))
    if mode == PromptKind.NONE:
        return PromptKind.NONE, ""
    if mode == "data":
        return (PromptKind.GIVEN, given) if given else (PromptKind.NONE, "")
    raise ValueError(f"unknown system prompt mode {mode!r}; expected own, all, none or data")
