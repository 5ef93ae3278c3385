"""The run manifest: one YAML file that fully describes a build, validated with pydantic.

The smallest manifest names a run and one source; every other setting has a default::

    name: my-run
    sources:
      - type: git
        repos: [/abs/path/repo-a, file:///abs/path/repo-b.git]

Relative paths are read relative to the manifest's own folder. Unknown keys and wrong types are
errors that name the key (``sources.0.repo: unknown key``), never silently ignored.
"""

from __future__ import annotations

import glob
import os
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    field_validator,
    model_validator,
)


class ManifestError(ValueError):
    """The manifest is unreadable or invalid; the message names the file and the key."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class GitSource(_Strict):
    """Mine single-file commits from git repositories (local paths, clone URLs, bundles)."""

    type: Literal["git"]
    repos: list[str] = Field(min_length=1)
    rev: str = "HEAD"
    subset: str = "commits"
    max_commits: int | None = Field(default=None, ge=1)  # per repository, newest first
    on_error: Literal["fail", "skip"] = "fail"  # a broken repository stops the run, or is counted

    @field_validator("repos")
    @classmethod
    def _no_blank(cls, repos: list[str]) -> list[str]:
        for repo in repos:
            if not str(repo).strip():
                raise ValueError("a repository entry is empty")
        return repos


Source = Annotated[GitSource, Field(discriminator="type")]


class MessageFilterConfig(_Strict):
    min_length: int = Field(default=10, ge=0)  # exclusive
    max_length: int = Field(default=15000, ge=1)  # exclusive


class CriteriaConfig(_Strict):
    match: Literal["substring", "word_start"] = "substring"
    terms_dir: str | None = None  # a folder with the five *.list files; default: shipped lists


class ValidationSettings(_Strict):
    max_bytes: int = Field(default=256 * 1024, ge=1)  # per side
    min_depth: int = Field(default=3, ge=1)
    max_error_fraction: float = Field(default=0.10, ge=0.0, le=1.0)  # mined code
    parse_timeout_s: float = Field(default=5.0, gt=0)


class FiltersConfig(_Strict):
    message: MessageFilterConfig = MessageFilterConfig()
    criteria: CriteriaConfig = CriteriaConfig()
    validation: ValidationSettings = ValidationSettings()


# Row columns that hold text a dedupe or decontamination step can read.
TEXT_FIELDS: tuple[str, ...] = ("system", "input", "chosen", "rejected", "message")


def _check_text_fields(fields: list[str]) -> list[str]:
    unknown = [name for name in fields if name not in TEXT_FIELDS]
    if unknown:
        raise ValueError(f"unknown field(s) {unknown}; expected some of {list(TEXT_FIELDS)}")
    if len(set(fields)) != len(fields):
        raise ValueError(f"a field is listed twice in {fields}")
    return fields


class NearDedupeConfig(_Strict):
    """MinHash LSH near-dedupe over the row fields (see :mod:`filters.dedupe.near`)."""

    fields: list[str] = Field(default=["chosen", "rejected"], min_length=1)
    ngram: int = Field(default=20, ge=1)  # tokens per shingle
    threshold: float = Field(default=0.75, gt=0.0, lt=1.0)  # Jaccard similarity
    num_perm: int = Field(default=256, ge=2, le=8192)
    bands: int | None = Field(default=None, ge=1)  # with rows; default: chosen from the threshold
    rows: int | None = Field(default=None, ge=1)
    verify_jaccard: bool = False  # check each candidate pair's true Jaccard before merging
    seed: int = Field(default=1, ge=0)
    partitions: int | None = Field(default=None, ge=1)  # shuffle partitions; default from data

    @field_validator("fields")
    @classmethod
    def _known_fields(cls, fields: list[str]) -> list[str]:
        return _check_text_fields(fields)

    @model_validator(mode="after")
    def _bands_fit(self) -> NearDedupeConfig:
        if (self.bands is None) != (self.rows is None):
            raise ValueError("set both bands and rows, or neither")
        if self.bands is not None and self.rows is not None and self.bands * self.rows > self.num_perm:
            raise ValueError(f"bands * rows = {self.bands * self.rows} exceeds num_perm = {self.num_perm}")
        return self


class DedupeConfig(_Strict):
    exact: bool = True  # drop rows whose (input, chosen, rejected) repeats; keep the lowest id
    near: NearDedupeConfig | None = None  # MinHash near-dedupe; keeps the lowest id per cluster


class DecontaminateConfig(_Strict):
    """Drop rows that share an n-gram with a benchmark prompt (see :mod:`filters.dedupe.decontaminate`)."""

    benchmarks: list[str] = Field(min_length=1)  # JSONL / Parquet files, `datasets` folders, globs
    field: str = Field(default="prompt", min_length=1)  # the benchmark column holding the prompt
    fields: list[str] = Field(default=["input"], min_length=1)  # row fields checked (the prompt)
    ngram: int = Field(default=13, ge=1)
    lowercase: bool = True  # compare case-insensitively

    @field_validator("fields")
    @classmethod
    def _known_fields(cls, fields: list[str]) -> list[str]:
        return _check_text_fields(fields)


class RejectsConfig(_Strict):
    sample_rate: float = Field(default=1.0, ge=0.0, le=1.0)  # share of dropped rows written


class OutputConfig(_Strict):
    max_shard_bytes: int = Field(default=500_000_000, ge=1)
    compression_level: int = Field(default=3, ge=1, le=22)  # zstd
    row_group_rows: int = Field(default=1000, ge=1)
    rejects: RejectsConfig = RejectsConfig()


class RayConfig(_Strict):
    address: str | None = None  # None: RAY_ADDRESS if set (a Ray job), else a local instance
    num_cpus: int | None = Field(default=None, ge=1)  # for a local instance only
    batch_rows: int = Field(default=256, ge=1)


class Manifest(_Strict):
    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
    sources: list[Source] = Field(min_length=1)
    filters: FiltersConfig = FiltersConfig()
    dedupe: DedupeConfig = DedupeConfig()
    decontaminate: DecontaminateConfig | None = None
    output: OutputConfig = OutputConfig()
    ray: RayConfig = RayConfig()

    # The folder relative paths in the manifest are read against (the manifest's own folder).
    _base_dir: Path = PrivateAttr(default_factory=Path.cwd)

    @property
    def base_dir(self) -> Path:
        return self._base_dir

    def resolved(self) -> dict[str, Any]:
        """The manifest with every default filled in, as plain JSON data (for the run record)."""
        return self.model_dump(mode="json")


def _expand_repos(repos: list[str], base_dir: Path) -> list[str]:
    expanded: list[str] = []
    for repo in repos:
        if "://" in repo or repo.startswith("git@") or not glob.has_magic(repo):
            expanded.append(repo)
            continue
        pattern = os.path.expanduser(repo)
        if os.path.isabs(pattern):
            matches = sorted(glob.glob(pattern))
        else:  # keep matches relative, as written, so that row ids do not depend on the checkout
            matches = sorted(os.path.relpath(m, base_dir) for m in glob.glob(str(base_dir / pattern)))
        if not matches:
            raise ManifestError(f"repository pattern {repo!r} matches nothing")
        expanded.extend(matches)
    return expanded


def _expand_benchmarks(patterns: list[str], base_dir: Path) -> list[str]:
    """Expand globs; every entry must name an existing file or folder (kept as written)."""
    expanded: list[str] = []
    for pattern in patterns:
        path = os.path.expanduser(pattern)
        full = path if os.path.isabs(path) else str(base_dir / path)
        if glob.has_magic(pattern):
            matches = sorted(glob.glob(full))
            if not matches:
                raise ManifestError(f"benchmark pattern {pattern!r} matches nothing")
            expanded.extend(m if os.path.isabs(path) else os.path.relpath(m, base_dir) for m in matches)
        elif not os.path.exists(full):
            raise ManifestError(f"benchmark {pattern!r} does not exist (looked for {full})")
        else:
            expanded.append(pattern)
    return expanded


def _format_error(error: ValidationError) -> str:
    lines = []
    for problem in error.errors():
        key = ".".join(str(part) for part in problem["loc"]) or "(top level)"
        message = "unknown key" if problem["type"] == "extra_forbidden" else problem["msg"]
        lines.append(f"  {key}: {message}")
    return "\n".join(lines)


def parse_manifest(data: Any, base_dir: Path, origin: str = "<manifest>") -> Manifest:
    """Validate manifest ``data`` (already parsed YAML); relative paths resolve against ``base_dir``."""
    if not isinstance(data, dict):
        raise ManifestError(f"{origin}: expected a mapping at the top level, got {type(data).__name__}")
    try:
        manifest = Manifest.model_validate(data)
    except ValidationError as error:
        raise ManifestError(f"{origin}: invalid manifest\n{_format_error(error)}") from None
    sources = []
    for index, source in enumerate(manifest.sources):
        try:
            repos = _expand_repos(source.repos, base_dir)
        except ManifestError as error:
            raise ManifestError(f"{origin}: sources.{index}.repos: {error}") from None
        sources.append(source.model_copy(update={"repos": repos}))
    manifest = manifest.model_copy(update={"sources": sources})
    if manifest.decontaminate is not None:
        try:
            benchmarks = _expand_benchmarks(manifest.decontaminate.benchmarks, base_dir)
        except ManifestError as error:
            raise ManifestError(f"{origin}: decontaminate.benchmarks: {error}") from None
        manifest = manifest.model_copy(update={
            "decontaminate": manifest.decontaminate.model_copy(update={"benchmarks": benchmarks})})
    manifest._base_dir = base_dir
    return manifest


def load_manifest(path: str | Path) -> Manifest:
    """Read and validate the YAML manifest at ``path``."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise ManifestError(f"cannot read manifest {path}: {error.strerror or error}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise ManifestError(f"{path}: not valid YAML: {error}") from None
    return parse_manifest(data, path.resolve().parent, origin=str(path))
