"""Shared fixtures: an isolated environment (no network, nothing in ~/.cache) and a CLI runner.

- `tmp_cache`: LIT_KNOWLEDGE_CACHE -> a fresh tmp dir for one test (pretrained readers land there);
- `run_cli(args, cwd=REPO, cache=None)`: `python -m lit_knowledge.train ARGS` in a subprocess with the
  isolated environment; returns (returncode, stdout, stderr);
- `debug_overrides`: arguments that make a run tiny (`--config configs/debug.yaml run.root=<tmp>`);
- `reader_cache`: one session-wide LIT_KNOWLEDGE_CACHE for the end-to-end CLI runs, so the world's
  reader is pretrained once per session.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from lit_knowledge.config import is_fragment

REPO = Path(__file__).resolve().parents[1]
CONFIGS = REPO / "configs"
DEBUG_YAML = CONFIGS / "debug.yaml"
# configs/experiments/ holds groups of runs (lit_knowledge.sweep); a _*.yaml file is a fragment other configs
# include (lit_knowledge.config.is_fragment); every other YAML is a run config.
GROUPS = CONFIGS / "experiments"
YAML_FILES = sorted(p for ext in ("*.yaml", "*.yml") for p in CONFIGS.rglob(ext) if GROUPS not in p.parents)
ALL_CONFIGS = [p for p in YAML_FILES if not is_fragment(p)]
FRAGMENTS = [p for p in YAML_FILES if is_fragment(p)]
GROUP_FILES = sorted(GROUPS.glob("*.yaml"))

# Never touch the network, and keep every library's files out of the home directory. These are set for
# the whole pytest process (in-process tests) and passed to every subprocess.
OFFLINE_ENV = {
    "WANDB_MODE": "offline",
    "WANDB_SILENT": "true",
    "HF_HUB_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "TOKENIZERS_PARALLELISM": "false",
}
os.environ.update(OFFLINE_ENV)


@pytest.fixture(scope="session", autouse=True)
def _isolated_home(tmp_path_factory):
    """Point every cache/config directory a library may write to at a session tmp dir."""
    base = tmp_path_factory.mktemp("isolated_home")
    dirs = {
        "LIT_KNOWLEDGE_CACHE": base / "lit_knowledge_cache",
        "WANDB_DIR": base / "wandb",
        "WANDB_CACHE_DIR": base / "wandb_cache",
        "WANDB_CONFIG_DIR": base / "wandb_config",
        "WANDB_DATA_DIR": base / "wandb_data",
        "WANDB_ARTIFACT_DIR": base / "wandb_artifacts",
        "HF_HOME": base / "hf_home",
        "HF_DATASETS_CACHE": base / "hf_datasets",
        "MPLCONFIGDIR": base / "mpl",
        "XDG_CACHE_HOME": base / "xdg_cache",
        "XDG_CONFIG_HOME": base / "xdg_config",
    }
    old = {k: os.environ.get(k) for k in dirs}
    for key, path in dirs.items():
        path.mkdir(parents=True, exist_ok=True)
        os.environ[key] = str(path)
    yield base
    for key, value in old.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


@pytest.fixture
def tmp_cache(tmp_path, monkeypatch) -> Path:
    """A fresh, empty LIT_KNOWLEDGE_CACHE for this test."""
    cache = tmp_path / "lk_cache"
    cache.mkdir()
    monkeypatch.setenv("LIT_KNOWLEDGE_CACHE", str(cache))
    return cache


@pytest.fixture(scope="session")
def reader_cache(tmp_path_factory) -> Path:
    """A LIT_KNOWLEDGE_CACHE shared by the end-to-end runs of a session (the reader is pretrained once).

    Set LIT_KNOWLEDGE_TEST_CACHE to keep it across sessions (readers are keyed by what made them).
    """
    keep = os.environ.get("LIT_KNOWLEDGE_TEST_CACHE")
    if keep:
        Path(keep).mkdir(parents=True, exist_ok=True)
        return Path(keep)
    return tmp_path_factory.mktemp("reader_cache")


def cli_env(cache: Path | str | None = None) -> dict:
    env = dict(os.environ)
    env.update(OFFLINE_ENV)
    env.pop("SLURM_JOB_ID", None)
    env["PYTHONWARNINGS"] = "ignore"
    if cache is not None:
        env["LIT_KNOWLEDGE_CACHE"] = str(cache)
    return env


def _run_cli(args, cwd: Path | str = REPO, cache: Path | str | None = None, timeout: float = 900):
    proc = subprocess.run(
        [sys.executable, "-m", "lit_knowledge.train", *map(str, args)],
        cwd=str(cwd), env=cli_env(cache), capture_output=True, text=True, timeout=timeout,
    )
    return proc.returncode, proc.stdout, proc.stderr


def report_of(exp: Path, rows: list[dict]) -> str:
    """Write `rows` as the results.json of runs under `exp` (one directory per run name), build the report there
    and return comparison.md."""
    import json

    from lit_knowledge.report import build_report

    for r in rows:
        (exp / r["run"]).mkdir(parents=True)
        (exp / r["run"] / "results.json").write_text(json.dumps(r))
    build_report(exp)
    return (exp / "comparison.md").read_text()


def write_step(method, k: int) -> None:
    """Feed stream step k's documents to a stream method in one batch, as the trainer's walk would."""
    from lit_knowledge.data.prompts import collate

    rows = method.training_examples(method.stream.steps[k])
    method.training_step(collate([rows[i] for i in range(len(rows))], method.tokenizer.pad_token_id), 0)


@pytest.fixture
def run_cli():
    """`run_cli(args, cwd=REPO, cache=None) -> (returncode, stdout, stderr)`."""
    return _run_cli


@pytest.fixture(scope="session")
def debug_overrides(tmp_path_factory) -> list[str]:
    """Arguments that make any run tiny: the debug preset plus a run root in a tmp dir."""
    root = tmp_path_factory.mktemp("debug_runs")
    return ["--config", str(DEBUG_YAML), f"run.root={root}"]
