"""Submit a training run to SLURM: `python -m lit_knowledge.submit --config configs/X.yaml [key=value ...]`.

Run it from the repository root on a login node. It loads and validates the config there (a typo
fails in a second instead of after hours in the queue), derives the resources from the config
(`--nodes` = trainer.num_nodes, `--ntasks-per-node` = trainer.devices, `--gres=gpu:N` for GPU
accelerators; see `lit_knowledge.slurm.sbatch_command`), prints the `sbatch` command and runs it.

    python -m lit_knowledge.submit --config configs/baselines/ft_qa.yaml trainer.devices=4 \\
        --sbatch-arg=--time=04:00:00 --sbatch-arg=--partition=gpu
    python -m lit_knowledge.submit --config configs/baselines/base.yaml --dry-run   # only print it

Pass sbatch options with `=` (`--sbatch-arg=--time=04:00:00`), one per flag. See docs/cluster.md.
"""

from __future__ import annotations

import argparse
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

from lit_knowledge.errors import UserError, cli_entry_point

LOG_DIR = "logs"  # the #SBATCH --output directory of the scripts; SLURM does not create it


def parse_args(argv):
    parser = argparse.ArgumentParser(
        prog="python -m lit_knowledge.submit",
        description="Validate a config on the login node and submit `python -m lit_knowledge.train` with sbatch.",
        epilog="Example: python -m lit_knowledge.submit --config configs/baselines/ft_qa.yaml trainer.devices=4 "
        "--sbatch-arg=--time=04:00:00",
    )
    parser.add_argument("overrides", nargs="*", help="key=value overrides, e.g. trainer.devices=4")
    parser.add_argument("--config", action="append", default=[], help="YAML config file (repeatable)")
    parser.add_argument("--dry-run", action="store_true", help="print the sbatch command without running it")
    parser.add_argument("--sbatch-arg", action="append", default=[], metavar="OPTION",
                        help="extra sbatch option, written with '=': --sbatch-arg=--time=04:00:00 (repeatable)")
    parser.add_argument("--resume", default=None,
                        help="passed on to training: auto (its default), never, or a checkpoint path")
    parser.add_argument("--script", default=None,
                        help="batch script to submit (default: sbatch/train.sbatch, or sbatch/multinode.sbatch "
                        "when trainer.num_nodes > 1)")
    return parser.parse_intermixed_args(argv)


@cli_entry_point
def main(argv=None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    from lit_knowledge.config import load_config
    from lit_knowledge.slurm import batch_script, sbatch_command

    cfg = load_config(args.config, args.overrides)
    train_args = list(args.overrides) + (["--resume", args.resume] if args.resume else [])
    cmd = sbatch_command(cfg, args.config, train_args, script=args.script, sbatch_args=args.sbatch_arg)
    print(shlex.join(cmd), flush=True)
    if args.dry_run:
        return 0
    if shutil.which("sbatch") is None:
        raise UserError("sbatch not found on PATH; run this on a SLURM login node (or add --dry-run to only print)")
    script = batch_script(cfg, args.script)
    if not Path(script).is_file():
        raise UserError(f"batch script {script} not found; run submit from the repository root or pass --script")
    Path(LOG_DIR).mkdir(exist_ok=True)
    return subprocess.run(cmd).returncode


if __name__ == "__main__":
    sys.exit(main())
