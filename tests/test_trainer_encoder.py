"""Encoder backbones (BERT-like) train through AutoModelForSequenceClassification, no LM term."""

from __future__ import annotations

import json

import pandas as pd
import torch

from tests.trainer_fixtures import make_rows, one_torch_thread, write_shards  # noqa: F401
from codeprefs.core.encoding import PairEncoder
from codeprefs.trainers.data import evaluation_system_prompts, load_pairs
from codeprefs.trainers.model import RewardModel, detect_backbone
from codeprefs.trainers.packing import pad_pairs
from codeprefs.trainers.tiny import save_tiny_encoder
from codeprefs.trainers.tokenizer import load_tokenizer
from codeprefs.trainers.train import TrainConfig, run


def test_encoder_trains_saves_and_scores_like_transformers(tmp_path):
    from transformers import AutoConfig, AutoModelForSequenceClassification

    source = save_tiny_encoder(tmp_path / "bert")
    assert detect_backbone(AutoConfig.from_pretrained(source)) == "encoder"
    data = write_shards(tmp_path / "pairs", make_rows(12))
    summary = run(TrainConfig(data=[str(data)], model=str(source), output=str(tmp_path / "rm"), global_batch=6,
                              epochs=2, lr=1e-3, final_lr=1e-4, max_length=512, micro_batch_tokens=4096,
                              eval_data=str(data)))
    history = [json.loads(line) for line in (tmp_path / "rm" / "log.jsonl").read_text().splitlines()]
    assert len(history) == 4 and all(h["lm_loss"] == 0.0 for h in history)
    assert history[0]["non_pad_fraction"] < 1.0  # padded batches
    assert summary["eval"]["total_examples"] == 12

    tokenizer = load_tokenizer(tmp_path / "rm")
    assert tokenizer.chat_template is None
    model = AutoModelForSequenceClassification.from_pretrained(tmp_path / "rm", num_labels=1).eval()
    assert type(model).__name__ == "BertForSequenceClassification"
    assert RewardModel.from_pretrained(tmp_path / "rm").kind == "encoder"
    table, _ = evaluation_system_prompts(load_pairs(data), "own")
    pairs, _ = PairEncoder(tokenizer, 512).encode(table)
    assert pairs[0].prompt[0] == tokenizer.cls_token_id and pairs[0].chosen[-1] == tokenizer.sep_token_id
    batch = pad_pairs(pairs, tokenizer.pad_token_id)
    with torch.no_grad():
        logits = model(input_ids=batch.input_ids, attention_mask=batch.attention_mask).logits[:, 0]
    scores = pd.read_parquet(tmp_path / "rm" / "eval" / "scores.parquet")
    assert torch.allclose(logits[0::2], torch.tensor(scores["chosen_score"].values, dtype=torch.float32), atol=1e-5)
    assert torch.allclose(logits[1::2], torch.tensor(scores["rejected_score"].values, dtype=torch.float32), atol=1e-5)
