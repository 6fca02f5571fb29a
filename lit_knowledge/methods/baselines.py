"""The baselines every knowledge-injection paper compares with.

- `base`        the model as it is: closed-book, no update (the floor);
- `in_context`  the probe's own document in the prompt (the ceiling a closed-book method aims for);
- `ft_context`  FT(C): next-token fine-tuning on the documents;
- `ft_qa`       FT(S): next-token fine-tuning on the QA set of the documents (the same set SELF-PARAM
                distils from: `StreamStep.train_qa`);
- `rag_bm25`    retrieve the top documents seen so far with BM25 (the `bm25s` package) and put them in
                the prompt.

Fine-tuning is full by default and through LoRA with `model.lora.enabled=true`.
"""

from __future__ import annotations

import bm25s

from lit_knowledge.errors import UserError
from lit_knowledge.methods import rehearsal
from lit_knowledge.methods.base import KnowledgeMethod, encode_all
from lit_knowledge.methods.params import FineTuneParams, RAGParams
from lit_knowledge.models.lora import add_lora, merge_lora


class Base(KnowledgeMethod):
    """No update: what the model answers closed-book before and throughout the stream."""

    def training_step(self, batch, batch_idx):
        return None


class InContext(Base):
    """The document in the prompt: the upper bound for putting the document into the weights."""

    def __init__(self, cfg, model=None, tokenizer=None):
        super().__init__(cfg, model, tokenizer)
        self.documents = {d.id: d.text for s in self.stream.steps for d in s.documents}

    def answer(self, probes) -> list[str]:
        return self.generate([self.qa_prompt(p.question, self.documents.get(p.doc_id)) for p in probes])


class FineTune(KnowledgeMethod):
    """Next-token fine-tuning on what the subclass's `pairs(step)` returns: (prompt, target) pairs; full or LoRA."""

    Params = FineTuneParams

    def __init__(self, cfg, model=None, tokenizer=None):
        super().__init__(cfg, model, tokenizer)
        self.epochs_per_step = self.params.epochs_per_step
        if cfg.model.lora.enabled:
            self.model = add_lora(self.model, cfg.model.lora)
        self._base_state = None  # full fine-tuning in the single-context setting: the weights to go back to
        if self.params.reset_each_step and not cfg.model.lora.enabled:
            self._base_state = {k: v.detach().clone() for k, v in self.model.state_dict().items()}

    @property
    def batch_order_seed(self) -> int:
        return self.cfg.run.seed if self.params.seed is None else self.params.seed

    def training_examples(self, step):
        return encode_all(self.tokenizer, self.pairs(step), self.cfg.data.max_length)

    def unrelated_texts(self, step) -> list[list[str]]:
        return rehearsal.unrelated_texts(self.stream, step, self.params.unrelated_per_document, self.cfg.run.seed)

    def namesake_contrasts(self, step) -> dict[str, list[tuple[str, str]]]:
        return rehearsal.namesake_contrasts(self.stream, step, self.params.namesake_contrasts, self.cfg.run.seed)

    @property
    def shards_batches(self) -> bool:
        """Whether DDP may split batches: not when a fresh adapter replaces the merged one between stream steps,
        since DDP averages the gradients of the parameters it was given at the start only (processes that
        trained different shards with an adapter of their own would drift apart)."""
        if self.params.reset_each_step:  # a model reset in place keeps its parameters
            return True
        return not (self.cfg.model.lora.enabled and self.params.merge_lora_each_step and len(self.stream.steps) > 1)

    def training_step(self, batch, batch_idx):
        return self.lm_training_step(batch)

    def after_evaluation(self, k: int) -> None:
        """The single-context setting: back to the base model once step k is probed."""
        if not self.params.reset_each_step:
            return
        if self.cfg.model.lora.enabled:
            for module in self.model.modules():  # a fresh adapter: B = 0, so the model equals the base again
                if hasattr(module, "reset_lora_parameters"):
                    module.reset_lora_parameters("default", True)
        else:
            self.model.load_state_dict(self._base_state)
        self.trainer.strategy.setup_optimizers(self.trainer)

    def finish_step(self, k: int) -> None:
        if self.params.reset_each_step:  # nothing to merge: the adapter was reset after the probes
            return
        if self.cfg.model.lora.enabled and self.params.merge_lora_each_step and k + 1 < len(self.stream.steps):
            # Fold this step's adapter into the weights and continue with a fresh one; the optimiser
            # is rebuilt so it tracks the new adapter's parameters.
            self.model = add_lora(merge_lora(self.model), self.cfg.model.lora)
            self.trainer.strategy.setup_optimizers(self.trainer)


class FTContext(FineTune):
    """FT(C): language-model training on the documents themselves."""

    def pairs(self, step):
        return [(d.text, "") for d in step.documents]


class FTQA(FineTune):
    """FT(S): next-token training on question -> answer pairs about the documents."""

    def pairs(self, step):
        if step.documents and not step.train_qa:
            raise UserError(f"data source '{self.cfg.data.source}' gives no QA set for its documents; "
                            "ft_qa needs one (data.source=world, or data.qa_share>0 for real documents)")
        pairs = [(self.qa_prompt(q), a) for d in step.documents for q, a in step.train_qa.get(d.id, [])]
        # Namesake contrasts, answered as the model answers them before any training (hard targets).
        contrasts = [self.qa_prompt(q) for qa in self.namesake_contrasts(step).values() for q, _ in qa]
        pairs += list(zip(contrasts, self.generate(contrasts))) if contrasts else []
        return pairs + [(text, "") for texts in self.unrelated_texts(step) for text in texts]


class RAGBM25(Base):
    """Retrieval-augmented answering: the stream's documents so far form a BM25 index (method state)."""

    Params = RAGParams

    def __init__(self, cfg, model=None, tokenizer=None):
        super().__init__(cfg, model, tokenizer)
        self.indexed: list[str] = []  # ids of the documents indexed so far, in stream order
        self.texts = {d.id: d.text for s in self.stream.steps for d in s.documents}
        self._retriever = None

    def finish_step(self, k: int) -> None:
        self.indexed += [d.id for d in self.stream.steps[k].documents]
        self._retriever = None

    def retriever(self):
        if self._retriever is None and self.indexed:
            self._retriever = bm25s.BM25()
            self._retriever.index(bm25s.tokenize([self.texts[i] for i in self.indexed], show_progress=False),
                                  show_progress=False)
        return self._retriever

    def answer(self, probes) -> list[str]:
        retriever = self.retriever()
        if retriever is None:
            return super().answer(probes)
        k = min(self.params.top_k, len(self.indexed))
        hits, _ = retriever.retrieve(bm25s.tokenize([p.question for p in probes], show_progress=False), k=k,
                                     show_progress=False)
        contexts = [" ".join(self.texts[self.indexed[j]] for j in row) for row in hits]
        return self.generate([self.qa_prompt(p.question, c) for p, c in zip(probes, contexts)])

    def method_state(self) -> dict:
        return {"indexed": list(self.indexed)}

    def load_method_state(self, state: dict) -> None:
        self.indexed = list(state.get("indexed", []))
        self._retriever = None

    def extra_storage_bytes(self) -> int:
        return sum(len(self.texts[i].encode()) for i in self.indexed)
