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

from pathlib import Path
from typing import Any, Literal

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

from codeprefs.core.patterns import PatternError, expand_patterns
from codeprefs.locations import require_local
from pipelines.sources.kinds import Source
from pipelines.splits import SplitConfig


class ManifestError(ValueError):
    """The manifest is unreadable or invalid; the message names the file and the key."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


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
            sources.append(source.expanded(base_dir))
        except PatternError as error:
            raise ManifestError(f"{origin}: sources.{index}.{source.paths_key}: {error}") from None
    if manifest.synthesis.bug_injection.backend == "llm" and manifest.synthesis.llm is None:
        raise ManifestError(f"{origin}: synthesis.bug_injection.backend is llm but synthesis.llm "
                            "is not set")
    manifest = manifest.model_copy(update={"sources": sources})
    if manifest.decontaminate is not None:
        try:
            benchmarks = expand_patterns(manifest.decontaminate.benchmarks, base_dir, "exists", "benchmark")
        except PatternError as error:
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
