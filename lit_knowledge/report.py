"""Compare the runs of one experiment: `python -m lit_knowledge.report runs/<experiment> [--out DIR]`.

Gathers every results.json below the experiment directory (one per run directory, see
lit_knowledge.evaluation.results for its layout), prints one markdown comparison table and
writes into the experiment directory (or --out):
    comparison.md    the table
    comparison.csv   one row per run: run, method, kind, path, then every metric
    comparison.png   bars of the main metrics per run and, when runs have per-step curves,
                     retention_f1 (QA streams) or reliability (edit streams) against the step
    retention_by_age.png   when runs report F1 by a document's age (MemoryLLM): measured beside theory,
                     and comparison.md gains the table of fitted and theoretical decay rates
    bank_sizes.png   when run names give bank sizes (`<arm>[-seedK]-bank<N>`, CMT's group): F1 against the
                     bank's size per arm and the first step's probes as the stream grows; comparison.md gains
                     their tables (mean ± 95 % interval over seeds)
    seeds.png        when runs repeat arms over seeds (`<arm>-seedK`, a group's `seeds:`): every arm's
                     headline curve averaged over its seeds; comparison.md gains one row per arm with each
                     metric's mean ± 95 % interval over seeds (quality, cost, budget)
    transfer_arms.png   when runs are lora_transfer arms: each init's F1 against fine-tuning steps, mean and
                     95 % interval over its seeds, and comparison.md gains the tables (per arm, and each arm
                     minus standard init, paired by seed)
With `--into DOC.md` the report also fills that document's blocks for this directory: the lines between
`<!-- report runs/bench seeds -->` and `<!-- /report -->` become the named section (runs, retention_by_age,
transfer_arms, bank_sizes, seeds), and `figure=img/x.png` in the opening line copies its figure there; the
text around the blocks is the author's. So a results page is rewritten from the run directories it names.
A missing directory or no results prints `error: ...` on stderr and exits with code 2.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import math
import os
import shutil
import sys
from pathlib import Path

from lit_knowledge.errors import UserError, check_writable_dir, cli_entry_point, did_you_mean
from lit_knowledge.evaluation import headline_curves, plotted_curves, scores
from lit_knowledge.evaluation.results import (
    RESULTS_JSON,
    STEP_KEY,
    curve_steps,
    results_table,
    scalar_metrics,
)

# Metrics shown first in the table and drawn as bars (all are scores in [0, 1]).
MAIN_METRICS = scores()
# The curve drawn per run, the first one a run has.
LINE_CURVES = headline_curves() + plotted_curves()


def save_figure(fig, path: Path) -> None:
    """Write a matplotlib figure as PNG at `path` atomically (a reader never sees half a file)."""
    tmp = path.with_name(path.name + ".tmp")
    fig.savefig(tmp, format="png")
    os.replace(tmp, path)


def collect_results(exp_dir: Path) -> list[dict]:
    """Every results.json below `exp_dir`, sorted by path; each dict gains "path" (relative run directory).

    Runs without a name are named by their directory; duplicated names are replaced by the
    relative path so that every row is told apart. Unreadable files are skipped with a warning.
    """
    exp_dir = Path(exp_dir)
    if exp_dir.exists() and not exp_dir.is_dir():
        raise UserError(f"{exp_dir} is not a directory (it is a file); pass runs/<experiment>, the directory of its runs")
    if not exp_dir.is_dir():
        raise UserError(f"experiment directory {exp_dir} does not exist; pass runs/<experiment>")
    rows = []
    for path in sorted(exp_dir.rglob(RESULTS_JSON)):
        try:
            results = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as e:
            print(f"warning: skipping {path}: {e}", file=sys.stderr)
            continue
        if not isinstance(results, dict):
            print(f"warning: skipping {path}: not a results dict", file=sys.stderr)
            continue
        rel = path.parent.relative_to(exp_dir).as_posix()
        results["path"] = rel if rel != "." else exp_dir.name
        results["run"] = results.get("run") or results["path"]
        rows.append(results)
    if not rows:
        raise UserError(f"no {RESULTS_JSON} found under {exp_dir}; run an experiment first")
    names = [r["run"] for r in rows]
    for r in rows:
        if names.count(r["run"]) > 1:
            r["run"] = r["path"]
    return rows


def metric_columns(rows: list[dict]) -> list[str]:
    """Scalar metric names of all runs: the main ones first (in MAIN_METRICS order), then the rest as seen."""
    seen: list[str] = []
    for r in rows:
        for name, value in (r.get("metrics") or {}).items():
            if name not in seen and (value is None or isinstance(value, (int, float))):
                seen.append(name)
    return [m for m in MAIN_METRICS if m in seen] + [m for m in seen if m not in MAIN_METRICS]


def comparison_csv(rows: list[dict], columns: list[str]) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["run", "method", "kind", "path", *columns])
    for r in rows:
        metrics = r.get("metrics") or {}
        values = ["" if metrics.get(c) is None else metrics[c] for c in columns]
        writer.writerow([r.get("run", ""), r.get("method", ""), r.get("kind", ""), r.get("path", ""), *values])
    return buf.getvalue()


def plot_comparison(rows: list[dict], path: Path, title: str = "") -> None:
    """Bar chart of the main metrics per run, plus a line plot of one curve per run when curves exist."""
    from matplotlib.figure import Figure  # renders with Agg, leaves pyplot alone
    from matplotlib.ticker import MaxNLocator

    present = [m for m in MAIN_METRICS if any(m in scalar_metrics(r) for r in rows)]
    bar_metrics = present or metric_columns(rows)
    lines = []
    for r in rows:
        curves = r.get("curves") or {}
        name = next((c for c in LINE_CURVES if len(curves.get(c) or []) > 1), None)
        if name:
            lines.append((r["run"], name, curve_steps(curves), curves[name]))

    fig = Figure(figsize=(6 + 5 * bool(lines), 4.5), dpi=100)
    axes = fig.subplots(1, 2 if lines else 1, squeeze=False)[0]
    ax = axes[0]
    width = 0.8 / max(len(rows), 1)
    for i, r in enumerate(rows):
        metrics = scalar_metrics(r)
        xs = [j + (i - (len(rows) - 1) / 2) * width for j in range(len(bar_metrics))]
        ax.bar(xs, [metrics.get(m, math.nan) for m in bar_metrics], width=width, label=r["run"])
    ax.set_xticks(range(len(bar_metrics)))
    ax.set_xticklabels(bar_metrics, rotation=30, ha="right")
    ax.set_title("final metrics")
    ax.legend(fontsize="small")
    if lines:
        ax = axes[1]
        for run, name, steps, values in lines:
            ys = [math.nan if v is None else float(v) for v in values][: len(steps)]
            ax.plot(steps[: len(ys)], ys, marker="o", markersize=3, label=f"{run} ({name})")
        ax.set_xlabel(STEP_KEY)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylabel("score")
        ax.set_title("per step")
        ax.grid(alpha=0.3)
        ax.legend(fontsize="small")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    save_figure(fig, path)


def retention_by_age_section(rows: list[dict], path: Path) -> str:
    """For runs that report `retention_by_age` (MemoryLLM): a plot of F1 by age beside each run's theory, and a
    table of the fitted and theoretical decay rates; "" when no run has it."""
    runs = [r for r in rows if r.get("retention_by_age")]
    if not runs:
        return ""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7, 4.5), dpi=100)
    ax = fig.subplots()
    lines = ["| run | a_1 (t = 1) | floor | fitted rate | theory log(1 - K/N) | fitted / theory | ages fitted |",
             "|---|---|---|---|---|---|---|"]
    for i, r in enumerate(runs):
        by_age = r["retention_by_age"]
        color = f"C{i}"
        ax.plot(by_age["age"], by_age["f1"], marker="o", markersize=3, color=color, label=f"{r['run']} (measured)")
        ax.plot(by_age["age"], by_age["theory_f1"], linestyle="--", color=color, label=f"{r['run']} (theory)")
        fitted, theory = by_age["fitted_decay_rate"], by_age["theory_decay_rate"]
        ratio = f"{fitted / theory:.2f}" if fitted is not None and theory else "–"
        lines.append(f"| {r['run']} | {by_age['f1'][0]:.3f} | {by_age['floor']:.3f} | "
                     f"{'–' if fitted is None else f'{fitted:.4f}'} | {theory:.4f} | {ratio} | {by_age['ages_fitted']} |")
    ax.set_xlabel("age t (writes since the document's, plus one)")
    ax.set_ylabel("F1 on the document's probes")
    ax.grid(alpha=0.3)
    ax.legend(fontsize="x-small")
    fig.tight_layout()
    save_figure(fig, path)
    return "\n## Retention by age\n\n" + "\n".join(lines) + "\n"


# Two-sided 95 % quantiles of Student's t by degrees of freedom (a normal 1.96 beyond the table).
T95 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262, 10: 2.228}


def mean_ci(values: list[float]) -> tuple[float, float]:
    """(mean, half-width of its 95 % confidence interval by Student's t; 0 for a single value)."""
    n = len(values)
    mean = sum(values) / n
    if n < 2:
        return mean, 0.0
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))
    return mean, T95.get(n - 1, 1.96) * sd / math.sqrt(n)


