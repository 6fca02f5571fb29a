"""Periodic checkpoints whose cost stays visible.

A run checkpoints every `trainer.checkpoint_every_n_minutes` of training (30 by default) or, when set,
every `trainer.checkpoint_every_n_steps` optimiser steps, and always at the end: a crash loses at most
one interval. Time-based saves rewrite `checkpoints/last.ckpt` only (one file, whatever the run's length);
step-based saves also keep the newest `step<N>.ckpt`. The time spent writing them is counted, kept in
run_meta.json (`checkpoints`) and printed at the end of the run.
"""

from __future__ import annotations

import time
from datetime import timedelta

from lightning.pytorch.callbacks import ModelCheckpoint

from lit_knowledge.distributed import LaterAgreement


class TimedCheckpoint(ModelCheckpoint):
    """Lightning's ModelCheckpoint that counts the checkpoints it writes and the seconds they take."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.written = 0
        self.seconds = 0.0
        self._due = LaterAgreement()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        """Time-based saves as Lightning makes them, with rank zero's clock deciding, except that the processes
        learn the decision a step late instead of waiting for a broadcast of it at every step."""
        interval = self._train_time_interval
        if interval is None or not pl_module.automatic_optimization:
            # step-based or at the end only (no collective in Lightning's own test); Lightning makes no time-based
            # saves for a method that steps its optimiser itself
            return super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)
        now = time.monotonic()
        last = self._last_time_checked
        due = trainer.is_global_zero and last is not None and now - last >= interval.total_seconds()
        if due:
            self._last_time_checked = now  # raised once: the save follows when every process has heard of it
        if not self._due.any_raised(due, trainer.world_size, trainer.strategy.root_device):
            return
        if self._should_skip_saving_checkpoint(trainer):
            return
        candidates = self._monitor_candidates(trainer)
        self._save_topk_checkpoint(trainer, candidates)
        self._save_last_checkpoint(trainer, candidates)

    def on_train_end(self, trainer, pl_module):
        self._due.finish()
        super().on_train_end(trainer, pl_module)

    def _save_checkpoint(self, trainer, filepath: str) -> None:
        started = time.perf_counter()
        super()._save_checkpoint(trainer, filepath)
        self.seconds += time.perf_counter() - started
        self.written += 1


def interval(trainer_cfg) -> str:
    """The checkpoint interval in words (for the run's last line and run_meta.json)."""
    if trainer_cfg.checkpoint_every_n_steps:
        return f"every {trainer_cfg.checkpoint_every_n_steps} steps and at the end"
    if trainer_cfg.checkpoint_every_n_minutes:
        return f"every {trainer_cfg.checkpoint_every_n_minutes:g} min and at the end"
    return "at the end only"


def checkpoint_callback(trainer_cfg, dirpath: str) -> TimedCheckpoint:
    every = trainer_cfg.checkpoint_every_n_steps or None
    minutes = trainer_cfg.checkpoint_every_n_minutes
    return TimedCheckpoint(
        dirpath=dirpath, save_last=True, filename="step{step}", auto_insert_metric_name=False,
        every_n_train_steps=every, save_top_k=1 if every else 0,
        train_time_interval=timedelta(minutes=minutes) if minutes and not every else None,
        # no version counter: a checkpoint name that exists (a corrupt last.ckpt) is overwritten, never sidestepped
        enable_version_counter=False,
    )
