"""Benchmarks. `overhead`: what the Lightning Trainer costs per training step over a plain PyTorch loop;
`memoryllm`: MemoryLLM's integrity and cost over many writes (lit_knowledge/methods/memoryllm/integrity.py);
`cmt`: CMT's bytes, write time, answer time and F1 as its bank grows (lit_knowledge/methods/cmt/cost.py);
`cmt-matching`: where the gold document ranks in CMT's bank over a stream, F1 reading k entries
(lit_knowledge/methods/cmt/matching.py);
`ddp`: a stream run's wall time on one process and on DDP processes that split its work (lit_knowledge/bench_ddp.py);
`reading`: the reader's F1 on a document's probes among other documents in its prompt (lit_knowledge/methods/reading.py).

    python -m lit_knowledge.bench overhead [--steps N] [--batch-size B] [--repeats R] [--warmup W]
                                           [--logger csv|none] [--progress-bar] [--json PATH] [key=value ...]

Both sides run, in one process, the project's pretraining step on the tiny model (`model.name=tiny`):

- lightning: `PretrainReader.training_step` / `configure_optimizers` (so `self.log("train/loss", ...)` runs
  every step) under a Trainer from `lit_knowledge.train.build_trainer` with the logger of
  `lit_knowledge.train.build_logger` (CSVLogger into a temp dir unless `--logger none`), the callbacks a run
  gets (the SIGUSR1 requeue handler), `log_every_n_steps` and gradient clipping from the config, the
  progress bar off unless `--progress-bar`, no checkpointing;
- plain: the same model weights (built by `lit_knowledge.models.load_model`), the same AdamW + LambdaLR
  (from the same `PretrainReader.configure_optimizers`), and per step: batch to device, forward, loss,
  backward, `clip_grad_norm_(cfg.trainer.gradient_clip_val)`, optimiser step, scheduler step, zero_grad.

Both consume the same pre-generated list of batches (`PretrainReader.sample` with a seeded random.Random,
collated with `lit_knowledge.data.prompts.collate`); Lightning reads it through a DataLoader over the
list with batch_size=None, the plain loop iterates the list. Each run takes W + N + 1 optimiser steps on
either side, from the same initial weights and seed.

How the per-step time is measured (the same definition on both sides): a timestamp at the start of every
iteration — for Lightning a Callback's `on_train_batch_start`, for the plain loop the top of the loop
body — and seconds per step = (t[W + N] - t[W]) / N. That is exactly N whole iterations, including
everything Lightning does between two steps (data fetch, batch transfer, hooks, `self.log`, the logger,
the progress bar, LR scheduler bookkeeping), and none of the one-off cost of `Trainer.fit`; the first W
steps are warm-up and the last step only closes the interval. The fixed costs are reported apart:
building the Trainer (and its logger), `fit()` call to the first step, and last step to `fit()` return.

Repeats alternate the order (plain, lightning, lightning, plain, ...) so slow drift of a shared machine
cancels; figures are medians over repeats, and `ratio lightning/plain` is the ratio of the two medians.
One short untimed run of each side comes first (imports, allocator, first-call costs). Threads are left as
torch has them (`torch.get_num_threads()`, printed). The target is ratio <= 1.05; the command exits 0
whatever the ratio: it is a benchmark, not a test.

Fairness notes: the timing Callback is one more callback for Lightning to dispatch every hook to (a few
microseconds per step); the DataLoader Lightning needs is counted as Lightning's cost (the plain loop
walks the list); the plain loop logs nothing, so `self.log` and the logger are counted as overhead too.
The defaults (20 steps x 3 repeats, batch 16) take well under a minute on a quiet 2-core CPU. On a busy
machine a step's compute time swings by tens of percent between runs, far more than the 5% being
measured: the output then says so (spread of the per-repeat ratios) and the load average is printed.
"""

from __future__ import annotations

import argparse
import copy
import json
import logging
import os
import random
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path
from types import SimpleNamespace

from lit_knowledge.bench_ddp import LAUNCHERS
from lit_knowledge.errors import cli_entry_point

TARGET_RATIO = 1.05


# ---------------------------------------------------------------------------------------------- helpers


def _sync(device) -> None:
    if device is not None and device.type == "cuda":
        import torch

        torch.cuda.synchronize(device)


def _median(xs: list[float]) -> float:
    return statistics.median(xs) if xs else float("nan")


