"""Execution verification: run a program against its tests in the sandbox and name the outcome.

The original solution runs once; its run time then sets a tighter wall-clock limit for its
variants (a mutant that loops forever is stopped after a few multiples of the original's time,
not after the full limit). A variant *fails* when its tests fail, it crashes, it times out or it
breaks a resource limit; a variant that does not compile is reported as such, never as a
failure, so a pair is never "the rejected side does not build".
"""

from __future__ import annotations

import signal
from dataclasses import dataclass, replace
from enum import StrEnum

from codeprefs.core.schema import Language
from codeprefs.pipelines.synthesis.harness import RunLimits, build_job
from codeprefs.pipelines.synthesis.sandbox import Sandbox, StepResult

DETAIL_LINES = 20  # of a failing step's output, in a reject's drop_detail
DETAIL_LINE_CHARS = 200


class Verdict(StrEnum):
    PASSED = "passed"
    FAILED = "failed"  # non-zero exit, failed assertion, crash
    TIMEOUT = "timeout"  # wall-clock or CPU limit
    LIMIT_EXCEEDED = "limit_exceeded"  # memory, output or file-size limit
    COMPILE_ERROR = "compile_error"
    COMPILE_TIMEOUT = "compile_timeout"
    TOOLCHAIN_ERROR = "toolchain_error"  # a command could not start


@dataclass(frozen=True)
class Outcome:
    verdict: Verdict
    run_wall_s: float  # of the run step (0 when it did not run)
    detail: str = ""  # the tail of the failing step's stderr, for debugging
    summary: str = ""  # the deciding step's exit status and first lines of output (describe())

    @property
    def passed(self) -> bool:
        return self.verdict == Verdict.PASSED


def describe(result: StepResult) -> str:
    """How a step ended and the first lines it printed (stderr, else stdout), bounded in size:
    e.g. ``run: exit status 1`` then ``AssertionError``. What a reject's ``drop_detail`` says."""
    if result.status in ("ok", "exit"):
        how = f"exit status {result.exit_code}"
    elif result.status == "signal" and result.signal:
        how = f"killed by signal {result.signal} ({_signal_name(result.signal)})"
    else:
        how = {"timeout": "wall-clock limit reached", "cpu_limit": "CPU-time limit reached",
               "memory_limit": "killed at the memory limit", "file_limit": "file-size limit reached",
               "output_limit": "output limit reached", "launch_error": "could not start",
               "not_run": "not run"}.get(result.status, result.status)
    output = result.stderr if result.stderr.strip() else result.stdout
    lines = [line[:DETAIL_LINE_CHARS] for line in output.strip("\n").splitlines()[:DETAIL_LINES]]
    return "\n".join([f"{result.name}: {how}", *lines])


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return "unknown"


def classify(results: list[StepResult]) -> Outcome:
    """The outcome of a job from its step results (compile steps first, ``run`` last)."""
    for result in results:
        if result.status == "launch_error":
            return Outcome(Verdict.TOOLCHAIN_ERROR, 0.0, result.stderr, describe(result))
        if result.name != "run" and not result.ok:
            verdict = Verdict.COMPILE_TIMEOUT if result.status in ("timeout", "cpu_limit") \
                else Verdict.COMPILE_ERROR
            return Outcome(verdict, 0.0, result.stderr[-2000:], describe(result))
    run = results[-1]
    verdict = {
        "ok": Verdict.PASSED, "exit": Verdict.FAILED, "signal": Verdict.FAILED,
        "timeout": Verdict.TIMEOUT, "cpu_limit": Verdict.TIMEOUT,
        "memory_limit": Verdict.LIMIT_EXCEEDED, "output_limit": Verdict.LIMIT_EXCEEDED,
        "file_limit": Verdict.LIMIT_EXCEEDED,
    }.get(run.status, Verdict.FAILED)
    return Outcome(verdict, run.wall_s, "" if verdict == Verdict.PASSED else run.stderr[-2000:],
                   describe(run))


@dataclass(frozen=True)
class VariantTimeout:
    """Wall-clock limit of a variant: ``factor`` x the original's run time plus ``slack_s``,
    at least ``minimum_s`` and at most the run limit."""

    factor: float = 5.0
    slack_s: float = 1.0
    minimum_s: float = 2.0

    def for_original(self, original_wall_s: float, limit_s: float) -> float:
        return min(limit_s, max(self.minimum_s, self.factor * original_wall_s + self.slack_s))


class Verifier:
    """Runs programs in a :class:`Sandbox` with the limits of one synthesis configuration."""

    def __init__(self, sandbox: Sandbox, limits: RunLimits = RunLimits(),
                 variant_timeout: VariantTimeout = VariantTimeout()) -> None:
        self.sandbox = sandbox
        self.limits = limits
        self.variant_timeout = variant_timeout

    def run(self, language: Language, program: str, wall_s: float | None = None) -> Outcome:
        """Build and run ``program``; ``wall_s`` overrides the run step's wall-clock limit."""
        limits = self.limits
        if wall_s is not None:
            cpu = max(1, int(wall_s + 0.999))
            limits = replace(limits, run=replace(limits.run, wall_s=wall_s,
                                                 cpu_s=min(limits.run.cpu_s, cpu)))
        with self.sandbox.slot() as slot:
            job = build_job(language, program, self.sandbox, slot, limits)
            return classify(self.sandbox.run(job.files, job.steps, slot=slot))

    def variant_wall_s(self, original: Outcome) -> float:
        return self.variant_timeout.for_original(original.run_wall_s, self.limits.run.wall_s)
