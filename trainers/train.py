"""Train a scalar reward model on preference pairs.

    python -m trainers.train --data out/quickstart --model Qwen/Qwen3-0.6B --output ckpt/
    torchrun --nproc-per-node 8 -m trainers.train --data out/big --model ... --output ckpt/
    python -m trainers.train --data /shared/out/big --model ... --output /shared/ckpt --ray-workers 8

:func:`run` loads the tokenizer, the model and the pairs; :func:`fit` is the whole training loop.
One optimizer step takes the next ``global_batch`` pairs of a seeded per-epoch shuffle, deals
them to the ranks, packs each rank's share into padding-free micro-batches of at most
``micro_batch_tokens`` tokens, and accumulates the gradients of
``sum(pair losses) / pairs in the step`` before one AdamW update (gradient clipping, cosine
schedule with warm-up down to ``final_lr``). Every ``save_every`` steps a checkpoint holds what
an exact resume needs; the end of the run writes the reward model to ``--output`` (loadable with
``AutoModelForSequenceClassification``), ``train_summary.json`` and ``log.jsonl``, and evaluates
``--eval-data`` if given (also every ``--eval-every`` steps during training, into ``log.jsonl``).
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import math
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import pyarrow as pa
import torch

from codeprefs.core.locations import local_path_argument
from codeprefs.core.storage import location_argument
from codeprefs.trainers import checkpoint, distributed
from codeprefs.trainers.attention import choose_attention
from codeprefs.trainers.compilecheck import compile_or_fall_back
from codeprefs.trainers.config import TrainConfig, check_resume
from codeprefs.core.encoding import DataReport, EncodedPair, PairEncoder
from codeprefs.trainers.data import DataError, assign_system_prompts, load_pairs, write_report
from codeprefs.trainers.evaluate import EvalSet, evaluate_set, load_eval_set, score_pairs
from codeprefs.trainers.loss import LossTerms, reward_loss
from codeprefs.trainers.model import (
    RewardModel,
    apply_liger_kernels,
    disable_dropout,
    use_liger,
    wrap_blocks,
)
from codeprefs.trainers.packcheck import fall_back_to_padding
from codeprefs.trainers.packing import Batch, batch_cost, plan_step
from codeprefs.trainers.raytrain import run_on_ray
from codeprefs.trainers.tokenizer import load_tokenizer


@dataclass
class FitResult:
    """What :func:`fit` did: the steps, how the model ran, and every step's metrics."""

    steps: int
    left_out_per_epoch: int = 0  # pairs of a last partial batch too small to deal to every rank
    packed: bool = True  # padding-free packs (else padded batches)
    packing_problem: str | None = None  # why a causal model could not take packs
    compiled: bool = False  # the blocks ran through torch.compile
    compile_problem: str | None = None  # why compiling by default was given up
    attention: str | None = None  # the attention implementation the model trained with
    history: list[dict[str, Any]] = field(default_factory=list)


# -- schedule and data order --------------------------------------------------------------------

def lr_at(step: int, total_steps: int, cfg: TrainConfig) -> float:
    """Linear warm-up over ``ceil(warmup * total)`` steps, then cosine from ``lr`` to ``final_lr``."""
    warmup_steps = math.ceil(cfg.warmup * total_steps)
    if step < warmup_steps:
        return cfg.lr * (step + 1) / warmup_steps
    progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps - 1))
    return cfg.final_lr + (cfg.lr - cfg.final_lr) * 0.5 * (1.0 + math.cos(math.pi * progress))


class StepOrder:
    """Which pairs each optimizer step trains on: a seeded shuffle per epoch, cut into global batches."""

    def __init__(self, num_pairs: int, global_batch: int, seed: int, world_size: int) -> None:
        self.num_pairs, self.global_batch, self.seed = num_pairs, global_batch, seed
        full, rest = divmod(num_pairs, global_batch)
        # A last partial batch smaller than the number of ranks cannot be dealt; it is left out.
        self.steps_per_epoch = full + (1 if rest >= world_size else 0)
        self.left_out_per_epoch = rest if rest < world_size else 0
        if self.steps_per_epoch == 0:
            raise DataError(f"{num_pairs} pair(s) cannot feed {world_size} rank(s)")
        self._epoch, self._order = -1, torch.empty(0, dtype=torch.long)

    def indices(self, step: int) -> list[int]:
        epoch, k = divmod(step, self.steps_per_epoch)
        if epoch != self._epoch:
            generator = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
            self._epoch, self._order = epoch, torch.randperm(self.num_pairs, generator=generator)
        return self._order[k * self.global_batch:(k + 1) * self.global_batch].tolist()


