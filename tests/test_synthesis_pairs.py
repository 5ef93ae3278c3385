"""From solution records to verified rows: what is kept, what is dropped and why."""

from __future__ import annotations

import json
import logging
from dataclasses import replace
from pathlib import Path

import pytest

from codeprefs.pipelines.manifest import parse_manifest
from codeprefs.core.schema import Language
from codeprefs.pipelines.sources.solutions import SolutionFields, SolutionRecord, SolutionsError, plan_chunks, read_chunk
from codeprefs.pipelines.synthesis import harness
from codeprefs.pipelines.synthesis.pairs import SolutionSynthesizer, ToolchainMissing
from codeprefs.pipelines.synthesis.plan import SynthesisPlan
from codeprefs.pipelines.synthesis.sandbox import detect_isolation, memory_limit_mode
from codeprefs.pipelines.synthesis.settings import BugInjectionSettings, ReadabilitySettings, SandboxSettings

FAST = SandboxSettings(run_timeout_s=3, output_kb=256)

CLAMP = SolutionRecord(
    file="clamp.jsonl", line=1, task_id="clamp/0", language="Python",
    prompt="def clamp(x):\n    \"\"\"x when it is not negative, else 0.\"\"\"\n",
    solution="    if x >= 0:\n        return x\n    return 0\n",
    tests="assert clamp(5) == 5\nassert clamp(-3) == 0\n",
)


def synthesizer(operators=None, mutants=3, readability=False, verify="execute", **bugs) -> SolutionSynthesizer:
    return SolutionSynthesizer(
        bugs=BugInjectionSettings(mutants_per_solution=mutants, seed=7, verify=verify,
                                  operators=list(operators) if operators else None, **bugs),
        readability=ReadabilitySettings(enabled=readability), sandbox=FAST)


def kept(rows):
    return [row for row in rows if row["drop_reason"] is None]


def reasons(rows):
    return sorted((row["drop_stage"], row["drop_reason"]) for row in rows if row["drop_reason"])


def test_an_equivalent_mutant_survives_its_tests_and_is_dropped():
    # x >= 0 -> x > 0 changes nothing: at x == 0 both branches return 0.
    rows = synthesizer(["relational_boundary"]).rows(CLAMP)
    assert len(rows) == 1
    [row] = rows
    assert "if x > 0:" in row["rejected"]
    assert (row["drop_stage"], row["drop_reason"]) == ("verify", "mutant_survived")
    assert row["verification"] == "executed:mutant_passed"


def test_only_mutants_the_tests_kill_are_kept():
    rows = synthesizer(["change_return", "relational_boundary"], mutants=5).rows(CLAMP)
    pairs = kept(rows)
    assert {row["generator"] for row in pairs} == {"mutation:change_return"}
    assert len(pairs) == 2  # return x -> None, return 0 -> 1
    for row in pairs:
        assert row["verification"] == "executed:mutant_failed"
        assert row["chosen"] == CLAMP.prompt + CLAMP.solution
        assert row["rejected"] != row["chosen"]
        assert row["aspect"] == "Functional_Correctness" and row["aspects"] == ["Functional_Correctness"]
        assert (row["source"], row["subset"], row["repo"], row["path"]) == \
            ("solutions", "bug-injection", "clamp.jsonl", "clamp/0")
        assert row["strict_syntax"] is True
        assert "def clamp(x):" in row["input"]
    assert reasons(rows) == [("verify", "mutant_survived")]


def test_rows_are_the_same_on_every_run():
    first = synthesizer().rows(CLAMP)
    second = synthesizer().rows(CLAMP)
    assert [(r["id"], r["rejected"], r["drop_reason"]) for r in first] == \
        [(r["id"], r["rejected"], r["drop_reason"]) for r in second]
    assert len({r["id"] for r in first}) == len(first)


def test_solutions_that_fail_their_own_tests_are_dropped_with_the_reason():
    wrong = replace(CLAMP, solution="    return x\n")
    [row] = synthesizer().rows(wrong)
    assert (row["drop_stage"], row["drop_reason"]) == ("solutions", "solution_fails_own_tests")
    assert "AssertionError" in row["message"]
    # why, without rerunning: the exit status, then the first lines of what the tests printed
    status, *output = row["drop_detail"].splitlines()
    assert status == "run: exit status 1"
    assert output[0] == "Traceback (most recent call last):"
    assert output[-1] == "AssertionError"


