"""Change-scoped pairs: the smallest definitions around a commit's change, in both versions.

Given a file before and after a commit, :func:`scope_change` returns the pairs to keep:

1. The changed lines come from a line diff (:class:`difflib.SequenceMatcher`, deterministic).
2. Both versions are parsed with tree-sitter (bounded; the second incrementally from the first,
   and each version once per worker while a cache holds it: :mod:`codeprefs.parsers.versions`);
   :func:`codeprefs.parsers.definitions.definitions` lists their named functions and types. A definition is matched across the versions by its
   kind, node type, qualified name (``Outer.Inner.method``) and overload ordinal.
3. Each hunk of the diff belongs to the innermost definition that contains all its changed
   lines in *both* versions (an insertion belongs to the definitions around its insertion
   point), counting the comments right above a definition as part of it: a change to them
   gives the definition with that doc, a change of its body alone the definition without it.
   A definition that exists in one version only (added or removed by the commit) is no pair of
   its own: its hunk climbs to the enclosing definition both versions have (a method added to a
   class gives the class), or to no definition.
4. The rule for a change spanning several definitions: **one pair per changed definition**
   (ordered by position; a definition inside another changed one is folded into the outer one),
   each with the commit's intent. A single-file commit states one intent, and each changed
   definition carries part of it, while a scope holding them all (a class, the file) brings
   back the unchanged bulk this module removes. Past ``max_definitions`` changed definitions
   the change is a sweep (a rename, a reformat) whose intent does not apply to each part: the
   pair is then the smallest definition both versions have that contains every hunk, else the
   whole file. Hunks outside any definition (imports, top-level constants) next to changed
   definitions are not paired on their own; the prompt shows the old imports as context.
5. When no hunk lies in a definition, the pair is a ``window``: the changed lines plus
   ``window_lines`` unchanged lines on each side (the whole file when that is all of it);
   hunks further apart than two such margins give a window each, as changed definitions give a
   pair each (more than ``max_definitions`` windows: one window over them all), but for a group
   that only adds or removes blank lines beside the others. Likewise a definition changed by
   blank lines alone, beside definitions the commit really changed, is no pair of its own.
   A class of ``max_class_lines`` lines or more whose own lines change (a field, a member
   added or removed) gives such a window too, named after the class: as a pair the class would
   be a sliver of change in a large unchanged bulk (the judged sample had a 1,700-line class for
   an 8-line change), which teaches little and overflows the token budget. So does a function
   that long which holds other definitions, a module in all but name (lodash's 10,000-line
   ``runInContext``, a factory of closures): a change to its own lines gives a window named
   after it. A long function that holds none is still the pair.

A parse over its limits gives the ``file`` scope (validation then sees the whole file). Each
scoped side also carries its syntax signals measured on the *whole* file's tree under the
scope's byte range (:func:`range_report`), so a method validated alone is not blamed for the
missing class around it.
"""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from dataclasses import dataclass, replace
from itertools import accumulate

from tree_sitter import Node, Tree

from codeprefs.core.schema import Language
from codeprefs.parsers.definitions import Definition, imports
from codeprefs.parsers.treesitter import ParseLimitExceeded, ParseLimits, ast_depth, error_spans
from codeprefs.parsers.versions import LineEdit, Parsed, ParseCache, parse_versions

FILE, WINDOW, CLASS = "file", "window", "class"


@dataclass(frozen=True)
class ScopeSettings:
    """How pairs are scoped (``pairs`` in the manifest, plus the parse limits)."""

    scope: str = "function"  # function | file
    window_lines: int = 10
    max_definitions: int = 4
    context_bytes: int = 160
    max_class_lines: int = 200  # a longer class around a change gives a window inside it instead
    max_bytes: int = 256 * 1024
    parse_timeout_s: float = 5.0


@dataclass(frozen=True)
class RangeReport:
    """Syntax signals of one scoped side, measured on its whole file's tree."""

    nbytes: int
    nodes: int
    error_nodes: int
    error_bytes: int
    depth: int

    def as_dict(self) -> dict[str, int]:
        return {"nbytes": self.nbytes, "nodes": self.nodes, "error_nodes": self.error_nodes,
                "error_bytes": self.error_bytes, "depth": self.depth}


