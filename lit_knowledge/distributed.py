"""Splitting work across the processes of a multi-process launch (DDP), and gathering what they computed.

Under `trainer.strategy=ddp` every process walks the same stream plan. Each planned batch is split across
the processes (`shard`: process r takes examples r, r + W, r + 2W, ... of a batch of W or more; a smaller
batch is trained whole by every process, which averages to the same gradient), so W processes train a
batch W times faster, and DDP averages their gradients. The probes are split the same way (`sharded`): each
process answers its share, and every process gathers all the answers, in order, so all of them score the
same. Outside a launch (one process) both are the identity.
"""

from __future__ import annotations


def rank_and_world() -> tuple[int, int]:
    """(this process's rank, number of processes) of the initialised process group; (0, 1) without one."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def shard(items: list, rank: int, world: int) -> list:
    """Process `rank`'s share of `items`: every `world`-th item from its rank on; all of them when there are
    fewer items than processes (each process then does the same work, and none is left without any)."""
    return items if world == 1 or len(items) < world else items[rank::world]


def sharded(fn, items: list) -> list:
    """`fn(items)` with the items split across the processes and the results gathered back in order."""
    rank, world = rank_and_world()
    if world == 1 or len(items) < world:
        return fn(items)
    import torch.distributed as dist

    parts: list = [None] * world
    dist.all_gather_object(parts, list(fn(shard(items, rank, world))))
    out: list = [None] * len(items)
    for r, part in enumerate(parts):
        out[r::world] = part
    return out
