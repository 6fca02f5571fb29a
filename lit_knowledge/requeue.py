"""Preemption: save at a batch boundary on SIGUSR1, requeue the SLURM job, stop; resume on the next start.

SLURM sends SIGUSR1 some time before a job's end (`#SBATCH --signal=SIGUSR1@120`). Lightning's own
handler writes a checkpoint from inside the signal handler, which can land between an optimiser step
and the end of its batch. Here the handler only raises a flag; at the end of the current batch (after
the stream position and any step-end evaluation are recorded; under several processes, at the end of the
next one, so that no step waits for the ranks to agree: `distributed.LaterAgreement`) every rank stops, rank zero
writes `hpc_ckpt_<step>.ckpt` into the run directory and runs `scontrol requeue <job>`, and the run
directory is marked `requeued`. The requeued job runs the same command, and `--resume auto` picks the
newest checkpoint by global step (see lit_knowledge/run.py). Outside a fit, lit_knowledge/preemption.py
handles the signal.
"""

from __future__ import annotations

import signal
import subprocess
import sys

import lightning as L

from lit_knowledge.distributed import LaterAgreement
from lit_knowledge.preemption import slurm_job_id


class RequeueOnSignal(L.Callback):
    def __init__(self, run_dir, signum: int = signal.SIGUSR1):
        self.run_dir = run_dir
        self.signum = signum
        self.requested = False
        self.requeued = False
        self._previous = None
        self._agreement = LaterAgreement()

    def _handler(self, signum, frame):
        self.requested = True

    def on_fit_start(self, trainer, pl_module):
        self._previous = signal.signal(self.signum, self._handler)

    def on_train_end(self, trainer, pl_module):
        # Under several processes a notice raised during the last batch is learnt only here: requeue all the same.
        if self._agreement.finish() and not self.requeued:
            self._requeue(trainer)

    def on_fit_end(self, trainer, pl_module):
        if self._previous is not None:
            signal.signal(self.signum, self._previous)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if self.requeued:  # saved and requeued already; the fit is stopping
            return
        if self._agreement.any_raised(self.requested, trainer.world_size, trainer.strategy.root_device):
            self._requeue(trainer)
            trainer.should_stop = True

    def _requeue(self, trainer) -> None:
        path = self.run_dir / f"hpc_ckpt_{trainer.global_step}.ckpt"
        trainer.save_checkpoint(str(path))
        if trainer.is_global_zero:
            job = slurm_job_id()
            if job:
                result = subprocess.run(["scontrol", "requeue", job], capture_output=True, text=True)
                status = "requeued" if result.returncode == 0 else f"scontrol failed ({result.returncode})"
                print(f"lit_knowledge: checkpoint {path}; job {job} {status}", file=sys.stderr)
        self.requeued = True
