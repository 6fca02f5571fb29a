"""The typed configuration schema, loading, overrides and validation.

A run's configuration is built in this order:

1. the schema defaults below;
2. each `--config FILE` in turn (later files win), each after the files its `include:` list names;
3. each `key=value` override from the command line (values are parsed as YAML).

The `method:` section is typed by the chosen method: every method declares a `Params` dataclass
(see `lit_knowledge/methods/`), and `method.name` selects which one applies. Any unknown key, wrong
type or bad value stops the run with one line that names the key and the nearest valid one.

Every field carries a `help` text; `python -m lit_knowledge.train --help-config` prints them all,
and docs/config.md is generated from the same text.
"""

from __future__ import annotations

import dataclasses
import difflib
import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import yaml
from omegaconf import DictConfig, ListConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from lit_knowledge.errors import UserError, did_you_mean

REPO = Path(__file__).resolve().parents[1]
INCLUDE = "include"  # a config file's list of other config files, merged before it


def doc(default: Any = dataclasses.MISSING, help: str = "", choices: tuple = (), factory=None,
        minimum=None, maximum=None, above=None):
    """A dataclass field with a help text (shown by --help-config), optional allowed values and a range.

    `minimum` / `maximum` bound the value inclusively, `above` exclusively (a learning rate: above=0);
    `validate` checks them and --help-config shows them. A null value (Optional fields) is never checked.
    """
    meta = {"help": help, "choices": choices, "minimum": minimum, "maximum": maximum, "above": above}
    if factory is not None:
        return field(default_factory=factory, metadata=meta)
    return field(default=default, metadata=meta)


def value_range(f: dataclasses.Field) -> str:
    """The field's range as --help-config shows it ('>= 1', '> 0', '0 to 1'), or ''."""
    lo, hi, above = (f.metadata.get(k) if f.metadata else None for k in ("minimum", "maximum", "above"))
    if lo is not None and hi is not None:
        return f">= {lo} and <= {hi}"
    if above is not None:
        return f"> {above}" + (f" and <= {hi}" if hi is not None else "")
    if lo is not None:
        return f">= {lo}"
    return f"<= {hi}" if hi is not None else ""


def out_of_range(f: dataclasses.Field, value) -> bool:
    if value is None or isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    lo, hi, above = (f.metadata.get(k) if f.metadata else None for k in ("minimum", "maximum", "above"))
    return ((lo is not None and value < lo) or (hi is not None and value > hi)
            or (above is not None and value <= above))


@dataclass
class RunConfig:
    root: str = doc("runs", "Directory holding every experiment's run directories.")
    experiment: str = doc("default", "Experiment name: runs of one experiment are compared by `lit_knowledge.report`.")
    name: Optional[str] = doc(None, "Run name; when unset it is derived from the method and a hash of the config.")
    seed: int = doc(0, "Global seed (Python, NumPy, torch, data order).")
    cache_dir: str = doc(
        "~/.cache/lit_knowledge", "Where pretrained readers and provisioned models are cached (env LIT_KNOWLEDGE_CACHE wins)."
    )


@dataclass
class TinyModelConfig:
    num_layers: int = doc(
        3, "Decoder layers of the tiny Llama-architecture model (docs/results/reader.md compares 3 and 4).",
        minimum=1,
    )
    hidden_size: int = doc(128, "Hidden width.", minimum=1)
    num_heads: int = doc(8, "Attention heads (more, narrower heads learn to copy from context sooner).", minimum=1)
    num_kv_heads: int = doc(8, "Key/value heads (grouped-query attention when < num_heads).", minimum=1)
    intermediate_size: int = doc(512, "MLP inner width.", minimum=1)
    max_position_embeddings: int = doc(512, "Longest sequence the RoPE positions cover.", minimum=1)
    rope_theta: float = doc(10000.0, "RoPE base frequency.")
    vocab_size: int = doc(4096, "Upper bound on the vocabulary of the locally trained tokenizer.", minimum=1)


@dataclass
class LoraConfig:
    enabled: bool = doc(False, "Train a LoRA adapter (peft) instead of all weights.")
    r: int = doc(8, "LoRA rank.", minimum=1)
    alpha: int = doc(16, "LoRA scaling alpha.", above=0)
    dropout: float = doc(0.0, "LoRA dropout.", minimum=0, maximum=1)
    target_modules: list[str] = doc(
        help="Module names the adapter wraps.",
        factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
    )


