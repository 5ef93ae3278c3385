"""Mutation operators on every language: what each makes, determinism, and what is never emitted."""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from codeprefs.core.schema import Language
from codeprefs.parsers.languages import grammar
from codeprefs.pipelines.synthesis import mutations
from codeprefs.pipelines.synthesis.code import Edit, parse_program
from codeprefs.pipelines.synthesis.languages import SYNTAX
from codeprefs.pipelines.synthesis.mutations import (
    OPERATORS,
    Operator,
    VariantCheck,
    candidate_changes,
    generate_mutants,
    iter_mutants,
)
from tests.synthesis_programs import PROGRAMS

# One change each operator must make, as the mutated line (stripped), per language; "re:" marks
# a regular expression where the operator picks among several right answers (a direction, a
# variable). swap_branches and remove_statement are checked structurally.
EXPECTED: dict[str, dict[str, str]] = {
    "Python": {
        "relational_boundary": "if values[index] <= limit and index >= 1:",
        "negate_condition": "if not (total > 100):",
        "arithmetic_swap": "total += pick(values[index], limit) / 2",
        "logical_swap": "if values[index] < limit or index >= 1:",
        "off_by_one": r"re:for index in range\(len\(values\) [+-] 1\):",
        "swap_branches": "total -= 1",
        "remove_statement": None,
        "change_return": "return True",
        "swap_arguments": "total += pick(limit, values[index]) * 2",
        "wrong_variable": r"re:return (steps|limit|values)",
    },
    "Ruby": {
        "relational_boundary": "return false if total >= 100",
        "negate_condition": "return false if !(total > 100)",
        "arithmetic_swap": "total -= pick(values[index], limit) * 2",
        "logical_swap": "if values[index] < limit || index >= 1",
        "off_by_one": "(0..values.length).each do |index|",
        "swap_branches": "total -= 1",
        "remove_statement": None,
        "change_return": "nil",
        "swap_arguments": "total += pick(limit, values[index]) * 2",
        "wrong_variable": r"re:(steps|limit|values)",
    },
    "JavaScript": {
        "relational_boundary": "for (let index = 0; index <= values.length; index++) {",
        "negate_condition": "if (!(total > 100)) {",
        "arithmetic_swap": "total += pick(values[index], limit) / 2;",
        "logical_swap": "if (values[index] < limit || index >= 1) {",
        "off_by_one": r"re:for \(let index = 0; index < values\.length [+-] 1; index\+\+\) \{",
        "swap_branches": "total -= 1;",
        "remove_statement": None,
        "change_return": "return true;",
        "swap_arguments": "total += pick(limit, values[index]) * 2;",
        "wrong_variable": r"re:return (steps|limit|values);",
    },
    "C": {
        "relational_boundary": "for (int index = 0; index <= size; index++) {",
        "negate_condition": "if (!(total > 100)) {",
        "arithmetic_swap": "total += pick(values[index], limit) / 2;",
        "logical_swap": "if (values[index] < limit || index >= 1) {",
        "off_by_one": r"re:for \(int index = 0; index < size [+-] 1; index\+\+\) \{",
        "swap_branches": "total -= 1;",
        "remove_statement": None,
        "change_return": "return 1;",
        "swap_arguments": "total += pick(limit, values[index]) * 2;",
        "wrong_variable": r"re:return (steps|limit|size);",
    },
    "C++": {
        "relational_boundary": "for (int index = 0; index <= (int)values.size(); index++) {",
        "negate_condition": "if (!(total > 100)) {",
        "arithmetic_swap": "total -= pick(values[index], limit) * 2;",
        "logical_swap": "if (values[index] < limit || index >= 1) {",
        "off_by_one": r"re:for \(int index = 0; index < \(\(int\)values\.size\(\)\) [+-] 1; index\+\+\) \{",
        "swap_branches": "total -= 1;",
        "remove_statement": None,
        "change_return": "return 1;",
        "swap_arguments": "total += pick(limit, values[index]) * 2;",
        "wrong_variable": r"re:return (steps|limit);",
    },
    "Java": {
        "relational_boundary": "if (total >= 100) {",
        "negate_condition": "if (!(values[index] < limit && index >= 1)) {",
        "arithmetic_swap": "steps -= 1;",
        "logical_swap": "if (values[index] < limit || index >= 1) {",
        "off_by_one": "int total = 1;",
        "swap_branches": "total -= 1;",
        "remove_statement": None,
        "change_return": "return 1;",
        "swap_arguments": "total += pick(limit, values[index]) * 2;",
        "wrong_variable": r"re:return (steps|limit);",
    },
    "C#": {
        "relational_boundary": "if (total >= 100) {",
        "negate_condition": "if (!(total > 100)) {",
        "arithmetic_swap": "steps -= 1;",
        "logical_swap": "if (values[index] < limit || index >= 1) {",
        "off_by_one": "int steps = 1;",
        "swap_branches": "total -= 1;",
        "remove_statement": None,
        "change_return": "return 1;",
        "swap_arguments": "total += Pick(limit, values[index]) * 2;",
        "wrong_variable": r"re:return (steps|limit);",
    },
    "Go": {
        "relational_boundary": "if total >= 100 {",
        "negate_condition": "if !(total > 100) {",
        "arithmetic_swap": "steps -= 1",
        "logical_swap": "if values[index] < limit || index >= 1 {",
        "off_by_one": "total := 1",
        "swap_branches": "total -= 1",
        "remove_statement": None,
        "change_return": "return 1",
        "swap_arguments": "total += pick(limit, values[index]) * 2",
        "wrong_variable": r"re:return ((steps|limit) \+ steps|total \+ (total|limit))\*0",
    },
}