def _per_step(stamps: list[float], warmup: int, steps: int) -> float:
    """Seconds per step over iterations warmup .. warmup+steps-1 (start-to-start timestamps)."""
    return (stamps[warmup + steps] - stamps[warmup]) / steps


def _loadavg() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except (AttributeError, OSError):
        return None


def bench_config(batch_size: int, logger: str, progress_bar: bool, overrides: list[str] = (), seed: int = 0):
    """The benchmark's config: model.name=tiny, method.name=pretrain, then the flags, then user overrides."""
    from lit_knowledge.config import load_config

    return load_config([], [
        "model.name=tiny", "method.name=pretrain", f"run.seed={seed}",
        f"pretrain.batch_size={batch_size}", f"data.batch_size={batch_size}",
        f"logger.backend={logger}", f"trainer.enable_progress_bar={str(bool(progress_bar)).lower()}",
        *overrides,
    ])


def _bench_module_cls():
    """PretrainReader with a no-op `on_train_end`.

    The real hook evaluates the reader and saves it into the reader cache (a bogus untrained reader would be
    cached under the config's key); it runs after the timed region anyway. Everything timed — training_step
    (with its `self.log`) and configure_optimizers — is PretrainReader's own.
    """
    from lit_knowledge.methods.pretrain import PretrainReader

    class BenchReader(PretrainReader):
        def on_train_end(self):
            pass

    return BenchReader


def make_batches(module, n: int, batch_size: int, seed: int) -> list[dict]:
    from lit_knowledge.data.prompts import collate

    rng = random.Random(seed)
    pad = module.tokenizer.pad_token_id
    return [collate([module.sample(rng) for _ in range(batch_size)], pad) for _ in range(n)]


# ---------------------------------------------------------------------------------------------- the two sides


def run_lightning(cfg, module_cls, init_state, batches, log_dir: str, seed: int) -> dict:
    """One Trainer.fit over `batches` (max_steps = len(batches)); timestamps of every step start."""
    import lightning as L
    from lightning.pytorch.callbacks import Callback
    from torch.utils.data import DataLoader

    from lit_knowledge.train import build_logger, build_trainer

    class StepClock(Callback):
        def __init__(self):
            self.starts: list[float] = []
            self.last_end = None
            self.device = None

        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            if self.device is None:
                self.device = pl_module.device
            _sync(self.device)
            self.starts.append(time.perf_counter())

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            self.last_end = time.perf_counter()

    L.seed_everything(seed, verbose=False)
    module = module_cls(cfg)
    module.model.load_state_dict(init_state)
    loader = DataLoader(batches, batch_size=None, shuffle=False)

    t0 = time.perf_counter()
    logger = build_logger(cfg, SimpleNamespace(path=Path(log_dir)))
    # The callbacks `lit_knowledge.train.run_experiment` gives a run (the method's own, the SIGUSR1 requeue
    # handler), then the clock; only the checkpoint callback (it needs a run directory) is left out.
    callbacks = list(module.callbacks()) if hasattr(module, "callbacks") else []
    from lit_knowledge.requeue import RequeueOnSignal

    callbacks.append(RequeueOnSignal(Path(log_dir)))
    clock = StepClock()
    trainer = build_trainer(cfg, run=None, logger=logger, max_steps=len(batches), max_epochs=None,
                            callbacks=[*callbacks, clock], model=module.model)
    t1 = time.perf_counter()
    trainer.fit(module, train_dataloaders=loader)
    _sync(clock.device)
    t2 = time.perf_counter()
    if len(clock.starts) != len(batches):
        raise RuntimeError(f"Lightning ran {len(clock.starts)} steps, expected {len(batches)}")
    return {"starts": clock.starts, "trainer_init_s": t1 - t0, "fit_setup_s": clock.starts[0] - t1,
            "fit_teardown_s": t2 - clock.last_end, "device": clock.device}


def run_plain(cfg, model, init_state, batches, device, seed: int) -> dict:
    """The same work in a plain loop; timestamps of every step start."""
    import lightning as L
    import torch

    from lit_knowledge.methods.pretrain import PretrainReader

    L.seed_everything(seed, verbose=False)
    model.load_state_dict(init_state)
    model.to(device)
    model.train()
    # The very optimiser and schedule the LightningModule configures (same hyper-parameters by construction).
    conf = PretrainReader.configure_optimizers(SimpleNamespace(cfg=cfg, model=model))
    opt, sched = conf["optimizer"], conf["lr_scheduler"]["scheduler"]
    params = [p for group in opt.param_groups for p in group["params"]]
    clip = cfg.trainer.gradient_clip_val
    starts = []
    with torch.enable_grad():
        for batch in batches:
            _sync(device)
            starts.append(time.perf_counter())
            batch = {k: v.to(device) for k, v in batch.items()}
            loss = model(**batch).loss
            loss.backward()
            if clip:
                torch.nn.utils.clip_grad_norm_(params, clip)
            opt.step()
            sched.step()
            opt.zero_grad()
    _sync(device)
    return {"starts": starts}


