"""End to end: a solutions source through ``pipelines.build.build`` on a local Ray instance."""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from codeprefs.pipelines.manifest import ManifestError, parse_manifest
from codeprefs.core.schema import PAIR_SCHEMA, Language
from codeprefs.pipelines.build import BuildError, build
from codeprefs.pipelines.synthesis import harness
from codeprefs.pipelines.synthesis.code import parse_program
from codeprefs.pipelines.synthesis.sandbox import memory_limit_mode

pytestmark = pytest.mark.ray

RECORDS = [
    {"task_id": "py/max", "language": "python",
     "prompt": "def largest(values):\n    \"\"\"The largest value of a non-empty list.\"\"\"\n",
     "canonical_solution": "    best = values[0]\n    for value in values[1:]:\n        if value > best:\n"
                           "            best = value\n    return best\n",
     "test": "def check(candidate):\n    assert candidate([3, 9, 4]) == 9\n    assert candidate([-5, -2]) == -2\n"
             "    assert candidate([7]) == 7\n",
     "entry_point": "largest"},
    {"task_id": "js/count", "language": "javascript",
     "prompt": "// Count the even numbers in an array.\nfunction countEven(numbers)",
     "canonical_solution": " {\n  let count = 0;\n  for (let i = 0; i < numbers.length; i++) {\n"
                           "    if (numbers[i] % 2 === 0) {\n      count += 1;\n    }\n  }\n  return count;\n}\n",
     "test": "console.assert(countEven([1, 2, 3, 4]) === 2);\nconsole.assert(countEven([]) === 0);\n"
             "console.assert(countEven([2, 2, 5]) === 2);\n"},
    {"task_id": "rb/sum", "language": "ruby",
     "prompt": "# Sum of the squares of 1..n\ndef square_sum(n)\n",
     "canonical_solution": "  total = 0\n  (1..n).each do |k|\n    total += k * k\n  end\n  total\nend\n",
     "test": "raise 'n=3' unless square_sum(3) == 14\nraise 'n=1' unless square_sum(1) == 1\n"},
    {"task_id": "py/wrong", "language": "python",
     "prompt": "def double(x):\n", "canonical_solution": "    return x * 3\n",
     "test": "assert double(2) == 4\n"},
]


def write_records(path: Path) -> None:
    lines = [json.dumps(record) for record in RECORDS]
    lines.insert(2, '{"task_id": "broken", "prompt": ')  # malformed: line 3
    path.write_text("\n".join(lines) + "\n")


@pytest.fixture(scope="module")
def ray_instance():
    from codeprefs.core.raycluster import ray_session

    with ray_session(num_cpus=2):
        yield


def manifest_for(path: Path, **synthesis) -> dict:
    return {
        "name": "synthesis-e2e",
        "sources": [{"type": "solutions", "path": path.name, "language": {"field": "language"},
                     "records_per_task": 2, "on_error": "skip"}],
        "synthesis": {"bug_injection": {"mutants_per_solution": 2, "seed": 7},
                      "readability": {"enabled": True}, **synthesis},
    }


def test_solutions_become_verified_pairs_in_the_shards(tmp_path, ray_instance):
    data = tmp_path / "solutions.jsonl"
    write_records(data)
    spec = manifest_for(data)
    spec["sources"][0]["path"] = str(data)  # absolute: rows still name the file as from the manifest
    manifest = parse_manifest(spec, tmp_path)
    record = build(manifest, tmp_path / "out")

    [source] = record["inputs"]
    assert (source["type"], source["records"], source["tasks"]) == ("solutions", 5, 3)
    funnel = {stage["stage"]: stage for stage in record["funnel"]}
    assert funnel["solutions"]["reasons"] == {"malformed_record": 1, "solution_fails_own_tests": 1}
    tried = funnel["verify"]["rows_in"]
    assert record["rows"]["kept"] == tried - funnel["verify"]["dropped"] - funnel["validate"]["dropped"] \
        - funnel["dedupe"]["dropped"]

    [shard] = [output["path"] for output in record["outputs"]]
    table = pq.read_table(tmp_path / "out" / shard)
    assert table.schema.equals(PAIR_SCHEMA, check_metadata=False)
    rows = table.to_pylist()
    by_task = Counter((row["path"], row["aspect"]) for row in rows)
    for task in ("py/max", "js/count", "rb/sum"):
        assert by_task[(task, "Functional_Correctness")] == 2, by_task
    assert by_task[("py/max", "Readability_Maintainability")] == 1
    for row in rows:
        assert row["source"] == "solutions" and row["repo"] == "solutions.jsonl"
        assert row["verification"].startswith("executed:")
        assert row["chosen"] != row["rejected"]
        language = Language(row["language"])
        assert parse_program(language, row["rejected"].encode()) is not None
        assert row["rejected_error_fraction"] == 0.0 and row["chosen_error_fraction"] == 0.0
        if row["aspect"] == "Functional_Correctness":
            assert row["generator"].startswith("mutation:")
            assert row["subset"] == "bug-injection"
        else:
            assert row["subset"] == "readability"
    rejects = pq.read_table(tmp_path / "out" / record["rejects"][0]["path"]).to_pylist()
    malformed = [r for r in rejects if r["drop_reason"] == "malformed_record"]
    assert malformed[0]["message"].startswith("solutions.jsonl:3:")
    # every solutions/verify reject says why in rejects/, without rerunning anything
    synthesized = [r for r in rejects if r["drop_stage"] in ("solutions", "verify")]
    assert synthesized and all(r["drop_detail"] for r in synthesized)
    [wrong] = [r for r in rejects if r["drop_reason"] == "solution_fails_own_tests"]
    assert wrong["drop_detail"].splitlines()[0] == "run: exit status 1"
    assert "AssertionError" in wrong["drop_detail"]
    assert source["sandbox_memory_limit"] == memory_limit_mode()

    again = build(manifest, tmp_path / "again")
    assert [o["sha256"] for o in again["outputs"]] == [o["sha256"] for o in record["outputs"]]


