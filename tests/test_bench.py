"""`python -m lit_knowledge.bench overhead`: the figures are produced and consistent (no timing assertions)."""

from __future__ import annotations

import json
import math
import re

import pytest

from lit_knowledge.bench import TARGET_RATIO, main, overhead

# A smaller tiny model keeps the few steps cheap; the code path is the one the defaults run.
pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")  # Lightning: few batches vs log_every_n_steps

SMALL = ["model.tiny.num_layers=1", "model.tiny.hidden_size=32", "model.tiny.num_heads=2",
         "model.tiny.num_kv_heads=2", "model.tiny.intermediate_size=64"]


@pytest.fixture(scope="module")
def figures(tmp_path_factory):
    mp = pytest.MonkeyPatch()
    cache = tmp_path_factory.mktemp("bench_cache")
    mp.setenv("LIT_KNOWLEDGE_CACHE", str(cache))
    try:
        res = overhead(steps=3, batch_size=2, repeats=2, warmup=1, logger="csv", overrides=SMALL, verbose=False)
    finally:
        mp.undo()
    return res, cache


def test_figures_positive_and_ratio_from_them(figures):
    res, _ = figures
    plain, light = res["plain_s_per_step"], res["lightning_s_per_step"]
    assert plain > 0 and light > 0
    assert math.isclose(res["ratio"], light / plain, rel_tol=1e-12)
    assert res["target_ratio"] == TARGET_RATIO == 1.05
    assert res["meets_target"] == (res["ratio"] <= TARGET_RATIO)
    assert len(res["plain_s_per_step_repeats"]) == len(res["lightning_s_per_step_repeats"]) == 2
    assert all(x > 0 for x in res["plain_s_per_step_repeats"] + res["lightning_s_per_step_repeats"])
    # medians over repeats (two repeats: the mean of the two)
    assert math.isclose(plain, sum(res["plain_s_per_step_repeats"]) / 2)
    assert math.isclose(light, sum(res["lightning_s_per_step_repeats"]) / 2)
    for ratio, p, lt in zip(res["paired_ratio_repeats"], res["plain_s_per_step_repeats"],
                            res["lightning_s_per_step_repeats"]):
        assert math.isclose(ratio, lt / p)
    assert all(v >= 0 for v in res["fixed_costs_s"].values())
    s = res["settings"]
    assert (s["steps"], s["repeats"], s["warmup"], s["batch_size"], s["logger"]) == (3, 2, 1, 2, "csv")
    assert s["log_every_n_steps"] == 10 and s["gradient_clip_val"] == 1.0 and s["tokens_per_timed_run"] > 0
    assert res["environment"]["torch_num_threads"] >= 1


def test_bench_never_writes_a_reader_into_the_cache(figures):
    # PretrainReader.on_train_end would evaluate and cache the (untrained) reader; the benchmark must not.
    _, cache = figures
    assert not any(cache.rglob("*"))


