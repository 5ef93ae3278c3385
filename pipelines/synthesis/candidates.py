"""Candidate sets: for each task of a solutions source, many executed responses to re-rank.

For one record (a task: prompt, reference solution, tests) :class:`CandidateGenerator` makes

1. the reference solution (generator ``solution``), run first: a task whose solution does not
   pass its own tests gives no candidates (its tests cannot tell right from wrong);
2. variants of it: every mutant of every operator (``mutation:<operator>``, all of them, not
   only those pair synthesis keeps), the readability variant (``readability:<kind>``) and
   ``llm_samples`` completions written by the LLM (``llm``), when configured;
3. distinct ones only: two candidates with the same *normalized code* (the syntax tree with
   layout and comments left out; the text with runs of blanks collapsed when it does not parse)
   are one, the first kept (``duplicate_code``);
4. up to ``per_task - 1`` of them, sampled with a seed derived from ``seed`` and the task (the
   others are counted ``not_sampled``), each run against the tests in the sandbox with the
   variant time limit (a few times the solution's run time).

``outcome`` is the verifier's verdict; ``passed`` means every test passed. The humaneval
harness runs one program that stops at the first failing assertion, so per-test counts
(``passed_tests``/``total_tests``) are not known for any language and stay null, and
``pass_rate`` is 1.0 or 0.0.

Rows that are not candidates (a task that gives none, a duplicate, a candidate not sampled) are
kept in the stage's files with ``drop_reason`` (drop stage ``candidates``,
:mod:`codeprefs.core.drops`) so ``run.json`` counts them; they never reach ``candidates/``.
"""

from __future__ import annotations

import hashlib
import random
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa

from codeprefs.core.candidateset import CANDIDATE_SCHEMA
from codeprefs.core.drops import CANDIDATES
from codeprefs.core.schema import Language
from codeprefs.pipelines.recipes import not_fingerprinted
from codeprefs.pipelines.sources.solutions import SolutionRecord, read_chunk
from codeprefs.pipelines.synthesis.code import Program, is_comment, parse_program
from codeprefs.pipelines.synthesis.harness import assemble, closing_suffix, missing_commands
from codeprefs.pipelines.synthesis.instructions import task_instruction
from codeprefs.pipelines.synthesis.mutations import derive_seed, iter_mutants
from codeprefs.pipelines.synthesis.pairs import SolutionTask, SourceSettings, Unusable, prepare_task
from codeprefs.pipelines.synthesis.readability import degrade
from codeprefs.pipelines.synthesis.settings import CandidateSettings, SandboxSettings
from codeprefs.pipelines.synthesis.verify import Outcome, Verdict, Verifier

# What a candidate-stage file holds: the candidates' columns, then why a row is not one.
CANDIDATE_WORK_SCHEMA = pa.schema(
    [column.with_nullable(True) for column in CANDIDATE_SCHEMA]
    + [pa.field("drop_reason", pa.string()), pa.field("drop_detail", pa.string())])

# The task (its record, its solution)...
_TASK_REASONS = {name: CANDIDATES.reason(name) for name in (
    "malformed_record", "binary", "unknown_language", "no_solution", "solution_syntax_error")}
NO_TOOLCHAIN = CANDIDATES.reason("no_toolchain")
_SOLUTION_REASONS = {
    Verdict.FAILED: CANDIDATES.reason("solution_fails_own_tests"),
    Verdict.TIMEOUT: CANDIDATES.reason("solution_timeout"),
    Verdict.LIMIT_EXCEEDED: CANDIDATES.reason("solution_limit_exceeded"),
    Verdict.COMPILE_ERROR: CANDIDATES.reason("solution_compile_error"),
    Verdict.COMPILE_TIMEOUT: CANDIDATES.reason("solution_compile_timeout"),
    Verdict.TOOLCHAIN_ERROR: CANDIDATES.reason("solution_toolchain_error"),
}
# ... and one candidate of a usable task.
DUPLICATE_CODE = CANDIDATES.reason("duplicate_code")
NOT_SAMPLED = CANDIDATES.reason("not_sampled")
LLM_NO_CODE = CANDIDATES.reason("llm_no_code")
# The reasons that leave out one candidate; the others leave out a whole task.
CANDIDATE_REASONS = frozenset({DUPLICATE_CODE, NOT_SAMPLED, LLM_NO_CODE})

_BLANKS = re.compile(r"\s+")


def task_id_of(record: SolutionRecord) -> str:
    """The task's stable id: the solutions file as the manifest names it, ``:``, the record's key."""
    return f"{record.file}:{record.key}"


