"""Bounded tree-sitter parsing and the syntax signals codeprefs validates code with.

Parsing untrusted code must never hang or blow up a worker, so every parse here is bounded by
a size cap (checked before the parser sees a byte) and a wall-clock limit enforced through
tree-sitter's progress callback, which cancels the parse cleanly.

The signals are cheap by construction, so that validating costs about what parsing costs:
``Node.descendant_count`` is O(1), the error walk only descends into subtrees whose
``has_error`` flag is set, and the depth check stops as soon as it has seen enough levels.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from itertools import zip_longest

from tree_sitter import Node, Parser, Tree

from codeprefs.core.schema import Language
from codeprefs.parsers.languages import grammar


class ParseLimitExceeded(Exception):
    """The source broke a parse limit; ``reason`` is ``too_large`` or ``parse_timeout``."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason


@dataclass(frozen=True)
class ParseLimits:
    """Bounds on one parse. ``max_bytes`` is checked first, ``timeout_s`` while parsing."""

    max_bytes: int = 2_000_000
    timeout_s: float = 5.0


@dataclass(frozen=True)
class SyntaxReport:
    """What validation needs to know about one parsed source."""

    nbytes: int
    nodes: int
    error_nodes: int  # ERROR plus MISSING nodes
    error_bytes: int  # bytes covered by ERROR nodes (MISSING nodes cover none)
    min_depth_reached: bool  # the tree is at least ``min_depth`` levels deep

    @property
    def has_error(self) -> bool:
        return self.error_nodes > 0

    @property
    def error_fraction(self) -> float:
        return self.error_bytes / self.nbytes if self.nbytes else 0.0


_local = threading.local()
_READ_CHUNK = 1 << 20


def _parser(language: Language) -> Parser:
    parsers: dict[Language, Parser] | None = getattr(_local, "parsers", None)
    if parsers is None:
        parsers = _local.parsers = {}
    parser = parsers.get(language)
    if parser is None:
        parser = parsers[language] = Parser(grammar(language))
    return parser


def parse(source: bytes, language: Language, limits: ParseLimits = ParseLimits(),
          old_tree: Tree | None = None) -> Tree:
    """Parse ``source`` with ``language``'s grammar within ``limits``.

    ``old_tree``, a tree of an earlier version already edited (``Tree.edit``) to match
    ``source``, makes the parse incremental: tree-sitter reuses its unchanged subtrees.
    Raises :class:`ParseLimitExceeded` when the source is over the size cap or the parse runs
    past its time limit.
    """
    if len(source) > limits.max_bytes:
        raise ParseLimitExceeded("too_large", f"{len(source)} bytes > {limits.max_bytes}")
    deadline = time.monotonic() + limits.timeout_s

    def read(offset: int, _point: tuple[int, int]) -> bytes:
        return source[offset : offset + _READ_CHUNK]

    def over_time(_offset: int, _has_error: bool) -> bool:
        return time.monotonic() > deadline

    # A bytestring source ignores the progress callback, so the source is read through a
    # callback; tree-sitter then checks the clock every few hundred operations.
    try:
        parser = _parser(language)
        tree = (parser.parse(read, progress_callback=over_time) if old_tree is None
                else parser.parse(read, old_tree=old_tree, progress_callback=over_time))
    except ValueError as error:  # raised when the progress callback cancels the parse
        _parser(language).reset()
        if time.monotonic() > deadline:
            raise ParseLimitExceeded("parse_timeout", f"over {limits.timeout_s}s") from error
        raise
    return tree


def error_spans(root: Node) -> tuple[int, int]:
    """Count ERROR/MISSING nodes and the bytes ERROR nodes cover, visiting only broken subtrees."""
    if not root.has_error:
        return 0, 0
    error_nodes = error_bytes = 0
    stack = [root]
    while stack:
        node = stack.pop()
        if node.is_error:
            error_nodes += 1
            error_bytes += node.end_byte - node.start_byte
            continue  # everything under an ERROR node is already counted in its span
        if node.is_missing:
            error_nodes += 1
            continue
        stack.extend(child for child in node.children if child.has_error)
    return error_nodes, error_bytes


