"""The trainer on a CUDA device: varlen packs against padded batches, compiled blocks against eager.

Skipped without a GPU; ``benchmarks/device_trainer.sh`` runs them on the lent GPU machine. The
CPU suite checks the same properties in float32 (``test_trainer_packing``, ``test_trainer_train``);
here the model computes in bfloat16, so the tolerances are bfloat16's.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from tests.test_trainer_packing import _encoded
from tests.test_trainer_train import random_rows
from tests.trainer_fixtures import tiny_model, tokenizer, write_shards  # noqa: F401
from codeprefs.trainers.attention import VARLEN, choose_attention
from codeprefs.trainers.loss import reward_loss
from codeprefs.trainers.model import RewardModel
from codeprefs.trainers.packing import pack_pairs, pad_pairs
from codeprefs.trainers.train import TrainConfig, run

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


def test_varlen_packs_match_padded_batches_on_the_gpu(tiny_model, tokenizer):  # noqa: F811
    assert choose_attention("auto", torch.device("cuda")) in (VARLEN, "flash_attention_2")
    packed_model = RewardModel.from_pretrained(tiny_model, attn_implementation=VARLEN).cuda()
    torch.manual_seed(3)
    torch.nn.init.normal_(packed_model.score.weight, std=0.5)
    padded_model = RewardModel.from_pretrained(tiny_model, attn_implementation="sdpa").cuda()
    padded_model.load_state_dict(packed_model.state_dict())
    pairs = _encoded(tokenizer, 6)
    results = []
    for model, batch in ((packed_model, pack_pairs(pairs)), (padded_model, pad_pairs(pairs, tokenizer.pad_token_id))):
        with torch.autocast("cuda", dtype=torch.bfloat16):
            output = model(batch.to("cuda"), with_lm=True)
            terms = reward_loss(output.rewards, output.lm_weighted_sum, 0.25, 0.001)
        terms.total.backward()
        results.append((output.rewards.detach().float().cpu(), terms,
                        {n: p.grad.float().cpu() for n, p in model.named_parameters() if p.grad is not None}))
    (packed_rewards, packed, packed_grads), (padded_rewards, padded, padded_grads) = results
    assert packed_rewards.abs().min() > 1e-2
    assert torch.allclose(packed_rewards, padded_rewards, rtol=3e-2, atol=3e-2)
    for name in ("total", "preference", "lm", "magnitude"):
        assert getattr(packed, name).item() == pytest.approx(getattr(padded, name).item(), rel=3e-2), name
    assert packed_grads.keys() == padded_grads.keys() and len(packed_grads) > 10
    for name, grad in packed_grads.items():
        scale = padded_grads[name].abs().max().item() + 1e-6
        assert (grad - padded_grads[name]).abs().max().item() <= 5e-2 * scale, name


def test_compiled_blocks_train_like_eager_ones_on_the_gpu(tmp_path, tiny_model):  # noqa: F811
    from torch._dynamo.utils import counters

    data = write_shards(tmp_path / "pairs", random_rows(24, seed=3))

    def train(name: str, **options) -> list[dict]:
        run(TrainConfig(data=[str(data)], model=str(tiny_model), output=str(tmp_path / name), global_batch=8,
                        epochs=2, lr=2e-3, final_lr=2e-4, micro_batch_tokens=300, device="cuda", **options))
        return [json.loads(line) for line in Path(tmp_path / name / "log.jsonl").read_text().splitlines()]

    eager = train("eager", compile=False, liger="off")
    counters.clear()
    compiled = train("compiled")  # the default on a GPU, also where Liger is installed
    summary = json.loads((tmp_path / "compiled" / "train_summary.json").read_text())
    assert summary["compiled"] is True and summary["compile_problem"] is None and summary["liger"] is False
    assert len(compiled) == 6
    for before, after in zip(eager, compiled, strict=True):
        for key in ("loss", "preference_loss", "lm_loss"):
            assert after[key] == pytest.approx(before[key], rel=3e-2, abs=1e-3), (after["step"], key)
    assert not counters["graph_break"], dict(counters["graph_break"])  # varlen attention stays in the graph
    assert counters["stats"]["unique_graphs"] <= 4, dict(counters["stats"])


def test_the_packing_probe_passes_varlen_packs_on_the_gpu(tiny_model):  # noqa: F811
    from codeprefs.trainers.packcheck import packing_problem

    model = RewardModel.from_pretrained(tiny_model, attn_implementation=VARLEN).cuda()
    assert packing_problem(model) is None  # bfloat16 noise stays under the probe's tolerances


def test_varlen_sliding_windows_match_transformers_on_the_gpu():
    from tests.test_trainer_architectures import _pairs, _reward_model

    packed_model = _reward_model("mistral", attention=VARLEN, sliding_window=5).cuda()
    padded_model = _reward_model("mistral", attention="eager", sliding_window=5).cuda()
    padded_model.load_state_dict(packed_model.state_dict())
    pairs = _pairs([(6, 9, 4), (3, 12, 10), (2, 3, 2)])
    with torch.no_grad(), torch.autocast("cuda", dtype=torch.bfloat16):
        packed = packed_model(pack_pairs(pairs).to("cuda")).rewards.float()
        padded = padded_model(pad_pairs(pairs, 0).to("cuda")).rewards.float()
    assert torch.allclose(packed, padded, rtol=3e-2, atol=3e-2), (packed, padded)
