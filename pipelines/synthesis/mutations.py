"""Seeded AST mutation operators for the eight languages, applied as byte-span edits.

Each operator is one small class: ``sites(program, rng)`` lists every change it can make inside
the program's editable span (the solution, never the prompt's signature or the tests), each
change a tuple of :class:`~codeprefs.pipelines.synthesis.code.Edit`. :func:`generate_mutants` interleaves
the operators' sites in a seeded order and keeps a mutant only when

* it parses with no ERROR or MISSING node,
* its tree differs from the original's (layout and comments aside),
* it adds no hint: no identifier the original lacks, no comment the original lacks,
* its text is new (two sites that give the same program count once)

(:class:`VariantCheck`, also applied to LLM-written variants).

The same program, seed and operator list give the same mutants in the same order on any
machine: the order depends only on a SHA-256 of the seed and the source, and Python's
``random.Random`` is platform independent.
"""

from __future__ import annotations

import hashlib
import random
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import ClassVar

from tree_sitter import Node

from codeprefs.pipelines.synthesis.code import (
    Edit,
    Program,
    apply_edits,
    comments,
    fingerprint,
    identifiers,
    is_comment,
    line_span,
    parse_program,
    walk,
)
from codeprefs.pipelines.synthesis.scopes import declarations, references, visible

Change = tuple[Edit, ...]

_DECIMAL = re.compile(rb"^(\d+)([uUlL]*)$")


@dataclass(frozen=True)
class Mutant:
    """One verified-syntax variant of a program."""

    operator: str
    source: bytes
    edits: Change


def _replace(node: Node, text: bytes) -> Edit:
    return Edit(node.start_byte, node.end_byte, text)


def _operator_token(program: Program, node: Node) -> Iterator[Node]:
    """The anonymous operator tokens directly under an expression node."""
    for child in node.children:
        if not child.is_named:
            yield child


def _token_swaps(program: Program, parent_types: frozenset[str],
                 table: dict[bytes, bytes]) -> Iterator[Change]:
    for node in program.nodes_in_span():
        if node.type not in parent_types:
            continue
        for token in _operator_token(program, node):
            replacement = table.get(program.text(token))
            if replacement is not None:
                yield (_replace(token, replacement),)


def _unwrap_condition(node: Node) -> Node:
    """The expression inside ``(cond)`` or a C++ condition clause."""
    if node.type == "parenthesized_expression" and node.named_child_count == 1:
        return node.named_children[0]
    if node.type == "condition_clause":
        value = node.child_by_field_name("value")
        if value is not None:
            return value
    return node


def _condition_of(node: Node) -> Node | None:
    condition = node.child_by_field_name("condition")
    if condition is None:  # Go keeps a for loop's condition in a for_clause
        for child in node.named_children:
            if child.type == "for_clause":
                condition = child.child_by_field_name("condition")
    return _unwrap_condition(condition) if condition is not None else None


def _negation_operand(program: Program, node: Node) -> Node | None:
    """The operand of ``!x`` / ``not x``, or None when ``node`` is not a negation."""
    if node.type not in program.syntax.not_types or node.named_child_count != 1:
        return None
    operator = next(_operator_token(program, node), None)
    if operator is None or program.text(operator) not in (b"!", b"not"):
        return None
    return node.named_children[0]


def _negated(program: Program, node: Node) -> bytes:
    operand = _negation_operand(program, node)
    if operand is not None:
        return program.text(operand)
    return program.syntax.negate.format(program.text(node).decode("utf-8")).encode("utf-8")


class Operator:
    """A mutation operator: every site it applies to in a program."""

    name: ClassVar[str] = ""

    def sites(self, program: Program, rng: random.Random) -> Iterator[Change]:
        raise NotImplementedError


class RelationalBoundary(Operator):
    """``<`` <-> ``<=`` and ``>`` <-> ``>=``."""

    name = "relational_boundary"
    table = {b"<": b"<=", b"<=": b"<", b">": b">=", b">=": b">"}

    def sites(self, program, rng):
        return _token_swaps(program, program.syntax.binary_types, self.table)