@dataclass
class ModelConfig:
    name: str = doc(
        "reader",
        "'tiny' (random tiny Llama from model.tiny), 'reader' (the synthetic world's pretrained reader, built and "
        "cached on first use), or any Hugging Face model id or local path (from_pretrained).",
    )
    gguf_file: Optional[str] = doc(None, "GGUF file name inside model.name's directory (from_pretrained gguf_file).")
    dtype: str = doc("float32", "Weight dtype.", choices=("float32", "bfloat16", "float16"))
    device_map: Optional[str] = doc(None, "Hugging Face device_map (e.g. 'auto'); leave unset under Lightning strategies.")
    local_files_only: bool = doc(True, "Never contact a model hub (set false to allow downloads).")
    tokenizer: Optional[str] = doc(None, "Tokenizer id or path; unset = the model's own (or the locally trained one).")
    gradient_checkpointing: bool = doc(False, "Recompute activations in the backward pass (HF models).")
    chat_template: bool = doc(False, "Ask questions through the tokenizer's chat template with a short-answer "
                                     "instruction (instruct models such as SmolLM2-Instruct; QA methods).")
    tiny: TinyModelConfig = doc(help="Shape of the tiny model.", factory=TinyModelConfig)
    lora: LoraConfig = doc(help="LoRA adapter settings.", factory=LoraConfig)


@dataclass
class WorldConfig:
    seed: int = doc(0, "Seed of the synthetic world (entities, facts, templates).")
    num_background: int = doc(100, "Entities the reader learns before the stream (locality probes ask about them).",
                             minimum=1)
    num_organisations: int = doc(40, "Organisations (background knowledge; employers and two-hop targets).", minimum=1)
    num_steps: int = doc(3, "Steps of the knowledge stream.", minimum=1)
    entities_per_step: int = doc(10, "New entities (one document each) per stream step.", minimum=1)
    changes_per_step: int = doc(0, "Earlier stream facts that change at each later step (employer moves).", minimum=0)
    num_edits: int = doc(100, "Counterfactual edits drawn about background entities.", minimum=1)
    edit_seed: int = doc(0, "Which draw of the counterfactual edits (same world, same reader): settings are chosen "
                            "on edit_seed=1, the dev stream, and published on 0, the test stream.", minimum=0)
    stream_seed: int = doc(0, "Which stream people (same world, same reader): 0 is the test stream, whose figures are "
                              "published; 1, 2, ... are dev streams of other people, where settings are chosen.",
                           minimum=0)
    qa_set: str = doc("document", "A stream document's QA set (selfparam / ft_qa train on it, in training wordings): "
                                  "'document' asks every question the document alone answers (direct facts, decade, "
                                  "inverse, city and year); 'direct' only the direct facts.",
                      choices=("document", "direct"))


@dataclass
class DataConfig:
    source: str = doc("world", "Data source (see `python -m lit_knowledge.data sources`).")
    path: Optional[str] = doc(None, "File of a real data source (SQuAD JSON, CounterFact, zsRE, MQuAKE, TempLAMA, ...).")
    world: WorldConfig = doc(help="The synthetic world (source=world).", factory=WorldConfig)
    num_steps: Optional[int] = doc(None, "Keep only the first N stream steps.", minimum=1)
    docs_per_step: int = doc(10, "Documents per stream step for real document sources.", minimum=1)
    num_edits: Optional[int] = doc(None, "Keep only the first N edits of an edit stream.", minimum=1)
    qa_share: float = doc(0.0, "Real document sources: share of each document's own questions that become its QA "
                               "set (what selfparam / ft_qa train on) instead of probes; 0 keeps all as probes.",
                      minimum=0, maximum=1)
    max_length: int = doc(256, "Longest tokenised training example (longer ones are cut from the left of the context).",
                          minimum=1)
    batch_size: int = doc(16, "Training batch size.", minimum=1)
    num_workers: int = doc(0, "DataLoader worker processes.", minimum=0)


