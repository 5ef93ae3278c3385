"""From the manifest's ``synthesis`` section to the objects the Ray stages run.

:class:`SynthesisPlan` is built on the driver: it checks toolchains once (so a missing compiler
is reported once, not per record), describes each solutions source for ``run.json`` and makes
the picklable :class:`~codeprefs.pipelines.synthesis.pairs.SynthesizeSolutions` stage of each source.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from codeprefs.core.schema import Language
from codeprefs.pipelines.sources.solutions import LanguageField
from codeprefs.pipelines.synthesis.harness import missing_commands, toolchain_versions
from codeprefs.pipelines.synthesis.candidates import CandidateRecipe
from codeprefs.pipelines.synthesis.pairs import (
    SolutionSynthesizer,
    SourceSettings,
    SynthesizeSolutions,
    ToolchainMissing,
)
from codeprefs.pipelines.synthesis.sandbox import detect_isolation, memory_limit_mode
from codeprefs.pipelines.synthesis.settings import SynthesisSettings

if TYPE_CHECKING:
    from codeprefs.pipelines.sources.kinds.solutions import SolutionsSource

log = logging.getLogger(__name__)


class SynthesisPlan:
    """The synthesis settings of one build, made once on the driver."""

    def __init__(self, config: SynthesisSettings, cache_dir: Path, scratch_dir: str | None = None) -> None:
        self.config = config
        self.cache_dir = cache_dir
        self.scratch_dir = scratch_dir  # the manifest's ray.scratch_dir (inputs read from URLs)
        self._warned: set[Language] = set()
        self._warned_isolation = False
        self._warned_memory = False

    def _verifies(self) -> list[tuple[str, str]]:
        """(what, on_missing_toolchain) for each enabled kind of pair that executes tests."""
        bugs, readability = self.config.bug_injection, self.config.readability
        kinds = []
        if bugs.enabled and bugs.verify == "execute":
            kinds.append(("bug_injection", bugs.on_missing_toolchain))
        if readability.enabled and readability.verify == "execute":
            kinds.append(("readability", readability.on_missing_toolchain))
        return kinds

    def check_toolchains(self, source: SolutionsSource) -> dict[str, list[str]]:
        """Missing commands per language this source may need; raises when that must fail.

        With a language field every language may appear, so all eight are checked; a missing
        one then fails only when a record of that language turns up (on the worker).
        """
        kinds = self._verifies()
        if not kinds:
            return {}
        constant = isinstance(source.language, str)
        languages = self._languages(source)
        missing = {language.value: found for language in languages
                   if (found := missing_commands(language))}
        for name, commands in missing.items():
            language = Language(name)
            fail = any(policy == "fail" for _, policy in kinds)
            if constant and fail:
                raise ToolchainMissing(
                    f"{name} toolchain missing ({', '.join(commands)} not installed); install it "
                    "(`make toolchains`) or set synthesis.bug_injection.on_missing_toolchain: skip "
                    "to keep the pairs marked unverified:no_toolchain")
            if language not in self._warned:
                self._warned.add(language)
                action = ("records in it will fail the build" if fail
                          else "its pairs are kept marked unverified:no_toolchain")
                log.warning("%s toolchain missing (%s not installed): %s", name,
                            ", ".join(commands), action)
        return missing

    @staticmethod
    def _languages(source: SolutionsSource) -> list[Language]:
        """The languages a source's records may be in (all eight with a language field)."""
        return [Language(source.language)] if isinstance(source.language, str) else list(Language)

    def toolchains(self, source: SolutionsSource) -> dict[str, str]:
        """The version line of each compiler and runtime that verifies this source's pairs.

        Part of the source's fingerprint: a new compiler can change which mutants fail their
        tests, so a toolchain upgrade reruns the source. Empty when nothing is executed.
        """
        return toolchain_versions(self._languages(source)) if self._verifies() else {}

    def synthesizer(self, source: SolutionsSource) -> SolutionSynthesizer:
        return SolutionSynthesizer(
            bugs=self.config.bug_injection, readability=self.config.readability,
            sandbox=self.config.sandbox,
            llm_bugs=self.llm_bug_writer() if self.config.bug_injection.backend == "llm" else None,
            subset=source.subset,
        )

    def llm_bug_writer(self):
        from codeprefs.pipelines.synthesis.llm import ChatClient, LLMBugWriter

        llm = self.config.llm
        cache = Path(llm.cache_dir) if llm.cache_dir else self.cache_dir / "llm"
        return LLMBugWriter(ChatClient.from_config(llm, cache))

    def source_settings(self, source: SolutionsSource) -> SourceSettings:
        language_field = source.language.field if isinstance(source.language, LanguageField) else None
        return SourceSettings(
            fields=source.fields,
            language=None if language_field else source.language,
            language_field=language_field, on_error=source.on_error, scratch_dir=self.scratch_dir)

    def candidate_recipe(self, source: SolutionsSource, files: list[dict[str, Any]]) -> CandidateRecipe:
        """What the source's candidate sets (``synthesis.candidates``) are made of. Candidates are
        always executed: the toolchains of the source's languages are part of it; a missing one
        drops that language's tasks (``no_toolchain``), counted."""
        config = self.config
        candidates = config.candidates
        assert candidates is not None
        return CandidateRecipe(
            candidates=candidates, sandbox=config.sandbox,
            llm=config.llm if candidates.llm_samples else None,
            source=source.model_dump(mode="json", exclude={"path", "subset", "records_per_task"}),
            files=files, toolchains=toolchain_versions(self._languages(source)),
            source_settings=self.source_settings(source), cache_dir=self.cache_dir)

    def stage(self, source: SolutionsSource) -> SynthesizeSolutions:
        return SynthesizeSolutions(self.synthesizer(source), self.source_settings(source))

    def input_record(self, source: SolutionsSource, chunks: list[dict[str, Any]],
                     missing: dict[str, list[str]]) -> dict[str, Any]:
        """What run.json says about a solutions source."""
        executes = bool(self._verifies()) or self.config.candidates is not None  # candidates always run
        isolation = self.config.sandbox.isolation
        if executes and isolation == "auto":
            isolation = detect_isolation()
            if isolation != "namespaces" and not self._warned_isolation:
                self._warned_isolation = True
                log.warning("programs will run with resource limits only (no network or "
                            "file-system isolation): namespaces need root and util-linux unshare")
        memory_limit = memory_limit_mode() if executes else None
        if memory_limit == "rlimit" and not self._warned_memory:
            self._warned_memory = True
            log.warning("no memory cgroup can be made here: the sandbox bounds memory with "
                        "RLIMIT_DATA only, which shared memory escapes (see sandbox_memory_limit)")
        return {
            "type": source.type, "paths": list(source.path),
            "language": source.language if isinstance(source.language, str)
            else {"field": source.language.field},
            "harness": source.harness, "records": sum(chunk["count"] for chunk in chunks),
            "tasks": len(chunks), "status": "ok",
            "toolchains_missing": missing,
            "toolchains": self.toolchains(source),
            "sandbox_isolation": isolation if executes else None,
            # cgroup-v2 / cgroup-v1: every page a job touches counts; rlimit: the weaker mode
            "sandbox_memory_limit": memory_limit if executes else None,
        }