# ---------------------------------------------------------------------------------------------- the benchmark


def overhead(steps: int = 20, batch_size: int = 16, repeats: int = 3, warmup: int = 3, logger: str = "csv",
             progress_bar: bool = False, overrides: list[str] = (), seed: int = 0, verbose: bool = True) -> dict:
    """Time Lightning vs a plain loop; return the figures (seconds per step are medians over repeats).

    `overrides` are config `key=value` strings applied last (e.g. `trainer.log_every_n_steps=50`).
    """
    from lit_knowledge.errors import UserError

    if steps < 1 or repeats < 1 or warmup < 0 or batch_size < 1:
        raise UserError("--steps, --repeats and --batch-size must be >= 1 and --warmup >= 0")
    if logger not in ("csv", "none"):
        raise UserError(f"--logger {logger}: choose csv or none")
    import lightning
    import torch

    from lit_knowledge.models import load_model

    say = print if verbose else (lambda *a, **k: None)
    threads = torch.get_num_threads()
    load_before = _loadavg()
    cfg = bench_config(batch_size, logger, progress_bar, list(overrides), seed)

    import lightning as L

    L.seed_everything(seed, verbose=False)
    module_cls = _bench_module_cls()
    reference = module_cls(cfg)
    init_state = copy.deepcopy(reference.model.state_dict())
    model, tokenizer = load_model(cfg.model, cfg)
    if tokenizer.get_vocab() != reference.tokenizer.get_vocab():
        raise RuntimeError("load_model's tokenizer differs from PretrainReader's: the two sides would not match")
    n_batches = warmup + steps + 1
    batches = make_batches(reference, n_batches, batch_size, seed)
    tokens = sum(int(b["attention_mask"].sum()) for b in batches[warmup : warmup + steps])
    n_params = sum(p.numel() for p in reference.model.parameters())
    del reference

    plain, light, setup, teardown, trainer_init, paired = [], [], [], [], [], []
    with tempfile.TemporaryDirectory(prefix="lk_bench_") as tmp:
        # Untimed priming run of each side (first-call costs); it also tells the device Lightning picked.
        prime = batches[:2]
        device = run_lightning(cfg, module_cls, init_state, prime, f"{tmp}/prime", seed)["device"]
        run_plain(cfg, model, init_state, prime, device, seed)
        for r in range(repeats):
            order = ("plain", "lightning") if r % 2 == 0 else ("lightning", "plain")
            got = {}
            for side in order:
                if side == "plain":
                    out = run_plain(cfg, model, init_state, batches, device, seed)
                else:
                    out = run_lightning(cfg, module_cls, init_state, batches, f"{tmp}/r{r}", seed)
                    setup.append(out["fit_setup_s"])
                    teardown.append(out["fit_teardown_s"])
                    trainer_init.append(out["trainer_init_s"])
                got[side] = _per_step(out["starts"], warmup, steps)
            plain.append(got["plain"])
            light.append(got["lightning"])
            paired.append(got["lightning"] / got["plain"])
            say(f"  repeat {r + 1}/{repeats} ({' then '.join(order)}): plain {got['plain']:.5f} s/step, "
                f"lightning {got['lightning']:.5f} s/step, ratio {paired[-1]:.3f}", flush=True)

    plain_s, light_s = _median(plain), _median(light)
    return {
        "benchmark": "overhead",
        "plain_s_per_step": plain_s,
        "lightning_s_per_step": light_s,
        "ratio": light_s / plain_s,
        "target_ratio": TARGET_RATIO,
        "meets_target": light_s / plain_s <= TARGET_RATIO,
        "overhead_s_per_step": light_s - plain_s,
        "plain_s_per_step_repeats": plain,
        "lightning_s_per_step_repeats": light,
        "paired_ratio_repeats": paired,
        "paired_ratio_median": _median(paired),
        "fixed_costs_s": {"trainer_init": _median(trainer_init), "fit_setup_to_first_step": _median(setup),
                          "fit_last_step_to_return": _median(teardown)},
        "settings": {
            "steps": steps, "warmup": warmup, "repeats": repeats, "batch_size": batch_size, "seed": seed,
            "logger": logger, "progress_bar": bool(progress_bar),
            "log_every_n_steps": cfg.trainer.log_every_n_steps, "gradient_clip_val": cfg.trainer.gradient_clip_val,
            "precision": cfg.trainer.precision, "overrides": list(overrides),
            "tokens_per_timed_run": tokens, "model_parameters": n_params,
        },
        "environment": {
            "device": str(device), "torch_num_threads": threads, "torch_num_threads_after": torch.get_num_threads(),
            "torch": torch.__version__, "lightning": lightning.__version__, "python": sys.version.split()[0],
            "cpu_count": os.cpu_count(), "loadavg_before": load_before, "loadavg_after": _loadavg(),
        },
    }


