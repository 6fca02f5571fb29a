"""Groups of runs (configs/experiments/*.yaml): every shipped group validates; bad groups fail clearly."""

import pytest
from conftest import GROUP_FILES
from omegaconf import OmegaConf

from lit_knowledge.config import config_hash, identity
from lit_knowledge.errors import UserError
from lit_knowledge.sweep import plan_group, read_group


@pytest.mark.parametrize("path", GROUP_FILES, ids=lambda p: p.name)
def test_every_group_and_its_runs_validate(path):
    group = read_group(str(path))
    planned = plan_group(str(path))
    assert [name for name, _ in planned] == [run["name"] for run in group["runs"]]
    assert all(cfg.run.name == name for name, cfg in planned)
    # No two runs of a group are the same run under two names: a shared config that changed under a group's
    # earlier rows (a setting later chosen into it) must be pinned in those rows' overrides.
    seen = {}
    for name, cfg in planned:
        key = config_hash(identity(OmegaConf.merge(cfg, {"run": {"name": None}})))
        assert key not in seen, f"{path.name}: runs {seen[key]} and {name} resolve to the same config"
        seen[key] = name


def test_a_run_may_bring_its_own_configs_after_the_groups(tmp_path):
    group = tmp_path / "g.yaml"
    group.write_text("configs: [configs/quickstart.yaml]\noverrides: [run.experiment=g]\nruns:\n"
                     "  - {name: a, overrides: [method.name=base]}\n"
                     "  - {name: b, configs: [configs/baselines/ft_qa.yaml], overrides: [method.lr=0.5]}\n")
    (a, cfg_a), (b, cfg_b) = plan_group(str(group))
    assert cfg_a.method.name == "base" and cfg_b.method.name == "ft_qa" and cfg_b.method.lr == 0.5
    assert cfg_b.run.experiment == "g"  # the group's overrides come after every config
    assert plan_group(str(group), only=["b"])[0][0] == "b"


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
    bad.write_text("runs:\n  - {name: a, seeds: 3}\n")
    with pytest.raises(UserError, match="seeds must be a non-empty list"):
        read_group(str(bad))


def test_only_names_runs_of_the_group_and_leaves_overrides_to_the_runs(tmp_path, monkeypatch):
    import lit_knowledge.sweep as sweep

    group = tmp_path / "g.yaml"
    group.write_text("configs: [configs/quickstart.yaml]\nruns:\n  - {name: base, overrides: [method.name=base]}\n"
                     "  - {name: ft_qa, overrides: [method.name=ft_qa]}\n")
    with pytest.raises(UserError, match="no run of that name \\(did you mean ft_qa\\?\\)"):
        plan_group(str(group), only=["ft-qa"])
    import lit_knowledge.report

    seen = {}

    def run_group(path, extra, only, resume):
        seen.update(extra=extra, only=only)
        return [{"run_dir": str(tmp_path / "g" / "ft_qa")}]

    monkeypatch.setattr(sweep, "run_group", run_group)
    monkeypatch.setattr(lit_knowledge.report, "build_report", lambda directory: "")
    assert sweep.main([str(group), "--only", "ft_qa", "run.root=/tmp/x", "logger.backend=none"]) == 0
    assert seen == {"extra": ["run.root=/tmp/x", "logger.backend=none"], "only": ["ft_qa"]}


@pytest.mark.parametrize("text, needle", [
    ("- {name: a}\n- {name: b}\n", "must hold a mapping"),
    ("runs: [\n  {name: a\n", "not valid YAML"),
    ("just words\n", "must hold a mapping"),
])
def test_malformed_group_files_fail_with_one_line(tmp_path, capsys, text, needle):
    from lit_knowledge.sweep import main

    bad = tmp_path / "bad.yaml"
    bad.write_text(text)
    assert main([str(bad)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and needle in err and str(bad) in err


def test_seeds_repeat_a_run_per_seed_over_one_reader(tmp_path):
    from lit_knowledge.methods.pretrain import reader_key

    group = tmp_path / "g.yaml"
    group.write_text("configs: [configs/quickstart.yaml]\noverrides: [pretrain.seed=0]\nseeds: [0, 2]\nruns:\n"
                     "  - {name: base, overrides: [method.name=base], seeds: [0]}\n"
                     "  - {name: ft_qa, overrides: [method.name=ft_qa]}\n"
                     "  - {name: transfer, configs: [configs/lora_transfer/lora_transfer.yaml], seeds: [3],"
                     " overrides: ['method.seed={seed}']}\n")
    planned = plan_group(str(group))[:3]
    assert [name for name, _ in planned] == ["base-seed0", "ft_qa-seed0", "ft_qa-seed2"]
    assert [cfg.run.seed for _, cfg in planned] == [0, 0, 2]
    assert len({reader_key(cfg) for _, cfg in planned}) == 1  # every seed reads the same reader
    name, transfer = plan_group(str(group))[3]
    assert name == "transfer-seed3" and transfer.method.seed == 3 and transfer.run.seed == 3
    assert [name for name, _ in plan_group(str(group), only=["ft_qa"])] == ["ft_qa-seed0", "ft_qa-seed2"]
    assert [name for name, _ in plan_group(str(group), only=["ft_qa-seed2"])] == ["ft_qa-seed2"]
    group.write_text("configs: [configs/quickstart.yaml]\nseeds: [0, 1]\nruns:\n  - {name: a}\n")
    with pytest.raises(UserError, match="add pretrain.seed=0"):
        plan_group(str(group))
