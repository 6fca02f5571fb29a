"""`memoryllm`: a knowledge stream written into MemoryLLM's fixed-size memory pool, probes answered from it.

Each stream step's documents are written in the stream's order, without gradient (a document longer than
`chunk_length` tokens as several chunks, in order); probes are answered closed book, reading the pool at
every layer. No weight changes during the stream: what the model knows of it is in the pool, whose size
never changes however much is written. The pool, the update's random generator and the write count are
saved in every checkpoint and restored exactly.

On an edit stream each edit's statement (its prompt, then the new target) is written instead, and the editors'
protocol scores it through the contract, as the paper's editing table does: the pre-edit floor is the module
with an empty memory.
"""

from __future__ import annotations

import math

import torch
from datasets import Dataset

from lit_knowledge.data.prompts import token_ids
from lit_knowledge.data.streams import EditStream
from lit_knowledge.errors import UserError
from lit_knowledge.evaluation.edit_protocol import EditProtocol, format_prompt
from lit_knowledge.evaluation.metrics import qa_scores
from lit_knowledge.methods.base import KnowledgeMethod, encode_all, load_stream
from lit_knowledge.methods.memoryllm.training import load_memory_model
from lit_knowledge.methods.params import MemoryLLMParams
from lit_knowledge.models.prefix import PrefixScorer, greedy_answers


class MemoryLLM(KnowledgeMethod):
    Params = MemoryLLMParams
    phase = "writing the stream into memory"
    keeps_document_order = True  # the pool depends on the order documents are written in
    shards_batches = False  # every process writes every document: each holds the whole pool

    def __init__(self, cfg, model=None, tokenizer=None):
        stream = load_stream(cfg)  # a data mistake must not wait for the memory module's training
        memory, tokenizer = load_memory_model(cfg, model, tokenizer)  # a model handed in is wrapped untrained
        super().__init__(cfg, memory, tokenizer, stream)
        self.memory = self.model  # one module: the base model (LoRA merged), start vectors, write vector
        self.memory.requires_grad_(False)
        self.pool: torch.Tensor | None = None  # (layers, 1, N, hidden); None until the first write
        self.drop = torch.Generator().manual_seed(cfg.run.seed)  # which old tokens each update keeps
        self.writes = 0

    # ------------------------------------------------------------------------------ writing

    def chunks(self, text: str) -> list[list[int]]:
        """The token ids of `text` cut into chunks of at most chunk_length; a last piece shorter than write_size
        borrows tokens from the one before (a text shorter than write_size is one short chunk)."""
        p = self.params
        ids = token_ids(self.tokenizer, text)
        if not ids:
            raise UserError(f"memoryllm: a text to write has no tokens ({text!r}): drop it from the data")
        pieces = [ids[i : i + p.chunk_length] for i in range(0, len(ids), p.chunk_length)]
        if len(pieces) > 1 and len(pieces[-1]) < p.write_size:  # the last piece borrows from the one before
            short = p.write_size - len(pieces[-1])
            pieces[-1] = pieces[-2][-short:] + pieces[-1]
        return pieces

    # ------------------------------------------------------------------------------ edit streams

    @property
    def on_edit_stream(self) -> bool:
        return isinstance(self.stream, EditStream)

    def make_protocol(self):
        """Edit streams (zsRE, CounterFact, the world's edits) are scored by the editors' protocol, through the
        contract: each edit's statement is written into the pool and its prompts are read from it."""
        if isinstance(self.stream, EditStream):
            return EditProtocol(self.stream, self.cfg.eval)
        return super().make_protocol()

    def stream_units(self) -> list:
        return self.stream.edits if self.on_edit_stream else self.stream.steps

    def texts_to_write(self, unit) -> list[str]:
        """A stream step's documents, or an edit's statement: its prompt in the stream's style, then target_new."""
        if self.on_edit_stream:
            return [f"{format_prompt(self.stream.prompt_style, unit.prompt)} {unit.target_new}"]
        return [d.text for d in unit.documents]

    def on_train_start(self):
        if self.on_edit_stream and self.protocol.pre_edit is None:
            self.protocol.record_pre_edit(self)  # the floor: the module with an empty memory

    def training_examples(self, step):
        """The step's texts as chunks to write, in the stream's order (labels unused: nothing is trained)."""
        rows = [chunk for text in self.texts_to_write(step) for chunk in self.chunks(text)]
        if not rows:
            return encode_all(self.tokenizer, [], self.cfg.data.max_length)
        return Dataset.from_dict({"input_ids": rows, "labels": rows})

    @torch.no_grad()
    def write_text_ids(self, ids: list[int]) -> None:
        """Write one chunk into the pool and update it."""
        chunk = torch.tensor([ids], device=self.memory.start.device)
        new = self.memory.write(self.pool, chunk, torch.ones_like(chunk))
        self.pool = self.memory.update(self.pool, new, self.drop)
        self.writes += 1

    def write_text(self, text: str) -> None:
        for chunk in self.chunks(text):
            self.write_text_ids(chunk)

    def training_step(self, batch, batch_idx):
        if "input_ids" not in batch:
            return None
        for ids, mask in zip(batch["input_ids"], batch["attention_mask"]):
            self.write_text_ids(ids[mask.bool()].tolist())
        return None

    # ------------------------------------------------------------------------------ the contract

    def answer(self, probes) -> list[str]:
        prompts = [self.qa_prompt(p.question) for p in probes]
        return greedy_answers(self.memory, self.pool, self.tokenizer, prompts, self.cfg.eval.max_new_tokens,
                              self.cfg.eval.batch_size)

    def scoring_model(self):
        return PrefixScorer(self.memory, self.pool)  # token predictions and LM loss read the pool too

    # ------------------------------------------------------------------------------ retention by age

    def results(self) -> dict:
        """The protocol's results, plus retention by age against the pool's theory (`retention_by_age`)."""
        out = super().results()
        if out.get("retention_matrix"):
            m = self.memory
            out["retention_by_age"] = retention_by_age(out["retention_matrix"], m.write_size, m.pool_size,
                                                       self.no_memory_f1())
            for key in ("fitted_decay_rate", "theory_decay_rate"):
                out["metrics"][key] = out["retention_by_age"][key]
        return out

    def no_memory_f1(self) -> float:
        """The floor: F1 on every stream probe read with an empty memory (the start vectors alone)."""
        probes = [p for group in self.protocol.step_probes for p in group]
        if not probes:
            return 0.0
        prompts = [self.qa_prompt(p.question) for p in probes]
        answers = greedy_answers(self.memory, None, self.tokenizer, prompts, self.cfg.eval.max_new_tokens,
                                 self.cfg.eval.batch_size)
        return qa_scores(answers, [p.answers for p in probes])["f1"]

    # ------------------------------------------------------------------------------ state

    def configure_optimizers(self):
        return None  # nothing is trained during the stream

    def method_state(self) -> dict:
        state = {"pool": None if self.pool is None else self.pool.detach().cpu().clone(),
                 "drop_rng": self.drop.get_state(), "writes": self.writes}
        if self.on_edit_stream:
            state["protocol"] = self.protocol.state()
        return state

    def load_method_state(self, state: dict) -> None:
        if not state:
            return
        pool = state.get("pool")
        self.pool = None if pool is None else pool.to(self.memory.start.device, self.memory.start.dtype)
        self.drop.set_state(state["drop_rng"])
        self.writes = state.get("writes", 0)
        if self.on_edit_stream and "protocol" in state:
            self.protocol.load_state(state["protocol"])

    def extra_storage_bytes(self) -> int:
        """The pool (allocated at its full size from the first write on) and the learned vectors."""
        vectors = sum(t.numel() * t.element_size() for t in (self.memory.start, self.memory.write_vector))
        m = self.memory
        pool = m.num_layers * m.pool_size * m.hidden * m.start.element_size()
        return pool + vectors