def format_overhead(res: dict) -> str:
    s, env, fixed = res["settings"], res["environment"], res["fixed_costs_s"]

    def row(name, med, reps):
        return (f"{name:<10} {med:>14.5f} {med * 1000:>9.2f} {min(reps):>10.5f} {max(reps):>10.5f}   "
                + " ".join(f"{x:.5f}" for x in reps))

    lines = [
        f"Lightning overhead per training step: tiny Llama ({s['model_parameters'] / 1e6:.2f}M params), "
        f"PretrainReader.training_step, batch {s['batch_size']}",
        f"  {s['steps']} timed steps x {s['repeats']} repeats (+{s['warmup']} warm-up), logger={s['logger']}, "
        f"progress bar {'on' if s['progress_bar'] else 'off'}, log_every_n_steps={s['log_every_n_steps']}, "
        f"gradient_clip_val={s['gradient_clip_val']}, precision={s['precision']}",
        f"  device={env['device']}, torch threads={env['torch_num_threads']}, cpus={env['cpu_count']}, "
        f"load average {env['loadavg_before']} -> {env['loadavg_after']}, "
        f"torch {env['torch']}, lightning {env['lightning']}"
        + (f", overrides {' '.join(s['overrides'])}" if s["overrides"] else ""),
        "",
        f"{'side':<10} {'s/step median':>14} {'ms/step':>9} {'min':>10} {'max':>10}   per repeat",
        row("plain", res["plain_s_per_step"], res["plain_s_per_step_repeats"]),
        row("lightning", res["lightning_s_per_step"], res["lightning_s_per_step_repeats"]),
        "",
        f"overhead per step: {res['overhead_s_per_step'] * 1000:+.2f} ms; paired ratios per repeat: "
        + " ".join(f"{x:.3f}" for x in res["paired_ratio_repeats"]),
        f"fixed costs of Lightning (median, not in the per-step figures): Trainer + logger built "
        f"{fixed['trainer_init']:.3f} s, fit() to first step {fixed['fit_setup_to_first_step']:.3f} s, "
        f"last step to fit() return {fixed['fit_last_step_to_return']:.3f} s",
    ]
    paired = res["paired_ratio_repeats"]
    if len(paired) > 1 and max(paired) - min(paired) > TARGET_RATIO - 1:
        lines.append(f"note: the per-repeat ratios spread over {max(paired) - min(paired):.3f}, more than the "
                     f"{TARGET_RATIO - 1:.2f} margin being measured: the machine is noisy (load average above); "
                     "rerun when it is quiet or with more --steps/--repeats")
    if env["torch_num_threads_after"] != env["torch_num_threads"]:
        lines.append(f"warning: torch threads changed during the run: {env['torch_num_threads']} -> "
                     f"{env['torch_num_threads_after']}")
    lines.append(f"ratio lightning/plain = {res['ratio']:.3f} (target <= {res['target_ratio']:.2f})")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------- command line


