"""Training throughput: our reward-model trainer against TRL's RewardTrainer, same model, same pairs.

    python benchmarks/train_throughput.py            # GPU: Qwen3-0.6B shape, pairs up to 4096 tokens
    python benchmarks/train_throughput.py --smoke    # CPU: tiny model, a few steps (checks both sides run)
    python benchmarks/train_throughput.py --ours-variant=--no-compile --ours-variant=--compile   # several, one TRL
    bash benchmarks/device_trainer.sh                # the prepared GPU-machine run (GPU tests + variants)

Both sides train a randomly initialised model from a config (no download) on the same synthetic
pairs: token ids drawn at random, prompt and response lengths log-normal like code pairs (prompt
median 250 tokens, responses median 600, each sequence at most 4096 tokens), the same number of
pairs per optimizer step, AdamW, bf16 with float32 master weights, activation checkpointing, and a
few untimed warm-up steps before the timed ones. Each side runs in its own subprocess.

* ours: ``trainers.train.fit``: padding-free packs (``--micro-batch-tokens`` per forward), varlen
  attention, the paper's loss with the LM term (lambda 0.25) and magnitude term;
* TRL: ``trl.RewardTrainer`` (pre-tokenised ``chosen_ids``/``rejected_ids``), padded micro-batches
  of ``--trl-micro-pairs`` pairs, SDPA attention, Bradley-Terry loss only.

Printed per side: real (non-pad) tokens per second, MFU, and the non-pad fraction of the token
slots computed; then ours/TRL. MFU = model FLOPs per second / the card's dense bf16 peak (989
TFLOP/s for H100 and H200 SXM; ``--peak-tflops`` for others), with model FLOPs per real token =
``6 * N`` (N = parameters outside the embedding) + causal attention ``6 * layers * heads * head_dim
* (L + 1)`` per sequence of length L, averaged over the data; ours adds the LM head on the chosen
response tokens (``6 * vocab * hidden`` each), work TRL does not do. Activation recomputation is
not counted (standard MFU).

Goal (the issue): ours >= 1.5x TRL tokens/s, MFU >= 35%, >= 95% non-pad tokens.

Measured 2026-11-26 on one NVIDIA H200 (141 GB; the device image: torch 2.11.0+cu130,
transformers 5.17.0, trl 1.16.0, accelerate 1.15.0, liger-kernel 0.8.5), 10 timed steps of 32
pairs, all on one warm machine (``bash benchmarks/device_trainer.sh``, then the last row)::

    ours (flags)                                                      tokens/s    MFU  non-pad  x TRL
    --no-compile (eager, checkpointed, 65,536-token packs)              37,349  13.3%   100.0%  3.62
    --compile (checkpointed, 65,536; the trainer's GPU default)         72,715  25.9%   100.0%  7.05
    --liger --no-gradient-checkpointing --micro-batch-tokens 16384      50,955  18.1%   100.0%  4.94
    --compile --no-gradient-checkpointing --micro-batch-tokens 16384    80,796  28.8%   100.0%  7.83
    --compile --no-gradient-checkpointing --micro-batch-tokens 32768    89,240  31.8%   100.0%  8.65
    --compile --no-gradient-checkpointing --micro-batch-tokens 131072  106,853  38.0%   100.0% 10.36
    trl                                                                 10,318   3.3%    39.7%  1

GFLOP/token: ours 3.52, TRL 3.18 (no LM term). The last row (a rerun: 106,460, 37.9%) is one pack
per step (a step holds about 70k tokens; 262,144-token packs gave the same 107,189) and peaked at
112 GiB of GPU memory, so it suits a 0.6B model on a 141 GB card, not an 80 GB H100. The goals
(>= 1.5x TRL, >= 95% non-pad, MFU >= 35%) are all met there; with checkpointing the best is 25.9%.
What is left: the profiler (``benchmarks/profile_trainer.py``, 16k packs) saw the device busy 41%
of a step's wall time with profiler overhead included, matrix products 41% of the kernel time and
flash attention's backward 21%; smaller packs pay more host time per token. ``--smoke`` runs both
sides on a CPU.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

PAD_ID = 0
PEAK_TFLOPS = {"H100": 989.0, "H200": 989.0, "A100": 312.0}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--smoke", action="store_true", help="tiny model on CPU, a few steps")
    parser.add_argument("--side", choices=["both", "ours", "trl"], default="both")
    parser.add_argument("--result", default=None, help="(internal) where a side writes its JSON result")
    parser.add_argument("--pairs-per-step", type=int, default=32)
    parser.add_argument("--warmup-steps", type=int, default=3)
    parser.add_argument("--steps", type=int, default=10, help="timed optimizer steps")
    parser.add_argument("--max-length", type=int, default=4096)
    parser.add_argument("--micro-batch-tokens", type=int, default=65536)
    parser.add_argument("--trl-micro-pairs", type=int, default=8)
    parser.add_argument("--attention", default="auto", help="ours: auto, varlen, segments, flash_attention_2, sdpa")
    parser.add_argument("--gradient-checkpointing", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--compile", action=argparse.BooleanOptionalAction, default=None,
                        help="ours: torch.compile each block and the LM softmax (default: the trainer's, on a GPU)")
    parser.add_argument("--liger", action="store_true", help="ours: Liger's RMSNorm/RoPE/SwiGLU and fused LM loss")
    parser.add_argument("--ours-variant", action="append", default=None, metavar="FLAGS",
                        help="run our side once per variant with these extra flags, e.g. "
                             "--ours-variant=--compile (repeatable; default: one run as configured)")
    parser.add_argument("--trl-reserve", type=int, default=150, help="seconds of the budget kept for TRL")
    parser.add_argument("--summary", default=None, help="also write every side's result to this JSON file")
    parser.add_argument("--lm-coef", type=float, default=0.25)
    parser.add_argument("--peak-tflops", type=float, default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--side-timeout", type=int, default=200, help="seconds one side may run")
    parser.add_argument("--time-budget", type=int, default=340, help="seconds the whole benchmark may run")
    args = parser.parse_args(argv)
    if args.smoke:
        args.pairs_per_step, args.warmup_steps, args.steps = 8, 1, 2
        args.max_length, args.micro_batch_tokens, args.trl_micro_pairs = 256, 2048, 2
    return args


# -- the shared setup ------------------------------------------------------------------------------

def model_config(args: argparse.Namespace):
    from codeprefs.trainers.tiny import qwen3_config

    return qwen3_config("tiny" if args.smoke else "0.6b", pad_token_id=PAD_ID)


def synthetic_pairs(args: argparse.Namespace, vocab_size: int):
    """Pairs with log-normal code-like lengths, every sequence within ``max_length``."""
    import numpy as np

    from codeprefs.core.encoding import EncodedPair

    rng = np.random.default_rng(args.seed)
    count = args.pairs_per_step * (args.warmup_steps + args.steps)
    scale = args.max_length / 4096
    pairs = []
    for row in range(count):
        prompt = int(np.clip(rng.lognormal(math.log(250 * scale), 0.7), 8, args.max_length // 2))
        room = args.max_length - prompt
        chosen, rejected = (int(np.clip(rng.lognormal(math.log(600 * scale), 0.8), 4, room)) for _ in range(2))
        ids = [rng.integers(1, vocab_size, size=n, dtype=np.int32) for n in (prompt, chosen, rejected)]
        pairs.append(EncodedPair(row, *ids))
    return pairs


def flops_per_token(config, pairs, with_lm: bool) -> float:
    """Model FLOPs per real token over ``pairs`` (see the module doc)."""
    hidden, layers = config.hidden_size, config.num_hidden_layers
    heads, head_dim = config.num_attention_heads, config.head_dim
    kv = config.num_key_value_heads * head_dim
    per_layer = hidden * heads * head_dim * 2 + hidden * kv * 2 + 3 * hidden * config.intermediate_size
    dense = 6 * layers * per_layer
    total_flops = total_tokens = 0.0
    for pair in pairs:
        for length in (pair.chosen_length, pair.rejected_length):
            total_flops += dense * length + 6 * layers * heads * head_dim * length * (length + 1)
            total_tokens += length
        if with_lm:
            total_flops += 6 * config.vocab_size * hidden * len(pair.chosen)
    return total_flops / total_tokens


def peak_flops(args: argparse.Namespace) -> tuple[str, float | None]:
    import torch

    if not torch.cuda.is_available():
        return "cpu", None
    name = torch.cuda.get_device_name()
    if args.peak_tflops:
        return name, args.peak_tflops * 1e12
    for key, value in PEAK_TFLOPS.items():
        if key in name:
            return name, value * 1e12
    return name, None


def summarize(times: list[float], tokens: list[int], slots: list[int], args: argparse.Namespace,
              per_token: float) -> dict:
    timed = slice(args.warmup_steps, None)
    seconds, real, total = sum(times[timed]), sum(tokens[timed]), sum(slots[timed])
    device, peak = peak_flops(args)
    tokens_per_second = real / seconds
    return {"device": device, "steps": len(times[timed]), "seconds": seconds, "tokens": real,
            "tokens_per_second": tokens_per_second, "non_pad_fraction": real / total,
            "flops_per_token": per_token, "mfu": tokens_per_second * per_token / peak if peak else None}


# -- ours --------------------------------------------------------------------------------------------

def setup_ours(args: argparse.Namespace):
    """(distributed context, model config, pairs, attention backend, reward model) for our side."""
    import torch
    from transformers import AutoModelForCausalLM

    from codeprefs.trainers import distributed
    from codeprefs.trainers.attention import choose_attention
    from codeprefs.trainers.model import RewardModel, apply_liger_kernels

    context = distributed.setup("auto")
    config = model_config(args)
    pairs = synthetic_pairs(args, config.vocab_size)
    torch.manual_seed(args.seed)
    attention = choose_attention(args.attention, context.device)
    with torch.device(context.device):
        causal = AutoModelForCausalLM.from_config(config, attn_implementation=attention, dtype=torch.float32)
    model = RewardModel.from_causal_lm(causal, pad_token_id=PAD_ID)
    if args.liger and not apply_liger_kernels(model):
        raise SystemExit("--liger: liger_kernel does not import here")
    return context, config, pairs, attention, model


def ours_config(args: argparse.Namespace, output: str, attention: str):
    from codeprefs.trainers.train import TrainConfig

    return TrainConfig(data=[], model="synthetic", output=output, global_batch=args.pairs_per_step,
                       max_steps=args.warmup_steps + args.steps, micro_batch_tokens=args.micro_batch_tokens,
                       max_length=args.max_length, lm_coef=args.lm_coef,
                       gradient_checkpointing=args.gradient_checkpointing, attention=attention,
                       log_every=10**9, seed=args.seed, liger="on" if args.liger else "off", compile=args.compile)


def run_ours(args: argparse.Namespace) -> dict:
    from codeprefs.trainers import distributed
    from codeprefs.trainers.train import fit

    context, config, pairs, attention, model = setup_ours(args)
    times, tokens, slots = [], [], []

    def record(metrics: dict) -> None:
        print(f"[ours] step {metrics['step']}: {metrics['step_seconds']:.2f} s, {metrics['tokens']} tokens, "
              f"loss {metrics['loss']:.4f}", file=sys.stderr, flush=True)
        times.append(metrics["step_seconds"])
        tokens.append(metrics["tokens"])
        slots.append(round(metrics["tokens"] / metrics["non_pad_fraction"]))

    with tempfile.TemporaryDirectory() as output:
        fit(ours_config(args, output, attention), model, pairs, context, on_step=record, save=False)
    distributed.teardown(context)
    result = summarize(times, tokens, slots, args, flops_per_token(config, pairs, args.lm_coef > 0))
    result.update(side="ours", attention=attention, versions=_versions())
    return result


# -- TRL ---------------------------------------------------------------------------------------------

def run_trl(args: argparse.Namespace) -> dict:
    import torch
    from datasets import Dataset
    from transformers import AutoModelForSequenceClassification, TrainerCallback
    from trl import RewardConfig, RewardTrainer

    from codeprefs.trainers.tiny import tiny_tokenizer

    cuda = torch.cuda.is_available()
    config = model_config(args)
    config.num_labels = 1
    pairs = synthetic_pairs(args, config.vocab_size)
    dataset = Dataset.from_dict({
        "chosen_ids": [pair.prompt.tolist() + pair.chosen.tolist() for pair in pairs],
        "rejected_ids": [pair.prompt.tolist() + pair.rejected.tolist() for pair in pairs],
    })
    tokenizer = tiny_tokenizer()  # only its pad token (id 0) is used: the data is already token ids
    assert tokenizer.pad_token_id == PAD_ID
    torch.manual_seed(args.seed)
    model = AutoModelForSequenceClassification.from_config(config, attn_implementation="sdpa", dtype=torch.float32)
    counts = {"tokens": 0, "slots": 0}
    times, tokens, slots = [], [], []

    class CountingRewardTrainer(RewardTrainer):
        def compute_loss(self, model, inputs, *rest, **kwargs):
            counts["tokens"] += int(inputs["attention_mask"].sum())
            counts["slots"] += int(inputs["attention_mask"].numel())
            return super().compute_loss(model, inputs, *rest, **kwargs)

    class StepTimer(TrainerCallback):
        """Wall time from one optimizer step's end to the next: data loading and collation included."""

        def _now(self) -> float:
            if cuda:
                torch.cuda.synchronize()
            return time.perf_counter()

        def on_train_begin(self, *unused, **kwargs):
            self.last, self.tokens, self.slots = self._now(), counts["tokens"], counts["slots"]

        def on_step_end(self, *unused, **kwargs):
            now = self._now()
            times.append(now - self.last)
            tokens.append(counts["tokens"] - self.tokens)
            slots.append(counts["slots"] - self.slots)
            print(f"[trl] step {len(times)}: {times[-1]:.2f} s, {tokens[-1]} tokens of {slots[-1]} slots",
                  file=sys.stderr, flush=True)
            self.last, self.tokens, self.slots = now, counts["tokens"], counts["slots"]

    with tempfile.TemporaryDirectory() as output:
        trl_args = RewardConfig(
            output_dir=output, per_device_train_batch_size=args.trl_micro_pairs,
            gradient_accumulation_steps=args.pairs_per_step // args.trl_micro_pairs,
            max_steps=args.warmup_steps + args.steps, learning_rate=1e-5, lr_scheduler_type="cosine",
            warmup_steps=1, weight_decay=0.1, adam_beta1=0.9, adam_beta2=0.95, adam_epsilon=1e-8, max_grad_norm=1.5,
            bf16=cuda, use_cpu=not cuda, gradient_checkpointing=args.gradient_checkpointing,
            optim="adamw_torch_fused" if cuda else "adamw_torch", max_length=args.max_length,
            logging_steps=10**6, save_strategy="no", report_to=[], seed=args.seed, dataloader_num_workers=0,
            disable_dropout=True)
        trainer = CountingRewardTrainer(model=model, args=trl_args, train_dataset=dataset,
                                        processing_class=tokenizer, callbacks=[StepTimer()])
        trainer.train()
    result = summarize(times, tokens, slots, args, flops_per_token(config, pairs, False))
    result.update(side="trl", attention="sdpa", versions=_versions())
    return result