def depth_at_least(root: Node, levels: int) -> bool:
    """Whether the tree has a path of ``levels`` nodes from the root (the root is level 1).

    Stops at the first path that deep, so it costs a handful of steps on real code.
    """
    if levels <= 1:
        return True
    cursor = root.walk()
    depth = 1
    while True:
        if cursor.goto_first_child():
            depth += 1
            if depth >= levels:
                return True
            continue
        while not cursor.goto_next_sibling():
            if not cursor.goto_parent():
                return False
            depth -= 1


def ast_depth(root: Node) -> int:
    """The number of levels of the tree (a lone root has depth 1). Walks every node."""
    cursor = root.walk()
    down, across, up = cursor.goto_first_child, cursor.goto_next_sibling, cursor.goto_parent
    depth = deepest = 1
    while True:
        if down():
            depth += 1
            if depth > deepest:
                deepest = depth
            continue
        while not across():
            if not up():
                return deepest
            depth -= 1


def inspect_source(
    source: bytes,
    language: Language,
    limits: ParseLimits = ParseLimits(),
    min_depth: int = 3,
) -> SyntaxReport:
    """Parse ``source`` and report its size, node count, errors and whether it is deep enough."""
    return inspect_tree(parse(source, language, limits), source, min_depth)


def _is_comment(node: Node) -> bool:
    return "comment" in node.type  # comment, line_comment, block_comment, doc_comment, ...


_PY_DOCSTRING_OWNERS = frozenset({"function_definition", "class_definition"})


def _is_python_docstring(node: Node) -> bool:
    """A string statement that opens a module, class or function body."""
    if node.type != "expression_statement" or node.named_child_count != 1:
        return False
    if node.named_children[0].type not in ("string", "concatenated_string"):
        return False
    parent = node.parent
    if parent is None or not (parent.type == "module" or (
            parent.type == "block" and parent.parent is not None and parent.parent.type in _PY_DOCSTRING_OWNERS)):
        return False
    first = next((child for child in parent.named_children if not _is_comment(child)), None)
    return first is not None and first.id == node.id


def code_tokens(tree: Tree, source: bytes, language: Language) -> Iterator[bytes]:
    """The tokens of ``source`` in order, without comments (and Python docstrings) or whitespace.

    A token is a leaf's text, or text a node holds between its children that no child covers
    (string contents in some grammars), kept as written, inner whitespace included. Two sources
    with the same tokens differ only in comments, docstrings and layout.
    """
    stack: list[Node | bytes] = [tree.root_node]
    while stack:
        item = stack.pop()
        if isinstance(item, bytes):
            yield item
            continue
        if _is_comment(item) or (language is Language.PYTHON and _is_python_docstring(item)):
            continue
        children = item.children
        if not children:
            text = source[item.start_byte:item.end_byte]
            if text.strip():
                yield text
            continue
        parts: list[Node | bytes] = []
        position = item.start_byte
        for child in children:
            gap = source[position:child.start_byte]
            if gap.strip():
                parts.append(gap)
            parts.append(child)
            position = max(position, child.end_byte)
        tail = source[position:item.end_byte]
        if tail.strip():
            parts.append(tail)
        stack.extend(reversed(parts))


def same_code(trees: tuple[Tree, Tree], sources: tuple[bytes, bytes], language: Language) -> bool:
    """Whether two parsed sources have the same :func:`code_tokens` (stops at the first difference)."""
    first = code_tokens(trees[0], sources[0], language)
    second = code_tokens(trees[1], sources[1], language)
    return all(a == b for a, b in zip_longest(first, second))


def inspect_tree(tree: Tree, source: bytes, min_depth: int = 3) -> SyntaxReport:
    """:func:`inspect_source` for an already parsed ``source``."""
    root = tree.root_node
    error_nodes, error_bytes = error_spans(root)
    return SyntaxReport(
        nbytes=len(source),
        nodes=root.descendant_count,
        error_nodes=error_nodes,
        error_bytes=error_bytes,
        min_depth_reached=depth_at_least(root, min_depth),
    )
