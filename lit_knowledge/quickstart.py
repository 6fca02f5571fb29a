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

from lit_knowledge.errors import cli_entry_point

REPO = Path(__file__).resolve().parents[1]
GROUP = REPO / "configs" / "experiments" / "quickstart.yaml"
COLUMNS = ["efficacy_f1", "retention_f1", "locality_f1", "lm_loss", "update_time_per_step_s"]


@cli_entry_point
def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lit_knowledge.quickstart", description=__doc__.splitlines()[0])
    parser.add_argument("overrides", nargs="*", help="key=value overrides for every run")
    args = parser.parse_args(argv)

    from lit_knowledge.config import load_config
    from lit_knowledge.evaluation.results import results_table
    from lit_knowledge.methods.pretrain import READER_REPORT, ensure_reader, reader_dir
    from lit_knowledge.sweep import read_group, run_group

    started = time.perf_counter()
    group = read_group(str(GROUP))
    cfg = load_config([str(REPO / c) for c in group["configs"]], args.overrides)
    cached = (reader_dir(cfg) / READER_REPORT).exists()
    ensure_reader(cfg)
    print(f"reader: {'cached' if cached else 'pretrained'} in {time.perf_counter() - started:.0f} s "
          f"({reader_dir(cfg)})", flush=True)
    rows = run_group(str(GROUP), args.overrides, resume="never")
    print()
    print(results_table(rows, COLUMNS))
    print(f"total {time.perf_counter() - started:.0f} s; runs in {Path(rows[0]['run_dir']).parent}; "
          f"compare again with: python -m lit_knowledge.report {Path(rows[0]['run_dir']).parent}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
