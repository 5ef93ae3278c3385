"""Candidate sets (``synthesis.candidates``): many executed responses per task, for re-ranking.

Real programs run in the real sandbox (all eight languages; a language whose toolchain is not
installed is skipped), an LLM is a real HTTP server on loopback, and the build runs on a local
Ray instance.
"""

from __future__ import annotations

import json
import re
from dataclasses import replace
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from codeprefs.cli import _print_summary
from codeprefs.core.candidateset import CANDIDATE_SCHEMA
from codeprefs.core.layout import RUN_STATE, STAGES_DIR
from codeprefs.core.schema import Language
from codeprefs.pipelines.build import build
from codeprefs.pipelines.manifest import ManifestError, parse_manifest
from codeprefs.pipelines.sources.solutions import SolutionRecord, SolutionsError
from codeprefs.pipelines.synthesis import harness
from codeprefs.pipelines.synthesis.candidates import CandidateGenerator, normalized_key
from codeprefs.pipelines.synthesis.harness import GO_PATH, missing_commands
from codeprefs.pipelines.synthesis.llm import ChatClient, LLMSolver
from codeprefs.pipelines.synthesis.settings import CandidateSettings, SandboxSettings
from codeprefs.trainers.candidates import EVALUATION_COLUMNS, read_candidates
from codeprefs.trainers.evaluate import main as evaluate_main
from codeprefs.trainers.rerank import main as rerank_main
from tests.test_synthesis_llm import ChatServer
from tests.trainer_fixtures import reward_model, tiny_model, tokenizer  # noqa: F401

FAST = SandboxSettings(run_timeout_s=5, output_kb=256)

# language: (prompt, solution, tests). ``clamp(x)``: x when it is not negative, else 0. Each
# solution has an equivalent mutant (x >= 0 -> x > 0: at 0 both return 0) and killed ones.
TASKS: dict[str, tuple[str, str, str]] = {
    "Python": (
        "def clamp(x):\n    \"\"\"x when it is not negative, else 0.\"\"\"\n",
        "    # keep what is not negative\n    if x >= 0:\n        value = x\n    else:\n        value = 0\n"
        "    return value\n",
        "assert clamp(5) == 5\nassert clamp(-3) == 0\nassert clamp(0) == 0\n",
    ),
    "C": (
        "#include <assert.h>\nint clamp(int x)",
        "\n{\n    int value = 0;\n    if (x >= 0) {\n        value = x;\n    }\n    return value;\n}\n",
        "int main(void)\n{\n    assert(clamp(5) == 5);\n    assert(clamp(-3) == 0);\n    return 0;\n}\n",
    ),
    "Go": (
        "package main\n\nimport (\n\t\"testing\"\n\n\t\"github.com/stretchr/testify/assert\"\n)\n\n"
        "func clamp(x int) int {\n",
        "\tif x >= 0 {\n\t\treturn x\n\t}\n\treturn 0\n}\n",
        "func TestClamp(t *testing.T) {\n\tassert := assert.New(t)\n\tassert.Equal(5, clamp(5))\n"
        "\tassert.Equal(0, clamp(-3))\n}\n",
    ),
    "C++": (
        "#include <cassert>\nint clamp(int x)",
        "\n{\n    int value = 0;\n    if (x >= 0) {\n        value = x;\n    }\n    return value;\n}\n",
        "int main()\n{\n    assert(clamp(5) == 5);\n    assert(clamp(-3) == 0);\n    return 0;\n}\n",
    ),
    "Java": (
        "import java.util.*;\n\nclass Problem {\n    public static int clamp(int x) {\n",
        "        if (x >= 0) {\n            return x;\n        }\n        return 0;\n    }\n}\n",
        "public class Main {\n    public static void main(String[] args) {\n"
        "        assert Problem.clamp(5) == 5;\n        assert Problem.clamp(-3) == 0;\n    }\n}\n",
    ),
    "C#": (
        "using System;\nusing System.Diagnostics;\n\nclass Problem {\n    public static int clamp(int x) {\n",
        "        if (x >= 0) {\n            return x;\n        }\n        return 0;\n    }\n",
        "    public static void Main(string[] args) {\n        Debug.Assert(clamp(5) == 5);\n"
        "        Debug.Assert(clamp(-3) == 0);\n    }\n}\n",
    ),
    "JavaScript": (
        "function clamp(x) {\n",
        "    if (x >= 0) {\n        return x;\n    }\n    return 0;\n}\n",
        "const assert = require('assert');\nassert.strictEqual(clamp(5), 5);\nassert.strictEqual(clamp(-3), 0);\n",
    ),
    "Ruby": (
        "def clamp(x)\n",
        "  if x >= 0\n    return x\n  end\n  0\nend\n",
        "raise 'clamp(5)' unless clamp(5) == 5\nraise 'clamp(-3)' unless clamp(-3) == 0\n",
    ),
}
# compiled for each candidate: fewer candidates keep the test short
SLOW_TO_BUILD = ("Go", "Java", "C#")


