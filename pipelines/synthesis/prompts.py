"""Prompt templates for the four LLM jobs of the method, and tolerant parsers of the answers.

1. an *inverse instruction*: the task statement, in one of five styles, that either version of
   a change would answer;
2. *bug introduction*: a wrong variant of a correct completion, with no hint of the bug (and,
   for candidate sets, a plain *solution*: the completion of the given code, correct or not);
3. a *1-5 rating* of how specifically a change improves a criterion;
4. a *pairwise judge*: which of two versions better meets a criterion (A, B or TIE).

Templates are plain chat messages (a system and a user turn). Parsers never raise: an answer
they cannot read gives ``None``, which callers count as malformed.
"""

from __future__ import annotations

import re

Messages = list[dict[str, str]]

INSTRUCTION_STYLES: tuple[str, ...] = (
    "graduate course assignment",
    "Quora question",
    "StackOverflow question",
    "Google search query",
    "programming contest problem",
)

CRITERION_DESCRIPTIONS = {
    "Functional_Correctness": "the code does what it is meant to do, for every valid input",
    "Runtime_Efficiency": "the code runs fast: good algorithms, no wasted work",
    "Memory_Efficiency": "the code uses little memory",
    "Readability_Maintainability": "the code is easy to read, understand and change",
    "Security_Hardness": "the code resists misuse and attacks and handles untrusted input safely",
}

RATING_SCALE = (
    "1 - it makes the code worse on this criterion\n"
    "2 - it has no effect on this criterion\n"
    "3 - a slight improvement on this criterion\n"
    "4 - a significant improvement on this criterion\n"
    "5 - an essential improvement on this criterion that the code should not be without"
)


def _fenced(language: str, code: str) -> str:
    return f"```{language.lower()}\n{code.rstrip()}\n```"


def inverse_instruction(language: str, before: str, after: str, style: str) -> Messages:
    """Ask for the task statement that either version of a change answers, in ``style``."""
    if style not in INSTRUCTION_STYLES:
        raise ValueError(f"unknown style {style!r}; expected one of {INSTRUCTION_STYLES}")
    return [
        {"role": "system", "content": "You write programming tasks. Answer with the task text only."},
        {"role": "user", "content": (
            f"Below are two versions of the same {language} code. Write the task that a developer "
            f"was given when they wrote it, phrased as a {style}. The task must be answerable by "
            "either version, must not mention that there are two versions, and must not give "
            "away how either version is written.\n\n"
            f"Version 1:\n{_fenced(language, before)}\n\nVersion 2:\n{_fenced(language, after)}"
        )},
    ]


def bug_introduction(language: str, instruction: str, given: str, completion: str) -> Messages:
    """Ask for a subtly wrong completion of ``given`` (the correct one is ``completion``)."""
    return [
        {"role": "system", "content": (
            "You help build test data for code reviewers. You change correct code so that it is "
            "wrong in a way tests would catch, and you never explain or mark the change.")},
        {"role": "user", "content": (
            f"Task:\n{instruction}\n\nGiven code:\n{_fenced(language, given)}\n\n"
            f"Correct completion of the given code:\n{_fenced(language, completion)}\n\n"
            "Rewrite the completion with one logical or algorithmic bug: a wrong condition, "
            "bound, operator, variable or value. Keep its layout, names and comments; add no "
            "comment and no new name that hints at the bug; it must still compile. Reply with "
            "the rewritten completion only, in one code block."
        )},
    ]


def change_rating(criterion: str, language: str, message: str, before: str, after: str) -> Messages:
    """Ask how specifically a commit improves ``criterion``, on a 1-5 scale."""
    description = CRITERION_DESCRIPTIONS.get(criterion, criterion)
    return [
        {"role": "system", "content": "You review code changes. End your answer with 'Rating: N'."},
        {"role": "user", "content": (
            f"Criterion: {criterion.replace('_', ' ')} ({description}).\n\n"
            f"Commit message: {message.strip()}\n\nBefore:\n{_fenced(language, before)}\n\n"
            f"After:\n{_fenced(language, after)}\n\n"
            f"How specifically does this change improve the code on the criterion?\n{RATING_SCALE}"
        )},
    ]


def pairwise_judge(criterion: str, language: str, instruction: str, response_a: str,
                   response_b: str) -> Messages:
    """Ask which of two responses better meets ``criterion``: A, B or TIE."""
    description = CRITERION_DESCRIPTIONS.get(criterion, criterion)
    return [
        {"role": "system", "content": (
            "You compare two answers to a programming task on one criterion. Think briefly, then "
            "end with a last line that is exactly 'Verdict: A', 'Verdict: B' or 'Verdict: TIE'.")},
        {"role": "user", "content": (
            f"Criterion: {criterion.replace('_', ' ')} ({description}).\n\nTask:\n{instruction}\n\n"
            f"Answer A:\n{_fenced(language, response_a)}\n\n"
            f"Answer B:\n{_fenced(language, response_b)}\n\nWhich answer is better on the criterion?"
        )},
    ]


def task_solution(language: str, instruction: str, given: str) -> Messages:
    """Ask for the completion of ``given`` that solves ``instruction`` (a candidate-set sample)."""
    return [
        {"role": "system", "content": "You are an expert programmer. You answer with code only."},
        {"role": "user", "content": (
            f"Task:\n{instruction}\n\nGiven code:\n{_fenced(language, given)}\n\n"
            "Write the code that completes the given code so that it solves the task. Do not "
            "repeat the given code. Reply with the completion only, in one code block."
        )},
    ]


_CODE_BLOCK = re.compile(r"```[^\n`]*\n(.*?)```", re.DOTALL)
_RATING = re.compile(r"rating\s*[:=]?\s*\**\s*([1-5])\b", re.IGNORECASE)
_LONE_DIGIT = re.compile(r"^\s*\**\s*([1-5])\s*\**\s*(?:/\s*5)?\s*\.?\s*$", re.MULTILINE)
_VERDICT = re.compile(r"verdict\s*[:=]?\s*\**\s*\[?\s*(A|B|TIE|tie|Tie)\b", re.IGNORECASE)
_LONE_VERDICT = re.compile(r"^\s*\**\s*\[?\s*(A|B|TIE)\s*\]?\s*\**\s*\.?\s*$", re.MULTILINE | re.IGNORECASE)


def extract_code(answer: str) -> str | None:
    """The first fenced code block of ``answer`` (None when there is none)."""
    match = _CODE_BLOCK.search(answer or "")
    return match.group(1) if match else None


def parse_rating(answer: str) -> int | None:
    """1-5 from 'Rating: N' (the last one) or a line holding only the number; else None."""
    found = _RATING.findall(answer or "")
    if found:
        return int(found[-1])
    lone = _LONE_DIGIT.findall(answer or "")
    return int(lone[-1]) if lone else None


def parse_verdict(answer: str) -> str | None:
    """'A', 'B' or 'TIE' from 'Verdict: X' (the last one) or a line holding only X; else None."""
    found = _VERDICT.findall(answer or "")
    if found:
        return found[-1].upper()
    lone = _LONE_VERDICT.findall(answer or "")
    return lone[-1].upper() if lone else None


def parse_instruction(answer: str) -> str | None:
    """The task text: the answer without a leading label or surrounding quotes; None if empty."""
    text = (answer or "").strip()
    text = re.sub(r"^(task|instruction|question)\s*:\s*", "", text, flags=re.IGNORECASE)
    text = text.strip().strip('"').strip()
    return text or None