def test_a_drop_detail_is_bounded_and_says_how_a_program_was_stopped():
    noisy = replace(CLAMP, solution="    for i in range(30):\n        print('line', i, 'x' * 100)\n"
                                    "    raise SystemExit(4)\n")
    [row] = synthesizer().rows(noisy)
    lines = row["drop_detail"].splitlines()
    assert lines[0] == "run: exit status 4"
    assert lines[1].startswith("line 0 xxx") and len(lines) <= 21
    assert len(row["drop_detail"]) <= 2000
    [killed] = synthesizer().rows(replace(CLAMP, solution="    import os, signal\n"
                                                       "    os.kill(os.getpid(), signal.SIGSEGV)\n"))
    assert killed["drop_detail"].splitlines()[0] == "run: killed by signal 11 (SIGSEGV)"
    [slow] = synthesizer().rows(replace(CLAMP, solution="    while True:\n        pass\n"))
    assert slow["drop_detail"].startswith("run: ") and "limit reached" in slow["drop_detail"]


def test_every_solutions_and_verify_drop_has_a_detail():
    records = [CLAMP, replace(CLAMP, solution=""), replace(CLAMP, solution="    return x\n"),
               replace(CLAMP, solution="    return (\n")]
    rows = [row for record in records
            for row in synthesizer(["change_return", "relational_boundary"], mutants=5,
                                   readability=True).rows(record)]
    dropped = [row for row in rows if row["drop_reason"]]
    assert {row["drop_reason"] for row in dropped} >= {"no_solution", "solution_fails_own_tests",
                                                       "solution_syntax_error", "mutant_survived"}
    for row in dropped:
        assert row["drop_detail"], row["drop_reason"]
    [survived] = [row for row in dropped if row["drop_reason"] == "mutant_survived"]
    assert survived["drop_detail"].splitlines()[:2] == ["the tests still pass with the mutant",
                                                        "run: exit status 0"]


@pytest.mark.parametrize("solution, reason", [
    ("    while True:\n        pass\n", "solution_timeout"),
    ("    while True:\n        print('spam' * 100)\n", "solution_limit_exceeded"),
    ("    import os\n    os.fork() or os.fork()\n    return max(x, 0)\n", None),
])
def test_hostile_solutions_are_contained_and_counted(solution, reason):
    rows = synthesizer(["change_return"], mutants=1).rows(replace(CLAMP, solution=solution))
    if reason is None:  # forks a few processes and passes: they are killed with the job
        assert kept(rows)
        return
    [row] = rows
    assert (row["drop_stage"], row["drop_reason"]) == ("solutions", reason)


@pytest.mark.skipif(memory_limit_mode() == "rlimit", reason="needs a memory cgroup")
def test_a_solution_filling_3_gib_of_shared_memory_exceeds_the_limit():
    solution = ("    import mmap\n    size, step = 3 * 1024 ** 3, 64 * 1024 ** 2\n"
                "    block = mmap.mmap(-1, size, flags=mmap.MAP_SHARED | mmap.MAP_ANONYMOUS)\n"
                "    for offset in range(0, size, step):\n        block[offset:offset + step] = b'x' * step\n"
                "    return max(x, 0)\n")
    slow_machine = SandboxSettings(run_timeout_s=30, memory_mb=1024)
    hog = SolutionSynthesizer(bugs=BugInjectionSettings(mutants_per_solution=1), sandbox=slow_machine)
    [row] = hog.rows(replace(CLAMP, solution=solution))
    assert (row["drop_stage"], row["drop_reason"]) == ("solutions", "solution_limit_exceeded")
    assert row["drop_detail"].splitlines()[0] == "run: killed at the memory limit"


@pytest.mark.skipif(detect_isolation() != "namespaces", reason="needs namespaces isolation")
def test_a_solution_writing_outside_its_folder_fails_its_tests():
    solution = ("    open('/tmp/codeprefs-pairs-escape', 'w').write('x')\n"
                "    return max(x, 0)\n")
    [row] = synthesizer().rows(replace(CLAMP, solution=solution))
    assert row["drop_reason"] == "solution_fails_own_tests"
    assert "Read-only file system" in row["message"]
    assert not Path("/tmp/codeprefs-pairs-escape").exists()