def transfer_arms_section(rows: list[dict], path: Path, baseline: str = "standard") -> str:
    """For lora_transfer runs: per init arm, held-out / fitted / locality F1 at every evaluated step, mean ± 95 %
    interval over the arm's seeds; each arm minus `baseline` paired by seed (same split, same batches); a plot of
    the curves with their intervals. "" when no run is a transfer run."""
    runs = [r for r in rows if r.get("transfer") and r.get("curves")]
    if not runs:
        return ""
    from matplotlib.figure import Figure

    def settings(r: dict) -> dict:
        method = dict((r.get("config") or {}).get("method") or {})
        return {k: v for k, v in method.items() if k not in ("seed", "init", "name") and not isinstance(v, (dict, list))}

    # An arm is an init; when runs of one init differ in other settings (a dev sweep of lrs), those join its label.
    by_init: dict[str, list[dict]] = {}
    for r in runs:
        by_init.setdefault(r["transfer"]["init"], []).append(settings(r))
    varying = {init: sorted({k for s in ss for k in s if len({str(t.get(k)) for t in ss}) > 1})
               for init, ss in by_init.items()}
    arms: dict[str, dict[int, dict]] = {}
    for r in runs:
        init, s = r["transfer"]["init"], settings(r)
        label = " ".join([init] + [f"{k}={s.get(k)}" for k in varying[init]])
        arms.setdefault(label, {})[((r.get("config") or {}).get("method") or {}).get("seed", 0)] = r["curves"]
    steps = sorted({s for by_seed in arms.values() for c in by_seed.values() for s in c["step"]})

    def at(curves: dict, name: str, step: int):
        return curves[name][curves["step"].index(step)] if step in curves["step"] else None

    def paired(by_seed: dict, base: dict, name: str, step: int) -> list[float]:
        """arm minus baseline at `step`, seed by seed (seeds both have)."""
        pairs = [(at(c, name, step), at(base[k], name, step)) for k, c in by_seed.items() if k in base]
        return [a - b for a, b in pairs if a is not None and b is not None]

    def cell(values: list) -> str:
        values = [v for v in values if v is not None]
        if not values:
            return "–"
        m, h = mean_ci(values)
        return f"{m:.3f} ± {h:.3f}"

    out = []
    names = (("heldout_f1", "held-out F1 (transfer alone)"), ("fitted_f1", "fitted F1 (fine-tuned facts, new wordings)"),
             ("locality_f1", "locality F1 (what the student knew)"))
    fig = Figure(figsize=(12, 3.8), dpi=100)
    axes = fig.subplots(1, len(names))
    for (name, title), ax in zip(names, axes):
        out += [f"\n### {title}: mean ± 95 % interval over seeds\n", "| init | seeds | " + " | ".join(f"step {s}" for s in steps) + " |",
                "|---|---|" + "---|" * len(steps)]
        for i, (arm, by_seed) in enumerate(sorted(arms.items())):
            out.append(f"| {arm} | {len(by_seed)} | " + " | ".join(cell([at(c, name, s) for c in by_seed.values()])
                                                             for s in steps) + " |")
            xs, means, halves = [], [], []
            for s in steps:
                values = [v for c in by_seed.values() if (v := at(c, name, s)) is not None]
                if values:
                    m, h = mean_ci(values)
                    xs.append(max(s, 1)), means.append(m), halves.append(h)
            ax.plot(xs, means, marker="o", markersize=3, color=f"C{i}", label=arm)
            ax.fill_between(xs, [m - h for m, h in zip(means, halves)], [m + h for m, h in zip(means, halves)],
                            color=f"C{i}", alpha=0.15)
        if baseline in arms and len(arms) > 1:
            out += [f"\n{title}, each init minus {baseline} (paired by seed):\n",
                    "| init | " + " | ".join(f"step {s}" for s in steps) + " |", "|---|" + "---|" * len(steps)]
            base = arms[baseline]
            for arm, by_seed in sorted(arms.items()):
                if arm == baseline:
                    continue
                out.append(f"| {arm} | " + " | ".join(cell(paired(by_seed, base, name, s)) for s in steps) + " |")
        ax.set_xscale("log")
        ax.set_xlabel("fine-tuning steps (step 0 drawn at 1)")
        ax.set_title(title, fontsize="small")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("F1")
    axes[-1].legend(fontsize="x-small")
    fig.tight_layout()
    save_figure(fig, path)
    return "\n## Transfer arms\n" + "\n".join(out) + "\n"


