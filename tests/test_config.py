"""Typed config: loading, merging, overrides, one-line errors, and the config-related CLI flags."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from conftest import ALL_CONFIGS, CONFIGS, FRAGMENTS, REPO
from omegaconf import OmegaConf

from lit_knowledge import train
from lit_knowledge.config import (
    VOLATILE_KEYS,
    config_hash,
    config_layers,
    identity,
    load_config,
    read_config,
    to_dict,
    to_yaml,
    valid_keys,
)
from lit_knowledge.errors import UserError, did_you_mean

EXPECTED_METHODS = {"base", "in_context", "ft_context", "ft_qa", "rag_bm25", "pretrain"}


def write(path, text: str):
    path.write_text(text)
    return str(path)


def user_error(files=(), overrides=()) -> str:
    with pytest.raises(UserError) as info:
        load_config(list(files), list(overrides))
    msg = str(info.value)
    assert "\n" not in msg, f"error message is not one line: {msg!r}"
    assert msg.strip(), "empty error message"
    return msg


# ------------------------------------------------------------------------------------------ loading


def test_configs_dir_is_found():
    assert ALL_CONFIGS, f"no YAML under {CONFIGS}"
    assert CONFIGS / "debug.yaml" in ALL_CONFIGS


@pytest.mark.parametrize("path", ALL_CONFIGS, ids=lambda p: str(p.relative_to(CONFIGS)))
def test_every_config_file_loads(path):
    cfg = load_config([str(path)])
    raw = OmegaConf.to_container(read_config(str(path)))
    # Every value the file and its includes set is what the loaded config holds.
    flat = {}

    def walk(node, prefix=""):
        for k, v in node.items():
            if isinstance(v, dict):
                walk(v, f"{prefix}{k}.")
            else:
                flat[f"{prefix}{k}"] = v

    walk(raw)
    for key, value in flat.items():
        assert OmegaConf.select(cfg, key) == value, key
    assert cfg.method.name == raw.get("method", {}).get("name", "base")
    assert OmegaConf.is_readonly(cfg)


@pytest.mark.parametrize("path", FRAGMENTS, ids=lambda p: str(p.relative_to(CONFIGS)))
def test_every_fragment_is_included_by_a_shipped_config(path):
    included = {Path(source).resolve() for config in ALL_CONFIGS for source, _ in config_layers(str(config))}
    assert path.resolve() in included, f"{path.name} is included by no config under {CONFIGS}"


def test_defaults_without_files():
    cfg = load_config()
    assert cfg.method.name == "base"
    assert cfg.trainer.max_steps == -1
    assert cfg.logger.backend == "csv"
    assert cfg.model.name == "reader"


def test_files_merge_left_to_right_and_overrides_win(tmp_path):
    a = write(tmp_path / "a.yaml", "trainer:\n  max_steps: 7\nrun:\n  seed: 3\n  experiment: a\n")
    b = write(tmp_path / "b.yaml", "trainer:\n  max_steps: 9\nrun:\n  experiment: b\n")
    cfg = load_config([a, b])
    assert cfg.trainer.max_steps == 9  # later file wins
    assert cfg.run.seed == 3  # untouched keys of the earlier file survive
    assert cfg.run.experiment == "b"
    cfg = load_config([b, a])
    assert cfg.trainer.max_steps == 7 and cfg.run.experiment == "a"
    cfg = load_config([a, b], ["trainer.max_steps=11", "run.seed=5"])
    assert cfg.trainer.max_steps == 11 and cfg.run.seed == 5
    # overrides apply left to right too
    cfg = load_config([a], ["trainer.max_steps=1", "trainer.max_steps=2"])
    assert cfg.trainer.max_steps == 2


def test_overrides_are_typed():
    cfg = load_config([], ["trainer.gradient_clip_val=null", "logger.tags=[a,b]", "pretrain.lr=0.5",
                           "model.lora.enabled=true"])
    assert cfg.trainer.gradient_clip_val is None
    assert list(cfg.logger.tags) == ["a", "b"]
    assert cfg.pretrain.lr == 0.5 and isinstance(cfg.pretrain.lr, float)
    assert cfg.model.lora.enabled is True


def test_method_section_is_typed_by_method_name(tmp_path):
    cfg = load_config([], ["method.name=ft_qa", "method.epochs_per_step=2"])
    assert cfg.method.epochs_per_step == 2 and cfg.method.lr == pytest.approx(1e-3)
    # method.name may come after the method's own keys
    cfg = load_config([], ["method.epochs_per_step=3", "method.name=ft_qa"])
    assert cfg.method.epochs_per_step == 3
    # and from an earlier file
    f = write(tmp_path / "m.yaml", "method:\n  name: rag_bm25\n")
    cfg = load_config([f], ["method.top_k=4"])
    assert cfg.method.top_k == 4
    # base has no lr
    assert "lr" not in load_config().method


# ------------------------------------------------------------------------------------------ include


def test_include_merges_in_order_and_the_including_file_wins(tmp_path):
    write(tmp_path / "a.yaml", "run:\n  seed: 1\n  experiment: a\ntrainer:\n  max_steps: 7\n")
    write(tmp_path / "b.yaml", "run:\n  experiment: b\n")
    top = write(tmp_path / "top.yaml", "include: [a.yaml, b.yaml]\ntrainer:\n  max_steps: 9\n")
    cfg = load_config([top])
    assert (cfg.run.seed, cfg.run.experiment, cfg.trainer.max_steps) == (1, "b", 9)
    assert "include" not in cfg and "include" not in read_config(top)


def test_include_nests_takes_one_name_and_reads_paths_from_the_including_file(tmp_path):
    (tmp_path / "sub").mkdir()
    write(tmp_path / "base.yaml", "method:\n  name: ft_qa\n  lr: 0.5\n")
    write(tmp_path / "sub" / "mid.yaml", "include: ../base.yaml\nmethod:\n  epochs_per_step: 2\n")
    top = write(tmp_path / "top.yaml", "include: sub/mid.yaml\n")
    cfg = load_config([top], ["method.lr=0.25"])
    assert (cfg.method.name, cfg.method.lr, cfg.method.epochs_per_step) == ("ft_qa", 0.25, 2)


def test_include_falls_back_to_the_repository_root(tmp_path):
    top = write(tmp_path / "top.yaml", "include: [configs/debug.yaml]\n")
    assert load_config([top]) == load_config([str(CONFIGS / "debug.yaml")])


def test_a_later_config_file_still_wins_over_an_earlier_ones_includes(tmp_path):
    write(tmp_path / "a.yaml", "run:\n  seed: 1\n")
    top = write(tmp_path / "top.yaml", "include: [a.yaml]\n")
    later = write(tmp_path / "later.yaml", "run:\n  seed: 2\n")
    assert load_config([top, later]).run.seed == 2


def test_an_include_cycle_is_a_one_line_error(tmp_path):
    a = write(tmp_path / "a.yaml", "include: [b.yaml]\n")
    write(tmp_path / "b.yaml", "include: [a.yaml]\n")
    msg = user_error([a])
    assert "b.yaml" in msg and "a.yaml" in msg and "remove one of those includes" in msg
    itself = write(tmp_path / "self.yaml", "include: self.yaml\n")
    assert "leads back to it" in user_error([itself])


def test_a_missing_included_file_is_a_one_line_error_naming_it(tmp_path):
    top = write(tmp_path / "top.yaml", "include: [nowhere.yaml]\n")
    msg = user_error([top])
    assert top in msg and "nowhere.yaml" in msg and "include" in msg


@pytest.mark.parametrize("value", ["3", "{a: b.yaml}", "[a.yaml, 4]"])
def test_include_must_be_a_list_of_file_names(tmp_path, value):
    top = write(tmp_path / "top.yaml", f"include: {value}\n")
    msg = user_error([top])
    assert top in msg and "include takes a list of config files" in msg


def test_a_mistake_in_an_included_file_names_that_file(tmp_path):
    inner = write(tmp_path / "inner.yaml", "trainer:\n  max_stepz: 3\n")
    msg = user_error([write(tmp_path / "top.yaml", "include: [inner.yaml]\n")])
    assert inner in msg and "did you mean trainer.max_steps?" in msg


def test_a_bad_include_stops_the_cli_with_one_line(capsys, tmp_path):
    top = write(tmp_path / "top.yaml", "include: [nowhere.yaml]\n")
    code, _, err = main_out(capsys, "--config", top, "--print-config")
    assert code == 2 and err.count("\n") == 1 and err.startswith("error: ") and "nowhere.yaml" in err


# ------------------------------------------------------------------------------------------ errors


def test_unknown_key_in_yaml(tmp_path):
    f = write(tmp_path / "x.yaml", "trainer:\n  max_stepz: 3\n")
    msg = user_error([f])
    assert "trainer.max_stepz" in msg
    assert "did you mean trainer.max_steps?" in msg
    assert str(f) in msg  # names the file


def test_unknown_key_in_override():
    msg = user_error(overrides=["trainer.max_stepz=3"])
    assert "trainer.max_stepz" in msg
    assert "did you mean trainer.max_steps?" in msg
    assert "override" in msg


def test_unknown_nested_key_in_override():
    msg = user_error(overrides=["model.tiny.hiden_size=8"])
    assert "model.tiny.hiden_size" in msg
    assert "did you mean model.tiny.hidden_size?" in msg


def test_unknown_method_param_suggests_the_methods_own_key():
    msg = user_error(overrides=["method.name=ft_qa", "method.lrr=0.1"])
    assert "method.lrr" in msg and "did you mean method.lr?" in msg


@pytest.mark.parametrize("override, key", [
    ("trainer.max_steps=abc", "trainer.max_steps"),
    ("model.tiny.hidden_size=big", "model.tiny.hidden_size"),
    ("data.batch_size=1.5", "data.batch_size"),
    ("model.lora.enabled=maybe", "model.lora.enabled"),
    ("trainer.max_steps=null", "trainer.max_steps"),
])
def test_wrong_type(override, key):
    msg = user_error(overrides=[override])
    assert f"'{key}'" in msg
    assert "bad value" in msg


def test_wrong_type_in_yaml(tmp_path):
    f = write(tmp_path / "x.yaml", "method:\n  name: ft_qa\n  lr: fast\n")
    msg = user_error([f])
    assert "'method.lr'" in msg and str(f) in msg


@pytest.mark.parametrize("override, key, nearest", [
    ("logger.backend=wandbb", "logger.backend", "wandb"),
    ("model.dtype=float33", "model.dtype", "float32"),
    ("trainer.strategy=ddp_spwn", "trainer.strategy", "ddp_spawn"),
    ("logger.mode=ofline", "logger.mode", "offline"),
])
def test_bad_choice(override, key, nearest):
    msg = user_error(overrides=[override])
    assert f"'{key}'" in msg
    assert f"did you mean {nearest}?" in msg
    assert "choose one of" in msg


def test_bad_choice_in_yaml(tmp_path):
    f = write(tmp_path / "x.yaml", "logger:\n  backend: wandbb\n")
    msg = user_error([f])
    assert "logger.backend" in msg and "did you mean wandb?" in msg


def test_unknown_method_name():
    msg = user_error(overrides=["method.name=ft_qq"])
    assert "ft_qq" in msg and "did you mean ft_qa?" in msg
    for name in EXPECTED_METHODS:
        assert name in msg  # lists the choices


def test_unknown_method_name_in_yaml(tmp_path):
    f = write(tmp_path / "x.yaml", "method:\n  name: rag_bm26\n")
    msg = user_error([f])
    assert "rag_bm26" in msg and "did you mean rag_bm25?" in msg


def test_method_given_as_string():
    msg = user_error(overrides=["method=ft_qa"])
    assert "method" in msg and "method.name" in msg


def test_missing_config_file(tmp_path):
    missing = tmp_path / "nope.yaml"
    msg = user_error([str(missing)])
    assert str(missing) in msg and "not found" in msg


def test_invalid_yaml(tmp_path):
    f = write(tmp_path / "bad.yaml", "trainer: [\n  x: : :\n")
    msg = user_error([f])
    assert str(f) in msg and "not valid YAML" in msg


def test_yaml_that_is_a_list(tmp_path):
    f = write(tmp_path / "list.yaml", "- trainer\n- model\n")
    msg = user_error([f])
    assert str(f) in msg and "list" in msg


@pytest.mark.parametrize("override", ["trainer.max_steps", "=3", "trainer.max_steps:3"])
def test_override_without_equals(override):
    msg = user_error(overrides=[override])
    assert f"'{override}'" in msg and "key=value" in msg


def test_section_overridden_by_a_scalar_names_the_key():
    """`trainer=3` replaces a whole section with a number: the message must name `trainer`, not '?'."""
    msg = user_error(overrides=["trainer=3"])
    assert "'?'" not in msg
    assert "'trainer'" in msg


def test_did_you_mean_helper():
    assert did_you_mean("max_stepz", ["max_steps", "batch_size"]) == " (did you mean max_steps?)"
    assert did_you_mean("zzzzzz", ["max_steps"]) == ""


# ------------------------------------------------------------------------------------------ identity and hash


def test_config_hash_is_stable():
    a = load_config([str(CONFIGS / "baselines" / "ft_qa.yaml")])
    b = load_config([str(CONFIGS / "baselines" / "ft_qa.yaml")])
    assert config_hash(a) == config_hash(b)
    assert config_hash(to_dict(a)) == config_hash(a)  # DictConfig and plain dict hash alike
    assert len(config_hash(a)) == 10 and len(config_hash(a, 8)) == 8
    assert config_hash({"x": 1, "y": 2}) == config_hash({"y": 2, "x": 1})  # key order does not matter
    # a pinned value: the hash must not change between processes or Python versions
    assert config_hash({"a": 1}) == "f9d86028c6"
    c = load_config([str(CONFIGS / "baselines" / "ft_qa.yaml")], ["run.seed=1"])
    assert config_hash(c) != config_hash(a)


def test_identity_drops_volatile_keys():
    cfg = load_config([], ["run.name=x", "trainer.max_steps=5"])
    ident = identity(cfg)
    assert "name" not in ident["run"]
    assert "logger" not in ident
    assert "max_steps" not in ident["trainer"]
    for key in VOLATILE_KEYS:
        assert OmegaConf.select(OmegaConf.create(ident), key) is None, key
    # non-volatile keys stay
    assert ident["run"]["seed"] == 0 and ident["trainer"]["accumulate_grad_batches"] == 1
    assert ident["method"]["name"] == "base"
    # volatile changes keep the identity; others change it
    other = load_config([], ["run.name=y", "trainer.max_steps=50", "logger.backend=none"])
    assert config_hash(identity(other)) == config_hash(ident)
    changed = load_config([], ["run.seed=1"])
    assert config_hash(identity(changed)) != config_hash(ident)
    # identity() does not modify the config
    assert cfg.run.name == "x" and cfg.trainer.max_steps == 5


# ------------------------------------------------------------------------------------------ CLI (in process)


def main_out(capsys, *argv):
    code = train.main(list(map(str, argv)))
    out, err = capsys.readouterr()
    return code, out, err


ERROR_ARGS = [
    pytest.param(["trainer.max_stepz=3"], "did you mean trainer.max_steps?", id="unknown-override"),
    pytest.param(["trainer.max_steps=abc"], "trainer.max_steps", id="wrong-type"),
    pytest.param(["logger.backend=wandbb"], "did you mean wandb?", id="bad-choice"),
    pytest.param(["method.name=ft_qq"], "did you mean ft_qa?", id="unknown-method"),
    pytest.param(["--config", "/nonexistent/x.yaml"], "/nonexistent/x.yaml", id="missing-file"),
    pytest.param(["trainer.max_steps"], "key=value", id="no-equals"),
    pytest.param(["--resume", "/nonexistent/last.ckpt"], "/nonexistent/last.ckpt", id="missing-ckpt"),
]


@pytest.mark.parametrize("argv, needle", ERROR_ARGS)
def test_cli_errors_in_process(capsys, argv, needle):
    code, out, err = main_out(capsys, *argv)
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("error: ")
    assert needle in lines[0]
    assert "Traceback" not in err + out


def test_cli_errors_from_yaml_files(capsys, tmp_path):
    unknown = write(tmp_path / "u.yaml", "trainer:\n  max_stepz: 3\n")
    bad = write(tmp_path / "b.yaml", "trainer: [\n")
    lst = write(tmp_path / "l.yaml", "- a\n")
    for f, needle in [(unknown, "did you mean trainer.max_steps?"), (bad, "not valid YAML"), (lst, "list")]:
        code, out, err = main_out(capsys, "--config", f)
        assert code == 2
        assert err.count("\n") == 1 and err.startswith("error: ") and needle in err, err


def test_print_config_reloads_to_the_same_config(capsys, tmp_path):
    args = ["--config", str(CONFIGS / "baselines" / "ft_qa.yaml"), "trainer.max_steps=3", "method.lr=0.01",
            "logger.tags=[x]"]
    code, out, err = main_out(capsys, "--print-config", *args)
    assert code == 0
    expected = load_config([str(CONFIGS / "baselines" / "ft_qa.yaml")],
                           ["trainer.max_steps=3", "method.lr=0.01", "logger.tags=[x]"])
    assert yaml.safe_load(out) == to_dict(expected)
    f = write(tmp_path / "printed.yaml", out)
    assert to_dict(load_config([f])) == to_dict(expected)
    assert to_yaml(load_config([f])) == out


@pytest.mark.parametrize("path", ALL_CONFIGS, ids=lambda p: str(p.relative_to(CONFIGS)))
def test_print_config_round_trip_every_file(capsys, tmp_path, path):
    code, out, _ = main_out(capsys, "--print-config", "--config", path)
    assert code == 0
    f = write(tmp_path / "printed.yaml", out)
    assert to_dict(load_config([f])) == to_dict(load_config([str(path)]))


def test_help_config_lists_keys(capsys):
    code, out, _ = main_out(capsys, "--help-config")
    assert code == 0
    assert "trainer.max_steps" in out
    for key in ("run.root", "model.lora.r", "logger.backend", "eval.max_probes"):
        assert key in out
    assert "[wandb|csv|none]" in out  # choices are shown
    # every non-section key of the schema is documented
    for key in valid_keys():
        assert key in out, key


def test_list_methods(capsys):
    code, out, _ = main_out(capsys, "--list-methods")
    assert code == 0
    assert EXPECTED_METHODS <= set(out.split())


# ------------------------------------------------------------------------------------------ CLI (subprocess)


def test_cli_error_subprocess(run_cli, tmp_path):  # a fresh interpreter: a config mistake imports no torch (~0.5 s)
    """The real entry point: exit code 2, exactly one stderr line starting with `error:`, no traceback."""
    code, out, err = run_cli(["trainer.max_stepz=3", f"run.root={tmp_path / 'runs'}"], cwd=REPO)
    assert code == 2, err
    assert err.endswith("\n") and err.count("\n") == 1, repr(err)
    assert err.startswith("error: ") and "did you mean trainer.max_steps?" in err
    assert "Traceback" not in err + out
    assert not (tmp_path / "runs").exists()


def test_config_reference_in_docs_is_in_sync_with_the_schema():
    from lit_knowledge.docs import config_reference

    assert (REPO / "docs" / "config.md").read_text() == config_reference(), (
        "docs/config.md is stale: python -m lit_knowledge.docs > docs/config.md")


def test_misspelt_section_suggests_the_section():
    msg = user_error(overrides=["trainr.max_steps=1"])
    assert "did you mean trainer.max_steps?" in msg
    msg = user_error(overrides=["trainr.max_stepz=1"])
    assert "did you mean trainer?" in msg and "pretrain" not in msg


@pytest.mark.parametrize("text, what", [('"just a string"\n', "a string"), ("42\n", "a number")])
def test_yaml_that_is_a_scalar_must_hold_a_mapping(tmp_path, text, what):
    f = write(tmp_path / "scalar.yaml", text)
    msg = user_error([f])
    assert str(f) in msg and "must hold a mapping" in msg and what in msg
    assert "unknown config key" not in msg


# ------------------------------------------------------------------------------------------ ranges


@pytest.mark.parametrize("override, key, bound", [
    ("trainer.max_steps=-5", "trainer.max_steps", ">= -1"),
    ("data.world.num_steps=-1", "data.world.num_steps", ">= 1"),
    ("data.batch_size=0", "data.batch_size", ">= 1"),
    ("trainer.accumulate_grad_batches=0", "trainer.accumulate_grad_batches", ">= 1"),
    ("model.lora.r=0", "model.lora.r", ">= 1"),
    ("data.qa_share=1.5", "data.qa_share", "<= 1"),
    ("trainer.checkpoint_every_n_steps=-3", "trainer.checkpoint_every_n_steps", ">= 0"),
])
def test_values_out_of_range_are_refused(override, key, bound):
    msg = user_error(overrides=[override])
    assert f"'{key}'" in msg and bound in msg


@pytest.mark.parametrize("name", ["ft_qa", "selfparam", "oedit", "ft_l"])
def test_a_negative_learning_rate_is_refused_for_every_method_with_one(name):
    msg = user_error(overrides=[f"method.name={name}", "method.lr=-1"])
    assert "'method.lr'" in msg and "> 0" in msg


@pytest.mark.parametrize("devices", ["0", "-2", "[]", "nope"])
def test_bad_device_counts_are_refused(devices):
    msg = user_error(overrides=[f"trainer.devices={devices}"])
    assert "trainer.devices" in msg


def test_ranges_are_shown_by_help_config(capsys):
    assert train.main(["--help-config"]) == 0
    out = capsys.readouterr().out
    assert "trainer.max_steps (int) = -1 (>= -1):" in out
    assert "method.lr (float) = 0.001 (> 0):" in out


# ------------------------------------------------------------------------------------------ cheap validation


HEAVY = ("torch", "lightning", "transformers", "datasets", "peft")
PROBE = """
import sys, time
start = time.perf_counter()
from lit_knowledge import train
code = train.main(sys.argv[1:])
print("heavy:", ",".join(m for m in {heavy!r} if m in sys.modules))
print("seconds:", time.perf_counter() - start)
sys.exit(code)
"""


@pytest.mark.parametrize("argv, code, needle", [
    (["trainer.max_stepz=1"], 2, "did you mean trainer.max_steps?"),
    (["method.name=ft_qq"], 2, "did you mean ft_qa?"),
    (["method.name=oedit", "method.lrr=1"], 2, "did you mean method.lr?"),
    (["method.name=ft_qa", "method.top_k=1"], 2, "method.name=cmt|rag_bm25"),
    (["trainer.max_steps=-5", "--dry-run"], 2, "trainer.max_steps"),
    (["--help-config"], 0, ""),
    (["--list-methods"], 0, ""),
])
def test_config_mistakes_and_help_import_no_heavy_library(argv, code, needle, tmp_path):
    """A typo is answered without torch, Lightning or transformers (about 0.5 s instead of 20 s)."""
    import subprocess
    import sys

    from conftest import cli_env

    proc = subprocess.run([sys.executable, "-c", PROBE.format(heavy=HEAVY), *argv, f"run.root={tmp_path / 'r'}"],
                          cwd=REPO, env=cli_env(), capture_output=True, text=True, timeout=120)
    assert proc.returncode == code, proc.stderr
    assert needle in proc.stderr
    report = dict(line.split(": ", 1) for line in proc.stdout.splitlines() if line.startswith(("heavy:", "seconds:")))
    assert report["heavy"] == "", f"imported {report['heavy']}"
    assert float(report["seconds"]) < 2.0
    assert not (tmp_path / "r").exists()


def test_list_methods_describes_each_method_and_its_shipped_configs(capsys):
    from lit_knowledge.methods import METHODS

    code, out, _ = main_out(capsys, "--list-methods")
    assert code == 0
    lines = out.splitlines()
    for name in METHODS.names():
        row = next(i for i, line in enumerate(lines) if line.split()[0] == name)
        assert len(lines[row].split(None, 1)[1]) > 20  # a description follows the name
        assert lines[row + 1].strip().startswith("configs: ")
    assert "configs/selfparam/single.yaml" in out and "configs/oedit/oedit.yaml" in out
    assert "experiments/" not in out  # group files are not run configs


def test_the_method_table_matches_each_method_module():
    """The lazy table's Params are the ones each LightningModule declares (this imports every method module)."""
    from lit_knowledge.methods import METHODS, params_of

    for name in METHODS.names():
        assert METHODS.get(name).Params is params_of(name), name