def _versions() -> dict:
    import importlib.metadata

    found = {}
    for name in ("torch", "transformers", "trl", "accelerate", "flash-attn", "liger-kernel"):
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            found[name] = importlib.metadata.version(name)
    return found


# -- the driver --------------------------------------------------------------------------------------

def run_side(side: str, args: argparse.Namespace, argv: list[str], deadline: float) -> dict | None:
    """Run one side in a subprocess; None (and a message) if it failed or ran out of time."""
    timeout = min(args.side_timeout, deadline - time.perf_counter())
    if timeout < 20:
        print(f"no time left for the {side} side", file=sys.stderr)
        return None
    with tempfile.TemporaryDirectory() as folder:
        result_file = Path(folder) / f"{side}.json"
        command = [sys.executable, str(Path(__file__).resolve()), *argv, "--side", side, "--result", str(result_file)]
        env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
        try:
            done = subprocess.run(command, env=env, cwd=ROOT, timeout=timeout)
        except subprocess.TimeoutExpired:
            print(f"the {side} side ran past {timeout:.0f} s and was stopped", file=sys.stderr)
            return None
        if done.returncode != 0 or not result_file.exists():
            print(f"the {side} side failed (exit {done.returncode})", file=sys.stderr)
            return None
        return json.loads(result_file.read_text())