def per_document(r: dict, name: str) -> float | None:
    """A per-step metric of run `r` divided by its stream's documents per step (None when either is missing)."""
    value = (r.get("metrics") or {}).get(name)
    docs = (((r.get("config") or {}).get("data") or {}).get("world") or {}).get("entities_per_step")
    return value / docs if isinstance(value, (int, float)) and docs else None


def bank_sizes_section(rows: list[dict], path: Path) -> str:
    """For groups whose runs name a bank (stream) size, `<arm>[-seedK]-bank<N>` or `-docs<N>` (configs/experiments/
    cmt_bank.yaml, bench_scale.yaml): per arm and size, final F1 and EM over every document's probes (mean ± 95 %
    interval over the arm's seeds), the first step's probes as the stream grows at the largest size, and the cost
    by size (update time per document, extra storage, retention at the end), and F1 by the fact asked at each size
    when runs have it; a plot of F1, the first step's probes and the update time against the size. "" when fewer than two sizes are named."""
    import re

    pattern = re.compile(r"^(?P<arm>.+?)(?:-seed(?P<seed>\d+))?-(?P<kind>bank|docs)(?P<bank>\d+)$")
    runs = [(m, r) for r in rows if (m := pattern.match(str(r.get("run", "")))) and r.get("metrics")]
    banks = sorted({int(m["bank"]) for m, _ in runs})
    if len(banks) < 2:
        return ""
    # CMT's group names bank sizes; the bench's scale group, stream sizes (documents written)
    unit, size = ("bank", "bank") if any(m["kind"] == "bank" for m, _ in runs) else ("docs", "stream")
    from matplotlib.figure import Figure

    arms: dict[str, dict[int, list[dict]]] = {}
    for m, r in runs:
        arms.setdefault(m["arm"], {}).setdefault(int(m["bank"]), []).append(r)

    def cell(values: list) -> str:
        values = [v for v in values if v is not None]
        if not values:
            return "–"
        mean, half = mean_ci(values)
        return f"{mean:.3f}" + (f" ± {half:.3f}" if len(values) > 1 else "")

    out = [f"\n## By {size} size: every document's probes with the whole {size} written (mean ± 95 % interval over "
           "seeds)\n", "| arm | seeds | " + " | ".join(f"F1 {unit} {b} | EM {unit} {b}" for b in banks) + " |",
           "|---|---|" + "---|---|" * len(banks)]
    fig = Figure(figsize=(16, 4), dpi=100)
    left, right, cost = fig.subplots(1, 3)
    largest = banks[-1]
    costs = ["\n## Cost by size (mean over seeds)\n",
             "| arm | " + " | ".join(f"update s / document, {b} | storage KiB, {b} | retention, {b}" for b in banks) + " |",
             "|---|" + "---|---|---|" * len(banks)]
    for i, (arm, by_bank) in enumerate(sorted(arms.items())):
        seeds = max(len(v) for v in by_bank.values())
        cells = []
        xs, means, halves = [], [], []
        for b in banks:
            group = by_bank.get(b, [])
            f1 = [r["metrics"].get("final_f1_all_steps") for r in group]
            cells += [cell(f1), cell([r["metrics"].get("final_em_all_steps") for r in group])]
            f1 = [v for v in f1 if v is not None]
            if f1:
                m, h = mean_ci(f1)
                xs.append(b), means.append(m), halves.append(h)
        out.append(f"| {arm} | {seeds} | " + " | ".join(cells) + " |")
        row, update = [], []
        for b in banks:
            group = by_bank.get(b, [])
            per_doc = [v for r in group if (v := per_document(r, "update_time_per_step_s")) is not None]
            storage = [v / 1024 for r in group if isinstance(v := r["metrics"].get("extra_storage_bytes"), (int, float))]
            per_doc_mean = sum(per_doc) / len(per_doc) if per_doc else None
            row += ["–" if per_doc_mean is None else f"{per_doc_mean:.3f}",
                    f"{sum(storage) / len(storage):.0f}" if storage else "–",
                    cell([r["metrics"].get("retention_f1") for r in group])]
            if per_doc_mean is not None:
                update.append((b, per_doc_mean))
        costs.append(f"| {arm} | " + " | ".join(row) + " |")
        if update and any(v > 0 for _, v in update):
            cost.plot(*zip(*update), marker="o", markersize=3, color=f"C{i % 10}", label=arm)
        left.errorbar(xs, means, yerr=halves, marker="o", markersize=3, capsize=2, color=f"C{i % 10}", label=arm)
        curves = [[row[0] for row in r.get("retention_matrix") or []] for r in by_bank.get(largest, [])]
        if curves and curves[0]:
            steps = len(curves[0])
            first = [sum(c[k] for c in curves) / len(curves) for k in range(steps)]
            right.plot(range(1, steps + 1), first, marker="o", markersize=3, color=f"C{i % 10}", label=arm)
    retention = [f"\n## The first step's probes as the {size} grows (largest {size}, mean over seeds)\n"]
    first_rows = {arm: by_bank.get(largest, []) for arm, by_bank in sorted(arms.items())}
    width = max((len(r.get("retention_matrix") or []) for rs in first_rows.values() for r in rs), default=0)
    retention += ["| arm | " + " | ".join(f"after step {k + 1}" for k in range(width)) + " |",
                  "|---|" + "---|" * width]
    for arm, rs in first_rows.items():
        matrices = [r.get("retention_matrix") or [] for r in rs]
        cells = [cell([m[k][0] for m in matrices if len(m) > k]) for k in range(width)]
        retention.append(f"| {arm} | " + " | ".join(cells) + " |")
    left.set_xscale("log")
    left.set_xticks(banks, [str(b) for b in banks])
    left.set_xlabel("documents in the bank" if unit == "bank" else "documents in the stream")
    left.set_ylabel("F1, every document's probes")
    right.set_xlabel(f"stream step ({size} of {largest})")
    right.set_ylabel("F1 on the first step's probes")
    cost.set_xscale("log")
    if cost.lines:
        cost.set_yscale("log")
    cost.set_xticks(banks, [str(b) for b in banks])
    cost.set_xlabel("documents in the stream")
    cost.set_ylabel("update time per document (s)")
    for ax in (left, right, cost):
        ax.grid(alpha=0.3)
    left.legend(fontsize="x-small")  # the left panel has every arm (some stop before the largest size)
    fig.tight_layout()
    save_figure(fig, path)
    return "\n".join(out) + "\n" + "\n".join(retention) + "\n" + "\n".join(costs) + "\n" + by_fact(arms, banks, cell)


