"""Named definitions of a parsed source: functions and methods, classes and other types.

One table per language names the tree-sitter node types that define something with a name
(``function``: functions, methods, constructors; ``class``: classes, structs, interfaces, enums,
Go types, Ruby modules, C++ ``impl``-like bodies). :func:`definitions` walks a tree once and
returns each definition with its qualified name (the names of the enclosing definitions joined
with ``.``, e.g. ``Outer.Inner.method``; Go methods are qualified by their receiver type), its
line span and its ancestors, which is what :mod:`codeprefs.pipelines.scopes` needs to find the smallest
definition around a change.
"""

from __future__ import annotations

import functools
from collections import Counter
from dataclasses import dataclass, field

from tree_sitter import Node, Query, QueryCursor, Tree

from codeprefs.core.schema import Language
from codeprefs.parsers.languages import grammar

FUNCTION = "function"
CLASS = "class"


@dataclass(frozen=True)
class DefinitionTable:
    """The node types that define a named function or type in one grammar."""

    functions: frozenset[str]
    classes: frozenset[str]
    # nodes that wrap a definition and belong to it (decorators, templates, export, JS const f = ...)
    wrappers: frozenset[str] = frozenset()


_C_CLASSES = frozenset({"struct_specifier", "union_specifier", "enum_specifier"})

TABLES: dict[Language, DefinitionTable] = {
    Language.C: DefinitionTable(frozenset({"function_definition"}), _C_CLASSES),
    Language.CPP: DefinitionTable(frozenset({"function_definition"}),
                                  _C_CLASSES | {"class_specifier"}, frozenset({"template_declaration"})),
    Language.CSHARP: DefinitionTable(
        frozenset({"method_declaration", "constructor_declaration", "destructor_declaration",
                   "operator_declaration", "local_function_statement", "property_declaration"}),
        frozenset({"class_declaration", "struct_declaration", "interface_declaration",
                   "enum_declaration", "record_declaration"})),
    Language.GO: DefinitionTable(frozenset({"function_declaration", "method_declaration"}),
                                 frozenset({"type_spec"}), frozenset({"type_declaration"})),
    Language.JAVA: DefinitionTable(
        frozenset({"method_declaration", "constructor_declaration", "compact_constructor_declaration"}),
        frozenset({"class_declaration", "interface_declaration", "enum_declaration",
                   "record_declaration", "annotation_type_declaration"})),
    Language.JAVASCRIPT: DefinitionTable(
        # variable_declarator, assignment_expression and pair only with a function as the value:
        # `const f = () => ...`, `res.send = function send(body) {...}`, `{ get: function () {...} }`
        frozenset({"function_declaration", "generator_function_declaration", "method_definition",
                   "variable_declarator", "assignment_expression", "pair"}),
        frozenset({"class_declaration"}),
        frozenset({"export_statement", "lexical_declaration", "variable_declaration",
                   "expression_statement"})),
    Language.PYTHON: DefinitionTable(frozenset({"function_definition"}), frozenset({"class_definition"}),
                                     frozenset({"decorated_definition"})),
    Language.RUBY: DefinitionTable(frozenset({"method", "singleton_method"}), frozenset({"class", "module"})),
}

_JS_FUNCTION_VALUES = frozenset({"arrow_function", "function_expression", "function",
                                 "generator_function"})
# JavaScript nodes that bind a name to a function value: (the name's field, the value's field).
_JS_BINDINGS = {"variable_declarator": ("name", "value"), "assignment_expression": ("left", "right"),
                "pair": ("key", "value")}
_NAME_TYPES = frozenset({"identifier", "field_identifier", "qualified_identifier", "destructor_name",
                         "operator_name", "type_identifier", "property_identifier", "constant",
                         "scope_resolution", "private_property_identifier", "template_function"})