class NegateCondition(Operator):
    """Negate the condition of an if/while (or drop its negation); ``==`` <-> ``!=``."""

    name = "negate_condition"
    equality = {b"==": b"!=", b"!=": b"==", b"===": b"!==", b"!==": b"==="}

    def sites(self, program, rng):
        syntax = program.syntax
        for node in program.nodes_in_span():
            if node.type in syntax.condition_types:
                condition = _condition_of(node)
                if condition is not None and program.in_span(condition):
                    yield (_replace(condition, _negated(program, condition)),)
        yield from _token_swaps(program, syntax.binary_types, self.equality)


class ArithmeticSwap(Operator):
    """``+`` <-> ``-``, ``*`` <-> ``/``, ``%`` -> ``/``, and the compound assignments."""

    name = "arithmetic_swap"
    table = {b"+": b"-", b"-": b"+", b"*": b"/", b"/": b"*", b"%": b"/", b"//": b"/"}
    compound = {b"+=": b"-=", b"-=": b"+=", b"*=": b"/=", b"/=": b"*="}

    def sites(self, program, rng):
        syntax = program.syntax
        yield from _token_swaps(program, syntax.binary_types, self.table)
        yield from _token_swaps(program, syntax.compound_assignment_types, self.compound)


class LogicalSwap(Operator):
    """``&&`` <-> ``||`` and ``and`` <-> ``or``."""

    name = "logical_swap"
    table = {b"&&": b"||", b"||": b"&&", b"and": b"or", b"or": b"and"}

    def sites(self, program, rng):
        return _token_swaps(program, program.syntax.binary_types, self.table)


def _bumped_literal(program: Program, node: Node, rng: random.Random) -> bytes | None:
    match = _DECIMAL.match(program.text(node))
    if match is None:
        return None
    digits, suffix = match.groups()
    value = int(digits)
    if len(digits) > 1 and digits.startswith(b"0"):  # octal in C-family languages
        return None
    step = 1 if value == 0 or rng.random() < 0.5 else -1
    return str(value + step).encode() + suffix


class OffByOne(Operator):
    """An integer literal +-1; a loop bound +-1; a Ruby range ``..`` <-> ``...``."""

    name = "off_by_one"

    def sites(self, program, rng):
        syntax = program.syntax
        for node in program.nodes_in_span():
            if node.type in syntax.integer_types:
                bumped = _bumped_literal(program, node, rng)
                if bumped is not None:
                    yield (_replace(node, bumped),)
            elif node.type in syntax.loop_types:
                yield from self._loop_bound(program, node, rng)
            elif node.type == "range" and syntax.language == "Ruby":
                for token in _operator_token(program, node):
                    swapped = {b"..": b"...", b"...": b".."}.get(program.text(token))
                    if swapped:
                        yield (_replace(token, swapped),)

    def _loop_bound(self, program: Program, loop: Node, rng: random.Random) -> Iterator[Change]:
        syntax = program.syntax
        bound = None
        condition = _condition_of(loop)
        if condition is not None and condition.type in syntax.binary_types:
            tokens = [program.text(t) for t in _operator_token(program, condition)]
            if any(t in (b"<", b"<=", b">", b">=") for t in tokens):
                bound = condition.child_by_field_name("right") or condition.named_children[-1]
        elif loop.type == "for_statement" and syntax.language == "Python":
            bound = self._range_stop(program, loop.child_by_field_name("right"))
        if bound is None or bound.type in syntax.integer_types or not program.in_span(bound):
            return
        text = program.text(bound)
        if bound.named_child_count and bound.type not in ("call", "call_expression",
                                                          "method_invocation", "member_expression",
                                                          "field_expression", "subscript",
                                                          "attribute", "invocation_expression",
                                                          "member_access_expression",
                                                          "selector_expression"):
            text = b"(" + text + b")"
        step = b" + 1" if rng.random() < 0.5 else b" - 1"
        yield (_replace(bound, text + step),)

    @staticmethod
    def _range_stop(program: Program, call: Node | None) -> Node | None:
        if call is None or call.type != "call":
            return None
        function = call.child_by_field_name("function")
        arguments = call.child_by_field_name("arguments")
        if function is None or arguments is None or program.text(function) != b"range":
            return None
        values = [a for a in arguments.named_children if a.type != "comment"]
        if len(values) == 1:
            return values[0]
        if len(values) >= 2:
            return values[1]
        return None


