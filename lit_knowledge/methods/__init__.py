"""Methods: one LightningModule per method, registered under its config name (`method.name`).

The table below is the registry. A method's module imports torch, Lightning and transformers, so it is
imported only when that method is chosen (`METHODS.get(name)`); its hyper-parameters live in
lit_knowledge/methods/params.py, which is cheap to import: loading a config, `--help-config` and
`--list-methods` never load a method module. Both are named as "module:attr" strings, so this package
imports nothing of lit_knowledge but the registry: the config loader may import it without a cycle
(params.py imports the config).
"""

from __future__ import annotations

import importlib

from lit_knowledge.registry import Registry

P = "lit_knowledge.methods.params:"
# name: (the LightningModule as "module:attr", its Params dataclass as "module:attr", one line on what it does)
TABLE = {
    "base": ("lit_knowledge.methods.baselines:Base", P + "MethodParams",
             "the model as it is: closed-book, no update (the floor)"),
    "in_context": ("lit_knowledge.methods.baselines:InContext", P + "MethodParams",
                   "the probe's own document in the prompt (the ceiling for closed-book methods)"),
    "ft_context": ("lit_knowledge.methods.baselines:FTContext", P + "FineTuneParams",
                   "FT(C): next-token fine-tuning on the documents (full or LoRA)"),
    "ft_qa": ("lit_knowledge.methods.baselines:FTQA", P + "FineTuneParams",
              "FT(S): next-token fine-tuning on the documents' QA sets (full or LoRA)"),
    "rag_bm25": ("lit_knowledge.methods.baselines:RAGBM25", P + "RAGParams",
                 "BM25 retrieval of the documents seen so far into the prompt"),
    "selfparam": ("lit_knowledge.methods.selfparam:SelfParam", P + "SelfParamParams",
                  "SELF-PARAM: distil a teacher that reads the document into a student that does not"),
    "oedit": ("lit_knowledge.methods.editing.oedit:OEdit", P + "OEditParams",
              "O-Edit / O-Edit+: sequential edits, each gradient orthogonal to the earlier edits"),
    "ft_l": ("lit_knowledge.methods.editing.ft_l:FTL", P + "FTLParams",
             "FT-L: the same sequential editor without any projection"),
    "alphaedit": ("lit_knowledge.methods.editing.alphaedit:AlphaEdit", P + "AlphaEditParams",
                  "AlphaEdit-style closed-form edit of one matrix, in the null space of the model's knowledge"),
    "memoryllm": ("lit_knowledge.methods.memoryllm.method:MemoryLLM", P + "MemoryLLMParams",
                  "MemoryLLM: documents written into a fixed-size pool of memory tokens in every layer"),
    "cmt": ("lit_knowledge.methods.cmt.method:CMT", P + "CMTParams",
            "CMT (on MAC): documents compressed into a memory bank read by the frozen LLM"),
    "lora_transfer": ("lit_knowledge.methods.lora_transfer.method:LoRATransfer", P + "LoRATransferParams",
                      "knowledge extracted from a larger teacher's weights into the student's LoRA init"),
    "pretrain": ("lit_knowledge.methods.pretrain:PretrainReader", P + "MethodParams",
                 "pretrain the synthetic world's reader (cached and reused by model.name=reader)"),
}

METHODS: Registry = Registry("method")
for _name, (_target, _, _) in TABLE.items():
    METHODS.register_lazy(_name, _target)


def params_of(name: str) -> type:
    """The Params dataclass of method `name`, importing nothing heavy (an unknown name: did-you-mean error)."""
    METHODS.check(name)
    module, _, attr = TABLE[name][1].partition(":")
    return getattr(importlib.import_module(module), attr)


def description(name: str) -> str:
    METHODS.check(name)
    return TABLE[name][2]