@dataclass(frozen=True)
class ScopedPair:
    """One pair cut from a commit's file. Spans are 1-based and inclusive."""

    scope: str  # function | class | window | file
    name: str | None  # the definition's qualified name; None for window and file
    rejected: str
    chosen: str
    rejected_span: tuple[int, int]
    chosen_span: tuple[int, int]
    context: str  # read-only code for the prompt (enclosing headers, imports); may be empty
    changed_lines: int  # lines of the diff inside this pair (removed plus added)
    signals: dict[str, RangeReport] | None = None  # chosen/rejected, None for the file scope
    within: str | None = None  # a named window's definition kind (class or function)


def split_lines(data: bytes) -> list[bytes]:
    """Lines as tree-sitter counts them (split after each ``\\n``), ends kept."""
    lines = data.split(b"\n")
    out = [line + b"\n" for line in lines[:-1]]
    if lines[-1]:
        out.append(lines[-1])
    return out


Hunk = tuple[int, int, int, int]  # old [i1, i2), new [j1, j2), 0-based lines


def common_ends(old_lines: list[bytes], new_lines: list[bytes]) -> tuple[int, int]:
    """How many lines both versions share at their start, then at their end (not overlapping)."""
    limit = min(len(old_lines), len(new_lines))
    prefix = 0
    while prefix < limit and old_lines[prefix] == new_lines[prefix]:
        prefix += 1
    suffix = 0
    while suffix < limit - prefix and old_lines[-1 - suffix] == new_lines[-1 - suffix]:
        suffix += 1
    return prefix, suffix


def hunks(old_lines: list[bytes], new_lines: list[bytes], ends: tuple[int, int] | None = None) -> list[Hunk]:
    """The changed line ranges. The lines both versions share at their start and end
    (:func:`common_ends`, or ``ends`` when already counted) are set aside before difflib sees
    the rest: most commits change a few lines of a long file, and difflib's cost grows with the
    length of both sequences."""
    prefix, suffix = ends if ends is not None else common_ends(old_lines, new_lines)
    matcher = difflib.SequenceMatcher(None, old_lines[prefix:len(old_lines) - suffix],
                                      new_lines[prefix:len(new_lines) - suffix], autojunk=False)
    return [(i1 + prefix, i2 + prefix, j1 + prefix, j2 + prefix)
            for tag, i1, i2, j1, j2 in matcher.get_opcodes() if tag != "equal"]


def _contains(definition: Definition, start: int, end: int) -> bool:
    """Whether lines [start, end) lie in the definition, counted from the comments right above
    it (its doc); an empty range is an insertion point before line ``start``, inside when it
    falls at or after that first line and at most right after its last one (a doc or a decorator
    added, lines appended to a body; the other version's definition, matched by key, must then
    hold the inserted lines themselves)."""
    if start == end:
        return definition.doc_start <= start <= definition.end_line + 1
    return definition.doc_start <= start and end - 1 <= definition.end_line


def _chain(defs: Sequence[Definition], start: int, end: int) -> list[str]:
    """Keys of the definitions containing the range, innermost first."""
    inside = [d for d in defs if _contains(d, start, end)]
    return [d.key for d in sorted(inside, key=lambda d: len(d.ancestors), reverse=True)]


def _past_blanks(lines: list[bytes], start: int, end: int) -> tuple[int, int]:
    """A hunk's lines without blank lines at either edge, and an insertion point moved up over
    the blank lines before it: a diff may place lines added at the end of a body after the blank
    line that follows it, and blank lines change no definition."""
    while start < end and not lines[start].strip():
        start += 1
    while end > start and not lines[end - 1].strip():
        end -= 1
    if start != end:
        return start, end
    while start > 0 and not lines[start - 1].strip():
        start -= 1
    return start, start


