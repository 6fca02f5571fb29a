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


class TimedCheckpoint(ModelCheckpoint):
    """Lightning's ModelCheckpoint that counts the checkpoints it writes and the seconds they take."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.written = 0
        self.seconds = 0.0

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
