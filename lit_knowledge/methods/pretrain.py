"""`pretrain`: the synthetic world's reader, the embedded default model.

A tiny Llama and a word-level tokenizer trained on the world's text learn two things at once:
- background knowledge, closed-book: questions about the background people and organisations;
- reading: a context of one to three documents (`pretrain.context_documents`) about *freshly drawn* people,
  questions about any of them, their answers.
Fresh people every time means the reader cannot memorise its way to the answer: it must copy
from the context. Afterwards it must be a competent reader (context-in-prompt F1 on the stream's
probes) that does not know the stream (closed-book F1 on the same probes stays low) and knows the
background (closed-book F1 on background probes: what locality measures).

A reader is keyed by everything that shapes it (world, model shape, pretraining settings, seed) and
reused by every run with `model.name: reader`. The default one ships in the repository
(`data/readers/<key>/`, its files checked against the hashes of its manifest; `make reader` rebuilds it);
any other is pretrained on first use and cached under `<run.cache_dir>/readers/<key>`.
"""

from __future__ import annotations

import sys
from pathlib import Path

import lightning as L
import torch
from omegaconf import OmegaConf

from lit_knowledge.builds import CachedBuild, cache_root
from lit_knowledge.config import MethodParams, to_dict
from lit_knowledge.data.datamodules import PretrainDataModule
from lit_knowledge.data.prompts import encode_dialogue, encode_example, qa_prompt
from lit_knowledge.data.world import World
from lit_knowledge.errors import UserError
from lit_knowledge.evaluation.metrics import qa_scores
from lit_knowledge.methods.schedules import warmup_cosine
from lit_knowledge.models.build import build_tiny_llama, save_model
from lit_knowledge.models.generate import generate_answers, lm_loss
from lit_knowledge.models.tokenizer import train_word_tokenizer

READER_REPORT = "reader.json"
SHIPPED_READERS = Path(__file__).resolve().parents[2] / "data" / "readers"
# The bars a reader must clear (issue: competent reader that does not know the stream).
# Pretraining fields added after readers were cached, with the behaviour readers had before them: a reader built
# at that value keeps its key (the whole background; one to three documents in a reading context).
FIELDS_ADDED_LATER = {"background_share": 1.0, "context_documents": 3}
BARS = {"in_context_f1": (">=", 0.8), "closed_book_stream_f1": ("<=", 0.2), "background_f1": (">=", 0.8)}


def reader_seed(cfg) -> int:
    """The reader's seed: `pretrain.seed`, or run.seed when it is null."""
    return cfg.run.seed if cfg.pretrain.seed is None else cfg.pretrain.seed


def reader_recipe(cfg) -> dict:
    """What shapes the reader: the world's background (not its stream), the model, pretraining, the seed."""
    world = cfg.data.world
    background = {"seed": world.seed, "num_background": world.num_background,
                  "num_organisations": world.num_organisations}
    pretrain = to_dict(cfg.pretrain)
    del pretrain["seed"]  # the reader's seed is keyed once, below: one reader whichever field gave it
    for field, before in FIELDS_ADDED_LATER.items():  # at the value readers had before it, a field keys nothing
        if pretrain.get(field) == before:
            del pretrain[field]
    return {"world": background, "tiny": to_dict(cfg.model.tiny), "pretrain": pretrain,
            "seed": reader_seed(cfg), "max_length": cfg.data.max_length}


def reader_build(cfg) -> CachedBuild:
    """This config's reader as a cached build (shipped in data/readers/ when its key is the default's)."""
    return CachedBuild("readers", reader_recipe(cfg), cache_root(cfg), record=READER_REPORT,
                       shipped_root=SHIPPED_READERS)


def reader_key(cfg) -> str:
    return reader_build(cfg).key


def reader_dir(cfg) -> Path:
    """Where this config's reader is cached once pretrained here."""
    return reader_build(cfg).path


def find_reader(cfg) -> Path | None:
    """This config's reader if it exists already: the shipped one, else the cached one."""
    return reader_build(cfg).find()