def _side_chain(version: _Version, start: int, end: int) -> list[str]:
    """Keys of the definitions around one side of a hunk, innermost first. An insertion point is
    taken both past the blank lines before it and where the diff put it: lines appended to a body
    may come after the blank line that follows it, and a doc or decorator added above a
    definition comes right before its first line."""
    ranges = {_past_blanks(version.lines, start, end)}
    if start == end:
        ranges.add((start, end))
    inside = {d.key: d for first, last in ranges for d in version.defs if _contains(d, first, last)}
    return [key for key, _ in sorted(inside.items(), key=lambda item: len(item[1].ancestors), reverse=True)]


def _hunk_scope(hunk: Hunk, old: _Version, new: _Version) -> str | None:
    i1, i2, j1, j2 = hunk
    in_old = set(_side_chain(old, i1, i2))
    return next((key for key in _side_chain(new, j1, j2) if key in in_old), None)


def _byte_offsets(lines: list[bytes]) -> list[int]:
    """Where each line starts, then the length of the file."""
    return list(accumulate(map(len, lines), initial=0))


def range_report(tree: Tree, start: int, end: int) -> RangeReport:
    """Nodes, errors and depth of the parts of ``tree`` inside bytes [start, end).

    Nodes: every node wholly inside the range; errors: ERROR bytes and MISSING nodes inside it;
    depth: the deepest of the largest nodes inside the range, plus one.

    An ERROR node across the range's edge is measured through its children, as any node across
    it: such a node often spans a whole region because of one stray token elsewhere (an
    unbalanced ``#if`` in C, a directive before a C# namespace), and the definitions under it
    parse whole. Only its own stray tokens inside the range (its leaf children, and MISSING
    ones) are errors of the range; counting all of its bytes blamed every function of the
    region for one broken line outside it.
    """
    nodes = error_nodes = error_bytes = depth = 0
    stack: list[Node] = [tree.root_node]
    while stack:
        node = stack.pop()
        if node.end_byte <= start or node.start_byte >= end:
            continue
        if start <= node.start_byte and node.end_byte <= end:  # one of the largest nodes inside
            nodes += node.descendant_count
            depth = max(depth, ast_depth(node) + 1)  # + the root a snippet parses under
            inner_nodes, inner_bytes = error_spans(node)
            error_nodes += inner_nodes
            error_bytes += inner_bytes
        elif node.is_error:  # across the edge: its stray tokens inside the range are errors
            stray_tokens = stray_bytes = 0
            for child in node.children:
                if child.child_count:
                    stack.append(child)
                elif child.start_byte < end and child.end_byte > start or (
                        child.is_missing and start <= child.start_byte < end):
                    stray_tokens += 1
                    stray_bytes += min(end, child.end_byte) - max(start, child.start_byte)
            if stray_tokens:
                error_nodes += 1
                error_bytes += stray_bytes
        else:
            stack.extend(node.children)
    return RangeReport(end - start, nodes, error_nodes, error_bytes, depth)


class _Version:
    """One version of the file: its lines, tree and definitions."""

    def __init__(self, data: bytes, lines: list[bytes], offsets: list[int], parsed: Parsed) -> None:
        self.data = data
        self.lines = lines
        self.offsets = offsets
        self.tree = parsed.tree
        self.defs = parsed.definitions
        self.by_key = {d.key: d for d in self.defs}

    def text(self, first: int, last: int) -> str:
        return b"".join(self.lines[first:last + 1]).decode("utf-8")

    def report(self, first: int, last: int) -> RangeReport:
        start, end = self.offsets[first], self.offsets[min(last + 1, len(self.lines))]
        return range_report(self.tree, start, end)


def _changed_inside(pair_hunks: list[Hunk]) -> int:
    return sum((i2 - i1) + (j2 - j1) for i1, i2, j1, j2 in pair_hunks)


