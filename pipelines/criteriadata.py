"""The commit messages of a finished build, for training a criteria classifier
(:mod:`codeprefs.filters.classifier`, ``codeprefs criteria train``).

A classifier must see the messages the term rule labelled and those it did not, so both public
outputs of a build are read: the shards (``run.json``'s ``outputs``: every kept pair) and the
rejects (``rejects``: dropped rows, all of them unless ``output.rejects.sample_rate`` is below 1).
A message counts when it reached the criteria stage, that is every row of the shards and every
rejected row not dropped before it (at the ``list``, ``split`` or ``message`` stage, whose
messages a build never labels). Rows without a message (synthesized and dataset rows) are left
out. One commit gives several rows (a pair per changed file or definition): each commit counts
once.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from codeprefs.core.drops import LIST, MESSAGE, SPLIT
from codeprefs.pipelines.runrecord import RecordError, read_run_record

# Drop stages before the criteria stage: their rows' messages are never labelled by a build.
BEFORE_CRITERIA = frozenset({LIST.name, SPLIT.name, MESSAGE.name})
_COLUMNS = ["repo", "commit", "message"]


class BuildMessagesError(ValueError):
    """The build folder cannot give training messages; the message names the folder or file."""


@dataclass(frozen=True)
class BuildMessages:
    """The distinct commits' messages of a build, and where they came from."""

    name: str  # the build's name
    commits: list[tuple[str | None, str | None, str]]  # (repo, commit, message), one per commit, as read
    rows: Counter[str] = field(default_factory=Counter)  # rows read: kept, rejected, before_criteria, no_message
    sample_rate: float = 1.0  # output.rejects.sample_rate of the build

    @property
    def messages(self) -> list[str]:
        return [message for _, _, message in self.commits]

    def without(self, commits: set[str]) -> BuildMessages:
        """These messages less those of ``commits`` (shas; e.g. the commits of a judged sample)."""
        kept = [item for item in self.commits if item[1] not in commits]
        rows = self.rows + Counter({"excluded_commits": len(self.commits) - len(kept)})
        return BuildMessages(self.name, kept, rows, self.sample_rate)

    def details(self) -> dict[str, Any]:
        """Provenance for the model file."""
        return {"commits": len(self.commits), "rows": dict(sorted(self.rows.items())),
                "rejects_sample_rate": self.sample_rate}


def build_messages(output_dir: str | Path) -> BuildMessages:
    """Read the messages of the build in ``output_dir`` (see the module doc)."""
    output = Path(output_dir)
    if not output.is_dir():
        raise BuildMessagesError(f"{output}: no such build folder")
    try:
        record = read_run_record(output)
    except (FileNotFoundError, RecordError) as error:
        raise BuildMessagesError(str(error)) from None
    try:
        shards = [str(item["path"]) for item in record.get("outputs") or []]
        rejects = [str(item["path"]) for item in record.get("rejects") or []]
        sample_rate = float(((record.get("manifest") or {}).get("output") or {}).get("rejects", {})
                            .get("sample_rate", 1.0))
    except (KeyError, TypeError, ValueError, AttributeError) as error:
        raise BuildMessagesError(f"{output / 'run.json'}: not a build record ({error})") from None
    seen: set[tuple[str | None, str | None, str]] = set()
    commits: list[tuple[str | None, str | None, str]] = []
    rows: Counter[str] = Counter()
    for kind, paths in (("kept", shards), ("rejected", rejects)):
        for relative in paths:
            path = output / relative
            columns = _COLUMNS + (["drop_stage"] if kind == "rejected" else [])
            try:
                table = pq.read_table(path, columns=columns)
            except (OSError, ValueError) as error:  # missing file, not Parquet, a column missing
                raise BuildMessagesError(f"{path}: cannot read the build's {kind} rows ({error})") from None
            for row in table.to_pylist():
                if kind == "rejected" and row["drop_stage"] in BEFORE_CRITERIA:
                    rows["before_criteria"] += 1
                    continue
                if not (row["message"] or "").strip():
                    rows["no_message"] += 1
                    continue
                rows[kind] += 1
                key = (row["repo"], row["commit"], row["message"])
                if key not in seen:
                    seen.add(key)
                    commits.append(key)
    return BuildMessages(str(record.get("name") or output.name), commits, rows, sample_rate)
