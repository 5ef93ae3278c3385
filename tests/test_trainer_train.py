"""Training end to end on a tiny random Qwen3: learning, overfitting, checkpoints, resume, CLI."""

from __future__ import annotations

import itertools
import json
import random
import shutil
from pathlib import Path

import pyarrow as pa
import pytest
import torch
from safetensors.torch import load_file

from tests.trainer_fixtures import (  # noqa: F401
    assert_scores_match_the_evaluator,
    make_rows,
    one_torch_thread,
    tiny_model,
    tokenizer,
    write_shards,
)
from codeprefs.trainers import model as model_module
from codeprefs.core.encoding import PairEncoder
from codeprefs.trainers.data import normalize_columns
from codeprefs.trainers.model import RewardModel
from codeprefs.trainers.packing import pack_pairs
from codeprefs.trainers.tokenizer import load_tokenizer
from codeprefs.trainers.train import TrainConfig, choose_kernels, lr_at, main, run

WORDS = ["x", "y", "total", "+", "-", "*", "return", "if", "for", "(", ")", "0", "1", "2", "i", "n", "=", ":", "\n"]


def random_rows(count: int, seed: int) -> list[dict]:
    """Pairs of unrelated random snippets: nothing to generalise, only to memorise."""
    rng = random.Random(seed)
    return [{"id": f"p{index:03d}", "system": "Judge code.",
             "input": "Task " + " ".join(rng.choice(WORDS) for _ in range(6)),
             "chosen": " ".join(rng.choice(WORDS) for _ in range(12)),
             "rejected": " ".join(rng.choice(WORDS) for _ in range(12)),
             "language": "Python", "aspect": "Functional_Correctness", "subset": "memorise"}
            for index in range(count)]


