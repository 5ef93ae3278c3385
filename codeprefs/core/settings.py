"""The base of every component's settings model.

Each component (a filter, the dedupe, synthesis, the judge) owns one settings model, defined
next to its code; the run manifest (:mod:`codeprefs.pipelines.manifest`) only composes them into its YAML
sections. All of them are strict in the same way, so a typo in the manifest is an error that
names the key instead of a silently ignored setting, and immutable, so a component can hold its
settings (and ship them to Ray workers) without anyone changing them under it.
"""

from __future__ import annotations

import hashlib
import json

from pydantic import BaseModel, ConfigDict

FINGERPRINT_CHARS = 16


class Settings(BaseModel):
    """A component's settings: unknown keys are errors, values are frozen once validated."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    def fingerprint(self) -> str:
        """A stable hash of these settings (sha256 of their canonical JSON, 16 hex characters).

        Canonical: every default filled in, keys sorted, no whitespace, so two equal settings
        give the same fingerprint whatever order the manifest wrote them in. Meant as the part
        of a step's cache key that its own settings decide.
        """
        canonical = json.dumps(self.model_dump(mode="json"), sort_keys=True, separators=(",", ":"),
                               ensure_ascii=False)
        return hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:FINGERPRINT_CHARS]
