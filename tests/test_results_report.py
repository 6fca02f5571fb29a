"""Run results files and the experiment comparison report."""

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import report_of

from lit_knowledge import report
from lit_knowledge.evaluation.results import (
    log_results_to_logger,
    read_results,
    results_table,
    write_results,
)

REPO = Path(__file__).resolve().parents[1]


def read_csv(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def qa_results(run="selfparam-a", method="selfparam", steps=3):
    return {
        "method": method,
        "experiment": "exp",
        "run": run,
        "kind": "qa",
        "metrics": {
            "efficacy_em": 0.5,
            "efficacy_f1": torch.tensor(0.6666),
            "retention_f1": 0.25,
            "locality_f1": None,
            "lm_loss": float("nan"),
            "extra_storage_bytes": 1024,
        },
        "curves": {
            "efficacy_f1": [0.7, 0.6, 0.65][:steps],
            "retention_f1": [None, 0.3, 0.2][:steps],
            "lm_loss": [2.0, 2.1, 2.2][:steps],
        },
        "retention_matrix": [[0.7], [0.3, 0.6], [0.2, 0.2, 0.65]][:steps],
        "config": {"seed": 0},
    }


def test_results_table_format():
    rows = [
        {"run": "a", "method": "m", "metrics": {"f1": 2 / 3, "n": 7, "loss": None}},
        {"run": "b", "method": "m", "f1": 0.5},  # flat rows work too
    ]
    table = results_table(rows)
    lines = table.strip().splitlines()
    assert lines[0] == "| run | method | f1 | n | loss |"
    assert lines[2] == "| a | m | 0.667 | 7 | – |"
    assert lines[3] == "| b | m | 0.500 | – | – |"
    assert results_table(rows, ["f1"]).strip().splitlines()[3] == "| b | m | 0.500 |"


def test_write_results_files(tmp_path):
    run_dir = tmp_path / "runs" / "exp" / "selfparam-a"
    write_results(run_dir, qa_results())
    data = read_results(run_dir)
    assert data["metrics"]["efficacy_f1"] == pytest.approx(0.6666)  # tensor -> number
    assert data["metrics"]["lm_loss"] is None  # NaN -> null
    assert data["curves"]["retention_f1"] == [None, 0.3, 0.2]
    assert (run_dir / "results.json").read_text().startswith('{\n  "method": "selfparam"')
    md = (run_dir / "results.md").read_text()
    assert md.startswith("# exp / selfparam-a")
    assert "| selfparam-a | selfparam | 0.500 | 0.667 | 0.250 | – | – | 1024 |" in md
    assert "| step | efficacy_f1 | retention_f1 | lm_loss |" in md
    assert "| 1 | 0.700 | – | 2.000 |" in md
    assert "| 3 | 0.200 | 0.200 | 0.650 |" in md  # retention matrix row
    png = run_dir / "retention_curve.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not list(run_dir.glob("*.tmp"))


def test_png_only_with_more_than_one_step(tmp_path):
    write_results(tmp_path, qa_results(steps=1))
    assert (tmp_path / "results.json").exists() and (tmp_path / "results.md").exists()
    assert not (tmp_path / "retention_curve.png").exists()
    no_curves = {"method": "oedit", "run": "r", "kind": "edit", "metrics": {"reliability": 1.0}}
    write_results(tmp_path / "b", no_curves)
    assert not (tmp_path / "b" / "retention_curve.png").exists()
    assert "## Per-step curves" not in (tmp_path / "b" / "results.md").read_text()


def test_edit_curves_with_step_axis(tmp_path):
    results = {
        "method": "oedit",
        "run": "r",
        "kind": "edit",
        "metrics": {"reliability": 0.9, "locality": 0.8},
        "curves": {"step": [10, 100], "reliability": [1.0, 0.9], "locality": [0.95, 0.8]},
    }
    write_results(tmp_path, results)
    assert (tmp_path / "retention_curve.png").exists()
    assert "| 100 | 0.900 | 0.800 |" in (tmp_path / "results.md").read_text()


class RecordingLogger:
    def __init__(self):
        self.logged = []
        self.saved = False

    def log_metrics(self, metrics, step=None):
        self.logged.append(metrics)

    def save(self):
        self.saved = True


def test_log_results_to_plain_logger():
    log_results_to_logger(None, qa_results())  # no logger: nothing happens
    logger = RecordingLogger()
    log_results_to_logger([logger], qa_results())
    (metrics,) = logger.logged
    assert metrics["efficacy_em"] == 0.5 and metrics["extra_storage_bytes"] == 1024.0
    assert "locality_f1" not in metrics and "lm_loss" not in metrics  # None / NaN are not logged
    assert logger.saved


def test_log_results_to_csv_logger(tmp_path):
    from lightning.pytorch.loggers import CSVLogger

    logger = CSVLogger(tmp_path, name="exp")
    log_results_to_logger(logger, qa_results())
    rows = read_csv(Path(logger.log_dir) / "metrics.csv")
    assert float(rows[-1]["retention_f1"]) == 0.25


def test_log_results_to_wandb_logger(tmp_path):
    pytest.importorskip("wandb")
    from lightning.pytorch.loggers import WandbLogger

    class FakeRun:
        def __init__(self):
            self.summary = {}
            self.logged = []

        def log(self, payload):
            self.logged.append(payload)

    class OfflineWandbLogger(WandbLogger):
        fake = FakeRun()

        @property
        def experiment(self):
            return self.fake

    write_results(tmp_path, qa_results())
    logger = OfflineWandbLogger(offline=True, save_dir=str(tmp_path))
    log_results_to_logger(logger, qa_results(), run_dir=tmp_path)
    run = OfflineWandbLogger.fake
    assert run.summary["retention_f1"] == 0.25
    (payload,) = run.logged
    assert set(payload) == {"results/curves", "results/retention_curve"}
    assert payload["results/curves"].columns == ["step", "efficacy_f1", "retention_f1", "lm_loss"]


def make_experiment(root: Path) -> Path:
    exp = root / "runs" / "exp"
    write_results(exp / "selfparam-a", qa_results("selfparam-a", "selfparam"))
    other = qa_results("ftc-a", "ft_c")
    other["metrics"]["efficacy_f1"] = 0.3
    other["metrics"]["wall_time_s"] = 12.5
    write_results(exp / "ftc-a", other)
    return exp


def test_report_main(tmp_path, capsys):
    exp = make_experiment(tmp_path)
    assert report.main([str(exp)]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0].startswith("| run | method | efficacy_em | efficacy_f1 | retention_f1 | locality_f1 |")
    assert "| ftc-a | ft_c | 0.500 | 0.300 |" in out
    rows = read_csv(exp / "comparison.csv")
    assert [r["run"] for r in rows] == ["ftc-a", "selfparam-a"]
    assert rows[0]["wall_time_s"] == "12.5" and rows[1]["wall_time_s"] == ""
    assert float(rows[1]["efficacy_f1"]) == pytest.approx(0.6666)
    assert (exp / "comparison.md").read_text().startswith("# exp: 2 runs")
    assert (exp / "comparison.png").read_bytes()[:4] == b"\x89PNG"


def test_report_cli_out_dir(tmp_path):
    exp = make_experiment(tmp_path)
    out = tmp_path / "out"
    proc = subprocess.run(
        [sys.executable, "-m", "lit_knowledge.report", str(exp), "--out", str(out)],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert "selfparam-a" in proc.stdout
    assert len(read_csv(out / "comparison.csv")) == 2
    assert (out / "comparison.md").exists() and (out / "comparison.png").exists()
    assert not (exp / "comparison.csv").exists()


def test_report_missing_dir_exits_2(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "lit_knowledge.report", str(tmp_path / "nope")],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 2
    assert proc.stderr.startswith("error: ") and len(proc.stderr.strip().splitlines()) == 1


def test_report_no_results_exits_2(tmp_path, capsys):
    (tmp_path / "exp" / "run-a").mkdir(parents=True)
    (tmp_path / "exp" / "broken").mkdir()
    (tmp_path / "exp" / "broken" / "results.json").write_text("{not json")
    assert report.main([str(tmp_path / "exp")]) == 2
    err = capsys.readouterr().err
    assert err.strip().splitlines()[-1].startswith("error: no results.json")


def test_report_duplicate_run_names_use_paths(tmp_path):
    exp = tmp_path / "exp"
    write_results(exp / "seed0", qa_results("same"))
    write_results(exp / "seed1", qa_results("same"))
    rows = report.collect_results(exp)
    assert [r["run"] for r in rows] == ["seed0", "seed1"]
    assert json.loads((exp / "seed0" / "results.json").read_text())["run"] == "same"


def test_time_per_update_gets_its_own_panel_beside_the_scores():
    from lit_knowledge.evaluation.results import curve_figure

    curves = {"step": [1, 10, 100], "reliability": [1.0, 0.9, 0.9], "update_time_s": [0.2, 0.25, 0.3]}
    scores, times = curve_figure(curves).axes
    assert [line.get_label() for line in scores.get_lines()] == ["reliability"]
    assert [line.get_label() for line in times.get_lines()] == ["update_time_s"]
    assert times.get_ylabel() == "seconds per update"
    assert len(curve_figure({"step": [1, 2], "efficacy_f1": [0.5, 0.6]}).axes) == 1  # no times: one panel


def test_report_on_a_file_says_it_is_not_a_directory(tmp_path, capsys):
    f = tmp_path / "results.json"
    f.write_text("{}")
    assert report.main([str(f)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "is not a directory" in err and "does not exist" not in err


@pytest.mark.parametrize("make_out", [
    lambda tmp: (tmp / "plain_file").write_text("x") and tmp / "plain_file",  # a file where a directory is due
    lambda tmp: (tmp / "plain_file").write_text("x") and tmp / "plain_file" / "sub",  # below a file
])
def test_report_unwritable_out_is_one_line(tmp_path, capsys, make_out):
    exp = make_experiment(tmp_path)
    out = make_out(tmp_path)
    assert report.main([str(exp), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and "--out" in err


def test_report_read_only_out_is_one_line(tmp_path, capsys):
    import os

    exp = make_experiment(tmp_path)
    out = tmp_path / "ro"
    out.mkdir()
    out.chmod(0o500)
    try:
        if os.access(out, os.W_OK):  # root ignores permissions
            pytest.skip("running as root: a read-only directory is still writable")
        assert report.main([str(exp), "--out", str(out)]) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: ") and err.count("\n") == 1 and "not writable" in err
    finally:
        out.chmod(0o700)


def test_the_peak_memory_of_a_run_is_its_own_not_the_process_peak_of_an_earlier_run():
    import torch

    from lit_knowledge.peak_memory import PeakMemory

    earlier = torch.ones(100_000_000)  # 400 MB held by an earlier run in the same process (a sweep)
    del earlier
    peak = PeakMemory()
    if peak.scope != "cpu_rss_run":
        pytest.skip(f"this system does not let a process reset its peak resident size ({peak.scope})")
    before = peak.bytes()
    held = torch.ones(25_000_000)  # 100 MB held by this run
    after = peak.bytes()
    del held
    assert after - before >= 90e6  # this run's 100 MB counts
    assert after < before + 300e6  # the earlier 400 MB does not


def test_the_report_gives_each_arm_its_seed_interval_and_one_figure_of_every_arm(tmp_path):
    """A group repeated over seeds (`<arm>-seedK`) gains one row per arm: every metric it has as mean ± 95 %
    interval over its seeds, in the units the table names, and one figure with every arm's curve."""
    from lit_knowledge.report import mean_ci, seeds_section

    def results(run, f1, peak, curve):
        r = qa_results(run=run, method=run.split("-")[0])
        r["metrics"] = {"efficacy_f1": f1, "retention_f1": f1 / 2, "peak_memory_bytes": peak, "optimizer_steps": 10}
        r["curves"] = {"retention_f1": curve}
        return r

    rows = [results("selfparam-seed0", 0.6, 2 ** 20, [None, 0.4]), results("selfparam-seed1", 0.8, 3 * 2 ** 20, [None, 0.6]),
            results("base-seed0", 0.1, 2 ** 20, [None, 0.1])]
    text = report_of(tmp_path / "exp", rows)
    m, h = mean_ci([0.6, 0.8])
    assert "| arm | seeds | efficacy | retention | peak memory MiB | optimiser steps |" in text
    assert f"| selfparam | 2 | {m:.3f} ± {h:.3f} | {m / 2:.3f} ± {h / 2:.3f} | 2 ± {mean_ci([1, 3])[1]:.0f} | 10 ± 0 |" in text
    assert "| base | 1 | 0.100 | 0.050 | 1 | 10 |" in text
    assert (tmp_path / "exp" / "seeds.png").read_bytes()[:4] == b"\x89PNG"
    assert seeds_section(rows[2:], tmp_path / "one.png") == ""  # no arm with two seeds: no section
    transfer = [dict(r, kind="transfer") for r in rows]
    assert seeds_section(transfer, tmp_path / "t.png") == ""  # lora_transfer arms have their own section


def test_a_scale_group_tables_the_update_time_per_document_and_storage_by_stream_size(tmp_path):
    """Runs named `<arm>-docs<N>` (configs/experiments/bench_scale.yaml) are compared by stream size: the update
    time of a step divided by its documents, extra storage and retention at the end, per size."""
    def results(run, docs_per_step, step_s, storage, retention):
        r = qa_results(run=run, method=run.split("-")[0])
        r["metrics"] = {"final_f1_all_steps": 0.5, "update_time_per_step_s": step_s, "extra_storage_bytes": storage,
                        "retention_f1": retention}
        r["config"] = {"data": {"world": {"entities_per_step": docs_per_step}}}
        return r

    text = report_of(tmp_path / "exp", [results("memoryllm-docs10", 5, 0.5, 2048, 0.2),
                                        results("memoryllm-docs100", 20, 2.0, 2048, 0.1)])
    assert "| arm | update s / document, 10 | storage KiB, 10 | retention, 10 | update s / document, 100 |" in text
    assert "| memoryllm | 0.100 | 2 | 0.200 | 0.100 | 2 | 0.100 |" in text
    assert "## By stream size" in text and "| F1 docs 10 | EM docs 10 |" in text and "bank size" not in text
    assert (tmp_path / "exp" / "bank_sizes.png").read_bytes()[:4] == b"\x89PNG"


def test_report_into_fills_only_its_own_blocks_of_a_results_page_and_copies_the_figure(tmp_path, capsys):
    """`report DIR --into page.md` rewrites the page's blocks for DIR from the runs, keeps the author's text and
    other directories' blocks, copies the section's figure; a bad block is one line and leaves the page as it
    was."""
    def results(run, f1):
        r = qa_results(run=run, method=run.split("-")[0])
        r["metrics"] = {"efficacy_f1": f1, "retention_f1": f1 / 2}
        r["curves"] = {"retention_f1": [None, f1 / 2]}
        return r

    exp = tmp_path / "runs" / "bench"
    report_of(exp, [results("selfparam-seed0", 0.6), results("selfparam-seed1", 0.8), results("base-seed0", 0.1)])
    page = tmp_path / "docs" / "bench.md"
    page.parent.mkdir()
    other = "<!-- report runs/bench_edits seeds -->\nkept as it was\n<!-- /report -->"
    page.write_text(f"# Bench\n\nThe author's words.\n\n<!-- report {exp} seeds figure=img/b.png -->\n| stale |\n"
                    f"<!-- /report -->\n\n{other}\n")
    assert report.main([str(exp), "--into", str(page)]) == 0
    text = page.read_text()
    assert "The author's words." in text and other in text and "| stale |" not in text
    m, h = report.mean_ci([0.6, 0.8])
    assert f"| selfparam | 2 | {m:.3f} ± {h:.3f} |" in text and "Every arm over its seeds" not in text
    assert (page.parent / "img" / "b.png").read_bytes() == (exp / "seeds.png").read_bytes()
    assert "1 report block filled" in capsys.readouterr().out

    before = page.read_text()
    for bad, says in [(f"<!-- report {exp} seed -->\n<!-- /report -->", "did you mean seeds"),
                      (f"<!-- report {exp} seeds -->\nno end", "has no '<!-- /report -->'"),
                      (f"<!-- report {exp} seeds size=3 -->\n<!-- /report -->", "unknown block option"),
                      (f"<!-- report {exp} transfer_arms -->\n<!-- /report -->", "gives nothing for section")]:
        page.write_text(before + "\n" + bad + "\n")
        assert report.main([str(exp), "--into", str(page)]) == 2
        err = capsys.readouterr().err
        assert says in err and len(err.strip().splitlines()) == 1, err
        assert page.read_text() == before + "\n" + bad + "\n"  # nothing written
    page.write_text("no blocks here\n")
    assert report.main([str(exp), "--into", str(page)]) == 2
    assert "no report block for" in capsys.readouterr().err
    assert report.main([str(exp), "--into", str(tmp_path / "missing.md")]) == 2
    assert "no such file" in capsys.readouterr().err
