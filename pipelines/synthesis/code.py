"""Source code as bytes plus its tree-sitter tree: byte-span edits, walks and comparisons.

Mutations and the readability degrader never print a tree back out; they edit the original
bytes at the spans tree-sitter reports, so everything they do not touch (layout, comments,
string escapes) stays byte for byte what the author wrote.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from tree_sitter import Node, Tree

from codeprefs.core.schema import Language
from codeprefs.parsers.treesitter import ParseLimitExceeded, ParseLimits, parse
from codeprefs.pipelines.synthesis.languages import Syntax, syntax_of


@dataclass(frozen=True, order=True)
class Edit:
    """Replace ``source[start:end]`` with ``text`` (byte offsets)."""

    start: int
    end: int
    text: bytes


class EditConflict(ValueError):
    """Two edits of one change overlap."""


def apply_edits(source: bytes, edits: Sequence[Edit]) -> bytes:
    """``source`` with every edit applied; edits must not overlap."""
    ordered = sorted(edits)
    pieces: list[bytes] = []
    position = 0
    for edit in ordered:
        if edit.start < position or edit.end < edit.start:
            raise EditConflict(f"overlapping edit at bytes {edit.start}-{edit.end}")
        pieces.append(source[position:edit.start])
        pieces.append(edit.text)
        position = edit.end
    pieces.append(source[position:])
    return b"".join(pieces)


def walk(node: Node) -> Iterator[Node]:
    """Every node under ``node`` (itself included), in document order."""
    cursor = node.walk()
    while True:
        yield cursor.node
        if cursor.goto_first_child():
            continue
        while not cursor.goto_next_sibling():
            if not cursor.goto_parent():  # a cursor made from ``node`` stops there
                return


def text_of(source: bytes, node: Node) -> bytes:
    return source[node.start_byte:node.end_byte]


@dataclass(frozen=True)
class Program:
    """A parsed program and the byte span of it that may be changed (the solution)."""

    language: Language
    source: bytes
    tree: Tree
    span: tuple[int, int]

    @property
    def syntax(self) -> Syntax:
        return syntax_of(self.language)

    @property
    def root(self) -> Node:
        return self.tree.root_node

    def text(self, node: Node) -> bytes:
        return text_of(self.source, node)

    def in_span(self, node: Node) -> bool:
        return self.span[0] <= node.start_byte and node.end_byte <= self.span[1]

    def nodes_in_span(self) -> Iterator[Node]:
        """Nodes lying wholly inside the editable span, in document order."""
        start, end = self.span
        for node in walk(self.root):
            if node.end_byte <= start or node.start_byte >= end:
                continue
            if self.in_span(node):
                yield node


def parse_program(language: Language, source: bytes, span: tuple[int, int] | None = None,
                  limits: ParseLimits = ParseLimits()) -> Program | None:
    """Parse ``source``; ``None`` when it has a syntax error or breaks a parse limit."""
    try:
        tree = parse(source, language, limits)
    except ParseLimitExceeded:
        return None
    if tree.root_node.has_error:
        return None
    return Program(Language(language), source, tree, span or (0, len(source)))


def is_comment(syntax: Syntax, node: Node) -> bool:
    return node.type in syntax.comment_types


def fingerprint(program: Program) -> tuple[tuple[str, bytes], ...]:
    """The tree as (type, leaf text) pairs in document order, comments left out.

    Two programs with equal fingerprints are the same code up to layout and comments.
    """
    syntax = program.syntax
    items = []
    stack = [program.root]
    while stack:
        node = stack.pop()
        if is_comment(syntax, node):
            continue
        items.append((node.type, program.text(node) if node.child_count == 0 else b""))
        stack.extend(reversed(node.children))
    return tuple(items)


def identifiers(program: Program) -> set[bytes]:
    """Every identifier-like name in the program (variables, fields, properties, types)."""
    names = set()
    for node in walk(program.root):
        if node.child_count == 0 and node.is_named and "identifier" in node.type:
            names.add(program.text(node))
    return names


def comments(program: Program) -> Counter[bytes]:
    syntax = program.syntax
    return Counter(program.text(node) for node in walk(program.root) if is_comment(syntax, node))


def line_span(source: bytes, start: int, end: int) -> tuple[int, int]:
    """Widen ``[start, end)`` to whole lines when nothing but blanks shares those lines."""
    line_start = source.rfind(b"\n", 0, start) + 1
    line_end = source.find(b"\n", end)
    line_end = len(source) if line_end < 0 else line_end + 1
    before = source[line_start:start]
    after = source[end:line_end]
    if before.strip() or after.strip():
        return start, end
    return line_start, line_end
