"""What a plain clone ships: the data files every shipped config reads, and the default reader."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from conftest import ALL_CONFIGS, CONFIGS, REPO
from omegaconf import OmegaConf

import lit_knowledge.data.edit_readers  # noqa: F401  (and the edit sources)
import lit_knowledge.data.readers  # noqa: F401  (importing the readers registers the real-data sources)
from lit_knowledge.config import read_config
from lit_knowledge.data.sources import SOURCES

DATA_CONFIGS = [p for p in ALL_CONFIGS if OmegaConf.select(read_config(str(p)), "data.path")]


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


# ----------------------------------------------------------------------------- the shipped reader

QUICKSTART = str(CONFIGS / "quickstart.yaml")


def shipped_manifest() -> dict:
    import json

    from lit_knowledge.builds import MANIFEST
    from lit_knowledge.config import load_config
    from lit_knowledge.methods.pretrain import SHIPPED_READERS, reader_key

    path = SHIPPED_READERS / reader_key(load_config([QUICKSTART])) / MANIFEST
    assert path.is_file(), f"the default reader is not shipped ({path}); make reader ships it"
    return json.loads(path.read_text())


def test_the_default_reader_ships_and_meets_its_bars():
    from lit_knowledge.config import load_config
    from lit_knowledge.methods.pretrain import BARS, reader_key, reader_recipe

    manifest = shipped_manifest()
    cfg = load_config([QUICKSTART])
    assert manifest["key"] == reader_key(cfg) and manifest["recipe"] == reader_recipe(cfg)
    report = manifest["report"]
    for metric, (op, bar) in BARS.items():
        assert report[metric] >= bar if op == ">=" else report[metric] <= bar, (metric, report[metric])
    assert {"model.safetensors", "config.json", "tokenizer.json", "reader.json"} <= set(manifest["files"])
    size = sum((REPO / "data" / "readers" / manifest["key"] / name).stat().st_size for name in manifest["files"])
    assert size < 8_000_000, f"the shipped reader takes {size} bytes"


def test_a_run_uses_the_shipped_reader_and_never_pretrains(tmp_cache):
    from lit_knowledge.config import load_config
    from lit_knowledge.methods.pretrain import SHIPPED_READERS, ensure_reader, find_reader

    cfg = load_config([QUICKSTART])
    assert find_reader(cfg).parent == SHIPPED_READERS
    assert ensure_reader(cfg).parent == SHIPPED_READERS
    assert list(tmp_cache.iterdir()) == []  # nothing pretrained, nothing cached


def test_a_shipped_reader_that_does_not_match_its_manifest_is_not_used(tmp_cache, tmp_path, monkeypatch, capsys):
    import shutil

    import lit_knowledge.methods.pretrain as pretrain
    from lit_knowledge.config import load_config

    cfg = load_config([QUICKSTART])
    key = pretrain.reader_key(cfg)
    copy = tmp_path / "readers"
    shutil.copytree(pretrain.SHIPPED_READERS / key, copy / key)
    monkeypatch.setattr(pretrain, "SHIPPED_READERS", copy)
    assert pretrain.find_reader(cfg) == copy / key
    weights = copy / key / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 1  # one flipped bit in the last weight
    weights.write_bytes(bytes(data))
    assert pretrain.find_reader(cfg) is None  # and a run would pretrain into the cache instead
    assert "model.safetensors" in capsys.readouterr().err


def test_another_recipe_is_not_the_shipped_reader(tmp_cache):
    from lit_knowledge.config import load_config
    from lit_knowledge.methods.pretrain import find_reader

    assert find_reader(load_config([QUICKSTART], ["pretrain.max_steps=3999"])) is None


@pytest.mark.slow
def test_a_fresh_pretraining_still_meets_the_readers_bars(tmp_path):
    """`make reader` from scratch (about 7 minutes on 2 free cores): the recipe, not only the shipped files,
    clears the bars."""
    import json

    from lit_knowledge import ship_reader
    from lit_knowledge.methods.pretrain import BARS

    assert ship_reader.main(["--out", str(tmp_path), "trainer.enable_progress_bar=false"]) == 0
    (shipped,) = tmp_path.iterdir()
    report = json.loads((shipped / "manifest.json").read_text())["report"]
    for metric, (op, bar) in BARS.items():
        assert report[metric] >= bar if op == ">=" else report[metric] <= bar, (metric, report)
    assert shipped.name == shipped_manifest()["key"]