# -- building blocks ------------------------------------------------------------------------------

def prepare_training_pairs(cfg: TrainConfig, tokenizer: Any) -> tuple[list[EncodedPair], DataReport]:
    """Load every ``--data`` source, draw system prompts, tokenize; skipped rows are counted."""
    tables = [load_pairs(source, cfg.split) for source in cfg.data]
    table = pa.concat_tables(tables) if len(tables) > 1 else tables[0]
    table, kinds = assign_system_prompts(table, cfg.seed)
    encoder = PairEncoder(tokenizer, cfg.max_length, cfg.template)
    pairs, report = encoder.encode(table, drop_identical=True)
    report.system_prompts = kinds
    if not pairs:
        raise DataError(f"{', '.join(cfg.data)}: no usable pair (skipped: {dict(report.skipped)})")
    return pairs, report


def build_optimizer(model: torch.nn.Module, cfg: TrainConfig, device: torch.device) -> torch.optim.AdamW:
    """AdamW; matrices (>= 2 dims) decay, norms and biases do not; fused kernels on CUDA."""
    params = [p for p in model.parameters() if p.requires_grad]
    groups = [{"params": [p for p in params if p.ndim >= 2], "weight_decay": cfg.weight_decay},
              {"params": [p for p in params if p.ndim < 2], "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=cfg.betas, eps=cfg.eps,
                             fused=True if device.type == "cuda" else None)


def _log(line: dict[str, Any], path: Path | None) -> None:
    text = json.dumps(line)
    sys.stdout.write(text + "\n")  # not print(): Ray Train workers patch print and would show each line twice
    sys.stdout.flush()
    if path is not None:
        with open(path, "a") as handle:
            handle.write(text + "\n")


# -- the loop ---------------------------------------------------------------------------------------

def fit(cfg: TrainConfig, model: RewardModel, pairs: Sequence[EncodedPair], context: distributed.Context,
        tokenizer: Any = None, resume_state: dict[str, Any] | None = None,
        on_step: Callable[[dict[str, Any]], None] | None = None, save: bool = True,
        eval_set: EvalSet | None = None) -> FitResult:
    """Train ``model`` on ``pairs``; returns the per-step metrics (same on every rank).

    ``on_step`` sees each step's metrics; ``save=False`` skips writing the final model. With
    ``eval_set`` and ``cfg.eval_every``, every ``eval_every``-th step also scores it (all ranks
    together) and its metrics get ``eval``: accuracy, pairs and mean score difference.
    """
    trainee = prepare_model(cfg, model, context)
    model = trainee.model
    optimizer = build_optimizer(model, cfg, context.device)
    order = StepOrder(len(pairs), cfg.global_batch, cfg.seed, context.world_size)
    total_steps = count_steps(order, cfg)
    scheduler = build_scheduler(optimizer, total_steps, cfg)
    start = resume(resume_state, model, optimizer, scheduler, context) if resume_state is not None else 0
    sizes = [batch_cost(pair, model.packs) for pair in pairs]
    log_path = open_log(cfg, context, start)
    result = FitResult(steps=total_steps, left_out_per_epoch=order.left_out_per_epoch, packed=model.packs,
                       packing_problem=trainee.packing_problem, compiled=trainee.compiled,
                       compile_problem=trainee.compile_problem,
                       attention=model.transformer().config._attn_implementation)

    for step in range(start, total_steps):
        started = time.perf_counter()
        indices = order.indices(step)
        my_micro_batches = plan_step(indices, [sizes[i] for i in indices], context.world_size,
                                     cfg.micro_batch_tokens)[context.rank]
        stats = optimisation_step(cfg, trainee, pairs, my_micro_batches, len(indices), optimizer, scheduler, context)
        elapsed = time.perf_counter() - started
        metrics = {"step": step + 1, **stats, "step_seconds": elapsed, "tokens_per_second": stats["tokens"] / elapsed}
        if eval_set is not None and cfg.eval_every and (step + 1) % cfg.eval_every == 0:
            metrics["eval"] = score_while_training(cfg, trainee, eval_set, context)
        result.history.append(metrics)
        if on_step is not None:
            on_step(metrics)
        if context.is_main and (step + 1) % cfg.log_every == 0:
            _log(metrics, log_path)
        if cfg.save_every and (step + 1) % cfg.save_every == 0 and step + 1 < total_steps:
            save_checkpoint(cfg, model, optimizer, scheduler, step + 1, context, tokenizer)

    if save:
        save_model(model, Path(cfg.output), context, tokenizer)
    return result


@dataclass
class Trainee:
    """A reward model made ready to train by :func:`prepare_model`, and what that decided."""

    model: RewardModel  # on the device, blocks wrapped, sharded over the ranks
    autocast: contextlib.AbstractContextManager[Any]  # bf16 compute on a lone GPU (FSDP casts by itself)
    with_lm: bool  # the LM term is trained (a causal model and lm_coef > 0)
    packing_problem: str | None  # why the model takes padded batches instead of packs
    compiled: bool  # the blocks run through torch.compile
    compile_problem: str | None  # why compiling by default was given up


def prepare_model(cfg: TrainConfig, model: RewardModel, context: distributed.Context) -> Trainee:
    """Move ``model`` to the device in training mode, pick packs or padding, wrap its blocks
    (checkpointed, compiled), shard it over the ranks and check that the compiled blocks run."""
    device = context.device
    with_lm = cfg.lm_coef > 0 and model.kind == "causal"
    if with_lm and not model.has_lm_head:
        raise ValueError("the model has no LM head (untied and not saved); pass --lm-coef 0")
    bf16 = device.type == "cuda"
    compile, liger = choose_kernels(cfg, device)
    use_liger(liger)  # the LM term's fused kernel, if installed
    disable_dropout(model)
    model.to(device)

    def warn(problem: str) -> None:
        if context.is_main:
            _log({"warning": problem}, None)

    packing_problem = fall_back_to_padding(model, warn)
    blocks = distributed.transformer_blocks(model.transformer())
    wrap_blocks(blocks, compile=compile, checkpoint=cfg.gradient_checkpointing)
    model.fuse_lm_loss = compile
    model.train()
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if bf16 and not context.grouped \
        else contextlib.nullcontext()
    model = distributed.shard(model, blocks, context, bf16)
    compile_problem = None
    if compile:  # after sharding: FSDP's bf16 compute is what the compiled blocks get in training
        compile_problem = compile_or_fall_back(model, blocks, checkpoint=cfg.gradient_checkpointing,
                                               autocast=autocast, required=bool(cfg.compile), report=warn)
    return Trainee(model=model, autocast=autocast, with_lm=with_lm, packing_problem=packing_problem,
                   compiled=compile and compile_problem is None, compile_problem=compile_problem)


def choose_kernels(cfg: TrainConfig, device: torch.device) -> tuple[bool, bool]:
    """(compile the blocks, use Liger's kernels) for a run of ``cfg`` on ``device``.

    Both fuse the same small kernels (RMSNorm, RoPE, SwiGLU, the LM loss); on an H200 compiled
    blocks train 1.6x faster than Liger's and Liger's Triton functions stop dynamo, so a GPU run
    compiles unless told ``--liger on`` and uses Liger (when installed) only with eager blocks.
    """
    if cfg.compile and cfg.liger == "on":
        raise ValueError("--compile and --liger on exclude each other: torch.compile cannot trace Liger's "
                         "kernels; pick one (--compile alone is the faster)")
    cuda = device.type == "cuda"
    compile = cfg.compile if cfg.compile is not None else (cuda and cfg.liger != "on")
    liger = cfg.liger == "on" or (cfg.liger == "auto" and cuda and not compile)
    return compile, liger


def count_steps(order: StepOrder, cfg: TrainConfig) -> int:
    """The optimizer steps of the run: ``epochs`` passes over the pairs, cut at ``max_steps``."""
    total_steps = order.steps_per_epoch * cfg.epochs
    return total_steps if cfg.max_steps is None else min(total_steps, cfg.max_steps)


def build_scheduler(optimizer: torch.optim.Optimizer, total_steps: int,
                    cfg: TrainConfig) -> torch.optim.lr_scheduler.LambdaLR:
    """The learning rate of :func:`lr_at` at each of the ``total_steps`` steps."""
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_at(s, total_steps, cfg) / cfg.lr)


