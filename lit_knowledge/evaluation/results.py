"""A run's results: the files in its run directory, a markdown table, and logging to a Lightning logger.

The results dict, the one shape every method and entry point hands over:

    {
      "method": "selfparam",            # config name of the method
      "experiment": "quickstart",       # experiment (the folder above the run directory)
      "run": "selfparam-seed0",         # run name
      "kind": "qa" | "edit" | "pretrain",
      "metrics": {name: number or None},
          # QA streams:   efficacy_em, efficacy_f1, retention_f1, locality_f1, lm_loss,
          #               wall_time_s, update_time_per_step_s, extra_storage_bytes, peak_memory_bytes,
          #               update_time_total_s, eval_time_total_s (the wall time spent updating and
          #               evaluating; the rest is start-up: model, data, teacher caches), ...
          # edit streams: reliability, generalization, locality, portability, lm_loss, ...
      "curves": {name: [value after step 1, after step 2, ...]},   # optional; None allowed
          # an optional "step" entry gives the x values (e.g. number of edits so far);
          # without it the x value of entry i is i + 1
      "retention_matrix": [[...], ...],  # optional; row i = after step i, column j = F1 on probes of step j
      "config": {...},                   # optional; the resolved config
      "peak_memory_scope": "cpu_rss_run" | "cpu_rss_process" | "cuda_allocated",  # what peak_memory_bytes is
    }

`write_results(run_dir, results)` writes, each atomically (temporary file, then os.replace):
    results.json          the dict (indent 2; NaN / inf become null, tensors become numbers)
    results.md            title, metrics table, per-step curve table, retention matrix
    retention_curve.png   only when some curve has more than one step

Call these on global rank zero only in multi-process runs.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

from lit_knowledge.evaluation import plotted_curves

RESULTS_JSON = "results.json"
RESULTS_MD = "results.md"
CURVE_PNG = "retention_curve.png"

STEP_KEY = "step"
MISSING = "–"


# ------------------------------------------------------------------------------------- helpers


def to_jsonable(value: Any) -> Any:
    """A copy of `value` that json.dumps accepts: tensors and numpy values to Python, NaN/inf to None."""
    if isinstance(value, dict):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_jsonable(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "tolist") and not isinstance(value, (str, bytes)):  # torch tensors, numpy arrays/scalars
        return to_jsonable(value.tolist())
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return str(value)


def _atomic_write_text(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def format_value(value: Any) -> str:
    """A table cell: floats with 3 decimals, ints as they are, None / NaN as '–'."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return MISSING
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return f"{value:.3f}"
    return str(value).replace("|", "\\|").replace("\n", " ")


def _is_scalar(value: Any) -> bool:
    return value is None or (isinstance(value, (int, float)) and not isinstance(value, bool))


def scalar_metrics(results: dict) -> dict[str, float]:
    """The numeric, finite entries of results["metrics"]."""
    out = {}
    for name, value in (results.get("metrics") or {}).items():
        if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
            out[name] = float(value)
    return out


def curve_steps(curves: dict) -> list:
    """The x values of the per-step curves: curves["step"] when given, else 1..length of the longest curve."""
    if curves.get(STEP_KEY):
        return list(curves[STEP_KEY])
    length = max((len(v) for k, v in curves.items() if k != STEP_KEY), default=0)
    return list(range(1, length + 1))


def curves_to_plot(curves: dict) -> list[str]:
    """Names of the curves worth a plot: the main ones present, else every curve."""
    names = [k for k in curves if k != STEP_KEY and curves[k]]
    main = [k for k in plotted_curves() if k in names]
    return main or names


def _has_multistep_curve(results: dict) -> bool:
    curves = results.get("curves") or {}
    return any(len(v or []) > 1 for k, v in curves.items() if k != STEP_KEY)


# --------------------------------------------------------------------------------------- tables


def _markdown(header: list[str], body: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in body]
    return "\n".join(lines) + "\n"


def results_table(rows: list[dict], columns: list[str] | None = None) -> str:
    """A markdown table with one row per run: run, method, then the metric columns.

    Each row is a results dict (metrics under "metrics") or a flat dict of metrics. `columns`
    defaults to every scalar metric seen, in order of first appearance.
    """

    def metrics_of(row: dict) -> dict:
        return row["metrics"] if isinstance(row.get("metrics"), dict) else row

    if columns is None:
        columns = []
        for row in rows:
            for name, value in metrics_of(row).items():
                if name not in columns and name not in ("run", "method") and _is_scalar(value):
                    columns.append(name)
    body = [
        [format_value(row.get("run")), format_value(row.get("method"))]
        + [format_value(metrics_of(row).get(c)) for c in columns]
        for row in rows
    ]
    return _markdown(["run", "method", *columns], body)


def curve_table(curves: dict) -> str:
    """A markdown table of the per-step curves: one row per step, one column per curve."""
    names = [k for k in curves if k != STEP_KEY]
    steps = curve_steps(curves)
    body = []
    for i, step in enumerate(steps):
        body.append([format_value(step)] + [format_value(_at(curves[n], i)) for n in names])
    return _markdown([STEP_KEY, *names], body)


def _at(values: list | None, i: int):
    return values[i] if values is not None and i < len(values) else None


