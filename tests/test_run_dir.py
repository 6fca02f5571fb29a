"""Run directories: layout, deterministic names, metadata, resumption rules and checkpoints."""

from __future__ import annotations

import json
import os
import re

import pytest
from omegaconf import OmegaConf

from lit_knowledge.config import config_hash, identity, load_config
from lit_knowledge.errors import UserError
from lit_knowledge.run import RunDir, run_name

META_KEYS = {"git_sha", "config_hash", "wandb_run_id", "start_time", "end_time", "status"}


@pytest.fixture(autouse=True)
def _no_slurm(monkeypatch):
    monkeypatch.delenv("SLURM_JOB_ID", raising=False)


def cfg_for(root, *overrides):
    return load_config([], [f"run.root={root}", "run.experiment=exp", *overrides])


def meta(run: RunDir) -> dict:
    return json.loads(run.meta_path.read_text())


def test_layout_after_start(tmp_path):
    cfg = cfg_for(tmp_path, "method.name=ft_qa")
    run = RunDir(cfg)
    ckpt = run.start()
    assert ckpt is None  # nothing to resume
    assert run.path == tmp_path / "exp" / run.name
    assert run.path.is_dir()
    assert (run.path / "config.yaml").is_file()
    assert (run.path / "checkpoints").is_dir()
    m = meta(run)
    assert META_KEYS <= set(m)
    assert m["status"] == "running" and m["end_time"] is None
    assert m["config_hash"] == config_hash(identity(cfg))
    assert re.fullmatch(r"[0-9a-z]+", m["wandb_run_id"])
    assert m["git_sha"] is None or re.fullmatch(r"[0-9a-f]{40}", m["git_sha"])
    # the saved config reloads to the resolved config
    assert OmegaConf.to_container(OmegaConf.load(run.path / "config.yaml")) == OmegaConf.to_container(cfg)
    # no temporary files left behind by the atomic writes
    assert not [p for p in run.path.iterdir() if ".tmp" in p.name]


def test_derived_name_is_deterministic_and_not_a_timestamp(tmp_path):
    a = run_name(cfg_for(tmp_path, "method.name=ft_qa"))
    b = run_name(cfg_for(tmp_path, "method.name=ft_qa"))
    assert a == b
    assert re.fullmatch(r"ft_qa-[0-9a-f]{8}", a), a
    # the suffix is the hash of the config's identity, not a time stamp
    assert a.split("-", 1)[1] == config_hash(identity(cfg_for(tmp_path, "method.name=ft_qa")), 8)
    # a different (non-volatile) config gives a different name
    assert run_name(cfg_for(tmp_path, "method.name=ft_qa", "run.seed=1")) != a
    assert run_name(cfg_for(tmp_path, "method.name=ft_qa", "method.lr=0.5")) != a
    assert run_name(cfg_for(tmp_path, "method.name=ft_context")).startswith("ft_context-")
    # volatile keys (and the run root) do not change it
    assert run_name(cfg_for(tmp_path, "method.name=ft_qa", "trainer.max_steps=3", "logger.backend=none")) == a
    assert run_name(cfg_for(tmp_path / "elsewhere", "method.name=ft_qa")) == a
    # an explicit name wins
    assert run_name(cfg_for(tmp_path, "run.name=my_run")) == "my_run"


def test_same_config_same_directory(tmp_path):
    r1 = RunDir(cfg_for(tmp_path))
    r1.start()
    r2 = RunDir(cfg_for(tmp_path))
    assert r2.path == r1.path


def test_finish_sets_status_and_end_time(tmp_path):
    run = RunDir(cfg_for(tmp_path))
    run.start()
    start = meta(run)["start_time"]
    run.finish()
    m = meta(run)
    assert m["status"] == "completed"
    assert m["end_time"] is not None and m["end_time"] >= start
    run.finish("failed")
    assert meta(run)["status"] == "failed"


def test_restart_keeps_the_wandb_run_id_and_start_time(tmp_path):
    r1 = RunDir(cfg_for(tmp_path))
    r1.start()
    r1.finish()
    first = meta(r1)
    r2 = RunDir(cfg_for(tmp_path))
    r2.start()
    second = meta(r2)
    assert second["wandb_run_id"] == first["wandb_run_id"]
    assert second["start_time"] == first["start_time"]
    assert second["status"] == "running" and second["end_time"] is None


def test_fresh_runs_get_different_wandb_ids(tmp_path):
    a = RunDir(cfg_for(tmp_path, "run.name=a"))
    b = RunDir(cfg_for(tmp_path, "run.name=b"))
    a.start(), b.start()
    assert meta(a)["wandb_run_id"] != meta(b)["wandb_run_id"]


def test_changed_non_volatile_key_is_refused_and_named(tmp_path):
    RunDir(cfg_for(tmp_path, "run.name=fixed", "run.seed=0")).start()
    with pytest.raises(UserError) as info:
        RunDir(cfg_for(tmp_path, "run.name=fixed", "run.seed=1")).start()
    msg = str(info.value)
    assert "\n" not in msg
    assert "run.seed" in msg and "0 -> 1" in msg
    # and the original config was not overwritten
    saved = OmegaConf.load(tmp_path / "exp" / "fixed" / "config.yaml")
    assert saved.run.seed == 0


def test_changed_method_param_is_named(tmp_path):
    RunDir(cfg_for(tmp_path, "run.name=fixed", "method.name=ft_qa")).start()
    with pytest.raises(UserError, match=r"method\.lr"):
        RunDir(cfg_for(tmp_path, "run.name=fixed", "method.name=ft_qa", "method.lr=0.5")).start()