@dataclass(frozen=True)
class Definition:
    """One named definition. Lines are 0-based and inclusive; ``start_line`` includes the
    wrappers (decorators, ``template <...>``, ``export``, ``const f =``)."""

    kind: str  # function | class
    node_type: str
    name: str  # qualified: Outer.Inner.method
    start_line: int
    end_line: int
    start_byte: int
    end_byte: int
    ordinal: int  # among definitions with the same node type and name, in file order (overloads)
    header_line: int  # the line the definition itself starts on (after decorators, template <...>)
    ancestors: tuple[str, ...] = field(default=())  # keys of the enclosing definitions, outermost first
    doc_line: int = -1  # the first line of the comments right above it (its doc); -1: start_line

    @property
    def doc_start(self) -> int:
        """The first line of the definition with the comment block right above it."""
        return self.start_line if self.doc_line < 0 else self.doc_line

    @property
    def key(self) -> str:
        """What matches a definition across the two versions of a file: kind, type, name, overload."""
        return f"{self.kind}:{self.node_type}:{self.name}#{self.ordinal}"


# Top-level nodes that import or include what a definition uses (read-only context for a prompt).
IMPORT_TYPES: dict[Language, frozenset[str]] = {
    Language.C: frozenset({"preproc_include"}),
    Language.CPP: frozenset({"preproc_include", "using_declaration", "alias_declaration"}),
    Language.CSHARP: frozenset({"using_directive"}),
    Language.GO: frozenset({"package_clause", "import_declaration"}),
    Language.JAVA: frozenset({"package_declaration", "import_declaration"}),
    Language.JAVASCRIPT: frozenset({"import_statement"}),
    Language.PYTHON: frozenset({"import_statement", "import_from_statement", "future_import_statement"}),
    Language.RUBY: frozenset(),  # `require` calls: see imports()
}


def imports(tree: Tree, source: bytes, language: Language) -> list[tuple[int, int]]:
    """The line spans (0-based, inclusive) of the top-level imports, includes and packages."""
    types = IMPORT_TYPES[Language(language)]
    spans = []
    for node in tree.root_node.named_children:
        wanted = node.type in types or (
            language is Language.RUBY and node.type == "call"
            and source[node.start_byte:node.end_byte].startswith((b"require", b"load ")))
        if wanted:  # a C `#include` node ends at column 0 of the next line: not that line
            end = node.end_point[0] - (1 if node.end_point[1] == 0 and node.end_point[0] > node.start_point[0] else 0)
            spans.append((node.start_point[0], end))
    return spans


def _text(node: Node, source: bytes) -> str:
    return " ".join(source[node.start_byte:node.end_byte].decode("utf-8", "replace").split())


def _c_declarator_name(node: Node, source: bytes) -> str | None:
    """The declared name at the bottom of a C/C++ declarator chain (``*f(int)`` -> ``f``)."""
    current: Node | None = node.child_by_field_name("declarator")
    while current is not None:
        if current.type in _NAME_TYPES:
            return _text(current, source)
        current = current.child_by_field_name("declarator") or next(
            (child for child in current.named_children if child.type in _NAME_TYPES), None)
    return None


def _go_receiver(node: Node, source: bytes) -> str | None:
    receiver = node.child_by_field_name("receiver")
    if receiver is None:
        return None
    for child in receiver.named_children:
        kind = child.child_by_field_name("type")
        while kind is not None and kind.type in ("pointer_type", "generic_type", "parenthesized_type"):
            kind = kind.child_by_field_name("type") or (kind.named_children[0] if kind.named_children else None)
        if kind is not None:
            return _text(kind, source)
    return None


def _name(node: Node, source: bytes, language: Language) -> str | None:
    """The name a definition node declares, or ``None`` when it is anonymous or not a definition."""
    if language is Language.JAVASCRIPT and node.type in _JS_BINDINGS:
        target, value = (node.child_by_field_name(field) for field in _JS_BINDINGS[node.type])
        if value is None or value.type not in _JS_FUNCTION_VALUES or target is None:
            return None
        if node.type != "variable_declarator":  # `a.b.c = function` / `'key': function`
            return _text(target, source).strip("'\"`")
    if language in (Language.C, Language.CPP) and node.type == "function_definition":
        return _c_declarator_name(node, source)
    if node.type in _C_CLASSES | {"class_specifier"} and node.child_by_field_name("body") is None:
        return None  # a use of the type (`struct s x;`), not its definition
    name = node.child_by_field_name("name")
    if name is None:
        return None
    text = _text(name, source)
    if language is Language.GO and node.type == "method_declaration":
        receiver = _go_receiver(node, source)
        return f"{receiver}.{text}" if receiver else text
    return text


def _outer(node: Node, table: DefinitionTable) -> Node:
    """The node with the definition's wrappers (decorators, template, export, declaration)."""
    while node.parent is not None and node.parent.type in table.wrappers:
        node = node.parent
    return node


