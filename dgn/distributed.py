"""Many processes, one run: ``torchrun --nproc-per-node N -m dgn synthesize ...``.

Rows are sharded across ranks by whole chunks: the rows still to do are cut into the same
``batch_size`` chunks a single process would run, and chunk ``i`` goes to rank ``i % world_size``.
Every chunk therefore holds exactly the rows, in the same order, that it would hold in a
single-process run, so the merged output is identical to one process's output with the same
seeds (on the same kind of device), not merely close.

Each rank writes its rows' files and its own part manifest; rank 0 merges the parts into
``manifest.json`` and the montage once every rank is done (see :class:`dgn.outputs.RunWriter`).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.distributed as dist

from dgn.errors import DGNError


@dataclass(frozen=True)
class World:
    """This process's place among the processes of one run (``torchrun`` sets the variables)."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        """True on the process that merges and prints (rank 0)."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.size > 1

    @property
    def part_name(self) -> str | None:
        """Name of this rank's part manifest, or None in a single-process run."""
        return f"rank-{self.rank:04d}" if self.distributed else None

    @classmethod
    def from_env(cls) -> World:
        """Read ``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK`` (a single process when they are absent)."""
        try:
            size = int(os.environ.get("WORLD_SIZE", "1"))
            rank = int(os.environ.get("RANK", "0"))
            local = int(os.environ.get("LOCAL_RANK", str(rank)))
        except ValueError as err:
            raise DGNError(f"RANK / WORLD_SIZE / LOCAL_RANK must be integers: {err}") from None
        if size < 1 or not 0 <= rank < size:
            raise DGNError(f"inconsistent torchrun environment: RANK={rank}, WORLD_SIZE={size}")
        return cls(rank, size, local)


def init_world(device: str = "auto") -> tuple[World, str]:
    """Join the run's process group (when launched by torchrun) and choose this rank's device.

    Args:
        device: the user's ``--device``; with several ranks on a CUDA machine, "auto" and "cuda"
            become ``cuda:LOCAL_RANK``.

    Returns:
        (world, device string).
    """
    world = World.from_env()
    if not world.distributed:
        return world, device
    use_cuda = device in ("auto", "cuda") and torch.cuda.is_available()
    if use_cuda:
        device = f"cuda:{world.local_rank}"
        torch.cuda.set_device(world.local_rank)
    elif device == "auto":
        device = "cpu"
    if not dist.is_initialized():
        dist.init_process_group("nccl" if use_cuda else "gloo")
    return world, device


def leave_world(finished: bool) -> None:
    """Tear the process group down before the interpreter exits (a no-op when none was joined).

    Left to the C++ destructors, a gloo rank that finishes first can close its sockets while the
    other rank's background threads still use them, and that rank aborts ("terminate called
    without an active exception"), failing the whole torchrun run after its work was done.

    Args:
        finished: this rank's command succeeded, so every rank reaches the same final barrier; after
            an error the group is destroyed without waiting for ranks that may never arrive.
    """
    if not dist.is_initialized():
        return
    try:
        if finished:
            dist.barrier()
    finally:
        dist.destroy_process_group()


def barrier(world: World) -> None:
    """Wait for every rank (a no-op in a single-process run)."""
    if world.distributed and dist.is_initialized():
        dist.barrier()


def agree_on_minimum(value: int, world: World) -> int:
    """The smallest ``value`` over all ranks (so every rank cuts rows into the same chunks)."""
    if not (world.distributed and dist.is_initialized()):
        return value
    on = torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else torch.device("cpu")
    t = torch.tensor([value], dtype=torch.int64, device=on)
    dist.all_reduce(t, op=dist.ReduceOp.MIN)
    return int(t.item())


def shard_skip(keys: Sequence[str], done: set[str], batch_size: int, world: World) -> set[str]:
    """Row keys this rank must skip: the finished ones and every chunk that belongs to another rank.

    Args:
        keys: every row's key, in planned order.
        done: keys already finished (a resumed run).
        batch_size: rows per chunk, as the single-process run would use.
        world: this rank's place.
    """
    if batch_size < 1:
        raise DGNError(f"batch size must be >= 1, got {batch_size}")
    todo = [k for k in keys if k not in done]
    mine = {k for i, k in enumerate(todo) if (i // batch_size) % world.size == world.rank}
    return set(keys) - mine