def retention_by_age(matrix: list[list[float | None]], write_size: int, pool_size: int, floor: float) -> dict:
    """F1 on a step's probes by its age t (1 = just written, t = after t - 1 further steps), averaged over the
    steps that reached that age, beside the theory a_1 (1 - K/N)^(t - 1) with one write per step.

    The decay rate is fitted by least squares on log(F1_t - floor) for the ages whose F1 is still above the
    floor (the no-memory F1: what is left when nothing of the document survives); the theory's rate is
    log(1 - K/N) per write.
    """
    by_age: dict[int, list[float]] = {}
    for k, row in enumerate(matrix):
        for j in range(k + 1):
            if j < len(row) and row[j] is not None:
                by_age.setdefault(k - j + 1, []).append(row[j])
    ages = sorted(by_age)
    f1 = [sum(by_age[t]) / len(by_age[t]) for t in ages]
    theory_rate = math.log(1 - write_size / pool_size) if write_size < pool_size else float("-inf")
    a1 = f1[0] if f1 else 0.0
    usable = [(t, math.log(v - floor)) for t, v in zip(ages, f1) if v - floor > 0.01]
    fitted = None
    if len(usable) >= 2:
        mean_t = sum(t for t, _ in usable) / len(usable)
        mean_y = sum(y for _, y in usable) / len(usable)
        var = sum((t - mean_t) ** 2 for t, _ in usable)
        fitted = sum((t - mean_t) * (y - mean_y) for t, y in usable) / var if var else None
    return {"age": ages, "f1": f1, "floor": floor,
            "theory_f1": [floor + (a1 - floor) * math.exp(theory_rate * (t - 1)) for t in ages],
            "fitted_decay_rate": fitted, "theory_decay_rate": theory_rate, "ages_fitted": len(usable)}
