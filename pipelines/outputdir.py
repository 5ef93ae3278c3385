"""Which files of an output folder a codeprefs run wrote, and so which a build may delete.

A build deletes only files that a codeprefs run in that folder recorded as its own: the shards
and rejects files listed in ``run.json`` and in the run state (``.cache/run-state.json``,
written before the files are renamed into place, so a crash in between still knows them), and
the staging and temporary files its writer names. A folder holding anything else (another
dataset's shards, notes) is refused unless the user forces it; a forced build still deletes
none of those files.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from codeprefs.core.layout import CACHE_DIR, CANDIDATES_DIR, LEASE, LOCK, RUN_RECORD, RUN_STATE
from codeprefs.core.store import Store, open_store
from codeprefs.pipelines.runrecord import RecordError, read_store_record
from codeprefs.pipelines.shards import DATA_DIR, REJECTS_DIR, STAGING

# The names this project's writers give their files (nothing else is ever deleted).
OWN_FILE = re.compile(rf"^(?:{DATA_DIR}/train|{REJECTS_DIR}/rejects|{CANDIDATES_DIR}/candidates)"
                      r"-\d{5}-of-\d{5}\.parquet$")
# What planning wrote into an output folder before clones moved to the node-local scratch folder
# (codeprefs.core.scratch), possibly before a first build's run state existed: copies of its
# repositories (``.cache/<name>-<16 hex>.git``, their locks, half-made clones). Builds write none
# of these now; an older folder holding them is still a build's own: never deleted, not foreign.
OWN_CACHE = re.compile(rf"^{re.escape(CACHE_DIR)}/(?:[^/]+-[0-9a-f]{{16}}\.git(?:/.+|\.lock)|\.clone-[^/]+/.+)$")
LEFTOVER = re.compile(rf"^(?:{DATA_DIR}|{REJECTS_DIR}|{CANDIDATES_DIR})/(?:\.(?:train|rejects|candidates)-\d{{5}}-of-\d{{5}}\.parquet"
                      rf"\.[0-9a-f]{{32}}\.tmp|{re.escape(STAGING)}/\.?part-\d{{5}}\.parquet(?:\.[0-9a-f]{{32}}\.tmp)?)$")
NAMED = 3  # foreign files named in a refusal before "and N more"


@dataclass
class OutputFolder:
    """What an output folder holds: its run record and run state, either possibly damaged."""

    store: Store
    record: dict[str, Any] | None = None
    state: dict[str, Any] | None = None
    damaged: list[RecordError] = field(default_factory=list)

    @property
    def is_codeprefs_run(self) -> bool:
        """Whether a codeprefs run left its record or state here (damaged ones count)."""
        return self.record is not None or self.state is not None or bool(self.damaged)

    def owned(self) -> set[str]:
        """The shards and rejects files codeprefs runs recorded here (relative paths)."""
        listed: list[Any] = []
        if self.record is not None:
            listed += [item.get("path") for key in ("outputs", "rejects")
                       for item in self.record.get(key) or [] if isinstance(item, dict)]
            candidates = self.record.get("candidates")
            if isinstance(candidates, dict):
                listed += [item.get("path") for item in candidates.get("files") or [] if isinstance(item, dict)]
        if self.state is not None:
            listed += self.state.get("files") or []
        return {path for path in listed if isinstance(path, str) and OWN_FILE.match(path)}

    def foreign_files(self) -> list[str]:
        """Files here that no codeprefs run wrote (relative paths, sorted).

        In a folder of an earlier run these are files in ``data/``, ``rejects/`` and
        ``candidates/`` that no run
        recorded (they would be mixed into the dataset); in any other folder, every file.
        """
        owned = self.owned()
        if self.is_codeprefs_run:
            files = [name for folder in (DATA_DIR, REJECTS_DIR, CANDIDATES_DIR) for name in self.store.files(folder)]
        else:
            files = self.store.files()
        return [relative for relative in files
                if not (relative in owned or LEFTOVER.match(relative) or OWN_CACHE.match(relative)
                        or relative in (LOCK.as_posix(), LEASE.as_posix()))]


def inspect_output(output: Store | str, ignore_damage: bool = False) -> OutputFolder:
    """Read the run record and run state of the build output ``output``.

    A damaged one raises :class:`RecordError` naming it, unless ``ignore_damage`` (a restart,
    which rewrites both): then it is left out and noted in ``damaged``.
    """
    folder = OutputFolder(open_store(output))
    for attribute, relative in (("record", RUN_RECORD), ("state", RUN_STATE.as_posix())):
        try:
            setattr(folder, attribute, read_store_record(folder.store, relative))
        except RecordError as error:
            if not ignore_damage:
                raise
            folder.damaged.append(error)
    return folder


def describe_foreign(output_dir: Store, files: list[str]) -> str:
    """The refusal for an output folder holding files no codeprefs run wrote."""
    named = ", ".join(files[:NAMED])
    more = f" and {len(files) - NAMED} more" if len(files) > NAMED else ""
    return (f"{output_dir} holds files that no codeprefs run wrote: {named}{more}. A build there could "
            "mix its shards with them; choose another --output, move them away, or pass --force to "
            "build next to them (they are never deleted)")


def removable(relative: str, owned: set[str], keep: set[str]) -> bool:
    """Whether a build may delete ``relative``: a file a run recorded and this run did not
    write again, or a staging or temporary file of this project's writer."""
    return (relative in owned and relative not in keep) or bool(LEFTOVER.match(relative))