def program_for(language: str):
    prompt, solution = PROGRAMS[language]
    source = (prompt + solution).encode()
    program = parse_program(Language(language), source, (len(prompt.encode()), len(source)))
    assert program is not None, f"the {language} test program must parse"
    return program


def test_every_node_type_in_the_tables_exists_in_its_grammar():
    for language, syntax in SYNTAX.items():
        names = set()
        for field_name in ("binary_types", "compound_assignment_types", "condition_types", "if_types",
                           "ternary_types", "loop_types", "integer_types", "string_types",
                           "not_types", "return_types", "call_types", "argument_list_types",
                           "comment_types", "function_types", "block_types", "removable_types",
                           "scope_types", "identifier_types", "parameter_list_types",
                           "declarator_wrappers", "implicit_return_types"):
            names |= set(getattr(syntax, field_name))
        names |= {syntax.true_type, syntax.false_type}
        names |= {rule.node_type for rule in syntax.declarations}
        names |= {parent for parent, _ in syntax.member_positions}
        missing = sorted(name for name in names if grammar(language).id_for_node_kind(name, True) is None)
        assert not missing, f"{language}: not node types of its grammar: {missing}"


@pytest.mark.parametrize("language", sorted(PROGRAMS))
def test_each_operator_makes_its_change_in_each_language(language):
    program = program_for(language)
    original_lines = set(program.source.decode().splitlines())
    by_operator: dict[str, list[bytes]] = {}
    for mutant in iter_mutants(program, seed=0):
        by_operator.setdefault(mutant.operator, []).append(mutant.source)
    assert set(by_operator) == set(OPERATORS), f"{language}: operators without a mutant"
    for operator, expected in EXPECTED[language].items():
        sources = by_operator[operator]
        if operator == "remove_statement":  # one line fewer, nothing added
            assert any(len(s.splitlines()) == len(program.source.splitlines()) - 1 and
                       set(s.decode().splitlines()) < original_lines for s in sources)
            continue
        changed_lines = {line.strip() for s in sources for line in s.decode().splitlines()
                         if line not in original_lines}
        if operator == "swap_branches":  # the else branch's statement now comes first
            assert any(s.decode().index("total -= 1") < s.decode().index("else") for s in sources)
        elif expected.startswith("re:"):
            assert any(re.fullmatch(expected[3:], line) for line in changed_lines), \
                f"{language}/{operator}: nothing matches {expected[3:]!r} in {sorted(changed_lines)}"
        else:
            assert expected in changed_lines, \
                f"{language}/{operator}: {expected!r} not among {sorted(changed_lines)}"


