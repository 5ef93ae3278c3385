"""Real code and planted near-duplicates for the dedupe tests.

The corpus is the source of functions of the Python standard library that ships with the
interpreter running the tests: real code, distinct functions, and no file outside the repo.
"""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import pyarrow as pa

from codeprefs.filters.dedupe.ngrams import jaccard, ngram_set
from codeprefs.core.rows import empty_row, to_table

# Modules with many long, unrelated functions.
_MODULES = ("difflib", "textwrap", "argparse", "configparser", "tarfile", "zipfile", "shutil",
            "calendar", "ftplib", "smtplib", "pickletools", "tokenize", "inspect", "pydoc")

LICENSE_HEADER = """\
# Copyright (c) 2019 The Example Authors. All rights reserved.
#
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at
#
#     http://www.apache.org/licenses/LICENSE-2.0
#
# Unless required by applicable law or agreed to in writing, software
# distributed under the License is distributed on an "AS IS" BASIS,
# WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
import os
import logging

logger = logging.getLogger(__name__)
"""


def stdlib_functions(count: int, min_lines: int = 30, max_lines: int = 120) -> list[str]:
    """``count`` distinct function sources from the standard library, in a fixed order."""
    import importlib

    found: list[str] = []
    for module_name in _MODULES:
        module = importlib.import_module(module_name)
        for name in sorted(vars(module)):
            function = vars(module)[name]
            if not inspect.isfunction(function) or function.__module__ != module_name:
                continue
            try:
                source = inspect.getsource(function)
            except (OSError, TypeError):
                continue
            lines = source.count("\n")
            if min_lines <= lines <= max_lines:
                found.append(source)
                if len(found) == count:
                    return found
    raise RuntimeError(f"only {len(found)} functions of {min_lines}-{max_lines} lines found")


def stdlib_text(size: int) -> str:
    """About ``size`` characters of standard-library source, whole files in a fixed order."""
    root = Path(inspect.getfile(inspect)).parent
    parts: list[str] = []
    total = 0
    for path in sorted(root.glob("*.py")):
        text = path.read_text(encoding="utf-8", errors="replace")
        parts.append(text)
        total += len(text)
        if total >= size:
            break
    return "".join(parts)[:size]


def reformat(code: str) -> str:
    """The same code re-indented with tabs, with trailing spaces and doubled blank lines."""
    lines = []
    for line in code.splitlines():
        stripped = line.lstrip(" ")
        depth = (len(line) - len(stripped)) // 4
        lines.append("\t" * depth + stripped + "  ")
        if not stripped:
            lines.append("")
    return "\n".join(lines) + "\n"


def rename_function(code: str, new_name: str) -> str:
    """The same code with the function (and its recursive calls) renamed."""
    name = re.search(r"def (\w+)", code).group(1)
    return re.sub(rf"\b{name}\b", new_name, code)


def small_edit(code: str) -> str:
    """One line changed and one comment line inserted, near the middle."""
    lines = code.splitlines()
    middle = len(lines) // 2
    lines[middle] = lines[middle] + "  # reviewed"
    lines.insert(middle - 3, "    # NOTE: kept for compatibility")
    return "\n".join(lines) + "\n"


def commit_before(code: str) -> str:
    """An older version of ``code``: its last non-blank line removed (the rejected side)."""
    lines = code.rstrip().splitlines()
    return "\n".join(lines[:-1]) + "\n"


def pair_row(row_id: str, chosen: str, rejected: str, **extra) -> dict:
    row = empty_row()
    row.update({"id": row_id, "source": "git", "subset": "commits", "language": "Python",
                "input": f"task {row_id}", "chosen": chosen, "rejected": rejected, **extra})
    return row


def rows_table(rows: list[dict]) -> pa.Table:
    return to_table(rows)


def exact_jaccard(left: dict, right: dict, fields=("chosen", "rejected"), ngram: int = 20) -> float:
    return jaccard(ngram_set([left[f] for f in fields], ngram), ngram_set([right[f] for f in fields], ngram))