def test_cli_prints_ratio_line_and_writes_json(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("LIT_KNOWLEDGE_CACHE", str(tmp_path / "cache"))
    out_json = tmp_path / "bench.json"
    code = main(["overhead", "--steps", "1", "--repeats", "1", "--warmup", "0", "--batch-size", "2",
                 "--logger", "none", "--json", str(out_json), *SMALL])
    assert code == 0
    lines = capsys.readouterr().out.strip().splitlines()
    m = re.fullmatch(r"ratio lightning/plain = (\d+\.\d{3}) \(target <= 1\.05\)", lines[-1])
    assert m, lines[-1]
    data = json.loads(out_json.read_text())
    assert data["settings"]["logger"] == "none" and data["settings"]["progress_bar"] is False
    assert data["plain_s_per_step"] > 0 and data["lightning_s_per_step"] > 0
    assert float(m.group(1)) == pytest.approx(data["lightning_s_per_step"] / data["plain_s_per_step"], abs=6e-4)
    assert any(line.startswith("plain ") for line in lines) and any(line.startswith("lightning ") for line in lines)


def test_bad_arguments_are_one_line_errors(capsys):
    assert main(["overhead", "--steps", "0"]) == 2
    assert capsys.readouterr().err.startswith("error: ")
    assert main(["reading", "--documents", "0"]) == 2
    assert capsys.readouterr().err.startswith("error: --documents")
    assert main(["reading", "--documents", "9", "data.world.num_steps=2", "data.world.entities_per_step=1"]) == 2
    assert "fewer than max_documents=9" in capsys.readouterr().err


def test_the_ddp_bench_prints_both_runs_metrics_and_the_ratio_against_its_target():
    from lit_knowledge.bench_ddp import format_ddp

    run = lambda p, wall: {"processes": p, "threads_per_process": 2 // p, "wall_s": wall,  # noqa: E731
                           "metrics": {"efficacy_f1": 0.5, "lm_loss": 2.0, "optimizer_steps": 10}}
    res = {"configs": ["configs/selfparam/batch.yaml"], "overrides": [], "threads": 2, "one": run(1, 100.0),
           "split": run(2, 55.0), "ratio": 0.55, "target_ratio": 0.6, "load_average": (1.0, 1.0, 1.0)}
    text = format_ddp(res)
    assert "| split (DDP) | 2 x 1 | 55.0 s | 0.5 |" in text
    assert text.endswith("ratio split / one: 0.55 (target <= 0.6: met)")
    assert format_ddp({**res, "ratio": 0.8}).endswith("(target <= 0.6: missed)")
    assert "| the rest (start-up, model, data) |" in text and "| split (DDP) | 50.0" not in text  # no split given
    timed = {**res["split"], "metrics": {**res["split"]["metrics"], "wall_time_s": 50.0, "update_time_total_s": 30.0,
                                         "eval_time_total_s": 12.5}}
    assert "| split (DDP) | 50.0 s | 30.0 s | 12.5 s | 7.5 s |" in format_ddp({**res, "split": timed})


def test_the_reading_bench_shows_the_shipped_reader_reads_one_document_and_struggles_among_several(tmp_cache, capsys):
    # The shipped reader, no pretraining: alone in the prompt a document's probes are answered (in_context 0.94);
    # with a later document after it the reader often answers from the wrong one (docs/results/memoryllm.md).
    overrides = ["data.world.num_steps=12", "data.world.entities_per_step=1"]
    assert main(["reading", "--documents", "2", *overrides]) == 0
    out = capsys.readouterr().out
    rows = dict(re.findall(r"^\| (\d) \| ([0-9.]+) \| [0-9.]+ \|$", out, re.M))
    assert set(rows) == {"1", "2"}
    assert float(rows["1"]) >= 0.9
    floor = float(re.search(r"^\| 0 \(closed book, the floor\) \| ([0-9.]+) \|", out, re.M).group(1))
    assert floor < 0.3  # the stream's people are new to the reader
    assert float(rows["2"]) < float(rows["1"]) - 0.2


@pytest.mark.slow  # two tiny training processes started by torchrun: ~40 s
def test_the_ddp_bench_can_start_the_split_run_with_torchrun(tmp_path, reader_cache, monkeypatch):
    """`--launcher torchrun` starts both processes at once; they split the work as under Lightning's launcher
    (each trains about half the tokens) and one of them writes the results."""
    from conftest import DEBUG_YAML, REPO, cli_env

    from lit_knowledge.bench_ddp import timed_run
    from lit_knowledge.errors import UserError

    for key, value in cli_env(reader_cache).items():
        monkeypatch.setenv(key, value)
    configs = [str(REPO / "configs/baselines/ft_qa.yaml"), str(DEBUG_YAML)]
    with pytest.raises(UserError, match="unknown launcher 'mpirun'"):
        timed_run(configs, [], tmp_path, "x", 2, 1, "mpirun")
    run = timed_run(configs, ["data.batch_size=4"], tmp_path, "split", 2, 1, "torchrun")
    m = run["metrics"]
    assert run["launcher"] == "torchrun" and run["processes"] == 2 and m["optimizer_steps"] > 0
    assert 0.3 * m["train_tokens"] < m["train_tokens_per_process"] < 0.7 * m["train_tokens"]
