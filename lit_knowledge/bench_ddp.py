"""`python -m lit_knowledge.bench ddp`: how much faster a stream run finishes on two processes that split its work.

The same config runs twice, each as a user would start it (`python -m lit_knowledge.train`, a fresh process):
once as one process with all the threads, once under `trainer.strategy=ddp` with `--processes` processes sharing
the same threads (gloo on the CPU); with `--per-device`, every process has one thread, as one device each.
`--launcher torchrun` starts the split run's processes all at once (as `srun` does) instead of through Lightning's
launcher, which starts the others only when the first reaches the fit. The figure is the ratio of the two wall
times, start to exit; the runs' own metrics are printed side by side, so a split that changed what the method
learns shows at once. The world's reader is made ready first, so neither run pretrains. Default: SELF-PARAM's
batch setting (100 documents), the issue's target ratio 0.6.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from lit_knowledge.errors import UserError

TARGET_RATIO = 0.6
COMPARED = ("efficacy_f1", "retention_f1", "locality_f1", "lm_loss", "optimizer_steps", "train_tokens")
# How a run's own wall time divides (rank zero's view): updating on the stream, evaluating, the rest (start-up).
WHERE_TIME_GOES = ("wall_time_s", "update_time_total_s", "eval_time_total_s")


LAUNCHERS = ("lightning", "torchrun")


def timed_run(configs: list[str], overrides: list[str], root: Path, name: str, processes: int, threads: int,
              launcher: str = "lightning") -> dict:
    """Wall time and metrics of one `train` run of `processes` processes with `threads` threads each.

    `launcher` starts the processes of a split run: "lightning", Lightning's own launcher, which starts the others
    when the first reaches the fit (their start-up comes after its own); "torchrun", all at once, as `srun` does
    on a cluster."""
    if launcher not in LAUNCHERS:
        raise UserError(f"unknown launcher '{launcher}'; choose one of {', '.join(LAUNCHERS)}")
    extra = [f"run.root={root}", f"run.name={name}", "trainer.accelerator=cpu", "logger.backend=none",
             "trainer.enable_progress_bar=false"]
    start = [sys.executable]
    if processes > 1:
        extra += ["trainer.strategy=ddp", f"trainer.devices={processes}"]
        if launcher == "torchrun":
            start += ["-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={processes}"]
    env = dict(os.environ, OMP_NUM_THREADS=str(threads))
    cmd = [*start, "-m", "lit_knowledge.train", *[a for c in configs for a in ("--config", c)], *overrides,
           *extra, "--resume", "never"]
    started = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - started
    if proc.returncode:
        last = (proc.stderr.strip().splitlines() or ["(no output)"])[-1]
        raise UserError(f"the {name} run of the ddp bench failed: {last}")
    results = json.loads(next(Path(root).rglob(f"{name}/results.json")).read_text())
    return {"processes": processes, "threads_per_process": threads, "wall_s": wall,
            "launcher": launcher if processes > 1 else None,
            "metrics": {k: results["metrics"].get(k) for k in (*COMPARED, *WHERE_TIME_GOES, "train_tokens_per_process")}}


def ddp_speed(configs: list[str], overrides: list[str] = (), processes: int = 2, threads: int | None = None,
              per_device: bool = False, launcher: str = "lightning") -> dict:
    """`threads` in all (default: the cores) shared by the processes of each run; with `per_device`, every
    process of either run gets one thread, as one device each (one process on one device against several)."""
    from lit_knowledge.config import load_config

    cfg = load_config(list(configs), list(overrides))
    if cfg.model.name == "reader":
        from lit_knowledge.methods.pretrain import ensure_reader

        ensure_reader(cfg)  # pretrained now if it is not cached, so that no timed run pretrains
    threads = threads or os.cpu_count() or 1
    with tempfile.TemporaryDirectory(prefix="lk-ddp-bench-") as root:
        one = timed_run(configs, list(overrides), Path(root), "one", 1, 1 if per_device else threads)
        split = timed_run(configs, list(overrides), Path(root), "split", processes,
                          1 if per_device else max(1, threads // processes), launcher)
    return {"configs": list(configs), "overrides": list(overrides), "threads": threads, "per_device": per_device, "one": one, "split": split,
            "ratio": split["wall_s"] / one["wall_s"], "target_ratio": TARGET_RATIO, "load_average": os.getloadavg()}


def format_ddp(res: dict) -> str:
    one, split = res["one"], res["split"]
    lines = [f"configs: {' '.join(res['configs'])} {' '.join(res['overrides'])}".rstrip(),
             ("threads: one per process (one device each)" if res.get("per_device")
              else f"threads: {res['threads']} in all, shared by each run's processes")
             + f"; load average at the end {res['load_average'][0]:.2f}",
             f"split run started by: {res.get('split', {}).get('launcher') or 'lightning'}", "",
             "| run | processes x threads | wall (start to exit) | " + " | ".join(COMPARED) + " |",
             "|---|---|---|" + "---|" * len(COMPARED)]
    for name, r in (("one process", one), ("split (DDP)", split)):
        cells = [("–" if (v := r["metrics"].get(k)) is None else f"{v:.4g}") for k in COMPARED]
        lines.append(f"| {name} | {r['processes']} x {r['threads_per_process']} | {r['wall_s']:.1f} s | "
                     + " | ".join(cells) + " |")
    lines += ["", "| run | run wall | updating | evaluating | the rest (start-up, model, data) |", "|---|---|---|---|---|"]
    for name, r in (("one process", one), ("split (DDP)", split)):
        wall, update, evaluate = (r["metrics"].get(k) for k in WHERE_TIME_GOES)
        if None in (wall, update, evaluate):
            continue  # a results file written before these figures existed
        lines.append(f"| {name} | {wall:.1f} s | {update:.1f} s | {evaluate:.1f} s | {wall - update - evaluate:.1f} s |")
    verdict = "met" if res["ratio"] <= res["target_ratio"] else "missed"
    lines += ["", f"ratio split / one: {res['ratio']:.2f} (target <= {res['target_ratio']}: {verdict})"]
    return "\n".join(lines)
