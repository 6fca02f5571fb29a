"""SLURM helpers: check that a job's allocation matches the Trainer config, and build `sbatch` commands.

Two things go wrong most often when a Lightning run is submitted to SLURM:

* the allocation and the Trainer disagree (`--ntasks-per-node=2` but `trainer.devices=4`, or
  `--nodes=1` but `trainer.num_nodes=2`): Lightning then hangs waiting for ranks that never start,
  or fails deep inside its setup. `check_allocation` turns that into one line naming both fixes.
* the `sbatch` resources are written by hand and drift from the config. `sbatch_command` derives
  them from the config instead (see `python -m lit_knowledge.submit`).

Interactive jobs: Lightning ignores SLURM's task layout when the job name is `bash` or `interactive`
(e.g. `srun --job-name=interactive --pty bash`) and launches the device processes itself.
`check_allocation` does not special-case them: it compares the config with the allocation whenever
SLURM variables are present. In an interactive shell either request the allocation with
`--ntasks-per-node=<trainer.devices> --nodes=<trainer.num_nodes>`, or run with `trainer.devices=auto`
(which skips the device check; the node check still applies).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from typing import Any, Optional

from lit_knowledge.errors import UserError

# trainer.accelerator values for which `sbatch_command` requests GPUs with --gres=gpu:<devices>.
GPU_ACCELERATORS = ("gpu", "cuda", "auto")

TRAIN_SCRIPT = "sbatch/train.sbatch"
MULTINODE_SCRIPT = "sbatch/multinode.sbatch"

# sbatch options that would contradict the resources derived from trainer.devices / trainer.num_nodes.
_RESOURCE_OPTIONS = {
    "--nodes": "trainer.num_nodes",
    "-N": "trainer.num_nodes",
    "--ntasks-per-node": "trainer.devices",
    "--ntasks": "trainer.devices and trainer.num_nodes",
    "-n": "trainer.devices and trainer.num_nodes",
}

_TASKS_GROUP = re.compile(r"^\s*(\d+)\s*(?:\(x(\d+)\))?\s*$")


# ---------------------------------------------------------------------------------------------- parsing


def parse_tasks_per_node(value: str) -> int:
    """Tasks per node from SLURM's notation: "4", "4(x2)" (4 on each of 2 nodes), "4(x2),4".

    Raises UserError when the nodes get different numbers of tasks ("4(x2),2"): Lightning needs the
    same number of processes on every node.
    """
    counts = set()
    for group in str(value).split(","):
        m = _TASKS_GROUP.match(group)
        if not m:
            raise UserError(f"cannot read SLURM tasks per node {value!r}; resubmit with --ntasks-per-node=<trainer.devices>")
        counts.add(int(m.group(1)))
    if len(counts) != 1:
        raise UserError(
            f"SLURM gives an uneven number of tasks per node ({value}); resubmit with --ntasks-per-node=<trainer.devices>"
        )
    return counts.pop()


def requested_devices(devices: Any) -> Optional[int]:
    """Processes per node that `trainer.devices` asks Lightning for; None when Lightning decides ('auto', -1)."""
    if devices is None or isinstance(devices, bool):
        return None
    if isinstance(devices, int):
        return None if devices == -1 else devices
    if isinstance(devices, str):
        text = devices.strip()
        if text in ("auto", "-1", ""):
            return None
        if "," in text:  # Lightning reads "0,1" as a list of device indices
            return len([part for part in text.split(",") if part.strip()])
        try:
            return int(text)
        except ValueError:
            raise UserError(f"trainer.devices={devices!r} is not a number, a list or 'auto'") from None
    try:  # list / tuple / ListConfig of device indices
        return len(list(devices))
    except TypeError:
        raise UserError(f"trainer.devices={devices!r} is not a number, a list or 'auto'") from None


def _get(obj: Any, key: str, default: Any = None) -> Any:
    """obj[key] for mappings (dict, DictConfig), obj.key for anything else (dataclasses, namespaces)."""
    if isinstance(obj, Mapping):
        return obj.get(key, default)
    return getattr(obj, key, default)


def _trainer_section(cfg: Any) -> Any:
    """Accept the whole config or its `trainer` section."""
    trainer = _get(cfg, "trainer")
    return trainer if trainer is not None else cfg


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


# ---------------------------------------------------------------------------------------------- checks


def slurm_tasks_per_node(env: Mapping[str, str]) -> Optional[int]:
    """Tasks per node of the current allocation: SLURM_NTASKS_PER_NODE, else SLURM_NTASKS / node count."""
    if env.get("SLURM_NTASKS_PER_NODE"):
        return parse_tasks_per_node(env["SLURM_NTASKS_PER_NODE"])
    ntasks = env.get("SLURM_NTASKS")
    nodes = slurm_num_nodes(env) or 1
    if ntasks:
        total = int(ntasks)
        if total % nodes:
            raise UserError(
                f"SLURM gives {_plural(total, 'task')} on {_plural(nodes, 'node')} (--ntasks), not the same number on "
                "every node; resubmit with --ntasks-per-node=<trainer.devices>"
            )
        return total // nodes
    return None


def slurm_num_nodes(env: Mapping[str, str]) -> Optional[int]:
    """Nodes of the current allocation (SLURM_NNODES, else SLURM_JOB_NUM_NODES), or None."""
    for key in ("SLURM_NNODES", "SLURM_JOB_NUM_NODES"):
        if env.get(key):
            return int(env[key])
    return None


def check_allocation(trainer_cfg: Any, env: Mapping[str, str] = os.environ) -> None:
    """Raise UserError when a SLURM job's allocation does not match `trainer.devices` / `trainer.num_nodes`.

    `trainer_cfg` is the `trainer` section of the config (the whole config works too). Outside SLURM
    (no SLURM_JOB_ID) this does nothing. Inside a job:

    * devices: `trainer.devices` must equal the tasks per node (SLURM_NTASKS_PER_NODE, which may read
      "4" or "4(x2)", else SLURM_NTASKS divided by the node count). Skipped for `trainer.devices` 'auto'
      or -1, and when SLURM reports neither variable.
    * nodes: `trainer.num_nodes` must equal SLURM_NNODES (or SLURM_JOB_NUM_NODES) when either is set.

    Interactive jobs (job name `bash` / `interactive`) are checked the same way; see the module docstring.
    """
    if not env.get("SLURM_JOB_ID"):
        return
    trainer = _trainer_section(trainer_cfg)
    problems = []

    want_devices = requested_devices(_get(trainer, "devices", 1))
    have_tasks = slurm_tasks_per_node(env) if want_devices is not None else None
    if have_tasks is not None and want_devices != have_tasks:
        problems.append(
            f"trainer.devices={want_devices} but SLURM gives {_plural(have_tasks, 'task')} per node (--ntasks-per-node); "
            f"set trainer.devices={have_tasks} or resubmit with --ntasks-per-node={want_devices}"
        )

    want_nodes = int(_get(trainer, "num_nodes", 1))
    have_nodes = slurm_num_nodes(env)
    if have_nodes is not None and want_nodes != have_nodes:
        problems.append(
            f"trainer.num_nodes={want_nodes} but SLURM gives {_plural(have_nodes, 'node')} (--nodes); "
            f"set trainer.num_nodes={have_nodes} or resubmit with --nodes={want_nodes}"
        )
    if problems:
        raise UserError("; also ".join(problems))


# ---------------------------------------------------------------------------------------------- sbatch


def _option_name(arg: str) -> str:
    if arg.startswith("--"):
        return arg.split("=", 1)[0]
    return arg[:2]  # -N2, -n 8


def batch_script(cfg: Any, script: Optional[str] = None) -> str:
    """`script` when given, else sbatch/multinode.sbatch for trainer.num_nodes > 1, else sbatch/train.sbatch."""
    if script:
        return str(script)
    return MULTINODE_SCRIPT if int(_get(_trainer_section(cfg), "num_nodes", 1)) > 1 else TRAIN_SCRIPT


def sbatch_command(
    cfg: Any,
    config_files: Sequence[str],
    overrides: Sequence[str],
    script: Optional[str] = None,
    sbatch_args: Sequence[str] = (),
) -> list[str]:
    """The `sbatch` argv that runs `python -m lit_knowledge.train` with the resources the config asks for.

    Rules (the options given here override the `#SBATCH` lines of the script):

    * `--nodes=<trainer.num_nodes>` and `--ntasks-per-node=<trainer.devices>` (one task per device,
      which is how Lightning's SLURM environment expects to be launched). `trainer.devices` must be a
      number (or a list of indices) here: 'auto' / -1 cannot be turned into a request.
    * `--gres=gpu:<trainer.devices>` only when `trainer.accelerator` is gpu, cuda or auto; no GPUs for
      cpu (or any other accelerator). Use trainer.accelerator=cpu for CPU jobs.
    * `--job-name=<run.experiment>-<method.name>`.
    * `sbatch_args` (e.g. `--time=04:00:00`, `--partition=gpu`) next; they may not set nodes or tasks,
      which come from the config.
    * the script: `script`, else sbatch/train.sbatch, or sbatch/multinode.sbatch when num_nodes > 1
      (paths relative to the repository root, where the command is meant to run);
    * then the script's arguments, passed on to the training entry point: `--config FILE` for each
      config file, then the `key=value` overrides.
    """
    trainer = _trainer_section(cfg)
    devices = requested_devices(_get(trainer, "devices", 1))
    if devices is None:
        raise UserError(
            f"trainer.devices={_get(trainer, 'devices')!r} cannot be turned into a SLURM request; "
            "set trainer.devices to the devices per node (e.g. trainer.devices=4)"
        )
    if devices < 1:
        raise UserError(f"trainer.devices={devices} must be at least 1 to submit a job")
    nodes = int(_get(trainer, "num_nodes", 1))
    if nodes < 1:
        raise UserError(f"trainer.num_nodes={nodes} must be at least 1 to submit a job")
    for arg in sbatch_args:
        key = _option_name(arg)
        if key in _RESOURCE_OPTIONS:
            raise UserError(
                f"sbatch option {arg} conflicts with the config; set {_RESOURCE_OPTIONS[key]} instead "
                "(submit derives --nodes and --ntasks-per-node from them)"
            )

    accelerator = str(_get(trainer, "accelerator", "auto")).lower()
    run = _get(cfg, "run")
    method = _get(cfg, "method")
    experiment = _get(run, "experiment", "default") if run is not None else "default"
    method_name = _get(method, "name", "base") if method is not None else "base"

    argv = ["sbatch", f"--nodes={nodes}", f"--ntasks-per-node={devices}"]
    if accelerator in GPU_ACCELERATORS:
        argv.append(f"--gres=gpu:{devices}")
    argv.append(f"--job-name={experiment}-{method_name}")
    argv += list(sbatch_args)
    argv.append(batch_script(cfg, script))
    for path in config_files:
        argv += ["--config", str(path)]
    argv += [str(o) for o in overrides]
    return argv
