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

import random

import bm25s

from lit_knowledge.errors import UserError
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

    def training_examples(self, step):
        return encode_all(self.tokenizer, self.pairs(step), self.cfg.data.max_length)

    def unrelated_texts(self, step) -> list[list[str]]:
        """For each document of the step, `unrelated_per_document` of the stream's unrelated texts (seeded)."""
        texts, n = self.stream.unrelated_texts, self.params.unrelated_per_document
        rng = random.Random(self.cfg.run.seed * 7919 + step.index)
        return [rng.sample(texts, min(len(texts), n)) if n else [] for _ in step.documents]

    def namesake_contrasts(self, step) -> dict[str, list[tuple[str, str]]]:
        """For each document of the step: its QA set's questions about someone who shares part of its subject's
        name, each with the document's answer.

        Trained towards what the model says closed-book (SELF-PARAM: the teacher reading no document; FT(S):
        the model's own answers before training), they teach the update to keep what the model said about
        "luca castellan" while it learns "gus castellan"'s new facts. The answer kept is the document's: where
        SELF-PARAM compares the two distributions. Swapped parts come from the subjects of this and earlier steps;
        a namesake is never someone real: no stream subject (of any step) and no one the model knew before.
        """
        n = self.params.namesake_contrasts
        if not n:
            return {}
        # The name parts seen so far at each position (first names, last names, ...), per number of parts.
        seen: dict[int, list[dict[str, None]]] = {}
        for earlier in self.stream.steps[: step.index + 1]:
            for d in earlier.documents:
                parts = d.subject.split()
                for i, part in enumerate(parts):
                    seen.setdefault(len(parts), [{} for _ in parts])[i][part] = None
        real = set(self.stream.known_names) | {d.subject for s in self.stream.steps for d in s.documents}
        out = {}
        for d in step.documents:
            parts = d.subject.split()
            if len(parts) < 2:
                continue
            pool = []  # per position: the names that swapping a seen part in there gives, real people left out
            for i, part in enumerate(parts):
                names = [" ".join(other if k == i else p for k, p in enumerate(parts))
                         for other in seen[len(parts)][i] if other != part]
                pool.append([name for name in names if name not in real])
            rng = random.Random(f"{self.cfg.run.seed}/{step.index}/{d.id}")
            out[d.id] = []
            for q, a in step.train_qa.get(d.id, []):
                if d.subject not in q:
                    continue
                for j in range(n):
                    i = j % len(parts)  # swap the first name, then the last name, ...
                    if pool[i]:
                        out[d.id].append((q.replace(d.subject, rng.choice(pool[i])), a))
        return out

    def training_step(self, batch, batch_idx):
        return self.lm_training_step(batch)

    def finish_step(self, k: int) -> None:
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
