"""Groups of runs (configs/experiments/*.yaml): every shipped group validates; bad groups fail clearly."""

import pytest
from conftest import GROUP_FILES, REPO

from lit_knowledge.config import load_config
from lit_knowledge.errors import UserError
from lit_knowledge.sweep import read_group


@pytest.mark.parametrize("path", GROUP_FILES, ids=lambda p: p.name)
def test_every_group_and_its_runs_validate(path):
    group = read_group(str(path))
    configs = [str(REPO / c) for c in group.get("configs", [])]
    for run in group["runs"]:
        cfg = load_config(configs, [*group.get("overrides", []), *run.get("overrides", []), f"run.name={run['name']}"])
        assert cfg.run.name == run["name"]


def test_bad_group_files_fail_with_one_line(tmp_path):
    with pytest.raises(UserError, match="not found"):
        read_group(str(tmp_path / "missing.yaml"))
    bad = tmp_path / "bad.yaml"
    bad.write_text("runs: []\n")
    with pytest.raises(UserError, match="non-empty 'runs'"):
        read_group(str(bad))
    bad.write_text("runs: [{overrides: [method.name=base]}]\n")
    with pytest.raises(UserError, match="needs a 'name'"):
        read_group(str(bad))