@dataclass
class PretrainConfig:
    max_steps: int = doc(4000, "Optimiser steps of reader pretraining.", minimum=1)
    batch_size: int = doc(16, "Pretraining batch size.", minimum=1)
    lr: float = doc(2e-3, "Peak learning rate (AdamW, linear warm-up then cosine decay).", above=0)
    warmup_steps: int = doc(100, "Linear warm-up steps.", minimum=0)
    weight_decay: float = doc(0.01, "AdamW weight decay.", minimum=0)
    reading_share: float = doc(0.6, "Share of sequences that are reading comprehension over fresh people.",
                               minimum=0, maximum=1)
    document_share: float = doc(0.1, "Share of sequences that are background documents (the rest: background "
                                     "questions).", minimum=0, maximum=1)
    questions_per_example: int = doc(4, "Question-answer turns packed into one reading sequence.", minimum=1)
    context_documents: int = doc(3, "Most documents in a reading sequence's context, the questions asking about "
                                    "any of them (one document drawn twice as often as any other count). A reader "
                                    "that must find a fact among many documents (MemoryLLM's pool) needs more than "
                                    "3 (`python -m lit_knowledge.bench reading` measures it).", minimum=1)
    background_turns: int = doc(4, "Question-answer turns packed into one background (closed-book) sequence.",
                                minimum=1)
    score_reading_prompts: bool = doc(False, "Score every token of a reading sequence (context and questions too), "
                                             "not only the answers.")
    background_share: float = doc(1.0, "Share of the background people the reader learns, the first ones in the "
                                        "world's order (all organisations always). Below 1 it is a student that does "
                                        "not know the rest, which a larger teacher knows (method lora_transfer).",
                                  above=0, maximum=1)
    seed: Optional[int] = doc(None, "Seed of the reader's initial weights and pretraining draws (null: run.seed). Set it "
                                    "to vary a method's seed (run.seed) over one reader, as the bench's seeds do.",
                              minimum=0)


@dataclass
class TrainerConfig:
    accelerator: str = doc("auto", "Lightning accelerator: cpu, gpu, auto, ...")
    devices: Any = doc(1, "Devices per node: a count >= 1, a list of device indices, -1 (all) or 'auto'.")
    num_nodes: int = doc(1, "Nodes.", minimum=1)
    strategy: str = doc(
        "auto", "Lightning strategy.", choices=("auto", "ddp", "ddp_spawn", "fsdp", "deepspeed_stage_2", "deepspeed_stage_3")
    )
    precision: str = doc("32-true", "Lightning precision.", choices=("32-true", "32", "bf16-mixed", "16-mixed", "bf16-true"))
    max_steps: int = doc(-1, "Stop after this many optimiser steps (-1: the method decides).", minimum=-1)
    accumulate_grad_batches: int = doc(1, "Gradient accumulation.", minimum=1)
    gradient_clip_val: Optional[float] = doc(1.0, "Gradient norm clip (null: off).", minimum=0)
    log_every_n_steps: int = doc(10, "Logging interval in steps.", minimum=1)
    checkpoint_every_n_minutes: float = doc(30.0, "Write checkpoints/last.ckpt every this many minutes of training "
                                                  "(0: only at the end); a crash loses at most this much.", minimum=0)
    checkpoint_every_n_steps: int = doc(0, "Periodic checkpoint interval in optimiser steps, keeping the newest "
                                           "step<N>.ckpt too; when set it replaces checkpoint_every_n_minutes "
                                           "(0: use the minutes).", minimum=0)
    enable_progress_bar: bool = doc(True, "Show progress bars.")


@dataclass
class LoggerConfig:
    backend: str = doc("csv", "Experiment logger.", choices=("wandb", "csv", "none"))
    mode: str = doc("offline", "W&B mode.", choices=("online", "offline", "disabled"))
    project: str = doc("lit_knowledge", "W&B project.")
    entity: Optional[str] = doc(None, "W&B entity (team or user).")
    group: Optional[str] = doc(None, "W&B group (defaults to run.experiment).")
    tags: list[str] = doc(help="W&B tags.", factory=list)
    name: Optional[str] = doc(None, "W&B display name (defaults to run.name).")


@dataclass
class EvalConfig:
    batch_size: int = doc(32, "Evaluation batch size.", minimum=1)
    max_new_tokens: int = doc(12, "Longest generated answer.", minimum=1)
    max_probes: Optional[int] = doc(None, "Evaluate at most this many stream probes of each kind per step (null: "
                                          "all).", minimum=1)
    max_locality_probes: Optional[int] = doc(None, "Locality (background) probes asked after each step: a seeded "
                                                   "sample of this many, the same at every step (null: all).",
                                             minimum=1)
    lm_loss_texts: int = doc(64, "Held-out texts for the general-ability LM loss.", minimum=0)


@dataclass
class MethodParams:
    """Fields every method has; each method subclasses this with its own hyper-parameters."""

    name: str = doc("base", "Method (see `python -m lit_knowledge.train --list-methods`).")


