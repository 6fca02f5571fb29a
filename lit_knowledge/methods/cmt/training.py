"""Meta-training CMT's compressor, question encoding, aggregator and prefix map, the LLM frozen throughout.

The trained parts are a cached build (lit_knowledge/builds.py), keyed by the base model, every `method.`
setting and the seed. Each step draws `train_bank_size` fresh people of the synthetic world (never a stream
person, never a person locality asks about) and compresses their documents: they are the step's bank. MAC's
backprop dropout: only the first `grad_share` of the documents are compressed with gradient, and only their
questions enter the QA loss (with `match_every_document`, self-matching's loss also asks one question about
each other document). Every question reads the whole bank through the aggregator (or, with top-k
aggregation, the k entries that match it best), and the loss is the frozen LLM's negative log-likelihood of
the answer. `background_rows` more rows ask what the LLM knew before (the rehearsal half of the world's
background), read with the same bank, so that reading a bank of unrelated documents keeps that knowledge.

CMT's training-time techniques, each a switch:
- `memory_aware`: + memory_loss_weight x the frozen LLM's loss on each gradient document read with a prefix
  made of that document's own memory alone (the memory must hold the document, not only the answers asked);
- `self_matching`: + match_loss_weight x an in-batch contrastive loss: each question's encoding (by the
  compressor) scores its own document's memory above the bank's other entries (temperature match_temperature).

`train_relations` limits every question meta-training asks (QA, background, matching) to some of the facts, so
that the stream's questions about the others show what the memory holds beyond what it was trained to answer.

Every step draws its people from a generator seeded by the step, so a resumed build sees the batches an
uninterrupted one would.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from pathlib import Path

import lightning as L
import torch
import torch.nn.functional as F

from lit_knowledge.builds import CachedBuild, cache_root, keyed_as_before
from lit_knowledge.config import to_dict
from lit_knowledge.data.datamodules import StepIndices
from lit_knowledge.data.prompts import collate, encode_example, qa_prompt
from lit_knowledge.data.world import RELATIONS, World, direct_relation
from lit_knowledge.evaluation.metrics import qa_scores
from lit_knowledge.methods.cmt.memory import FIRST_SOFT_TOKEN_STD, CMTMemory
from lit_knowledge.methods.components import base_model_recipe, load_model
from lit_knowledge.methods.schedules import adamw_warmup_cosine
from lit_knowledge.models.prefix import greedy_answers

# Bumped whenever a change here trains other parts from the same settings: the cache key changes with it.
TRAINING_VERSION = 1
RECORD = "cmt.json"
# Method fields added after modules were cached, with the behaviour modules had before them: a module built at that
# value keeps its key.
FIELDS_ADDED_LATER = {"soft_token_std": FIRST_SOFT_TOKEN_STD, "matching": "mean", "compressor_reads_embeddings": False,
                      "train_shared_names": 0.0, "keys_read_every_word": False,
                      "key_token_dropout": 0.0, "match_every_document": False,
                      "train_relations": ["city", "year", "org", "field"]}
PARTS = "cmt_parts.pt"


def meta_seed(cfg) -> int:
    """The seed of meta-training: `method.seed`, or run.seed when it is null."""
    return cfg.run.seed if cfg.method.seed is None else cfg.method.seed


def cmt_recipe(cfg) -> dict:
    method = {k: v for k, v in to_dict(cfg.method).items() if k not in ("name", "seed")}
    if not method["self_matching"]:  # the option only adds questions to self-matching's loss
        method["match_every_document"] = False
    method["train_relations"] = [r for r in RELATIONS if r in method["train_relations"]]  # one key for any order
    method = keyed_as_before(method, FIELDS_ADDED_LATER)
    world = cfg.data.world  # the fresh people and the rehearsed background depend on these alone, not on the stream
    background = {"seed": world.seed, "num_background": world.num_background,
                  "num_organisations": world.num_organisations}
    return {"version": TRAINING_VERSION, "model": base_model_recipe(cfg), "method": method, "world": background,
            "max_length": cfg.data.max_length, "seed": meta_seed(cfg)}


def cmt_build(cfg) -> CachedBuild:
    return CachedBuild("cmt_modules", cmt_recipe(cfg), cache_root(cfg), record=RECORD)


def new_cmt_memory(cfg, model) -> CMTMemory:
    """CMT's parts, untrained, over `model` (seeded by the meta-training seed)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(meta_seed(cfg))
        memory = CMTMemory(model, cfg.method, cfg.data.max_length)
    return memory


