"""The settings of synthesis from correct solutions (the manifest's ``synthesis`` section).

:class:`~codeprefs.pipelines.synthesis.pairs.SolutionSynthesizer` takes these models as they are, and the
driver's :class:`~codeprefs.pipelines.synthesis.plan.SynthesisPlan` reads the whole section; nothing
copies them into another shape.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from typing import Literal

from pydantic import Field, field_validator

from codeprefs.core.settings import Settings
from codeprefs.pipelines.synthesis.harness import RunLimits
from codeprefs.pipelines.synthesis.llm import LLMSettings
from codeprefs.pipelines.synthesis.mutations import resolve_operators
from codeprefs.pipelines.synthesis.sandbox import Limits, Sandbox
from codeprefs.pipelines.synthesis.verify import VariantTimeout, Verifier

log = logging.getLogger(__name__)


def known_operators(operators: list[str] | None) -> list[str] | None:
    """A manifest's mutation operator list: every name known (all of them when null), not empty."""
    if operators is not None:
        if not operators:
            raise ValueError("the operator list is empty")
        resolve_operators(operators)
    return operators

Verify = Literal["execute", "none"]
# a language whose compiler/runtime is missing: stop, or keep rows marked unverified
OnMissingToolchain = Literal["skip", "fail"]


class BugInjectionSettings(Settings):
    """Functional_Correctness pairs: a correct solution versus a seeded mutant of it."""

    enabled: bool = True
    mutants_per_solution: int = Field(default=3, ge=1, le=100)  # verified pairs wanted
    max_mutants_tried: int | None = Field(default=None, ge=1)  # default: 4 x mutants_per_solution
    verify: Verify = "execute"
    seed: int = 0
    operators: list[str] | None = None  # default: all (pipelines.synthesis.mutations)
    on_missing_toolchain: OnMissingToolchain = "fail"
    backend: Literal["mutations", "llm"] = "mutations"  # llm: needs synthesis.llm

    _known_operators = field_validator("operators")(known_operators)

    @property
    def tries(self) -> int:
        """Mutants tried per solution at most (verified or not)."""
        return self.max_mutants_tried or 4 * self.mutants_per_solution


class ReadabilitySettings(Settings):
    """Readability_Maintainability pairs: the solution versus its renamed, comment-free copy."""

    enabled: bool = False
    verify: Verify = "execute"
    on_missing_toolchain: OnMissingToolchain = "fail"


class SandboxSettings(Settings):
    """Limits of every program run (see :mod:`codeprefs.pipelines.synthesis.sandbox`).

    The defaults are those of :class:`~codeprefs.pipelines.synthesis.harness.RunLimits` and
    :class:`~codeprefs.pipelines.synthesis.verify.VariantTimeout`; :attr:`limits` and
    :attr:`variant_timeout` turn these few knobs into them.
    """

    isolation: Literal["auto", "namespaces", "rlimits"] = "auto"
    root: str | None = None  # job folders and build caches; default: <tmp>/codeprefs-sandbox-<uid>
    run_timeout_s: float = Field(default=10.0, gt=0)
    compile_timeout_s: float = Field(default=60.0, gt=0)
    memory_mb: int = Field(default=1024, ge=64)
    output_kb: int = Field(default=1024, ge=1)
    processes: int = Field(default=256, ge=8)
    variant_timeout_factor: float = Field(default=5.0, ge=1.0)  # x the original's run time

    @property
    def limits(self) -> RunLimits:
        """The compile and run limits; CPU seconds are the wall-clock limits rounded up."""
        run = Limits(wall_s=self.run_timeout_s, cpu_s=_whole_seconds(self.run_timeout_s),
                     memory_mb=self.memory_mb, output_kb=self.output_kb, processes=self.processes)
        compile_limits = replace(RunLimits().compile, wall_s=self.compile_timeout_s,
                                 cpu_s=_whole_seconds(self.compile_timeout_s))
        return RunLimits(compile=compile_limits, run=run)

    @property
    def variant_timeout(self) -> VariantTimeout:
        return VariantTimeout(factor=self.variant_timeout_factor)

    def verifier(self) -> Verifier:
        """A verifier running programs in a sandbox of these settings. A sandbox without namespace
        isolation (resource limits only) is logged as a warning, once per process."""
        box = Sandbox(self.isolation, self.root)
        if box.isolation != "namespaces" and not _WARNED_ISOLATION:
            _WARNED_ISOLATION.append(box.isolation)
            log.warning("sandbox isolation is %r: programs run with resource limits only, "
                        "with network and file-system access", box.isolation)
        return Verifier(box, self.limits, self.variant_timeout)


_WARNED_ISOLATION: list[str] = []  # the isolation warned about, once per process


def _whole_seconds(seconds: float) -> int:
    return max(1, int(seconds + 0.999))


class CandidateSettings(Settings):
    """Candidate sets for re-ranking (``<output>/candidates/``): per task, the solution and up to
    ``per_task - 1`` distinct variants of it, each executed against the task's tests.

    Variants: every mutant of every operator (``operators``; default all), the readability
    variant, and ``llm_samples`` completions written by ``synthesis.llm`` (0: none). Distinct
    by normalized code (the syntax tree without layout and comments), then sampled with ``seed``.
    """

    per_task: int = Field(default=40, ge=2, le=1000, strict=True)  # at most, the solution included
    seed: int = Field(default=0, strict=True)
    mutations: bool = True
    operators: list[str] | None = None  # default: all (pipelines.synthesis.mutations)
    readability: bool = True
    llm_samples: int = Field(default=0, ge=0, le=200, strict=True)  # needs synthesis.llm

    _known_operators = field_validator("operators")(known_operators)


class SynthesisSettings(Settings):
    """The manifest's ``synthesis`` section: which pairs, how programs run, which LLM."""

    bug_injection: BugInjectionSettings = BugInjectionSettings()
    readability: ReadabilitySettings = ReadabilitySettings()
    sandbox: SandboxSettings = SandboxSettings()
    llm: LLMSettings | None = None
    candidates: CandidateSettings | None = None  # off unless given
