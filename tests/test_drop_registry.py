"""The drop registry (codeprefs.core.drops): unknown stages and reasons fail where they are
written, every reason a module drops rows for is registered (and every registered one is used),
and the funnel follows the registry's pipeline order."""

from __future__ import annotations

import importlib
import pkgutil
from collections import Counter
from types import ModuleType

import pyarrow as pa
import pytest

from codeprefs.core import drops
from codeprefs.core.drops import (
    CONTENT,
    CRITERIA,
    DEDUPE,
    DETAIL_CHARS,
    DROP_STAGES,
    REGISTERED_STAGES,
    LIST,
    STAGES,
    DropReason,
    DropsAt,
    DropStage,
    ReasonFamily,
    UnknownDropReason,
    drop,
    drop_stage,
    mark_dropped,
)


def _row(**values: object) -> dict[str, object]:
    return {"drop_stage": None, "drop_reason": None, "drop_detail": None, **values}


# -- definitions fail on unknown names ----------------------------------------------------------


def test_an_unknown_reason_or_stage_fails_where_it_is_named():
    with pytest.raises(UnknownDropReason, match="no_aspect"):
        CRITERIA.reason("no_aspect")
    with pytest.raises(UnknownDropReason, match="critera"):
        drop_stage("critera")
    with pytest.raises(UnknownDropReason):
        LIST.family("ratio_below_maximum")
    with pytest.raises(UnknownDropReason):  # a plain reason is no family, and the other way round
        LIST.reason("ratio_below_min")
    assert LIST.reason("ratio_below_min:score/len") == "ratio_below_min:score/len"
    assert CRITERIA.reason("no_criterion").stage is CRITERIA


def test_a_stage_lists_each_reason_once():
    with pytest.raises(ValueError, match="twice"):
        DropStage("twice", reasons=("a", "a"))
    with pytest.raises(ValueError):
        DropStage("colon", reasons=("a:b",))


