"""The run manifest: one YAML file that fully describes a build, validated with pydantic.

The smallest manifest names a run and one source; every other setting has a default::

    name: my-run
    sources:
      - type: git
        repos: [/abs/path/repo-a, file:///abs/path/repo-b.git, {path: /abs/x.git, name: org/x}]

A ``solutions`` source turns correct solutions with tests into verified pairs (see
:mod:`codeprefs.pipelines.synthesis`); the top-level ``synthesis`` section configures how::

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

The sections that configure one component (``filters.*``, ``dedupe``, ``decontaminate``,
``synthesis``, ``judge``) are that component's own settings model, defined next to its code on
:class:`codeprefs.core.settings.Settings`; this module only composes them, and the components
never import it.

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
)

from codeprefs.core.localpaths import resolve_path
from codeprefs.core.locations import require_local
from codeprefs.core.patterns import PatternError, expand_patterns
from codeprefs.core.scratch import check_configured
from codeprefs.filters.criteria import CriteriaSettings
from codeprefs.filters.dedupe.settings import DecontaminateSettings, DedupeSettings
from codeprefs.filters.length import LengthSettings
from codeprefs.filters.messages import MessageFilterSettings
from codeprefs.filters.validation import ValidationSettings
from codeprefs.pipelines.judgesettings import JudgeSettings
from codeprefs.pipelines.sources.kinds import Source
from codeprefs.pipelines.splits import SplitConfig
from codeprefs.pipelines.synthesis.settings import SynthesisSettings


class ManifestError(ValueError):
    """The manifest is unreadable or invalid; the message names the file and the key."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class FiltersConfig(_Strict):
    """The filters of mined pairs, each section its filter's own settings model."""

    message: MessageFilterSettings = MessageFilterSettings()
    criteria: CriteriaSettings = CriteriaSettings()
    validation: ValidationSettings = ValidationSettings()
    # the length budget: by default the byte budget (4,096 tokens x 3 bytes), so that no pair is
    # cut by the trainer's truncation; a tokenizer counts exactly; ``length: null`` turns it off
    length: LengthSettings | None = LengthSettings()


class PairsConfig(_Strict):
    """What chosen and rejected of a mined pair (git and export sources) are: the smallest
    definitions around the commit's change (``function``, see :mod:`codeprefs.pipelines.scopes`) or the
    whole file before and after the commit (``file``, the paper's layout)."""

    scope: Literal["function", "file"] = "function"
    window_lines: int = Field(default=10, ge=0)  # unchanged lines around a change outside definitions
    max_definitions: int = Field(default=4, ge=1)  # more changed ones: their common scope, or the file
    context_bytes: int = Field(default=160, ge=0)  # read-only context in the prompt (imports, headers)
    max_class_lines: int = Field(default=200, ge=1)  # a changed class this long (or function holding defs): windows
    # A file version larger than this is not read (``file_too_large``). With ``scope: function`` a
    # side is a definition, which ``filters.validation.max_bytes`` bounds; the file is only parsed.
    # ``scope: file`` reads files up to ``filters.validation.max_bytes``, the size of a side.
    max_file_bytes: int = Field(default=1 << 20, ge=1)


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
    # Node-local folder for clones and fetched remotes (codeprefs.core.scratch): each worker
    # resolves it on its own node, CODEPREFS_SCRATCH_DIR there first; None: ~/.cache/codeprefs.
    scratch_dir: str | None = None
    # Custom Ray resources each task that clones and mines (a source unit, a split's listing)
    # asks for, e.g. {miner: 1} with `ray start --resources='{"miner": 8}'` on the nodes with the
    # disks and network for it; other stages run anywhere. Not fingerprinted: rows do not depend
    # on where a unit runs.
    unit_resources: dict[str, float] = Field(default_factory=dict)

    @field_validator("unit_resources")
    @classmethod
    def _custom_resources(cls, resources: dict[str, float]) -> dict[str, float]:
        for name, amount in resources.items():
            if not name.strip() or name in ("CPU", "GPU", "memory", "object_store_memory"):
                raise ValueError(f"{name!r}: name a custom resource of `ray start --resources` (CPU, GPU "
                                 "and memory are Ray's own)")
            if not amount > 0:
                raise ValueError(f"{name}: the amount must be positive, got {amount}")
        return resources

    @field_validator("scratch_dir")
    @classmethod
    def _node_local(cls, scratch_dir: str | None) -> str | None:
        return None if scratch_dir is None else check_configured(require_local(scratch_dir))


class Manifest(_Strict):
    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
    sources: list[Source] = Field(min_length=1)
    split: SplitConfig | None = None  # applies to the git and export sources
    pairs: PairsConfig = PairsConfig()  # applies to the git and export sources
    filters: FiltersConfig = FiltersConfig()
    dedupe: DedupeSettings = DedupeSettings()
    decontaminate: DecontaminateSettings | None = None
    output: OutputConfig = OutputConfig()
    ray: RayConfig = RayConfig()
    synthesis: SynthesisSettings = SynthesisSettings()
    judge: JudgeSettings | None = None  # LLM rating, inverse instructions and judge votes (off)

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
    candidates = manifest.synthesis.candidates
    if candidates is not None and candidates.llm_samples and manifest.synthesis.llm is None:
        raise ManifestError(f"{origin}: synthesis.candidates.llm_samples is {candidates.llm_samples} "
                            "but synthesis.llm is not set")
    manifest = manifest.model_copy(update={"sources": sources})
    if manifest.decontaminate is not None:
        try:
            benchmarks = expand_patterns(manifest.decontaminate.benchmarks, base_dir, "exists", "benchmark")
        except PatternError as error:
            raise ManifestError(f"{origin}: decontaminate.benchmarks: {error}") from None
        manifest = manifest.model_copy(update={
            "decontaminate": manifest.decontaminate.model_copy(update={"benchmarks": benchmarks})})
    classifier = manifest.filters.criteria.classifier
    if classifier is not None and not resolve_path(classifier, base_dir).is_file():
        raise ManifestError(f"{origin}: filters.criteria.classifier: no such model file: "
                            f"{resolve_path(classifier, base_dir)} (make one with `codeprefs criteria train`)")
    terms_dir = manifest.filters.criteria.terms_dir
    if terms_dir is not None and not resolve_path(terms_dir, base_dir).is_dir():
        raise ManifestError(f"{origin}: filters.criteria.terms_dir: no such folder: {resolve_path(terms_dir, base_dir)}")
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
