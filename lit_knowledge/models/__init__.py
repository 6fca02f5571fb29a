"""Models: `load_model(section, cfg)` returns (model, tokenizer) for a model section (see models/build.py).

A section is `cfg.model` or any other section of the same shape (a method may hold two models). This package
builds and loads; it knows nothing of methods. The world's reader (`name: reader`) is a cached build that a
method pretrains: lit_knowledge/methods/components.py resolves it before calling here.
"""

from __future__ import annotations


def load_model(section, cfg):
    """(model, tokenizer) as `section.name` says: 'tiny' (built from `section.tiny` with a tokenizer trained on
    the world's texts) or a Hugging Face id / directory / provisioned name such as 'smollm2'."""
    from lit_knowledge.models.build import build_tiny_llama, load_pretrained

    name = section.name
    if name == "tiny":
        from lit_knowledge.data.world import World
        from lit_knowledge.models.tokenizer import train_word_tokenizer

        tokenizer = train_word_tokenizer(World(cfg.data.world).texts(), section.tiny.vocab_size)
        return build_tiny_llama(section.tiny, tokenizer), tokenizer
    if name == "reader":
        raise ValueError("model.name=reader is a cached build: load it with lit_knowledge.methods.components.load_model")
    from lit_knowledge.models.provision import resolve_model_name

    # 'smollm2' (provisioned offline by `make provision-smollm`), '~/path', or a hub id / directory
    return load_pretrained(section, resolve_model_name(name, cfg.run.cache_dir))
