"""What a plain clone ships: the data files every shipped config reads, and the default reader."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from conftest import ALL_CONFIGS, CONFIGS, REPO
from omegaconf import OmegaConf

from lit_knowledge.data.sources import SOURCES

DATA_CONFIGS = [p for p in ALL_CONFIGS if OmegaConf.select(OmegaConf.load(p), "data.path")]


def tracked_by_git(path: Path) -> bool | None:
    """True/False when the repository is a git checkout, None when it is not (an unpacked archive)."""
    proc = subprocess.run(["git", "ls-files", "--error-unmatch", str(path)], cwd=REPO, capture_output=True)
    if proc.returncode == 128 and b"not a git repository" in proc.stderr:
        return None
    return proc.returncode == 0


def test_some_shipped_configs_read_real_data():
    assert len(DATA_CONFIGS) >= 8, DATA_CONFIGS


@pytest.mark.parametrize("path", DATA_CONFIGS, ids=lambda p: str(p.relative_to(CONFIGS)))
def test_every_shipped_config_reads_a_file_the_clone_has(path, tmp_path, monkeypatch):
    from lit_knowledge.config import load_config

    cfg = load_config([str(path)])
    data_path = Path(cfg.data.path)
    assert not data_path.is_absolute(), f"{path.name}: data.path {data_path} is a machine path"
    resolved = (REPO / data_path).resolve()
    assert resolved.is_relative_to(REPO / "data"), f"{path.name}: {data_path} is outside the repository's data/"
    assert resolved.is_file(), f"{path.name}: {data_path} is missing"
    assert tracked_by_git(resolved) is not False, f"{path.name}: {data_path} is not committed"

    monkeypatch.chdir(tmp_path)  # another working directory: the relative path is read from the repository root
    stream = SOURCES.get(cfg.data.source)(cfg.data)
    counts = stream.counts()
    if cfg.data.num_edits:  # the slice holds every edit the config asks for
        assert counts["edits"] == cfg.data.num_edits, counts
    else:
        assert counts["documents"] > 0 and counts["probes"] > 0, counts