def _statement_body(program: Program, node: Node | None) -> tuple[int, int] | None:
    """The byte span of a branch's statements, without the ``else`` keyword."""
    if node is None:
        return None
    syntax = program.syntax
    if node.type in ("else_clause", "else"):
        inner = node.child_by_field_name("body")
        if inner is not None:
            return inner.start_byte, inner.end_byte
        named = [c for c in node.named_children if not is_comment(syntax, c)]
        if not named:
            return None
        if len(named) == 1 and named[0].type in syntax.if_types | {"elsif", "elif_clause"}:
            return None  # an else-if chain
        return named[0].start_byte, named[-1].end_byte
    if node.type == "then":
        named = [c for c in node.named_children if not is_comment(syntax, c)]
        return (named[0].start_byte, named[-1].end_byte) if named else None
    if node.type in syntax.if_types | {"elsif", "elif_clause"}:
        return None
    return node.start_byte, node.end_byte


class SwapBranches(Operator):
    """Swap the two branches of an if/else (no else-if chains) or of a ternary expression."""

    name = "swap_branches"

    def sites(self, program, rng):
        syntax = program.syntax
        for node in program.nodes_in_span():
            if node.type in syntax.if_types:
                if any(c.type in ("elif_clause", "elsif") for c in node.children):
                    continue
                first = _statement_body(program, node.child_by_field_name("consequence"))
                second = _statement_body(program, node.child_by_field_name("alternative"))
            elif node.type in syntax.ternary_types:
                parts = self._ternary_parts(node)
                if parts is None:
                    continue
                first, second = ((p.start_byte, p.end_byte) for p in parts)
            else:
                continue
            if first is None or second is None:
                continue
            one = program.source[first[0]:first[1]]
            other = program.source[second[0]:second[1]]
            if one.strip() != other.strip():
                yield (Edit(first[0], first[1], other), Edit(second[0], second[1], one))

    @staticmethod
    def _ternary_parts(node: Node) -> tuple[Node, Node] | None:
        consequence = node.child_by_field_name("consequence")
        alternative = node.child_by_field_name("alternative")
        if consequence is not None and alternative is not None:
            return consequence, alternative
        named = node.named_children
        if node.type == "conditional_expression" and len(named) == 3:  # Python: a if c else b
            return named[0], named[2]
        return None


class RemoveStatement(Operator):
    """Delete one expression statement, assignment, break or continue from a block."""

    name = "remove_statement"

    def sites(self, program, rng):
        syntax = program.syntax
        for node in program.nodes_in_span():
            parent = node.parent
            if node.type not in syntax.removable_types or parent is None:
                continue
            if parent.type not in syntax.block_types:
                continue
            if syntax.docstrings and node.named_child_count == 1 and node.named_children[0].type == "string":
                continue
            if node.child_by_field_name("block") is not None:  # Ruby: a call with a loop body
                continue
            statements = [c for c in parent.named_children if not is_comment(syntax, c)]
            if len(statements) < 2:
                continue
            start, end = line_span(program.source, node.start_byte, node.end_byte)
            yield (Edit(start, end, b""),)


def _return_value(program: Program, node: Node) -> Node | None:
    values = [c for c in node.named_children if not is_comment(program.syntax, c)]
    if len(values) != 1:
        return None
    value = values[0]
    if value.type in ("argument_list", "expression_list"):  # Ruby, Go
        inner = [c for c in value.named_children if not is_comment(program.syntax, c)]
        return inner[0] if len(inner) == 1 else None
    return value