@dataclass
class Config:
    run: RunConfig = doc(help="Run directory and seed.", factory=RunConfig)
    model: ModelConfig = doc(help="The language model.", factory=ModelConfig)
    data: DataConfig = doc(help="Data source and stream.", factory=DataConfig)
    pretrain: PretrainConfig = doc(help="Pretraining of the world's reader.", factory=PretrainConfig)
    method: Any = doc(help="The method and its hyper-parameters.", factory=MethodParams)
    trainer: TrainerConfig = doc(help="Lightning Trainer.", factory=TrainerConfig)
    logger: LoggerConfig = doc(help="Experiment tracking.", factory=LoggerConfig)
    eval: EvalConfig = doc(help="Evaluation protocol.", factory=EvalConfig)


# Keys that may differ between a run and the run it resumes (and do not change the run's identity).
VOLATILE_KEYS = ("run.name", "trainer.max_steps", "trainer.enable_progress_bar", "trainer.log_every_n_steps",
                 "trainer.checkpoint_every_n_steps", "trainer.checkpoint_every_n_minutes", "logger", "data.num_workers",
                 "run.cache_dir", "run.root")


# ---------------------------------------------------------------------------------------------- loading


def _flat_keys(schema_cls, prefix: str = "") -> dict[str, dataclasses.Field]:
    out = {}
    for f in dataclasses.fields(schema_cls):
        key = f"{prefix}{f.name}"
        out[key] = f
        sub = f.default_factory() if f.default_factory is not dataclasses.MISSING else None
        if dataclasses.is_dataclass(sub):
            out.update(_flat_keys(type(sub), key + "."))
    return out


def _schema_node(params_cls: type) -> DictConfig:
    node = OmegaConf.structured(Config)
    with _omegaconf_errors():
        node.method = OmegaConf.structured(params_cls)
    return node


def valid_keys(params_cls: type = MethodParams) -> dict[str, dataclasses.Field]:
    keys = {k: f for k, f in _flat_keys(Config).items() if not k.startswith("method.")}
    keys.update(_flat_keys(params_cls, "method."))
    return keys


class _omegaconf_errors:
    """Turn OmegaConf's exceptions into one-line UserErrors naming the key and the nearest valid key."""

    def __init__(self, source: str = "", params_cls: type = MethodParams):
        self.source = source
        self.params_cls = params_cls

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc is None or not isinstance(exc, OmegaConfBaseException):
            return False
        key = getattr(exc, "full_key", None)
        if self.source.startswith("override '"):
            given = self.source[len("override '"):].split("=", 1)[0]
            if not key or given.startswith(key + "."):  # 'trainer=3' names no key; 'trainr.x=1' names only 'trainr'
                key = given
        key = key or "?"
        where = f" in {self.source}" if self.source else ""
        msg = str(exc).splitlines()[0]
        if type(exc).__name__ == "ConfigKeyError" or "not in" in msg:
            raise UserError(f"unknown config key '{key}'{where}{_suggest(key, self.params_cls)}") from None
        raise UserError(f"bad value for config key '{key}'{where}: {msg}") from None


def _suggest(key: str, params_cls: type) -> str:
    """' (did you mean X?)', or for a method key that another method has, which methods have it."""
    if key.startswith("method."):
        from lit_knowledge.methods import METHODS, params_of

        owners = [n for n in METHODS.names() if key in _flat_keys(params_of(n), "method.")]
        if owners:
            return f" for this method (it belongs to method.name={'|'.join(owners)})"
    keys = valid_keys(params_cls)
    section, _, rest = key.partition(".")
    sections = [f.name for f in dataclasses.fields(Config)]
    if section not in sections:  # a misspelt section: compare it with the sections, not with every key
        close = difflib.get_close_matches(section, sections, n=1, cutoff=0.5)
        if close and rest and f"{close[0]}.{rest}" in keys:
            return f" (did you mean {close[0]}.{rest}?)"
        return did_you_mean(section, sections)
    return did_you_mean(key, [k for k, f in keys.items() if not _is_section(f)])


def _is_section(f: dataclasses.Field) -> bool:
    return f.default_factory is not dataclasses.MISSING and dataclasses.is_dataclass(f.default_factory())


