"""LoRA through peft: wrap a model with an adapter from the config, merge it back, save it."""

from __future__ import annotations

from pathlib import Path

from peft import LoraConfig as PeftLoraConfig
from peft import PeftModel, get_peft_model

from lit_knowledge.errors import UserError


def add_lora(model, lora_cfg, adapter_name: str = "default"):
    """Wrap `model` with a fresh LoRA adapter; only the adapter's weights stay trainable."""
    present = {name.rsplit(".", 1)[-1] for name, _ in model.named_modules()}
    missing = [m for m in lora_cfg.target_modules if m not in present]
    if missing:
        raise UserError(
            f"model.lora.target_modules names {missing} that the model does not have; "
            f"linear layers here include {sorted(present & {'q_proj', 'k_proj', 'v_proj', 'o_proj', 'gate_proj', 'up_proj', 'down_proj', 'c_attn', 'c_proj'})}"
        )
    config = PeftLoraConfig(
        r=lora_cfg.r,
        lora_alpha=lora_cfg.alpha,
        lora_dropout=lora_cfg.dropout,
        target_modules=list(lora_cfg.target_modules),
        task_type="CAUSAL_LM",
    )
    return get_peft_model(model, config, adapter_name=adapter_name)


def merge_lora(model):
    """Fold the adapter into the base weights and return the plain model."""
    if isinstance(model, PeftModel):
        return model.merge_and_unload()
    return model


def save_adapter(model, directory: str | Path) -> None:
    if not isinstance(model, PeftModel):
        raise ValueError("save_adapter needs a peft model")
    model.save_pretrained(str(directory))


def load_adapter(model, directory: str | Path):
    return PeftModel.from_pretrained(model, str(directory))