class ChangeReturn(Operator):
    """Return a different value: flip a boolean, bump a number, negate a test, empty a string."""

    name = "change_return"

    def sites(self, program, rng):
        syntax = program.syntax
        values = [_return_value(program, node) for node in program.nodes_in_span()
                  if node.type in syntax.return_types]
        if syntax.implicit_return_types:  # Ruby: a method returns its last expression
            for node in walk(program.root):
                if node.type in syntax.implicit_return_types:
                    values.append(self._last_expression(program, node))
        for value in values:
            if value is None or not program.in_span(value):
                continue
            replacement = self._replacement(program, value, rng)
            if replacement is not None and replacement != program.text(value):
                yield (_replace(value, replacement),)

    @staticmethod
    def _last_expression(program: Program, method: Node) -> Node | None:
        syntax = program.syntax
        body = method.child_by_field_name("body")
        statements = [c for c in body.named_children if not is_comment(syntax, c)] if body else []
        if not statements or statements[-1].type in syntax.return_types | syntax.if_types:
            return None
        return statements[-1]

    @staticmethod
    def _replacement(program: Program, value: Node, rng: random.Random) -> bytes | None:
        syntax = program.syntax
        text = program.text(value)
        if value.type in (syntax.true_type, syntax.false_type) and text in (syntax.true_text.encode(), syntax.false_text.encode()):
            return (syntax.false_text if text == syntax.true_text.encode() else syntax.true_text).encode()
        if value.type in syntax.integer_types:
            return _bumped_literal(program, value, rng)
        if _negation_operand(program, value) is not None:
            return _negated(program, value)
        if value.type in syntax.binary_types:
            tokens = {program.text(t) for t in _operator_token(program, value)}
            if tokens & {b"<", b"<=", b">", b">=", b"==", b"!=", b"===", b"!==", b"&&", b"||",
                         b"and", b"or"}:
                return _negated(program, value)
        if value.type in syntax.string_types and len(text) > 2 and text[:1] in (b'"', b"'"):
            return b'""'
        if syntax.dynamic and syntax.null_text and value.type not in ("none", "nil", "null", "undefined"):
            return syntax.null_text.encode()
        return None


class SwapArguments(Operator):
    """Swap two neighbouring positional arguments of a call."""

    name = "swap_arguments"
    _not_positional = frozenset({"keyword_argument", "list_splat", "dictionary_splat", "pair",
                                 "block_argument", "splat_argument", "hash_splat_argument",
                                 "spread_element", "comment"})

    def sites(self, program, rng):
        syntax = program.syntax
        for node in program.nodes_in_span():
            if node.type not in syntax.argument_list_types or node.parent is None:
                continue
            if node.parent.type not in syntax.call_types:
                continue
            arguments = [a for a in node.named_children if a.type not in self._not_positional]
            if len(arguments) != node.named_child_count - sum(1 for a in node.named_children if a.type == "comment"):
                continue  # keyword or splat arguments: leave the call alone
            for left, right in zip(arguments, arguments[1:], strict=False):
                if program.text(left) != program.text(right):
                    yield (_replace(left, program.text(right)), _replace(right, program.text(left)))


class WrongVariable(Operator):
    """Use another local variable of the same scope (same declared type where types are written)."""

    name = "wrong_variable"

    def sites(self, program, rng):
        found = declarations(program)
        # A wrong variable in a loop's update (``i++`` -> ``n++``) mostly makes a loop that never
        # ends: a bug, but one that costs a full timeout to verify. Those sites are left out.
        updates = [(part.start_byte, part.end_byte) for node in program.nodes_in_span()
                   if node.type in ("for_statement", "for_clause")
                   for name in ("update", "increment")
                   if (part := node.child_by_field_name(name)) is not None]
        for node, declaration in references(program, found):
            if not program.in_span(node):
                continue
            if any(start <= node.start_byte < end for start, end in updates):
                continue
            names = sorted({
                other.name for other in found
                if other.name != declaration.name and other.function == declaration.function
                and visible(other, node) and self._compatible(declaration, other)
            })
            if names:
                yield (_replace(node, rng.choice(names)),)

    @staticmethod
    def _compatible(first, second) -> bool:
        if first.type_text is None or second.type_text is None:
            return True
        return first.type_text == second.type_text


