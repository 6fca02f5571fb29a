"""`make quickstart`: pretrain (or reuse) the world's reader, run the quickstart group, print the comparison.

    python -m lit_knowledge.quickstart [key=value ...]

The group is configs/experiments/quickstart.yaml (base, in_context and ft_qa on configs/quickstart.yaml);
every row is an ordinary run that `python -m lit_knowledge.train` reproduces alone.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from lit_knowledge.config import REPO
from lit_knowledge.errors import cli_entry_point

GROUP = REPO / "configs" / "experiments" / "quickstart.yaml"


@cli_entry_point
def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lit_knowledge.quickstart", description=__doc__.splitlines()[0])
    parser.add_argument("overrides", nargs="*", help="key=value overrides for every run")
    args = parser.parse_args(argv)

    from lit_knowledge.config import load_config
    from lit_knowledge.evaluation import main_metrics
    from lit_knowledge.evaluation.results import results_table
    from lit_knowledge.methods.pretrain import SHIPPED_READERS, ensure_reader, find_reader
    from lit_knowledge.sweep import read_group, run_group

    started = time.perf_counter()
    group = read_group(str(GROUP))
    cfg = load_config([str(REPO / c) for c in group["configs"]], args.overrides)
    found = find_reader(cfg)
    reader = found or ensure_reader(cfg)
    origin = "shipped" if reader.is_relative_to(SHIPPED_READERS) else "cached" if found else "pretrained"
    print(f"reader: {origin}, {reader}", flush=True)
    rows = run_group(str(GROUP), args.overrides, resume="never", announce=lambda line: print(f"run {line}"))
    experiment = Path(rows[0]["run_dir"]).parent
    print()
    print(results_table(rows, main_metrics("qa")))
    print()
    world = cfg.data.world
    print(f"F1 of closed-book answers after a stream of {world.num_steps} steps of {world.entities_per_step} new "
          "people: base is the floor (the reader knows none of them), in_context the ceiling (each probe's document in the prompt), ft_qa (FT(S), fine-tuning on the "
          "documents' QA pairs) learns the new people but forgets earlier steps (retention) and the background "
          "(locality).")
    print(f"Run directories (config, results.md, retention_curve.png): {experiment}/<run>/")
    print(f"Compare again: python -m lit_knowledge.report {experiment}")
    print(f"Total {time.perf_counter() - started:.0f} s.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
