"""Preemption before training starts: SIGUSR1 is handled from the first moment of `train`.

SLURM sends SIGUSR1 some time before a job's end (`#SBATCH --signal=SIGUSR1@120`). During the fit
`RequeueOnSignal` (lit_knowledge/requeue.py) takes it at a batch boundary. Before the fit (loading the
config, importing libraries, loading a 7B model, pretraining the reader) Python's default action would
kill the job with no requeue. `install` replaces that default at once with a handler that raises
`Preempted`; `train.main` catches it, requeues the job (`scontrol requeue`, rank zero only) and exits 0.
What a preemption then costs: nothing before the run directory exists (nothing to save yet), the work
since the last checkpoint after that, and for reader pretraining nothing either: it checkpoints itself
into its cache (see `ensure_reader`) and the requeued job goes on from there.

Plain Python only: installing the handler must not wait for torch to import.
"""

from __future__ import annotations

import functools
import os
import signal
import subprocess
import sys


class Preempted(BaseException):
    """SIGUSR1 arrived outside a fit. A BaseException, so that no `except Exception` on the way swallows it.

    `saved` names what was checkpointed (or is empty); `requeued` is True when the job was already requeued.
    """

    def __init__(self, phase: str, saved: str = "", requeued: bool = False):
        super().__init__(phase)
        self.phase, self.saved, self.requeued = phase, saved, requeued


def slurm_job_id(env=os.environ) -> str | None:
    if env.get("SLURM_ARRAY_JOB_ID") and env.get("SLURM_ARRAY_TASK_ID"):
        return f"{env['SLURM_ARRAY_JOB_ID']}_{env['SLURM_ARRAY_TASK_ID']}"
    return env.get("SLURM_JOB_ID")


def requeue_job() -> str:
    """`scontrol requeue` this SLURM job; returns what happened, in words."""
    job = slurm_job_id()
    if not job:
        return "not a SLURM job: nothing to requeue; run the same command again"
    result = subprocess.run(["scontrol", "requeue", job], capture_output=True, text=True)
    return f"job {job} requeued" if result.returncode == 0 else f"job {job}: scontrol failed ({result.returncode})"


phase = "start-up"  # what the process is doing, for the message (train sets it as it goes)


def _raise_preempted(signum, frame):
    signal.signal(signum, signal.SIG_IGN)  # one notice is enough: a second one must not interrupt the clean-up
    raise Preempted(phase)


def install(signum: int = signal.SIGUSR1) -> None:
    signal.signal(signum, _raise_preempted)


def entry_point(main):
    """Wrap a command's `main`: SIGUSR1 is handled from its first moment, and a `Preempted` requeues and exits 0."""

    @functools.wraps(main)
    def run(*args, **kwargs):
        previous = signal.getsignal(signal.SIGUSR1)
        install()
        try:
            return main(*args, **kwargs)
        except BaseException as e:
            p = preemption_behind(e)
            if p is None:
                raise
            return handle(p)
        finally:
            signal.signal(signal.SIGUSR1, previous)

    return run


def preemption_behind(e: BaseException | None) -> Preempted | None:
    """The `Preempted` that `e` is, or that it was raised while handling. The notice interrupts whatever runs,
    and clean-up code interrupted half-way may fail in turn (argparse's, restoring an attribute it never set):
    that failure still means the job was preempted."""
    seen = set()
    while e is not None and id(e) not in seen:
        if isinstance(e, Preempted):
            return e
        seen.add(id(e))
        e = e.__context__
    return None


def handle(p: Preempted) -> int:
    """Requeue (unless done already) and say so in one line; the exit code of a clean stop."""
    from lit_knowledge.run import global_rank

    if global_rank() != 0:
        return 0
    status = "" if p.requeued else requeue_job()
    saved = p.saved or "nothing to save yet"
    print(f"lit_knowledge: preempted (SIGUSR1) during {p.phase}; {saved}; {status or 'job requeued'}; "
          "the same command starts again from there", file=sys.stderr)
    return 0
