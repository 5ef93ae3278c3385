"""Causal LMs beyond Qwen3: packing only where it is exact (the probe, SDPA or padded fallbacks),
sliding windows, soft-capping, dropout by any name, and a reward-model class where transformers
has none."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from tests.test_trainer_packing import _varlen_with_window
from tests.trainer_fixtures import (  # noqa: F401
    assert_scores_match_the_evaluator,
    make_rows,
    one_torch_thread,
    tiny_model,
    write_shards,
)
from codeprefs.trainers.attention import SEGMENTS, VARLEN, register
from codeprefs.core.encoding import EncodedPair
from codeprefs.trainers.model import RewardModel, disable_dropout
from codeprefs.trainers.packcheck import packing_problem
from codeprefs.trainers.packing import pack_pairs, pad_pairs
from codeprefs.trainers.train import TrainConfig, run

SMALL = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
             num_key_value_heads=2, max_position_embeddings=512)


def _config(model_type: str, vocab_size: int = 256, pad_token_id: int = 0, **overrides):
    from transformers import AutoConfig

    return AutoConfig.for_model(model_type, **{**SMALL, **overrides}, vocab_size=vocab_size,
                                pad_token_id=pad_token_id)


def _reward_model(model_type: str, attention: str = SEGMENTS, seed: int = 0, **overrides) -> RewardModel:
    from transformers import AutoModelForCausalLM

    register()
    torch.manual_seed(seed)
    causal = AutoModelForCausalLM.from_config(_config(model_type, **overrides), attn_implementation=attention)
    model = RewardModel.from_causal_lm(causal, pad_token_id=0).eval()
    torch.nn.init.normal_(model.score.weight, std=1.0)
    return model


def _pairs(lengths: list[tuple[int, int, int]], seed: int = 0) -> list[EncodedPair]:
    rng = np.random.default_rng(seed)
    return [EncodedPair(i, *(rng.integers(1, 256, n).astype(np.int32) for n in triple))
            for i, triple in enumerate(lengths)]


def test_probe_passes_architectures_that_keep_packed_sequences_apart(tiny_model):  # noqa: F811
    assert packing_problem(RewardModel.from_pretrained(tiny_model, attn_implementation=SEGMENTS)) is None
    for model_type in ("llama", "gpt2"):
        assert packing_problem(_reward_model(model_type)) is None, model_type


def test_probe_catches_layers_that_let_packed_sequences_see_each_other():
    # StableLM's decoder layer drops the keyword arguments that carry the pack's boundaries, so a
    # packed-sequence attention backend sees one long sequence; BLOOM's ALiBi attention ignores
    # them; Jamba's Mamba layers carry their state along the row.
    for model_type in ("stablelm", "bloom", "jamba"):
        model = _reward_model(model_type)
        problem = packing_problem(model)
        assert problem is not None and "see each other" in problem, model_type
        pairs = _pairs([(5, 7, 4), (6, 3, 8)])
        with torch.no_grad():  # what the probe prevents: packed rewards that differ from padded ones
            packed, padded = model(pack_pairs(pairs)).rewards, model(pad_pairs(pairs, 0)).rewards
        assert (packed - padded).abs().max() > 1e-5, model_type  # float32 noise: ~1e-6
    # With SDPA transformers builds a block-diagonal mask from the restarting positions: exact again.
    assert packing_problem(_reward_model("stablelm", attention="sdpa")) is None


def test_probe_catches_positions_that_do_not_restart_in_a_pack():
    model = _reward_model("gpt2")  # learned absolute positions
    forward = model.backbone.forward

    def without_position_ids(*args, position_ids=None, **kwargs):
        return forward(*args, **kwargs)  # positions then run 0..T-1 across the whole pack

    model.backbone.forward = without_position_ids
    problem = packing_problem(model)
    assert problem is not None and "positions do not restart" in problem


def test_probe_leaves_the_model_as_it_found_it(tiny_model):  # noqa: F811
    model = RewardModel.from_pretrained(tiny_model, attn_implementation=SEGMENTS).train()
    before = {name: value.clone() for name, value in model.state_dict().items()}
    assert packing_problem(model) is None
    assert model.training and all(param.grad is None for param in model.parameters())
    assert all(torch.equal(before[name], value) for name, value in model.state_dict().items())


@pytest.mark.parametrize("backend", [SEGMENTS, VARLEN])
def test_sliding_window_packs_match_transformers_padded_batches(backend, monkeypatch):
    import codeprefs.trainers.attention as attention

    if backend == VARLEN:  # torch's varlen kernel is CUDA-only: the CPU stand-in with its signature
        monkeypatch.setattr(attention, "_torch_varlen", lambda: _varlen_with_window)
        monkeypatch.setattr(attention, "_VARLEN", attention._varlen_setup())
    window = 5
    packed_model = _reward_model("mistral", attention=backend, sliding_window=window)
    padded_model = _reward_model("mistral", attention="eager", sliding_window=window)
    padded_model.load_state_dict(packed_model.state_dict())
    pairs = _pairs([(6, 9, 4), (3, 12, 10), (2, 3, 2)])  # most sequences longer than the window
    with torch.no_grad():
        packed = packed_model(pack_pairs(pairs), with_lm=True)
        padded = padded_model(pad_pairs(pairs, 0), with_lm=True)
        unwindowed = _reward_model("mistral", attention="eager", sliding_window=None)
        unwindowed.load_state_dict(packed_model.state_dict())
        full = unwindowed(pad_pairs(pairs, 0)).rewards
    assert torch.allclose(packed.rewards, padded.rewards, atol=1e-5)
    assert packed.lm_weighted_sum.item() == pytest.approx(padded.lm_weighted_sum.item(), rel=1e-5)
    assert (full - padded.rewards).abs().max() > 1e-3  # the window did change the numbers


@pytest.mark.parametrize(("model_type", "options"), [
    ("gemma2", dict(attn_logit_softcapping=50.0)),  # soft-capped attention logits
    ("gpt_oss", dict(num_local_experts=4, num_experts_per_tok=2, layer_types=["full_attention"] * 2)),  # sinks
])
def test_attention_our_backends_cannot_compute_runs_eagerly_on_padded_batches(model_type, options):
    from codeprefs.trainers.attention import UnsupportedAttention
    from codeprefs.trainers.packcheck import fall_back_to_padding

    model = _reward_model(model_type, **options)
    with pytest.raises(UnsupportedAttention):  # never silently skipped
        model(pack_pairs(_pairs([(3, 4, 5)])))
    reports = []
    problem = fall_back_to_padding(model, reports.append)
    assert "eager" in problem and reports and not model.packs
    assert model.config._attn_implementation == "eager"
    reference = _reward_model(model_type, attention="eager", **options)  # the same weights (same seed)
    pairs = _pairs([(5, 6, 7), (4, 9, 2)])
    with torch.no_grad():
        got = model(pad_pairs(pairs, 0)).rewards
        want = reference(pad_pairs(pairs, 0)).rewards
    assert torch.allclose(got, want, atol=1e-5)


def _save_tiny(path: Path, model_type: str, **options) -> Path:
    from transformers import AutoModelForCausalLM

    from codeprefs.trainers.tiny import tiny_tokenizer

    tokenizer = tiny_tokenizer()
    torch.manual_seed(0)
    config = _config(model_type, vocab_size=len(tokenizer), pad_token_id=tokenizer.pad_token_id, **options)
    AutoModelForCausalLM.from_config(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


@pytest.mark.parametrize(("model_type", "attention", "batches", "problem"), [
    # Drops the boundary arguments, so not our backends: SDPA, whose block-diagonal mask from the
    # restarting positions keeps packs exact.
    ("stablelm", "sdpa", "packed", None),
    ("bloom", "eager", "padded", "see each other"),  # ALiBi attention of its own: padded batches
    ("qwen3_5_text", "sdpa", "padded", "cannot take padding-free packs"),  # gated-delta layers refuse packs
    ("gemma2", "eager", "padded", "soft-capping"),  # what our backends cannot compute: its own attention
])
def test_each_architecture_trains_on_the_batches_it_computes_exactly(tmp_path, model_type, attention, batches,
                                                                     problem):
    from codeprefs.trainers.evaluate import evaluate

    model_path = _save_tiny(tmp_path / model_type, model_type)
    data = write_shards(tmp_path / "pairs", make_rows(8, seed=2))
    output = tmp_path / "ckpt"
    summary = run(TrainConfig(data=[str(data)], model=str(model_path), output=str(output), global_batch=4,
                              micro_batch_tokens=200, lr=1e-3))
    assert (summary["attention"], summary["batches"]) == (attention, batches)
    assert summary["packing_problem"] is None if problem is None else problem in summary["packing_problem"]
    steps = [json.loads(line) for line in (output / "log.jsonl").read_text().splitlines()]
    assert len(steps) == 2 and all(np.isfinite(step["loss"]) for step in steps)
    assert all((step["non_pad_fraction"] == 1.0) == (batches == "packed") for step in steps)
    assert evaluate(output, str(data), tmp_path / "eval")["overall"]["total_examples"] == 8


# Dense; MoE (experts implementation); a text model whose PreTrainedModel is multimodal (config
# class); a hybrid whose non-persistent buffers only initialisation sets (mup_vector).
@pytest.mark.parametrize(("model_type", "options"), [
    ("granite", {}), ("glm4_moe", {}), ("gemma4_text", {}),
    ("falcon_h1", dict(mamba_d_ssm=64, mamba_n_heads=8, mamba_d_state=16, mamba_chunk_size=16)),
])
def test_architectures_without_a_transformers_reward_class_get_one_that_loads(tmp_path, model_type, options):
    from transformers import AutoModelForSequenceClassification

    from codeprefs.trainers.evaluate import evaluate
    from codeprefs.trainers.seqcls import REWARD_CODE_FILE
    from codeprefs.trainers.tokenizer import load_tokenizer

    model_path = _save_tiny(tmp_path / model_type, model_type, **options)
    data = write_shards(tmp_path / "pairs", make_rows(6, seed=4))
    output = tmp_path / "ckpt"
    run(TrainConfig(data=[str(data)], model=str(model_path), output=str(output), global_batch=6, lr=1e-2))
    config = json.loads((output / "config.json").read_text())
    (name,) = config["architectures"]
    assert name.endswith("ForSequenceClassification") and (output / REWARD_CODE_FILE).exists()
    assert config["auto_map"] == {"AutoModelForSequenceClassification": f"modeling_codeprefs_reward.{name}"}
    evaluate(output, str(data), tmp_path / "eval")

    model = AutoModelForSequenceClassification.from_pretrained(output, num_labels=1, trust_remote_code=True)
    assert type(model).__name__ == name and model.score.weight.abs().sum() > 0
    assert_scores_match_the_evaluator(model, load_tokenizer(output), data, "own", tmp_path / "eval" / "scores.parquet")
    # and codeprefs' own scorer loads the checkpoint with its written class (#16)
    from codeprefs.core.prompts import evaluation_prompt
    from codeprefs.trainers.score import RewardScorer

    rows = make_rows(6, seed=4)
    expected = pd.read_parquet(tmp_path / "eval" / "scores.parquet")
    expected = expected if expected.index.name == "id" else expected.set_index("id")
    chosen = RewardScorer.from_pretrained(output).score(
        [row["input"] for row in rows], [row["chosen"] for row in rows],
        [evaluation_prompt("own", row["aspect"], None)[1] for row in rows])
    np.testing.assert_allclose(chosen, expected.loc[[row["id"] for row in rows], "chosen_score"].to_numpy(),
                               rtol=1e-4, atol=1e-4)


def test_dropout_is_off_in_training_whatever_the_architecture_calls_it():
    # Functional dropout reads float attributes (StarCoder2's residual and embedding dropout, the
    # attention_dropout handed to every attention function); nn.Dropout modules are not all of it.
    probabilities = dict(attention_dropout=0.1, residual_dropout=0.1, embedding_dropout=0.1, resid_pdrop=0.1,
                         embd_pdrop=0.1, attn_pdrop=0.1)
    batch = pack_pairs(_pairs([(5, 6, 7), (4, 3, 2)]))
    for model_type in ("starcoder2", "llama", "gpt_bigcode"):
        model = _reward_model(model_type, **probabilities)
        disable_dropout(model)
        model.train()
        first, second = model(batch, with_lm=True), model(batch, with_lm=True)  # packed attention refuses dropout
        assert torch.equal(first.rewards, second.rewards), model_type
        assert torch.equal(first.lm_weighted_sum, second.lm_weighted_sum), model_type
        config = model.config.to_dict()
        assert all(config[name] == 0.0 for name in probabilities if name in config), model_type


def test_a_reward_class_is_written_where_transformers_has_none_or_another_head():
    import transformers

    from codeprefs.trainers.seqcls import sequence_classification_class

    qwen3, gpt2 = (sequence_classification_class(_config(name)) for name in ("qwen3", "gpt2"))
    assert (qwen3.cls, qwen3.source) == (transformers.Qwen3ForSequenceClassification, None)
    assert (gpt2.cls, gpt2.source) == (transformers.GPT2ForSequenceClassification, None)  # a bias-free score
    ctrl = sequence_classification_class(_config("ctrl"))  # transformers' CTRL head is a `classifier`
    assert ctrl.cls is not transformers.CTRLForSequenceClassification and "class CTRLForSequenceClassification(" \
        in ctrl.source and ctrl.cls.base_model_prefix == "transformer"
    granite = sequence_classification_class(_config("granite"))  # none in transformers
    assert granite.auto_map == {"AutoModelForSequenceClassification":
                                "modeling_codeprefs_reward.GraniteForSequenceClassification"}


def test_blocks_are_found_in_models_that_do_not_name_them(tiny_model):  # noqa: F811
    from codeprefs.trainers.distributed import transformer_blocks
    from codeprefs.trainers.model import wrap_blocks

    qwen3 = RewardModel.from_pretrained(tiny_model, attn_implementation=SEGMENTS)
    assert [type(b).__name__ for b in transformer_blocks(qwen3.transformer())] == ["Qwen3DecoderLayer"] * 2
    plain = _reward_model("biogpt", attention="eager")  # no _no_split_modules: its largest stack of layers
    checkpointed = _reward_model("biogpt", attention="eager")
    blocks = transformer_blocks(checkpointed.transformer())
    assert [type(block).__name__ for block in blocks] == ["BioGptDecoderLayer"] * 2
    wrap_blocks(blocks, checkpoint=True)
    batch = pad_pairs(_pairs([(5, 6, 7)]), 0)
    for model in (plain, checkpointed):
        disable_dropout(model)
        model.train()
        model(batch).rewards.sum().backward()
    for (name, a), b in zip(plain.named_parameters(), checkpointed.parameters(), strict=True):
        assert (a.grad is None) == (b.grad is None), name
        assert a.grad is None or torch.allclose(a.grad, b.grad, atol=1e-6), name


def test_attention_over_more_keys_than_pack_tokens_is_not_computed_as_if_it_were():
    from codeprefs.trainers.attention import UnsupportedAttention, segmented_attention_forward

    query, key = torch.randn(1, 2, 6, 8), torch.randn(1, 2, 9, 8)  # three extra (e.g. memory) keys
    boundaries = dict(cu_seq_lens_q=torch.tensor([0, 2, 6], dtype=torch.int32), max_length_q=4)
    with pytest.raises(UnsupportedAttention, match="9 keys from 6 tokens"):
        segmented_attention_forward(None, query, key, key, None, **boundaries)