def by_fact(arms: dict[str, dict[int, list[dict]]], banks: list[int], cell) -> str:
    """At each size, every arm's F1 by the fact a direct question asks (`final_f1_about_<fact>`, the world's
    probes: every document's, with the whole stream written); "" when no run has them."""
    prefix = "final_f1_about_"
    facts = sorted({k[len(prefix):] for by_bank in arms.values() for rs in by_bank.values() for r in rs
                    for k in r["metrics"] if k.startswith(prefix)})
    if not facts:
        return ""
    out = []
    for b in banks:
        out += [f"\n## F1 by the fact asked, {b} documents (mean ± 95 % interval over seeds)\n",
                "| arm | seeds | " + " | ".join(facts) + " |", "|---|---|" + "---|" * len(facts)]
        for arm, by_bank in sorted(arms.items()):
            group = by_bank.get(b, [])
            scored = [r for r in group if any(k.startswith(prefix) for k in r["metrics"])]
            if scored:
                out.append(f"| {arm} | {len(scored)} | "
                           + " | ".join(cell([r["metrics"].get(prefix + f) for r in scored]) for f in facts) + " |")
    return "\n".join(out) + "\n"


# The bench's columns (a run shows those it has): quality, then cost, then the budget it got.
SEED_COLUMNS = (
    ("efficacy_f1", "efficacy", "{:.3f}"), ("retention_f1", "retention", "{:.3f}"), ("locality_f1", "locality", "{:.3f}"),
    ("reliability", "reliability", "{:.3f}"), ("generalization", "generalization", "{:.3f}"),
    ("locality", "locality (held out)", "{:.3f}"), ("portability", "portability", "{:.3f}"), ("mean_gain", "mean gain", "{:.3f}"),
    ("heldout_f1", "held-out (transfer)", "{:.3f}"), ("fitted_f1", "fitted (transfer)", "{:.3f}"),
    ("lm_loss", "LM loss", "{:.2f}"), ("update_time_per_step_s", "update s / step", "{:.2f}"),
    ("extra_storage_bytes", "extra storage KiB", "{:.0f}"), ("peak_memory_bytes", "peak memory MiB", "{:.0f}"),
    ("optimizer_steps", "optimiser steps", "{:.0f}"), ("train_tokens", "trained tokens", "{:.0f}"),
    ("wall_time_s", "wall s", "{:.0f}"),
)
SCALE = {"extra_storage_bytes": 1 / 1024, "peak_memory_bytes": 1 / 2 ** 20}