def test_a_malformed_record_fails_the_build_naming_its_file_and_line(tmp_path, ray_instance):
    data = tmp_path / "solutions.jsonl"
    write_records(data)
    config = manifest_for(data)
    config["sources"][0].update(on_error="fail", max_records=3)
    with pytest.raises(BuildError, match=re.escape("malformed record solutions.jsonl:3: not valid JSON")):
        build(parse_manifest(config, tmp_path), tmp_path / "out")


def test_a_missing_toolchain_stops_the_build_before_any_work(tmp_path, monkeypatch):
    data = tmp_path / "solutions.jsonl"
    write_records(data)
    monkeypatch.setitem(harness.REQUIRED_COMMANDS, Language.RUBY, ("codeprefs-no-ruby",))
    config = manifest_for(data)
    config["sources"][0]["language"] = "Ruby"
    with pytest.raises(BuildError, match="sources.0: Ruby toolchain missing"):
        build(parse_manifest(config, tmp_path), tmp_path / "out")


def _fake_tool(folder: Path, name: str, version: str, stream: str = "stdout") -> None:
    tool = folder / name
    redirect = " >&2" if stream == "stderr" else ""
    tool.write_text(f"#!/bin/sh\necho '{version}'{redirect}\n")
    tool.chmod(0o755)


def test_toolchain_versions_are_read_from_each_executable(tmp_path):
    _fake_tool(tmp_path, "javac", "javac 17.0.9", stream="stderr")  # javac -version may print to stderr
    _fake_tool(tmp_path, "java", "openjdk version \"17.0.9\" 2023-10-17", stream="stderr")
    _fake_tool(tmp_path, "go", "go version go1.22.2 linux/amd64")
    versions = harness.toolchain_versions([Language.JAVA, Language.GO, Language.RUBY], search_path=str(tmp_path))
    assert versions == {"go": "go version go1.22.2 linux/amd64", "java": 'openjdk version "17.0.9" 2023-10-17',
                        "javac": "javac 17.0.9"}  # ruby is not installed there: left out


def test_a_toolchain_upgrade_changes_the_source_fingerprint(tmp_path, monkeypatch):
    """Which mutants fail their tests depends on the compiler, so a new one reruns the source."""
    from codeprefs.pipelines.build import plan_build

    data = tmp_path / "solutions.jsonl"
    write_records(data)
    config = manifest_for(data)
    config["sources"][0]["language"] = "Ruby"
    tools = tmp_path / "tools"
    tools.mkdir()
    monkeypatch.setattr(harness, "SAFE_PATH", str(tools))
    monkeypatch.setitem(harness.REQUIRED_COMMANDS, Language.RUBY, ("codeprefs-fake-ruby",))

    def source_fingerprint(version: str) -> tuple[str, dict]:
        _fake_tool(tools, "codeprefs-fake-ruby", version)
        [work] = plan_build(parse_manifest(config, tmp_path), tmp_path / "out").works
        return work.settings_fingerprint, work.recipe.toolchains

    old, old_tools = source_fingerprint("ruby 3.2.3")
    same, _ = source_fingerprint("ruby 3.2.3")
    new, new_tools = source_fingerprint("ruby 3.3.0")
    assert old_tools == {"codeprefs-fake-ruby": "ruby 3.2.3"} and new_tools == {"codeprefs-fake-ruby": "ruby 3.3.0"}
    assert old == same != new


def test_manifest_errors_name_the_key(tmp_path):
    with pytest.raises(ManifestError, match=re.escape("sources.0.path: path pattern 'none-*.jsonl'")):
        parse_manifest({"name": "x", "sources": [{"type": "solutions", "path": "none-*.jsonl",
                                                  "language": "Go"}]}, tmp_path)
    with pytest.raises(ManifestError, match="synthesis.llm is not set"):
        parse_manifest({"name": "x", "sources": [{"type": "solutions", "path": __file__,
                                                  "language": "Go"}],
                        "synthesis": {"bug_injection": {"backend": "llm"}}}, Path("/"))