def load_cmt_memory(cfg, model=None, tokenizer=None) -> tuple[CMTMemory, object]:
    """(CMTMemory, tokenizer): the meta-trained parts over the frozen LLM, trained into the cache first if needed.
    With `method.train_steps: 0`, a model handed in, or in a dry run before the build: untrained parts."""
    path = None if cfg.method.train_steps == 0 or model is not None else \
        cmt_build(cfg).ensure(lambda build: train_cmt(cfg))
    if model is None:
        model, tokenizer = load_model(cfg.model, cfg)
    memory = new_cmt_memory(cfg, model)
    if path is None:
        if tokenizer.bos_token_id is not None:
            memory.reader.start_from_token(tokenizer.bos_token_id)
        return memory, tokenizer
    missing, unexpected = memory.load_state_dict(torch.load(path / PARTS, weights_only=True), strict=False)
    stray = [k for k in missing if k in memory.trained_state()] + list(unexpected)
    if stray:
        raise RuntimeError(f"the cached CMT parts in {path} do not fit this model: {stray[:3]}")
    return memory, tokenizer


def train_cmt(cfg) -> Path:
    """Meta-train CMT's parts into the cache (resumable after a preemption notice); its directory."""
    return cmt_build(cfg).train(lambda: CMTTraining(cfg), cfg.method.train_steps, cfg.trainer,
                                "meta-training CMT's compressor and aggregator", meta_seed(cfg))


@dataclass
class Draw:
    """One step's bank (a document per fresh person, named in `people`, the first `with_gradient` carrying
    gradient), the questions about those (with the index of the document that answers each), questions about the
    background, and (with `match_every_document`) one question about each other document, for self-matching's loss
    only."""

    documents: list[str]
    with_gradient: int
    people: list[str] = field(default_factory=list)  # whom each document is about
    asked: list[tuple[str, str, int]] = field(default_factory=list)
    background: list[tuple[str, str]] = field(default_factory=list)
    matched_only: list[tuple[str, int]] = field(default_factory=list)


def encode_texts(tokenizer, texts: list[str], max_length: int, device) -> dict:
    """Right-padded plain texts, every token scored (a document read by the compressor or predicted by the LLM)."""
    batch = collate([encode_example(tokenizer, t, "", max_length) for t in texts], tokenizer.pad_token_id)
    return {k: v.to(device) for k, v in batch.items()}


