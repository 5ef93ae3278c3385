"""The settings of the dedupe and decontamination steps (the manifest's ``dedupe`` and
``decontaminate`` sections), next to the code that reads them."""

from __future__ import annotations

from pydantic import Field, field_validator, model_validator

from codeprefs.core.settings import Settings

# Row columns that hold text a dedupe or decontamination step can read.
TEXT_FIELDS: tuple[str, ...] = ("system", "input", "chosen", "rejected", "message")


def _check_text_fields(fields: list[str]) -> list[str]:
    unknown = [name for name in fields if name not in TEXT_FIELDS]
    if unknown:
        raise ValueError(f"unknown field(s) {unknown}; expected some of {list(TEXT_FIELDS)}")
    if len(set(fields)) != len(fields):
        raise ValueError(f"a field is listed twice in {fields}")
    return fields


class NearDedupeSettings(Settings):
    """MinHash LSH near-dedupe over the row fields (see :mod:`codeprefs.filters.dedupe.near`)."""

    fields: list[str] = Field(default=["chosen", "rejected"], min_length=1)
    ngram: int = Field(default=20, ge=1)  # tokens per shingle
    threshold: float = Field(default=0.75, gt=0.0, lt=1.0)  # Jaccard similarity
    num_perm: int = Field(default=256, ge=2, le=8192)
    bands: int | None = Field(default=None, ge=1)  # with rows; default: chosen from the threshold
    rows: int | None = Field(default=None, ge=1)
    # check each candidate pair's exact Jaccard before merging (false: every LSH candidate merges,
    # which removes look-alikes under the threshold)
    verify_jaccard: bool = True
    seed: int = Field(default=1, ge=0)
    partitions: int | None = Field(default=None, ge=1)  # shuffle partitions; default from data

    @field_validator("fields")
    @classmethod
    def _known_fields(cls, fields: list[str]) -> list[str]:
        return _check_text_fields(fields)

    @model_validator(mode="after")
    def _bands_fit(self) -> NearDedupeSettings:
        if (self.bands is None) != (self.rows is None):
            raise ValueError("set both bands and rows, or neither")
        if self.bands is not None and self.rows is not None and self.bands * self.rows > self.num_perm:
            raise ValueError(f"bands * rows = {self.bands * self.rows} exceeds num_perm = {self.num_perm}")
        return self


class DedupeSettings(Settings):
    """Exact dedupe (in the write stage, :mod:`codeprefs.pipelines.shards`) and optional near-dedupe."""

    exact: bool = True  # drop rows whose (input, chosen, rejected) repeats; keep the lowest id
    near: NearDedupeSettings | None = None  # MinHash near-dedupe; keeps the lowest id per cluster


class DecontaminateSettings(Settings):
    """Drop rows that share an n-gram with a benchmark prompt (see :mod:`codeprefs.filters.dedupe.decontaminate`)."""

    benchmarks: list[str] = Field(min_length=1)  # JSONL / Parquet files, `datasets` folders, globs
    field: str = Field(default="prompt", min_length=1)  # the benchmark column holding the prompt
    fields: list[str] = Field(default=["input"], min_length=1)  # row fields checked (the prompt)
    ngram: int = Field(default=13, ge=1)
    lowercase: bool = True  # compare case-insensitively

    @field_validator("fields")
    @classmethod
    def _known_fields(cls, fields: list[str]) -> list[str]:
        return _check_text_fields(fields)
