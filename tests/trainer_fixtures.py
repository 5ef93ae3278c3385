"""Helpers for the trainer tests: pairs with the paper's columns and a tiny model on disk."""

from __future__ import annotations

import random
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

LANGUAGES = ("Python", "C", "Go", "Java")
ASPECTS = ("Functional_Correctness", "Runtime_Efficiency", "Memory_Efficiency", "Readability_Maintainability",
           "Security_Hardness")


def make_rows(count: int, seed: int = 0, system: str = "", prefix: str = "r") -> list[dict]:
    """Pairs whose chosen answer adds and whose rejected answer subtracts (easy to learn)."""
    rng = random.Random(seed)
    rows = []
    for index in range(count):
        amount = rng.randint(1, 99)
        name = rng.choice(["f", "g", "add", "inc", "step"])
        rows.append({
            "id": f"{prefix}{index:04d}",
            "system": system,
            "input": f"Write {name}(x) that returns x plus {amount}.",
            "chosen": f"def {name}(x):\n    return x + {amount}\n",
            "rejected": f"def {name}(x):\n    return x - {amount}\n",
            "language": LANGUAGES[index % len(LANGUAGES)],
            "aspect": ASPECTS[index % len(ASPECTS)],
            "subset": "toy" if index % 3 else "other",
        })
    return rows


def write_shards(output: Path, rows: list[dict], shards: int = 1) -> Path:
    """Write ``rows`` like the build does: ``<output>/data/train-0000k-of-0000N.parquet``."""
    (output / "data").mkdir(parents=True, exist_ok=True)
    for k in range(shards):
        part = rows[k::shards]
        pq.write_table(pa.Table.from_pylist(part), output / "data" / f"train-{k:05d}-of-{shards:05d}.parquet")
    return output


@pytest.fixture(scope="session", autouse=True)
def one_torch_thread():
    """Tiny models run fastest on one thread; OpenMP spin-waits also hurt on a busy 2-core machine."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random tiny Qwen3 causal LM (tied embeddings) and its tokenizer, saved to disk."""
    from codeprefs.trainers.tiny import save_tiny_causal_lm

    return save_tiny_causal_lm(tmp_path_factory.mktemp("tiny-qwen3"), seed=0)


@pytest.fixture(scope="session")
def tokenizer(tiny_model: Path):
    from codeprefs.trainers.tokenizer import load_tokenizer

    return load_tokenizer(tiny_model)


@pytest.fixture(scope="session")
def reward_model(tmp_path_factory: pytest.TempPathFactory, tiny_model: Path, tokenizer) -> Path:
    """A reward model checkpoint of the tiny model with a random (non-zero) head."""
    import torch

    from codeprefs.trainers.model import RewardModel

    model = RewardModel.from_pretrained(tiny_model)
    torch.manual_seed(11)
    torch.nn.init.normal_(model.score.weight, std=0.5)
    path = tmp_path_factory.mktemp("rm")
    model.save_pretrained(path, tokenizer=tokenizer)
    return path


def assert_scores_match_the_evaluator(model, tokenizer, data: Path, prompts: str, scores_file: Path) -> None:
    """A loaded ``*ForSequenceClassification`` scores the pairs of ``data`` (padded, with ``prompts``
    system prompts) as the evaluator did in ``scores_file``."""
    import pandas as pd
    import torch

    from codeprefs.core.encoding import PairEncoder

    from codeprefs.trainers.data import evaluation_system_prompts, load_pairs
    from codeprefs.trainers.packing import pad_pairs

    table, _ = evaluation_system_prompts(load_pairs(str(data)), prompts)
    pairs, _ = PairEncoder(tokenizer, 4096).encode(table)
    batch = pad_pairs(pairs, tokenizer.pad_token_id)
    with torch.no_grad():
        logits = model.eval()(input_ids=batch.input_ids, attention_mask=batch.attention_mask).logits[:, 0]
    scores = pd.read_parquet(scores_file)
    assert scores.index.name == "id" and list(scores.index) == table["id"].to_pylist()
    assert torch.allclose(logits[0::2], torch.tensor(scores["chosen_score"].values, dtype=torch.float32), atol=1e-5)
    assert torch.allclose(logits[1::2], torch.tensor(scores["rejected_score"].values, dtype=torch.float32), atol=1e-5)
