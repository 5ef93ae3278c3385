"""The build's error: what stops a build, naming the input or step at fault."""

from __future__ import annotations

from codeprefs.core.redact import redact_text


class BuildError(RuntimeError):
    """The build cannot start or finish; the message says which input or step is at fault."""

    def __init__(self, message: str) -> None:
        super().__init__(redact_text(message))  # a URL's credentials never reach the user's screen
