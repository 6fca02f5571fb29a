"""Issue 20: nothing is lost when a run is resumed, checkpointed or preempted, at any moment.

The in-process runs here use a one-layer tiny model on the debug world (seconds each, after the imports);
the runs through a real SLURM-like preemption are subprocesses with a fake `scontrol`.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from conftest import CONFIGS, DEBUG_YAML

from lit_knowledge import train
from lit_knowledge.config import load_config
from lit_knowledge.run import checkpoint_step

TINY = ["model.name=tiny", "model.tiny.num_layers=1", "model.tiny.hidden_size=32", "model.tiny.num_heads=2",
        "model.tiny.num_kv_heads=2", "model.tiny.intermediate_size=64", "trainer.accelerator=cpu",
        "method.epochs_per_step=2", "run.name=r"]


def ft_qa(root: Path, *extra: str):
    return load_config([str(CONFIGS / "baselines" / "ft_qa.yaml"), str(DEBUG_YAML)],
                       [f"run.root={root}", *TINY, *extra])


def run_dir(root: Path) -> Path:
    return root / "baselines" / "r"


def csv_rows(root: Path) -> list[dict]:
    with (run_dir(root) / "logs" / "metrics.csv").open(newline="") as f:
        return list(csv.DictReader(f))


def train_steps(rows: list[dict]) -> list[int]:
    return [int(r["step"]) for r in rows if r.get("train/loss")]


@pytest.mark.slow  # three tiny in-process runs: ~20 s
def test_a_resumed_run_keeps_its_csv_history_and_says_where_it_resumed(tmp_path, capsys):
    log = ["logger.backend=csv", "trainer.log_every_n_steps=1"]
    full = train.run_experiment(ft_qa(tmp_path / "a", *log), resume="never")
    assert full["metrics"]
    whole = train_steps(csv_rows(tmp_path / "a"))

    train.run_experiment(ft_qa(tmp_path / "b", *log, "trainer.max_steps=3"), resume="auto")
    before = csv_rows(tmp_path / "b")
    assert train_steps(before) and max(train_steps(before)) <= 3
    capsys.readouterr()
    train.run_experiment(ft_qa(tmp_path / "b", *log), resume="auto")
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("lit_knowledge: resuming")]
    assert len(lines) == 1, err
    assert "checkpoints/last.ckpt" in lines[0] and "global step 3" in lines[0] and "stream batch 3" in lines[0]

    after = csv_rows(tmp_path / "b")
    assert after[: len(before)] == [{**row, **{k: "" for k in after[0] if k not in row}} for row in before]
    assert train_steps(after) == whole  # every step logged once, as in the uninterrupted run
    stream_steps = lambda rows: [r["step"] for r in rows if r.get("stream/efficacy_f1")]  # noqa: E731
    assert stream_steps(after) == stream_steps(csv_rows(tmp_path / "a"))  # the probes' rows too


@pytest.mark.slow  # three tiny in-process runs: ~20 s
def test_a_corrupt_last_ckpt_is_replaced_and_hpc_checkpoints_go_when_the_run_completes(tmp_path, capsys):
    import shutil

    every = ["trainer.checkpoint_every_n_steps=1"]
    train.run_experiment(ft_qa(tmp_path, *every, "trainer.max_steps=1"), resume="auto")
    d = run_dir(tmp_path)
    last = d / "checkpoints" / "last.ckpt"
    assert checkpoint_step(last) == 1
    shutil.copy(d / "checkpoints" / "step1.ckpt", d / "hpc_ckpt_1.ckpt")  # as a requeue leaves it
    last.write_bytes(last.read_bytes()[:300])  # truncated by a node failure mid-write
    capsys.readouterr()

    train.run_experiment(ft_qa(tmp_path, *every), resume="auto")
    err = capsys.readouterr().err
    assert "skipping" in err and "last.ckpt" in err
    assert sorted(p.name for p in (d / "checkpoints").glob("last*")) == ["last.ckpt", "last.ckpt.corrupt"]
    final = checkpoint_step(last)
    assert final is not None and final > 1
    assert not list(d.glob("hpc_ckpt_*.ckpt"))  # the completed run's last.ckpt holds everything they held
    assert json.loads((d / "run_meta.json").read_text())["status"] == "completed"

    resumed = train.run_experiment(ft_qa(tmp_path, *every), resume="auto")  # nothing more to train
    err = capsys.readouterr().err
    assert "skipping" not in err and "resuming" not in err and "r has completed" in err
    assert resumed["run_dir"] == str(d) and checkpoint_step(last) == final


@pytest.mark.slow  # two tiny in-process runs: ~15 s
def test_a_completed_run_is_not_run_again_unless_asked(tmp_path, capsys):
    """The same command (or a sweep over its group) reports a completed run as it is: its wall time and peak
    memory are the whole run's, not a repeat's; --resume never runs it afresh."""
    first = train.run_experiment(ft_qa(tmp_path), resume="auto")
    d = run_dir(tmp_path)
    written = (d / "results.json").read_text()
    meta = json.loads((d / "run_meta.json").read_text())
    capsys.readouterr()

    again = train.run_experiment(ft_qa(tmp_path), resume="auto")
    assert "r has completed" in capsys.readouterr().err
    assert (d / "results.json").read_text() == written
    assert json.loads((d / "run_meta.json").read_text()) == meta  # not reopened: same end time, same status
    assert again["metrics"]["wall_time_s"] == pytest.approx(first["metrics"]["wall_time_s"])
    assert again["metrics"]["efficacy_f1"] == pytest.approx(first["metrics"]["efficacy_f1"])

    afresh = train.run_experiment(ft_qa(tmp_path), resume="never")
    assert "has completed" not in capsys.readouterr().err
    assert afresh["metrics"]["wall_time_s"] != first["metrics"]["wall_time_s"]
    assert json.loads((d / "run_meta.json").read_text())["start_time"] >= meta["start_time"]

    (d / "results.json").write_text("{")  # results lost to a crash after the status was written: resume again
    train.run_experiment(ft_qa(tmp_path), resume="auto")
    assert "resuming r from" in capsys.readouterr().err
    assert json.loads((d / "results.json").read_text())["metrics"]


def test_runs_checkpoint_every_30_minutes_by_default(tmp_path):
    from datetime import timedelta

    from lit_knowledge.run import RunDir

    cfg = ft_qa(tmp_path)
    callback = train.build_trainer(cfg, RunDir(cfg)).checkpoint_callback
    assert callback._train_time_interval == timedelta(minutes=30) and callback.save_last
    steps = train.build_trainer(ft_qa(tmp_path, "trainer.checkpoint_every_n_steps=5"), RunDir(cfg)).checkpoint_callback
    assert steps._every_n_train_steps == 5 and steps._train_time_interval is None
    off = train.build_trainer(ft_qa(tmp_path, "trainer.checkpoint_every_n_minutes=0"), RunDir(cfg)).checkpoint_callback
    assert off._train_time_interval is None and off._every_n_train_steps == 0 and off.save_last  # at the end only
    assert not (tmp_path / "baselines").exists()


def test_a_timed_checkpoint_learnt_a_step_late_is_written_once(monkeypatch):
    """Under several processes rank zero's "a checkpoint is due" reaches every process a step later; the save
    comes then, once per interval (rank zero does not raise the same due save again while it travels)."""
    from datetime import timedelta
    from types import SimpleNamespace

    from lit_knowledge import checkpoints

    class OneStepLate:  # what two processes' LaterAgreement answers
        before = False

        def any_raised(self, flag, processes, device=None):
            answer, self.before = self.before, flag
            return answer

    clock, saves = [0.0], []
    monkeypatch.setattr(checkpoints.time, "monotonic", lambda: clock[0])
    cb = checkpoints.TimedCheckpoint(dirpath="unused", save_last=True, train_time_interval=timedelta(seconds=10))
    cb._due, cb._last_time_checked = OneStepLate(), 0.0
    monkeypatch.setattr(cb, "_should_skip_saving_checkpoint", lambda trainer: False)
    monkeypatch.setattr(cb, "_monitor_candidates", lambda trainer: {})
    monkeypatch.setattr(cb, "_save_topk_checkpoint", lambda trainer, candidates: None)
    monkeypatch.setattr(cb, "_save_last_checkpoint", lambda trainer, candidates: saves.append(clock[0]))
    trainer = SimpleNamespace(is_global_zero=True, world_size=2, strategy=SimpleNamespace(root_device="cpu"))
    for t in (5.0, 11.0, 12.0, 13.0, 14.0, 22.0, 23.0, 24.0):  # due at 11 and again 10 s later, at 22
        clock[0] = t
        cb.on_train_batch_end(trainer, SimpleNamespace(automatic_optimization=True), None, None, 0)
    assert saves == [12.0, 23.0]


@pytest.mark.slow  # two tiny in-process runs: ~15 s
def test_time_based_checkpoints_are_written_during_the_run_and_their_cost_is_kept(tmp_path, capsys):
    often = ["trainer.checkpoint_every_n_minutes=0.000001"]  # every 60 µs: shorter than any batch plus save, on any machine
    train.run_experiment(ft_qa(tmp_path, *often, "trainer.max_steps=3"), resume="auto")
    d = run_dir(tmp_path)
    first = json.loads((d / "run_meta.json").read_text())["checkpoints"]
    assert first["written"] >= 3 and first["seconds"] > 0 and "min" in first["interval"]
    assert [p.name for p in (d / "checkpoints").iterdir()] == ["last.ckpt"]  # time-based saves: one file
    err = capsys.readouterr().err
    assert f"{first['written']} checkpoints written in" in err

    train.run_experiment(ft_qa(tmp_path, *often), resume="auto")
    total = json.loads((d / "run_meta.json").read_text())["checkpoints"]
    assert total["written"] > first["written"] and total["seconds"] > first["seconds"]  # running totals


# ------------------------------------------------------------------------------------------ preemption at any moment


def slurm_env(tmp_path: Path, cache: Path) -> tuple[dict, Path]:
    """The environment of SLURM job 4242 with a fake `scontrol` that records its arguments."""
    from conftest import cli_env

    bin_dir, log = tmp_path / "bin", tmp_path / "scontrol.log"
    bin_dir.mkdir()
    (bin_dir / "scontrol").write_text(f"#!/bin/sh\necho \"$@\" >> {log}\n")
    (bin_dir / "scontrol").chmod(0o755)
    env = cli_env(cache)
    env.update({"PATH": f"{bin_dir}:{env['PATH']}", "SLURM_JOB_ID": "4242", "SLURM_NTASKS": "1",
                "SLURM_NTASKS_PER_NODE": "1", "SLURM_NNODES": "1", "SLURM_JOB_NAME": "lk-test",
                "SLURM_PROCID": "0", "SLURM_LOCALID": "0", "SLURM_NODEID": "0", "OMP_NUM_THREADS": "1"})
    return env, log


def catches_sigusr1(pid: int) -> bool:
    """Whether the process has a handler for SIGUSR1 (Linux: the SigCgt mask in /proc/<pid>/status)."""
    import signal

    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("SigCgt:"):
            return bool(int(line.split()[1], 16) >> (signal.SIGUSR1 - 1) & 1)
    return False


def train_argv(root: Path, *extra: str) -> list[str]:
    import sys

    return [sys.executable, "-m", "lit_knowledge.train", "--config", str(CONFIGS / "baselines" / "ft_qa.yaml"),
            "--config", str(DEBUG_YAML), f"run.root={root}", *extra]


def wait_until(predicate, proc, timeout: float = 300) -> None:
    import time

    start = time.time()
    while not predicate():
        assert proc.poll() is None, proc.communicate()
        assert time.time() - start < timeout, "timed out"
        time.sleep(0.01)


@pytest.mark.slow  # a fresh interpreter, stopped during its start-up: ~5 s
def test_sigusr1_during_start_up_requeues_and_writes_nothing(tmp_path):
    import signal
    import subprocess

    env, log = slurm_env(tmp_path, tmp_path / "cache")
    root = tmp_path / "runs"
    proc = subprocess.Popen(train_argv(root, *TINY), env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    wait_until(lambda: catches_sigusr1(proc.pid), proc)  # the first moment the signal can be handled at all
    proc.send_signal(signal.SIGUSR1)
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err[-2000:]
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if "preempted (SIGUSR1)" in line]
    assert len(lines) == 1 and "nothing to save yet" in lines[0] and "job 4242 requeued" in lines[0], err
    assert log.read_text().split() == ["requeue", "4242"]
    assert not root.exists()  # nothing half-written


def test_a_notice_that_breaks_the_clean_up_it_interrupts_still_requeues(monkeypatch, capsys):
    """The notice lands wherever the process is: a `finally` it interrupts may fail in turn (argparse, between
    setting and restoring an attribute, raised AttributeError). The job is still preempted: requeue, exit 0."""
    from lit_knowledge import preemption

    monkeypatch.setattr(preemption, "requeue_job", lambda: "job 7 requeued")

    @preemption.entry_point
    def main():
        state = {}
        try:
            raise preemption.Preempted("start-up")  # as the handler raises it
        finally:
            state["nargs"].restore()  # clean-up of state that was never set: KeyError

    assert main() == 0
    (line,) = capsys.readouterr().err.splitlines()
    assert "preempted (SIGUSR1) during start-up" in line and "job 7 requeued" in line

    @preemption.entry_point
    def fails():
        raise KeyError("not a preemption")

    with pytest.raises(KeyError):
        fails()


@pytest.mark.slow  # reader pretraining stopped and resumed in two fresh interpreters: ~1-2 min
def test_sigusr1_during_reader_pretraining_checkpoints_it_and_the_requeued_job_goes_on(tmp_path):
    import signal
    import subprocess
    import threading
    import time

    cache = tmp_path / "cache"
    env, log = slurm_env(tmp_path, cache)
    root = tmp_path / "runs"
    reader = ["model.tiny.num_layers=1", "model.tiny.hidden_size=32", "model.tiny.num_heads=2",
              "model.tiny.num_kv_heads=2", "model.tiny.intermediate_size=64", "pretrain.max_steps=1500",
              "trainer.accelerator=cpu", "method.epochs_per_step=1"]
    proc = subprocess.Popen(train_argv(root, *reader), env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    err_lines: list[str] = []
    reading = threading.Thread(target=lambda: err_lines.extend(proc.stderr), daemon=True)
    reading.start()
    wait_until(lambda: list(cache.glob("readers/*.partial")), proc)  # pretraining's fit is about to start
    time.sleep(5)
    proc.send_signal(signal.SIGUSR1)
    proc.wait(timeout=300)
    reading.join(timeout=10)
    err = "".join(err_lines)
    assert proc.returncode == 0, err[-2000:]
    partial = next(cache.glob("readers/*.partial"))
    saved = list(partial.glob("hpc_ckpt_*.ckpt"))
    step = checkpoint_step(saved[0]) if len(saved) == 1 else None
    assert step is not None and 0 < step < 1500, err[-2000:]
    assert "preempted (SIGUSR1) during reader pretraining" in err and "checkpointed at step" in err
    assert log.read_text().split() == ["requeue", "4242"]
    assert not list(cache.glob("readers/*/reader.json"))  # no half-trained reader is cached
    assert not root.exists()

    again = subprocess.run(train_argv(root, *reader), env=env, capture_output=True, text=True, timeout=900)
    assert again.returncode == 0, again.stderr[-2000:]
    assert f"going on from step {step}" in again.stderr
    assert list(cache.glob("readers/*/reader.json")) and not list(cache.glob("readers/*.partial"))


@pytest.mark.slow  # two tiny in-process runs logging to W&B offline: ~30 s
def test_a_resumed_wandb_run_names_the_run_id_it_continues(tmp_path, capsys):
    wandb = ["logger.backend=wandb", "logger.mode=offline"]
    train.run_experiment(ft_qa(tmp_path, *wandb, "trainer.max_steps=2"), resume="auto")
    wid = json.loads((run_dir(tmp_path) / "run_meta.json").read_text())["wandb_run_id"]
    capsys.readouterr()
    train.run_experiment(ft_qa(tmp_path, *wandb), resume="auto")
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("lit_knowledge: resuming")]
    assert len(lines) == 1 and "global step 2" in lines[0] and f"W&B run {wid} continues" in lines[0]