def normalized_key(language: Language, code: str) -> str:
    """A hash of ``code`` that layout and comments do not change (see the module doc): the
    syntax tree, nesting included (``if a: b()`` then ``c()`` is not ``if a: b(); c()``)."""
    program = parse_program(language, code.encode("utf-8"))
    digest = hashlib.sha256()
    if program is None:
        digest.update(b"text\x00" + _BLANKS.sub(" ", code).strip().encode("utf-8", "surrogatepass"))
        return digest.hexdigest()
    stack: list[Any] = [program.root]
    while stack:
        node = stack.pop()
        if node is None:  # the end of a node's children
            digest.update(b")")
            continue
        if is_comment(program.syntax, node):
            continue
        leaf = program.text(node) if node.child_count == 0 else b""
        digest.update(b"(" + node.type.encode() + b"\x00" + leaf + b"\x00")
        stack.append(None)
        stack.extend(reversed(node.children))
    return digest.hexdigest()


@dataclass(frozen=True)
class Candidate:
    """One response to a task: what a pair side would show, and the code that runs."""

    generator: str
    number: int  # within its generator, in generation order
    shown: str
    runnable: str  # shown without the closing brackets added for display

    def candidate_id(self, task_id: str) -> str:
        return f"{task_id}/{self.generator}/{self.number}"


@dataclass
class CandidateGenerator:
    """Record in, candidate rows out; builds its sandbox lazily, on the worker that uses it.

    ``solver``: an :class:`~codeprefs.pipelines.synthesis.llm.LLMSolver` when ``llm_samples``
    is set. ``runs`` counts the programs this object ran (the solution's included).
    """

    settings: CandidateSettings
    sandbox: SandboxSettings = SandboxSettings()
    solver: Any = None
    runs: int = field(default=0, init=False)
    _verifier: Verifier | None = field(default=None, init=False, repr=False)

    def __getstate__(self):  # ship settings to Ray workers, never a live sandbox
        state = dict(self.__dict__)
        state["_verifier"] = None
        return state

    @property
    def verifier(self) -> Verifier:
        if self._verifier is None:
            self._verifier = self.sandbox.verifier()
        return self._verifier

    def _run(self, language: Language, program: str, wall_s: float | None = None) -> Outcome:
        self.runs += 1
        return self.verifier.run(language, program, wall_s)

    def rows(self, record: SolutionRecord, on_error: str = "fail") -> list[dict[str, Any]]:
        """Every row of ``record``'s task: its candidates and the counted drops."""
        task_id = task_id_of(record)
        prepared = prepare_task(record, on_error)
        if isinstance(prepared, Unusable):
            return [_dropped(task_id, f"{task_id}/-", record.language, _TASK_REASONS[prepared.reason],
                             prepared.detail)]
        task, program = prepared
        language = task.language
        missing = missing_commands(language)
        if missing:
            return [_dropped(task_id, f"{task_id}/-", language.value, NO_TOOLCHAIN,
                             f"{language.value} toolchain missing ({', '.join(missing)} not installed)")]
        shown = program.source.decode("utf-8")
        solution = Candidate("solution", 0, shown, shown[:len(shown) - task.suffix_chars])
        original = self._run(language, self._program(task, solution))
        if not original.passed:
            return [_dropped(task_id, f"{task_id}/-", language.value,
                             _SOLUTION_REASONS[original.verdict], original.summary)]
        instruction = task_instruction(language, record.prompt, record.instruction)
        pool, rows = self._distinct(task_id, language, solution, self._variants(task, program, instruction))
        rng = random.Random(derive_seed(self.settings.seed, "candidates", language.value, task_id))
        wanted = min(len(pool), self.settings.per_task - 1)
        chosen = set(rng.sample(range(len(pool)), wanted))
        wall_s = self.verifier.variant_wall_s(original)
        rows.append(_row(task_id, language, instruction, solution, original))
        for index, candidate in enumerate(pool):
            if index in chosen:
                outcome = self._run(language, self._program(task, candidate), wall_s)
                rows.append(_row(task_id, language, instruction, candidate, outcome))
            else:
                rows.append(_dropped(task_id, candidate.candidate_id(task_id), language.value, NOT_SAMPLED,
                                     f"{len(pool)} distinct variants, {wanted} sampled (per_task "
                                     f"{self.settings.per_task})"))
        return rows

    @staticmethod
    def _program(task: SolutionTask, candidate: Candidate) -> str:
        record = task.record
        return assemble(task.language, candidate.runnable, record.tests, record.entry_point)

    @staticmethod
    def _distinct(task_id: str, language: Language, solution: Candidate,
                  variants: Iterator[Candidate | tuple[str, int]]) -> tuple[list[Candidate], list[dict[str, Any]]]:
        """The variants whose normalized code is new, and the drop rows of the others."""
        seen = {normalized_key(language, solution.shown)}
        pool: list[Candidate] = []
        drops: list[dict[str, Any]] = []
        for variant in variants:
            if not isinstance(variant, Candidate):  # an LLM answer without code
                generator, number = variant
                drops.append(_dropped(task_id, f"{task_id}/{generator}/{number}", language.value,
                                      LLM_NO_CODE, "the LLM's answer held no code block"))
                continue
            key = normalized_key(language, variant.shown)
            if key in seen:
                drops.append(_dropped(task_id, variant.candidate_id(task_id), language.value, DUPLICATE_CODE,
                                      "the same code as an earlier candidate, up to layout and comments"))
                continue
            seen.add(key)
            pool.append(variant)
        return pool, drops

    def _variants(self, task: SolutionTask, program: Program,
                  instruction: str) -> Iterator[Candidate | tuple[str, int]]:
        """Readability variant, LLM samples, then every mutant, in a fixed order."""
        settings = self.settings
        suffix_chars = task.suffix_chars

        def of(generator: str, number: int, source: bytes) -> Candidate:
            shown = source.decode("utf-8")
            return Candidate(generator, number, shown, shown[:len(shown) - suffix_chars])

        if settings.readability:
            degraded = degrade(program)
            if degraded is not None:
                yield of(degraded.generator, 0, degraded.source)
        if settings.llm_samples and self.solver is not None:
            completions = self.solver.propose(task.language.value, instruction, task.given,
                                              settings.llm_samples)
            for number, completion in enumerate(completions):
                if completion is None:
                    yield "llm", number
                    continue
                runnable = _llm_runnable(task, completion)
                yield Candidate("llm", number, runnable + (closing_suffix(task.language, runnable) or ""),
                                runnable)
        if settings.mutations:
            numbers: dict[str, int] = {}
            for mutant in iter_mutants(program, settings.seed, settings.operators):
                generator = f"mutation:{mutant.operator}"
                numbers[generator] = numbers.get(generator, -1) + 1
                yield of(generator, numbers[generator], mutant.source)


