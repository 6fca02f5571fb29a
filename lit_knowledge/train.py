"""The one entry point: `python -m lit_knowledge.train --config configs/X.yaml [--config more.yaml] [key=value ...]`.

Reads the config, builds the method (its model, tokenizer and data), runs it under a Lightning
Trainer inside its run directory, and writes the results. See README.md and docs/config.md.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from omegaconf import OmegaConf

from lit_knowledge import preemption
from lit_knowledge.config import describe, is_fragment, load_config, read_config, to_dict, to_yaml
from lit_knowledge.errors import UserError, cli_entry_point

CONFIGS = Path(__file__).resolve().parents[1] / "configs"

def parse_args(argv):
    parser = argparse.ArgumentParser(
        prog="python -m lit_knowledge.train",
        description="Run a knowledge-injection experiment. Configs merge left to right, then key=value overrides.",
        epilog="Every config key, its type and default: --help-config.",
    )
    parser.add_argument("overrides", nargs="*", help="key=value overrides, e.g. trainer.max_steps=10")
    parser.add_argument("--config", action="append", default=[],
                        help="YAML config file (repeatable; the files its include: list names merge first)")
    parser.add_argument("--print-config", action="store_true", help="print the resolved config and exit")
    parser.add_argument("--dry-run", action="store_true", help="build data, model and method, then exit")
    parser.add_argument("--resume", default="auto",
                        help="auto (newest checkpoint of this run directory), never, or a checkpoint path")
    parser.add_argument("--help-config", action="store_true", help="list every config key with its help")
    parser.add_argument("--list-methods", action="store_true", help="list the registered methods")
    return parser.parse_intermixed_args(argv)  # overrides may come before, between or after options


def shipped_configs(configs_dir: Path = CONFIGS) -> dict[str, list[str]]:
    """method name -> the run configs under configs/ that choose it (group files and _*.yaml fragments excluded)."""
    found: dict[str, list[str]] = {}
    for path in sorted(p for ext in ("*.yaml", "*.yml") for p in configs_dir.rglob(ext)):
        if "experiments" in path.relative_to(configs_dir).parts or is_fragment(path):
            continue
        try:
            method = OmegaConf.select(read_config(str(path)), "method.name")
        except UserError:  # a broken file is reported when it is run, not here
            continue
        if method is not None:
            found.setdefault(str(method), []).append(str(path.relative_to(configs_dir.parent)))
    return found


def list_methods() -> str:
    """Each method, its one-line description and the shipped configs that run it (no model is loaded)."""
    from lit_knowledge.methods import METHODS, description

    configs = shipped_configs()
    width = max(map(len, METHODS.names()))
    lines = []
    for name in METHODS.names():
        lines.append(f"{name:<{width}}  {description(name)}")
        lines.append(f"{'':<{width}}  configs: {', '.join(configs.get(name, [])) or '(none shipped)'}")
    return "\n".join(lines) + "\n"


def build_logger(cfg, run, resumed_step: int | None = None):
    """The configured Lightning logger (or False). A resumed run continues its history: the CSV file keeps its
    rows up to `resumed_step` (the checkpoint's global step), W&B reuses the run id kept in run_meta.json."""
    backend = cfg.logger.backend
    if backend == "none":
        return False
    if backend == "csv":
        from lit_knowledge.history import ResumableCSVLogger

        return ResumableCSVLogger(save_dir=str(run.path), name="logs", version="", keep_until=resumed_step)
    os.environ.setdefault("WANDB_SILENT", "true")
    from lightning.pytorch.loggers import WandbLogger

    return WandbLogger(
        project=cfg.logger.project, entity=cfg.logger.entity, group=cfg.logger.group or cfg.run.experiment,
        tags=list(cfg.logger.tags), name=cfg.logger.name or run.name, id=run.meta["wandb_run_id"],
        resume="allow", mode=cfg.logger.mode, save_dir=str(run.path), config=to_dict(cfg),
    )


def build_strategy(cfg, model=None):
    """`trainer.strategy` as Lightning takes it. FSDP wraps each decoder layer of the model (the classes
    Hugging Face lists in `_no_split_modules`) and checkpoints their activations."""
    name = cfg.trainer.strategy
    if name.startswith("deepspeed"):
        try:
            import deepspeed  # noqa: F401
        except ImportError:
            raise UserError(f"trainer.strategy={name} needs deepspeed: pip install -e '.[deepspeed]'") from None
    if name == "ddp":
        from lightning.pytorch.strategies import DDPStrategy

        # No module here keeps a buffer that training changes (rotary tables are constant; method state that
        # is not a weight is written identically on every rank), so the copy of rank 0's buffers DDP would make
        # before every forward is a collective per step for nothing.
        return DDPStrategy(broadcast_buffers=False)
    if name != "fsdp":
        return name
    from lightning.pytorch.strategies import FSDPStrategy

    layers = set()
    if model is not None:
        wanted = set(getattr(model, "_no_split_modules", None) or [])
        layers = {type(m) for m in model.modules() if type(m).__name__ in wanted}
    if not layers:
        return FSDPStrategy()
    return FSDPStrategy(auto_wrap_policy=layers, activation_checkpointing_policy=layers)


def build_trainer(cfg, run=None, logger=False, max_steps: int | None = None, max_epochs: int | None = 1,
                  callbacks: list | None = None, model=None, phase: str = "training"):
    """A Trainer from `cfg.trainer`; the method's own callbacks come before the checkpoint callback, and
    the progress bar (when on) is one bar named `phase`."""
    import lightning as L
    from lightning.pytorch.plugins.environments import SLURMEnvironment

    from lit_knowledge.console import PhaseBar

    callbacks = list(callbacks or [])
    if cfg.trainer.enable_progress_bar:
        callbacks.append(PhaseBar(phase))
    plugins = []
    if SLURMEnvironment.detect():  # our RequeueOnSignal handles SIGUSR1 at a batch boundary instead
        plugins.append(SLURMEnvironment(auto_requeue=False))
    if run is not None:
        from lit_knowledge.checkpoints import checkpoint_callback

        callbacks.append(checkpoint_callback(cfg.trainer, str(run.checkpoints)))
    return L.Trainer(
        accelerator=cfg.trainer.accelerator, devices=cfg.trainer.devices, num_nodes=cfg.trainer.num_nodes,
        strategy=build_strategy(cfg, model), precision=cfg.trainer.precision,
        max_steps=cfg.trainer.max_steps if cfg.trainer.max_steps >= 0 else (max_steps if max_steps is not None else -1),
        max_epochs=max_epochs, accumulate_grad_batches=cfg.trainer.accumulate_grad_batches,
        gradient_clip_val=cfg.trainer.gradient_clip_val, log_every_n_steps=cfg.trainer.log_every_n_steps,
        enable_progress_bar=cfg.trainer.enable_progress_bar, enable_checkpointing=run is not None,
        enable_model_summary=False, logger=logger, callbacks=callbacks, num_sanity_val_steps=0,
        use_distributed_sampler=False,  # streams keep their order; every rank walks the same plan
        plugins=plugins,
        default_root_dir=str(run.path) if run else None,
    )


def check_trainer(cfg) -> None:
    """Build a throwaway Trainer from `cfg.trainer` (cheap: no model, no process group), so that a setting
    Lightning refuses ends in one line before anything loads or is written. The usual mistakes are named first."""
    import torch

    t = cfg.trainer
    if t.accelerator in ("gpu", "cuda") and not torch.cuda.is_available():
        raise UserError(f"trainer.accelerator={t.accelerator} but torch sees no GPU on this machine; "
                        "use trainer.accelerator=cpu (or auto)")
    if t.strategy == "fsdp" or t.strategy.startswith("deepspeed"):
        build_strategy(cfg)  # deepspeed installed?
        if not torch.cuda.is_available() or t.accelerator == "cpu":
            raise UserError(f"trainer.strategy={t.strategy} shards the model over GPUs, and this run has none; "
                            "use trainer.strategy=auto (or ddp) on CPU")
    try:
        build_trainer(cfg)
    except UserError:
        raise
    except Exception as e:  # Lightning's MisconfigurationException, ValueError, ...
        raise UserError(f"Lightning refuses the trainer settings: {_first_line(e)}; fix the trainer.* keys") from None


def check_optimizer(module) -> None:
    """Build the method's optimizer once, so that a value torch refuses (a learning rate, a weight decay)
    ends in one line before the run directory is written."""
    try:
        module.configure_optimizers()
    except UserError:
        raise
    except (ValueError, TypeError) as e:  # torch.optim's checks of its hyper-parameters
        raise UserError(f"the optimizer refuses the method's settings: {_first_line(e)}; fix the method.* keys") \
            from None


def _first_line(e: BaseException) -> str:
    return (str(e).strip().splitlines() or [type(e).__name__])[0]


def build(cfg, dry_run: bool = False):
    """(method module, datamodule) for the config.

    A dry run never pretrains or trains a part: when the world's reader is not cached yet, an untrained tiny
    model of the same shape stands in for it, and a method's part not built yet (a memory module) is untrained.
    """
    from contextlib import nullcontext

    from lit_knowledge.builds import without_building
    from lit_knowledge.methods import METHODS

    method_cls = METHODS.get(cfg.method.name)
    # inside without_building(), `components.load_model` stands an untrained model in for a reader not cached yet
    with without_building() if dry_run else nullcontext():
        module = method_cls(cfg)
    return module, module.datamodule()


def note_checkpoint_cost(cfg, run, callback) -> None:
    """Add this part's checkpoints (count, seconds) to run_meta.json's running totals and print them."""
    from lit_knowledge.checkpoints import interval

    if callback is None or not run.writer:
        return
    total = run.meta.setdefault("checkpoints", {"written": 0, "seconds": 0.0})
    total.update({"written": total["written"] + callback.written, "seconds": total["seconds"] + callback.seconds,
                  "interval": interval(cfg.trainer)})
    run.save_meta()
    print(f"lit_knowledge: {callback.written} checkpoint{'' if callback.written == 1 else 's'} written in {callback.seconds:.1f} s "
          f"({interval(cfg.trainer)}; trainer.checkpoint_every_n_minutes / _steps)", file=sys.stderr)


def plan_left(module, global_step: int) -> str | None:
    """Why a run ended before its plan did (trainer.max_steps), or None when it went through: a stream run's
    batch plan, or the step budget of a run that has one (pretraining, transfer)."""
    go_on = "run the same command with a larger trainer.max_steps (or -1) to go on from there"
    budget = getattr(module, "step_budget", None)
    if budget is not None:
        return None if global_step >= budget else f"stopped by trainer.max_steps at step {global_step} of its {budget}; {go_on}"
    if not getattr(module, "batches_left", 0):
        return None
    return (f"stopped by trainer.max_steps after {module.batches_done} of {module.plan_batches} batches of the "
            f"stream plan ({len(module.history)} stream steps evaluated); {go_on}")


def run_experiment(cfg, resume: str = "auto") -> dict:
    """Build, train and evaluate one run in its run directory; return its results dict."""
    import lightning as L

    from lit_knowledge.console import quiet_libraries
    from lit_knowledge.evaluation.results import log_results_to_logger, write_results
    from lit_knowledge.peak_memory import PeakMemory
    from lit_knowledge.requeue import RequeueOnSignal
    from lit_knowledge.run import RunDir, checkpoint_step, resume_summary
    from lit_knowledge.slurm import check_allocation

    check_allocation(cfg.trainer)
    quiet_libraries()
    # Everything that can reject the input runs before the run directory is touched, cheapest first (the
    # trainer settings, the run directory and checkpoint, then the data and the model): a bad input ends in
    # one line and leaves nothing half-written.
    check_trainer(cfg)
    run = RunDir(cfg)
    run.check(resume)
    done = run.completed_results(resume)
    if done is not None:
        print(f"lit_knowledge: {run.name} has completed; its results are in {run.path} (pass --resume never to run "
              "it again)", file=sys.stderr)
        return done
    L.seed_everything(cfg.run.seed, workers=True, verbose=False)
    started, peak = time.perf_counter(), PeakMemory()
    preemption.phase = "the build of the data and the model"
    module, datamodule = build(cfg)
    check_optimizer(module)
    ckpt = run.start(resume)
    preemption.phase = "the run, outside a training batch"
    try:
        if ckpt and run.writer:
            wandb = f"; W&B run {run.meta['wandb_run_id']} continues" if cfg.logger.backend == "wandb" else ""
            print(f"lit_knowledge: resuming {run.name} from {ckpt} at {resume_summary(ckpt)}{wandb}", file=sys.stderr)
        logger = build_logger(cfg, run, checkpoint_step(ckpt) if ckpt else None)
        # Pretraining and transfer stop at their step budget; a stream run at the end of its batch plan (StreamWalk
        # stops it, so epochs are unlimited: a run cut short by trainer.max_steps goes on in a new epoch when resumed).
        max_steps = getattr(module, "step_budget", None)
        requeue = RequeueOnSignal(run.path)
        callbacks = (module.callbacks() if hasattr(module, "callbacks") else []) + [requeue]
        trainer = build_trainer(cfg, run, logger, max_steps=max_steps, max_epochs=None if max_steps else -1,
                                callbacks=callbacks, model=getattr(module, "model", None), phase=module.phase)
        trainer.fit(module, datamodule=datamodule, ckpt_path=ckpt)
        note_checkpoint_cost(cfg, run, trainer.checkpoint_callback)
        if requeue.requeued:
            run.finish("requeued")
            return {"requeued": True, "run_dir": str(run.path), "metrics": {}, "kind": module.kind}
        results = module.results()
        unfinished = plan_left(module, trainer.global_step)
        if unfinished:
            results["stopped"] = unfinished
        results.update({"method": cfg.method.name, "experiment": cfg.run.experiment, "run": run.name,
                        "config": to_dict(cfg)})
        results["metrics"].setdefault("wall_time_s", time.perf_counter() - started)
        # This process since the run (or its resumed part) began: the build, the stream and the evaluation.
        results["metrics"]["peak_memory_bytes"] = peak.bytes()
        results["peak_memory_scope"] = peak.scope
        if trainer.is_global_zero:
            write_results(run.path, results)
            log_results_to_logger(logger or None, results, run.path)
    except preemption.Preempted as p:
        run.finish("requeued")  # its checkpoints stay: the requeued job resumes from the newest
        p.saved = p.saved or f"it resumes from the newest checkpoint of {run.path}"
        raise
    except BaseException:
        run.finish("failed")
        raise
    run.finish("stopped" if unfinished else "completed")
    if logger and cfg.logger.backend == "wandb":
        import wandb

        wandb.finish()
    results["run_dir"] = str(run.path)
    return results


@cli_entry_point
@preemption.entry_point  # first thing: a preemption notice during start-up requeues instead of killing the job
def main(argv=None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    if args.help_config or args.list_methods:
        from lit_knowledge.methods import METHODS, params_of

        if args.list_methods:
            print(list_methods(), end="")
        else:
            print(describe({name: params_of(name) for name in METHODS.names()}), end="")
        return 0
    if args.resume not in ("auto", "never") and not Path(args.resume).is_file():
        raise UserError(f"--resume {args.resume}: no such checkpoint; use auto, never, or a .ckpt path")
    cfg = load_config(args.config, args.overrides)
    if args.print_config:
        print(to_yaml(cfg), end="")
        return 0
    if args.dry_run:
        import lightning as L

        from lit_knowledge.console import quiet_libraries
        from lit_knowledge.run import RunDir
        from lit_knowledge.slurm import check_allocation

        check_allocation(cfg.trainer)
        quiet_libraries()
        check_trainer(cfg)
        RunDir(cfg).check(args.resume)  # writes nothing
        L.seed_everything(cfg.run.seed, verbose=False)
        module, datamodule = build(cfg, dry_run=True)
        check_optimizer(module)
        counts = module.stream.counts() if hasattr(module, "stream") else {}
        print(f"dry run ok: method={cfg.method.name} model={cfg.model.name} data={cfg.data.source} {counts}")
        return 0
    results = run_experiment(cfg, args.resume)
    from lit_knowledge.run import global_rank

    if global_rank() != 0:  # under DDP (Lightning's launcher, torchrun or srun) one process reports the run
        return 0
    from lit_knowledge.evaluation import main_metrics
    from lit_knowledge.evaluation.results import results_table

    if results.get("requeued"):
        print(f"requeued: checkpoint saved in {results['run_dir']}; the same command resumes")
        return 0
    main = main_metrics(results.get("kind"))
    print(results_table([results], [c for c in main if c in results["metrics"]] if main else None))
    print(f"run directory: {results['run_dir']}")
    if results.get("stopped"):
        print(f"lit_knowledge: {results['stopped']}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
