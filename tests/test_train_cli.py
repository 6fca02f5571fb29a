"""The training entry point: dry runs of every config, and end-to-end runs (slow) through the real CLI."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from conftest import ALL_CONFIGS, CONFIGS, DEBUG_YAML, REPO
from omegaconf import OmegaConf

from lit_knowledge import train
from lit_knowledge.config import load_config

QA_METRICS = ("efficacy_em", "efficacy_f1", "retention_f1", "locality_f1", "wall_time_s",
              "update_time_per_step_s", "update_time_total_s", "eval_time_total_s", "extra_storage_bytes",
              "peak_memory_bytes")
META_KEYS = ("git_sha", "config_hash", "wandb_run_id", "start_time", "end_time", "status")


def files_under(path: Path) -> list[Path]:
    return sorted(p for p in path.rglob("*")) if path.exists() else []


def run_dirs(root: Path) -> list[Path]:
    return sorted(p.parent for p in root.rglob("run_meta.json"))


# ------------------------------------------------------------------------------------------ dry runs


@pytest.mark.parametrize("path", ALL_CONFIGS, ids=lambda p: str(p.relative_to(CONFIGS)))
def test_dry_run_every_config(path, debug_overrides, tmp_path, tmp_cache, monkeypatch, capsys):
    """--dry-run builds data, model and method, exits 0 and writes nothing: no run directory, no reader."""
    monkeypatch.chdir(tmp_path)  # a relative path written by mistake would land here
    root = tmp_path / "runs"
    code = train.main(["--config", str(path), *debug_overrides, f"run.root={root}", "--dry-run"])
    out, err = capsys.readouterr()
    cfg = load_config([str(path)])
    if cfg.model.name == "smollm2":
        from lit_knowledge.models.provision import provisioned_path

        if provisioned_path("smollm2") is None:  # real-model configs: one clear line that says how to get it
            assert code == 2 and err.count("\n") == 1 and "make provision-smollm" in err, err
            assert not root.exists()
            return
    assert code == 0, err
    assert "dry run ok" in out
    assert f"method={cfg.method.name}" in out
    assert not root.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["lk_cache"]  # nothing else written to the cwd
    assert files_under(tmp_cache) == []  # a dry run never pretrains the reader


def test_dry_run_bad_config_is_a_one_line_error(debug_overrides, tmp_path, capsys):
    code = train.main(["--config", str(CONFIGS / "baselines" / "ft_qa.yaml"), *debug_overrides,
                       f"run.root={tmp_path / 'runs'}", "method.epochs_per_stp=1", "--dry-run"])
    _, err = capsys.readouterr()
    assert code == 2
    assert err.count("\n") == 1 and err.startswith("error: ") and "did you mean method.epochs_per_step?" in err
    assert not (tmp_path / "runs").exists()


def test_overrides_may_come_before_between_and_after_options():
    args = train.parse_args(["run.seed=3", "--config", "a.yaml", "data.batch_size=2", "--config", "b.yaml",
                             "--dry-run", "eval.max_probes=5"])
    assert args.config == ["a.yaml", "b.yaml"] and args.dry_run
    assert args.overrides == ["run.seed=3", "data.batch_size=2", "eval.max_probes=5"]


@pytest.mark.slow  # a fresh interpreter: ~15 s of imports
def test_dry_run_subprocess(run_cli, debug_overrides, tmp_path, tmp_cache):
    root = tmp_path / "runs"
    code, out, err = run_cli(["--config", CONFIGS / "baselines" / "rag_bm25.yaml", *debug_overrides,
                              f"run.root={root}", "--dry-run"], cwd=tmp_path, cache=tmp_cache)
    assert code == 0, err
    assert "dry run ok: method=rag_bm25" in out
    assert "Traceback" not in err
    assert not root.exists() and files_under(tmp_cache) == []


# ------------------------------------------------------------------------------------------ end to end


def check_run_dir(run_dir: Path, method: str) -> dict:
    assert (run_dir / "config.yaml").is_file()
    assert (run_dir / "results.md").is_file()
    assert (run_dir / "checkpoints" / "last.ckpt").is_file()
    meta = json.loads((run_dir / "run_meta.json").read_text())
    for key in META_KEYS:
        assert key in meta, key
    assert meta["status"] == "completed"
    assert meta["end_time"] is not None and meta["end_time"] >= meta["start_time"]
    results = json.loads((run_dir / "results.json").read_text())
    assert results["method"] == method
    for key in QA_METRICS:
        assert key in results["metrics"], key
        assert isinstance(results["metrics"][key], (int, float)), key
    for key in ("efficacy_em", "efficacy_f1", "retention_f1", "locality_f1"):
        assert 0.0 <= results["metrics"][key] <= 1.0, key
    m = results["metrics"]
    assert m["wall_time_s"] > 0 and m["eval_time_total_s"] > 0  # every step's probes took some time
    assert m["update_time_total_s"] + m["eval_time_total_s"] <= m["wall_time_s"]  # the rest is start-up
    assert m["update_time_total_s"] == pytest.approx(m["update_time_per_step_s"] * m["num_steps"])
    assert results["metrics"]["peak_memory_bytes"] > 0 and results["peak_memory_scope"].startswith("cpu_rss")
    assert results["metrics"]["num_steps"] == 2  # debug.yaml: a two-step world stream
    saved = OmegaConf.load(run_dir / "config.yaml")
    assert saved.method.name == method and saved.run.root == str(run_dir.parent.parent)
    return meta


def run_dir_from_stdout(out: str) -> Path:
    m = re.search(r"^run directory: (.+)$", out, re.M)
    assert m, out
    return Path(m.group(1).strip())


@pytest.mark.slow  # pretrains the debug reader (once per session) and fine-tunes: ~1-2 min
def test_end_to_end_ft_qa(run_cli, debug_overrides, reader_cache):
    args = ["--config", CONFIGS / "baselines" / "ft_qa.yaml", *debug_overrides]
    code, out, err = run_cli(args, cache=reader_cache)
    assert code == 0, err[-3000:]
    run_dir = run_dir_from_stdout(out)
    root = Path(debug_overrides[-1].split("=", 1)[1])
    assert run_dir.parent == root / "baselines"
    assert run_dir.name.startswith("ft_qa-")
    meta = check_run_dir(run_dir, "ft_qa")
    assert "efficacy_f1" in out  # the results table is printed
    first = json.loads((run_dir / "results.json").read_text())

    # the same command finds the same directory and the same W&B run id
    code, out, err = run_cli(args, cache=reader_cache)
    assert code == 0, err[-3000:]
    assert run_dir_from_stdout(out) == run_dir
    again = check_run_dir(run_dir, "ft_qa")
    assert again["wandb_run_id"] == meta["wandb_run_id"]
    assert again["start_time"] == meta["start_time"]
    assert [d for d in run_dirs(root) if d.name.startswith("ft_qa-")] == [run_dir]
    second = json.loads((run_dir / "results.json").read_text())
    for key in ("efficacy_em", "efficacy_f1", "retention_f1", "locality_f1"):
        assert second["metrics"][key] == pytest.approx(first["metrics"][key]), key
    # the arm's budget: one optimiser step per batch of the plan, and the tokens of those batches
    budget = first["metrics"]
    assert budget["optimizer_steps"] > 0 and budget["train_tokens"] > 10 * budget["optimizer_steps"]
    assert (second["metrics"]["optimizer_steps"], second["metrics"]["train_tokens"]) == \
        (budget["optimizer_steps"], budget["train_tokens"])


def wandb_ids(run_dir: Path) -> set[str]:
    return {p.name.rsplit("-", 1)[-1] for p in (run_dir / "wandb").glob("offline-run-*")}


@pytest.mark.slow  # needs the debug reader (pretrained once per session): ~1 min alone
def test_wandb_offline_run(run_cli, debug_overrides, reader_cache):
    args = ["--config", CONFIGS / "baselines" / "base.yaml", *debug_overrides,
            "logger.backend=wandb", "logger.mode=offline"]
    code, out, err = run_cli(args, cache=reader_cache)
    assert code == 0, err[-3000:]
    run_dir = run_dir_from_stdout(out)
    meta = check_run_dir(run_dir, "base")
    wid = meta["wandb_run_id"]
    assert wandb_ids(run_dir) == {wid}
    offline = next((run_dir / "wandb").glob(f"offline-run-*-{wid}"))
    assert (offline / f"run-{wid}.wandb").is_file()
    budget = json.loads((run_dir / "results.json").read_text())["metrics"]
    assert (budget["optimizer_steps"], budget["train_tokens"]) == (0, 0)  # the floor trains nothing

    # a second invocation keeps the id: W&B resumes the same run
    code, out, err = run_cli(args, cache=reader_cache)
    assert code == 0, err[-3000:]
    assert run_dir_from_stdout(out) == run_dir
    meta2 = json.loads((run_dir / "run_meta.json").read_text())
    assert meta2["wandb_run_id"] == wid and meta2["status"] == "completed"
    assert wandb_ids(run_dir) == {wid}
    assert all((d / f"run-{wid}.wandb").is_file() for d in (run_dir / "wandb").glob("offline-run-*"))


def test_repo_configs_present():
    assert DEBUG_YAML.is_file() and (REPO / "configs" / "baselines" / "ft_qa.yaml").is_file()


def test_one_key_one_reader_whoever_pretrains_it(tmp_path, monkeypatch):
    """`train` with method pretrain and `ensure_reader` (inside any other command) build the same weights, and
    ensure_reader leaves the caller's random state alone: a run does the same whether its reader was cached."""
    import torch
    from safetensors.torch import load_file

    from lit_knowledge.config import load_config
    from lit_knowledge.methods.pretrain import ensure_reader

    tiny = ["model.tiny.num_layers=1", "model.tiny.hidden_size=32", "model.tiny.num_heads=2",
            "model.tiny.num_kv_heads=2", "model.tiny.intermediate_size=64", "pretrain.max_steps=3",
            "eval.max_probes=2", "logger.backend=none", "trainer.enable_progress_bar=false", f"run.root={tmp_path}"]
    cfg = load_config([str(DEBUG_YAML)], tiny)
    weights = []
    for cache, seed in (("a", 1), ("b", 99)):
        monkeypatch.setenv("LIT_KNOWLEDGE_CACHE", str(tmp_path / cache))
        torch.manual_seed(seed)
        torch.rand(seed)
        before = torch.get_rng_state()
        path = ensure_reader(cfg)
        assert torch.equal(torch.get_rng_state(), before)
        weights.append(load_file(str(path / "model.safetensors")))
    monkeypatch.setenv("LIT_KNOWLEDGE_CACHE", str(tmp_path / "c"))
    train.run_experiment(load_config([str(CONFIGS / "pretrain.yaml"), str(DEBUG_YAML)], tiny), resume="never")
    weights.append(load_file(str(next((tmp_path / "c" / "readers").iterdir()) / "model.safetensors")))
    for other in weights[1:]:
        assert other.keys() == weights[0].keys()
        assert all(torch.equal(other[k], weights[0][k]) for k in other)