def _llm_runnable(task: SolutionTask, completion: str) -> str:
    """The given code and the LLM's completion (which may repeat the given code)."""
    given = task.given
    if given.strip() and completion.lstrip().startswith(given.strip()):
        return completion
    return given + completion


def _row(task_id: str, language: Language, prompt: str, candidate: Candidate, outcome: Outcome) -> dict[str, Any]:
    return {"task_id": task_id, "candidate_id": candidate.candidate_id(task_id), "language": language.value,
            "prompt": prompt, "code": candidate.shown, "generator": candidate.generator,
            "outcome": outcome.verdict.value, "passed": outcome.passed, "passed_tests": None,
            "total_tests": None, "pass_rate": 1.0 if outcome.passed else 0.0,
            "drop_reason": None, "drop_detail": None}


def _dropped(task_id: str, candidate_id: str, language: str | None, reason, detail: str) -> dict[str, Any]:
    return {"task_id": task_id, "candidate_id": candidate_id, "language": language, "prompt": None,
            "code": None, "generator": None, "outcome": None, "passed": None, "passed_tests": None,
            "total_tests": None, "pass_rate": None, "drop_reason": str(reason),
            "drop_detail": detail[:2000]}


class GenerateCandidates:
    """Ray stage: one chunk of a solutions file in, the candidate rows of its records out."""

    def __init__(self, generator: CandidateGenerator, source: SourceSettings) -> None:
        self.generator = generator
        self.source = source

    def batches(self, unit: dict[str, Any]) -> Iterator[pa.Table]:
        for record in read_chunk(unit, self.source.fields, self.source.language, self.source.language_field,
                                 self.source.scratch_dir):
            rows = self.generator.rows(record, self.source.on_error)
            yield pa.Table.from_pylist(rows, schema=CANDIDATE_WORK_SCHEMA)


@dataclass(frozen=True)
class CandidateRecipe:
    """Everything a solutions source's candidate sets are built from; the candidates stage's
    fingerprint hashes it (see :mod:`codeprefs.pipelines.recipes`)."""

    candidates: CandidateSettings
    sandbox: SandboxSettings  # limits change outcomes (a timeout)
    llm: Any  # synthesis.llm when llm_samples is set, else None
    source: dict[str, Any]  # the source's settings but its paths, which `files` cover
    files: list[dict[str, Any]]  # every file read: path as written, bytes, sha256
    toolchains: dict[str, str]  # the version line of each compiler and runtime that runs candidates
    source_settings: SourceSettings = not_fingerprinted("made of `source`")
    cache_dir: Path | None = not_fingerprinted("where LLM answers are cached, not what they are",
                                               default=None)

    def stage(self) -> GenerateCandidates:
        """The Ray stage (raises ``LLMError`` when the LLM client cannot be made)."""
        solver = None
        if self.candidates.llm_samples and self.llm is not None:
            from codeprefs.pipelines.synthesis.llm import ChatClient, LLMSolver

            cache = Path(self.llm.cache_dir) if self.llm.cache_dir else (
                self.cache_dir / "llm" if self.cache_dir else None)
            solver = LLMSolver(ChatClient.from_config(self.llm, cache))
        return GenerateCandidates(CandidateGenerator(self.candidates, self.sandbox, solver),
                                  self.source_settings)