def _context(old: _Version, definition: Definition | None, language: Language, budget: int,
             skip: tuple[int, int] | None = None) -> str:
    """Read-only context from the file before the change: the first line of each enclosing
    definition, after the file's imports, cut at whole lines to ``budget`` bytes (headers
    first, then imports)."""
    headers = []
    if definition is not None:
        for key in definition.ancestors:
            outer = old.by_key.get(key)
            if outer is not None:
                headers.append(old.lines[outer.header_line].decode("utf-8").rstrip())
    import_lines: list[str] = []
    for first, last in imports(old.tree, old.data, language):
        if skip is not None and skip[0] <= first and last <= skip[1]:
            continue  # already in the pair
        import_lines += [line.decode("utf-8").rstrip() for line in old.lines[first:last + 1]]
    kept: list[str] = []
    used = 0
    for line in headers:
        if used + len(line) + 1 > budget:
            break
        kept.append(line)
        used += len(line) + 1
    chosen_imports: list[str] = []
    for line in import_lines:
        if used + len(line) + 1 > budget:
            break
        chosen_imports.append(line)
        used += len(line) + 1
    if chosen_imports and kept:
        return "\n".join(chosen_imports + ["..."] + kept)
    return "\n".join(chosen_imports + kept)


def file_pair(old: str, new: str, changed: int) -> ScopedPair:
    return ScopedPair(FILE, None, old, new, (1, max(1, len(split_lines(old.encode())))),
                      (1, max(1, len(split_lines(new.encode())))), "", changed)


def scope_change(old_text: str, new_text: str, language: Language,
                 settings: ScopeSettings = ScopeSettings(), cache: ParseCache | None = None) -> list[ScopedPair]:
    """The pairs a commit's change of one file gives (see the module doc); ``[]`` when the two
    versions have the same lines. ``cache`` holds parsed versions (default: this thread's,
    :func:`codeprefs.parsers.versions.thread_cache`)."""
    old_data, new_data = old_text.encode("utf-8"), new_text.encode("utf-8")
    old_lines, new_lines = split_lines(old_data), split_lines(new_data)
    prefix, suffix = ends = common_ends(old_lines, new_lines)
    diff = hunks(old_lines, new_lines, ends)
    if not diff:
        return []
    changed = _changed_inside(diff)
    if settings.scope == FILE:
        return [file_pair(old_text, new_text, changed)]
    limits = ParseLimits(max_bytes=settings.max_bytes, timeout_s=settings.parse_timeout_s)
    old_offsets, new_offsets = _byte_offsets(old_lines), _byte_offsets(new_lines)
    old_end, new_end = len(old_lines) - suffix, len(new_lines) - suffix
    edit = LineEdit(prefix, old_end, new_end, old_offsets[prefix], old_offsets[old_end], new_offsets[new_end])
    try:
        before, after = parse_versions(old_data, new_data, edit, language, limits, cache)
    except ParseLimitExceeded:
        return [file_pair(old_text, new_text, changed)]
    old = _Version(old_data, old_lines, old_offsets, before)
    new = _Version(new_data, new_lines, new_offsets, after)
    scopes = [_hunk_scope(hunk, old, new) for hunk in diff]
    keys = [key for key in dict.fromkeys(scopes) if key is not None]
    keys = [key for key in keys if not any(a in keys for a in new.by_key[key].ancestors)]
    if not keys:
        return _real_changes(_windows(old, new, diff, language, settings))
    if len(keys) > settings.max_definitions:
        common = _common_scope(diff, old, new)
        if common is None:
            return [file_pair(old_text, new_text, changed)]
        keys, scopes = [common], [common] * len(diff)
    pairs = []
    for key in keys:
        old_def, new_def = old.by_key[key], new.by_key[key]
        inside = [hunk for hunk, scope in zip(diff, scopes, strict=True)
                  if scope == key or (scope is not None and key in new.by_key[scope].ancestors)]
        longest = max(old_def.end_line - old_def.start_line, new_def.end_line - new_def.start_line)
        if longest >= settings.max_class_lines and (old_def.kind == CLASS or any(key in d.ancestors for d in old.defs)):
            # A change between the members of a long class (or of a long function holding
            # definitions): it would be a pair of which the change is a sliver. The lines around
            # it, named by their definition, teach the change.
            pairs.extend(replace(window, name=old_def.name, within=old_def.kind)
                         for window in _windows(old, new, inside, language, settings))
            continue
        # the comments right above the definition (its doc) join the pair when a hunk reaches them
        old_first, new_first = old_def.start_line, new_def.start_line
        if any(i1 < old_first or j1 < new_first for i1, _, j1, _ in inside):
            old_first, new_first = old_def.doc_start, new_def.doc_start
        pairs.append(ScopedPair(
            old_def.kind, old_def.name,
            old.text(old_first, old_def.end_line), new.text(new_first, new_def.end_line),
            (old_first + 1, old_def.end_line + 1), (new_first + 1, new_def.end_line + 1),
            _context(old, old_def, language, settings.context_bytes), _changed_inside(inside),
            {"rejected": old.report(old_first, old_def.end_line),
             "chosen": new.report(new_first, new_def.end_line)}))
    # A hunk of blank lines between definitions lands on a neighbour whose text it leaves as it
    # was: that definition is no pair (and a change of nothing else is no pair at all).
    return _real_changes([pair for pair in pairs if pair.chosen != pair.rejected])


