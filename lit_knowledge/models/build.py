"""Language models: a tiny Llama built from the config, or any Hugging Face causal LM.

`model.name` decides:
- `tiny`: a randomly initialised Llama-architecture model (RoPE) shaped by `model.tiny`;
- `reader`: the synthetic world's pretrained reader, built once by `method: pretrain` and cached
  (see `lit_knowledge/methods/pretrain.py`);
- anything else: a Hugging Face model id or local directory, loaded with `from_pretrained`
  (`local_files_only` unless the config allows the hub; `gguf_file` for GGUF checkpoints).
"""

from __future__ import annotations

from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaConfig, LlamaForCausalLM

from lit_knowledge.errors import UserError
from lit_knowledge.models.tokenizer import prepare_tokenizer

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def build_tiny_llama(tiny_cfg, tokenizer) -> LlamaForCausalLM:
    """A small Llama (RoPE, SwiGLU, RMSNorm) whose vocabulary is the tokenizer's."""
    if tiny_cfg.hidden_size % tiny_cfg.num_heads:
        raise UserError(
            f"model.tiny.hidden_size={tiny_cfg.hidden_size} is not divisible by model.tiny.num_heads={tiny_cfg.num_heads}"
        )
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=tiny_cfg.hidden_size,
        intermediate_size=tiny_cfg.intermediate_size,
        num_hidden_layers=tiny_cfg.num_layers,
        num_attention_heads=tiny_cfg.num_heads,
        num_key_value_heads=tiny_cfg.num_kv_heads,
        max_position_embeddings=tiny_cfg.max_position_embeddings,
        rope_theta=tiny_cfg.rope_theta,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        tie_word_embeddings=True,
    )
    return LlamaForCausalLM(config)


def load_pretrained(model_cfg, path: str | None = None):
    """(model, tokenizer) from a Hugging Face id or local directory; one clear error when it cannot be found."""
    name = path or model_cfg.name
    kwargs = {"local_files_only": model_cfg.local_files_only}
    if model_cfg.gguf_file:
        kwargs["gguf_file"] = model_cfg.gguf_file
    try:
        tokenizer = AutoTokenizer.from_pretrained(model_cfg.tokenizer or name, **kwargs)
        model = AutoModelForCausalLM.from_pretrained(
            name, dtype=DTYPES[model_cfg.dtype], device_map=model_cfg.device_map, **kwargs
        )
    except (OSError, ValueError) as e:
        hint = (
            "it is not in the local cache; provision it first or set model.local_files_only=false to download"
            if model_cfg.local_files_only and not Path(name).exists()
            else str(e).splitlines()[0]
        )
        raise UserError(f"cannot load model '{name}': {hint}") from None
    prepare_tokenizer(tokenizer)
    if model_cfg.gradient_checkpointing:
        model.gradient_checkpointing_enable()
    return model, tokenizer


def save_model(model, tokenizer, directory: str | Path) -> None:
    """Save weights and tokenizer side by side, so a checkpoint always carries its tokenizer."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)


def num_parameters(model, trainable_only: bool = False) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)
