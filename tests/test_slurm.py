"""SLURM support: allocation checks, sbatch commands, the submit CLI and the batch scripts.

No SLURM is needed: `sbatch`, `srun`, `scontrol` and `wandb` are replaced by small fake executables on
PATH that record what they were called with. The one `python -m lit_knowledge.submit` subprocess starts
before the first test and is checked by a late one, while the other CLI tests call `submit.main` in-process.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from lit_knowledge.config import Config
from lit_knowledge.errors import UserError
from lit_knowledge.slurm import check_allocation, parse_tasks_per_node, sbatch_command

REPO = Path(__file__).resolve().parents[1]
SBATCH_DIR = REPO / "sbatch"
BATCH_SCRIPTS = ["train.sbatch", "multinode.sbatch", "sweep_array.sbatch"]
BASE_CONFIG = "configs/baselines/base.yaml"


def make_cfg(**trainer) -> OmegaConf:
    cfg = OmegaConf.structured(Config)
    cfg.run.experiment = "exp"
    for key, value in trainer.items():
        cfg.trainer[key] = value
    return cfg


def fake_exe(bin_dir: Path, name: str, body: str) -> Path:
    bin_dir.mkdir(parents=True, exist_ok=True)
    path = bin_dir / name
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(0o755)
    return path


def clean_env(**extra) -> dict:
    """The current environment without SLURM variables (the tests may run inside a SLURM job)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLURM_", "SRUN_"))}
    env.update(extra)
    return env


# ---------------------------------------------------------------------------------------------- CLI run


RECORD_ARGS = 'for a in "$@"; do printf "%s\\n" "$a"; done >> "$FAKE_LOG"\n'


