"""What the mutation operators and the readability degrader need to know about each grammar.

One :class:`Syntax` per language names the tree-sitter node types that play each role (binary
expressions, conditions, branches, statements, literals, declarations...). The operators in
:mod:`codeprefs.pipelines.synthesis.mutations` are written once against these roles, so a ninth language
is a new table, not new operators. ``tests/test_synthesis_mutations.py`` checks that every node
type named here exists in its grammar.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from codeprefs.core.schema import Language


@dataclass(frozen=True)
class DeclarationRule:
    """Where a declaration node keeps the names it declares.

    ``fields`` are the field names holding a declarator or name (``None``: every named child);
    ``type_field`` is the field holding the declared type, if the language writes one there.
    """

    node_type: str
    fields: tuple[str | None, ...]
    type_field: str | None = None


@dataclass(frozen=True)
class Syntax:
    """The node types of one grammar, grouped by the role they play in mutations."""

    language: Language
    fence: str  # the Markdown code-fence tag
    binary_types: frozenset[str]  # expressions with an operator token between two operands
    compound_assignment_types: frozenset[str]  # ``x += 1`` and friends
    condition_types: frozenset[str]  # if/while statements and modifiers with a condition
    if_types: frozenset[str]  # statements whose branches can be swapped
    ternary_types: frozenset[str]
    loop_types: frozenset[str]  # loops whose condition bounds an index
    integer_types: frozenset[str]
    string_types: frozenset[str]
    true_type: str
    false_type: str
    true_text: str
    false_text: str
    null_text: str | None  # a value of any type, for dynamically typed languages
    not_types: frozenset[str]  # logical negation expressions
    return_types: frozenset[str]
    call_types: frozenset[str]
    argument_list_types: frozenset[str]
    comment_types: frozenset[str]
    function_types: frozenset[str]
    block_types: frozenset[str]  # statement lists a statement can be removed from
    removable_types: frozenset[str]  # statements whose removal leaves valid code
    scope_types: frozenset[str]  # nodes that bound the visibility of a declaration
    declarations: tuple[DeclarationRule, ...]
    # (parent type, field) pairs where an identifier names a member, not a variable
    member_positions: frozenset[tuple[str, str]]
    negate: str  # template wrapping a condition in a logical negation
    keywords: frozenset[str]
    identifier_types: frozenset[str] = frozenset({"identifier"})
    # nodes whose identifier children are all declarations (parameter lists)
    parameter_list_types: frozenset[str] = frozenset()
    # declarators to look through to reach the declared identifier (C pointers, arrays...)
    declarator_wrappers: frozenset[str] = frozenset()
    dynamic: bool = False
    docstrings: bool = False  # a leading string statement in a function body is a docstring
    implicit_return_types: frozenset[str] = field(default_factory=frozenset)


_C_FAMILY_KEYWORDS = frozenset(
    "auto break case char const continue default do double else enum extern float for goto if "
    "inline int long register restrict return short signed sizeof static struct switch typedef "
    "union unsigned void volatile while bool true false NULL main".split()
)

_C_DECLARATORS = frozenset(
    {"pointer_declarator", "array_declarator", "init_declarator", "parenthesized_declarator"}
)

C = Syntax(
    language=Language.C, fence="c",
    binary_types=frozenset({"binary_expression"}),
    compound_assignment_types=frozenset({"assignment_expression"}),
    condition_types=frozenset({"if_statement", "while_statement", "do_statement"}),
    if_types=frozenset({"if_statement"}),
    ternary_types=frozenset({"conditional_expression"}),
    loop_types=frozenset({"for_statement", "while_statement"}),
    integer_types=frozenset({"number_literal"}),
    string_types=frozenset({"string_literal"}),
    true_type="true", false_type="false", true_text="true", false_text="false", null_text=None,
    not_types=frozenset({"unary_expression"}),
    return_types=frozenset({"return_statement"}),
    call_types=frozenset({"call_expression"}),
    argument_list_types=frozenset({"argument_list"}),
    comment_types=frozenset({"comment"}),
    function_types=frozenset({"function_definition"}),
    block_types=frozenset({"compound_statement"}),
    removable_types=frozenset({"expression_statement", "break_statement", "continue_statement"}),
    scope_types=frozenset({"compound_statement", "for_statement", "function_definition"}),
    declarations=(
        DeclarationRule("parameter_declaration", ("declarator",), "type"),
        DeclarationRule("declaration", ("declarator",), "type"),
    ),
    member_positions=frozenset({("call_expression", "function")}),
    negate="!({})",
    keywords=_C_FAMILY_KEYWORDS,
    declarator_wrappers=_C_DECLARATORS,
)

CPP = Syntax(
    language=Language.CPP, fence="cpp",
    binary_types=frozenset({"binary_expression"}),
    compound_assignment_types=frozenset({"assignment_expression"}),
    condition_types=frozenset({"if_statement", "while_statement", "do_statement"}),
    if_types=frozenset({"if_statement"}),
    ternary_types=frozenset({"conditional_expression"}),
    loop_types=frozenset({"for_statement", "while_statement"}),
    integer_types=frozenset({"number_literal"}),
    string_types=frozenset({"string_literal"}),
    true_type="true", false_type="false", true_text="true", false_text="false", null_text=None,
    not_types=frozenset({"unary_expression"}),
    return_types=frozenset({"return_statement"}),
    call_types=frozenset({"call_expression"}),
    argument_list_types=frozenset({"argument_list"}),
    comment_types=frozenset({"comment"}),
    function_types=frozenset({"function_definition", "lambda_expression"}),
    block_types=frozenset({"compound_statement"}),
    removable_types=frozenset({"expression_statement", "break_statement", "continue_statement"}),
    scope_types=frozenset({"compound_statement", "for_statement", "for_range_loop",
                           "function_definition", "lambda_expression"}),
    declarations=(
        DeclarationRule("parameter_declaration", ("declarator",), "type"),
        DeclarationRule("optional_parameter_declaration", ("declarator",), "type"),
        DeclarationRule("declaration", ("declarator",), "type"),
        DeclarationRule("for_range_loop", ("declarator",), "type"),
    ),
    member_positions=frozenset({("call_expression", "function")}),
    negate="!({})",
    keywords=_C_FAMILY_KEYWORDS | frozenset(
        "class namespace template typename using new delete public private protected this "
        "nullptr operator virtual std string vector auto".split()
    ),
    declarator_wrappers=_C_DECLARATORS | {"reference_declarator"},
)

CSHARP = Syntax(
    language=Language.CSHARP, fence="csharp",
    binary_types=frozenset({"binary_expression"}),
    compound_assignment_types=frozenset({"assignment_expression"}),
    condition_types=frozenset({"if_statement", "while_statement", "do_statement"}),
    if_types=frozenset({"if_statement"}),
    ternary_types=frozenset({"conditional_expression"}),
    loop_types=frozenset({"for_statement", "while_statement"}),
    integer_types=frozenset({"integer_literal"}),
    string_types=frozenset({"string_literal"}),
    true_type="boolean_literal", false_type="boolean_literal", true_text="true",
    false_text="false", null_text=None,
    not_types=frozenset({"prefix_unary_expression"}),
    return_types=frozenset({"return_statement"}),
    call_types=frozenset({"invocation_expression"}),
    argument_list_types=frozenset({"argument_list"}),
    comment_types=frozenset({"comment"}),
    function_types=frozenset({"method_declaration", "local_function_statement",
                              "lambda_expression", "constructor_declaration"}),
    block_types=frozenset({"block"}),
    removable_types=frozenset({"expression_statement", "break_statement", "continue_statement"}),
    scope_types=frozenset({"block", "for_statement", "foreach_statement", "method_declaration",
                           "local_function_statement", "lambda_expression"}),
    declarations=(
        DeclarationRule("parameter", ("name",), "type"),
        DeclarationRule("variable_declarator", ("name",)),  # type: see _declared_type
        DeclarationRule("foreach_statement", ("left",), "type"),
        DeclarationRule("catch_declaration", ("name",), "type"),
    ),
    member_positions=frozenset({("member_access_expression", "name"),
                                ("invocation_expression", "function")}),
    negate="!({})",
    keywords=frozenset(
        "abstract as base bool break byte case catch char checked class const continue decimal "
        "default delegate do double else enum event explicit extern false finally fixed float for "
        "foreach goto if implicit in int interface internal is lock long namespace new null object "
        "operator out override params private protected public readonly ref return sbyte sealed "
        "short sizeof stackalloc static string struct switch this throw true try typeof uint ulong "
        "unchecked unsafe ushort using virtual void volatile while var Main".split()
    ),
)

GO = Syntax(
    language=Language.GO, fence="go",
    binary_types=frozenset({"binary_expression"}),
    compound_assignment_types=frozenset({"assignment_statement"}),
    condition_types=frozenset({"if_statement"}),
    if_types=frozenset({"if_statement"}),
    ternary_types=frozenset(),
    loop_types=frozenset({"for_statement"}),
    integer_types=frozenset({"int_literal"}),
    string_types=frozenset({"interpreted_string_literal"}),
    true_type="true", false_type="false", true_text="true", false_text="false", null_text=None,
    not_types=frozenset({"unary_expression"}),
    return_types=frozenset({"return_statement"}),
    call_types=frozenset({"call_expression"}),
    argument_list_types=frozenset({"argument_list"}),
    comment_types=frozenset({"comment"}),
    function_types=frozenset({"function_declaration", "method_declaration", "func_literal"}),
    block_types=frozenset({"statement_list"}),
    removable_types=frozenset({"assignment_statement", "inc_statement", "dec_statement",
                               "expression_statement", "break_statement", "continue_statement"}),
    scope_types=frozenset({"block", "for_statement", "if_statement", "function_declaration",
                           "method_declaration", "func_literal"}),
    declarations=(
        DeclarationRule("parameter_declaration", ("name",), "type"),
        DeclarationRule("short_var_declaration", ("left",)),
        DeclarationRule("var_spec", ("name",), "type"),
        DeclarationRule("const_spec", ("name",), "type"),
        DeclarationRule("range_clause", ("left",)),
    ),
    member_positions=frozenset(),
    negate="!({})",
    keywords=frozenset(
        "break case chan const continue default defer else fallthrough for func go goto if import "
        "interface map package range return select struct switch type var true false nil iota "
        "len cap append make new panic copy delete main".split()
    ),
)

JAVA = Syntax(
    language=Language.JAVA, fence="java",
    binary_types=frozenset({"binary_expression"}),
    compound_assignment_types=frozenset({"assignment_expression"}),
    condition_types=frozenset({"if_statement", "while_statement", "do_statement"}),
    if_types=frozenset({"if_statement"}),
    ternary_types=frozenset({"ternary_expression"}),
    loop_types=frozenset({"for_statement", "while_statement"}),
    integer_types=frozenset({"decimal_integer_literal"}),
    string_types=frozenset({"string_literal"}),
    true_type="true", false_type="false", true_text="true", false_text="false", null_text=None,
    not_types=frozenset({"unary_expression"}),
    return_types=frozenset({"return_statement"}),
    call_types=frozenset({"method_invocation"}),
    argument_list_types=frozenset({"argument_list"}),
    comment_types=frozenset({"line_comment", "block_comment"}),
    function_types=frozenset({"method_declaration", "constructor_declaration", "lambda_expression"}),
    block_types=frozenset({"block"}),
    removable_types=frozenset({"expression_statement", "break_statement", "continue_statement"}),
    scope_types=frozenset({"block", "for_statement", "enhanced_for_statement",
                           "method_declaration", "constructor_declaration", "lambda_expression"}),
    declarations=(
        DeclarationRule("formal_parameter", ("name",), "type"),
        DeclarationRule("variable_declarator", ("name",)),  # type: see _declared_type
        DeclarationRule("enhanced_for_statement", ("name",), "type"),
        DeclarationRule("catch_formal_parameter", ("name",)),
    ),
    member_positions=frozenset({("method_invocation", "name"), ("field_access", "field")}),
    negate="!({})",
    keywords=frozenset(
        "abstract assert boolean break byte case catch char class const continue default do "
        "double else enum extends final finally float for goto if implements import instanceof "
        "int interface long native new package private protected public return short static "
        "strictfp super switch synchronized this throw throws transient try void volatile while "
        "var true false null main String".split()
    ),
)

JAVASCRIPT = Syntax(
    language=Language.JAVASCRIPT, fence="javascript",
    binary_types=frozenset({"binary_expression"}),
    compound_assignment_types=frozenset({"augmented_assignment_expression"}),
    condition_types=frozenset({"if_statement", "while_statement", "do_statement"}),
    if_types=frozenset({"if_statement"}),
    ternary_types=frozenset({"ternary_expression"}),
    loop_types=frozenset({"for_statement", "while_statement"}),
    integer_types=frozenset({"number"}),
    string_types=frozenset({"string"}),
    true_type="true", false_type="false", true_text="true", false_text="false", null_text="null",
    not_types=frozenset({"unary_expression"}),
    return_types=frozenset({"return_statement"}),
    call_types=frozenset({"call_expression"}),
    argument_list_types=frozenset({"arguments"}),
    comment_types=frozenset({"comment"}),
    function_types=frozenset({"function_declaration", "function_expression", "arrow_function",
                              "method_definition", "generator_function_declaration"}),
    block_types=frozenset({"statement_block"}),
    removable_types=frozenset({"expression_statement", "break_statement", "continue_statement"}),
    scope_types=frozenset({"statement_block", "for_statement", "for_in_statement",
                           "function_declaration", "function_expression", "arrow_function",
                           "method_definition"}),
    declarations=(
        DeclarationRule("variable_declarator", ("name",)),
        DeclarationRule("assignment_pattern", ("left",)),
        DeclarationRule("arrow_function", ("parameter",)),
        DeclarationRule("catch_clause", ("parameter",)),
    ),
    member_positions=frozenset(),
    negate="!({})",
    keywords=frozenset(
        "break case catch class const continue debugger default delete do else export extends "
        "finally for function if import in instanceof let new return super switch this throw try "
        "typeof var void while with yield true false null undefined arguments console".split()
    ),
    parameter_list_types=frozenset({"formal_parameters"}),
    dynamic=True,
)

PYTHON = Syntax(
    language=Language.PYTHON, fence="python",
    binary_types=frozenset({"binary_operator", "comparison_operator", "boolean_operator"}),
    compound_assignment_types=frozenset({"augmented_assignment"}),
    condition_types=frozenset({"if_statement", "while_statement", "elif_clause"}),
    if_types=frozenset({"if_statement"}),
    ternary_types=frozenset({"conditional_expression"}),
    loop_types=frozenset({"for_statement", "while_statement"}),
    integer_types=frozenset({"integer"}),
    string_types=frozenset({"string"}),
    true_type="true", false_type="false", true_text="True", false_text="False", null_text="None",
    not_types=frozenset({"not_operator"}),
    return_types=frozenset({"return_statement"}),
    call_types=frozenset({"call"}),
    argument_list_types=frozenset({"argument_list"}),
    comment_types=frozenset({"comment"}),
    function_types=frozenset({"function_definition", "lambda"}),
    block_types=frozenset({"block"}),
    removable_types=frozenset({"expression_statement", "break_statement", "continue_statement"}),
    scope_types=frozenset({"function_definition", "lambda"}),
    declarations=(
        DeclarationRule("default_parameter", ("name",)),
        DeclarationRule("typed_default_parameter", ("name",)),
        DeclarationRule("typed_parameter", (None,)),
        DeclarationRule("list_splat_pattern", (None,)),
        DeclarationRule("dictionary_splat_pattern", (None,)),
        DeclarationRule("assignment", ("left",)),
        DeclarationRule("for_statement", ("left",)),
        DeclarationRule("for_in_clause", ("left",)),
        DeclarationRule("named_expression", ("name",)),
        DeclarationRule("pattern_list", (None,)),
        DeclarationRule("tuple_pattern", (None,)),
    ),
    member_positions=frozenset({("attribute", "attribute"), ("keyword_argument", "name")}),
    negate="not ({})",
    keywords=frozenset(
        "False None True and as assert async await break class continue def del elif else except "
        "finally for from global if import in is lambda nonlocal not or pass raise return try "
        "while with yield self print len range list dict set str int float".split()
    ),
    parameter_list_types=frozenset({"parameters", "lambda_parameters"}),
    dynamic=True,
    docstrings=True,
)

RUBY = Syntax(
    language=Language.RUBY, fence="ruby",
    binary_types=frozenset({"binary"}),
    compound_assignment_types=frozenset({"operator_assignment"}),
    condition_types=frozenset({"if", "unless", "while", "until", "if_modifier", "unless_modifier",
                               "while_modifier", "until_modifier", "elsif"}),
    if_types=frozenset({"if", "unless"}),
    ternary_types=frozenset({"conditional"}),
    loop_types=frozenset({"while", "until"}),
    integer_types=frozenset({"integer"}),
    string_types=frozenset({"string"}),
    true_type="true", false_type="false", true_text="true", false_text="false", null_text="nil",
    not_types=frozenset({"unary"}),
    return_types=frozenset({"return"}),
    call_types=frozenset({"call"}),
    argument_list_types=frozenset({"argument_list"}),
    comment_types=frozenset({"comment"}),
    function_types=frozenset({"method", "singleton_method", "lambda"}),
    block_types=frozenset({"body_statement", "then", "else", "do", "block_body"}),
    removable_types=frozenset({"assignment", "operator_assignment", "call", "break", "next"}),
    scope_types=frozenset({"method", "singleton_method", "lambda", "block", "do_block"}),
    declarations=(
        DeclarationRule("optional_parameter", ("name",)),
        DeclarationRule("keyword_parameter", ("name",)),
        DeclarationRule("assignment", ("left",)),
        DeclarationRule("for", ("pattern",)),
    ),
    member_positions=frozenset({("call", "method")}),
    negate="!({})",
    keywords=frozenset(
        "BEGIN END alias and begin break case class def defined do else elsif end ensure false for "
        "if in module next nil not or redo rescue retry return self super then true undef unless "
        "until when while yield puts print p raise lambda proc".split()
    ),
    parameter_list_types=frozenset({"method_parameters", "block_parameters", "lambda_parameters"}),
    dynamic=True,
    implicit_return_types=frozenset({"method"}),
)

SYNTAX: dict[Language, Syntax] = {
    syntax.language: syntax for syntax in (C, CPP, CSHARP, GO, JAVA, JAVASCRIPT, PYTHON, RUBY)
}


def syntax_of(language: Language | str) -> Syntax:
    """The :class:`Syntax` table of ``language``."""
    return SYNTAX[Language(language)]
