"""Learning-rate schedules shared by the methods that train for a fixed budget (reader, memory module, transfer)."""

from __future__ import annotations

import math


def warmup_cosine(warmup_steps: int, total_steps: int, floor: float):
    """A LambdaLR factor: linear warm-up over `warmup_steps`, then cosine decay from 1 to `floor` at `total_steps`."""

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
        return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress))

    return factor


def warmup_constant(warmup_steps: int):
    """A LambdaLR factor: linear warm-up over `warmup_steps`, then constant (an early step equals a shorter run)."""
    return lambda step: min(1.0, (step + 1) / warmup_steps) if warmup_steps else 1.0


def adamw_warmup_cosine(module, lr: float, total_steps: int) -> dict:
    """What a cached build's `configure_optimizers` returns: AdamW (no weight decay) on the module's trainable
    parameters, a warm-up over the first 5 % of `total_steps`, then cosine decay to a tenth of `lr`."""
    import torch

    trainable = [q for q in module.parameters() if q.requires_grad]
    opt = torch.optim.AdamW(trainable, lr=lr, weight_decay=0.0)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, warmup_cosine(max(1, total_steps // 20), total_steps, floor=0.1))
    return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}