# ------------------------------------------------------------------------------------------ caught before writing


def _no_gpu() -> bool:
    import torch

    return not torch.cuda.is_available()


def _no_deepspeed() -> bool:
    import importlib.util

    return importlib.util.find_spec("deepspeed") is None


TINY = ["model.name=tiny", "model.tiny.num_layers=1", "model.tiny.hidden_size=32", "model.tiny.num_heads=2",
        "model.tiny.num_kv_heads=2", "model.tiny.intermediate_size=64"]


def mistakes(tmp_path) -> list[tuple[list[str], str]]:
    """(overrides, what the error names) of mistakes that Lightning, torch or the file system used to find late."""
    (tmp_path / "a_file").write_text("x")
    out = [
        (["run.root=" + str(tmp_path / "a_file")], "run.root"),
        (["run.root=" + str(tmp_path / "a_file" / "below")], "run.root"),
        (["--resume", str(tmp_path / "a_file")], "a_file"),
        (["data.source=squad", "data.path=" + str(tmp_path / "missing.json")], "missing.json"),
        (["method.lr=-1"], "method.lr"),
        (["data.batch_size=0"], "data.batch_size"),
        (["trainer.accumulate_grad_batches=0"], "trainer.accumulate_grad_batches"),
        (["trainer.devices=0"], "trainer.devices"),
        (["model.lora.enabled=true", "model.lora.r=0"], "model.lora.r"),
        (["trainer.max_steps=-5"], "trainer.max_steps"),
        (["data.world.num_steps=-1"], "data.world.num_steps"),
    ]
    if _no_gpu():
        out += [(["trainer.accelerator=gpu"], "trainer.accelerator"),
                (["trainer.strategy=fsdp"], "trainer.strategy")]
    if _no_deepspeed():
        out.append((["trainer.strategy=deepspeed_stage_2"], "deepspeed"))
    return out


@pytest.mark.parametrize("case", range(14))
@pytest.mark.parametrize("dry_run", [True, False], ids=["dry-run", "run"])
def test_mistakes_end_in_one_line_and_write_nothing(case, dry_run, debug_overrides, tmp_path, tmp_cache, capsys,
                                                    monkeypatch):
    cases = mistakes(tmp_path)
    if case >= len(cases):
        pytest.skip("this machine has what the mistake lacks (a GPU or deepspeed)")
    extra, needle = cases[case]
    monkeypatch.chdir(tmp_path)
    root = tmp_path / "runs"
    args = ["--config", str(CONFIGS / "baselines" / "ft_qa.yaml"), *debug_overrides, f"run.root={root}", *TINY,
            *extra] + (["--dry-run"] if dry_run else [])
    code = train.main(args)
    _, err = capsys.readouterr()
    assert code == 2, err[-2000:]
    assert err.startswith("error: ") and err.count("\n") == 1 and needle in err, err
    assert not root.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a_file", "lk_cache"]
    assert files_under(tmp_cache) == []