class PretrainReader(L.LightningModule):
    Params = MethodParams
    kind = "pretrain"
    phase = "pretraining the reader"

    def __init__(self, cfg):
        super().__init__()
        if cfg.data.source != "world":
            raise UserError("method pretrain trains the synthetic world's reader: set data.source=world")
        self.cfg = cfg
        self.world = World(cfg.data.world)
        self.tokenizer = train_word_tokenizer(self.world.texts(), cfg.model.tiny.vocab_size)
        # The initial weights come from the reader's seed alone, whoever builds the reader (`train` seeds everything first,
        # `ensure_reader` runs inside other commands and seeds nothing): one key, one reader. The forked generator
        # leaves the caller's random state as it was, so a run does the same whether its reader was cached or not.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(reader_seed(cfg))
            self.model = build_tiny_llama(cfg.model.tiny, self.tokenizer)
        self.learnt = self.world.learnt_background(cfg.pretrain.background_share)
        self.background_docs, self.background_qa = self.world.background_corpus(self.learnt)
        self.mix = OmegaConf.to_object(cfg.pretrain)  # plain values: `sample` reads them for every example
        self.max_length = cfg.data.max_length
        self.report: dict = {}

    @property
    def step_budget(self) -> int:
        return self.cfg.pretrain.max_steps

    def sample(self, rng) -> dict:
        """One sequence of the mix: reading comprehension, background questions, or a background document.

        Question turns are packed several to a sequence (`encode_dialogue`): more supervised answers per step.
        """
        mix, max_length = self.mix, self.max_length
        draw = rng.random()
        if draw < mix.reading_share:
            context, qa = self.world.reading_example(rng, mix.questions_per_example, mix.context_documents)
            return encode_dialogue(self.tokenizer, context, qa, max_length, mix.score_reading_prompts)
        if draw < 1 - mix.document_share:
            return encode_dialogue(self.tokenizer, None, rng.sample(self.background_qa, mix.background_turns), max_length)
        return encode_example(self.tokenizer, rng.choice(self.background_docs), "", max_length)

    def datamodule(self):
        return PretrainDataModule(self.sample, self.cfg.pretrain.batch_size, self.tokenizer.pad_token_id,
                                  reader_seed(self.cfg), start=lambda: self.trainer.global_step)

    def training_step(self, batch, batch_idx):
        loss = self.model(**batch).loss
        self.log("train/loss", loss, prog_bar=True, batch_size=batch["input_ids"].shape[0])
        return loss

    def configure_optimizers(self):
        p = self.cfg.pretrain
        opt = torch.optim.AdamW(self.model.parameters(), lr=p.lr, weight_decay=p.weight_decay, betas=(0.9, 0.98))

        sched = torch.optim.lr_scheduler.LambdaLR(opt, warmup_cosine(p.warmup_steps, p.max_steps, floor=0.05))
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}

    # ------------------------------------------------------------------------------------ the bars

    def evaluate_reader(self) -> dict:
        stream = self.world.stream()
        docs = {d.id: d.text for s in stream.steps for d in s.documents}
        probes = [p for s in stream.steps for p in s.probes]
        limit = self.cfg.eval.max_probes
        learnt = tuple(f"bg-{p.name.replace(' ', '_')}-q" for p in self.learnt)  # what it was taught
        background = [p for p in stream.background_probes if p.id.startswith(learnt)][: limit * 4 if limit else None]
        ask = lambda prompts: generate_answers(self.model, self.tokenizer, prompts,  # noqa: E731
                                               self.cfg.eval.max_new_tokens, self.cfg.eval.batch_size,
                                               progress=self.cfg.trainer.enable_progress_bar, desc="reader eval")
        answers = [p.answers for p in probes]
        in_context = qa_scores(ask([qa_prompt(p.question, docs[p.doc_id]) for p in probes]), answers)
        closed = qa_scores(ask([qa_prompt(p.question) for p in probes]), answers)
        bg = qa_scores(ask([qa_prompt(p.question) for p in background]), [p.answers for p in background])
        by_kind: dict[str, list[float]] = {}
        for p, (_, f1) in zip(probes, in_context["per_item"]):
            by_kind.setdefault(p.kind, []).append(f1)
        report = {
            "in_context_f1": in_context["f1"], "in_context_em": in_context["em"],
            "closed_book_stream_f1": closed["f1"], "background_f1": bg["f1"],
            "lm_loss": lm_loss(self.model, self.tokenizer, stream.heldout_texts, self.cfg.data.max_length),
        }
        report.update({f"in_context_f1_{k}": sum(v) / len(v) for k, v in sorted(by_kind.items())})
        report["bars_met"] = all(
            (report[k] >= bar) if op == ">=" else (report[k] <= bar) for k, (op, bar) in BARS.items()
        )
        return report

    def on_train_end(self):
        if self.trainer.global_step < self.cfg.pretrain.max_steps:  # stopped early (requeue, trainer.max_steps):
            return  # a half-trained reader must never be cached under the full reader's key
        self.report = self.evaluate_reader()
        if self.trainer.is_global_zero:
            save_reader(self.cfg, self.model, self.tokenizer, self.report)

    def results(self) -> dict:
        return {"kind": "pretrain", "metrics": dict(self.report), "curves": {}}


def save_reader(cfg, model, tokenizer, report: dict) -> Path:
    """Write the reader into the cache atomically: a half-written reader is never picked up."""
    return reader_build(cfg).publish(lambda directory: save_model(model, tokenizer, directory), report)


def ensure_reader(cfg) -> Path:
    """This config's reader (`find_reader`), pretrained into the cache first when there is none yet."""
    return reader_build(cfg).ensure(lambda build: pretrain_reader(cfg))


def pretrain_reader(cfg) -> Path:
    """Pretrain this config's reader into the cache (its report included); the cache entry.

    A preemption notice during pretraining checkpoints it beside the entry (`<key>.partial`); the requeued job
    goes on from that step.
    """
    build = reader_build(cfg)
    resume = build.checkpoint_to_resume()
    print(f"lit_knowledge: pretraining the world's reader ({cfg.pretrain.max_steps} steps"
          f"{f', going on from step {resume[0]}' if resume else ''}); it is cached in {build.path}", file=sys.stderr)
    # The reader learns the world, whichever of its streams (knowledge or edits) the run then reads.
    cfg = OmegaConf.merge(cfg, {"data": {"source": "world"}})
    with torch.random.fork_rng(devices=[]):  # the caller's random state stays as it was (its loader draws seeds)
        module = PretrainReader(cfg)
    build.fit(module, cfg.pretrain.max_steps, cfg.trainer, "reader pretraining")
    build.clean()
    return build.path
