"""Training MemoryLLM's memory module: LoRA on the base model, the start vectors and the write vector.

The memory module is a cached build (lit_knowledge/builds.py), keyed by the base model, the LoRA shape, the
training settings and the seed. It learns on fresh people of the synthetic world, never the stream's: each
step writes documents into memory and takes the next-token loss on answers to questions about them, asked
closed book, so the answer can only come from the memory. Every row of a batch keeps its own running pool,
written step after step, as the stream will write it. The paper's three regimes, each with its share:

- **one context** (`single_share`): one document written with gradient through the write; the memory read is
  the running pool updated with the new tokens (`join_pool_share`; the old tokens detached) or the new
  tokens alone;
- **several contexts** (`multi_share`): 2..m documents written in turn, all but the last without gradient,
  questions about any one of them (`multi_target: any`) or only about the earlier ones (`earlier`); m grows from 2 to `max_contexts` over `curriculum_steps` (the curriculum);
- **replay** (`replay_share`): questions of an earlier step asked again after the writes made since, from
  the running pool (gradient through the read only).

With `shuffle_read_in_training` (not the paper's) the memory a step's questions read is put in a random order, so
the module cannot learn that the asked document sits in the pool's last K places. With
`gradient_through_earlier_writes` (not the paper's either) no write of a several-contexts step is made without
gradient: a question about an earlier document reaches the write that made its surviving tokens.

Each step also adds `background_rows` rows of questions about what the model knew before any write (the
rehearsal half of the world's background; locality asks only about the other half), read with the same pools,
so that reading a full memory does not drown the model's own knowledge.

Every step draws its people from a generator seeded by the step, so a resumed build sees the batches an
uninterrupted one would; the running pools and the replay questions are kept in its checkpoints.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from pathlib import Path

import lightning as L
import torch

from lit_knowledge.builds import CachedBuild, cache_root, keyed_as_before
from lit_knowledge.config import to_dict
from lit_knowledge.data.datamodules import StepIndices
from lit_knowledge.data.prompts import collate, encode_dialogue, qa_prompt, token_ids
from lit_knowledge.data.world import World
from lit_knowledge.evaluation.metrics import qa_scores
from lit_knowledge.methods.components import base_model_recipe, load_model
from lit_knowledge.methods.memoryllm.memory import MemoryModel
from lit_knowledge.methods.schedules import adamw_warmup_cosine
from lit_knowledge.models.lora import add_lora
from lit_knowledge.models.prefix import greedy_answers, left_padded

# Bumped whenever a change here trains another module from the same settings: the cache key changes with it.
TRAINING_VERSION = 1
RECORD = "memory.json"
VECTORS = "memory_vectors.pt"
ADAPTER = "adapter"
WEIGHTS = "model"
TRAINING_FIELDS = ("train_steps", "train_lr", "train_batch_size", "train_pool_size", "write_size", "chunk_length",
                   "questions_per_target", "single_share", "join_pool_share", "multi_share", "max_contexts",
                   "curriculum_steps", "replay_share", "background_rows", "multi_target",
                   "shuffle_read_in_training", "gradient_through_earlier_writes")


def memory_recipe(cfg) -> dict:
    m = cfg.method
    training = {f: m[f] for f in TRAINING_FIELDS}
    training["train_pool_size"] = m.train_pool_size or m.pool_size
    training = keyed_as_before(training, {"shuffle_read_in_training": False, "gradient_through_earlier_writes": False})
    world = cfg.data.world  # the fresh people and the rehearsed background depend on these alone, not on the stream
    background = {"seed": world.seed, "num_background": world.num_background,
                  "num_organisations": world.num_organisations}
    return {"version": TRAINING_VERSION, "model": base_model_recipe(cfg), "lora": to_dict(cfg.model.lora),
            "training": training, "world": background, "max_length": cfg.data.max_length, "seed": cfg.run.seed}


def memory_build(cfg) -> CachedBuild:
    return CachedBuild("memory_modules", memory_recipe(cfg), cache_root(cfg), record=RECORD)


def untrained_memory_model(cfg, model, tokenizer) -> MemoryModel:
    """The wrapper before any training: the model as it is, start vectors from its beginning-of-sequence token
    (zeros without one), a zero write vector."""
    memory = MemoryModel(model, cfg.method.pool_size, cfg.method.write_size)
    if tokenizer.bos_token_id is not None:
        memory.start_from_token(tokenizer.bos_token_id)
    return memory


def load_memory_model(cfg, model=None, tokenizer=None) -> tuple[MemoryModel, object]:
    """(MemoryModel at the stream's pool size, tokenizer): the trained memory module, built first if needed.

    With `method.train_steps: 0`, a model handed in, or in a dry run before the module is built: the
    untrained wrapper (`untrained_memory_model`).
    """
    m = cfg.method
    path = None if m.train_steps == 0 or model is not None else \
        memory_build(cfg).ensure(lambda build: train_memory_module(cfg))
    if path is None:
        if model is None:
            model, tokenizer = load_model(cfg.model, cfg)
        return untrained_memory_model(cfg, model, tokenizer), tokenizer
    model, tokenizer = load_model(cfg.model, cfg)
    if (path / ADAPTER).is_dir():
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, str(path / ADAPTER)).merge_and_unload()
    else:
        model.load_state_dict(torch.load(path / WEIGHTS / "weights.pt", weights_only=True))
    memory = MemoryModel(model, m.pool_size, m.write_size)
    memory.load_memory_state(torch.load(path / VECTORS, weights_only=True))
    return memory, tokenizer


def write_texts(memory: MemoryModel, tokenizer, pool: torch.Tensor | None, texts: list[str],
                chunk_length: int) -> torch.Tensor:
    """The K new memory tokens of one write of a text per row, (layers, rows, K, hidden): each text's last
    `chunk_length` tokens, left-padded, written reading `pool`."""
    rows = [token_ids(tokenizer, t)[-chunk_length:] for t in texts]
    ids, mask = left_padded(rows, tokenizer.pad_token_id, memory.start.device)
    return memory.write(pool, ids, mask)


def train_memory_module(cfg) -> Path:
    """Train the memory module into the cache (resumable after a preemption notice); its directory."""
    return memory_build(cfg).train(lambda: MemoryTraining(cfg), cfg.method.train_steps, cfg.trainer,
                                   "training the memory module", cfg.run.seed)


@dataclass
class Draw:
    """One training step's examples: the regime, the documents to write (in order, one list per write, one
    document per row), each row's questions, and the rows asking about what the model already knew."""

    regime: str
    documents: list[list[str]] = field(default_factory=list)
    asked: list[list[tuple[str, str]]] = field(default_factory=list)
    join_pool: bool = True
    keep_for_replay: bool = False
    background: list[list[tuple[str, str]]] = field(default_factory=list)


