"""The run manifest: one YAML file that fully describes a build, validated with pydantic.

The smallest manifest names a run and one source; every other setting has a default::

    name: my-run
    sources:
      - type: git
        repos: [/abs/path/repo-a, file:///abs/path/repo-b.git, {path: /abs/x.git, name: org/x}]

A ``solutions`` source turns correct solutions with tests into verified pairs (see
:mod:`pipelines.synthesis`); the top-level ``synthesis`` section configures how::

    sources:
      - type: solutions
        path: /abs/data/*.jsonl        # JSONL or Parquet; paths or globs
        language: Go                  # or {field: language}
        fields: {prompt: prompt, solution: canonical_solution, tests: test}
        harness: humaneval
    synthesis:
      bug_injection: {mutants_per_solution: 3, verify: execute, seed: 7}

A source is ``git`` (repositories), ``export`` (a commit export whose file contents are fetched
from the repositories' remotes) or ``dataset`` (an existing preference dataset); an optional
``split`` keeps the training or the benchmark commits of the git and export sources.

Relative paths are read relative to the manifest's own folder. Unknown keys and wrong types are
errors that name the key (``sources.0.repo: unknown key``), never silently ignored.
"""

from __future__ import annotations

import glob
import os
import re
from datetime import date
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    field_validator,
    model_validator,
)

from codeprefs.core.locations import RemoteLocationError, require_local
from codeprefs.redact import public_url
from codeprefs.schema import parse_aspect, parse_language


