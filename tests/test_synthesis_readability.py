"""Readability variants: consistent meaningless names, no comments, the same structure."""

from __future__ import annotations

import re

import pytest

from codeprefs.core.schema import Language
from codeprefs.pipelines.synthesis.code import parse_program
from codeprefs.pipelines.synthesis.readability import degrade, same_structure
from tests.synthesis_programs import PROGRAMS

COMMENT = {"Python": "#", "Ruby": "#"}


def commented(language: str) -> tuple[str, str]:
    """The test program with a full-line and a trailing comment in its solution."""
    prompt, solution = PROGRAMS[language]
    marker = COMMENT.get(language, "//")
    lines = solution.splitlines(keepends=True)
    indent = re.match(r"\s*", lines[0]).group(0)
    lines.insert(0, f"{indent}{marker} running sum of the values below the limit\n")
    lines[1] = lines[1].rstrip("\n") + f"  {marker} starts empty\n"
    return prompt, "".join(lines)


@pytest.mark.parametrize("language", sorted(PROGRAMS))
def test_locals_are_renamed_and_comments_stripped_keeping_the_structure(language):
    prompt, solution = commented(language)
    source = (prompt + solution).encode()
    program = parse_program(Language(language), source, (len(prompt.encode()), len(source)))
    assert program is not None
    degraded = degrade(program)
    assert degraded is not None
    assert degraded.generator == "readability:rename+strip"
    assert degraded.stripped == 2
    assert set(degraded.renamed) >= {b"total", b"steps"}
    text = degraded.source.decode()
    assert text.startswith(prompt), "the prompt's signature stays as given"
    body = text[len(prompt):]
    assert "running sum" not in body and "starts empty" not in body
    for old, new in degraded.renamed.items():
        assert not re.search(rf"\b{old.decode()}\b", body)
        assert len(new) <= 3
    assert len(set(degraded.renamed.values())) == len(degraded.renamed)
    reparsed = parse_program(Language(language), degraded.source)
    assert reparsed is not None
    assert same_structure(program, reparsed)


def test_structure_check_rejects_other_changes_and_inconsistent_renames():
    prompt, solution = PROGRAMS["Python"]
    source = (prompt + solution).encode()
    original = parse_program(Language.PYTHON, source)
    changed_operator = parse_program(Language.PYTHON, source.replace(b"total -= 1", b"total += 1"))
    assert not same_structure(original, changed_operator)
    # "total" becomes "a" in one place and "b" in another: not a renaming
    inconsistent = source.replace(b"total = 0", b"a = 0", 1).replace(b"return total", b"return b")
    assert not same_structure(original, parse_program(Language.PYTHON, inconsistent))
    consistent = source.replace(b"total", b"a")
    assert same_structure(original, parse_program(Language.PYTHON, consistent))


def test_names_used_by_the_prompt_and_python_docstrings():
    prompt = "def area(width, height):\n"
    solution = ('    """Area of a rectangle."""\n'
                "    width = abs(width)\n"
                "    surface = width * height\n"
                "    return surface\n")
    source = (prompt + solution).encode()
    program = parse_program(Language.PYTHON, source, (len(prompt.encode()), len(source)))
    degraded = degrade(program)
    # width is a parameter of the prompt: renaming it in the body only would break the code
    assert degraded.renamed == {b"surface": b"a"}
    assert degraded.source.decode() == (prompt + "    width = abs(width)\n    a = width * height\n"
                                         "    return a\n")


def test_nothing_to_degrade_gives_none():
    prompt = "def double(x):\n"
    source = (prompt + "    return x * 2\n").encode()
    program = parse_program(Language.PYTHON, source, (len(prompt.encode()), len(source)))
    assert degrade(program) is None