def record(language: str, **changes) -> SolutionRecord:
    prompt, solution, tests = TASKS[language]
    base = SolutionRecord(file="tasks.jsonl", line=1, task_id=f"{language}/clamp", language=language,
                          prompt=prompt, solution=solution, tests=tests)
    return replace(base, **changes)


def generator(per_task: int = 40, seed: int = 7, **settings) -> CandidateGenerator:
    return CandidateGenerator(CandidateSettings(per_task=per_task, seed=seed, **settings), FAST)


def candidates(rows):
    return [row for row in rows if row["drop_reason"] is None]


def skip_without_toolchain(language: str) -> None:
    missing = missing_commands(Language(language))
    if missing:
        pytest.skip(f"{language} toolchain not installed ({', '.join(missing)})")
    if language == "Go" and not (Path(GO_PATH) / "src/github.com/stretchr/testify").is_dir():
        pytest.skip("testify not installed (golang-github-stretchr-testify-dev)")


@pytest.mark.parametrize("language", list(TASKS))
def test_each_candidate_is_executed_and_labelled_by_its_outcome(language):
    skip_without_toolchain(language)
    made = generator(per_task=6 if language in SLOW_TO_BUILD else 40, operators=None)
    rows = made.rows(record(language))
    kept = candidates(rows)
    by_generator = {}
    for row in kept:
        by_generator.setdefault(row["generator"], []).append(row)
        assert row["task_id"] == f"tasks.jsonl:{language}/clamp"
        assert row["candidate_id"].startswith(row["task_id"] + "/" + row["generator"] + "/")
        assert row["language"] == language and "clamp" in row["prompt"]
        assert row["passed"] == (row["outcome"] == "passed")
        assert row["pass_rate"] == (1.0 if row["passed"] else 0.0)
        assert row["passed_tests"] is None and row["total_tests"] is None  # the harness runs one program
    [solution] = by_generator["solution"]
    prompt, code, _ = TASKS[language]
    assert solution["outcome"] == "passed" and solution["code"].startswith(prompt + code)
    # the equivalent mutant passes; negating the condition breaks clamp(5)
    [boundary] = by_generator["mutation:relational_boundary"]
    assert "x > 0" in boundary["code"] and boundary["outcome"] == "passed"
    negated = by_generator["mutation:negate_condition"]
    assert negated and all(row["outcome"] == "failed" and not row["passed"] for row in negated)
    assert len(kept) <= made.settings.per_task
    assert made.runs == len(kept)  # the solution once, then each candidate once
    assert len({normalized_key(Language(language), row["code"]) for row in kept}) == len(kept)
    assert len({row["candidate_id"] for row in rows}) == len(rows)


def test_the_readability_variant_is_a_candidate_that_keeps_behaviour():
    skip_without_toolchain("Python")
    kept = candidates(generator(mutations=False).rows(record("Python")))
    assert [row["generator"] for row in kept] == ["solution", "readability:rename+strip"]
    readable = kept[1]
    assert "keep what is not negative" not in readable["code"] and "value" not in readable["code"]
    assert readable["outcome"] == "passed"


