"""Data parallelism with FSDP2 (``torch.distributed.fsdp.fully_shard``), launched by torchrun.

* ``torchrun --nproc-per-node N -m trainers.train ...``: one process per GPU (NCCL) or per CPU
  worker (gloo); parameters, gradients and optimizer state are sharded across ranks.
* One GPU without torchrun: a one-process group, so the same FSDP2 wrapping gives bf16 compute
  with float32 master weights (its mixed-precision policy) on a single card too (if NCCL cannot
  start, bf16 autocast over float32 weights instead).
* One CPU process without torchrun: no process group, plain float32 module.

Gradients are averaged over ranks by FSDP; the trainer multiplies each rank's loss by the world
size and divides by the pairs of the whole step, so every layout computes the same update.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import nn


@dataclass(frozen=True)
class Context:
    rank: int
    world_size: int
    local_rank: int
    device: torch.device
    grouped: bool  # a process group exists (FSDP2 wrapping is used)

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def resolve_device(requested: str) -> torch.device:
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(requested)


def setup(requested_device: str = "auto") -> Context:
    """Join the torchrun group if launched by torchrun; see the module doc for the other cases."""
    device = resolve_device(requested_device)
    if "RANK" in os.environ and "WORLD_SIZE" in os.environ:
        rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
        local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        if device.type == "cuda":
            device = torch.device("cuda", local_rank)
            torch.cuda.set_device(device)
        if not dist.is_initialized():
            dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
        return Context(rank, world, local_rank, device, True)
    if device.type == "cuda":
        device = torch.device("cuda", torch.cuda.current_device() if device.index is None else device.index)
        torch.cuda.set_device(device)
        if not dist.is_initialized():
            try:
                dist.init_process_group("nccl", store=dist.HashStore(), rank=0, world_size=1)
            except (RuntimeError, ValueError) as error:  # no NCCL: bf16 autocast without FSDP instead
                warnings.warn(f"no one-process NCCL group ({error}); training with autocast", stacklevel=2)
                return Context(0, 1, device.index, device, False)
        return Context(0, 1, device.index, device, True)
    return Context(0, 1, 0, device, False)


def teardown(context: Context) -> None:
    if context.grouped and dist.is_initialized():
        dist.destroy_process_group()


def shard(model: nn.Module, blocks: list[nn.Module], context: Context, bf16: bool) -> nn.Module:
    """FSDP2-wrap each transformer block, then the whole model (no-op without a process group)."""
    if not context.grouped:
        return model
    from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

    policy = MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32) if bf16 \
        else MixedPrecisionPolicy()
    for block in blocks:
        fully_shard(block, mp_policy=policy)
    fully_shard(model, mp_policy=policy)
    return model


def transformer_blocks(model: nn.Module) -> list[nn.Module]:
    """The repeated blocks of a transformers model: the modules its ``_no_split_modules`` names,
    else (models that name none, e.g. BioGPT, CTRL) the members of its largest ``nn.ModuleList``
    of modules of one class."""
    names = set(getattr(model, "_no_split_modules", None) or [])
    named = [module for module in model.modules() if type(module).__name__ in names]
    if named:
        return named
    stacks = [list(stack) for stack in model.modules() if isinstance(stack, nn.ModuleList) and len(stack) > 0
              and len({type(member) for member in stack}) == 1]
    if not stacks:
        return []
    return max(stacks, key=lambda stack: sum(p.numel() for member in stack for p in member.parameters()))


def all_reduce_sum(tensor: torch.Tensor, context: Context) -> torch.Tensor:
    if context.grouped and context.world_size > 1:
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def all_reduce_max(value: int, context: Context) -> int:
    """The largest ``value`` over the ranks."""
    if not (context.grouped and context.world_size > 1):
        return value
    tensor = torch.tensor([value], dtype=torch.int64, device=context.device)
    dist.all_reduce(tensor, op=dist.ReduceOp.MAX)
    return int(tensor.item())


def barrier(context: Context) -> None:
    if context.grouped and context.world_size > 1:
        dist.barrier()


def gather_objects(value: Any, context: Context) -> list[Any]:
    """Every rank's ``value`` (on every rank)."""
    if not (context.grouped and context.world_size > 1):
        return [value]
    out: list[Any] = [None] * context.world_size
    dist.all_gather_object(out, value)
    return out


def full_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """The unsharded model state dict on CPU (complete on rank 0; may be empty elsewhere)."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    return get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))


def full_optimizer_state(model: nn.Module, optimizer: torch.optim.Optimizer) -> dict:
    """The optimizer state keyed by parameter names, unsharded, on CPU (complete on rank 0)."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_optimizer_state_dict

    return get_optimizer_state_dict(model, optimizer,
                                    options=StateDictOptions(full_state_dict=True, cpu_offload=True))


def load_optimizer_state(model: nn.Module, optimizer: torch.optim.Optimizer, state: dict) -> None:
    """Load a state from :func:`full_optimizer_state` (any world size) into the local shards."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, set_optimizer_state_dict

    set_optimizer_state_dict(model, optimizer, optim_state_dict=state,
                             options=StateDictOptions(full_state_dict=True))