def parse_args(argv):
    parser = argparse.ArgumentParser(prog="python -m lit_knowledge.bench", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="bench", required=True)
    p = sub.add_parser("overhead", help="seconds per training step: Lightning Trainer vs a plain PyTorch loop",
                       description="Seconds per training step of the tiny model under Lightning and in a plain "
                                   f"PyTorch loop, and their ratio (target <= {TARGET_RATIO}).")
    p.add_argument("overrides", nargs="*", help="config key=value overrides (e.g. trainer.log_every_n_steps=50)")
    p.add_argument("--steps", type=int, default=20, help="timed optimiser steps per run (default 20)")
    p.add_argument("--batch-size", type=int, default=16, help="examples per batch (default 16)")
    p.add_argument("--repeats", type=int, default=3, help="runs of each side, order alternating (default 3)")
    p.add_argument("--warmup", type=int, default=3, help="untimed steps at the start of every run (default 3)")
    p.add_argument("--logger", choices=("csv", "none"), default="csv", help="Lightning logger (default csv)")
    p.add_argument("--progress-bar", action=argparse.BooleanOptionalAction, default=False,
                   help="Lightning progress bar (default off)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", metavar="PATH", help="also write the figures to this JSON file")
    m = sub.add_parser("memoryllm", help="MemoryLLM over many writes: pool bytes, held-out LM loss, time per "
                                         "write, first and last writes answered",
                       description="MemoryLLM's integrity and cost over many writes of unrelated text "
                                   "(lit_knowledge/methods/memoryllm/integrity.py).")
    m.add_argument("overrides", nargs="*", help="config key=value overrides (e.g. method.pool_size=256)")
    m.add_argument("--config", default="configs/memoryllm/memoryllm.yaml", help="the memoryllm config")
    m.add_argument("--writes", type=int, default=2000, help="unrelated documents written (default 2000)")
    m.add_argument("--every", type=int, default=250, help="record every this many writes (default 250)")
    m.add_argument("--json", metavar="PATH", help="also write the figures to this JSON file")
    r = sub.add_parser("memoryllm-recency", help="MemoryLLM after one more write: does the pool lose a document, or "
                       "does the model stop reading it? (four pools over the same two documents)")
    r.add_argument("overrides", nargs="*", help="config key=value overrides (e.g. method.pool_size=256)")
    r.add_argument("--config", default="configs/memoryllm/memoryllm.yaml", help="the memoryllm config")
    r.add_argument("--pairs", type=int, default=40, help="pairs of documents (default 40)")
    r.add_argument("--json", metavar="PATH", help="also write the figures to this JSON file")
    c = sub.add_parser("cmt", help="CMT as its bank grows: bytes and write time per document, answer time, F1",
                       description="CMT's cost as its bank grows (lit_knowledge/methods/cmt/cost.py).")
    c.add_argument("overrides", nargs="*", help="config key=value overrides (e.g. method.top_k_aggregation=false)")
    c.add_argument("--config", action="append", help="cmt config, repeatable (default configs/cmt/cmt.yaml)")
    c.add_argument("--sizes", type=int, nargs="+", default=[16, 64, 256, 1000], help="bank sizes to record")
    c.add_argument("--json", metavar="PATH", help="also write the figures to this JSON file")
    cm = sub.add_parser("cmt-matching", help="CMT over a stream's bank: where the gold document ranks, F1 reading "
                                             "k entries, whom a wrong best match shares a name with",
                        description="CMT's matching over the stream's bank (lit_knowledge/methods/cmt/matching.py).")
    cm.add_argument("overrides", nargs="*", help="config key=value overrides (e.g. data.world.stream_seed=1)")
    cm.add_argument("--config", action="append", help="cmt config, repeatable (default configs/cmt/cmt.yaml)")
    cm.add_argument("--probes", type=int, default=200, help="probes asked (a fixed draw; default 200)")
    cm.add_argument("--json", metavar="PATH", help="also write the figures to this JSON file")
    g = sub.add_parser("reading", help="the reader: F1 on a document's probes among other documents in its prompt",
                       description="Can the model find a fact among several documents in its prompt? The asked "
                                   "document first or last of t stream documents (lit_knowledge/methods/reading.py).")
    g.add_argument("overrides", nargs="*", help="config key=value overrides (e.g. pretrain.context_documents=8)")
    g.add_argument("--config", action="append", help="run config, repeatable (default: none, the embedded default)")
    g.add_argument("--documents", type=int, default=5, help="most documents in the prompt (default 5)")
    g.add_argument("--json", metavar="PATH", help="also write the figures to this JSON file")
    d = sub.add_parser("ddp", help="wall time of a stream run on one process and on several that split its work",
                       description="One process against DDP processes that split the batches and the probes "
                                   "(lit_knowledge/bench_ddp.py); the ratio of the wall times.")
    d.add_argument("overrides", nargs="*", help="config key=value overrides")
    d.add_argument("--config", action="append", help="run config, repeatable (default: SELF-PARAM's batch setting, "
                                                     "configs/selfparam/batch.yaml, 100 documents)")
    d.add_argument("--processes", type=int, default=2, help="DDP processes (default 2)")
    d.add_argument("--threads", type=int, default=None, help="threads in all, shared by the processes (default: "
                                                               "the machine's cores)")
    d.add_argument("--per-device", action="store_true", help="one thread per process in both runs (one device "
                                                              "each) instead of the same threads shared")
    d.add_argument("--launcher", choices=LAUNCHERS, default="lightning",
                   help="what starts the split run's processes: Lightning's launcher (the others start when the "
                        "first reaches the fit; default) or torchrun (all at once, as srun does)")
    d.add_argument("--json", metavar="PATH", help="also write the figures to this JSON file")
    return parser.parse_args(argv)


