"""An optional LLM backend: a client for any OpenAI-compatible chat endpoint, and the jobs on it.

:class:`ChatClient` speaks ``POST {base_url}/chat/completions`` (OpenAI, vLLM, llama.cpp's
server, ...) with a bound on concurrent requests, a per-request timeout, retries with
exponential backoff (honouring ``Retry-After``) on timeouts, connection errors, 429 and 5xx,
and a :class:`ResponseCache`: a SQLite file keyed by a hash of the exact request (model,
messages, sampling settings and sample number), so a rerun sends nothing it sent before.

The jobs (:class:`InstructionWriter`, :class:`LLMBugWriter`, :class:`ChangeRater`,
:class:`PairJudge`) use the templates of :mod:`codeprefs.pipelines.synthesis.prompts`. Mutations stay the
default bug source; the LLM is used only when a manifest asks for it.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import sqlite3
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import Field, field_validator

from codeprefs.core.settings import Settings
from codeprefs.core.locations import require_local
from codeprefs.pipelines.synthesis import prompts

_RETRY_STATUS = frozenset({408, 409, 425, 429, 500, 502, 503, 504})


class LLMError(RuntimeError):
    """The endpoint kept failing, or answered something that is not a chat completion."""


class LLMSettings(Settings):
    """An OpenAI-compatible chat endpoint (e.g. a vLLM server): the manifest's ``synthesis.llm``
    and ``judge.llm``, read by :meth:`ChatClient.from_config`."""

    base_url: str = Field(min_length=1)  # e.g. http://127.0.0.1:8000/v1
    model: str = Field(min_length=1)
    api_key_env: str | None = None  # the environment variable holding the key, if any
    max_concurrency: int = Field(default=8, ge=1)
    timeout_s: float = Field(default=120.0, gt=0)
    max_retries: int = Field(default=4, ge=0)
    temperature: float = Field(default=0.0, ge=0.0, le=2.0)
    max_tokens: int = Field(default=2048, ge=1)
    cache_dir: str | None = None  # response cache; default: <output>/.cache/llm

    @field_validator("cache_dir")
    @classmethod
    def _local_cache(cls, cache_dir: str | None) -> str | None:
        return None if cache_dir is None else require_local(cache_dir)


class ResponseCache:
    """Answers by request hash, in a SQLite file shared by threads and processes."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        with self._connection() as connection:
            connection.execute("CREATE TABLE IF NOT EXISTS answers (key TEXT PRIMARY KEY, answer TEXT)")

    def _connection(self) -> sqlite3.Connection:
        connection = getattr(self._local, "connection", None)
        if connection is None:
            connection = sqlite3.connect(self.path, timeout=60, isolation_level=None)
            connection.execute("PRAGMA journal_mode=WAL")
            self._local.connection = connection
        return connection

    def get(self, key: str) -> str | None:
        row = self._connection().execute("SELECT answer FROM answers WHERE key = ?", (key,)).fetchone()
        return row[0] if row else None

    def put(self, key: str, answer: str) -> None:
        self._connection().execute("INSERT OR REPLACE INTO answers VALUES (?, ?)", (key, answer))

    def __getstate__(self):
        return {"path": self.path}

    def __setstate__(self, state):
        self.path = state["path"]
        self._local = threading.local()


@dataclass
class ClientStats:
    requests: int = 0  # HTTP requests sent (retries included)
    cache_hits: int = 0
    retries: int = 0
    prompt_tokens: int = 0  # from the answers' ``usage``, where the endpoint reports it
    completion_tokens: int = 0

    def as_dict(self) -> dict[str, int]:
        return {"requests": self.requests, "cache_hits": self.cache_hits, "retries": self.retries,
                "prompt_tokens": self.prompt_tokens, "completion_tokens": self.completion_tokens}


