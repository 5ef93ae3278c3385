"""Readability pairs: the same code with meaningless names and no comments.

:func:`degrade` edits only the solution span of a program (the prompt's signature and
docstring are the task, not the answer):

* every local the solution declares with a name of two or more characters is renamed, at every
  use, to a short meaningless name (``a``, ``b``, ... then ``v1``, ``v2``, ...) that clashes with
  no name or keyword of the program;
* comments are removed (a line left blank goes too), and so are docstrings.

:func:`same_structure` then checks, on the tree-sitter trees, that nothing else changed: with
comments and docstrings left out, both trees have the same nodes in the same order, the same
leaf text everywhere but identifiers, and identifiers that map one to one.
"""

from __future__ import annotations

from dataclasses import dataclass

from tree_sitter import Node

from codeprefs.pipelines.synthesis.code import Edit, Program, apply_edits, identifiers, line_span, walk
from codeprefs.pipelines.synthesis.scopes import declarations, is_member_position

_LETTERS = "abcdefghijkmnpqrstuvwxyz"  # no l and o: they read as 1 and 0


@dataclass(frozen=True)
class Degraded:
    """A degraded variant: its source and which of the two changes it made."""

    source: bytes
    renamed: dict[bytes, bytes]
    stripped: int  # comments and docstrings removed

    @property
    def generator(self) -> str:
        parts = (["rename"] if self.renamed else []) + (["strip"] if self.stripped else [])
        return "readability:" + "+".join(parts)


def _meaningless_names(taken: set[bytes]) -> list[bytes]:
    names = [letter.encode() for letter in _LETTERS]
    names += [f"v{index}".encode() for index in range(1, 1000)]
    return [name for name in names if name not in taken]


def _is_docstring(program: Program, node: Node) -> bool:
    """A string statement that opens a function or class body (Python)."""
    if not program.syntax.docstrings or node.type != "expression_statement":
        return False
    if node.named_child_count != 1 or node.named_children[0].type != "string":
        return False
    block = node.parent
    if block is None or block.type != "block" or block.parent is None:
        return False
    first = next((c for c in block.named_children if c.type != "comment"), None)
    return first == node and block.parent.type in ("function_definition", "class_definition")


def _renames(program: Program) -> dict[bytes, bytes]:
    syntax = program.syntax
    excluded: set[bytes] = set()
    for node in walk(program.root):
        if node.child_count == 0 and not program.in_span(node):  # e.g. a parameter of the prompt
            excluded.add(program.text(node))
        if node.type in ("shorthand_property_identifier", "global_statement", "nonlocal_statement"):
            excluded.update(program.text(child) for child in walk(node) if child.child_count == 0)
    names: list[bytes] = []
    for declaration in declarations(program):
        name = declaration.name
        if program.in_span(declaration.node) and len(name) >= 2 and name not in excluded \
                and name not in names and name.decode("utf-8", "replace") not in syntax.keywords:
            names.append(name)
    taken = identifiers(program) | {keyword.encode() for keyword in syntax.keywords}
    return dict(zip(names, _meaningless_names(taken), strict=False))


def _strip_span(program: Program, node: Node) -> Edit:
    source = program.source
    start, end = line_span(source, node.start_byte, node.end_byte)
    if (start, end) != (node.start_byte, node.end_byte):
        return Edit(start, end, b"")
    line_end = source.find(b"\n", end)
    rest = source[end:len(source) if line_end < 0 else line_end]
    if not rest.strip():  # a trailing comment: drop it and the blanks before it
        while start > 0 and source[start - 1:start] in (b" ", b"\t"):
            start -= 1
        return Edit(start, end, b"")
    return Edit(start, end, b" ")  # between two tokens: keep them apart


def degrade(program: Program) -> Degraded | None:
    """The degraded variant of ``program``, or None when there is nothing to degrade."""
    syntax = program.syntax
    renames = _renames(program)
    edits: list[Edit] = []
    stripped = 0
    removed: list[tuple[int, int]] = []
    for node in program.nodes_in_span():
        if node.type in syntax.comment_types or _is_docstring(program, node):
            if any(s <= node.start_byte and node.end_byte <= e for s, e in removed):
                continue
            edit = _strip_span(program, node)
            edits.append(edit)
            removed.append((edit.start, edit.end))
            stripped += 1
        elif node.type in syntax.identifier_types and node.child_count == 0:
            new = renames.get(program.text(node))
            if new is not None and not is_member_position(syntax, node) and \
                    not any(s <= node.start_byte < e for s, e in removed):
                edits.append(Edit(node.start_byte, node.end_byte, new))
    edits = [edit for edit in edits
             if not any(s <= edit.start and edit.end <= e and (s, e) != (edit.start, edit.end)
                        for s, e in removed)]
    if not edits:
        return None
    used = {edit.text for edit in edits if edit.text}
    return Degraded(apply_edits(program.source, edits),
                    {old: new for old, new in renames.items() if new in used}, stripped)


def _shape(program: Program) -> list[tuple[str, bytes, bool]]:
    """(type, leaf text, is identifier) in document order, comments and docstrings left out."""
    syntax = program.syntax
    shape = []
    stack = [program.root]
    while stack:
        node = stack.pop()
        if node.type in syntax.comment_types or _is_docstring(program, node):
            continue
        leaf = node.child_count == 0
        shape.append((node.type, program.text(node) if leaf else b"",
                      leaf and node.type in syntax.identifier_types))
        stack.extend(reversed(node.children))
    return shape


def same_structure(original: Program, degraded: Program) -> bool:
    """Whether ``degraded`` is ``original`` up to comments, docstrings and a consistent renaming."""
    first, second = _shape(original), _shape(degraded)
    if len(first) != len(second):
        return False
    forward: dict[bytes, bytes] = {}
    backward: dict[bytes, bytes] = {}
    for (type_a, text_a, ident_a), (type_b, text_b, _) in zip(first, second, strict=True):
        if type_a != type_b:
            return False
        if ident_a:
            if forward.setdefault(text_a, text_b) != text_b or backward.setdefault(text_b, text_a) != text_a:
                return False
        elif text_a != text_b:
            return False
    return True