def test_changed_volatile_key_is_allowed(tmp_path):
    r1 = RunDir(cfg_for(tmp_path, "trainer.max_steps=5"))
    r1.start()
    wid = meta(r1)["wandb_run_id"]
    r2 = RunDir(cfg_for(tmp_path, "trainer.max_steps=50", "logger.backend=none"))
    assert r2.path == r1.path
    r2.start()
    assert meta(r2)["wandb_run_id"] == wid
    # the directory's config.yaml now holds the new volatile value
    assert OmegaConf.load(r2.path / "config.yaml").trainer.max_steps == 50


def test_resume_never_clears_checkpoints_and_allows_a_changed_config(tmp_path):
    r1 = RunDir(cfg_for(tmp_path, "run.name=fixed"))
    r1.start()
    wid = meta(r1)["wandb_run_id"]
    (r1.checkpoints / "last.ckpt").write_text("x")
    (r1.checkpoints / "step5.ckpt").write_text("x")
    r2 = RunDir(cfg_for(tmp_path, "run.name=fixed", "run.seed=3"))
    assert r2.start(resume="never") is None
    assert list(r2.checkpoints.glob("*.ckpt")) == []
    assert OmegaConf.load(r2.path / "config.yaml").run.seed == 3
    assert meta(r2)["wandb_run_id"] != wid  # a new run, not a resumption


def test_a_key_added_since_the_run_was_made_is_no_change_while_it_holds_its_default(tmp_path):
    """A run directory written before a config key existed is the same run when the key holds its default (the
    behaviour the run had), and another run when it is set to something else."""
    r1 = RunDir(cfg_for(tmp_path, "run.name=fixed"))
    r1.start()
    written = OmegaConf.load(r1.path / "config.yaml")
    del written.eval["max_probes"]  # as if the key had been added to the schema after this run was made
    OmegaConf.save(written, r1.path / "config.yaml")
    RunDir(cfg_for(tmp_path, "run.name=fixed")).check()
    with pytest.raises(UserError, match=r"eval.max_probes: '<unset>' -> 7"):
        RunDir(cfg_for(tmp_path, "run.name=fixed", "eval.max_probes=7")).check()


def test_resume_auto_picks_the_highest_global_step(tmp_path):
    import torch

    run = RunDir(cfg_for(tmp_path))
    run.start()
    for i, (name, step) in enumerate([("step10.ckpt", 10), ("last.ckpt", 10), ("step5.ckpt", 5)]):
        p = run.checkpoints / name
        torch.save({"global_step": step}, p)
        os.utime(p, (1_000_000 + i * 100, 1_000_000 + i * 100))
    (run.checkpoints / "notes.txt").write_text("not a checkpoint")
    # step 10 beats the newer file of step 5; between two step-10 files the newer one wins
    assert run.resume_checkpoint("auto") == str(run.checkpoints / "last.ckpt")
    os.utime(run.checkpoints / "step10.ckpt", (2_000_000, 2_000_000))
    assert run.resume_checkpoint("auto") == str(run.checkpoints / "step10.ckpt")
    # start() returns it too
    assert RunDir(cfg_for(tmp_path)).start("auto") == str(run.checkpoints / "step10.ckpt")
    assert run.resume_checkpoint("never") is None


def test_resume_auto_without_checkpoints(tmp_path):
    run = RunDir(cfg_for(tmp_path))
    assert run.start("auto") is None


def test_explicit_checkpoint(tmp_path):
    run = RunDir(cfg_for(tmp_path))
    run.start()
    import torch

    ckpt = tmp_path / "elsewhere.ckpt"
    torch.save({"global_step": 3}, ckpt)
    assert run.resume_checkpoint(str(ckpt)) == str(ckpt)
    missing = tmp_path / "missing.ckpt"
    with pytest.raises(UserError) as info:
        run.resume_checkpoint(str(missing))
    assert str(missing) in str(info.value) and "\n" not in str(info.value)


def test_missing_explicit_checkpoint_from_start(tmp_path):
    with pytest.raises(UserError, match="missing.ckpt"):
        RunDir(cfg_for(tmp_path)).start(str(tmp_path / "missing.ckpt"))


def test_slurm_job_ids_are_appended(tmp_path, monkeypatch):
    monkeypatch.setenv("SLURM_JOB_ID", "111")
    r1 = RunDir(cfg_for(tmp_path))
    r1.start()
    assert meta(r1)["slurm_job_ids"] == ["111"]
    RunDir(cfg_for(tmp_path)).start()  # same job restarted: not duplicated
    assert meta(r1)["slurm_job_ids"] == ["111"]
    monkeypatch.setenv("SLURM_JOB_ID", "222")
    RunDir(cfg_for(tmp_path)).start()
    assert meta(r1)["slurm_job_ids"] == ["111", "222"]


def test_no_slurm_key_outside_slurm(tmp_path):
    run = RunDir(cfg_for(tmp_path))
    run.start()
    assert "slurm_job_ids" not in meta(run)


def test_corrupt_meta_is_a_user_error(tmp_path):
    run = RunDir(cfg_for(tmp_path))
    run.start()
    run.meta_path.write_text("{not json")
    with pytest.raises(UserError, match="run_meta.json"):
        RunDir(cfg_for(tmp_path)).start()
    # --resume never starts over
    RunDir(cfg_for(tmp_path)).start("never")
    assert meta(run)["status"] == "running"