def read_yaml_mapping(path: str, what: str = "config file", fix: str = "pass an existing YAML file to --config",
                      sections: str = "run:, model:, ..."):
    """The YAML mapping in `path` as a DictConfig (empty for an empty file); a UserError for anything else."""
    p = Path(path)
    if not p.is_file():
        raise UserError(f"{what} {path} not found; {fix}")
    try:
        raw = yaml.safe_load(p.read_text())
    except Exception as e:  # yaml.YAMLError, a file that is not text
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise UserError(f"{what} {path} is not valid YAML ({first}); fix the syntax") from None
    if raw is not None and not isinstance(raw, dict):  # OmegaConf would read a bare string as a key
        raise UserError(f"{what} {path} must hold a mapping of sections ({sections}), not {_kind(raw)}")
    try:
        return OmegaConf.create(raw or {})
    except OmegaConfBaseException as e:  # keys OmegaConf refuses (e.g. numbers)
        raise UserError(f"{what} {path} could not be read: {str(e).splitlines()[0]}") from None


def _kind(value) -> str:
    if isinstance(value, list):
        return "a list"
    if isinstance(value, str):
        return f"a string ({value[:40]!r})"
    if isinstance(value, (int, float)):
        return f"a number ({value})"
    return f"a {type(value).__name__}"


def config_layers(path: str, chain: tuple[Path, ...] = ()) -> list[tuple[str, DictConfig]]:
    """(file, its own keys) for a config file and every file it includes, in merge order.

    A file's `include:` (a list of files, or one) is merged before the file itself, in order and depth first,
    so the including file wins. An included path is relative to the including file, else to the repository.
    """
    node = read_yaml_mapping(path)
    chain = (*chain, Path(path).resolve())
    layers = []
    for name in _include_list(path, node.pop(INCLUDE, None)):
        included = _find_included(path, name)
        if included.resolve() in chain:
            loop = " -> ".join(_short(p) for p in (*chain, included.resolve()))
            raise UserError(f"config file {path} includes {name}, which leads back to it ({loop}); "
                            "remove one of those includes")
        layers += config_layers(str(included), chain)
    return [*layers, (path, node)]


def read_config(path: str) -> DictConfig:
    """A config file with its includes merged in, as written (not yet checked against the schema)."""
    return OmegaConf.merge(*(node for _, node in config_layers(path)))


def is_fragment(path: str | Path) -> bool:
    """A config named _*.yaml only holds keys for other configs to include: it is not a run of its own."""
    return Path(path).name.startswith("_")


def _include_list(path: str, value) -> list[str]:
    """The `include:` value as a list of file names (one name alone is a list of one)."""
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    if isinstance(value, ListConfig) and all(isinstance(n, str) for n in value):
        return list(value)
    given = OmegaConf.to_container(value) if isinstance(value, (DictConfig, ListConfig)) else value
    raise UserError(f"config file {path}: include takes a list of config files (include: [other.yaml]), "
                    f"not {given!r}")


def _find_included(path: str, name: str) -> Path:
    """The included file next to the including one, else from the repository root (as data paths are)."""
    for base in (Path(path).parent, REPO):
        candidate = Path(os.path.normpath(base / Path(name).expanduser()))
        if candidate.is_file():
            return candidate
    raise UserError(f"config file {path} includes {name}, which is neither next to it nor under {REPO}; "
                    "fix the path in its include: list")


def _short(path: Path) -> str:
    return str(path.relative_to(REPO)) if path.is_relative_to(REPO) else str(path)


def _parse_overrides(overrides: list[str]) -> list[tuple[str, DictConfig]]:
    parsed = []
    for item in overrides:
        if "=" not in item or item.startswith("="):
            raise UserError(f"override '{item}' must look like key=value (e.g. trainer.max_steps=10)")
        try:
            parsed.append((item, OmegaConf.from_dotlist([item])))
        except Exception as e:
            raise UserError(f"override '{item}' could not be parsed: {str(e).splitlines()[0]}") from None
    return parsed


def _method_name(layers: list[DictConfig]) -> str:
    name = "base"
    for layer in layers:
        m = layer.get("method") if isinstance(layer, DictConfig) else None
        if isinstance(m, DictConfig) and "name" in m:
            name = str(m.name)
        elif isinstance(m, str):
            raise UserError("config key 'method' must be a mapping with a 'name' (e.g. method.name=selfparam)")
    return name


def schema_defaults(method: str) -> dict:
    """Every key's default for `method` (no file, no override): what a key added to the schema since a run was made
    holds when nobody sets it."""
    from lit_knowledge.methods import params_of

    return to_dict(_schema_node(params_of(method)))