def test_an_unknown_reason_in_a_module_fails_when_it_is_imported(tmp_path, monkeypatch):
    (tmp_path / "typo_step.py").write_text(
        "from codeprefs.core.drops import CRITERIA\n"
        "NO_CRITERION = CRITERIA.reason('no_critrion')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(UnknownDropReason, match="no_critrion"):
        importlib.import_module("typo_step")


def test_a_step_declares_a_registered_stage_and_only_its_reasons():
    with pytest.raises(UnknownDropReason, match="registered"):
        class BareName(DropsAt):
            drop_stage = "criteria"  # type: ignore[assignment]

    with pytest.raises(UnknownDropReason, match="registered"):
        class Lookalike(DropsAt):  # a stage of the same name that the registry does not hold
            drop_stage = DropStage("criteria", reasons=("no_criterion",))

    with pytest.raises(UnknownDropReason, match="content"):
        class OtherStagesReason(DropsAt):
            drop_stage = CRITERIA
            BINARY = CONTENT.reason("binary")

    class Fine(DropsAt):
        drop_stage = CRITERIA
        TEST_FILE = CRITERIA.reason("test_file")

    class NeverDrops(DropsAt):
        pass

    assert Fine.drop_stage is CRITERIA and NeverDrops.drop_stage is None


# -- marking drops --------------------------------------------------------------------------------


def test_drop_marks_the_first_reason_with_its_stage_and_a_bounded_detail():
    row = _row()
    drop(row, CRITERIA.reason("test_file"), "x" * (DETAIL_CHARS + 10))
    drop(row, CONTENT.reason("binary"), "later")
    assert row == {"drop_stage": "criteria", "drop_reason": "test_file", "drop_detail": "x" * DETAIL_CHARS}
    assert type(row["drop_reason"]) is str and type(row["drop_stage"]) is str
    with pytest.raises(TypeError, match="registry"):
        drop(_row(), "test_file")  # type: ignore[arg-type]


def test_mark_dropped_marks_only_live_rows_where_asked():
    table = pa.table({"id": ["a", "b", "c", "d"],
                      "drop_stage": [None, "list", None, None],
                      "drop_reason": [None, "merge_commit", None, None]})
    marked = mark_dropped(table, DEDUPE.reason("near_duplicate"), where=pa.array([True, True, False, None]))
    assert marked["drop_stage"].to_pylist() == ["dedupe", "list", None, None]
    assert marked["drop_reason"].to_pylist() == ["near_duplicate", "merge_commit", None, None]
    everything = mark_dropped(table, DEDUPE.reason("exact_duplicate"))
    assert everything["drop_reason"].to_pylist() == ["exact_duplicate", "merge_commit"] + ["exact_duplicate"] * 2
    assert everything.schema == table.schema
    with pytest.raises(TypeError):
        mark_dropped(table, "exact_duplicate")  # type: ignore[arg-type]


def test_reasons_and_stages_survive_pickling_as_the_registry_s_own():
    import pickle

    reason = pickle.loads(pickle.dumps(LIST.family("not_equal").about("label")))
    assert reason == "not_equal:label" and reason.stage is LIST
    assert pickle.loads(pickle.dumps(CONTENT)) is CONTENT


# -- the registry matches what the code drops rows for ---------------------------------------------


def _modules(package: str) -> list[ModuleType]:
    root = importlib.import_module(package)
    return [root] + [importlib.import_module(info.name)
                     for info in pkgutil.walk_packages(root.__path__, prefix=f"{package}.")]


def _declared(value: object, found: set[tuple[str, str]]) -> None:
    if isinstance(value, DropReason):
        found.add((value.stage.name, str(value)))
    elif isinstance(value, ReasonFamily):
        found.add((value.stage.name, f"{value.name}:*"))
    elif isinstance(value, dict):
        for item in value.values():
            _declared(item, found)


def _used_reasons() -> tuple[set[tuple[str, str]], list[type]]:
    """Every (stage, reason) the pipelines and filters hold as constants (module, class, table),
    and every class that declares a drop stage."""
    found: set[tuple[str, str]] = set()
    steps: list[type] = []
    for module in _modules("codeprefs.pipelines") + _modules("codeprefs.filters"):
        for value in vars(module).values():
            _declared(value, found)
            if isinstance(value, type) and value.__module__ == module.__name__:
                for attribute in vars(value).values():
                    _declared(attribute, found)
                if issubclass(value, DropsAt):
                    steps.append(value)
    # the remotes' failure names are plain text (kept in the fetch cache on disk): FetchContents
    # looks each up in the registry, so each must be a content reason
    from codeprefs.pipelines.sources import remote

    for name in remote._REPORT_ORDER:
        found.add((CONTENT.name, str(CONTENT.reason(name))))
    return found, steps


def _registered() -> set[tuple[str, str]]:
    return ({(stage.name, reason) for stage in REGISTERED_STAGES for reason in stage.reasons}
            | {(stage.name, f"{family}:*") for stage in REGISTERED_STAGES for family in stage.families})


def test_every_reason_the_code_uses_is_registered_and_every_registered_one_is_used():
    used, steps = _used_reasons()
    assert used - _registered() == set()
    assert _registered() - used == set(), "registered reasons no module drops rows for"
    declared = {step.drop_stage.name for step in steps if step.drop_stage is not None}
    # the stages without a step class mark whole tables (near-dedupe, decontamination, the
    # shard writer) or rows of synthesized records (pipelines.synthesis.pairs)
    assert declared == set(STAGES) - {"solutions", "verify", "decontaminate", "dedupe"}


def test_the_lower_layers_return_registered_reasons():
    from codeprefs.core.schema import Language
    from codeprefs.filters.messages import MessageFilter
    from codeprefs.filters.validation import PairValidator, ValidationSettings

    reason = MessageFilter().reject_reason("Revert \"add the cache\"")
    assert reason == "revert" and reason.stage.name == "message"
    verdict = PairValidator(ValidationSettings(max_bytes=4)).check(Language.PYTHON, "x = 1\n", "x = 2\n")
    assert verdict.reason == "chosen_too_large" and verdict.reason.stage.name == "validate"


# -- pipeline order -------------------------------------------------------------------------------


def test_the_funnel_follows_the_registry_order():
    from codeprefs.pipelines.runrecord import funnel

    assert STAGES == ("list", "split", "message", "criteria", "content", "scope", "solutions", "verify",
                      "validate", "length", "judge", "decontaminate", "dedupe")
    assert drops.VALIDATED_DROP_STAGES == {"decontaminate", "dedupe"}
    counts = Counter({("dedupe", "exact_duplicate"): 1, ("list", "merge_commit"): 2, ("length", "too_long"): 3})
    stages = funnel(counts, kept=4)
    assert [stage["stage"] for stage in stages] == list(STAGES)
    assert [(s["stage"], s["rows_in"], s["dropped"]) for s in stages if s["dropped"]] == [
        ("list", 10, 2), ("length", 8, 3), ("dedupe", 5, 1)]
    assert stages[-1]["rows_out"] == 4
    with pytest.raises(RuntimeError, match="registry"):
        funnel(Counter({("assemble", "x"): 1}), kept=0)
