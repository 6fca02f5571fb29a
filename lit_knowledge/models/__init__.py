"""Models: `load_model(cfg)` returns (model, tokenizer) for any `model.name` (see models/build.py)."""

from __future__ import annotations


def load_model(cfg):
    """(model, tokenizer) as `cfg.model.name` says: 'tiny', 'reader', or a Hugging Face id / path."""
    from lit_knowledge.models.build import build_tiny_llama, load_pretrained

    name = cfg.model.name
    if name == "tiny":
        from lit_knowledge.data.world import World
        from lit_knowledge.models.tokenizer import train_word_tokenizer

        tokenizer = train_word_tokenizer(World(cfg.data.world).texts(), cfg.model.tiny.vocab_size)
        return build_tiny_llama(cfg.model.tiny, tokenizer), tokenizer
    if name == "reader":
        from lit_knowledge.methods.pretrain import ensure_reader

        return load_pretrained(cfg.model, str(ensure_reader(cfg)))
    from lit_knowledge.models.provision import resolve_model_name

    # 'smollm2' (provisioned offline by `make provision-smollm`), '~/path', or a hub id / directory
    return load_pretrained(cfg.model, resolve_model_name(name, cfg.run.cache_dir))
