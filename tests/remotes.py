"""Remote repositories for the export tests: real bare repositories reached over ``file://``.

:func:`build_remotes` writes four small histories and publishes them as bare repositories under
``<root>/<owner>/<name>.git``, so that the export source's remote template is
``file://<root>/{repo}.git``. ``acme/fork`` is a clone of ``acme/stats`` (same commits).
"""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.conftest import GitRepo
from tests.samples import JS_V1, JS_V2, STATS_V1, STATS_V2, STATS_V3

RING_C = """#include "ring.h"

int ring_push(struct ring *r, int value) {
    r->items[r->head % RING_SIZE] = value;
    r->head++;
    return 0;
}
"""
RING_H_V1 = """#ifndef RING_H
#define RING_H
#define RING_SIZE 8
struct ring {
    int items[RING_SIZE];
    int head;
};
int ring_push(struct ring *r, int value);
#endif
"""
RING_H_V2 = RING_H_V1.replace("    int head;\n", "    unsigned int head;\n")

LICENSE = "mit"


@dataclass
class Remotes:
    root: Path  # holds <owner>/<name>.git
    commits: dict[str, str] = field(default_factory=dict)  # label -> sha

    @property
    def template(self) -> str:
        return f"file://{self.root}/{{repo}}.git"


def _publish(repo: GitRepo, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(["git", "clone", "-q", "--bare", str(repo.path), str(target)], check=True)


def build_remotes(base: Path) -> Remotes:
    """Write the histories under ``base/work`` and publish them under ``base/remotes``."""
    remotes = Remotes(base / "remotes")
    commits = remotes.commits

    stats = GitRepo(base / "work" / "stats")
    commits["stats_root"] = stats.commit("Add statistics helpers", {"stats.py": STATS_V1, "notes.md": "x\n"})
    commits["stats_fix"] = stats.commit("Fix bug: mean was off by one", {"stats.py": STATS_V2})
    commits["stats_speed"] = stats.commit("Speed up mean with the builtin sum", {"stats.py": STATS_V3})
    commits["stats_notes"] = stats.commit("Fix bug in the notes", {"notes.md": "y\n"})
    _publish(stats, remotes.root / "acme" / "stats.git")
    _publish(stats, remotes.root / "acme" / "fork.git")

    ring = GitRepo(base / "work" / "ring")
    ring.commit("Add ring buffer", {"ring.c": RING_C, "ring.h": RING_H_V1})
    commits["ring_fix"] = ring.commit("Fix overflow in ring buffer header", {"ring.h": RING_H_V2})
    _publish(ring, remotes.root / "acme" / "ring.git")

    js = GitRepo(base / "work" / "js")
    commits["js_root"] = js.commit("Add join", {"join.js": JS_V1})
    commits["js_speed"] = js.commit("Make join faster by avoiding quadratic concatenation",
                                    {"join.js": JS_V2})
    _publish(js, remotes.root / "acme" / "js.git")
    return remotes


def export_row(commit: str, repos: str, path: str, message: str, *, license: str = LICENSE,
               unix_time: int = 1_500_000_000, old_file: str | None = None, **extra: Any) -> dict:
    """One row of the paper's export schema."""
    return {"commit": commit, "subject": message.splitlines()[0], "message": message,
            "repos": repos, "license": license, "old_file": path if old_file is None else old_file,
            "new_file": path, "unix_time": unix_time, **extra}


def write_jsonl(path: Path, rows: list[dict | str]) -> Path:
    """Write ``rows`` one a line; a ``str`` is written as it is (a malformed line)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as handle:
        for row in rows:
            handle.write((row if isinstance(row, str) else json.dumps(row)) + "\n")
    return path