def write_json(path: str | None, res: dict) -> None:
    if path:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(json.dumps(res, indent=2) + "\n")
        print(f"figures written to {path}")


def quiet_bench(compute, fmt, json_path: str | None) -> int:
    """Run a bench's `compute()` with library warnings silenced, write its figures to `json_path` (if any) and
    print `fmt(figures)`."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = compute()
    write_json(json_path, res)
    print(fmt(res))
    return 0


def bench_ddp(args) -> int:
    from lit_knowledge.bench_ddp import ddp_speed, format_ddp

    res = ddp_speed(args.config or ["configs/selfparam/batch.yaml"], args.overrides, args.processes, args.threads,
                    args.per_device, args.launcher)
    write_json(args.json, res)
    print(format_ddp(res))
    return 0


def bench_cmt(args) -> int:
    from lit_knowledge.config import load_config
    from lit_knowledge.methods.cmt.cost import bank_cost, format_cost

    cfg = load_config(args.config or ["configs/cmt/cmt.yaml"], args.overrides)
    return quiet_bench(lambda: bank_cost(cfg, args.sizes), format_cost, args.json)


def bench_cmt_matching(args) -> int:
    from lit_knowledge.config import load_config
    from lit_knowledge.methods.cmt.matching import format_matching, matching_over_bank

    cfg = load_config(args.config or ["configs/cmt/cmt.yaml"], args.overrides)
    return quiet_bench(lambda: matching_over_bank(cfg, probes=args.probes), format_matching, args.json)


def bench_memoryllm(args) -> int:
    from lit_knowledge.config import load_config
    from lit_knowledge.methods.memoryllm.integrity import format_integrity, integrity

    cfg = load_config([args.config], args.overrides)
    return quiet_bench(lambda: integrity(cfg, writes=args.writes, every=args.every), format_integrity, args.json)


def bench_memoryllm_recency(args) -> int:
    from lit_knowledge.config import load_config
    from lit_knowledge.methods.memoryllm.recency import format_recency, recency

    cfg = load_config([args.config], args.overrides)
    return quiet_bench(lambda: recency(cfg, pairs=args.pairs), format_recency, args.json)


def bench_reading(args) -> int:
    from lit_knowledge.config import load_config
    from lit_knowledge.methods.reading import format_reading, reading_among_documents

    cfg = load_config(args.config or [], args.overrides)
    return quiet_bench(lambda: reading_among_documents(cfg, max_documents=args.documents), format_reading, args.json)


@cli_entry_point
def main(argv=None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    import lightning.pytorch  # noqa: F401  (it sets its loggers to INFO on import: quiet them afterwards)

    for name in ("lightning.pytorch", "lightning.fabric"):
        logging.getLogger(name).setLevel(logging.WARNING)  # "GPU available", "max_steps reached", tips
    if args.bench == "memoryllm":
        return bench_memoryllm(args)
    if args.bench == "memoryllm-recency":
        return bench_memoryllm_recency(args)
    if args.bench == "cmt":
        return bench_cmt(args)
    if args.bench == "cmt-matching":
        return bench_cmt_matching(args)
    if args.bench == "ddp":
        return bench_ddp(args)
    if args.bench == "reading":
        return bench_reading(args)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = overhead(steps=args.steps, batch_size=args.batch_size, repeats=args.repeats, warmup=args.warmup,
                       logger=args.logger, progress_bar=args.progress_bar, overrides=args.overrides,
                       seed=args.seed)
    write_json(args.json, res)
    print()
    print(format_overhead(res))  # its last line gives the lightning/plain ratio against the 1.05 target
    return 0


if __name__ == "__main__":
    sys.exit(main())