@pytest.mark.parametrize("language", sorted(PROGRAMS))
def test_mutants_only_touch_the_solution_and_always_parse(language):
    program = program_for(language)
    prompt = PROGRAMS[language][0].encode()
    mutants = list(iter_mutants(program, seed=3))
    assert len(mutants) >= 10
    for mutant in mutants:
        assert mutant.source.startswith(prompt), "the prompt's code must stay as given"
        assert parse_program(Language(language), mutant.source) is not None
        assert all(edit.start >= len(prompt) for edit in mutant.edits)


def test_same_input_and_seed_give_the_same_mutants_and_seeds_differ():
    program = program_for("Java")
    first = [(m.operator, m.source) for m in generate_mutants(program, seed=7, limit=12)]
    again = [(m.operator, m.source) for m in generate_mutants(program, seed=7, limit=12)]
    other = [(m.operator, m.source) for m in generate_mutants(program, seed=8, limit=12)]
    assert first == again
    assert first != other
    assert len({operator for operator, _ in first[:5]}) == 5, "the first mutants come from different operators"


def mutant_digest() -> str:
    """One hash over the first mutants of every test program (seed 11)."""
    digest = hashlib.sha256()
    for language, (prompt, solution) in sorted(PROGRAMS.items()):
        source = (prompt + solution).encode()
        program = parse_program(Language(language), source, (len(prompt.encode()), len(source)))
        for mutant in generate_mutants(program, seed=11, limit=20):
            digest.update(mutant.operator.encode() + b"\0" + mutant.source + b"\0")
    return digest.hexdigest()


def test_mutants_do_not_depend_on_the_process_or_its_hash_seed():
    script = "from tests.test_synthesis_mutations import mutant_digest; print(mutant_digest())"
    root = str(Path(__file__).resolve().parents[1])
    digests = set()
    for hash_seed in ("1", "12345"):
        env = {**os.environ, "PYTHONHASHSEED": hash_seed}
        done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=root,
                              env=env, timeout=120, check=True)
        digests.add(done.stdout.strip())
    assert digests == {mutant_digest()}


class _BreaksSyntax(Operator):
    """Deletes a closing bracket: every change it proposes leaves a syntax error."""

    name = "breaks_syntax"

    def sites(self, program, rng):
        for node in program.nodes_in_span():
            if not node.is_named and program.text(node) in (b")", b"}"):
                yield (Edit(node.start_byte, node.end_byte, b""),)


class _AddsHints(Operator):
    """Adds a comment naming the bug, or a new identifier: both give the bug away."""

    name = "adds_hints"

    def sites(self, program, rng):
        for node in program.nodes_in_span():
            if program.text(node) == b"total -= 1":
                yield (Edit(node.start_byte, node.end_byte, b"total -= 2  # BUG: off by one"),)
                yield (Edit(node.start_byte, node.end_byte, b"buggy_total = 2"),)
                yield (Edit(node.start_byte, node.end_byte, b"total  -=  1"),)  # layout only


def test_mutants_that_do_not_parse_add_hints_or_change_nothing_are_never_emitted(monkeypatch):
    monkeypatch.setitem(mutations.OPERATORS, _BreaksSyntax.name, _BreaksSyntax())
    monkeypatch.setitem(mutations.OPERATORS, _AddsHints.name, _AddsHints())
    program = program_for("Python")
    proposed = candidate_changes(program, seed=0, operators=["breaks_syntax", "adds_hints"])
    assert len(proposed) >= 4, "the operators must propose changes for this test to mean anything"
    assert list(iter_mutants(program, seed=0, operators=["breaks_syntax", "adds_hints"])) == []
    check = VariantCheck(program)
    good = program.source.replace(b"total -= 1", b"total -= 2")
    assert check.accepts(good)
    assert not check.accepts(program.source.replace(b"total -= 1", b"total -= 2  # off by one"))


def test_operator_subset_and_unknown_names():
    program = program_for("C")
    mutants = generate_mutants(program, seed=0, limit=100, operators=["logical_swap"])
    assert [m.operator for m in mutants] == ["logical_swap"]
    with pytest.raises(ValueError, match="unknown mutation operator"):
        generate_mutants(program, seed=0, limit=1, operators=["no_such_operator"])