OPERATORS: dict[str, Operator] = {
    operator.name: operator
    for operator in (RelationalBoundary(), NegateCondition(), ArithmeticSwap(), LogicalSwap(),
                     OffByOne(), SwapBranches(), RemoveStatement(), ChangeReturn(),
                     SwapArguments(), WrongVariable())
}


def operator_names() -> list[str]:
    """Every operator's name, in registry order."""
    return list(OPERATORS)


def resolve_operators(names: Sequence[str] | None) -> list[Operator]:
    """The operators called ``names`` (all of them for ``None``); unknown names are an error."""
    if names is None:
        return list(OPERATORS.values())
    unknown = [name for name in names if name not in OPERATORS]
    if unknown:
        raise ValueError(f"unknown mutation operator(s) {unknown}; known: {operator_names()}")
    return [OPERATORS[name] for name in names]


def derive_seed(seed: int, *parts: bytes | str) -> int:
    """A 64-bit seed from ``seed`` and the content it applies to (no machine-dependent hash)."""
    digest = hashlib.sha256(str(seed).encode())
    for part in parts:
        digest.update(b"\x00")
        digest.update(part.encode("utf-8") if isinstance(part, str) else part)
    return int.from_bytes(digest.digest()[:8], "big")


def candidate_changes(program: Program, seed: int,
                      operators: Sequence[str] | None = None) -> list[tuple[str, Change]]:
    """Every (operator, change) for ``program``, in the seeded order mutants are tried in.

    Sites are shuffled within each operator, then the operators take turns (in a shuffled
    order), so the first few mutants come from different operators.
    """
    rng = random.Random(derive_seed(seed, program.language.value, program.source))
    queues: list[tuple[str, list[Change]]] = []
    for operator in resolve_operators(operators):
        changes = list(operator.sites(program, rng))
        rng.shuffle(changes)
        if changes:
            queues.append((operator.name, changes))
    rng.shuffle(queues)
    ordered: list[tuple[str, Change]] = []
    depth = 0
    while any(depth < len(changes) for _, changes in queues):
        for name, changes in queues:
            if depth < len(changes):
                ordered.append((name, changes[depth]))
        depth += 1
    return ordered


_TELLING = re.compile(rb"bug|wrong|error|incorrect|broken|mistake|fixme|faulty|off_?by", re.IGNORECASE)


class VariantCheck:
    """Whether a variant of a program is acceptable as the rejected side of a pair.

    Acceptable: it parses with no error, its tree differs from the original's (layout and
    comments aside), and it adds no hint: no comment the original lacks, and no identifier the
    original lacks. With ``new_names="untelling"`` (for LLM-written variants, which may call
    another function) new identifiers are allowed unless they name the bug (``wrong_sum``).
    """

    def __init__(self, program: Program, new_names: str = "none") -> None:
        self.program = program
        self.new_names = new_names
        self.shape = fingerprint(program)
        self.names = identifiers(program)
        self.comments = comments(program)

    def accepts(self, source: bytes) -> bool:
        variant = parse_program(self.program.language, source)
        if variant is None or fingerprint(variant) == self.shape:
            return False
        if comments(variant) - self.comments:
            return False
        added = identifiers(variant) - self.names
        if self.new_names == "untelling":
            return not any(_TELLING.search(name) for name in added)
        return not added


def iter_mutants(program: Program, seed: int,
                 operators: Sequence[str] | None = None) -> Iterator[Mutant]:
    """Valid mutants of ``program`` in seeded order (see :class:`VariantCheck` for "valid")."""
    check = VariantCheck(program)
    seen = {program.source}
    for name, change in candidate_changes(program, seed, operators):
        source = apply_edits(program.source, change)
        if source in seen:
            continue
        seen.add(source)
        if check.accepts(source):
            yield Mutant(name, source, change)


def generate_mutants(program: Program, seed: int, limit: int,
                     operators: Sequence[str] | None = None) -> list[Mutant]:
    """The first ``limit`` valid mutants of ``program`` (fewer when it has fewer sites)."""
    mutants = []
    for mutant in iter_mutants(program, seed, operators):
        mutants.append(mutant)
        if len(mutants) >= limit:
            break
    return mutants
