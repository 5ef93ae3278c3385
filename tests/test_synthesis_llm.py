"""The LLM backend against a real HTTP server on loopback that speaks the chat-completions protocol."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from codeprefs.pipelines.synthesis import prompts
from codeprefs.pipelines.synthesis.llm import (
    ChangeRater,
    ChatClient,
    InstructionWriter,
    LLMBugWriter,
    LLMError,
    PairJudge,
    ResponseCache,
)
from codeprefs.pipelines.synthesis.pairs import SolutionSynthesizer
from codeprefs.pipelines.synthesis.settings import BugInjectionSettings
from codeprefs.pipelines.sources.solutions import SolutionRecord

Script = Callable[[dict, int], tuple[int, object, float]]  # request, number -> status, body, delay


class ChatServer:
    """An OpenAI-compatible endpoint whose answers a test scripts: (status, body, delay)."""

    def __init__(self, script: Script) -> None:
        self.script = script
        self.requests: list[dict] = []
        self.in_flight = 0
        self.most_in_flight = 0
        self._lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with server._lock:
                    server.requests.append({"path": self.path, "body": body,
                                            "auth": self.headers.get("Authorization")})
                    number = len(server.requests)
                    server.in_flight += 1
                    server.most_in_flight = max(server.most_in_flight, server.in_flight)
                try:
                    status, answer, delay = server.script(body, number)
                    time.sleep(delay)
                    if status == 200 and isinstance(answer, str):
                        answer = {"id": f"c{number}", "object": "chat.completion",
                                  "model": body["model"],
                                  "choices": [{"index": 0, "finish_reason": "stop",
                                               "message": {"role": "assistant", "content": answer}}]}
                    payload = json.dumps(answer).encode()
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    if status == 429:
                        self.send_header("Retry-After", "0")
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                except (BrokenPipeError, ConnectionResetError):
                    pass
                finally:
                    with server._lock:
                        server.in_flight -= 1

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"

    def __enter__(self) -> ChatServer:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def user_text(body: dict) -> str:
    return body["messages"][-1]["content"]


def client(server: ChatServer, tmp_path=None, **options) -> ChatClient:
    cache = ResponseCache(tmp_path / "cache.sqlite") if tmp_path is not None else None
    return ChatClient(base_url=server.url, model="scripted-7b", backoff_s=0.01, cache=cache, **options)


def test_a_completion_is_requested_with_the_protocol_and_cached(tmp_path):
    with ChatServer(lambda body, n: (200, f"answer to {user_text(body)}", 0)) as server:
        first = client(server, tmp_path, api_key="sk-test")
        assert first.complete([{"role": "user", "content": "hello"}]) == "answer to hello"
        assert first.complete([{"role": "user", "content": "hello"}]) == "answer to hello"
        [request] = server.requests
        assert request["path"] == "/v1/chat/completions"
        assert request["auth"] == "Bearer sk-test"
        assert request["body"]["model"] == "scripted-7b"
        assert request["body"]["messages"] == [{"role": "user", "content": "hello"}]
        # a rerun (a new client, as in a new process) reads the same cache file: no request
        rerun = client(server, tmp_path)
        assert rerun.complete([{"role": "user", "content": "hello"}]) == "answer to hello"
        assert len(server.requests) == 1 and rerun.stats.cache_hits == 1
        # another sample of the same prompt is another request
        rerun.complete([{"role": "user", "content": "hello"}], sample=1)
        assert len(server.requests) == 2 and server.requests[1]["body"]["seed"] == 1


def test_server_errors_and_rate_limits_are_retried_with_backoff():
    script = lambda body, n: (500, {"error": "overloaded"}, 0) if n == 1 else \
        (429, {"error": "slow down"}, 0) if n == 2 else (200, "finally", 0)  # noqa: E731
    with ChatServer(script) as server:
        chat = client(server)
        assert chat.complete([{"role": "user", "content": "x"}]) == "finally"
        assert chat.stats.retries == 2 and len(server.requests) == 3


def test_a_bad_request_is_not_retried_and_a_dead_endpoint_gives_up():
    with ChatServer(lambda body, n: (400, {"error": "bad request"}, 0)) as server:
        chat = client(server)
        with pytest.raises(LLMError, match="HTTP 400"):
            chat.complete([{"role": "user", "content": "x"}])
        assert len(server.requests) == 1
    with ChatServer(lambda body, n: (200, "too late", 1.0)) as server:
        chat = client(server, timeout_s=0.2, max_retries=2)
        with pytest.raises(LLMError, match="gave up after 3 attempts"):
            chat.complete([{"role": "user", "content": "x"}])
        assert len(server.requests) == 3


def test_concurrency_is_bounded():
    with ChatServer(lambda body, n: (200, "ok", 0.15)) as server:
        chat = client(server, max_concurrency=2)
        answers = chat.complete_many([{"messages": [{"role": "user", "content": str(i)}]}
                                      for i in range(6)])
        assert answers == ["ok"] * 6
        assert server.most_in_flight == 2


def _judge_script(body: dict, number: int):
    """Prefers the answer containing 'fast'; every third answer is unreadable."""
    if number % 3 == 0:
        return 200, "Both have merits; hard to say.", 0
    text = user_text(body)
    answer_a = text.split("Answer A:")[1].split("Answer B:")[0]
    return 200, f"Reasoning...\nVerdict: {'A' if 'fast' in answer_a else 'B'}", 0


def test_the_judge_randomises_order_votes_and_counts_malformed_answers():
    with ChatServer(_judge_script) as server:
        judge = PairJudge(client(server), samples=8, seed=3)
        result = judge.compare("Runtime_Efficiency", "Python", "Sum a list.",
                               first="fast = sum(values)", second="slow = reduce(add, values)")
        assert result.winner == "first"
        assert result.malformed == 2  # requests 3 and 6 of 8
        assert result.votes == {"first": 6}
        answers = [user_text(r["body"]).split("Answer A:")[1] for r in server.requests]
        orders = {answer.index("fast =") < answer.index("slow =") for answer in answers}
        assert orders == {True, False}, "A/B order must be randomised across samples"
        assert {r["body"]["temperature"] for r in server.requests} == {0.8}
        again = judge.compare("Runtime_Efficiency", "Python", "Sum a list.",
                              first="slow = reduce(add, values)", second="fast = sum(values)")
        assert again.winner == "second"


def test_ratings_and_instructions():
    def script(body, number):
        text = user_text(body)
        if "Commit message" in text:
            return 200, "It removes a quadratic loop.\n**Rating: 4**", 0
        return 200, 'Task: "Write a function that returns the largest value of a list."', 0

    with ChatServer(script) as server:
        chat = client(server)
        rating = ChangeRater(chat).rate("Runtime_Efficiency", "Python", "speed up max", "a", "b")
        assert rating.score == 4
        writer = InstructionWriter(chat, seed=1)
        style = writer.style_for("old", "new")
        assert style in prompts.INSTRUCTION_STYLES
        assert style == InstructionWriter(chat, seed=1).style_for("old", "new")
        text = writer.write("Python", "old", "new")
        assert text == "Write a function that returns the largest value of a list."
        assert style in user_text(server.requests[-1]["body"])


def test_parsers_tolerate_malformed_answers():
    assert prompts.parse_verdict("I think **Verdict: b**.") == "B"
    assert prompts.parse_verdict("verdict = TIE") == "TIE"
    assert prompts.parse_verdict("A") == "A"
    assert prompts.parse_verdict("Answer A is better") is None
    assert prompts.parse_verdict("") is None
    assert prompts.parse_rating("Rating: 5\nActually, Rating: 3") == 3
    assert prompts.parse_rating("4/5") == 4
    assert prompts.parse_rating("I would say seven") is None
    assert prompts.extract_code("Here:\n```python\nx = 1\n```\n") == "x = 1\n"
    assert prompts.extract_code("no code") is None
    with pytest.raises(ValueError, match="unknown style"):
        prompts.inverse_instruction("Python", "a", "b", "haiku")


def test_llm_written_bugs_are_checked_and_verified_like_mutants(tmp_path):
    record = SolutionRecord(
        file="t.jsonl", line=1, task_id="t/1", language="Python",
        prompt="def biggest(values):\n", solution="    return max(values)\n",
        tests="assert biggest([1, 5, 2]) == 5\n")
    answers = [
        "```python\n    return min(values)\n```",  # a real bug
        "```python\n    return max(values)  # BUG: none\n```",  # a hint: rejected before running
        "```python\n    wrong_value = min(values)\n    return wrong_value\n```",  # a telling name
        "No code, sorry.",  # malformed: skipped
        "```python\n    return max(list(values))\n```",  # equivalent: survives its tests
    ]
    with ChatServer(lambda body, n: (200, answers[body.get("seed", 0)], 0)) as server:
        writer = LLMBugWriter(client(server, tmp_path))
        synthesizer = SolutionSynthesizer(BugInjectionSettings(mutants_per_solution=5,
                                                               max_mutants_tried=5), llm_bugs=writer)
        rows = synthesizer.rows(record)
        assert "Correct completion" in user_text(server.requests[0]["body"])
    assert [(r["generator"], r["drop_reason"], r["verification"]) for r in rows] == [
        ("llm:scripted-7b", None, "executed:mutant_failed"),
        ("llm:scripted-7b", "mutant_survived", "executed:mutant_passed"),
    ]
    assert rows[0]["rejected"] == "def biggest(values):\n    return min(values)\n"