class ManifestError(ValueError):
    """The manifest is unreadable or invalid; the message names the file and the key."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


_PUBLIC_NAME = re.compile(r"^[A-Za-z0-9_.-]+(/[A-Za-z0-9_.-]+)*$")


class RepoEntry(_Strict):
    """A repository with the public name its rows carry: ``{path: /abs/x.git, name: org/x}``.

    ``path`` (or ``url``) takes anything a plain ``repos`` entry takes; ``name`` replaces the
    name otherwise derived from it (see :mod:`pipelines.sources.reponame`).
    """

    path: str | None = None
    url: str | None = None
    name: str | None = None

    @model_validator(mode="after")
    def _one_location(self) -> RepoEntry:
        if (self.path is None) == (self.url is None) or not (self.path or self.url or "").strip():
            raise ValueError("give exactly one of path or url")
        if self.name is not None:
            public = "://" in self.name and public_url(self.name) == self.name
            if not (public or (_PUBLIC_NAME.match(self.name) and ".." not in self.name.split("/"))):
                raise ValueError(f"name {self.name!r} must be a public name such as owner/repo "
                                 "(no local path, no credentials)")
        return self

    @property
    def location(self) -> str:
        return self.path or self.url or ""


class GitSource(_Strict):
    """Mine single-file commits from git repositories (local paths, clone URLs, bundles)."""

    type: Literal["git"]
    repos: list[str | RepoEntry] = Field(min_length=1)
    rev: str = "HEAD"
    subset: str = "commits"
    max_commits: int | None = Field(default=None, ge=1)  # per repository, newest first
    on_error: Literal["fail", "skip"] = "fail"  # a broken repository stops the run, or is counted
    license: str | None = None  # declared for the dataset card, e.g. "mit" or "apache-2.0"
    # per clone or fetch of one repository; past it git and its helpers are killed
    clone_timeout_s: float = Field(default=3600, gt=0)

    @field_validator("repos")
    @classmethod
    def _no_blank(cls, repos: list[str | RepoEntry]) -> list[str | RepoEntry]:
        for repo in repos:
            if isinstance(repo, str) and not repo.strip():
                raise ValueError("a repository entry is empty")
        return repos


class SolutionFields(_Strict):
    """Which record field holds what (optional ones may be null or absent in records)."""

    prompt: str = "prompt"
    solution: str = "canonical_solution"
    tests: str = "test"
    task_id: str | None = "task_id"  # ids and provenance; the line number when absent
    entry_point: str | None = "entry_point"  # Python tests that only define check(candidate)
    instruction: str | None = None  # a ready-made natural-language task, used as `input`


class LanguageField(_Strict):
    field: str = Field(min_length=1)


class SolutionsSource(_Strict):
    """Correct solutions with tests, turned into verified pairs by ``synthesis``."""

    type: Literal["solutions"]
    path: str | list[str]  # files or globs; relative paths are read against the manifest
    format: Literal["auto", "jsonl", "parquet"] = "auto"  # auto: from the file extension
    language: str | LanguageField  # a language name, or {field: <record field>}
    fields: SolutionFields = SolutionFields()
    harness: Literal["humaneval"] = "humaneval"  # prompt + solution + "\n" + tests
    subset: str | None = None  # default: bug-injection / readability by pair kind
    records_per_task: int = Field(default=4, ge=1)  # records one Ray task synthesizes
    max_records: int | None = Field(default=None, ge=1)  # per file, the first ones
    on_error: Literal["fail", "skip"] = "fail"  # a malformed record stops the run, or is counted

    @field_validator("language")
    @classmethod
    def _known_language(cls, language: str | LanguageField) -> str | LanguageField:
        if isinstance(language, str):
            from codeprefs.schema import parse_language

            return parse_language(language).value
        return language

    @field_validator("path")
    @classmethod
    def _paths(cls, path: str | list[str]) -> list[str]:
        paths = [path] if isinstance(path, str) else path
        if not paths or any(not str(p).strip() for p in paths):
            raise ValueError("a path entry is empty")
        return paths


# The paper's permissive licences (SPDX ids, lower case), the default licence allowlist.
PERMISSIVE_LICENSES: tuple[str, ...] = (
    "mit", "apache-2.0", "bsd-2-clause", "bsd-3-clause", "isc", "cc0-1.0", "epl-1.0", "mpl-2.0",
    "unlicense", "agpl-3.0", "lgpl-2.1", "artistic-2.0",
)


def _one_or_many(value: Any) -> Any:
    return [value] if isinstance(value, str) else value


PathList = Annotated[list[str], BeforeValidator(_one_or_many), Field(min_length=1)]


class ExportSource(_Strict):
    """Commits listed in an export file (the paper's schema); file contents fetched from remotes.

    Each row has ``commit, subject, message, repos, license, old_file, new_file, unix_time``
    (``repos``: comma-separated ``owner/repo`` names that hold the commit, tried in order).
    """

    type: Literal["export"]
    path: PathList  # JSONL or Parquet files or globs, relative to the manifest's folder
    remote: str = "https://github.com/{repo}.git"  # clone URL of a repository named in `repos`
    licenses: list[str] = Field(default_factory=lambda: list(PERMISSIVE_LICENSES))
    allowlists: dict[str, str] | None = None  # language -> JSON array of "owner/repo"
    max_repo_tries: int = Field(default=3, ge=1)  # repositories of `repos` tried per commit
    fetch_timeout_s: float = Field(default=120, gt=0)  # per git command; the process is killed
    retries: int = Field(default=2, ge=0)  # extra attempts after a transient failure
    retry_backoff_s: float = Field(default=1.0, ge=0)  # doubled after each attempt
    max_concurrent_fetches: int = Field(default=8, ge=1)  # per host, across the whole cluster
    subset: str = "commits"

    @field_validator("remote")
    @classmethod
    def _remote_has_repo(cls, remote: str) -> str:
        if "{repo}" not in remote:
            raise ValueError("must contain {repo}, e.g. https://github.com/{repo}.git")
        try:
            remote.format(repo="owner/name")
        except (KeyError, IndexError, ValueError) as error:
            raise ValueError(f"only {{repo}} may be substituted: {error}") from None
        return remote

    @field_validator("licenses")
    @classmethod
    def _lower_licenses(cls, licenses: list[str]) -> list[str]:
        return list(dict.fromkeys(license.strip().lower() for license in licenses if license.strip()))

    @field_validator("allowlists")
    @classmethod
    def _known_languages(cls, allowlists: dict[str, str] | None) -> dict[str, str] | None:
        if allowlists is None:
            return None
        return {parse_language(language).value: require_local(path) for language, path in allowlists.items()}


class DatasetColumns(_Strict):
    """Our column <- their column. ``system`` may be absent from the data (it is then null)."""

    input: str = "input"
    chosen: str = "chosen"
    rejected: str = "rejected"
    system: str = "system"
    language: str = "language"
    aspect: str = "aspect"


class RatioFilter(_Strict):
    """Keep rows where ``ratio[0] / ratio[1]`` is at least ``min`` (and at most ``max``)."""

    ratio: tuple[str, str]  # their columns: numerator, denominator
    min: float | None = None
    max: float | None = None

    @model_validator(mode="after")
    def _a_bound(self) -> RatioFilter:
        if self.min is None and self.max is None:
            raise ValueError("a ratio filter needs min or max")
        return self


Scalar = str | int | float | bool


class ValueFilter(_Strict):
    """Keep rows whose ``column`` equals ``equals`` (or is one of ``one_of``)."""

    column: str
    equals: Scalar | None = None
    one_of: list[Scalar] | None = None

    @model_validator(mode="after")
    def _one_test(self) -> ValueFilter:
        if (self.equals is None) == (self.one_of is None):
            raise ValueError("a value filter needs exactly one of equals, one_of")
        return self


DatasetFilter = RatioFilter | ValueFilter


class DatasetSource(_Strict):
    """Pairs from an existing preference dataset: a ``datasets`` folder, files, or a Hub name."""

    type: Literal["dataset"]
    path: PathList | None = None  # a save_to_disk folder, or Parquet/JSONL files or globs
    name: str | None = None  # a Hub dataset (needs the network)
    split: str = "train"
    columns: DatasetColumns = DatasetColumns()
    language: str | None = None  # a constant, when the data have no language column
    aspect: str | None = None  # a constant, when the data have no criterion column
    filters: list[DatasetFilter] = Field(default_factory=list)
    subset: str = "dataset"
    license: str | None = None  # declared for the dataset card

    @field_validator("language")
    @classmethod
    def _known_language(cls, language: str | None) -> str | None:
        return None if language is None else parse_language(language).value

    @field_validator("aspect")
    @classmethod
    def _known_aspect(cls, aspect: str | None) -> str | None:
        return None if aspect is None else parse_aspect(aspect).value

    @model_validator(mode="after")
    def _path_or_name(self) -> DatasetSource:
        if (self.path is None) == (self.name is None):
            raise ValueError("give exactly one of path (local files) or name (a Hub dataset)")
        return self


Source = Annotated[GitSource | SolutionsSource | ExportSource | DatasetSource, Field(discriminator="type")]


class BenchmarkWindow(_Strict):
    model_config = ConfigDict(extra="forbid", frozen=True, validate_by_name=True,
                              validate_by_alias=True, serialize_by_alias=True)

    start: date = Field(alias="from")  # inclusive
    end: date = Field(alias="to")  # exclusive

    @model_validator(mode="after")
    def _ordered(self) -> BenchmarkWindow:
        if self.end <= self.start:
            raise ValueError("`to` must be after `from`")
        return self


class SplitConfig(_Strict):
    """The training/benchmark split of commits (git and export sources) by time and repository.

    ``train``: commits before ``train_before``. ``benchmark``: commits in the window, and with
    ``repository_disjoint`` only from repositories with no commit before ``train_before`` (so
    no repository is in both). Dates are UTC midnights.
    """

    train_before: date | None = None
    benchmark: BenchmarkWindow | None = None
    keep: Literal["train", "benchmark"] = "train"
    repository_disjoint: bool = True

    @model_validator(mode="after")
    def _complete(self) -> SplitConfig:
        if self.keep == "train" and self.train_before is None:
            raise ValueError("keep: train needs train_before")
        if self.keep == "benchmark" and self.benchmark is None:
            raise ValueError("keep: benchmark needs a benchmark window")
        if self.keep == "benchmark" and self.repository_disjoint and self.train_before is None:
            raise ValueError("repository_disjoint needs train_before (it defines a training repository)")
        if self.benchmark and self.train_before and self.benchmark.start < self.train_before:
            raise ValueError("the benchmark window must start on or after train_before")
        return self


class MessageFilterConfig(_Strict):
    min_length: int = Field(default=10, ge=0)  # exclusive
    max_length: int = Field(default=15000, ge=1)  # exclusive


class CriteriaConfig(_Strict):
    """How commit messages are labelled (:mod:`filters.criteria`) and what a change confined to
    comments, docstrings and whitespace may be labelled (:mod:`filters.validation`)."""

    # word: whole words with inflections, prose only (the default); substring: the paper's rule
    match: Literal["word", "substring", "word_start"] = "word"
    # a folder with the five *.list files (and optionally stems.list, exclusions/); default: shipped
    terms_dir: str | None = None
    # a comment-only change: relabelled Readability_Maintainability when that criterion matched,
    # else dropped (readability); always dropped (drop); left as labelled (keep)
    comment_only: Literal["readability", "drop", "keep"] = "readability"
    # a mined change to a test file (filters.testfiles): dropped as test_file (drop), or labelled
    # like any other file (keep)
    test_files: Literal["drop", "keep"] = "drop"


class ValidationSettings(_Strict):
    max_bytes: int = Field(default=256 * 1024, ge=1)  # per side
    min_depth: int = Field(default=3, ge=1)
    max_error_fraction: float = Field(default=0.10, ge=0.0, le=1.0)  # mined code
    parse_timeout_s: float = Field(default=5.0, gt=0)


class LengthConfig(_Strict):
    """The length budget of a pair, prompt plus longer side (:mod:`filters.length`): tokens of
    the trainer's rendering with ``tokenizer`` (a local folder or a Hugging Face id), else bytes."""

    tokenizer: str | None = None
    max_tokens: int = Field(default=4096, ge=8)
    # without a tokenizer: UTF-8 bytes of input + the longer side; 4,096 tokens x 3 bytes/token
    max_bytes: int = Field(default=4096 * 3, ge=1)
    template: Literal["auto", "chat", "plain"] = "auto"  # as the trainer's --template


class FiltersConfig(_Strict):
    message: MessageFilterConfig = MessageFilterConfig()
    criteria: CriteriaConfig = CriteriaConfig()
    validation: ValidationSettings = ValidationSettings()
    # the length budget: by default the byte budget (4,096 tokens x 3 bytes), so that no pair is
    # cut by the trainer's truncation; a tokenizer counts exactly; ``length: null`` turns it off
    length: LengthConfig | None = LengthConfig()


class PairsConfig(_Strict):
    """What chosen and rejected of a mined pair (git and export sources) are: the smallest
    definitions around the commit's change (``function``, see :mod:`pipelines.scopes`) or the
    whole file before and after the commit (``file``, the paper's layout)."""

    scope: Literal["function", "file"] = "function"
    window_lines: int = Field(default=10, ge=0)  # unchanged lines around a change outside definitions
    max_definitions: int = Field(default=4, ge=1)  # more changed ones: their common scope, or the file
    context_bytes: int = Field(default=160, ge=0)  # read-only context in the prompt (imports, headers)
    max_class_lines: int = Field(default=200, ge=1)  # a longer changed class gives a window inside it


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


class BugInjectionConfig(_Strict):
    """Functional_Correctness pairs: a correct solution versus a seeded mutant of it."""

    enabled: bool = True
    mutants_per_solution: int = Field(default=3, ge=1, le=100)  # verified pairs wanted
    max_mutants_tried: int | None = Field(default=None, ge=1)  # default: 4 x mutants_per_solution
    verify: Literal["execute", "none"] = "execute"
    seed: int = 0
    operators: list[str] | None = None  # default: all (pipelines.synthesis.mutations)
    # a language whose compiler/runtime is missing: stop, or keep rows marked unverified
    on_missing_toolchain: Literal["skip", "fail"] = "fail"
    backend: Literal["mutations", "llm"] = "mutations"  # llm: needs synthesis.llm

    @field_validator("operators")
    @classmethod
    def _known_operators(cls, operators: list[str] | None) -> list[str] | None:
        if operators is not None:
            from pipelines.synthesis.mutations import resolve_operators

            if not operators:
                raise ValueError("the operator list is empty")
            resolve_operators(operators)
        return operators


class ReadabilityConfig(_Strict):
    """Readability_Maintainability pairs: the solution versus its renamed, comment-free copy."""

    enabled: bool = False
    verify: Literal["execute", "none"] = "execute"
    on_missing_toolchain: Literal["skip", "fail"] = "fail"


class SandboxConfig(_Strict):
    """Limits of every program run (see pipelines.synthesis.sandbox)."""

    isolation: Literal["auto", "namespaces", "rlimits"] = "auto"
    root: str | None = None  # job folders and build caches; default: <tmp>/codeprefs-sandbox-<uid>
    run_timeout_s: float = Field(default=10.0, gt=0)
    compile_timeout_s: float = Field(default=60.0, gt=0)
    memory_mb: int = Field(default=1024, ge=64)
    output_kb: int = Field(default=1024, ge=1)
    processes: int = Field(default=256, ge=8)
    variant_timeout_factor: float = Field(default=5.0, ge=1.0)  # x the original's run time


class LLMConfig(_Strict):
    """An OpenAI-compatible chat endpoint (e.g. a vLLM server) for the LLM backend."""

    base_url: str = Field(min_length=1)  # e.g. http://127.0.0.1:8000/v1
    model: str = Field(min_length=1)
    api_key_env: str | None = None  # the environment variable holding the key, if any
    max_concurrency: int = Field(default=8, ge=1)
    timeout_s: float = Field(default=120.0, gt=0)
    max_retries: int = Field(default=4, ge=0)
    temperature: float = Field(default=0.0, ge=0.0, le=2.0)
    max_tokens: int = Field(default=2048, ge=1)
    cache_dir: str | None = None  # response cache; default: <output>/.cache/llm

    @field_validator("cache_dir")
    @classmethod
    def _local_cache(cls, cache_dir: str | None) -> str | None:
        return None if cache_dir is None else require_local(cache_dir)


class SynthesisConfig(_Strict):
    bug_injection: BugInjectionConfig = BugInjectionConfig()
    readability: ReadabilityConfig = ReadabilityConfig()
    sandbox: SandboxConfig = SandboxConfig()
    llm: LLMConfig | None = None


class RatingConfig(_Strict):
    """The judge's first pass: rate how specifically a change improves its criterion, 1-5."""

    min_score: int = Field(default=4, ge=1, le=5)  # lower: dropped as low_rating


INSTRUCTION_STYLES = ("graduate course assignment", "Quora question", "StackOverflow question",
                      "Google search query", "programming contest problem")


class InstructionConfig(_Strict):
    """Inverse instructions: the LLM writes the task the change answers; it replaces the prompt."""

    styles: list[str] = Field(default_factory=lambda: list(INSTRUCTION_STYLES), min_length=1)

    @field_validator("styles")
    @classmethod
    def _known_styles(cls, styles: list[str]) -> list[str]:
        unknown = [style for style in styles if style not in INSTRUCTION_STYLES]
        if unknown:
            raise ValueError(f"unknown styles {unknown}; expected some of {list(INSTRUCTION_STYLES)}")
        return styles


class JudgeConfig(_Strict):
    """LLM stages for mined pairs (git and export sources; see :mod:`pipelines.judge`)."""

    llm: LLMConfig  # any OpenAI-compatible chat endpoint
    rating: RatingConfig | None = RatingConfig()  # null: no rating pass
    instruction: InstructionConfig | None = None  # null: keep the template prompt
    votes: int = Field(default=8, ge=0)  # judge samples, order randomised; 0: no vote
    temperature: float = Field(default=0.8, ge=0.0, le=2.0)  # of the judge samples
    seed: int = 0  # order of the judge samples and the instruction style per pair


class Manifest(_Strict):
    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
    sources: list[Source] = Field(min_length=1)
    split: SplitConfig | None = None  # applies to the git and export sources
    pairs: PairsConfig = PairsConfig()  # applies to the git and export sources
    filters: FiltersConfig = FiltersConfig()
    dedupe: DedupeConfig = DedupeConfig()
    decontaminate: DecontaminateConfig | None = None
    output: OutputConfig = OutputConfig()
    ray: RayConfig = RayConfig()
    synthesis: SynthesisConfig = SynthesisConfig()
    judge: JudgeConfig | None = None  # LLM rating, inverse instructions and judge votes (off)

    # The folder relative paths in the manifest are read against (the manifest's own folder).
    _base_dir: Path = PrivateAttr(default_factory=Path.cwd)

    @property
    def base_dir(self) -> Path:
        return self._base_dir

    def resolved(self) -> dict[str, Any]:
        """The manifest with every default filled in, as plain JSON data (for the run record)."""
        return self.model_dump(mode="json")


def _expand(patterns: list[str], base_dir: Path, check: Literal["none", "file", "exists"] = "none",
            noun: str = "", repositories: bool = False) -> list[str]:
    """Expand the globs of ``patterns`` against ``base_dir``, sorted.

    Matches of a relative pattern stay relative, as written, so that row ids do not depend on
    the checkout. ``check``: ``none`` keeps plain paths as written; ``file`` keeps only files and
    requires a plain path to be one; ``exists`` requires a plain path to exist. ``noun`` names
    what the patterns are in error messages. URLs are kept as written for ``repositories`` (git
    remotes) and refused everywhere else, never read as relative paths.
    """
    label = f"{noun} pattern" if noun else "pattern"
    keep = {"none": lambda path: True, "file": os.path.isfile, "exists": os.path.exists}[check]
    expanded: list[str] = []
    for text in patterns:
        if "\x00" in text:
            raise ManifestError(f"{text!r} holds a NUL character")
        if repositories and ("://" in text or text.startswith("git@")):
            expanded.append(text)
            continue
        try:
            require_local(text)
        except RemoteLocationError as error:
            raise ManifestError(str(error)) from None
        pattern = os.path.expanduser(text)
        absolute = pattern if os.path.isabs(pattern) else str(base_dir / pattern)
        if not glob.has_magic(pattern):
            if check == "file" and not keep(absolute):
                raise ManifestError(f"no such file: {text!r}")
            if check == "exists" and not keep(absolute):
                raise ManifestError(f"{noun} {text!r} does not exist (looked for {absolute})")
            expanded.append(text)
            continue
        matches = sorted(match for match in glob.glob(absolute) if keep(match))
        if not matches:
            raise ManifestError(f"{label} {text!r} matches {'no file' if check == 'file' else 'nothing'}")
        expanded.extend(matches if os.path.isabs(pattern) else [os.path.relpath(m, base_dir) for m in matches])
    return expanded


def _expand_source(source: Any, base_dir: Path) -> Any:
    if isinstance(source, SolutionsSource):
        return source.model_copy(update={"path": _expand(source.path, base_dir, "file", "path")})
    if isinstance(source, GitSource):
        return source.model_copy(update={"repos": [  # an entry with a name is never a glob
            expanded for repo in source.repos
            for expanded in (_expand([repo], base_dir, repositories=True) if isinstance(repo, str)
                             else [repo])]})
    if isinstance(source, ExportSource | DatasetSource) and source.path is not None:
        return source.model_copy(update={"path": _expand(source.path, base_dir)})
    return source


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
            sources.append(_expand_source(source, base_dir))
        except ManifestError as error:
            key = "repos" if isinstance(source, GitSource) else "path"
            raise ManifestError(f"{origin}: sources.{index}.{key}: {error}") from None
    if manifest.synthesis.bug_injection.backend == "llm" and manifest.synthesis.llm is None:
        raise ManifestError(f"{origin}: synthesis.bug_injection.backend is llm but synthesis.llm "
                            "is not set")
    manifest = manifest.model_copy(update={"sources": sources})
    if manifest.decontaminate is not None:
        try:
            benchmarks = _expand(manifest.decontaminate.benchmarks, base_dir, "exists", "benchmark")
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
    except UnicodeDecodeError as error:
        raise ManifestError(f"{path}: not UTF-8 text (byte {error.start})") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise ManifestError(f"{path}: not valid YAML: {error}") from None
    except RecursionError:
        raise ManifestError(f"{path}: not a manifest: nested too deeply") from None
    return parse_manifest(data, path.resolve().parent, origin=str(path))
