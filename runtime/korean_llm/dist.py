"""Distributed launch facts: rank, world size, the main process, barriers.

Stages run unchanged under `torchrun` exactly as the Kubeflow training operator launches them
(it injects MASTER_ADDR, MASTER_PORT, WORLD_SIZE, RANK and PET_NNODES / PET_NPROC_PER_NODE /
PET_NODE_RANK for torchrun, which sets RANK, LOCAL_RANK and WORLD_SIZE per process). The Trainer
(through accelerate) creates the process group and shards the data per rank; this module only
answers "who am I" so that one process writes manifests, reports and final weights.
"""

from __future__ import annotations

import os
from typing import Any


def rank() -> int:
    return int(os.environ.get("RANK", "0"))


def local_rank() -> int:
    return int(os.environ.get("LOCAL_RANK", "0"))


def world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def is_main() -> bool:
    return rank() == 0


def _initialized() -> bool:
    import torch.distributed as torch_dist

    return torch_dist.is_available() and torch_dist.is_initialized()


def barrier() -> None:
    """Wait for every rank (no-op in a single process or before the process group exists)."""
    if world_size() > 1 and _initialized():
        import torch.distributed as torch_dist

        torch_dist.barrier()


def any_rank(flag: bool) -> bool:
    """True on every rank when `flag` is true on at least one (so all ranks stop at the same step)."""
    if world_size() == 1 or not _initialized():
        return flag
    import torch
    import torch.distributed as torch_dist

    device = torch.device("cuda", torch.cuda.current_device()) if torch.cuda.is_available() else torch.device("cpu")
    t = torch.tensor([1 if flag else 0], device=device)
    torch_dist.all_reduce(t, op=torch_dist.ReduceOp.MAX)
    return bool(t.item())


def all_sum(values: list[int]) -> list[int]:
    """Element-wise sum of `values` over every rank (the values themselves in a single process)."""
    if world_size() == 1 or not _initialized():
        return values
    import torch
    import torch.distributed as torch_dist

    device = torch.device("cuda", torch.cuda.current_device()) if torch.cuda.is_available() else torch.device("cpu")
    t = torch.tensor(values, dtype=torch.int64, device=device)
    torch_dist.all_reduce(t)
    return [int(x) for x in t.tolist()]


def allow_indexed_cpu_location() -> None:
    """Let torch.load map tensors to `cpu:N`.

    Under CPU multi-process training accelerate reports the device as `cpu:<rank>`, and the Trainer
    resumes optimizer state with `map_location=args.device`; torch only knows the plain `cpu` tag.
    """
    import torch.serialization as ser

    if any(entry[1] is _no_tag for entry in ser._package_registry):
        return
    ser.register_package(_CPU_INDEX_PRIORITY, _no_tag, _restore_indexed_cpu)


_CPU_INDEX_PRIORITY = 11  # after torch's own "cpu" (10); priorities must be unique or the registry sort fails


def _no_tag(obj: Any) -> None:
    return None


def _restore_indexed_cpu(obj: Any, location: str) -> Any:
    return obj if location.startswith("cpu:") else None
