"""Running the same training command on several processes with PyTorch's own distributed engine.

Launch with ``torchrun --nproc_per_node=K -m percepmetric.train ...`` (or ``python -m
torch.distributed.run``) instead of ``percepmetric train ...``; nothing else changes. torchrun
sets ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR`` and ``MASTER_PORT``; we then

- join the process group ("nccl" when CUDA is available, else "gloo"),
- give each process ``batch_size / world_size`` triplets of every global batch through a
  :class:`torch.utils.data.DistributedSampler` seeded with the run's seed,
- wrap the trainable parts in :class:`~torch.nn.parallel.DistributedDataParallel`, which
  averages gradients across processes (so the update equals the single-process one on the
  same global batch, up to float summation order),
- let only rank 0 write checkpoints, logs and the final metric.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import torch
import torch.distributed as dist

from ..devices import resolve_device
from ..distributed import Group

__all__ = ["Dist", "all_gather_rows", "setup", "teardown"]


@dataclass(frozen=True)
class Dist(Group):
    """Where this process stands: ``rank`` of ``world`` processes (see :class:`Group`), on ``device``."""

    local_rank: int = 0
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    def barrier(self) -> None:
        if self.active:
            dist.barrier()


def launched_by_torchrun() -> bool:
    """True when torchrun (or any launcher setting ``RANK`` and ``WORLD_SIZE``) started us."""
    return "RANK" in os.environ and "WORLD_SIZE" in os.environ


def setup(device: str | None = None) -> Dist:
    """Join the process group when launched by torchrun; otherwise a one-process :class:`Dist`.

    ``device``: as :func:`~percepmetric.devices.resolve_device` (``None`` = auto: CUDA when
    available, else the CPU); a typo or a missing GPU is an :class:`~percepmetric.errors.InputError`
    before the process group is joined. Under torchrun a CUDA device means ``cuda:LOCAL_RANK``:
    one GPU per process.
    """
    requested = resolve_device(device)
    if not launched_by_torchrun():
        return Dist(device=requested)
    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    use_cuda = requested.type == "cuda"
    if use_cuda:
        chosen = torch.device("cuda", local_rank)
        torch.cuda.set_device(chosen)
    else:
        chosen = requested
    if not dist.is_initialized():
        dist.init_process_group("nccl" if use_cuda else "gloo")
    return Dist(rank=rank, world=world, local_rank=local_rank, device=chosen)


def teardown(d: Dist) -> None:
    if d.active and dist.is_initialized():
        dist.destroy_process_group()


def all_gather_rows(d: Dist, rows: torch.Tensor, total: int) -> torch.Tensor:
    """Reassemble a tensor computed shard-wise: rank ``r`` holds rows ``r, r + world, ...`` of ``total``.

    Returns the full ``(total, ...)`` tensor on every rank. Shards are padded to equal length
    for the collective and the padding dropped again.
    """
    if not d.active:
        return rows
    per_rank = -(-total // d.world)
    padded = rows.new_zeros((per_rank, *rows.shape[1:]))
    padded[: rows.shape[0]] = rows
    parts = [torch.empty_like(padded) for _ in range(d.world)]
    dist.all_gather(parts, padded)
    # parts[r][j] is row r + j * world: interleave back into order.
    return torch.stack(parts, dim=1).reshape((per_rank * d.world, *rows.shape[1:]))[:total]