def load_config(config_files: list[str] = (), overrides: list[str] = ()) -> DictConfig:
    """Merge YAML files and overrides onto the typed schema; return the resolved, validated config."""
    from lit_knowledge.methods import params_of  # cheap: the table of "module:attr" strings

    files = [layer for path in config_files for layer in config_layers(path)]
    dots = _parse_overrides(list(overrides))
    method = _method_name([node for _, node in files] + [node for _, node in dots])
    params_cls = params_of(method)
    cfg = _schema_node(params_cls)
    for source, node in files + dots:
        with _omegaconf_errors(source if source.endswith((".yaml", ".yml")) else f"override '{source}'", params_cls):
            cfg = OmegaConf.merge(cfg, node)
    validate(cfg, params_cls)
    OmegaConf.set_readonly(cfg, True)
    return cfg


def validate(cfg: DictConfig, params_cls: type = MethodParams) -> None:
    """Check every field's `choices` and range, trainer.devices, and the method's own `validate` hook."""
    for key, f in valid_keys(params_cls).items():
        choices = f.metadata.get("choices") if f.metadata else None
        if choices:
            value = OmegaConf.select(cfg, key)
            if value not in choices:
                raise UserError(
                    f"bad value for config key '{key}': {value!r}{did_you_mean(str(value), [str(c) for c in choices])}; "
                    f"choose one of: {', '.join(map(str, choices))}"
                )
        if value_range(f):
            value = OmegaConf.select(cfg, key)
            if out_of_range(f, value):
                raise UserError(f"bad value for config key '{key}': {value!r} is out of range; it must be "
                                f"{value_range(f)} ({f.metadata.get('help', '').rstrip('.')})")
    _check_devices(cfg.trainer.devices)
    check = getattr(params_cls, "validate", None)
    if check is not None:
        check(cfg)


def _check_devices(devices) -> None:
    from lit_knowledge.slurm import requested_devices  # plain Python: no heavy imports

    fix = "give a count >= 1, a list of device indices, -1 or 'auto'"
    try:
        count = requested_devices(devices)
    except UserError:
        raise UserError(f"bad value for config key 'trainer.devices': {devices!r}; {fix}") from None
    if count is not None and count < 1 or isinstance(devices, bool):
        raise UserError(f"bad value for config key 'trainer.devices': {devices!r} asks for no device; {fix}")


# ---------------------------------------------------------------------------------------------- helpers


def to_yaml(cfg: DictConfig) -> str:
    return OmegaConf.to_yaml(cfg, resolve=True)


def to_dict(cfg: DictConfig) -> dict:
    return OmegaConf.to_container(cfg, resolve=True)


def identity(cfg: DictConfig) -> dict:
    """The config without the keys that may change between a run and its resumption."""
    d = to_dict(cfg)
    for key in VOLATILE_KEYS:
        *parents, last = key.split(".")
        node = d
        for p in parents:
            node = node.get(p, {})
        node.pop(last, None)
    return d


def config_hash(obj: Any, length: int = 10) -> str:
    if isinstance(obj, (DictConfig, ListConfig)):
        obj = OmegaConf.to_container(obj, resolve=True)
    blob = json.dumps(obj, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:length]


def describe(methods: dict[str, type] | None = None) -> str:
    """Every key with its type, default and help text (the body of --help-config and docs/config.md).

    The shared sections come first, then the `method.*` keys of each method in `methods` (name -> Params).
    """
    text = _describe_keys(valid_keys(MethodParams), OmegaConf.to_container(_schema_node(MethodParams)))
    for name, params_cls in sorted((methods or {}).items()):
        keys = {k: f for k, f in _flat_keys(params_cls, "method.").items() if k != "method.name"}
        if keys:
            defaults = OmegaConf.to_container(_schema_node(params_cls))
            text += f"\nmethod.name={name}:\n" + _describe_keys(keys, defaults)
    return text


def _describe_keys(keys: dict, defaults: dict) -> str:
    lines = []
    for key, f in keys.items():
        if f.default_factory is not dataclasses.MISSING and dataclasses.is_dataclass(f.default_factory()):
            lines.append(f"\n{key}: {f.metadata.get('help', '')}")
            continue
        value = defaults
        for part in key.split("."):
            value = value[part]
        typ = f.type if isinstance(f.type, str) else getattr(f.type, "__name__", str(f.type))
        choices = f.metadata.get("choices") if f.metadata else None
        extra = f" [{'|'.join(map(str, choices))}]" if choices else ""
        extra += f" ({value_range(f)})" if value_range(f) else ""
        lines.append(f"  {key} ({typ}) = {json.dumps(value)}{extra}: {f.metadata.get('help', '')}")
    return "\n".join(lines).strip("\n") + "\n"
