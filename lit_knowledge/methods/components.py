"""Where a method gets its models: any model section, the world's reader included.

`load_model(section, cfg)` takes a section shaped like `cfg.model`, so one method can hold two models (a
teacher and a student of different sizes). `name: reader` is the world's pretrained reader, a cached build
(lit_knowledge/builds.py) keyed by the section's `tiny` shape, the world's background and the pretraining
recipe: built once per key, then reused.
"""

from __future__ import annotations

from omegaconf import OmegaConf

from lit_knowledge import models


def load_model(section, cfg):
    """(model, tokenizer) for `section`; the reader is pretrained into the cache first when it is not there yet."""
    if section.name == "reader":
        from lit_knowledge.methods.pretrain import ensure_reader
        from lit_knowledge.models.build import load_pretrained

        with_section = cfg if section is cfg.model else OmegaConf.merge(cfg, {"model": section})
        path = ensure_reader(with_section)
        if path is None:  # a dry run, the reader not pretrained yet: an untrained model of its shape stands in
            return models.load_model(OmegaConf.merge(section, {"name": "tiny"}), cfg)
        return load_pretrained(section, str(path))
    return models.load_model(section, cfg)


def base_model_recipe(cfg) -> dict:
    """What a cached build over `cfg.model` is trained on: the reader's own key, or a model's name and file."""
    if cfg.model.name == "reader":
        from lit_knowledge.methods.pretrain import reader_key

        return {"reader": reader_key(cfg)}
    return {"name": cfg.model.name, "gguf_file": cfg.model.gguf_file, "dtype": cfg.model.dtype}