def _real_changes(pairs: list[ScopedPair]) -> list[ScopedPair]:
    """``pairs`` less those whose two sides differ only by blank lines added or removed, when
    others of the commit change more: such a definition or window teaches nothing of its own."""
    return [pair for pair in pairs if not _blank_lines_only(pair)] or pairs


def _blank_lines_only(pair: ScopedPair) -> bool:
    """Whether the two sides differ only by blank lines added or removed."""
    return ([line for line in pair.rejected.splitlines() if line.strip()]
            == [line for line in pair.chosen.splitlines() if line.strip()])


def _common_scope(diff: list[Hunk], old: _Version, new: _Version) -> str | None:
    """The innermost definition both versions have that contains every hunk."""
    first_old, last_old = min(h[0] for h in diff), max(h[1] for h in diff)
    first_new, last_new = min(h[2] for h in diff), max(h[3] for h in diff)
    in_old = set(_chain(old.defs, first_old, last_old))
    return next((key for key in _chain(new.defs, first_new, last_new) if key in in_old), None)


def _windows(old: _Version, new: _Version, diff: list[Hunk], language: Language,
             settings: ScopeSettings) -> list[ScopedPair]:
    """One window per group of hunks whose windows would meet (at most ``2 * window_lines``
    unchanged lines apart), as changed definitions give one pair each; more groups than
    ``max_definitions`` is a sweep, given one window over them all."""
    groups = [[diff[0]]]
    for hunk in diff[1:]:
        if hunk[0] - groups[-1][-1][1] > 2 * settings.window_lines:
            groups.append([hunk])
        else:
            groups[-1].append(hunk)
    if len(groups) > settings.max_definitions:
        groups = [diff]
    return [_window(old, new, group, language, settings) for group in groups]


def _window(old: _Version, new: _Version, diff: list[Hunk], language: Language,
            settings: ScopeSettings) -> ScopedPair:
    """The changed lines with ``window_lines`` of unchanged lines around them, in both versions.

    Lines before the first hunk and after the last one are the same in both versions, so both
    windows start and end on the same unchanged lines.
    """
    w = settings.window_lines
    old_first, new_first = max(0, diff[0][0] - w), max(0, diff[0][2] - w)
    old_last = min(len(old.lines), diff[-1][1] + w) - 1
    new_last = min(len(new.lines), diff[-1][3] + w) - 1
    whole = old_first == 0 and new_first == 0 and old_last == len(old.lines) - 1 and new_last == len(new.lines) - 1
    rejected, chosen = old.text(old_first, old_last), new.text(new_first, new_last)
    if whole:
        return file_pair(rejected, chosen, _changed_inside(diff))
    return ScopedPair(
        WINDOW, None, rejected, chosen, (old_first + 1, max(old_first, old_last) + 1),
        (new_first + 1, max(new_first, new_last) + 1),
        _context(old, None, language, settings.context_bytes, skip=(old_first, old_last)),
        _changed_inside(diff),
        {"rejected": old.report(old_first, old_last), "chosen": new.report(new_first, new_last)})