def test_readability_pairs_keep_behaviour_and_are_dropped_when_it_changes():
    record = replace(CLAMP, solution="    # keep non-negative values\n    result = x if x >= 0 else 0\n"
                                     "    return result\n")
    rows = synthesizer(readability=True, enabled=False).rows(record)
    [row] = rows
    assert row["drop_reason"] is None
    assert row["aspect"] == "Readability_Maintainability"
    assert row["generator"] == "readability:rename+strip"
    assert row["verification"] == "executed:behaviour_kept"
    assert "# keep" not in row["rejected"] and "result" not in row["rejected"]
    assert row["subset"] == "readability"
    # eval("result") reads the variable by its name: renaming it changes behaviour
    fragile = replace(CLAMP, solution="    result = x if x >= 0 else 0\n    return eval('result')\n")
    [row] = synthesizer(readability=True, enabled=False).rows(fragile)
    assert (row["drop_stage"], row["drop_reason"]) == ("verify", "readability_behaviour_changed")


def test_verify_none_keeps_mutants_unverified_without_running_anything():
    broken = replace(CLAMP, tests="raise SystemExit(1)\n")  # would fail if it ran
    rows = synthesizer(verify="none").rows(broken)
    assert len(kept(rows)) == 3
    assert {row["verification"] for row in rows} == {"unverified:disabled"}


def test_a_missing_toolchain_marks_rows_unverified_or_fails(monkeypatch, caplog):
    monkeypatch.setitem(harness.REQUIRED_COMMANDS, Language.PYTHON, ("codeprefs-no-python",))
    rows = synthesizer(on_missing_toolchain="skip").rows(CLAMP)
    assert len(kept(rows)) == 3
    assert {row["verification"] for row in rows} == {"unverified:no_toolchain"}
    with pytest.raises(ToolchainMissing, match="codeprefs-no-python"):
        synthesizer(on_missing_toolchain="fail").rows(CLAMP)
    manifest = parse_manifest({"name": "t", "sources": [
        {"type": "solutions", "path": __file__, "language": "Python", "format": "jsonl"}]}, Path("/"))
    with pytest.raises(ToolchainMissing, match="Python toolchain missing"):
        SynthesisPlan(manifest.synthesis, Path("/tmp")).check_toolchains(manifest.sources[0])
    skipping = parse_manifest({"name": "t", "sources": [
        {"type": "solutions", "path": __file__, "language": {"field": "lang"}, "format": "jsonl"}],
        "synthesis": {"bug_injection": {"on_missing_toolchain": "skip"}}}, Path("/"))
    plan = SynthesisPlan(skipping.synthesis, Path("/tmp"))
    with caplog.at_level(logging.WARNING):
        for _ in range(3):
            missing = plan.check_toolchains(skipping.sources[0])
    assert missing == {"Python": ["codeprefs-no-python"]}
    assert sum("Python toolchain missing" in message for message in caplog.messages) == 1


def test_malformed_records_name_their_file_and_line(tmp_path):
    path = tmp_path / "tasks.jsonl"
    good = {"task_id": "t/1", "prompt": CLAMP.prompt, "canonical_solution": CLAMP.solution,
            "test": CLAMP.tests}
    path.write_text("\n".join([
        json.dumps(good),
        "{not json",
        json.dumps({"prompt": "x"}),
        json.dumps({**good, "test": 42}),
        "",
        json.dumps([1, 2]),
        json.dumps({**good, "task_id": "t/6", "canonical_solution": None}),
    ]) + "\n")
    [chunk] = plan_chunks([("data/tasks.jsonl", path)], records_per_chunk=100)
    records = list(read_chunk(chunk, SolutionFields(), "Python", None))
    assert [(r.line, r.error) for r in records] == [
        (1, None),
        (2, "data/tasks.jsonl:2: not valid JSON (Expecting property name enclosed in double quotes: "
            "line 1 column 2 (char 1))"),
        (3, "data/tasks.jsonl:3: missing field 'test'"),
        (4, "data/tasks.jsonl:4: field 'test' is int, expected text"),
        (6, "data/tasks.jsonl:6: expected a JSON object, got list"),
        (7, None),
    ]
    with pytest.raises(SolutionsError, match="data/tasks.jsonl:2"):
        synthesizer().rows(records[1])
    [row] = synthesizer().rows(records[1], on_error="skip")
    assert (row["drop_stage"], row["drop_reason"]) == ("solutions", "malformed_record")
    assert row["message"].startswith("data/tasks.jsonl:2:")
    [row] = synthesizer().rows(records[-1])
    assert (row["drop_reason"], row["path"]) == ("no_solution", "t/6")