@functools.cache
def _definition_query(language: Language) -> Query | None:
    """One query capturing every node type that may define something in ``language``'s grammar
    (the grammar walks the tree in C); ``None`` if the grammar knows none of them."""
    table = TABLES[language]
    language_grammar = grammar(language)
    types = []
    for node_type in sorted(table.functions | table.classes):
        try:
            Query(language_grammar, f"({node_type}) @d")
        except Exception:  # a type this grammar version does not have
            continue
        types.append(f"({node_type})")
    return Query(language_grammar, f"[{' '.join(types)}] @d") if types else None


# Keywords a parse can take for a definition's name: a macro before a namespace
# (``FMT_BEGIN_NAMESPACE namespace detail {``) parses in C++ as a function named "namespace",
# which would make a whole namespace one "function" and prefix every function inside it.
NOT_NAMES = frozenset({"namespace", "template", "typename", "class", "struct", "union", "enum", "typedef",
                       "using", "extern", "static", "inline", "return", "if", "else", "for", "while", "do",
                       "switch", "case", "try", "catch", "operator"})


def definitions(tree: Tree, source: bytes, language: Language) -> list[Definition]:
    """Every named definition of ``source``, in file order (outer before inner)."""
    language = Language(language)
    table = TABLES[language]
    query = _definition_query(language)
    if query is None:
        return []
    nodes = _file_order(QueryCursor(query).captures(tree.root_node).get("d", []))
    named: dict[int, tuple[tuple[str, ...], tuple[str, ...]]] = {}  # node id -> (names, keys) inside it
    found: list[Definition] = []
    seen: Counter[tuple[str, str]] = Counter()
    for node in nodes:
        kind = FUNCTION if node.type in table.functions else CLASS
        name = _name(node, source, language)
        if not name or name in NOT_NAMES:
            continue
        names, keys = _enclosing(node, named)
        qualified = ".".join((*names, name))
        ordinal = seen[(node.type, qualified)]
        seen[(node.type, qualified)] += 1
        outer = _outer(node, table)
        end_line = node.end_point[0] - (1 if node.end_point[1] == 0 and node.end_point[0] > outer.start_point[0] else 0)
        definition = Definition(kind, node.type, qualified, outer.start_point[0], end_line,
                                outer.start_byte, node.end_byte, ordinal, node.start_point[0], keys,
                                _doc_line(outer, source))
        found.append(definition)
        named[node.id] = ((*names, name), (*keys, definition.key))
    return found


def _doc_line(outer: Node, source: bytes) -> int:
    """The first line of the comments right above ``outer`` (each on lines of its own, the last
    ending on the line before it, none apart by a blank line), or -1 when there are none."""
    first = outer.start_point[0]
    found = -1
    sibling = outer.prev_sibling
    while sibling is not None and "comment" in sibling.type and sibling.end_point[0] == first - 1:
        line_start = source.rfind(b"\n", 0, sibling.start_byte) + 1
        if source[line_start:sibling.start_byte].strip():  # a comment after code on its line
            break
        first = found = sibling.start_point[0]
        sibling = sibling.prev_sibling
    return found


def _file_order(nodes: list[Node]) -> list[Node]:
    """File order, outer before inner: by start, then the longer (enclosing) node first, then
    the shallower of nodes with the same span (their depth is only counted for such ties)."""
    nodes = sorted(nodes, key=lambda node: (node.start_byte, -node.end_byte))
    first = 0
    while first < len(nodes):
        last = first + 1
        while (last < len(nodes) and nodes[last].start_byte == nodes[first].start_byte
               and nodes[last].end_byte == nodes[first].end_byte):
            last += 1
        if last - first > 1:
            nodes[first:last] = sorted(nodes[first:last], key=_depth)
        first = last
    return nodes


def _depth(node: Node) -> int:
    depth = 0
    while node.parent is not None:
        node, depth = node.parent, depth + 1
    return depth


def _enclosing(node: Node, named: dict[int, tuple[tuple[str, ...], tuple[str, ...]]]
               ) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The names and keys of the nearest named definition around ``node`` (already seen)."""
    parent = node.parent
    while parent is not None:
        if parent.id in named:
            return named[parent.id]
        parent = parent.parent
    return (), ()
