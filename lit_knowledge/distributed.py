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


class LaterAgreement:
    """Whether any process raised a flag, learnt by every process one step late so that none waits for it.

    A step-end decision every process must take alike (stop for preemption, write a timed checkpoint) is a
    collective; a blocking one each step costs a round trip between processes and makes the faster one wait for
    the slower (0.4-2 ms each over gloo on a 2-core CPU, against a tiny model's step of under 100 ms). Here the
    exchange of step n starts at its end without waiting, runs while step n + 1 computes, and is read at the end
    of step n + 1: every process reads the same answer at the same step. One process learns its flag at once.
    """

    def __init__(self):
        self._pending = None  # (the flag tensor being reduced, its work handle)

    def any_raised(self, flag: bool, processes: int, device=None) -> bool:
        """Whether any process raised its flag: at this step alone, or across processes at the step before.
        `processes`: how many take part (the trainer's world size; a one-device fit inside a process group, as a
        cached build on rank zero, exchanges nothing)."""
        if processes == 1:
            return flag
        import torch
        import torch.distributed as dist

        mine = torch.tensor([int(flag)], dtype=torch.int32, device=device)
        before, self._pending = self._pending, (mine, dist.all_reduce(mine, op=dist.ReduceOp.MAX, async_op=True))
        return self._answer(before)

    def finish(self) -> bool:
        """Wait for the exchange still running (at the end of training, before the processes part): whether any
        process raised its flag at the last step."""
        before, self._pending = self._pending, None
        return self._answer(before)

    @staticmethod
    def _answer(pending) -> bool:
        if pending is None:
            return False
        tensor, work = pending
        work.wait()
        return bool(tensor.item())