def test_per_task_caps_the_candidates_and_the_seed_picks_them():
    skip_without_toolchain("Python")
    everything = generator().rows(record("Python"))
    distinct = candidates(everything)
    assert len(distinct) >= 6
    first = generator(per_task=3).rows(record("Python"))
    kept = candidates(first)
    assert len(kept) == 3 and kept[0]["generator"] == "solution"
    skipped = [row for row in first if row["drop_reason"] == "not_sampled"]
    assert len(skipped) == len(distinct) - 3  # every variant not sampled is counted
    again = generator(per_task=3).rows(record("Python"))
    assert [(r["candidate_id"], r["code"], r["outcome"]) for r in candidates(again)] == \
        [(r["candidate_id"], r["code"], r["outcome"]) for r in kept]
    picks = {tuple(r["candidate_id"] for r in candidates(generator(per_task=3, seed=seed).rows(record("Python"))))
             for seed in range(6)}
    assert len(picks) > 1  # the seed decides which variants are sampled
    assert all(set(pick) <= {r["candidate_id"] for r in distinct} for pick in picks)


def test_normalized_code_ignores_layout_and_comments_only():
    python = Language.PYTHON
    assert normalized_key(python, "x = 1  # one\ny = [1,\n     2]\n") == normalized_key(python, "x = 1\ny = [1, 2]\n")
    assert normalized_key(python, "x = 1\n") != normalized_key(python, "x = 2\n")
    assert normalized_key(python, "if x:\n    a()\nb()\n") != normalized_key(python, "if x:\n    a()\n    b()\n")
    # code that does not parse is compared as text with runs of blanks collapsed
    assert normalized_key(python, "def f(:\n  pass") == normalized_key(python, "def f(:   \n pass")


def test_llm_samples_are_candidates_deduplicated_and_counted():
    skip_without_toolchain("Python")
    prompt, solution, _ = TASKS["Python"]
    answers = ["```python\n    return max(x, 0)\n```",  # right, new
               "```python\n" + prompt + "    return max(x,0)  # again\n```",  # the same, repeating the prompt
               "I cannot help with that.",  # no code
               "```python\n    return abs(x)\n```"]  # wrong

    server = ChatServer(lambda body, number: (200, answers[body.get("seed", 0)], 0.0))
    with server:
        solver = LLMSolver(ChatClient(base_url=server.url, model="m", max_retries=0))
        rows = CandidateGenerator(CandidateSettings(per_task=40, seed=7, mutations=False, readability=False,
                                                    llm_samples=4), FAST, solver).rows(record("Python"))
    outcomes = {row["candidate_id"].rsplit("/", 1)[1]: (row["outcome"], row["drop_reason"])
                for row in rows if row["generator"] != "solution"}
    assert outcomes == {"0": ("passed", None), "1": (None, "duplicate_code"), "2": (None, "llm_no_code"),
                        "3": ("failed", None)}
    assert len(server.requests) == 4
    [right] = [row for row in rows if row["candidate_id"].endswith("/llm/0")]
    assert right["code"] == prompt + "    return max(x, 0)\n"


def test_tasks_that_give_no_candidates_are_counted_with_their_reason(monkeypatch):
    skip_without_toolchain("Python")
    [wrong] = generator().rows(record("Python", solution="    return x\n"))
    assert (wrong["drop_reason"], wrong["candidate_id"]) == ("solution_fails_own_tests", "tasks.jsonl:Python/clamp/-")
    assert "AssertionError" in wrong["drop_detail"]
    [empty] = generator().rows(record("Python", solution="  \n"))
    assert empty["drop_reason"] == "no_solution"
    malformed = SolutionRecord(file="tasks.jsonl", line=4, error="tasks.jsonl:4: not valid JSON")
    [skipped] = generator().rows(malformed, on_error="skip")
    assert skipped["drop_reason"] == "malformed_record"
    with pytest.raises(SolutionsError, match="tasks.jsonl:4"):
        generator().rows(malformed)
    monkeypatch.setitem(harness.REQUIRED_COMMANDS, Language.PYTHON, ("codeprefs-no-python",))
    made = generator()
    [missing] = made.rows(record("Python"))
    assert missing["drop_reason"] == "no_toolchain" and "codeprefs-no-python" in missing["drop_detail"]
    assert made.runs == 0


