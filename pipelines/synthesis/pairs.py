"""Turn correct solutions into verified preference pairs (the ``solutions`` source's stage).

For each record: check it (malformed, a NUL byte, no solution, unknown language, does not parse), run its
own tests once, then

* **bug injection** (Functional_Correctness): try seeded mutants in order; a mutant becomes the
  rejected side only when its tests fail, crash or time out. Survivors (equivalent or untested
  changes) and mutants that do not compile are kept as dropped rows, so run.json shows how many
  mutants each verified pair cost;
* **readability** (Readability_Maintainability): the degraded variant of
  :mod:`codeprefs.pipelines.synthesis.readability`, kept when its structure is unchanged and its tests
  still pass.

Every row has :data:`codeprefs.core.rows.WORK_SCHEMA`. Provenance: ``repo`` holds the solutions file
as the manifest names it and ``path`` the record's task id (or ``line:N``).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa

from codeprefs.core.drops import SOLUTIONS, VERIFY, DropReason, drop
from codeprefs.core.schema import Aspect, Language, stable_id
from codeprefs.core.rows import Row, empty_row, has_nul, to_table
from codeprefs.pipelines.sources.solutions import SolutionFields, SolutionRecord, SolutionsError, read_chunk
from codeprefs.pipelines.synthesis.code import Program, parse_program
from codeprefs.pipelines.synthesis.harness import (
    assemble,
    closing_suffix,
    missing_commands,
    user_code,
)
from codeprefs.pipelines.synthesis.instructions import task_instruction
from codeprefs.pipelines.synthesis.mutations import VariantCheck, iter_mutants
from codeprefs.pipelines.synthesis.readability import degrade, same_structure
from codeprefs.pipelines.synthesis.settings import BugInjectionSettings, ReadabilitySettings, SandboxSettings
from codeprefs.pipelines.synthesis.verify import Outcome, Verdict, Verifier

log = logging.getLogger(__name__)

SOURCE = "solutions"
BUG_INJECTION_SUBSET = "bug-injection"  # the subsets of a source that names none
READABILITY_SUBSET = "readability"

# Drop reasons: the record and its solution (drop stage ``solutions``)...
MALFORMED_RECORD = SOLUTIONS.reason("malformed_record")
BINARY = SOLUTIONS.reason("binary")
UNKNOWN_LANGUAGE = SOLUTIONS.reason("unknown_language")
NO_SOLUTION = SOLUTIONS.reason("no_solution")
SOLUTION_SYNTAX_ERROR = SOLUTIONS.reason("solution_syntax_error")
_RECORD_REASONS = {str(reason): reason for reason in (MALFORMED_RECORD, BINARY, UNKNOWN_LANGUAGE,
                                                      NO_SOLUTION, SOLUTION_SYNTAX_ERROR)}
_SOLUTION_REASONS = {
    Verdict.FAILED: SOLUTIONS.reason("solution_fails_own_tests"),
    Verdict.TIMEOUT: SOLUTIONS.reason("solution_timeout"),
    Verdict.LIMIT_EXCEEDED: SOLUTIONS.reason("solution_limit_exceeded"),
    Verdict.COMPILE_ERROR: SOLUTIONS.reason("solution_compile_error"),
    Verdict.COMPILE_TIMEOUT: SOLUTIONS.reason("solution_compile_timeout"),
    Verdict.TOOLCHAIN_ERROR: SOLUTIONS.reason("solution_toolchain_error"),
}
# ... and each variant of it (drop stage ``verify``).
MUTANT_SURVIVED = VERIFY.reason("mutant_survived")
MUTANT_COMPILE_ERROR = VERIFY.reason("mutant_compile_error")
MUTANT_TOOLCHAIN_ERROR = VERIFY.reason("mutant_toolchain_error")
NO_MUTANT = VERIFY.reason("no_mutant")
READABILITY_NO_CHANGE = VERIFY.reason("readability_no_change")
READABILITY_STRUCTURE_CHANGED = VERIFY.reason("readability_structure_changed")
READABILITY_BEHAVIOUR_CHANGED = VERIFY.reason("readability_behaviour_changed")
_KILLED = {Verdict.FAILED: "mutant_failed", Verdict.TIMEOUT: "mutant_timeout",
           Verdict.LIMIT_EXCEEDED: "mutant_limit_exceeded"}


@dataclass(frozen=True)
class SolutionTask:
    """A usable record: its language and how a shown side turns back into a runnable program."""

    record: SolutionRecord
    language: Language
    suffix_chars: int  # closing brackets added for display (see harness.closing_suffix)
    given: str  # the code before the solution (the prompt, joined)

    def program(self, shown: str) -> str:
        """The program to run for a shown side (original or variant): code, newline, tests."""
        code = shown[:len(shown) - self.suffix_chars] if self.suffix_chars else shown
        return assemble(self.language, code, self.record.tests, self.record.entry_point)


@dataclass(frozen=True)
class Unusable:
    """Why a record gives no task: the name of a ``solutions`` drop reason and the words of it."""

    reason: str
    detail: str
    code: str | None = None  # the shown code, when it was made
    message: str | None = None


def prepare_task(record: SolutionRecord, on_error: str = "fail") -> tuple[SolutionTask, Program] | Unusable:
    """The task of ``record`` and its parsed shown code (prompt + solution, with the closing
    brackets display needs), or why it has none. A malformed record raises
    :class:`SolutionsError` unless ``on_error`` is ``skip``. Nothing is run here."""
    if record.error is not None:
        if on_error != "skip":
            raise SolutionsError(f"malformed record {record.error}")
        return Unusable("malformed_record", f"malformed record {record.error}", message=record.error)
    for name in ("prompt", "solution", "tests", "instruction"):
        if has_nul(getattr(record, name)):  # the pair's code and input: text, never binary
            where = f"{record.where}: a NUL byte in the {name}"
            return Unusable("binary", where, message=where)
    if record.unknown_language is not None:
        where = f"{record.where}: language {record.unknown_language!r}"
        return Unusable("unknown_language", f"{where} is not one codeprefs verifies", message=where)
    if not record.solution.strip():
        return Unusable("no_solution", f"{record.where}: the solution field is empty")
    language = Language(record.language)
    runnable = user_code(language, record.prompt, record.solution)
    suffix = closing_suffix(language, runnable)
    if suffix is None:
        return Unusable("solution_syntax_error", f"prompt + solution do not parse as {language.value} "
                        "(tree-sitter), not even with up to 3 closing brackets", code=runnable)
    code = runnable + suffix
    encoded = code.encode("utf-8")
    solution_end = len(runnable.encode("utf-8"))
    span = (solution_end - len(record.solution.encode("utf-8")), solution_end)
    program = parse_program(language, encoded, span)
    if program is None:
        return Unusable("solution_syntax_error", f"the solution's span is not whole {language.value} "
                        "code (tree-sitter)", code=code)
    return SolutionTask(record, language, len(suffix), runnable[:len(runnable) - len(record.solution)]), program




class ToolchainMissing(RuntimeError):
    """A language's compiler or runtime is not installed and the manifest says to fail."""