def resume(state: dict[str, Any], model: RewardModel, optimizer: torch.optim.Optimizer,
           scheduler: torch.optim.lr_scheduler.LRScheduler, context: distributed.Context) -> int:
    """Put the optimizer, the schedule and the random generators back as a checkpoint's ``state``
    saved them; returns the step to continue from (the weights came with the model)."""
    distributed.load_optimizer_state(model, optimizer, state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    rngs = state["rng"]  # one per rank; a run on another number of ranks takes rank 0's
    checkpoint.set_rng_state(rngs[context.rank] if len(rngs) == context.world_size else rngs[0])
    return state["step"]


def open_log(cfg: TrainConfig, context: distributed.Context, start: int) -> Path | None:
    """``log.jsonl`` under ``--output`` (rank 0 writes it; None elsewhere), keeping only the lines
    of the steps up to ``start``: a resumed run logs the steps after its checkpoint once."""
    if not context.is_main:
        return None
    log_path = Path(cfg.output) / "log.jsonl"
    if log_path.exists():
        keep_log_lines_up_to(log_path, start)
    return log_path


def keep_log_lines_up_to(log_path: Path, last_step: int) -> None:
    """Drop the lines of ``log_path`` after step ``last_step``."""
    kept = [line for line in log_path.read_text().splitlines() if json.loads(line)["step"] <= last_step]
    log_path.write_text("".join(line + "\n" for line in kept))


def optimisation_step(cfg: TrainConfig, trainee: Trainee, pairs: Sequence[EncodedPair],
                      micro_batches: Sequence[Sequence[int]], step_pairs: int, optimizer: torch.optim.Optimizer,
                      scheduler: torch.optim.lr_scheduler.LRScheduler,
                      context: distributed.Context) -> dict[str, Any]:
    """One AdamW update from the gradients of this rank's ``micro_batches`` (indices into
    ``pairs``) of a step of ``step_pairs`` pairs over all ranks; returns the step's metrics,
    summed over the ranks by the step's one synchronisation (timings are the caller's)."""
    model, device = trainee.model, context.device
    scale = context.world_size / step_pairs  # FSDP averages over ranks: this makes it a mean over pairs
    sums = torch.zeros(5, device=device, dtype=torch.float64)  # summed on the device: no sync per micro-batch
    pairs_seen = tokens_seen = slots_seen = 0
    for micro in micro_batches:
        batch = model.batch([pairs[i] for i in micro]).to(device)
        terms = accumulate_gradients(cfg, trainee, batch, scale)
        sums += torch.stack([terms.total.detach(), terms.preference, terms.lm, terms.magnitude,
                             terms.correct]).double()
        pairs_seen, tokens_seen, slots_seen = (pairs_seen + terms.pairs, tokens_seen + batch.num_tokens,
                                               slots_seen + batch.num_slots)
    grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
    grad_norm = grad_norm.full_tensor() if hasattr(grad_norm, "full_tensor") else grad_norm
    lr = scheduler.get_last_lr()[0]
    optimizer.step()
    scheduler.step()
    optimizer.zero_grad(set_to_none=True)
    counts = torch.tensor([pairs_seen, tokens_seen, slots_seen], dtype=torch.float64).to(device)
    total, preference, lm, magnitude, correct, count, tokens, slots = \
        distributed.all_reduce_sum(torch.cat([sums, counts]), context).tolist()  # the step's one sync
    return {"lr": lr, "loss": total / count, "preference_loss": preference / count, "lm_loss": lm / count,
            "magnitude": magnitude / count, "accuracy": correct / count, "grad_norm": float(grad_norm),
            "pairs": int(count), "tokens": int(tokens), "non_pad_fraction": tokens / slots}


def accumulate_gradients(cfg: TrainConfig, trainee: Trainee, batch: Batch, scale: float) -> LossTerms:
    """Forward one micro-batch and add the gradients of ``scale`` times its summed loss."""
    with trainee.autocast:
        output = trainee.model(batch, with_lm=trainee.with_lm)
        terms = reward_loss(output.rewards, output.lm_weighted_sum, cfg.lm_coef, cfg.magnitude_coef)
    (terms.total * scale).backward()
    return terms


def score_while_training(cfg: TrainConfig, trainee: Trainee, eval_set: EvalSet,
                         context: distributed.Context) -> dict[str, Any]:
    """Accuracy, pairs and mean score difference of ``eval_set`` under the model in training
    (with several ranks every rank takes part: the model is sharded over them)."""
    with trainee.autocast:
        scores = score_pairs(trainee.model, eval_set.pairs, cfg.micro_batch_tokens, context.device, context)
    overall = eval_set.results(*scores)[1]["overall"]
    return {key: overall[key] for key in ("accuracy", "total_examples", "mean_score_difference")}


def save_checkpoint(cfg: TrainConfig, model: RewardModel, optimizer: torch.optim.Optimizer,
                    scheduler: Any, step: int, context: distributed.Context, tokenizer: Any = None) -> None:
    """A resumable checkpoint after ``step`` optimizer steps (collective: every rank calls it)."""
    weights = distributed.full_state_dict(model)
    optimizer_state = distributed.full_optimizer_state(model, optimizer)
    rngs = distributed.gather_objects(checkpoint.rng_state(), context)
    if context.is_main:
        state = {"step": step, "optimizer": optimizer_state, "scheduler": scheduler.state_dict(), "rng": rngs,
                 "config": asdict(cfg), "world_size": context.world_size}

        def write_model(folder: Path) -> None:
            model.save_pretrained(folder, state_dict=weights, tokenizer=tokenizer)

        checkpoint.write_checkpoint(checkpoint.checkpoint_dir(cfg.output, step), write_model, state,
                                    keep=cfg.keep_checkpoints)
    distributed.barrier(context)


def save_model(model: RewardModel, target: Path, context: distributed.Context, tokenizer: Any = None) -> None:
    """Gather the full weights and write the reward model to ``target`` (rank 0)."""
    state = distributed.full_state_dict(model)
    if context.is_main:
        model.save_pretrained(target, state_dict=state, tokenizer=tokenizer)
    distributed.barrier(context)


# -- the run -----------------------------------------------------------------------------------------

def run(cfg: TrainConfig) -> dict[str, Any]:
    """Load everything, train, save, evaluate; returns the summary written to ``train_summary.json``."""
    if cfg.eval_every < 0 or (cfg.eval_every and not cfg.eval_data):
        raise ValueError("--eval-every takes a number of steps >= 0 and needs --eval-data")
    if cfg.log_every < 1:
        raise ValueError(f"--log-every takes a number of steps >= 1, got {cfg.log_every}")
    context = distributed.setup(cfg.device)
    try:
        torch.manual_seed(cfg.seed)
        output = Path(cfg.output)
        output.mkdir(parents=True, exist_ok=True)
        attention = choose_attention(cfg.attention, context.device)
        liger = choose_kernels(cfg, context.device)[1]  # (a contradiction fails here, before any loading)
        source: str | Path = cfg.model
        resume_state = None
        if cfg.resume:
            source = checkpoint.resolve_resume(cfg.resume, cfg.output)
            resume_state = checkpoint.read_state(source)
            check_resume(cfg, resume_state["config"])
        tokenizer = load_tokenizer(source, cfg.chat_template, cfg.pad_token)
        pairs, report = prepare_training_pairs(cfg, tokenizer)
        eval_set = None
        if cfg.eval_data:  # read before training: bad evaluation data fails now, not after the last step
            # (and read once: the final evaluation of the saved model scores this set too)
            eval_set = load_eval_set(cfg.eval_data, tokenizer, split=cfg.eval_split, prompts=cfg.eval_prompts,
                                     max_length=cfg.max_length, template=cfg.template)
        if context.is_main:
            _log({"data": report.as_dict()}, None)
            write_report(report, output / "data_report.json")
        model = RewardModel.from_pretrained(source, backbone=cfg.backbone, attn_implementation=attention,
                                            pad_token_id=tokenizer.pad_token_id)
        liger = liger and context.device.type == "cuda" and apply_liger_kernels(model)
        started = time.perf_counter()
        result = fit(cfg, model, pairs, context, tokenizer=tokenizer, resume_state=resume_state,
                     eval_set=eval_set if cfg.eval_every else None)
        del model, pairs  # free the training copy before the evaluation loads the saved one
        gc.collect()
        if context.device.type == "cuda":
            torch.cuda.empty_cache()
        summary = {"config": asdict(cfg), "data": report.as_dict(), "attention": result.attention, "liger": bool(liger),
                   "world_size": context.world_size, "steps": result.steps,
                   "left_out_per_epoch": result.left_out_per_epoch,
                   "batches": "packed" if result.packed else "padded", "packing_problem": result.packing_problem,
                   "compiled": result.compiled, "compile_problem": result.compile_problem,
                   "resumed_from_step": resume_state["step"] if resume_state else 0,
                   "seconds": time.perf_counter() - started,
                   "final": result.history[-1] if result.history else None}
        if cfg.eval_data and context.is_main:
            summary["eval"] = evaluate_set(output, eval_set, output / "eval", pad_token_id=tokenizer.pad_token_id,
                                           micro_batch_tokens=cfg.micro_batch_tokens,
                                           device=str(context.device))["overall"]
        if context.is_main:
            (output / "train_summary.json").write_text(json.dumps(summary, indent=2, default=str) + "\n")
        return summary
    finally:
        distributed.teardown(context)


# -- command line --------------------------------------------------------------------------------------

@dataclass(frozen=True)
class RayLaunch:
    """Where ``main`` runs the loop: here / under torchrun (``workers`` None) or as a Ray Train job."""

    workers: int | None = None
    address: str | None = None
    use_gpu: bool | None = None


# Help for each option; the defaults are added by the formatter ("(default: ...)").
_OPTIONAL_TEXT_HELP = {
    "split": "split to read from a saved dataset or a datasets name (default there: train)",
    "eval_data": "pairs scored after training (and every --eval-every steps): same forms as --data",
    "eval_split": "split of --eval-data (as --split)",
    "chat_template": "a Jinja file that replaces the tokenizer's chat template",
    "pad_token": "pad token for tokenizers without one (default there: the eos token)",
    "resume": "continue from a checkpoint folder, or 'latest' for the newest under --output",
}
_INT_HELP = {
    "max_length": "tokens per sequence (system + prompt + response); a longer response is cut, a prompt alone "
                  "too long is skipped and counted",
    "epochs": "passes over the training pairs",
    "global_batch": "pairs per optimizer step, over all ranks",
    "micro_batch_tokens": "tokens per packed forward pass on one rank (bounds activation memory)",
    "seed": "seed of the shuffle, the system prompts drawn and the reward head",
    "save_every": "optimizer steps between checkpoints (0: only the final model)",
    "keep_checkpoints": "checkpoints kept under --output (older ones are deleted)",
    "log_every": "optimizer steps between lines in log.jsonl",
    "eval_every": "optimizer steps between scorings of --eval-data during training (0: only after it)",
}
_FLOAT_HELP = {
    "lr": "peak learning rate, reached after the warm-up",
    "final_lr": "learning rate at the end of the cosine decay",
    "warmup": "fraction of the optimizer steps spent warming the learning rate up linearly (0 to 1)",
    "weight_decay": "AdamW weight decay",
    "eps": "AdamW epsilon",
    "grad_clip": "clip the global gradient norm to this value",
    "lm_coef": "weight (lambda) of the language-model loss on the chosen response",
    "magnitude_coef": "weight (mu) of the penalty (|r_chosen| + |r_rejected|)^2 on reward magnitudes",
}


def build_parser() -> argparse.ArgumentParser:
    """The command line of ``python -m trainers.train`` (every option documented, with its default)."""
    parser = argparse.ArgumentParser(prog="python -m trainers.train", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    defaults = {f.name: f.default for f in fields(TrainConfig)}
    parser.add_argument("--data", nargs="+", required=True, type=location_argument,
                        help="shard folder(s), Parquet/JSONL folder(s) or globs, saved datasets, or dataset names; "
                             "a folder or file may be an object-storage URL (s3://bucket/out)")
    parser.add_argument("--model", required=True, help="HF model id or local folder (a causal LM or an encoder)")
    parser.add_argument("--output", required=True, type=local_path_argument, help="folder for the reward model, logs and checkpoints")
    for name, text in _OPTIONAL_TEXT_HELP.items():
        parser.add_argument(f"--{name.replace('_', '-')}", default=None, help=text)
    parser.add_argument("--eval-prompts", default=defaults["eval_prompts"], choices=["own", "all", "none", "data"],
                        help="system prompts of --eval-data: the row's criterion, all criteria, none, or the data's own")
    parser.add_argument("--backbone", default=defaults["backbone"], choices=["auto", "causal", "encoder"],
                        help="model kind: a causal LM, an encoder, or auto (from the model's config)")
    parser.add_argument("--template", default=defaults["template"], choices=["auto", "chat", "plain"],
                        help="how a pair becomes tokens: the chat template, plain separators, or auto "
                             "(chat when the tokenizer has a template)")
    parser.add_argument("--liger", default=defaults["liger"], choices=["auto", "on", "off"],
                        help="Liger kernels: auto (when installed, on a GPU, blocks not compiled), on or off")
    for name, text in _INT_HELP.items():
        parser.add_argument(f"--{name.replace('_', '-')}", type=int, default=defaults[name], help=text)
    parser.add_argument("--max-steps", type=int, default=None,
                        help="stop after this many optimizer steps (default: the steps of --epochs)")
    for name, text in _FLOAT_HELP.items():
        parser.add_argument(f"--{name.replace('_', '-')}", type=float, default=defaults[name], help=text)
    parser.add_argument("--betas", type=float, nargs=2, default=list(defaults["betas"]),
                        metavar=("BETA1", "BETA2"), help="AdamW betas")
    parser.add_argument("--device", default=defaults["device"],
                        help="torch device: auto (cuda when available, else cpu), cpu, cuda or cuda:N")
    parser.add_argument("--attention", default=defaults["attention"],
                        help="auto, varlen, flash_attention_2, sdpa or eager")
    parser.add_argument("--gradient-checkpointing", action=argparse.BooleanOptionalAction,
                        default=defaults["gradient_checkpointing"],
                        help="recompute each block's activations in the backward pass (less memory, ~30%% "
                             "more compute)")
    parser.add_argument("--compile", action=argparse.BooleanOptionalAction, default=defaults["compile"],
                        help="torch.compile each transformer block: a one-off compile, then faster steps "
                             "(default: on a GPU, unless --liger on)")
    parser.add_argument("--ray-workers", type=int, default=None,
                        help="train as a Ray Train job with this many workers (ranks) instead of in this process")
    parser.add_argument("--ray-address", default=None, help="the Ray cluster (default: RAY_ADDRESS, else local)")
    parser.add_argument("--ray-gpu", action=argparse.BooleanOptionalAction, default=None,
                        help="one GPU per Ray worker (default: when the cluster has GPUs)")
    return parser


def parse_args(argv: Sequence[str] | None = None) -> tuple[TrainConfig, RayLaunch]:
    parser = build_parser()
    args = vars(parser.parse_args(argv))
    launch = RayLaunch(args.pop("ray_workers"), args.pop("ray_address"), args.pop("ray_gpu"))
    args["betas"] = tuple(args["betas"])
    return TrainConfig(**args), launch


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m trainers.train``: returns the exit code (2 for bad input)."""
    cfg, launch = parse_args(argv)
    try:
        if launch.workers is None:
            run(cfg)
        else:
            run_on_ray(run, cfg, launch.workers, use_gpu=launch.use_gpu, address=launch.address)
    except (DataError, OSError, ValueError) as error:  # bad input: say what, no traceback
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
