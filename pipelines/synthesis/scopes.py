"""Local variables: where each is declared, where it is visible, and where it is used.

A light, conservative name resolution over the tree-sitter tree, good enough to pick "another
variable of the same scope" for a mutation and to rename locals consistently. It only knows
names declared inside the program (parameters, locals, loop variables); globals, fields and
library names are never touched.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from tree_sitter import Node

from codeprefs.pipelines.synthesis.code import Program, walk
from codeprefs.pipelines.synthesis.languages import DeclarationRule, Syntax

# Containers whose named children are (lists of) declared names: tuple targets, Go's ``a, b :=``.
_PATTERN_TYPES = frozenset({
    "pattern_list", "tuple_pattern", "list_pattern", "expression_list", "list_splat_pattern",
    "dictionary_splat_pattern", "typed_parameter", "array_pattern", "splat_parameter",
    "hash_splat_parameter", "destructured_parameter", "left_assignment_list",
})
# Fields that hold a type or a value, never a declared name.
_NOT_NAME_FIELDS = frozenset({"type", "value", "right", "default_value", "body"})
# Declared types that say nothing (inferred).
_INFERRED_TYPES = frozenset({b"var", b"auto", b"let", b"const"})


@dataclass(frozen=True)
class Declaration:
    """One declared local name."""

    name: bytes
    node: Node  # the identifier at the declaration
    scope: Node  # the node the name is visible in
    function: Node | None  # the enclosing function, None at the top level
    type_text: bytes | None  # as written; None when inferred or unknown


def _ancestor(node: Node, types: frozenset[str]) -> Node | None:
    parent = node.parent
    while parent is not None:
        if parent.type in types:
            return parent
        parent = parent.parent
    return None


def declared_identifiers(syntax: Syntax, node: Node | None) -> list[Node]:
    """The identifier nodes a declarator or pattern declares."""
    if node is None:
        return []
    if node.type in syntax.identifier_types:
        return [node]
    if node.type in syntax.declarator_wrappers:
        inner = node.child_by_field_name("declarator")
        if inner is not None:
            return declared_identifiers(syntax, inner)
        return [n for child in node.named_children for n in declared_identifiers(syntax, child)]
    if node.type in _PATTERN_TYPES:
        found = []
        for index, child in enumerate(node.children):
            if child.is_named and node.field_name_for_child(index) not in _NOT_NAME_FIELDS:
                found.extend(declared_identifiers(syntax, child))
        return found
    return []


def _pointer_suffix(syntax: Syntax, declarator: Node, identifier: Node) -> bytes:
    suffix = b""
    node = identifier.parent
    while node is not None and node != declarator.parent:
        if node.type == "pointer_declarator":
            suffix += b"*"
        elif node.type == "array_declarator":
            suffix += b"[]"
        elif node.type == "reference_declarator":
            suffix += b"&"
        node = node.parent
    return suffix


_FLOAT_LITERALS = frozenset({"float_literal", "real_literal", "decimal_floating_point_literal",
                             "float"})


def _literal_type(syntax: Syntax, value: Node | None) -> bytes | None:
    """The type a literal initializer gives an inferred declaration (``x := 0`` is an int)."""
    if value is None:
        return None
    if value.type in syntax.integer_types and value.type != "number":
        return b"int"
    if value.type in _FLOAT_LITERALS:
        return b"float"
    if value.type in syntax.string_types or value.type == "raw_string_literal":
        return b"string"
    if value.type in (syntax.true_type, syntax.false_type):
        return b"bool"
    return None


def _initializer(declaration: Node, identifier: Node) -> Node | None:
    """The value a declaration gives ``identifier``, when it is written next to it."""
    if declaration.type == "short_var_declaration":  # Go: a, b := 1, 2
        left, right = declaration.child_by_field_name("left"), declaration.child_by_field_name("right")
        if left is None or right is None:
            return None
        names = [child for child in left.named_children]
        values = right.named_children
        index = next((i for i, name in enumerate(names) if name == identifier), None)
        return values[index] if index is not None and index < len(values) else None
    value = declaration.child_by_field_name("value")
    if value is None and declaration.named_child_count > 1:  # C#: name = literal, no field
        value = declaration.named_children[-1]
    if value is not None and value.type == "expression_list" and value.named_child_count == 1:
        value = value.named_children[0]
    return value


def _type_text(program: Program, rule: DeclarationRule, declaration: Node, identifier: Node,
               holder: Node) -> bytes | None:
    type_node = declaration.child_by_field_name(rule.type_field) if rule.type_field else None
    if type_node is None and declaration.parent is not None:
        type_node = declaration.parent.child_by_field_name("type")  # Java/C# variable_declarator
    text = b" ".join(program.text(type_node).split()) if type_node is not None else None
    if text is None or text in _INFERRED_TYPES or text == b"implicit_type":
        literal = _literal_type(program.syntax, _initializer(declaration, identifier))
        return literal
    if text in (b"float64", b"float32", b"double"):
        text = b"float"
    return text + _pointer_suffix(program.syntax, holder, identifier)


def declarations(program: Program) -> list[Declaration]:
    """Every local declaration in the program, in document order."""
    syntax = program.syntax
    rules = {rule.node_type: rule for rule in syntax.declarations}
    found: list[Declaration] = []
    for node in walk(program.root):
        identifiers: list[tuple[Node, Node, DeclarationRule | None]] = []
        if node.type in syntax.parameter_list_types:
            identifiers = [(child, child, None) for child in node.named_children
                           if child.type in syntax.identifier_types]
        rule = rules.get(node.type)
        if rule is not None:
            for index, child in enumerate(node.children):
                if not child.is_named:
                    continue
                field = node.field_name_for_child(index)
                if field in rule.fields or (None in rule.fields and field not in _NOT_NAME_FIELDS):
                    identifiers.extend((ident, child, rule)
                                       for ident in declared_identifiers(syntax, child))
        for identifier, holder, owning_rule in identifiers:
            function = _ancestor(identifier, syntax.function_types)
            scope = _ancestor(identifier, syntax.scope_types) or program.root
            type_text = (_type_text(program, owning_rule, node, identifier, holder)
                         if owning_rule is not None else None)
            found.append(Declaration(program.text(identifier), identifier, scope, function, type_text))
    return found


def _contains(outer: Node, inner: Node) -> bool:
    return outer.start_byte <= inner.start_byte and inner.end_byte <= outer.end_byte


def is_member_position(syntax: Syntax, node: Node) -> bool:
    """Whether the identifier names a member, method or keyword argument, not a variable."""
    parent = node.parent
    if parent is None:
        return False
    for index, child in enumerate(parent.children):
        if child == node:
            return (parent.type, parent.field_name_for_child(index)) in syntax.member_positions
    return False


def visible(declaration: Declaration, node: Node) -> bool:
    """Whether ``declaration`` is in scope at ``node`` (declared earlier, same scope)."""
    return (declaration.node.start_byte < node.start_byte and _contains(declaration.scope, node))


def references(program: Program, found: list[Declaration]) -> Iterator[tuple[Node, Declaration]]:
    """Uses of declared locals: (identifier node, the declaration it resolves to).

    Declaration sites themselves and member positions (``obj.name``) are left out; a use
    resolves to the innermost visible declaration of its name.
    """
    syntax = program.syntax
    by_name: dict[bytes, list[Declaration]] = {}
    declared_at = {declaration.node.start_byte for declaration in found}
    for declaration in found:
        by_name.setdefault(declaration.name, []).append(declaration)
    for node in walk(program.root):
        if node.type not in syntax.identifier_types or node.start_byte in declared_at:
            continue
        candidates = by_name.get(program.text(node))
        if not candidates or is_member_position(syntax, node):
            continue
        in_scope = [d for d in candidates if visible(d, node)]
        if in_scope:
            yield node, max(in_scope, key=lambda d: (d.scope.start_byte, d.node.start_byte))
