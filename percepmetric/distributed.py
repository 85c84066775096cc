"""One job split over the processes torchrun starts: which part is mine, and stopping together.

``torchrun --nproc-per-node N -m percepmetric distance DIR_A DIR_B ...`` starts N copies of the
command with ``RANK`` and ``WORLD_SIZE`` set. Each copy plans the whole job the same way, takes
its :func:`shard` of the work units (unit ``i`` goes to rank ``i % world``: round robin, so
that units of different cost, e.g. chunks of large and small images, spread evenly), computes
it (or its contiguous :func:`block` of items, where all items cost the same), and the parts meet
through PyTorch's own collectives (gloo on the CPU, nccl on CUDA).
Outside torchrun (no ``RANK``/``WORLD_SIZE``) :func:`process_group` yields a one-process
:class:`Group` and nothing is exchanged.

Failures: a rank whose part fails must not leave the others waiting in a collective. Every
rank therefore runs its part through :func:`run_part`, which catches the failure and then
exchanges a status with all ranks; if any rank failed, every rank raises, the failing one its
own error, the others one :class:`~percepmetric.errors.InputError` line naming the rank that
failed, so each prints one clear line and exits non-zero (torchrun's report follows).

Part of the core by the layering rule: it imports only torch and core modules.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

import torch
import torch.distributed as dist

from .errors import InputError

__all__ = ["Group", "PartFailed", "all_gather", "block", "launched_by_torchrun", "process_group", "rank_device",
           "run_part", "shard"]

T = TypeVar("T")


@dataclass(frozen=True)
class Group:
    """This process's place in the job: ``rank`` of ``world`` processes (0 of 1 outside torchrun)."""

    rank: int = 0
    world: int = 1

    @property
    def active(self) -> bool:
        return self.world > 1

    @property
    def is_main(self) -> bool:
        """Rank 0 merges the parts and writes the outputs."""
        return self.rank == 0


class PartFailed(InputError):
    """Another rank's part failed, so this rank stops too (one line, exit code 2)."""


def _env_int(name: str) -> int:
    value = os.environ[name]
    try:
        return int(value)
    except ValueError:
        raise InputError(f"{name}={value!r}: expected a whole number (set by torchrun)") from None


def launched_by_torchrun() -> bool:
    """True when torchrun (or any launcher setting ``RANK`` and ``WORLD_SIZE``) started us."""
    return "RANK" in os.environ and "WORLD_SIZE" in os.environ


def current_group() -> Group:
    """Rank and world size from torchrun's environment; ``Group()`` outside torchrun."""
    if not launched_by_torchrun():
        return Group()
    rank, world = _env_int("RANK"), _env_int("WORLD_SIZE")
    if world < 1 or not 0 <= rank < world:
        raise InputError(f"RANK={rank}, WORLD_SIZE={world}: expected 0 <= RANK < WORLD_SIZE")
    return Group(rank, world)


def rank_device(device: torch.device) -> torch.device:
    """Under torchrun, CUDA means one GPU per process: ``cuda:LOCAL_RANK``; otherwise ``device``."""
    if device.type != "cuda" or not current_group().active:
        return device
    chosen = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    torch.cuda.set_device(chosen)
    return chosen


@contextmanager
def process_group(device: torch.device) -> Iterator[Group]:
    """Join torchrun's process group for the block ("nccl" for a CUDA ``device``, else "gloo")
    and leave it after; a group someone else joined (e.g. a caller's) is used and left alone."""
    group = current_group()
    joined = group.active and not dist.is_initialized()
    if joined:
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    try:
        yield group
    finally:
        if joined and dist.is_initialized():
            dist.destroy_process_group()


def shard(items: Sequence[T], group: Group) -> list[T]:
    """This rank's items: positions ``rank, rank + world, ...`` of ``items`` (all of them outside
    torchrun). Deterministic, so a rerun with the same world size gives each rank the same part."""
    return list(items[group.rank::group.world])


def block(total: int, group: Group) -> tuple[int, int]:
    """This rank's contiguous block ``(first, stop)`` of ``total`` items numbered 0..total-1:
    the ``rank``-th of ``world`` blocks whose sizes differ by one at most (all of them outside
    torchrun). For work whose items all cost the same, e.g. a BAPPS split's 64x64 patches."""
    return total * group.rank // group.world, total * (group.rank + 1) // group.world


def all_gather(group: Group, part: Any) -> list[Any]:
    """Every rank's ``part`` (any picklable object), in rank order, on every rank.

    When another rank is gone (Ctrl-C or SIGTERM to that process alone, killed, crashed), the
    collective fails with the backend's multi-line error (gloo: "Connection closed by peer");
    this rank then stops with one :class:`PartFailed` line instead."""
    if not group.active:
        return [part]
    gathered: list[Any] = [None] * group.world
    try:
        dist.all_gather_object(gathered, part)
    except RuntimeError as exc:  # torch.distributed.DistBackendError and the like subclass it
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise PartFailed(f"stopped: rank {group.rank} of {group.world} lost another rank of the job (interrupted, "
                         f"killed or crashed: see its own message); {_shorten(first)}") from None
    return gathered


def _shorten(text: str, limit: int = 160) -> str:
    return text if len(text) <= limit else text[:limit - 3] + "..."


def _failure_line(exc: BaseException) -> str:
    return str(exc) if isinstance(exc, InputError) else f"{exc.__class__.__name__}: {exc}"


def run_part(group: Group, part: Callable[[], T]) -> T:
    """``part()`` on this rank, then agree with every rank on whether all parts succeeded.

    When a part raised, the rank that failed re-raises its own error and every other rank raises
    :class:`PartFailed` naming the first failed rank and its message, so no rank is left waiting.
    Ctrl-C is not caught: it reaches every process torchrun started anyway.
    """
    if not group.active:
        return part()
    failure: Exception | None = None
    result: Any = None
    try:
        result = part()
    except Exception as exc:  # exchanged below, then re-raised
        failure = exc
    statuses = all_gather(group, None if failure is None else _failure_line(failure))
    if failure is not None:
        raise failure
    failed = [(rank, line) for rank, line in enumerate(statuses) if line is not None]
    if failed:
        rank, line = failed[0]
        raise PartFailed(f"stopped: rank {rank} of {group.world} failed: {line}")
    return result