def test_manifest_errors_name_the_setting(tmp_path):
    data = tmp_path / "tasks.jsonl"
    data.write_text("")

    def parse(candidates, **synthesis):
        return parse_manifest({"name": "x", "sources": [{"type": "solutions", "path": str(data), "language": "Python"}],
                               "synthesis": {"candidates": candidates, **synthesis}}, tmp_path)

    assert parse({"per_task": 40, "seed": 7}).synthesis.candidates.per_task == 40
    assert parse_manifest({"name": "x", "sources": [{"type": "solutions", "path": str(data), "language": "Python"}]},
                          tmp_path).synthesis.candidates is None  # off unless given
    for bad, message in (({"per_task": 1}, "synthesis.candidates.per_task: Input should be greater than or equal to 2"),
                         ({"seed": "7"}, "synthesis.candidates.seed: Input should be a valid integer"),
                         ({"per_task": 4.5}, "synthesis.candidates.per_task: Input should be a valid integer"),
                         ({"samples": 3}, "synthesis.candidates.samples: unknown key"),
                         ({"operators": ["flip"]}, "unknown mutation operator"),
                         ({"llm_samples": -1}, "synthesis.candidates.llm_samples")):
        with pytest.raises(ManifestError, match=re.escape(message)):
            parse(bad)
    with pytest.raises(ManifestError, match="synthesis.candidates.llm_samples is 2 but synthesis.llm is not set"):
        parse({"llm_samples": 2})


# -- a build ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def ray_instance():
    from codeprefs.core.raycluster import ray_session

    with ray_session(num_cpus=2):
        yield