@dataclass(frozen=True)
class SourceSettings:
    """How to read one solutions source's records."""

    fields: SolutionFields = SolutionFields()
    language: str | None = None  # a constant language...
    language_field: str | None = None  # ...or the field holding it
    on_error: str = "fail"  # a malformed record stops the build, or is counted ("skip")
    scratch_dir: str | None = None  # the manifest's ray.scratch_dir: where a node copies a URL's file


@dataclass
class SolutionSynthesizer:
    """Record in, rows out; builds its sandbox lazily, on the worker that uses it.

    ``subset``: the source's ``subset`` for every row, or ``None`` for one by pair kind
    (:data:`BUG_INJECTION_SUBSET`, :data:`READABILITY_SUBSET`).
    """

    bugs: BugInjectionSettings = BugInjectionSettings()
    readability: ReadabilitySettings = ReadabilitySettings()
    sandbox: SandboxSettings = SandboxSettings()
    llm_bugs: Any = None  # an llm.LLMBugWriter: bugs written by an LLM instead of mutations
    subset: str | None = None
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

    # -- one record ------------------------------------------------------------------------

    def rows(self, record: SolutionRecord, on_error: str = "fail") -> list[Row]:
        """Every row ``record`` yields: kept pairs and counted drops."""
        prepared = prepare_task(record, on_error)
        if isinstance(prepared, Unusable):
            return [self._drop(record, _RECORD_REASONS[prepared.reason], chosen=prepared.code,
                               message=prepared.message, detail=prepared.detail)]
        task, program = prepared
        language, code = task.language, program.source.decode("utf-8")
        unverified = self._unverified_reason(record, language)
        original: Outcome | None = None
        if unverified is None:
            original = self.verifier.run(language, task.program(code))
            if not original.passed:
                return [self._drop(record, _SOLUTION_REASONS[original.verdict],
                                   chosen=code, message=original.detail[-1000:] or None,
                                   detail=original.summary)]
        instruction = task_instruction(language, record.prompt, record.instruction)
        rows: list[Row] = []
        if self.bugs.enabled:
            rows += self._bug_pairs(task, program, instruction, original, unverified)
        if self.readability.enabled:
            rows += self._readability_pair(task, program, instruction, original, unverified)
        return rows

    def _unverified_reason(self, record: SolutionRecord, language: Language) -> str | None:
        """None when the record is verified by execution, else the ``unverified:...`` label."""
        modes = []
        if self.bugs.enabled:
            modes.append((self.bugs.verify, self.bugs.on_missing_toolchain))
        if self.readability.enabled:
            modes.append((self.readability.verify, self.readability.on_missing_toolchain))
        if not any(verify == "execute" for verify, _ in modes):
            return "unverified:disabled"
        missing = missing_commands(language)
        if not missing:
            return None
        if any(verify == "execute" and policy == "fail" for verify, policy in modes):
            raise ToolchainMissing(
                f"{language.value} toolchain missing ({', '.join(missing)} not installed), needed "
                f"to verify {record.where}; install it (`make toolchains`) or set "
                "synthesis.bug_injection.on_missing_toolchain: skip")
        return "unverified:no_toolchain"

    def _bug_pairs(self, task: SolutionTask, program: Program, instruction: str,
                   original: Outcome | None, unverified: str | None) -> list[Row]:
        record, language, settings = task.record, task.language, self.bugs
        verify = unverified is None and settings.verify == "execute"
        label = unverified if not verify and unverified else "unverified:disabled"
        wall_s = self.verifier.variant_wall_s(original) if verify and original else None
        rows: list[Row] = []
        kept = 0
        code = program.source.decode("utf-8")
        for index, (generator, rejected) in enumerate(self._variants(task, program, instruction)):
            if index >= settings.tries or kept >= settings.mutants_per_solution:
                break
            row = self._pair(record, language, self.subset or BUG_INJECTION_SUBSET, Aspect.FUNCTIONAL_CORRECTNESS,
                             instruction, code, rejected, generator,
                             ("mutation", generator, str(index)))
            if not verify:
                row["verification"] = label
                kept += 1
            else:
                outcome = self.verifier.run(language, task.program(rejected), wall_s)
                if outcome.verdict in _KILLED:
                    row["verification"] = f"executed:{_KILLED[outcome.verdict]}"
                    kept += 1
                elif outcome.verdict == Verdict.PASSED:
                    row["verification"] = "executed:mutant_passed"
                    drop(row, MUTANT_SURVIVED,
                         f"the tests still pass with the mutant\n{outcome.summary}")
                elif outcome.verdict in (Verdict.COMPILE_ERROR, Verdict.COMPILE_TIMEOUT):
                    drop(row, MUTANT_COMPILE_ERROR, outcome.summary)
                else:
                    drop(row, MUTANT_TOOLCHAIN_ERROR, outcome.summary)
            rows.append(row)
        if not rows:
            source = "the LLM bug writer" if self.llm_bugs is not None else "any mutation operator"
            rows.append(self._drop(record, NO_MUTANT, chosen=code,
                                   kind=("mutation",),
                                   detail=f"no variant of the solution came from {source}"))
        return rows

    def _variants(self, task: SolutionTask, program: Program, instruction: str) -> Iterator[tuple[str, str]]:
        """(generator, rejected code) candidates in the order they are tried."""
        if self.llm_bugs is None:
            for mutant in iter_mutants(program, self.bugs.seed, self.bugs.operators):
                yield f"mutation:{mutant.operator}", mutant.source.decode("utf-8")
            return
        check = VariantCheck(program, new_names="untelling")
        shown = program.source.decode("utf-8")
        suffix = shown[len(shown) - task.suffix_chars:] if task.suffix_chars else ""
        seen = {shown}
        for solution in self.llm_bugs.propose(task.language.value, instruction, task.given,
                                              task.record.solution, self.bugs.tries):
            if solution is None:
                continue
            rejected = task.given + solution + suffix
            if rejected not in seen and check.accepts(rejected.encode("utf-8")):
                seen.add(rejected)
                yield self.llm_bugs.name, rejected

    def _readability_pair(self, task: SolutionTask, program: Program, instruction: str,
                          original: Outcome | None, unverified: str | None) -> list[Row]:
        record, language, settings = task.record, task.language, self.readability
        code = program.source.decode("utf-8")
        degraded = degrade(program)
        kind = ("readability",)
        if degraded is None:
            return [self._drop(record, READABILITY_NO_CHANGE, chosen=code, kind=kind,
                               detail="nothing to rename or strip: the degraded code is the same")]
        rejected = degraded.source.decode("utf-8")
        row = self._pair(record, language, self.subset or READABILITY_SUBSET, Aspect.READABILITY_MAINTAINABILITY,
                         instruction, code, rejected, degraded.generator, kind)
        reparsed = parse_program(language, degraded.source)
        if reparsed is None or not same_structure(program, reparsed):
            drop(row, READABILITY_STRUCTURE_CHANGED,
                 "the degraded code does not parse" if reparsed is None
                 else "the degraded code's syntax tree differs beyond names and comments")
            return [row]
        if unverified is not None or settings.verify != "execute":
            row["verification"] = unverified if unverified else "unverified:disabled"
            return [row]
        wall_s = self.verifier.variant_wall_s(original) if original else None
        outcome = self.verifier.run(language, task.program(rejected), wall_s)
        if outcome.passed:
            row["verification"] = "executed:behaviour_kept"
        else:
            drop(row, READABILITY_BEHAVIOUR_CHANGED,
                 f"the degraded code fails the tests the original passes\n{outcome.summary}")
        return [row]

    # -- rows ------------------------------------------------------------------------------

    @staticmethod
    def _pair(record: SolutionRecord, language: Language, subset: str, aspect: Aspect,
              instruction: str, chosen: str, rejected: str, generator: str,
              kind: tuple[str, ...]) -> Row:
        row = empty_row()
        row.update(
            id=stable_id(record.file, record.key, *kind), source=SOURCE, subset=subset,
            language=language.value, aspect=aspect.value, aspects=[aspect.value],
            input=instruction, chosen=chosen, rejected=rejected, repo=record.file,
            path=record.key, generator=generator, strict_syntax=True,
        )
        return row

    def _drop(self, record: SolutionRecord, reason: DropReason, *, detail: str,
              chosen: str | None = None, message: str | None = None,
              kind: tuple[str, ...] = ("solution",)) -> Row:
        row = empty_row()
        subset = self.subset or (BUG_INJECTION_SUBSET if self.bugs.enabled else READABILITY_SUBSET)
        row.update(id=stable_id(record.file, record.key, *kind), source=SOURCE, subset=subset,
                   language=record.language, chosen=chosen, repo=record.file, path=record.key,
                   generator="solution", message=message, strict_syntax=True)
        drop(row, reason, detail)
        return row


class SynthesizeSolutions:
    """Ray stage: one chunk of a solutions file in, the rows of its records out."""

    def __init__(self, synthesizer: SolutionSynthesizer, source: SourceSettings) -> None:
        self.synthesizer = synthesizer
        self.source = source

    def __call__(self, batch: pa.Table) -> Iterator[pa.Table]:
        for chunk in batch.to_pylist():
            for record in read_chunk(chunk, self.source.fields, self.source.language,
                                     self.source.language_field, self.source.scratch_dir):
                yield to_table(self.synthesizer.rows(record, self.source.on_error))