class CMTTraining(L.LightningModule):
    phase = "meta-training CMT"

    def __init__(self, cfg):
        super().__init__()
        self.cfg, self.params = cfg, cfg.method
        model, self.tokenizer = load_model(cfg.model, cfg)
        self.memory = new_cmt_memory(cfg, model)
        if self.tokenizer.bos_token_id is not None:
            self.memory.reader.start_from_token(self.tokenizer.bos_token_id)
        self.memory.train()
        self.memory.reader.model.eval()  # frozen: no dropout either
        self.world = World(cfg.data.world)
        self.rehearsed = self.world.rehearsal_people()
        self.report: dict = {}

    def datamodule(self):
        return StepIndices(lambda: self.trainer.global_step)

    def draw(self, step: int) -> Draw:
        p = self.params
        relations = tuple(p.train_relations)
        rng = random.Random(meta_seed(self.cfg) * 1_000_003 + step)
        if p.train_shared_names:
            people = self.world.fresh_people_sharing_names(rng, p.train_bank_size, p.train_shared_names)
        else:  # as every draw was before the option existed
            people = [self.world.fresh_person(rng) for _ in range(p.train_bank_size)]
        out = Draw([self.world.document(person, rng) for person in people],
                   max(1, round(p.grad_share * p.train_bank_size)), [person.name for person in people])
        for i in range(out.with_gradient):
            asked = self.world.questions(people[i], "all", people, relations=relations)
            out.asked += [(q, a, i) for _, q, a in rng.sample(asked, min(p.questions_per_document, len(asked)))]
        for _ in range(p.background_rows):
            _, q, a = rng.choice(self.world.questions(rng.choice(self.rehearsed), "all", self.world.background,
                                                      relations=relations))
            out.background.append((q, a))
        if p.match_every_document and p.self_matching:
            for i in range(out.with_gradient, len(people)):
                _, q, _ = rng.choice(self.world.questions(people[i], "all", people, relations=relations))
                out.matched_only.append((q, i))
        return out

    def encode(self, texts: list[str]) -> dict:
        return encode_texts(self.tokenizer, texts, self.cfg.data.max_length, self.device)

    def losses(self, draw: Draw) -> dict[str, torch.Tensor]:
        p, m = self.params, self.memory
        docs = self.encode(draw.documents)
        g = draw.with_gradient
        carried = m.compress(docs["input_ids"][:g], docs["attention_mask"][:g])
        bank = carried
        if g < len(draw.documents):
            with torch.no_grad():  # backprop dropout: the rest of the bank is a constant
                rest = m.compress(docs["input_ids"][g:], docs["attention_mask"][g:])
            bank = torch.cat([carried, rest])
        rows = [(q, a) for q, a, _ in draw.asked] + draw.background
        # every question in one pass; the matching-only ones (match_every_document) come last
        questions = self.encode([q for q, _ in rows] + [q for q, _ in draw.matched_only])
        encoded_all = m.encode_question(questions["input_ids"], questions["attention_mask"])
        encoded = encoded_all[: len(rows)]
        memory = m.memory_for(encoded, bank)
        qa = collate([encode_example(self.tokenizer, qa_prompt(q), a, self.cfg.data.max_length) for q, a in rows],
                     self.tokenizer.pad_token_id)
        qa = {k: v.to(self.device) for k, v in qa.items()}
        out = {"qa": m.read(memory, qa["input_ids"], qa["attention_mask"], labels=qa["labels"]).loss}
        if p.memory_aware:
            own = m.to_layers(carried)
            out["memory"] = m.read(own, docs["input_ids"][:g], docs["attention_mask"][:g], labels=docs["labels"][:g]).loss
        gold = torch.tensor([i for _, _, i in draw.asked] + [i for _, i in draw.matched_only], device=self.device)
        matched = torch.cat([encoded[: len(draw.asked)], encoded_all[len(rows) :]])
        scores = m.match_scores(matched, bank)
        if p.self_matching:
            out["match"] = F.cross_entropy(scores / p.match_temperature, gold)
        first = (scores.argmax(-1) == gold).float().detach()
        out["gold_first"] = first[: len(draw.asked)].mean()  # the QA loss's questions, comparable across builds
        if draw.matched_only:
            out["gold_first_every_document"] = first.mean()
        return out

    def training_step(self, step, batch_idx):
        p = self.params
        parts = self.losses(self.draw(int(step)))
        loss = parts["qa"]
        if "memory" in parts:
            loss = loss + p.memory_loss_weight * parts["memory"]
        if "match" in parts:
            loss = loss + p.match_loss_weight * parts["match"]
        self.log_dict({f"train/{k}": v for k, v in parts.items()}, prog_bar=False, batch_size=1)
        self.log("train/loss", loss, prog_bar=True, batch_size=1)
        return loss

    def configure_optimizers(self):
        return adamw_warmup_cosine(self.memory, self.params.train_lr, self.params.train_steps)

    def on_train_end(self):
        if self.trainer.global_step >= self.params.train_steps:
            self.report = self.evaluate()

    @torch.no_grad()
    def evaluate(self, rounds: int = 8, bank: int = 32, asked: int = 8) -> dict:
        """F1 on fresh people's held-out question wordings, read from a bank of `bank` fresh documents of which
        `asked` are asked about, beside the frozen LLM with no memory, and how often the gold entry matched best."""
        was_training = self.memory.training
        self.memory.eval()
        rng = random.Random(meta_seed(self.cfg) + 7_777_777)
        answers, golds, empty, first, relations = [], [], [], [], []
        for _ in range(rounds):
            people = [self.world.fresh_person(rng) for _ in range(bank)]
            docs = self.encode([self.world.document(person, rng) for person in people])
            entries = self.memory.compress(docs["input_ids"], docs["attention_mask"])
            tagged = [(q, a, i, direct_relation(kind, rel)) for i in range(asked)
                      for kind, rel, q, a in self.world.questions_about(people[i], "probe", people)]
            rows = [(q, a, i) for q, a, i, _ in tagged]
            relations += [rel for *_, rel in tagged]
            questions = self.encode([q for q, _, _ in rows])
            encoded = self.memory.encode_question(questions["input_ids"], questions["attention_mask"])
            prompts = [qa_prompt(q) for q, _, _ in rows]
            answers += greedy_answers(self.memory.reader, self.memory.memory_for(encoded, entries), self.tokenizer,
                                      prompts)
            empty += greedy_answers(self.memory.reader, None, self.tokenizer, prompts)
            golds += [[a] for _, a, _ in rows]
            scores = self.memory.match_scores(encoded, entries)
            first += (scores.argmax(-1).cpu() == torch.tensor([i for _, _, i in rows])).tolist()
        self.memory.train(was_training)
        self.memory.reader.model.eval()
        by_relation = {rel: qa_scores([a for a, r in zip(answers, relations) if r == rel],
                                      [g for g, r in zip(golds, relations) if r == rel])["f1"]
                       for rel in sorted(set(relations) - {""})}
        return {"efficacy_f1": qa_scores(answers, golds)["f1"], "no_memory_f1": qa_scores(empty, golds)["f1"],
                "gold_matched_first": sum(first) / len(first), "bank": bank, "questions": len(golds),
                "efficacy_f1_about": by_relation}

    def save(self, directory: Path) -> None:
        torch.save(self.memory.trained_state(), directory / PARTS)