def _history(output: Path) -> list[dict]:
    return [json.loads(line) for line in (output / "log.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def overfit_run(tmp_path_factory, tiny_model):  # noqa: F811
    root = tmp_path_factory.mktemp("overfit")
    data = write_shards(root / "pairs", random_rows(32, seed=5))
    cfg = TrainConfig(data=[str(data)], model=str(tiny_model), output=str(root / "rm"), global_batch=32, epochs=50,
                      lr=4e-3, final_lr=4e-4, warmup=0.0, micro_batch_tokens=8192, eval_data=str(data),
                      eval_prompts="data", eval_every=10, gradient_checkpointing=False)
    summary = run(cfg)
    return summary, root / "rm", data


def test_loss_decreases(overfit_run):
    summary, output, _ = overfit_run
    history = _history(output)
    assert [h["step"] for h in history] == list(range(1, 51))
    losses = [h["loss"] for h in history]
    assert history[0]["preference_loss"] == pytest.approx(0.693147, abs=1e-5)  # zero-initialised head
    assert history[0]["magnitude"] == 0.0
    assert sum(losses[-5:]) / 5 < 0.5 * losses[0]
    assert sum(losses[10:15]) < sum(losses[:5])
    assert history[-1]["preference_loss"] < 0.05
    assert history[-1]["lm_loss"] < history[0]["lm_loss"]  # the LM term trains the backbone too
    assert summary["final"]["step"] == 50


def test_overfits_32_pairs_to_full_accuracy(overfit_run):
    summary, output, _ = overfit_run
    assert summary["eval"]["total_examples"] == 32
    assert summary["eval"]["accuracy"] == 1.0
    assert _history(output)[-1]["accuracy"] == 1.0
    results = json.loads((output / "eval" / "results.json").read_text())
    assert results["overall"]["correct_predictions"] == 32


def test_scoring_during_training_matches_the_evaluation_after_it(overfit_run):
    summary, output, _ = overfit_run
    history = _history(output)
    scored = [h for h in history if "eval" in h]
    assert [h["step"] for h in scored] == [10, 20, 30, 40, 50]
    assert all(h["eval"]["total_examples"] == 32 for h in scored)
    assert scored[-1]["eval"]["accuracy"] == summary["eval"]["accuracy"]  # the saved model, loaded afresh
    assert scored[-1]["eval"]["mean_score_difference"] == pytest.approx(summary["eval"]["mean_score_difference"],
                                                                        abs=2e-4)
    assert scored[-1]["eval"]["mean_score_difference"] > scored[0]["eval"]["mean_score_difference"] > 0


def test_eval_every_needs_evaluation_data(tmp_path, tiny_model, capsys):  # noqa: F811
    code = main(["--data", str(tmp_path), "--model", str(tiny_model), "--output", str(tmp_path / "rm"),
                 "--eval-every", "5"])
    assert code == 2
    assert "--eval-every takes a number of steps >= 0 and needs --eval-data" in capsys.readouterr().err


def test_log_every_zero_is_refused_naming_the_option(tmp_path, tiny_model, capsys):  # noqa: F811
    code = main(["--data", str(tmp_path), "--model", str(tiny_model), "--output", str(tmp_path / "rm"),
                 "--log-every", "0"])
    assert code == 2
    assert "--log-every takes a number of steps >= 1, got 0" in capsys.readouterr().err
    assert not (tmp_path / "rm").exists()


def test_unscorable_evaluation_data_fails_before_training(tmp_path, tiny_model):  # noqa: F811
    from codeprefs.trainers.data import DataError

    data = write_shards(tmp_path / "pairs", make_rows(4))
    rows = make_rows(3, prefix="e")
    rows[1]["chosen"] = ""
    bench = write_shards(tmp_path / "bench", rows)
    with pytest.raises(DataError, match=r"1 pair\(s\) cannot be scored.*e0001"):
        run(TrainConfig(data=[str(data)], model=str(tiny_model), output=str(tmp_path / "rm"), eval_data=str(bench)))
    assert not (tmp_path / "rm" / "log.jsonl").exists()  # not a single step was spent


def test_checkpoint_loads_with_auto_model_and_gives_the_trainers_scores(overfit_run):
    from transformers import AutoModelForSequenceClassification

    _, output, data = overfit_run
    config = json.loads((output / "config.json").read_text())
    saved_tokenizer = load_tokenizer(output)
    assert config["architectures"] == ["Qwen3ForSequenceClassification"]
    assert config["pad_token_id"] == saved_tokenizer.pad_token_id
    assert "_attn_implementation" not in json.dumps(config)
    model = AutoModelForSequenceClassification.from_pretrained(output, num_labels=1).eval()
    assert model.score.weight.abs().sum() > 0 and model.score.bias is None
    assert_scores_match_the_evaluator(model, saved_tokenizer, data, "data", output / "eval" / "scores.parquet")


def test_untied_lm_head_survives_the_round_trip(tmp_path, tokenizer):  # noqa: F811
    from codeprefs.trainers.tiny import save_tiny_causal_lm

    source = save_tiny_causal_lm(tmp_path / "untied", seed=1, tie_word_embeddings=False)
    model = RewardModel.from_pretrained(source)
    assert not model.lm_tied
    torch.nn.init.normal_(model.score.weight)
    model.save_pretrained(tmp_path / "rm", tokenizer=tokenizer)
    assert (tmp_path / "rm" / "lm_head.safetensors").exists()
    assert "lm_head.weight" not in load_file(str(tmp_path / "rm" / "model.safetensors"))
    again = RewardModel.from_pretrained(tmp_path / "rm")
    assert torch.equal(again.lm_head.weight, model.lm_head.weight)
    table = pa.Table.from_pylist(make_rows(3, system="Judge."))
    pairs, _ = PairEncoder(tokenizer, 256).encode(normalize_columns(table, "inline"))
    with torch.no_grad():
        first, second = model(pack_pairs(pairs), with_lm=True), again(pack_pairs(pairs), with_lm=True)
    assert torch.allclose(first.rewards, second.rewards, atol=1e-6)
    assert first.lm_weighted_sum.item() == pytest.approx(second.lm_weighted_sum.item(), rel=1e-6)


def test_resume_gives_the_same_curve(tmp_path, tiny_model):  # noqa: F811
    data = write_shards(tmp_path / "pairs", make_rows(16, system="Judge code."), shards=2)

    def config(output: Path, **extra) -> TrainConfig:
        return TrainConfig(data=[str(data)], model=str(tiny_model), output=str(output), global_batch=4, epochs=2,
                           lr=2e-3, final_lr=2e-4, micro_batch_tokens=512, save_every=3, **extra)

    run(config(tmp_path / "straight"))
    straight = _history(tmp_path / "straight")
    assert len(straight) == 8  # 16 pairs / 4 per step, 2 epochs
    saved = sorted(p.name for p in (tmp_path / "straight" / "checkpoints").iterdir())
    assert saved == ["step-000003", "step-000006"]

    (tmp_path / "resumed" / "checkpoints").mkdir(parents=True)
    shutil.copytree(tmp_path / "straight" / "checkpoints" / "step-000003",
                    tmp_path / "resumed" / "checkpoints" / "step-000003")
    summary = run(config(tmp_path / "resumed", resume="latest"))
    assert summary["resumed_from_step"] == 3
    resumed = _history(tmp_path / "resumed")
    assert [h["step"] for h in resumed] == [4, 5, 6, 7, 8]
    for before, after in zip(straight[3:], resumed, strict=True):
        for key in ("loss", "preference_loss", "lm_loss", "lr", "grad_norm", "tokens", "accuracy"):
            assert after[key] == pytest.approx(before[key], rel=1e-6, abs=1e-9), (after["step"], key)
    final_straight = load_file(str(tmp_path / "straight" / "model.safetensors"))
    final_resumed = load_file(str(tmp_path / "resumed" / "model.safetensors"))
    assert final_straight.keys() == final_resumed.keys()
    for key, value in final_straight.items():
        assert torch.allclose(value, final_resumed[key], atol=1e-6), key

    with pytest.raises(ValueError, match=r"settings changed.*global_batch"):
        run(TrainConfig(data=[str(data)], model=str(tiny_model), output=str(tmp_path / "resumed"), global_batch=8,
                        epochs=2, lr=2e-3, final_lr=2e-4, save_every=3, resume="latest"))


def test_checkpointed_and_compiled_blocks_train_like_plain_ones(tmp_path, tiny_model):  # noqa: F811
    """Recomputing activations and fusing blocks with inductor must not change the numbers."""
    from torch._dynamo.utils import counters

    data = write_shards(tmp_path / "pairs", random_rows(12, seed=3))

    def train(name: str, **options) -> list[dict]:
        run(TrainConfig(data=[str(data)], model=str(tiny_model), output=str(tmp_path / name), global_batch=6,
                        epochs=2, lr=2e-3, final_lr=2e-4, micro_batch_tokens=160, **options))
        return _history(tmp_path / name)

    plain = train("plain", gradient_checkpointing=False)
    checkpointed = train("checkpointed", gradient_checkpointing=True)
    counters.clear()
    compiled = train("compiled", gradient_checkpointing=True, compile=True)
    assert len(plain) == 4 and plain[0]["tokens"] != plain[1]["tokens"]  # packs of several lengths
    compiled_flags = {name: json.loads((tmp_path / name / "train_summary.json").read_text())["compiled"]
                      for name in ("plain", "compiled")}
    assert compiled_flags == {"plain": False, "compiled": True}  # a CPU run compiles only when told to
    for variant in (checkpointed, compiled):
        for before, after in zip(plain, variant, strict=True):
            for key in ("loss", "preference_loss", "lm_loss", "grad_norm"):
                assert after[key] == pytest.approx(before[key], rel=1e-4, abs=1e-6), (after["step"], key)
    assert plain[-1]["loss"] != pytest.approx(plain[0]["loss"], rel=1e-3)  # the weights did move
    # Graphs: the two halves of a block around the eagerly run attention call (plus a variant for
    # the first call), and the LM loss's softmax. Each was compiled once for packs of every
    # length; a recompile per shape would make --compile slower than eager.
    assert 2 <= counters["stats"]["unique_graphs"] <= 6, {k: dict(v) for k, v in counters.items()}


@pytest.mark.parametrize(("device", "compile", "liger", "chosen"), [
    ("cpu", None, "auto", (False, False)),  # CPU: eager blocks, no Liger
    ("cuda", None, "auto", (True, False)),  # GPU: compiled blocks, which beat Liger's kernels
    ("cuda", None, "on", (False, True)),  # Liger asked for: eager blocks (dynamo cannot trace Liger)
    ("cuda", False, "auto", (False, True)),  # eager blocks asked for: Liger's kernels when installed
    ("cpu", True, "off", (True, False)),
])
def test_a_gpu_run_compiles_its_blocks_unless_told_otherwise(device, compile, liger, chosen):
    cfg = TrainConfig(data=[], model="m", output="o", compile=compile, liger=liger)
    assert choose_kernels(cfg, torch.device(device)) == chosen


def test_compile_and_liger_on_together_are_refused(tmp_path, tiny_model, capsys):  # noqa: F811
    data = write_shards(tmp_path / "pairs", random_rows(4, seed=1))
    code = main(["--data", str(data), "--model", str(tiny_model), "--output", str(tmp_path / "rm"),
                 "--compile", "--liger", "on"])
    assert code == 2
    assert "--compile and --liger on exclude each other" in capsys.readouterr().err


def _failing_compiler(graph, example_inputs):
    raise RuntimeError("this compiler has no code generator")


def test_a_compile_that_fails_is_an_error_when_asked_for(tmp_path, tiny_model, monkeypatch, capsys):  # noqa: F811
    monkeypatch.setattr(model_module, "COMPILE_BACKEND", _failing_compiler)
    data = write_shards(tmp_path / "pairs", random_rows(4, seed=1))
    code = main(["--data", str(data), "--model", str(tiny_model), "--output", str(tmp_path / "rm"), "--compile"])
    assert code == 2
    err = capsys.readouterr().err
    assert "torch.compile cannot compile the blocks of Qwen3Model" in err
    assert "this compiler has no code generator); train without --compile" in err
    assert not (tmp_path / "rm" / "model.safetensors").exists()


def test_a_compile_that_fails_by_default_falls_back_to_eager_blocks(tiny_model, tokenizer, monkeypatch):  # noqa: F811
    """What a GPU run does when dynamo or inductor cannot take a model: say why, train eagerly."""
    import contextlib

    from codeprefs.trainers.compilecheck import compile_or_fall_back
    from codeprefs.trainers.distributed import transformer_blocks
    from codeprefs.trainers.model import _checkpointed, wrap_blocks

    monkeypatch.setattr(model_module, "COMPILE_BACKEND", _failing_compiler)
    plain = RewardModel.from_pretrained(tiny_model)
    torch.nn.init.normal_(plain.score.weight, std=0.5)
    model = RewardModel.from_pretrained(tiny_model)
    model.load_state_dict(plain.state_dict())
    blocks = transformer_blocks(model.transformer())
    wrap_blocks(blocks, compile=True, checkpoint=True)
    model.fuse_lm_loss = True
    reports: list[str] = []
    problem = compile_or_fall_back(model, blocks, checkpoint=True, autocast=contextlib.nullcontext(),
                                   required=False, report=reports.append)
    assert problem.startswith("torch.compile cannot compile the blocks of Qwen3Model (BackendCompilerFailed: ")
    assert reports == [f"{problem}; training with eager blocks"]
    assert not model.fuse_lm_loss
    for block in blocks:  # checkpointed as asked, around the class's own forward
        assert block.forward.func is _checkpointed and block.forward.args[0] == type(block).forward.__get__(block)
    assert all(parameter.grad is None for parameter in model.parameters())  # the probe left no gradients
    pairs, _ = PairEncoder(tokenizer, 256).encode(normalize_columns(pa.Table.from_pylist(make_rows(3)), "inline"))
    batch = pack_pairs(pairs)
    assert torch.allclose(model(batch).rewards, plain(batch).rewards, atol=1e-5)


def test_checkpointing_keeps_only_block_inputs_for_backward(tokenizer):  # noqa: F811
    """With checkpointing the forward pass saves far fewer activations for the backward pass."""
    from codeprefs.trainers.distributed import transformer_blocks
    from codeprefs.trainers.model import wrap_blocks
    from codeprefs.trainers.tiny import qwen3_config

    def saved_bytes(checkpoint: bool) -> int:
        from transformers import AutoModelForCausalLM

        torch.manual_seed(0)
        causal = AutoModelForCausalLM.from_config(qwen3_config("tiny", pad_token_id=0))
        model = RewardModel.from_causal_lm(causal, pad_token_id=0)
        wrap_blocks(transformer_blocks(model.transformer()), checkpoint=checkpoint)
        pairs, _ = PairEncoder(tokenizer, 256).encode(normalize_columns(pa.Table.from_pylist(make_rows(4)), "inline"))
        total = []

        def pack(tensor: torch.Tensor) -> torch.Tensor:
            total.append(tensor.numel() * tensor.element_size())
            return tensor

        with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
            output = model(pack_pairs(pairs), with_lm=False)
        output.rewards.sum().backward()
        return sum(total)

    assert saved_bytes(checkpoint=True) < 0.5 * saved_bytes(checkpoint=False)


def test_schedule_warms_up_then_decays_to_the_final_rate():
    cfg = TrainConfig(data=["x"], model="m", output="o", lr=1e-5, final_lr=5e-7, warmup=0.05)
    rates = [lr_at(step, 100, cfg) for step in range(100)]
    assert rates[0] == pytest.approx(2e-6) and rates[4] == pytest.approx(1e-5)  # 5 warm-up steps
    assert rates[-1] == pytest.approx(5e-7)
    assert all(a >= b for a, b in itertools.pairwise(rates[4:]))


def test_cli_reports_bad_data_clearly(tmp_path, tiny_model, capsys):  # noqa: F811
    rows = [{k: v for k, v in row.items() if k != "aspect"} for row in make_rows(4)]
    data = write_shards(tmp_path / "pairs", rows)
    code = main(["--data", str(data), "--model", str(tiny_model), "--output", str(tmp_path / "rm")])
    assert code == 2
    assert "missing column(s) 'aspect'" in capsys.readouterr().err