def seeds_section(rows: list[dict], path: Path) -> str:
    """For groups whose runs repeat an arm over seeds (`<arm>-seed<K>`, a group's `seeds:`):
    one row per arm, every metric it has as mean ± 95 % interval over its seeds, and one figure of every arm's
    headline curve (retention F1 for streams, reliability for edits) averaged over its seeds. "" when no arm has
    two seeds, or every run is a lora_transfer arm (which has its own section)."""
    import re

    pattern = re.compile(r"^(?P<arm>.+)-seed(?P<seed>\d+)$")
    arms: dict[str, list[dict]] = {}
    for r in rows:
        m = pattern.match(str(r.get("run", "")))
        if m and r.get("metrics"):  # bank groups end in -bank<N> and do not match
            arms.setdefault(m["arm"], []).append(r)
    if not any(len(v) > 1 for v in arms.values()) or all(r.get("kind") == "transfer" for v in arms.values() for r in v):
        return ""
    from matplotlib.figure import Figure

    columns = [c for c in SEED_COLUMNS if any(c[0] in r["metrics"] for v in arms.values() for r in v)]

    def cell(name: str, fmt: str, group: list[dict]) -> str:
        values = [v * SCALE.get(name, 1) for r in group if isinstance(v := r["metrics"].get(name), (int, float))]
        if not values:
            return "–"
        mean, half = mean_ci(values)
        return fmt.format(mean) + (f" ± {fmt.format(half)}" if len(values) > 1 else "")

    out = ["\n## Every arm over its seeds (mean ± 95 % interval)\n",
           "| arm | seeds | " + " | ".join(label for _, label, _ in columns) + " |", "|---|---|" + "---|" * len(columns)]
    fig = Figure(figsize=(7, 4.5), dpi=100)
    ax = fig.subplots()
    drawn = set()
    for i, (arm, group) in enumerate(sorted(arms.items())):
        out.append(f"| {arm} | {len(group)} | " + " | ".join(cell(n, f, group) for n, _, f in columns) + " |")
        curves = [r.get("curves") or {} for r in group]
        name = next((c for c in headline_curves() if all(len(cv.get(c) or []) > 1 for cv in curves)), None)
        if name is None:  # e.g. lora_transfer, whose curves are over fine-tuning steps, not the stream
            continue
        drawn.add(name)
        steps = curve_steps(curves[0])
        ys = [[math.nan if v is None else float(v) for v in cv[name]] for cv in curves]
        width = min(len(steps), *(len(y) for y in ys))
        mean = [sum(y[k] for y in ys) / len(ys) for k in range(width)]
        ax.plot(steps[:width], mean, marker="o", markersize=3, color=f"C{i % 10}", label=arm)
    if drawn:
        ax.set_xlabel(STEP_KEY)
        ax.set_ylabel(" / ".join(sorted(drawn)) + " (mean over seeds)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize="x-small")
        fig.tight_layout()
        save_figure(fig, path)
    return "\n".join(out) + "\n"


# The report's sections by name (what a `<!-- report DIR SECTION -->` block of a document asks for) and the
# figure each draws into the output directory.
SECTION_FIGURES = {"runs": "comparison.png", "retention_by_age": "retention_by_age.png",
                   "transfer_arms": "transfer_arms.png", "bank_sizes": "bank_sizes.png", "seeds": "seeds.png"}


def report_sections(exp_dir: Path, out_dir: Path | None = None) -> dict[str, str]:
    """Write comparison.md / .csv / .png for `exp_dir` into `out_dir` (default `exp_dir`); return each section's
    markdown by name (SECTION_FIGURES; a section the runs give nothing for is empty)."""
    exp_dir = Path(exp_dir)
    rows = collect_results(exp_dir)
    out_dir = Path(out_dir) if out_dir is not None else exp_dir
    check_writable_dir(out_dir, "--out" if out_dir != exp_dir else "experiment directory")
    out_dir.mkdir(parents=True, exist_ok=True)
    columns = metric_columns(rows)
    sections = {"runs": results_table(rows, columns),
                "retention_by_age": retention_by_age_section(rows, out_dir / "retention_by_age.png"),
                "transfer_arms": transfer_arms_section(rows, out_dir / "transfer_arms.png"),
                "bank_sizes": bank_sizes_section(rows, out_dir / "bank_sizes.png"),
                "seeds": seeds_section(rows, out_dir / "seeds.png")}
    table = "".join(sections.values())
    (out_dir / "comparison.md").write_text(f"# {exp_dir.name}: {len(rows)} runs\n\n{table}", encoding="utf-8")
    (out_dir / "comparison.csv").write_text(comparison_csv(rows, columns), encoding="utf-8")
    plot_comparison(rows, out_dir / "comparison.png", title=exp_dir.name)
    return sections


def build_report(exp_dir: Path, out_dir: Path | None = None) -> str:
    """Write comparison.md / .csv / .png for `exp_dir` into `out_dir` (default `exp_dir`); return the table."""
    return "".join(report_sections(exp_dir, out_dir).values())


BLOCK_START, BLOCK_END = "<!-- report ", "<!-- /report -->"


def fill_document(document: Path, exp_dir: Path, sections: dict[str, str], out_dir: Path) -> int:
    """Replace, in the markdown file `document`, every block written for `exp_dir`

        <!-- report runs/bench seeds figure=img/bench_retention.png -->
        (anything: replaced)
        <!-- /report -->

    with that section of the report (its own heading left out, lower headings kept as bold lines); with
    `figure=` the section's figure is copied there (relative to the document). Blocks naming other experiment
    directories are left as they are. The file is written only when every block of this directory is valid.
    Returns the number of blocks filled."""
    lines = document.read_text(encoding="utf-8").splitlines()
    out, figures, filled, i = [], [], 0, 0
    while i < len(lines):
        line = lines[i]
        out.append(line)
        i += 1
        if not line.startswith(BLOCK_START) or not line.rstrip().endswith("-->"):
            continue
        words = line[len(BLOCK_START):].rstrip()[:-3].split()
        if len(words) < 2:
            raise UserError(f"--into {document}:{i}: a report block names its experiment directory and section, "
                            f"e.g. '{BLOCK_START}runs/bench seeds -->'")
        where, name, options = words[0], words[1], words[2:]
        end = next((j for j in range(i, len(lines)) if lines[j].strip() == BLOCK_END), None)
        if end is None:
            raise UserError(f"--into {document}:{i}: the report block has no '{BLOCK_END}' line after it; add one")
        if Path(where).resolve() != exp_dir.resolve():
            continue  # another experiment's block: kept, filled by its own report
        if name not in sections:
            raise UserError(f"--into {document}:{i}: no report section {name!r}{did_you_mean(name, sections)}; "
                            f"sections: {', '.join(sections)}")
        body = [f"**{t[3:]}**" if t.startswith("## ") else t for t in sections[name].strip("\n").splitlines()]
        if body and body[0].startswith("**"):
            body = body[1:]  # the section's own heading: the document has its own
        if not any(t.strip() for t in body):
            raise UserError(f"--into {document}:{i}: {exp_dir} gives nothing for section {name!r} (its runs have "
                            "no such results); remove the block or report another directory")
        for option in options:
            key, _, value = option.partition("=")
            if key != "figure" or not value:
                raise UserError(f"--into {document}:{i}: unknown block option {option!r}; the one option is "
                                "figure=PATH (relative to the document)")
            figures.append((out_dir / SECTION_FIGURES[name], document.parent / value))
        out += [""] + "\n".join(body).strip("\n").splitlines() + [""]
        i = end
        filled += 1
    if not filled:
        raise UserError(f"--into {document}: no report block for {exp_dir}; add '{BLOCK_START}{exp_dir} seeds -->' "
                        f"and a '{BLOCK_END}' line where the table goes")
    for source, _ in figures:
        if not source.is_file():
            raise UserError(f"--into {document}: the report drew no {source.name} for {exp_dir}; drop figure= there")
    tmp = document.with_name(document.name + ".tmp")
    tmp.write_text("\n".join(out) + "\n", encoding="utf-8")
    for source, target in figures:
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, target)
    os.replace(tmp, document)
    return filled


@cli_entry_point
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lit_knowledge.report", description=__doc__.splitlines()[0])
    parser.add_argument("experiment_dir", type=Path, help="runs/<experiment>: holds one directory per run")
    parser.add_argument("--out", type=Path, default=None, help="where to write comparison.* (default: experiment_dir)")
    parser.add_argument("--into", type=Path, default=None, metavar="DOC.md",
                        help="also fill this markdown file's report blocks for experiment_dir "
                             "('<!-- report DIR SECTION [figure=PATH] -->' ... '<!-- /report -->')")
    args = parser.parse_args(argv)
    if args.into is not None and not args.into.is_file():  # before the report's work, not after
        raise UserError(f"--into {args.into}: no such file; give the markdown file that holds the report blocks")
    sections = report_sections(args.experiment_dir, args.out)
    print("".join(sections.values()), end="")
    if args.into is not None:
        n = fill_document(args.into, Path(args.experiment_dir), sections, args.out or Path(args.experiment_dir))
        print(f"{args.into}: {n} report block{'s' if n != 1 else ''} filled from {args.experiment_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