@pytest.mark.ray
def test_a_build_writes_candidates_beside_the_pairs_deterministically_and_reuses_them(tmp_path, ray_instance,
                                                                                       capsys, reward_model):  # noqa: F811
    skip_without_toolchain("Python")
    skip_without_toolchain("C")
    records = [{"task_id": "py/clamp", "language": "python", "prompt": TASKS["Python"][0],
                "canonical_solution": TASKS["Python"][1], "test": TASKS["Python"][2]},
               {"task_id": "c/clamp", "language": "c", "prompt": TASKS["C"][0],
                "canonical_solution": TASKS["C"][1], "test": TASKS["C"][2]},
               {"task_id": "py/wrong", "language": "python", "prompt": "def double(x):\n",
                "canonical_solution": "    return x * 3\n", "test": "assert double(2) == 4\n"}]
    (tmp_path / "tasks.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    spec = {"name": "candidates", "sources": [{"type": "solutions", "path": "tasks.jsonl",
                                               "language": {"field": "language"}, "records_per_task": 2}],
            "synthesis": {"bug_injection": {"mutants_per_solution": 1, "seed": 7},
                          "sandbox": {"run_timeout_s": 5}, "candidates": {"per_task": 5, "seed": 7}}}
    out = tmp_path / "out"
    first = build(parse_manifest(spec, tmp_path), out)

    summary = first["candidates"]
    [written] = summary["files"]
    assert written["path"] == "candidates/candidates-00000-of-00001.parquet"
    table = pq.read_table(out / written["path"])
    assert table.schema.equals(CANDIDATE_SCHEMA, check_metadata=False)
    rows = table.to_pylist()
    keys = [(row["task_id"], row["candidate_id"]) for row in rows]
    assert keys == sorted(keys) and len(set(keys)) == len(keys)
    assert {row["task_id"] for row in rows} == {"tasks.jsonl:py/clamp", "tasks.jsonl:c/clamp"}
    assert (summary["tasks"], summary["candidates"], summary["per_task_max"]) == (2, 10, 5)
    assert summary["tasks_dropped"] == {"solution_fails_own_tests": 1}
    assert summary["candidates_dropped"]["not_sampled"] > 0
    assert set(summary["by_language"]) == {"C", "Python"}
    assert summary["passed"] == sum(row["passed"] for row in rows)
    for row in rows:
        if row["generator"] == "solution":
            assert row["outcome"] == "passed"
    # the re-ranking evaluator's reader takes the folder or the one file, with every column it checks
    from_folder = read_candidates(out / "candidates", EVALUATION_COLUMNS)
    assert from_folder.equals(read_candidates(out / written["path"], EVALUATION_COLUMNS))
    assert from_folder.to_pylist() == rows
    # the pairs are the pair synthesis's own: no candidate row is in the shards
    [shard] = first["outputs"]
    pairs = pq.read_table(out / shard["path"]).to_pylist()
    assert all(row["generator"].startswith("mutation:") for row in pairs)
    assert len(pairs) == 2  # one verified mutant per usable task
    stages = {(stage["stage"], stage["units_reused"]) for stage in first["stages"]}
    assert stages == {("source", 0), ("candidates", 0)}
    # the loop closed: a reward model re-ranks what the build wrote (evaluate --rerank, rerank)
    assert evaluate_main(["--model", str(reward_model), "--rerank", str(out / "candidates"),
                          "--output", str(tmp_path / "eval")]) == 0
    reranking = json.loads((tmp_path / "eval" / "results.json").read_text())["reranking"]
    assert (reranking["overall"]["tasks"], reranking["overall"]["candidates"]) == (2, 10)
    assert set(reranking["by_language"]) == {"C", "Python"}
    scored = pq.read_table(tmp_path / "eval" / "candidate_scores.parquet")
    assert scored.num_rows == 10 and scored["candidate_id"].to_pylist() == [row["candidate_id"] for row in rows]
    assert rerank_main(["--model", str(reward_model), "--candidates", str(out / "candidates"),
                        "--output", str(tmp_path / "best.parquet"), "--top-k", "2"]) == 0
    best = pq.read_table(tmp_path / "best.parquet")
    assert best["task_id"].to_pylist() == ["tasks.jsonl:c/clamp"] * 2 + ["tasks.jsonl:py/clamp"] * 2
    assert best["rank"].to_pylist() == [1, 2, 1, 2]
    capsys.readouterr()

    _print_summary(first, out)  # what `codeprefs build` prints
    assert f"wrote 10 candidates of 2 task(s), {summary['passed_share']:.1%} passing, to " in \
        " ".join(capsys.readouterr().out.split())

    # the same manifest elsewhere: the same bytes
    second = build(parse_manifest(spec, tmp_path), tmp_path / "again")
    assert second["candidates"]["files"] == summary["files"]
    assert (tmp_path / "again" / written["path"]).read_bytes() == (out / written["path"]).read_bytes()

    # a run interrupted after one unit: --resume runs only the other, and writes the same bytes
    again = tmp_path / "again"
    [fingerprint] = [stage["fingerprint"] for stage in second["stages"] if stage["stage"] == "candidates"]
    units = sorted((again / STAGES_DIR / "candidates" / fingerprint).glob("unit-*.parquet"))
    assert len(units) == 2
    units[0].unlink()
    state = json.loads((again / RUN_STATE).read_text())
    (again / RUN_STATE).write_text(json.dumps({**state, "status": "running"}))
    resumed = build(parse_manifest(spec, tmp_path), again, resume=True)
    assert resumed["resumed"] is True
    assert {(s["stage"], s["units_reused"]) for s in resumed["stages"]} == {("source", 2), ("candidates", 1)}
    assert resumed["candidates"]["files"] == summary["files"]

    # a rerun does nothing; a change to the pairs alone runs no candidate again
    assert build(parse_manifest(spec, tmp_path), out)["up_to_date"] is True
    spec["synthesis"]["bug_injection"]["mutants_per_solution"] = 2
    changed = build(parse_manifest(spec, tmp_path), out)
    reused = {stage["stage"]: stage["units_reused"] for stage in changed["stages"]}
    assert reused == {"source": 0, "candidates": 2}
    assert changed["candidates"]["files"] == summary["files"]

    # without candidates the folder no longer holds them
    del spec["synthesis"]["candidates"]
    plain = build(parse_manifest(spec, tmp_path), out)
    assert "candidates" not in plain and written["path"] in plain["removed_stale_files"]
    assert not (out / written["path"]).exists()