def _matrix_table(matrix: list[list]) -> str:
    width = max((len(r) for r in matrix), default=0)
    header = ["after step", *[f"step {j + 1}" for j in range(width)]]
    body = [[str(i + 1)] + [format_value(_at(r, j)) for j in range(width)] for i, r in enumerate(matrix)]
    return _markdown(header, body)


def results_markdown(results: dict) -> str:
    """The text of results.md: title, metrics table, per-step curve table, retention matrix."""
    title = " / ".join(str(results[k]) for k in ("experiment", "run") if results.get(k)) or "results"
    parts = [f"# {title}\n", f"method: {results.get('method', MISSING)}, kind: {results.get('kind', MISSING)}\n"]
    parts += ["## Metrics\n", results_table([results])]
    curves = results.get("curves") or {}
    if any(k != STEP_KEY for k in curves):
        parts += ["## Per-step curves\n", curve_table(curves)]
    if results.get("retention_matrix"):
        parts += ["## Retention matrix (F1)\n", _matrix_table(results["retention_matrix"])]
    return "\n".join(parts)


# ----------------------------------------------------------------------------------------- plots


TIME_CURVE = "update_time_s"


def curve_figure(curves: dict, title: str = "", xlabel: str = "step"):
    """The main per-step curves (None shows as a gap) against the step; beside them, when the curves have it,
    the time per update against the step (its own axis: seconds, not a score)."""
    from matplotlib.figure import Figure  # a bare Figure renders with Agg and never touches pyplot state
    from matplotlib.ticker import MaxNLocator

    steps = curve_steps(curves)
    timed = any(v is not None for v in curves.get(TIME_CURVE) or [])
    fig = Figure(figsize=(10 if timed else 6, 4), dpi=100)
    axes = fig.subplots(1, 2 if timed else 1, squeeze=False)[0]
    panels = [(axes[0], [n for n in curves_to_plot(curves) if n != TIME_CURVE], "score")]
    if timed:
        panels.append((axes[1], [TIME_CURVE], "seconds per update"))
    for ax, names, ylabel in panels:
        for name in names:
            ys = [math.nan if v is None else float(v) for v in curves[name]][: len(steps)]
            ax.plot(steps[: len(ys)], ys, marker="o", markersize=3, label=name)
        ax.set_xlabel(xlabel)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
        ax.legend()
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_curves(curves: dict, path: Path, title: str = "", xlabel: str = "step") -> None:
    """`curve_figure` saved as a png at `path` (written whole, then renamed into place)."""
    fig = curve_figure(curves, title, xlabel)
    tmp = path.with_name(path.name + ".tmp")
    fig.savefig(tmp, format="png")
    os.replace(tmp, path)


# ----------------------------------------------------------------------------------------- write


def write_results(run_dir: Path, results: dict) -> None:
    """Write results.json, results.md and (when a curve has more than one step) retention_curve.png."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    clean = to_jsonable(results)
    _atomic_write_text(run_dir / RESULTS_JSON, json.dumps(clean, indent=2, allow_nan=False) + "\n")
    _atomic_write_text(run_dir / RESULTS_MD, results_markdown(clean))
    png = run_dir / CURVE_PNG
    if _has_multistep_curve(clean):
        title = " / ".join(str(clean[k]) for k in ("method", "run") if clean.get(k))
        xlabel = "number of edits" if clean.get("kind") == "edit" else "step"
        plot_curves(clean["curves"], png, title=title, xlabel=xlabel)
    elif png.exists():
        png.unlink()  # a stale plot from an earlier run in the same directory


def read_results(run_dir: Path) -> dict:
    """Load results.json from a run directory."""
    return json.loads((Path(run_dir) / RESULTS_JSON).read_text(encoding="utf-8"))


# --------------------------------------------------------------------------------------- loggers


def log_results_to_logger(logger, results: dict, run_dir: Path | None = None) -> None:
    """Send the results to a Lightning logger (or a list of them); None does nothing.

    WandbLogger: scalar metrics into the run summary, the per-step curves as a wandb.Table and,
    when `run_dir` holds retention_curve.png, the plot as a wandb.Image. Other loggers
    (CSVLogger, TensorBoardLogger, ...): log_metrics with the scalar metrics.
    """
    if logger is None:
        return
    if isinstance(logger, (list, tuple)):
        for one in logger:
            log_results_to_logger(one, results, run_dir)
        return
    results = to_jsonable(results)
    metrics = scalar_metrics(results)
    if _is_wandb_logger(logger):
        _log_to_wandb(logger, results, metrics, run_dir)
        return
    if metrics:
        logger.log_metrics(metrics)
    if hasattr(logger, "save"):
        logger.save()


def _is_wandb_logger(logger) -> bool:
    from lightning.pytorch.loggers import WandbLogger

    return isinstance(logger, WandbLogger)


def _log_to_wandb(logger, results: dict, metrics: dict, run_dir: Path | None) -> None:
    import wandb

    run = logger.experiment
    run.summary.update(metrics)
    payload = {}
    curves = results.get("curves") or {}
    names = [k for k in curves if k != STEP_KEY]
    if names:
        steps = curve_steps(curves)
        data = [[step] + [_at(curves[n], i) for n in names] for i, step in enumerate(steps)]
        payload["results/curves"] = wandb.Table(columns=[STEP_KEY, *names], data=data)
    png = Path(run_dir) / CURVE_PNG if run_dir is not None else None
    if png is not None and png.exists():
        payload["results/retention_curve"] = wandb.Image(str(png))
    if payload:
        run.log(payload)