@pytest.fixture(scope="module")
def dry_run_proc():
    """`python -m lit_knowledge.submit ... --dry-run` as a real subprocess, started before the first test."""
    proc = subprocess.Popen([sys.executable, "-m", "lit_knowledge.submit", "--config", BASE_CONFIG, "--dry-run"],
                            cwd=REPO, env=clean_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    yield proc
    if proc.poll() is None:
        proc.kill()
        proc.communicate()


@pytest.fixture(scope="module", autouse=True)
def _start_cli_early(dry_run_proc):
    """Launch the CLI subprocess at once: it imports Lightning (seconds) while the fast tests run."""


# ---------------------------------------------------------------------------------------------- check_allocation


def test_tasks_per_node_notation():
    assert parse_tasks_per_node("4") == 4
    assert parse_tasks_per_node("4(x2)") == 4
    assert parse_tasks_per_node("8(x3),8") == 8
    with pytest.raises(UserError, match="uneven"):
        parse_tasks_per_node("4(x2),2")
    with pytest.raises(UserError):
        parse_tasks_per_node("four")


def test_check_allocation_match_passes():
    env = {"SLURM_JOB_ID": "1", "SLURM_NTASKS_PER_NODE": "4", "SLURM_NNODES": "2", "SLURM_NTASKS": "8"}
    check_allocation(make_cfg(devices=4, num_nodes=2).trainer, env=env)
    check_allocation(make_cfg(devices=4, num_nodes=2), env=env)  # the whole config works too
    check_allocation({"devices": 4, "num_nodes": 2}, env=env)
    check_allocation(make_cfg(devices=[0, 1, 2, 3], num_nodes=2).trainer, env=env)


def test_check_allocation_devices_mismatch():
    env = {"SLURM_JOB_ID": "1", "SLURM_NTASKS_PER_NODE": "2", "SLURM_NNODES": "1"}
    with pytest.raises(UserError) as info:
        check_allocation(make_cfg(devices=4).trainer, env=env)
    msg = str(info.value)
    assert "\n" not in msg
    assert "trainer.devices=4" in msg and "2 tasks per node" in msg
    assert "set trainer.devices=2" in msg and "--ntasks-per-node=4" in msg


def test_check_allocation_nodes_mismatch():
    env = {"SLURM_JOB_ID": "1", "SLURM_NTASKS_PER_NODE": "4", "SLURM_JOB_NUM_NODES": "1"}
    with pytest.raises(UserError) as info:
        check_allocation(make_cfg(devices=4, num_nodes=2).trainer, env=env)
    msg = str(info.value)
    assert "\n" not in msg
    assert "trainer.num_nodes=2" in msg and "1 node " in msg
    assert "set trainer.num_nodes=1" in msg and "--nodes=2" in msg
    assert "trainer.devices" not in msg


def test_check_allocation_both_mismatches_in_one_line():
    env = {"SLURM_JOB_ID": "1", "SLURM_NTASKS_PER_NODE": "1", "SLURM_NNODES": "1"}
    with pytest.raises(UserError) as info:
        check_allocation(make_cfg(devices=4, num_nodes=2).trainer, env=env)
    msg = str(info.value)
    assert "\n" not in msg and "trainer.devices=4" in msg and "trainer.num_nodes=2" in msg


def test_check_allocation_repeated_count_notation():
    env = {"SLURM_JOB_ID": "7", "SLURM_NTASKS_PER_NODE": "4(x2)", "SLURM_NNODES": "2"}
    check_allocation(make_cfg(devices=4, num_nodes=2).trainer, env=env)
    with pytest.raises(UserError, match="trainer.devices=2 but SLURM gives 4 tasks per node"):
        check_allocation(make_cfg(devices=2, num_nodes=2).trainer, env=env)


def test_check_allocation_ntasks_fallback():
    env = {"SLURM_JOB_ID": "1", "SLURM_NTASKS": "8", "SLURM_NNODES": "2"}
    check_allocation(make_cfg(devices=4, num_nodes=2).trainer, env=env)
    with pytest.raises(UserError, match="trainer.devices=8 but SLURM gives 4 tasks per node"):
        check_allocation(make_cfg(devices=8, num_nodes=2).trainer, env=env)


def test_check_allocation_auto_devices_skips_device_check():
    env = {"SLURM_JOB_ID": "1", "SLURM_NTASKS_PER_NODE": "1", "SLURM_NNODES": "1"}
    check_allocation(make_cfg(devices="auto").trainer, env=env)
    check_allocation(make_cfg(devices=-1).trainer, env=env)
    with pytest.raises(UserError, match="trainer.num_nodes=2"):
        check_allocation(make_cfg(devices="auto", num_nodes=2).trainer, env=env)


def test_check_allocation_without_slurm_is_a_no_op(monkeypatch):
    check_allocation(make_cfg(devices=8, num_nodes=3).trainer, env={})
    # SLURM-looking variables without a job id (e.g. left over in a login shell) are ignored too.
    check_allocation(make_cfg(devices=8).trainer, env={"SLURM_NTASKS_PER_NODE": "1", "SLURM_NNODES": "1"})
    for key in list(os.environ):
        if key.startswith("SLURM_"):
            monkeypatch.delenv(key)
    check_allocation(make_cfg(devices=8, num_nodes=3).trainer)  # default: os.environ
    monkeypatch.setenv("SLURM_JOB_ID", "5")
    monkeypatch.setenv("SLURM_NTASKS_PER_NODE", "2")
    with pytest.raises(UserError, match="trainer.devices=8"):
        check_allocation(make_cfg(devices=8).trainer)


# ---------------------------------------------------------------------------------------------- strategies


def test_ddp_does_not_copy_rank_zeros_buffers_before_every_forward():
    from lightning.pytorch.strategies import DDPStrategy

    from lit_knowledge.methods.components import load_model
    from lit_knowledge.train import build_strategy

    cfg = make_cfg(strategy="ddp")
    strategy = build_strategy(cfg)
    assert isinstance(strategy, DDPStrategy) and strategy._ddp_kwargs == {"broadcast_buffers": False}
    assert build_strategy(make_cfg(strategy="auto")) == "auto"
    # What makes that safe: the model's only buffers are its rotary tables, which training never changes,
    # and no method registers buffers of its own (its non-weight state is kept identical on every rank).
    cfg.model.name = "tiny"
    model, _ = load_model(cfg.model, cfg)
    assert {name.rsplit(".", 1)[-1] for name, _ in model.named_buffers()} <= {"inv_freq", "original_inv_freq"}
    package = Path(__file__).resolve().parents[1] / "lit_knowledge"
    assert not [p for p in package.rglob("*.py") if "register_buffer" in p.read_text()]


# ---------------------------------------------------------------------------------------------- sbatch_command


def test_sbatch_command_one_node():
    cfg = make_cfg(devices=4, accelerator="gpu")
    cmd = sbatch_command(cfg, ["configs/a.yaml", "configs/b.yaml"], ["trainer.devices=4", "run.name=x y"])
    assert cmd == [
        "sbatch", "--nodes=1", "--ntasks-per-node=4", "--gres=gpu:4", "--job-name=exp-base",
        "sbatch/train.sbatch",
        "--config", "configs/a.yaml", "--config", "configs/b.yaml", "trainer.devices=4", "run.name=x y",
    ]


def test_sbatch_command_two_nodes():
    cfg = make_cfg(devices=8, num_nodes=2, strategy="ddp")
    cmd = sbatch_command(cfg, ["c.yaml"], ["trainer.num_nodes=2"], sbatch_args=["--time=04:00:00"])
    assert cmd == [
        "sbatch", "--nodes=2", "--ntasks-per-node=8", "--gres=gpu:8", "--job-name=exp-base", "--time=04:00:00",
        "sbatch/multinode.sbatch", "--config", "c.yaml", "trainer.num_nodes=2",
    ]
    assert sbatch_command(cfg, [], [], script="my.sbatch")[-1] == "my.sbatch"


def test_sbatch_command_gres_rule():
    assert "--gres=gpu:2" in sbatch_command(make_cfg(devices=2, accelerator="cuda"), [], [])
    assert "--gres=gpu:2" in sbatch_command(make_cfg(devices=2, accelerator="auto"), [], [])
    cpu = sbatch_command(make_cfg(devices=2, accelerator="cpu"), [], [])
    assert not any(a.startswith("--gres") for a in cpu)
    assert "--ntasks-per-node=2" in cpu


def test_sbatch_command_refuses_what_it_cannot_request():
    with pytest.raises(UserError, match="trainer.devices"):
        sbatch_command(make_cfg(devices="auto"), [], [])
    with pytest.raises(UserError, match="trainer.num_nodes"):
        sbatch_command(make_cfg(), [], [], sbatch_args=["--nodes=2"])
    with pytest.raises(UserError, match="trainer.devices"):
        sbatch_command(make_cfg(), [], [], sbatch_args=["--ntasks-per-node=2"])
    with pytest.raises(UserError):
        sbatch_command(make_cfg(), [], [], sbatch_args=["-N2"])


def test_submit_in_process_without_sbatch(monkeypatch, capsys, tmp_path):
    """Argument handling of the CLI with a stubbed config loader (no Lightning import)."""
    from lit_knowledge import config as config_mod
    from lit_knowledge import submit

    seen = {}

    def fake_load(files, overrides):
        seen["args"] = (list(files), list(overrides))
        return make_cfg(devices=2)

    monkeypatch.setattr(config_mod, "load_config", fake_load)
    monkeypatch.setenv("PATH", str(tmp_path))  # no sbatch here
    argv = ["--config", "a.yaml", "trainer.devices=2", "--sbatch-arg=--time=01:00:00", "--config", "b.yaml",
            "run.seed=1", "--resume", "never"]
    assert submit.main(argv) == 2
    out, err = capsys.readouterr()
    assert seen["args"] == (["a.yaml", "b.yaml"], ["trainer.devices=2", "run.seed=1"])
    assert out.strip() == (
        "sbatch --nodes=1 --ntasks-per-node=2 --gres=gpu:2 --job-name=exp-base --time=01:00:00 sbatch/train.sbatch "
        "--config a.yaml --config b.yaml trainer.devices=2 run.seed=1 --resume never"
    )
    assert err.count("\n") == 1 and err.startswith("error: sbatch not found on PATH")


# ---------------------------------------------------------------------------------------------- scripts


def test_scripts_parse():
    scripts = sorted(SBATCH_DIR.iterdir())
    assert {p.name for p in scripts} >= set(BATCH_SCRIPTS) | {"sync_wandb.sh"}
    for path in scripts:
        proc = subprocess.run(["bash", "-n", str(path)], capture_output=True, text=True)
        assert proc.returncode == 0, f"{path.name}: {proc.stderr}"


@pytest.mark.parametrize("name", BATCH_SCRIPTS)
def test_batch_script_contents(name):
    text = (SBATCH_DIR / name).read_text()
    directives = [line.strip() for line in text.splitlines() if line.startswith("#SBATCH")]
    for expected in ("--signal=SIGUSR1@120", "--requeue", "--open-mode=append"):
        assert f"#SBATCH {expected}" in directives, expected
    assert any(d.startswith("#SBATCH --ntasks-per-node=") for d in directives)
    assert any(d.startswith("#SBATCH --output=logs/") for d in directives)
    assert "srun python -m lit_knowledge.train" in text
    for var in ("WANDB_MODE", "HF_HOME", "HF_HUB_OFFLINE"):
        assert f"export {var}=" in text, var
    # SIGUSR1 must reach Lightning in the srun tasks: no trap in the batch shell.
    assert not re.search(r"^\s*trap\b", text, re.MULTILINE)


SHOW_RUN = (
    'echo "WANDB_MODE=$WANDB_MODE HF_HOME=$HF_HOME HF_HUB_OFFLINE=$HF_HUB_OFFLINE MASTER_ADDR=${MASTER_ADDR:-}"\n'
    'for a in "$@"; do printf "[%s]\\n" "$a"; done\n'
)


def run_script(name, args, tmp_path, **extra_env):
    bin_dir = tmp_path / "bin"
    fake_exe(bin_dir, "srun", SHOW_RUN)
    env = clean_env(PATH=f"{bin_dir}{os.pathsep}{os.environ['PATH']}", SLURM_SUBMIT_DIR=str(tmp_path), **extra_env)
    for key in ("WANDB_MODE", "HF_HOME", "HF_HUB_OFFLINE", "MASTER_ADDR", "MASTER_PORT"):  # test the defaults
        if key not in extra_env:
            env.pop(key, None)
    return subprocess.run(["bash", str(SBATCH_DIR / name), *args], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=30)


def srun_args(stdout: str) -> list[str]:
    return [line[1:-1] for line in stdout.splitlines() if line.startswith("[")]


def test_train_script_passes_arguments_and_environment(tmp_path):
    proc = run_script("train.sbatch", ["--config", "a.yaml", "run.name=two words"], tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert srun_args(proc.stdout) == ["python", "-m", "lit_knowledge.train", "--config", "a.yaml", "run.name=two words"]
    assert f"WANDB_MODE=offline HF_HOME={tmp_path}/.cache/huggingface HF_HUB_OFFLINE=1" in proc.stdout

    proc = run_script("train.sbatch", [], tmp_path, WANDB_MODE="online", HF_HOME="/x", HF_HUB_OFFLINE="0")
    assert "WANDB_MODE=online HF_HOME=/x HF_HUB_OFFLINE=0" in proc.stdout


def test_multinode_script_sets_rendezvous(tmp_path):
    fake_exe(tmp_path / "bin", "scontrol", 'printf "gpu-a17\\ngpu-a18\\n"\n')
    proc = run_script("multinode.sbatch", ["--config", "a.yaml"], tmp_path, SLURM_JOB_NODELIST="gpu-a[17-18]",
                      SLURM_JOB_ID="123")
    assert proc.returncode == 0, proc.stderr
    assert "MASTER_ADDR=gpu-a17" in proc.stdout
    assert srun_args(proc.stdout)[-2:] == ["--config", "a.yaml"]


def test_sweep_script_picks_the_array_line(tmp_path):
    sweep = tmp_path / "sweep.txt"
    sweep.write_text(
        "# learning rates\n"
        "--config a.yaml method.lr=1e-4\n"
        "\n"
        "  --config b.yaml run.name='x y' c=$HOME\n"
        "--config c.yaml\n"
    )
    expected = {
        0: ["--config", "a.yaml", "method.lr=1e-4"],
        1: ["--config", "b.yaml", "run.name=x y", "c=$HOME"],
        2: ["--config", "c.yaml"],
    }
    for task, args in expected.items():
        proc = run_script("sweep_array.sbatch", ["sweep.txt", "trainer.max_steps=5"], tmp_path,
                          SLURM_ARRAY_TASK_ID=str(task))
        assert proc.returncode == 0, proc.stderr
        assert srun_args(proc.stdout) == ["python", "-m", "lit_knowledge.train", *args, "trainer.max_steps=5"]

    proc = run_script("sweep_array.sbatch", ["sweep.txt"], tmp_path, SLURM_ARRAY_TASK_ID="3")
    assert proc.returncode == 2 and "3 entries" in proc.stderr and "[python]" not in proc.stdout
    proc = run_script("sweep_array.sbatch", ["sweep.txt"], tmp_path)
    assert proc.returncode == 2 and "SLURM_ARRAY_TASK_ID" in proc.stderr


def test_sync_wandb_skips_synced_runs(tmp_path):
    runs = tmp_path / "runs"
    fresh = runs / "exp" / "a" / "wandb" / "offline-run-20250101_000000-abc"
    done = runs / "exp" / "b" / "wandb" / "offline-run-20250101_000000-def"
    for d, files in ((fresh, ["run-abc.wandb"]), (done, ["run-def.wandb", "run-def.wandb.synced"])):
        d.mkdir(parents=True)
        for f in files:
            (d / f).write_text("")
    (runs / "exp" / "a" / "wandb" / "latest-run").mkdir()
    log = tmp_path / "wandb_argv.txt"
    fake_exe(tmp_path / "bin", "wandb", RECORD_ARGS)
    env = clean_env(PATH=f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}", FAKE_LOG=str(log))
    proc = subprocess.run(["bash", str(SBATCH_DIR / "sync_wandb.sh"), "runs"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0, proc.stderr
    assert log.read_text().splitlines() == ["sync", str(Path("runs") / fresh.relative_to(runs))]
    assert "synced: 1, already synced or empty: 1, failed: 0" in proc.stdout


# ---------------------------------------------------------------------------------------------- submit CLI


def test_submit_dry_run_prints_command(dry_run_proc):
    out, err = dry_run_proc.communicate(timeout=300)
    assert dry_run_proc.returncode == 0, err
    line = out.strip().splitlines()[-1]
    assert line.startswith("sbatch ") and "--ntasks-per-node=1" in line and "--nodes=1" in line
    assert "--job-name=baselines-base" in line and line.endswith(f"sbatch/train.sbatch --config {BASE_CONFIG}")


def test_submit_bad_config_is_one_error_line(capsys, monkeypatch, tmp_path):
    from lit_knowledge import submit

    monkeypatch.chdir(REPO)
    assert submit.main(["--config", BASE_CONFIG, "trainer.devicez=2", "--dry-run"]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "trainer.devicez" in lines[0]

    assert submit.main(["--config", str(tmp_path / "missing.yaml"), "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: ") and "missing.yaml" in err


def test_submit_runs_sbatch(capfd, monkeypatch, tmp_path):
    """Without --dry-run the sbatch found on PATH is called with the derived arguments."""
    from lit_knowledge import submit

    # A working directory that looks like the repository, so `logs/` is created here and not in the repo.
    work = tmp_path / "work"
    work.mkdir()
    (work / "sbatch").symlink_to(SBATCH_DIR)
    (work / "configs").symlink_to(REPO / "configs")
    log = tmp_path / "sbatch_argv.txt"
    fake_exe(tmp_path / "bin", "sbatch", RECORD_ARGS + 'echo "Submitted batch job 4242"\n')
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_LOG", str(log))
    monkeypatch.chdir(work)

    rc = submit.main(["--config", BASE_CONFIG, "trainer.devices=2", "--sbatch-arg=--time=04:00:00", "run.seed=3"])
    out, err = capfd.readouterr()
    assert rc == 0, err
    assert "Submitted batch job 4242" in out
    assert log.read_text().splitlines() == [
        "--nodes=1", "--ntasks-per-node=2", "--gres=gpu:2", "--job-name=baselines-base", "--time=04:00:00",
        "sbatch/train.sbatch", "--config", BASE_CONFIG, "trainer.devices=2", "run.seed=3",
    ]
    assert (work / "logs").is_dir()
