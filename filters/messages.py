"""Commit-message filters: keep messages that state one real intent.

Following the paper: the stripped message must be strictly longer than 10 and strictly shorter
than 15000 characters, must not be one of the low-signal messages below, must not start with
"merge", and must not contain "pi push" or "push pi". Each rejection has its own reason.

Beyond the paper, revert commits are dropped (``revert``): their subject is ``Revert "..."``
(what ``git revert`` writes) or a line of their body reads "This reverts commit <sha>". A revert's
pair is its original's pair with the sides swapped, the same label on opposite sides.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from pydantic import Field

from codeprefs.core.drops import MESSAGE, DropReason
from codeprefs.core.settings import Settings

TOO_SHORT = MESSAGE.reason("message_too_short")
TOO_LONG = MESSAGE.reason("message_too_long")
MERGE = MESSAGE.reason("message_merge")
PI_PUSH = MESSAGE.reason("message_pi_push")
REVERT = MESSAGE.reason("revert")
LOW_SIGNAL = MESSAGE.reason("message_low_signal")

# Messages that say nothing about what changed, compared after lower-casing, trimming and
# dropping trailing punctuation. Our own list, in the spirit of the paper's.
LOW_SIGNAL_MESSAGES: frozenset[str] = frozenset(
    {
        "initial commit", "first commit", "initial import", "initial version", "init commit",
        "update", "updates", "updated", "minor update", "minor updates", "small update",
        "update readme", "update readme.md", "updated readme", "updated readme.md",
        "readme", "readme.md", "update code", "updated code", "code update",
        "update file", "update files", "updated files", "file update",
        "wip", "work in progress", "test", "testing", "tests", "test commit",
        "tweak", "tweaks", "minor tweaks", "small tweaks", "stuff", "more stuff", "misc",
        "changes", "some changes", "minor changes", "small changes", "more changes",
        "fix", "fixes", "fixed", "minor fix", "minor fixes", "small fix", "quick fix",
        "bugfix", "bug fix", "cleanup", "clean up", "refactor", "refactoring",
        "commit", "save", "sync", "temp", "tmp", "asdf", "foo", "no message",
        "add files via upload", "added files", "add files", "upload files", "delete",
        "improvements", "various fixes", "various changes", "done", "final", "version bump",
        "bump version", "release",
    }
)

_REVERT_SUBJECT = re.compile(r'^revert\s*"', re.IGNORECASE)
_REVERTS_COMMIT = re.compile(r"^\s*this reverts commit [0-9a-f]{7,64}\b", re.IGNORECASE | re.MULTILINE)
_TRAILING_PUNCTUATION = re.compile(r"[\s.!:;,\-]+$")


def is_revert(message: str) -> bool:
    """Whether ``message`` is a revert commit's (see the module doc)."""
    return _REVERT_SUBJECT.match(message.strip()) is not None or _REVERTS_COMMIT.search(message) is not None


def normalise_message(message: str) -> str:
    return _TRAILING_PUNCTUATION.sub("", message.strip().lower())


class MessageFilterSettings(Settings):
    """The length bounds of a kept message (the manifest's ``filters.message``), in characters
    of the stripped message; both bounds are exclusive, as in the paper."""

    min_length: int = Field(default=10, ge=0)  # exclusive
    max_length: int = Field(default=15000, ge=1)  # exclusive


@dataclass(frozen=True)
class MessageFilter:
    """Decide whether a commit message is kept; :meth:`reject_reason` says why not."""

    settings: MessageFilterSettings = MessageFilterSettings()
    blocked: frozenset[str] = field(default=LOW_SIGNAL_MESSAGES)

    def reject_reason(self, message: str) -> DropReason | None:
        """``None`` to keep the message, else the reason it is dropped (drop stage ``message``)."""
        stripped = message.strip()
        if len(stripped) <= self.settings.min_length:
            return TOO_SHORT
        if len(stripped) >= self.settings.max_length:
            return TOO_LONG
        lowered = stripped.lower()
        if lowered.startswith("merge"):
            return MERGE
        if "pi push" in lowered or "push pi" in lowered:
            return PI_PUSH
        if is_revert(stripped):
            return REVERT
        if normalise_message(stripped) in self.blocked:
            return LOW_SIGNAL
        return None
