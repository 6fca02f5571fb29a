"""Run a group of experiments one after another and compare them: `python -m lit_knowledge.sweep GROUP.yaml`.

A group file names the configs every run starts from and the runs, each a name and its overrides:

    configs: [configs/quickstart.yaml]       # merged first, left to right (paths relative to the repo)
    overrides: [run.experiment=quickstart]   # applied to every run
    runs:
      - {name: base, overrides: [method.name=base]}
      - {name: ft_qa, overrides: [method.name=ft_qa, method.lr=1e-3]}
      - {name: tuned, configs: [configs/baselines/ft_qa.yaml]}   # a run's own configs follow the group's

`seeds: [0, 1, 2]` (the group's, or a run's own, which wins) repeats a run once per seed as `<name>-seed<K>`
with `run.seed=K` and `{seed}` in its overrides replaced by K (e.g. `method.seed={seed}`, for a method
whose own seed is a field); `--only <name>` then picks all of its seeds. Set `pretrain.seed` in the group's overrides
so that every seed reads the same reader (run.seed alone would pretrain one reader per seed).

Each run is an ordinary `python -m lit_knowledge.train --config ... overrides run.name=<name>` run, so
any row can be reproduced alone, and running the group again skips the runs that completed (their results are
read back as written) and resumes the others; at the end the comparison table of the experiment is printed and
written (`python -m lit_knowledge.report runs/<experiment>`). Extra `key=value` arguments on the command
line apply to every run (e.g. `data.world.num_steps=2` for a quick look).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from omegaconf import OmegaConf

from lit_knowledge import preemption
from lit_knowledge.config import REPO
from lit_knowledge.errors import UserError, cli_entry_point, did_you_mean


def read_group(path: str) -> dict:
    from lit_knowledge.config import read_yaml_mapping

    group = OmegaConf.to_container(read_yaml_mapping(path, "group file", "pass a group YAML (see configs/experiments/)",
                                                   "configs:, overrides:, runs:"))
    unknown = set(group) - {"configs", "overrides", "runs", "columns", "seeds"}
    if unknown or not isinstance(group.get("runs"), list) or not group["runs"]:
        raise UserError(f"group file {path} must hold 'configs', 'overrides' and a non-empty 'runs' list"
                        + (f"; unknown keys {sorted(unknown)}" if unknown else ""))
    runs = []
    for i, run in enumerate(group["runs"]):
        if not isinstance(run, dict) or "name" not in run:
            raise UserError(f"group file {path}: run {i} needs a 'name' (and lists of 'configs' / 'overrides')")
        seeds = run.get("seeds", group.get("seeds"))
        if seeds is None:
            runs.append({**run, "arm": run["name"]})
            continue
        if not isinstance(seeds, list) or not seeds or not all(isinstance(k, int) and k >= 0 for k in seeds):
            raise UserError(f"group file {path}: run {run['name']}: seeds must be a non-empty list of integers >= 0, "
                            f"got {seeds!r}")
        runs += [{**run, "arm": run["name"], "name": f"{run['name']}-seed{k}",
                  "overrides": [*(o.replace("{seed}", str(k)) for o in run.get("overrides", [])), f"run.seed={k}"]}
                 for k in seeds]
    group["runs"] = runs
    return group


def plan_group(path: str, extra: list[str] = (), only: list[str] | None = None) -> list[tuple[str, object]]:
    """(name, config) of every run of the group, all validated before any runs."""
    from lit_knowledge.config import load_config

    group = read_group(path)
    names = [run["name"] for run in group["runs"]]
    arms = list(dict.fromkeys(run["arm"] for run in group["runs"]))
    for name in only or ():
        if name not in names and name not in arms:
            raise UserError(f"--only {name}: group file {path} has no run of that name{did_you_mean(name, names + arms)}; "
                            f"its runs are {', '.join(names)}")

    def paths(names):
        return [str(REPO / c) if not Path(c).is_absolute() else c for c in names]

    planned = [(run, load_config(paths([*group.get("configs", []), *run.get("configs", [])]),
                                 [*group.get("overrides", []), *run.get("overrides", []), *extra,
                                  f"run.name={run['name']}"]))
               for run in group["runs"] if not only or run["name"] in only or run["arm"] in only]
    for run, cfg in planned:
        if run["name"] != run["arm"] and cfg.model.name == "reader" and cfg.pretrain.seed is None:
            raise UserError(f"group file {path}: run {run['name']} repeats over seeds with pretrain.seed null, so "
                            "every seed would pretrain a reader of its own; add pretrain.seed=0 to the group's overrides")
    return [(run["name"], cfg) for run, cfg in planned]


def run_group(path: str, extra: list[str] = (), only: list[str] | None = None, resume: str = "auto",
              announce=print) -> list[dict]:
    from lit_knowledge.train import run_experiment

    results = []
    for name, cfg in plan_group(path, extra, only):
        started = time.perf_counter()
        results.append(run_experiment(cfg, resume=resume))
        announce(f"{name}: {time.perf_counter() - started:.0f} s")
    return results


@cli_entry_point
@preemption.entry_point  # a preemption notice between or before runs requeues, as in train
def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lit_knowledge.sweep", description=__doc__.splitlines()[0])
    parser.add_argument("group", help="group YAML (see configs/experiments/)")
    parser.add_argument("overrides", nargs="*", help="key=value overrides for every run")
    parser.add_argument("--only", nargs="+", help="run only these names of the group")
    parser.add_argument("--resume", default="auto", help="auto | never (passed to every run)")
    args = parser.parse_args(argv)
    # `--only a b key=value` : the key=value items after --only are overrides, not run names
    only = [n for n in args.only or () if "=" not in n] or None
    overrides = args.overrides + [n for n in args.only or () if "=" in n]
    results = run_group(args.group, overrides, only, args.resume)
    from lit_knowledge.report import build_report

    print(build_report(Path(results[0]["run_dir"]).parent))
    return 0


if __name__ == "__main__":
    sys.exit(main())
