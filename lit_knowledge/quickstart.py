"""`make quickstart`: pretrain (or reuse) the world's reader, run three methods on a small stream, compare.

    python -m lit_knowledge.quickstart [--methods base in_context ft_qa] [key=value ...]

Each method is an ordinary run of configs/quickstart.yaml (so `python -m lit_knowledge.train
--config configs/quickstart.yaml method.name=ft_qa` reproduces any row), and the table is
`python -m lit_knowledge.report runs/quickstart`.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from lit_knowledge.config import load_config
from lit_knowledge.errors import UserError

CONFIG = Path(__file__).resolve().parents[1] / "configs" / "quickstart.yaml"
COLUMNS = ["efficacy_f1", "retention_f1", "locality_f1", "lm_loss", "update_time_per_step_s"]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lit_knowledge.quickstart", description=__doc__.splitlines()[0])
    parser.add_argument("overrides", nargs="*", help="key=value overrides for every run")
    parser.add_argument("--methods", nargs="+", default=["base", "in_context", "ft_qa"])
    args = parser.parse_args(argv)

    from lit_knowledge.evaluation.results import results_table
    from lit_knowledge.methods.pretrain import READER_REPORT, ensure_reader, reader_dir
    from lit_knowledge.train import run_experiment

    started = time.perf_counter()
    try:
        rows = []
        for method in args.methods:
            cfg = load_config([str(CONFIG)], [*args.overrides, f"method.name={method}"])
            if not rows:
                cached = (reader_dir(cfg) / READER_REPORT).exists()
                t = time.perf_counter()
                ensure_reader(cfg)
                print(f"reader: {'cached' if cached else 'pretrained'} in {time.perf_counter() - t:.0f} s "
                      f"({reader_dir(cfg)})", flush=True)
            t = time.perf_counter()
            results = run_experiment(cfg, resume="never")
            print(f"{method}: {time.perf_counter() - t:.0f} s", flush=True)
            rows.append(results)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return e.exit_code
    print()
    print(results_table(rows, COLUMNS))
    print(f"\ntotal {time.perf_counter() - started:.0f} s; runs in {Path(rows[0]['run_dir']).parent}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