def report(results: list[dict]) -> None:
    print(f"\ndevice: {results[0]['device']}; versions: {results[0]['versions']}")
    width = max(len(r["label"]) for r in results)
    print(f"{'side':<{width}} {'tokens/s':>12} {'MFU':>7} {'non-pad':>8} {'GFLOP/token':>12} {'timed steps':>12}")
    for r in results:
        mfu = f"{100 * r['mfu']:.1f}%" if r["mfu"] is not None else "n/a"
        print(f"{r['label']:<{width}} {r['tokens_per_second']:>12,.0f} {mfu:>7} {100 * r['non_pad_fraction']:>7.1f}% "
              f"{r['flops_per_token'] / 1e9:>12.2f} {r['steps']:>12}")
    trl = next((r for r in results if r["side"] == "trl"), None)
    for ours in (r for r in results if r["side"] == "ours"):
        if trl is not None:
            print(f"{ours['label']} / TRL tokens/s: {ours['tokens_per_second'] / trl['tokens_per_second']:.2f}x "
                  f"(goal >= 1.5x); attention: {ours['attention']}")


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    if args.side != "both":
        result = run_ours(args) if args.side == "ours" else run_trl(args)
        Path(args.result).write_text(json.dumps(result))
        return 0
    started = time.perf_counter()
    ours_deadline = started + args.time_budget - args.trl_reserve  # TRL, the slower side, runs last
    results = []
    for variant in args.ours_variant or [""]:
        extra = shlex.split(variant)
        ours = run_side("ours", args, argv + extra, ours_deadline)
        if ours is None and args.attention == "auto" and not args.smoke and not extra:
            print("retrying ours with per-sequence SDPA attention (--attention segments)", file=sys.stderr)
            extra = ["--attention", "segments"]
            ours = run_side("ours", args, argv + extra, ours_deadline)
        if ours is not None:
            results.append({**ours, "label": " ".join(["ours", *extra])})
    trl = run_side("trl", args, argv, started + args.time_budget)
    if trl is not None:
        results.append({**trl, "label": "trl"})
    if results:
        report(results)
    if args.summary:
        Path(args.summary).write_text(json.dumps(results, indent=2) + "\n")
    print(f"total wall time: {time.perf_counter() - started:.0f} s")
    wanted = len(args.ours_variant or [""]) + 1
    return 0 if len(results) == wanted else 1


if __name__ == "__main__":
    sys.exit(main())
