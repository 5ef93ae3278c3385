"""The LLM stages for mined pairs (issue #13, item 5), in real builds against a real
OpenAI-compatible HTTP server on loopback whose answers the test scripts."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest

from codeprefs.pipelines.manifest import ManifestError, load_manifest, parse_manifest
from codeprefs.pipelines.build import build
from tests.test_synthesis_llm import ChatServer, user_text

pytestmark = pytest.mark.ray


def function(name: str, step: int, marker: str) -> str:
    return (f"def {name}(values):\n    total = 0\n    for value in values:\n"
            f"        total += value * {step}  # {marker}\n    return total\n")


COMMITS = [  # file, message, what the scripted LLM makes of it
    ("mean.py", "Fix bug: mean was off by one", "kept"),
    ("clamp.py", "Fix memory leak in clamp", "low_rating"),
    ("greet.py", "Fix bug: greeting was wrong", "judge_rejected"),
    ("sign.py", "Fix bug in the sign helper", "judge_tie"),
    ("largest.py", "Fix bug in the max helper", "llm_error"),
]


def answer(body: dict, number: int) -> tuple[int, object, float]:
    """The scripted endpoint: the first request fails once (a retry must follow)."""
    if number == 1:
        return 500, {"error": "warming up"}, 0
    text = user_text(body)
    usage = {"prompt_tokens": 10, "completion_tokens": 2}
    if text.startswith("Criterion:") and "Commit message:" in text:
        if "memory leak" in text:
            reply = "Rating: 2"
        elif "max helper" in text:
            reply = "I would rather not say."
        else:
            reply = "A specific fix.\nRating: 5"
    elif "Answer A:" in text:
        first, second = text.split("Answer B:")
        if "def sign" in text:
            reply = "Verdict: TIE"
        else:
            wanted = "# old" if "def greet" in text else "# new"
            reply = "Verdict: A" if wanted in first else "Verdict: B"
    else:  # the inverse instruction
        name = text.split("def ", 1)[1].split("(", 1)[0]
        reply = f"Task: write {name}, which sums the scaled values."
    return 200, {"id": f"c{number}", "object": "chat.completion", "model": body["model"], "usage": usage,
                 "choices": [{"index": 0, "message": {"role": "assistant", "content": reply}}]}, 0


@pytest.fixture
def history(make_repo):
    repo = make_repo("judged")
    for path, _, _ in COMMITS:
        repo.commit(f"Add {path}", {path: function(path[:-3], 1, "old")})
    for path, message, _ in COMMITS:
        repo.commit(message, {path: function(path[:-3], 2, "new")})
    return repo


def manifest(tmp_path, repo, server, **judge):
    return parse_manifest({
        "name": "judged", "sources": [{"type": "git", "repos": [str(repo.path)]}],
        "judge": {"llm": {"base_url": server.url, "model": "judge-7b", "max_concurrency": 2},
                  "rating": {"min_score": 4}, "instruction": {"styles": ["StackOverflow question"]},
                  "votes": 3, "temperature": 0.8, **judge}}, tmp_path)


def test_rating_instruction_and_votes_keep_only_what_the_judge_prefers(ray_local, tmp_path, history):
    with ChatServer(answer) as server:
        out = tmp_path / "out"
        record = build(manifest(tmp_path, history, server), out)
        sent = len(server.requests)

        kept = pl.read_parquet(out / "data" / "*.parquet")
        rejects = pl.read_parquet(out / "rejects" / "*.parquet").filter(pl.col("drop_stage") == "judge")
        assert [message.strip() for message in kept["message"]] == ["Fix bug: mean was off by one"]
        assert kept["input"].to_list() == ["write mean, which sums the scaled values."]
        fates = dict(zip([m.strip() for m in rejects["message"]], rejects["drop_reason"].to_list(), strict=True))
        assert fates == {message: fate for _, message, fate in COMMITS if fate != "kept"}
        detail = rejects.filter(pl.col("drop_reason") == "low_rating")["drop_detail"].to_list()
        assert detail == ["rated 2 for Memory_Efficiency"]

        judge_funnel = next(stage for stage in record["funnel"] if stage["stage"] == "judge")
        assert judge_funnel["dropped"] == 4
        # 5 ratings (one retried), 3 instructions (pairs rated >= 4 minus the unreadable one),
        # 3 votes for each of those three pairs
        assert record["llm"]["requests"] == sent == 1 + 5 + 3 + 3 * 3
        assert record["llm"]["retries"] == 1 and record["llm"]["reused"] is False
        assert record["llm"]["prompt_tokens"] == 10 * (sent - 1)
        assert all(request["body"]["model"] == "judge-7b" for request in server.requests)

        # the same manifest again: nothing to do (the record is the run that did the work), nothing sent
        again = build(manifest(tmp_path, history, server), out)
        assert len(server.requests) == sent and again["llm"] == record["llm"]

        # a changed judge setting reruns the stage from the response cache: nothing new is sent
        rerun = build(manifest(tmp_path, history, server, rating={"min_score": 2}), out)
        sent_for_rerun = len(server.requests) - sent
        assert rerun["llm"]["reused"] is False and rerun["llm"]["cache_hits"] > 0
        # the memory-leak pair (rated 2) now passes the rating: only its own instruction and votes are new
        assert sent_for_rerun == 1 + 3
        assert rerun["llm"]["requests"] == sent_for_rerun


def test_judge_without_an_endpoint_names_the_key(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("name: r\nsources:\n  - type: git\n    repos: [/x]\njudge: {votes: 3}\n")
    with pytest.raises(ManifestError, match=r"judge\.llm: Field required"):
        load_manifest(path)
    path.write_text("name: r\nsources:\n  - type: git\n    repos: [/x]\n"
                    "judge: {llm: {base_url: 'http://127.0.0.1:1/v1', model: m}, instruction: {styles: [haiku]}}\n")
    with pytest.raises(ManifestError, match=r"judge\.instruction\.styles.*unknown styles \['haiku'\]"):
        load_manifest(path)


def test_the_manifests_instruction_styles_are_the_prompt_templates():
    from codeprefs.pipelines.judgesettings import InstructionSettings
    from codeprefs.pipelines.synthesis.prompts import INSTRUCTION_STYLES as TEMPLATE_STYLES

    manifest = parse_manifest({"name": "r", "sources": [{"type": "git", "repos": ["/x"]}],
                               "judge": {"llm": {"base_url": "http://127.0.0.1:1/v1", "model": "m"},
                                         "instruction": {}}}, Path("/"))
    assert manifest.judge.instruction.styles == list(TEMPLATE_STYLES) == InstructionSettings().styles
    assert json.dumps(manifest.resolved()["judge"]["instruction"]["styles"])