def test_chunks_cover_every_record_once(tmp_path):
    path = tmp_path / "many.jsonl"
    path.write_text("".join(json.dumps({"prompt": f"p{i}", "test": "t", "canonical_solution": "s",
                                        "lang": "py" if i % 2 else "Ruby"}) + "\n"
                            for i in range(10)))
    chunks = plan_chunks([("many.jsonl", path)], records_per_chunk=3)
    assert [chunk["count"] for chunk in chunks] == [3, 3, 3, 1]
    records = [r for chunk in chunks for r in read_chunk(chunk, SolutionFields(), None, "lang")]
    assert [r.prompt for r in records] == [f"p{i}" for i in range(10)]
    assert [r.language for r in records[:2]] == ["Ruby", "Python"]
    assert [r.key for r in records[:2]] == ["line:1", "line:2"]
    capped = plan_chunks([("many.jsonl", path)], records_per_chunk=4, max_records=5)
    assert sum(chunk["count"] for chunk in capped) == 5


def test_parquet_chunks_across_row_groups_read_every_record_once_with_its_row(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = [{"task_id": f"t/{n}", "prompt": f"p{n}", "test": "t", "canonical_solution": "s"}
            for n in range(23)]
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "tasks.parquet", row_group_size=5)
    chunks = plan_chunks([("tasks.parquet", tmp_path / "tasks.parquet")], records_per_chunk=4,
                         max_records=22)
    assert [(chunk["start"], chunk["count"]) for chunk in chunks] == [
        (0, 4), (4, 4), (8, 4), (12, 4), (16, 4), (20, 2)]
    records = [r for chunk in chunks for r in read_chunk(chunk, SolutionFields(), "Python", None)]
    assert [(r.line, r.task_id) for r in records] == [(n + 1, f"t/{n}") for n in range(22)]


@pytest.mark.parametrize("field", ["prompt", "solution", "tests"])
def test_a_nul_byte_in_a_record_is_a_counted_binary_drop(field):
    value = getattr(CLAMP, field)
    hostile = replace(CLAMP, **{field: value + "#" * 9000 + "\x00\n"})
    [row] = synthesizer(verify="none").rows(hostile)
    assert (row["drop_stage"], row["drop_reason"]) == ("solutions", "binary")
    assert row["message"] == f"clamp.jsonl:1: a NUL byte in the {field}"


def test_a_deeply_nested_line_is_a_malformed_record_and_a_corrupt_parquet_names_its_file(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    good = {"task_id": "t/1", "prompt": CLAMP.prompt, "canonical_solution": CLAMP.solution,
            "test": CLAMP.tests}
    path = tmp_path / "tasks.jsonl"
    path.write_text("\n".join([json.dumps(good), "[" * 100_000, '{"test": ' + "9" * 5000 + "}"]) + "\n")
    [chunk] = plan_chunks([("tasks.jsonl", path)], records_per_chunk=100)
    records = list(read_chunk(chunk, SolutionFields(), "Python", None))
    assert [(r.line, r.error) for r in records] == [
        (1, None), (2, "tasks.jsonl:2: nested too deeply"),
        (3, "tasks.jsonl:3: not valid JSON (Exceeds the limit (4300 digits) for integer string "
            "conversion: value has 5000 digits; use sys.set_int_max_str_digits() to increase the limit)")]

    table = pa.Table.from_pylist([{**good, "task_id": f"t/{n}"} for n in range(2000)])
    pq.write_table(table, tmp_path / "tasks.parquet", compression="snappy", row_group_size=500)
    data = bytearray((tmp_path / "tasks.parquet").read_bytes())
    for offset in range(200, len(data) // 2, 7):
        data[offset] ^= 0xFF
    (tmp_path / "tasks.parquet").write_bytes(bytes(data))
    [chunk] = plan_chunks([("tasks.parquet", tmp_path / "tasks.parquet")], records_per_chunk=5000)
    with pytest.raises(SolutionsError, match=r"^tasks.parquet: not a readable Parquet file \(rows 1-2000\)"):
        list(read_chunk(chunk, SolutionFields(), "Python", None))