class MemoryTraining(L.LightningModule):
    phase = "training the memory module"

    def __init__(self, cfg):
        super().__init__()
        self.cfg, self.params = cfg, cfg.method
        model, self.tokenizer = load_model(cfg.model, cfg)
        if cfg.model.lora.enabled:
            model = add_lora(model, cfg.model.lora)
        self.memory = MemoryModel(model, self.params.train_pool_size or self.params.pool_size, self.params.write_size)
        if self.tokenizer.bos_token_id is not None:
            self.memory.start_from_token(self.tokenizer.bos_token_id)  # as untrained_memory_model
        self.memory.train()  # from_pretrained returns a model in eval mode
        self.world = World(cfg.data.world)
        self.rehearsed = self.world.rehearsal_people()
        self.pool: torch.Tensor | None = None  # running pools, (layers, rows, N, hidden)
        self.replay: list[list[tuple[str, str]]] | None = None  # an earlier step's questions, per row
        self.report: dict = {}

    def datamodule(self):
        return StepIndices(lambda: self.trainer.global_step)

    # ------------------------------------------------------------------------------ one step

    def most_contexts(self, step: int) -> int:
        """The curriculum: the most documents one several-contexts step writes, from 2 to max_contexts."""
        p = self.params
        return 2 + int((p.max_contexts - 2) * min(1.0, step / p.curriculum_steps))

    def write(self, documents: list[str]) -> torch.Tensor:
        """One write of a document per row into the running pools: the K new tokens, (layers, rows, K, hidden)."""
        return write_texts(self.memory, self.tokenizer, self.pool, documents, self.params.chunk_length)

    def questions(self, rng: random.Random, person, known=None) -> list[tuple[str, str]]:
        """Up to questions_per_target (question, answer) pairs about `person`, in any wording."""
        asked = [(q, a) for _, q, a in self.world.questions(person, "all", known or [person])]
        return rng.sample(asked, min(self.params.questions_per_target, len(asked)))

    def draw(self, step: int, can_replay: bool) -> Draw:
        """Step `step`'s examples, from a generator of the step's own (a resumed build draws the same)."""
        p, rows = self.params, self.params.train_batch_size
        rng = random.Random(self.cfg.run.seed * 1_000_003 + step)
        draw = rng.random() * (p.single_share + p.multi_share + p.replay_share)
        regime = "single" if draw < p.single_share else "multi" if draw < p.single_share + p.multi_share else "replay"
        if regime == "replay" and not can_replay:
            regime = "single"
        out = Draw(regime)
        if regime != "replay":
            n = 1 if regime == "single" else rng.randint(2, self.most_contexts(step))
            people = [[self.world.fresh_person(rng) for _ in range(rows)] for _ in range(n)]
            out.documents = [[self.world.document(person, rng) for person in group] for group in people]
            out.join_pool = regime == "multi" or rng.random() < p.join_pool_share
            # several contexts: questions about any of them, or (multi_target: earlier) never about the newest
            among = n - 1 if regime == "multi" and p.multi_target == "earlier" else n
            out.asked = [self.questions(rng, people[rng.randrange(among)][r]) for r in range(rows)]
            out.keep_for_replay = rng.random() < 0.5
        out.background = [self.questions(rng, rng.choice(self.rehearsed), self.world.background)
                          for _ in range(min(p.background_rows, rows))]
        return out

    def training_step(self, step, batch_idx):
        step = int(step)
        drop = torch.Generator().manual_seed(self.cfg.run.seed * 1_000_003 + step)
        draw = self.draw(step, self.replay is not None)
        if draw.regime == "replay":
            asked, memory = self.replay, self.pool
            self.replay = None
        else:
            chained = draw.regime == "multi" and self.params.gradient_through_earlier_writes
            for group in draw.documents[:-1]:
                with torch.set_grad_enabled(chained):
                    self.pool = self.memory.update(self.pool, self.write(group), drop)
            new = self.write(draw.documents[-1])  # the write that carries gradient
            if draw.join_pool or self.pool is None:
                earlier = self.pool if chained or self.pool is None else self.pool.detach()
                memory = self.memory.update(earlier, new, drop)
                self.pool = memory.detach()
            else:
                memory = new
                self.pool = self.memory.update(self.pool, new.detach(), drop)
            asked = draw.asked
            if draw.keep_for_replay:
                self.replay = asked
        known = len(draw.background)  # rows about what the model already knows, read with the same pools
        memory = torch.cat([memory, memory[:, :known]], dim=1)
        if self.params.shuffle_read_in_training:  # the newest write no longer sits in the last K places
            memory = memory[:, :, torch.randperm(memory.shape[2], generator=drop).to(memory.device)]
        batch = collate([encode_dialogue(self.tokenizer, None, qa, self.cfg.data.max_length)
                         for qa in asked + draw.background], self.tokenizer.pad_token_id)
        batch = {k: v.to(self.device) for k, v in batch.items()}
        loss = self.memory.read(memory, batch["input_ids"], batch["attention_mask"], labels=batch["labels"]).loss
        self.log("train/loss", loss, prog_bar=True, batch_size=len(asked))
        return loss

    def configure_optimizers(self):
        return adamw_warmup_cosine(self.memory, self.params.train_lr, self.params.train_steps)

    # ------------------------------------------------------------------------------ state and result

    def on_save_checkpoint(self, checkpoint):
        checkpoint["memory_training"] = {"pool": self.pool, "replay": self.replay}

    def on_load_checkpoint(self, checkpoint):
        state = checkpoint.get("memory_training", {})
        self.pool, self.replay = state.get("pool"), state.get("replay")

    def on_train_end(self):
        if self.trainer.global_step >= self.params.train_steps:
            self.report = self.evaluate()

    @torch.no_grad()
    def evaluate(self, people: int = 64, earlier_writes: int = 8) -> dict:
        """F1 on fresh people's held-out questions right after their document is written into a pool that
        already holds `earlier_writes` other documents (t = 1), beside the closed-book model's F1."""
        rng = random.Random(self.cfg.run.seed + 7_777_777)
        drop = torch.Generator().manual_seed(self.cfg.run.seed + 7_777_777)
        was_training = self.memory.training
        self.memory.eval()
        saved, self.pool = self.pool, None
        prompts, answers, closed = [], [], []
        for _ in range(people):
            self.pool = None
            for _ in range(earlier_writes):
                other = self.world.fresh_person(rng)
                self.pool = self.memory.update(self.pool, self.write([self.world.document(other, rng)]), drop)
            person = self.world.fresh_person(rng)
            self.pool = self.memory.update(self.pool, self.write([self.world.document(person, rng)]), drop)
            asked = [(q, a) for _, q, a in self.world.questions(person, "probe", [person])]
            prompts_here = [qa_prompt(q) for q, _ in asked]
            prompts += prompts_here
            answers += [[a] for _, a in asked]
            closed += greedy_answers(self.memory, self.pool, self.tokenizer, prompts_here)
        empty = greedy_answers(self.memory, None, self.tokenizer, prompts)
        self.pool = saved
        self.memory.train(was_training)
        return {"efficacy_f1": qa_scores(closed, answers)["f1"], "no_memory_f1": qa_scores(empty, answers)["f1"],
                "people": people, "earlier_writes": earlier_writes}

    def save(self, directory: Path) -> None:
        lm = self.memory.model
        if hasattr(lm, "save_pretrained") and hasattr(lm, "peft_config"):
            lm.save_pretrained(str(directory / ADAPTER))
        else:
            (directory / WEIGHTS).mkdir(parents=True, exist_ok=True)
            torch.save(lm.state_dict(), directory / WEIGHTS / "weights.pt")
        torch.save(self.memory.memory_state(), directory / VECTORS)
        self.tokenizer.save_pretrained(str(directory / "tokenizer"))
