"""Each component owns one settings model; the manifest composes those very models."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from pydantic import ValidationError

from codeprefs.core.settings import Settings
from codeprefs.pipelines.manifest import FiltersConfig, Manifest, parse_manifest
from codeprefs.filters.criteria import CriteriaSettings
from codeprefs.filters.dedupe.settings import DecontaminateSettings, DedupeSettings, NearDedupeSettings
from codeprefs.filters.length import LengthSettings
from codeprefs.filters.messages import MessageFilter, MessageFilterSettings
from codeprefs.filters.validation import PairValidator, ValidationSettings
from codeprefs.pipelines.judgesettings import InstructionSettings, JudgeSettings, RatingSettings
from codeprefs.pipelines.synthesis.harness import RunLimits
from codeprefs.pipelines.synthesis.llm import LLMSettings
from codeprefs.pipelines.synthesis.settings import (
    BugInjectionSettings,
    ReadabilitySettings,
    SandboxSettings,
    SynthesisSettings,
)
from codeprefs.pipelines.synthesis.verify import VariantTimeout

LLM = {"base_url": "http://127.0.0.1:1/v1", "model": "m"}


def _annotation(model: type, field: str) -> object:
    return model.model_fields[field].annotation


def test_the_manifests_sections_are_the_components_models():
    assert _annotation(FiltersConfig, "message") is MessageFilterSettings
    assert _annotation(FiltersConfig, "criteria") is CriteriaSettings
    assert _annotation(FiltersConfig, "validation") is ValidationSettings
    assert _annotation(FiltersConfig, "length") == LengthSettings | None
    assert _annotation(Manifest, "dedupe") is DedupeSettings
    assert _annotation(DedupeSettings, "near") == NearDedupeSettings | None
    assert _annotation(Manifest, "decontaminate") == DecontaminateSettings | None
    assert _annotation(Manifest, "synthesis") is SynthesisSettings
    assert _annotation(SynthesisSettings, "bug_injection") is BugInjectionSettings
    assert _annotation(SynthesisSettings, "readability") is ReadabilitySettings
    assert _annotation(SynthesisSettings, "sandbox") is SandboxSettings
    assert _annotation(SynthesisSettings, "llm") == LLMSettings | None
    assert _annotation(Manifest, "judge") == JudgeSettings | None
    assert _annotation(JudgeSettings, "llm") is LLMSettings
    assert _annotation(JudgeSettings, "rating") == RatingSettings | None
    assert _annotation(JudgeSettings, "instruction") == InstructionSettings | None

    manifest = parse_manifest({
        "name": "r", "sources": [{"type": "git", "repos": ["/x"]}],
        "dedupe": {"near": {}}, "decontaminate": {"benchmarks": ["/"]},
        "synthesis": {"llm": LLM}, "judge": {"llm": LLM, "instruction": {}},
    }, Path("/"))
    parsed = [manifest.filters.message, manifest.filters.criteria, manifest.filters.validation,
              manifest.filters.length, manifest.dedupe, manifest.dedupe.near, manifest.decontaminate,
              manifest.synthesis, manifest.synthesis.bug_injection, manifest.synthesis.readability,
              manifest.synthesis.sandbox, manifest.synthesis.llm, manifest.judge, manifest.judge.llm,
              manifest.judge.rating, manifest.judge.instruction]
    assert [type(section) for section in parsed] == [
        MessageFilterSettings, CriteriaSettings, ValidationSettings, LengthSettings, DedupeSettings,
        NearDedupeSettings, DecontaminateSettings, SynthesisSettings, BugInjectionSettings,
        ReadabilitySettings, SandboxSettings, LLMSettings, JudgeSettings, LLMSettings, RatingSettings,
        InstructionSettings]
    assert all(isinstance(section, Settings) for section in parsed)


def test_the_components_take_the_manifests_sections_as_they_are():
    manifest = parse_manifest({"name": "r", "sources": [{"type": "git", "repos": ["/x"]}],
                               "filters": {"message": {"min_length": 3}, "validation": {"max_bytes": 100}}},
                              Path("/"))
    message_filter = MessageFilter(manifest.filters.message)
    assert message_filter.settings is manifest.filters.message
    assert message_filter.reject_reason("Add it") is None  # 6 characters: over 3, under 10
    assert MessageFilter().reject_reason("Add it") == "message_too_short"
    assert PairValidator(manifest.filters.validation).settings.max_bytes == 100


def test_a_settings_model_is_frozen_and_strict():
    settings = ValidationSettings()
    with pytest.raises(ValidationError, match="frozen"):
        settings.max_bytes = 1  # type: ignore[misc]
    with pytest.raises(ValidationError, match="frozen"):
        SynthesisSettings().bug_injection.seed = 1  # type: ignore[misc]
    with pytest.raises(ValidationError, match="Extra inputs are not permitted"):
        MessageFilterSettings(max_lenght=3)  # type: ignore[call-arg]


def test_the_fingerprint_is_the_sha256_of_the_canonical_json():
    settings = MessageFilterSettings(max_length=200)
    canonical = '{"max_length":200,"min_length":10}'  # every default, keys sorted, no spaces
    assert settings.fingerprint() == hashlib.sha256(canonical.encode()).hexdigest()[:16]
    assert len(settings.fingerprint()) == 16


def test_the_fingerprint_follows_the_values_not_how_they_were_written():
    near = NearDedupeSettings.model_validate({"threshold": 0.8, "fields": ["input"]})
    same = NearDedupeSettings.model_validate(json.loads('{"fields": ["input"], "threshold": 0.8, "seed": 1}'))
    assert near.fingerprint() == same.fingerprint()
    assert near.fingerprint() != NearDedupeSettings(threshold=0.8, fields=["input"], seed=2).fingerprint()
    # A nested section's fingerprint covers its parts.
    assert (SynthesisSettings().fingerprint()
            != SynthesisSettings(sandbox=SandboxSettings(run_timeout_s=3)).fingerprint())


def test_the_sandbox_settings_give_the_harness_limits():
    assert SandboxSettings().limits == RunLimits()  # the defaults agree
    assert SandboxSettings().variant_timeout == VariantTimeout()
    fast = SandboxSettings(run_timeout_s=2.5, compile_timeout_s=30, output_kb=256, variant_timeout_factor=3)
    assert (fast.limits.run.wall_s, fast.limits.run.cpu_s, fast.limits.run.output_kb) == (2.5, 3, 256)
    assert (fast.limits.compile.wall_s, fast.limits.compile.cpu_s) == (30, 30)
    assert fast.limits.compile.memory_mb == RunLimits().compile.memory_mb
    assert fast.variant_timeout.factor == 3


def test_bug_injection_tries_four_mutants_per_pair_unless_told():
    assert BugInjectionSettings(mutants_per_solution=3).tries == 12
    assert BugInjectionSettings(mutants_per_solution=3, max_mutants_tried=5).tries == 5
