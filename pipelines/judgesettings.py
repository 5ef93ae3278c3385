"""The settings of the LLM judge of mined pairs (the manifest's ``judge`` section).

Apart from :mod:`codeprefs.pipelines.judge`, which runs the stages, so that reading the settings does not
load the pipeline steps the judge stage is built on.
"""

from __future__ import annotations

from pydantic import Field, field_validator

from codeprefs.core.settings import Settings
from codeprefs.pipelines.synthesis.llm import LLMSettings
from codeprefs.pipelines.synthesis.prompts import INSTRUCTION_STYLES


class RatingSettings(Settings):
    """The judge's first pass: rate how specifically a change improves its criterion, 1-5."""

    min_score: int = Field(default=4, ge=1, le=5)  # lower: dropped as low_rating


class InstructionSettings(Settings):
    """Inverse instructions: the LLM writes the task the change answers; it replaces the prompt.
    The styles are those the prompt templates know (:data:`~codeprefs.pipelines.synthesis.prompts.INSTRUCTION_STYLES`)."""

    styles: list[str] = Field(default_factory=lambda: list(INSTRUCTION_STYLES), min_length=1)

    @field_validator("styles")
    @classmethod
    def _known_styles(cls, styles: list[str]) -> list[str]:
        unknown = [style for style in styles if style not in INSTRUCTION_STYLES]
        if unknown:
            raise ValueError(f"unknown styles {unknown}; expected some of {list(INSTRUCTION_STYLES)}")
        return styles


class JudgeSettings(Settings):
    """The manifest's ``judge`` section: the LLM stages for mined pairs (git and export sources)."""

    llm: LLMSettings  # any OpenAI-compatible chat endpoint
    rating: RatingSettings | None = RatingSettings()  # null: no rating pass
    instruction: InstructionSettings | None = None  # null: keep the template prompt
    votes: int = Field(default=8, ge=0)  # judge samples, order randomised; 0: no vote
    temperature: float = Field(default=0.8, ge=0.0, le=2.0)  # of the judge samples
    seed: int = 0  # order of the judge samples and the instruction style per pair
