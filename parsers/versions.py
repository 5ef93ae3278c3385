"""Both versions of a changed file, parsed with as little parsing as gives the same trees.

Change-scoped pairs (:mod:`codeprefs.pipelines.scopes`) need the tree and the definitions of a
file before and after each commit, and parsing them is most of what mining costs. Two things
cut it down without changing a single tree:

* **Incremental parsing of the second version.** Most commits change a few lines of a long
  file, so the version after the commit is parsed from the one before with the changed lines
  marked as one edit (:class:`LineEdit`); tree-sitter then re-parses only around the edit.
  tree-sitter's error recovery can make an incremental tree differ from a fresh one, so the
  incremental tree is kept only when neither tree holds an error; otherwise the version is
  parsed afresh, as before.
* **A cache of parsed versions** (:class:`ParseCache`, least recently used first out, bounded
  in entries and in source bytes): the version after one commit is the version before the
  next commit that changes the file, and a cherry-picked change repeats both versions. It is
  keyed by the language and a digest of the bytes, and holds the tree with its definitions.
  Trees are only read once cached: the edit for an incremental parse is made on a copy.
  The default bounds (32 versions, 4 MiB of source) caught every repeat of psf/requests,
  spf13/cobra and expressjs/express that 64 versions and 16 MiB did (11, 6 and 14 of 330, 100
  and 350 parses); the gain is small next to incremental parsing, the memory held stays so too.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from dataclasses import dataclass

from tree_sitter import Point, Tree

from codeprefs.core.schema import Language
from codeprefs.parsers.definitions import Definition, definitions
from codeprefs.parsers.treesitter import ParseLimitExceeded, ParseLimits, parse


@dataclass(frozen=True)
class Parsed:
    """One parsed version: its tree (read only) and its definitions (see :func:`definitions`)."""

    tree: Tree
    definitions: tuple[Definition, ...]


@dataclass(frozen=True)
class LineEdit:
    """What a commit changed, as whole lines: the old version's lines ``[start, old_end)``
    became the new version's lines ``[start, new_end)``; the bytes are where those lines begin."""

    start_line: int
    old_end_line: int
    new_end_line: int
    start_byte: int
    old_end_byte: int
    new_end_byte: int

    def apply(self, tree: Tree) -> None:
        """Mark the edit on ``tree`` (a tree of the old version), as tree-sitter's ``Tree.edit``."""
        tree.edit(self.start_byte, self.old_end_byte, self.new_end_byte, Point(self.start_line, 0),
                  Point(self.old_end_line, 0), Point(self.new_end_line, 0))


class ParseCache:
    """Parsed versions by (language, content digest), least recently used dropped first once
    there are more than ``max_entries`` of them or their sources total over ``max_bytes``."""

    def __init__(self, max_entries: int = 32, max_bytes: int = 4 << 20) -> None:
        if max_entries < 0 or max_bytes < 0:
            raise ValueError(f"ParseCache bounds must be >= 0, got max_entries={max_entries}, "
                             f"max_bytes={max_bytes}")
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self._entries: OrderedDict[tuple[str, bytes], tuple[Parsed, int]] = OrderedDict()
        self.nbytes = 0
        self.hits = 0
        self.misses = 0

    @staticmethod
    def key(source: bytes, language: Language) -> tuple[str, bytes]:
        return Language(language).value, hashlib.blake2b(source, digest_size=20).digest()

    def __len__(self) -> int:
        return len(self._entries)

    def clear(self) -> None:
        """Forget every version (the counts of hits and misses stay)."""
        self._entries.clear()
        self.nbytes = 0

    def get(self, key: tuple[str, bytes]) -> Parsed | None:
        found = self._entries.get(key)
        if found is None:
            self.misses += 1
            return None
        self.hits += 1
        self._entries.move_to_end(key)
        return found[0]

    def put(self, key: tuple[str, bytes], parsed: Parsed, nbytes: int) -> None:
        if key in self._entries or nbytes > self.max_bytes or self.max_entries == 0:
            return
        self._entries[key] = (parsed, nbytes)
        self.nbytes += nbytes
        while len(self._entries) > self.max_entries or self.nbytes > self.max_bytes:
            _, (_, dropped) = self._entries.popitem(last=False)
            self.nbytes -= dropped


_local = threading.local()


def thread_cache() -> ParseCache:
    """This thread's cache (trees are not shared between threads)."""
    cache: ParseCache | None = getattr(_local, "cache", None)
    if cache is None:
        cache = _local.cache = ParseCache()
    return cache


def _parsed(tree: Tree, source: bytes, language: Language) -> Parsed:
    return Parsed(tree, tuple(definitions(tree, source, language)))


def parse_versions(old: bytes, new: bytes, edit: LineEdit, language: Language, limits: ParseLimits,
                   cache: ParseCache | None = None) -> tuple[Parsed, Parsed]:
    """The two versions of a file, parsed as :func:`codeprefs.parsers.treesitter.parse` would
    parse each alone (see the module doc). ``edit`` turns ``old`` into ``new``.

    Raises :class:`ParseLimitExceeded` when either version is over ``limits``.
    """
    for source in (old, new):  # a cached version must not slip past a smaller size cap
        if len(source) > limits.max_bytes:
            raise ParseLimitExceeded("too_large", f"{len(source)} bytes > {limits.max_bytes}")
    cache = cache if cache is not None else thread_cache()
    old_key, new_key = ParseCache.key(old, language), ParseCache.key(new, language)
    before = cache.get(old_key)
    if before is None:
        before = _parsed(parse(old, language, limits), old, language)
        cache.put(old_key, before, len(old))
    after = cache.get(new_key)
    if after is None:
        tree = None
        if not before.tree.root_node.has_error:
            edited = before.tree.copy()
            edit.apply(edited)
            tree = parse(new, language, limits, old_tree=edited)
            if tree.root_node.has_error:  # error recovery may differ from a fresh parse's
                tree = None
        if tree is None:
            tree = parse(new, language, limits)
        after = _parsed(tree, new, language)
        cache.put(new_key, after, len(new))
    return before, after