@dataclass
class ChatClient:
    """A chat-completions client with bounded concurrency, retries and a response cache."""

    base_url: str
    model: str
    api_key: str | None = None
    max_concurrency: int = 8
    timeout_s: float = 120.0
    max_retries: int = 4
    backoff_s: float = 0.5
    temperature: float = 0.0
    max_tokens: int = 2048
    cache: ResponseCache | None = None
    stats: ClientStats = field(default_factory=ClientStats)

    def __post_init__(self) -> None:
        self._slots = threading.BoundedSemaphore(self.max_concurrency)
        self._stats_lock = threading.Lock()

    def __getstate__(self):
        state = dict(self.__dict__)
        for transient in ("_slots", "_stats_lock"):
            state.pop(transient, None)
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        self.__post_init__()

    @classmethod
    def from_config(cls, config: LLMSettings, cache_dir: Path | None, key: str = "synthesis.llm") -> ChatClient:
        """A client from a manifest's endpoint section (``key`` names it in errors)."""
        api_key = os.environ.get(config.api_key_env) if config.api_key_env else None
        if config.api_key_env and not api_key:
            raise LLMError(f"{key}.api_key_env: ${config.api_key_env} is not set")
        return cls(base_url=config.base_url, model=config.model, api_key=api_key,
                   max_concurrency=config.max_concurrency, timeout_s=config.timeout_s,
                   max_retries=config.max_retries, temperature=config.temperature,
                   max_tokens=config.max_tokens,
                   cache=ResponseCache(cache_dir / "responses.sqlite") if cache_dir else None)

    def request_body(self, messages: Sequence[dict[str, str]], temperature: float | None,
                     max_tokens: int | None, sample: int) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": self.model, "messages": [dict(m) for m in messages],
            "temperature": self.temperature if temperature is None else temperature,
            "max_tokens": max_tokens or self.max_tokens,
        }
        if sample:
            body["seed"] = sample  # distinct samples of the same prompt are distinct requests
        return body

    @staticmethod
    def cache_key(body: dict[str, Any]) -> str:
        return hashlib.sha256(json.dumps(body, sort_keys=True, ensure_ascii=False).encode()).hexdigest()

    def complete(self, messages: Sequence[dict[str, str]], temperature: float | None = None,
                 max_tokens: int | None = None, sample: int = 0) -> str:
        """The assistant's answer to ``messages`` (``sample`` numbers repeated samples)."""
        body = self.request_body(messages, temperature, max_tokens, sample)
        key = self.cache_key(body)
        if self.cache is not None:
            cached = self.cache.get(key)
            if cached is not None:
                with self._stats_lock:
                    self.stats.cache_hits += 1
                return cached
        with self._slots:
            answer = self._post_with_retries(body)
        if self.cache is not None:
            self.cache.put(key, answer)
        return answer

    def complete_many(self, requests: Sequence[dict[str, Any]]) -> list[str]:
        """Answers to many requests (keyword arguments of :meth:`complete`), in order."""
        with ThreadPoolExecutor(max_workers=self.max_concurrency) as pool:
            return list(pool.map(lambda request: self.complete(**request), requests))

    def _post_with_retries(self, body: dict[str, Any]) -> str:
        url = self.base_url.rstrip("/") + "/chat/completions"
        data = json.dumps(body).encode("utf-8")
        headers = {"Content-Type": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        last_error = "no attempt"
        for attempt in range(self.max_retries + 1):
            if attempt:
                with self._stats_lock:
                    self.stats.retries += 1
            with self._stats_lock:
                self.stats.requests += 1
            wait = self.backoff_s * (2 ** attempt) * (1 + random.random())
            try:
                request = urllib.request.Request(url, data=data, headers=headers, method="POST")
                with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
                    payload = json.loads(response.read().decode("utf-8"))
                answer = self._answer(payload)
                self._count_usage(payload)
                return answer
            except urllib.error.HTTPError as error:
                last_error = f"HTTP {error.code}: {error.read()[:300].decode('utf-8', 'replace')}"
                if error.code not in _RETRY_STATUS:
                    raise LLMError(f"{url}: {last_error}") from None
                retry_after = error.headers.get("Retry-After") if error.headers else None
                if retry_after and retry_after.replace(".", "", 1).isdigit():
                    wait = max(wait, float(retry_after))
            except (urllib.error.URLError, TimeoutError, ConnectionError, OSError) as error:
                last_error = f"{type(error).__name__}: {getattr(error, 'reason', error)}"
            except ValueError as error:
                raise LLMError(f"{url}: not a chat completion: {error}") from None
            if attempt < self.max_retries:
                time.sleep(wait)
        raise LLMError(f"{url}: gave up after {self.max_retries + 1} attempts: {last_error}")

    def _count_usage(self, payload: dict[str, Any]) -> None:
        usage = payload.get("usage") if isinstance(payload, dict) else None
        if not isinstance(usage, dict):
            return
        with self._stats_lock:
            for key in ("prompt_tokens", "completion_tokens"):
                if isinstance(usage.get(key), int):
                    setattr(self.stats, key, getattr(self.stats, key) + usage[key])

    @staticmethod
    def _answer(payload: dict[str, Any]) -> str:
        try:
            content = payload["choices"][0]["message"]["content"]
        except (KeyError, IndexError, TypeError):
            raise ValueError(f"no choices[0].message.content in {str(payload)[:300]}") from None
        return content or ""


def _seeded(*parts: object) -> random.Random:
    digest = hashlib.sha256("\x1f".join(str(part) for part in parts).encode()).digest()
    return random.Random(int.from_bytes(digest[:8], "big"))


class InstructionWriter:
    """Inverse instructions: the task either version of a change answers, in a seeded style."""

    def __init__(self, client: ChatClient, seed: int = 0) -> None:
        self.client = client
        self.seed = seed

    def style_for(self, before: str, after: str) -> str:
        return _seeded(self.seed, before, after).choice(prompts.INSTRUCTION_STYLES)

    def write(self, language: str, before: str, after: str, style: str | None = None) -> str | None:
        style = style or self.style_for(before, after)
        answer = self.client.complete(prompts.inverse_instruction(language, before, after, style))
        return prompts.parse_instruction(answer)


class LLMBugWriter:
    """Buggy completions proposed by the LLM (verified by execution like mutants)."""

    def __init__(self, client: ChatClient, temperature: float = 0.8) -> None:
        self.client = client
        self.temperature = temperature

    @property
    def name(self) -> str:
        return f"llm:{self.client.model}"

    def propose(self, language: str, instruction: str, given: str, completion: str,
                count: int) -> list[str | None]:
        """``count`` candidate completions (None where the answer held no code block)."""
        messages = prompts.bug_introduction(language, instruction, given, completion)
        answers = self.client.complete_many([
            {"messages": messages, "temperature": self.temperature, "sample": index}
            for index in range(count)])
        return [prompts.extract_code(answer) for answer in answers]


class LLMSolver:
    """Completions of a task written by the LLM: candidate-set samples, right or wrong, which
    only running the tests tells apart."""

    def __init__(self, client: ChatClient, temperature: float = 0.8) -> None:
        self.client = client
        self.temperature = temperature

    def propose(self, language: str, instruction: str, given: str, count: int) -> list[str | None]:
        """``count`` sampled completions (None where the answer held no code block)."""
        messages = prompts.task_solution(language, instruction, given)
        answers = self.client.complete_many([
            {"messages": messages, "temperature": self.temperature, "sample": index}
            for index in range(count)])
        return [prompts.extract_code(answer) for answer in answers]


@dataclass(frozen=True)
class Rating:
    score: int | None  # None: the answer was malformed
    answer: str


class ChangeRater:
    """1-5: how specifically a change improves a criterion."""

    def __init__(self, client: ChatClient) -> None:
        self.client = client

    def rate(self, criterion: str, language: str, message: str, before: str, after: str) -> Rating:
        answer = self.client.complete(prompts.change_rating(criterion, language, message, before, after))
        return Rating(prompts.parse_rating(answer), answer)


@dataclass(frozen=True)
class Judgement:
    """The outcome of several judge samples on one pair."""

    winner: str | None  # "first", "second", "tie"; None when no sample could be read
    votes: dict[str, int]
    malformed: int
    samples: int


class PairJudge:
    """LLM-as-judge: N samples with the A/B order randomised per sample, majority vote."""

    def __init__(self, client: ChatClient, samples: int = 8, temperature: float = 0.8,
                 seed: int = 0) -> None:
        self.client = client
        self.samples = samples
        self.temperature = temperature
        self.seed = seed

    def compare(self, criterion: str, language: str, instruction: str, first: str,
                second: str) -> Judgement:
        """Which of ``first`` and ``second`` better meets ``criterion``."""
        rng = _seeded(self.seed, criterion, instruction, first, second)
        swaps = [rng.random() < 0.5 for _ in range(self.samples)]
        requests = []
        for index, swapped in enumerate(swaps):
            a, b = (second, first) if swapped else (first, second)
            requests.append({"messages": prompts.pairwise_judge(criterion, language, instruction, a, b),
                             "temperature": self.temperature, "sample": index})
        votes: Counter[str] = Counter()
        malformed = 0
        for swapped, answer in zip(swaps, self.client.complete_many(requests), strict=True):
            verdict = prompts.parse_verdict(answer)
            if verdict is None:
                malformed += 1
            elif verdict == "TIE":
                votes["tie"] += 1
            else:
                votes["first" if (verdict == "A") != swapped else "second"] += 1
        return Judgement(self._majority(votes), dict(votes), malformed, self.samples)

    @staticmethod
    def _majority(votes: Counter[str]) -> str | None:
        if not votes:
            return None
        ranked = votes.most_common()
        if len(ranked) > 1 and ranked[0][1] == ranked[1][1]:
            return "tie"
        return ranked[0][0]
