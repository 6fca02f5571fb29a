"""`cmt`: a knowledge stream compressed into CMT's memory bank, probes answered by the frozen LLM reading it.

Each stream step's documents are compressed, without gradient and in the stream's order, and appended to the
bank: one entry per document (its T keys and T vectors per layer). A probe's question is encoded, the aggregator reads the bank (its
top-k entries with top-k aggregation; window by window when it is long), and the frozen LLM answers with the
result as a key/value prefix at every layer. No weight changes during the stream. The bank is saved in every
checkpoint and restored exactly; the trained parts are weights of the module (in every checkpoint too).

The language-model loss on held-out text reads the bank with an empty question (the soft tokens alone): no
part of the scored text reaches the memory it is scored with.
"""

from __future__ import annotations

import torch
from datasets import Dataset

from lit_knowledge.data.prompts import collate, encode_example
from lit_knowledge.data.streams import EditStream
from lit_knowledge.errors import UserError
from lit_knowledge.methods.base import KnowledgeMethod, load_stream
from lit_knowledge.methods.cmt.training import encode_texts, load_cmt_memory
from lit_knowledge.methods.params import CMTParams
from lit_knowledge.models.prefix import PrefixScorer, greedy_answers


class CMT(KnowledgeMethod):
    Params = CMTParams
    phase = "compressing the stream into the bank"
    keeps_document_order = True  # bank entries follow the stream (the hierarchy's windows, retention by age)
    shards_batches = False  # every process compresses every document: each holds the whole bank

    def __init__(self, cfg, model=None, tokenizer=None):
        stream = load_stream(cfg)  # a data mistake must not wait for the meta-training
        if isinstance(stream, EditStream):
            raise UserError(f"method cmt reads documents into a bank; data.source={cfg.data.source} is an edit "
                            "stream: use a document source (world, squad, ...)")
        memory, tokenizer = load_cmt_memory(cfg, model, tokenizer)
        super().__init__(cfg, memory, tokenizer, stream)
        self.memory = self.model
        self.memory.requires_grad_(False)
        self.memory.eval()
        self.bank: torch.Tensor | None = None  # (documents, T, hidden); None before the first document
        # The trained parts never change during the stream: their bytes are counted once.
        self.parts_bytes = sum(t.numel() * t.element_size() for t in self.memory.trained_state().values())

    def train(self, mode: bool = True):
        """The memory stays in eval mode whatever Lightning asks: it is frozen, and compressing and reading are
        deterministic."""
        super().train(mode)
        self.memory.eval()
        return self

    # ------------------------------------------------------------------------------ writing the bank

    def training_examples(self, step):
        """The step's documents, one row each, in the stream's order (labels unused: nothing is trained)."""
        rows = [encode_example(self.tokenizer, d.text, "", self.cfg.data.max_length) for d in step.documents]
        return Dataset.from_list(rows) if rows else Dataset.from_dict({"input_ids": [], "labels": []})

    @torch.no_grad()
    def add_documents(self, ids: torch.Tensor, mask: torch.Tensor) -> None:
        entries = self.memory.compress(ids, mask)
        self.bank = entries if self.bank is None else torch.cat([self.bank, entries])

    def training_step(self, batch, batch_idx):
        if "input_ids" in batch:
            self.add_documents(batch["input_ids"], batch["attention_mask"])
        return None

    # ------------------------------------------------------------------------------ the contract

    @torch.no_grad()
    def memories(self, questions: list[str]) -> torch.Tensor | None:
        """The prefix memory each question reads, (layers, questions, T, hidden); None for an empty bank."""
        if self.bank is None:
            return None
        enc = encode_texts(self.tokenizer, questions, self.cfg.data.max_length, self.memory.device)
        return self.memory.memory_for(self.memory.encode_question(enc["input_ids"], enc["attention_mask"]), self.bank)

    def answer(self, probes) -> list[str]:
        size, out = self.cfg.eval.batch_size, []
        for i in range(0, len(probes), size):
            chunk = probes[i : i + size]
            memory = self.memories([p.question for p in chunk])
            prompts = [self.qa_prompt(p.question) for p in chunk]
            out += greedy_answers(self.memory.reader, memory, self.tokenizer, prompts, self.cfg.eval.max_new_tokens,
                                  len(chunk))
        return out

    @torch.no_grad()
    def question_free_memory(self) -> torch.Tensor | None:
        """The bank read with an empty question: the compressor's soft tokens alone query it."""
        if self.bank is None:
            return None
        pad = self.tokenizer.pad_token_id
        enc = collate([{"input_ids": [pad], "labels": [pad]}], pad)
        mask = torch.zeros_like(enc["input_ids"]).to(self.memory.device)
        return self.memory.memory_for(self.memory.encode_question(enc["input_ids"].to(self.memory.device), mask),
                                      self.bank)

    def scoring_model(self):
        return PrefixScorer(self.memory.reader, self.question_free_memory())

    # ------------------------------------------------------------------------------ state

    def configure_optimizers(self):
        return None  # nothing is trained during the stream

    def method_state(self) -> dict:
        return {"bank": None if self.bank is None else self.bank.detach().cpu().clone()}

    def load_method_state(self, state: dict) -> None:
        bank = (state or {}).get("bank")
        self.bank = None if bank is None else bank.to(self.memory.device)

    def bank_bytes(self) -> int:
        """The bank: (1 + layers) x T x hidden numbers per document written so far."""
        return 0 if self.bank is None else self.bank.numel() * self.bank.element_size()

    def extra_storage_bytes(self) -> int:
        """The bank and CMT's trained parts (compressor, question encoder, aggregator, start vectors)."""
        return self.bank_bytes() + self.parts_bytes
