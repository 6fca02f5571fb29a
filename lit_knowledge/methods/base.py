"""What every method shares: the model, the stream walk, the protocol at each step boundary, and state.

A method is a LightningModule. For a knowledge stream, one `Trainer.fit` walks the whole stream
(see data/datamodules.py): the method trains on the batches of step k, and when the last batch of
step k has run, `finish_step(k)` lets it close the step (merge an adapter, grow a basis, ...) and the
protocol asks the probes. A method that learns without gradients (writes a memory, indexes a
document) does so in `training_step` and returns None.

Methods override a few hooks:
- `training_examples(step) -> datasets.Dataset` — what to train on for a stream step (encoded);
- `epochs_per_step` — how many passes over those examples per step;
- `keeps_document_order` — train a step's examples in the stream's order (a memory written in order);
- `answer(probes)`, `predict_tokens(pairs)`, `lm_loss(texts)` — the contract with the protocols
  (evaluation/contract.py): how the method answers, from its weights by default (`scoring_model()` says
  which module the last two run);
- `finish_step(k)` — what happens at the end of a step, before the probes;
- `after_evaluation(k)` — what happens after the probes (e.g. reset the student);
- `method_state()` / `load_method_state(d)` — non-weight state, saved in every checkpoint;
- `extra_storage_bytes()` — what the method keeps beside the weights.
"""

from __future__ import annotations

import time

import lightning as L
import torch
from datasets import Dataset

from lit_knowledge.config import MethodParams, to_dict
from lit_knowledge.data.prompts import encode_example, encode_scored_target, qa_prompt, scored_tokens
from lit_knowledge.data.sources import SOURCES
from lit_knowledge.distributed import rank_and_world
from lit_knowledge.errors import UserError
from lit_knowledge.evaluation.contract import TokenPrediction
from lit_knowledge.evaluation.protocol import StreamProtocol
from lit_knowledge.methods.components import load_model
from lit_knowledge.models.generate import generate_answers, lm_loss, teacher_forced_argmax


def load_stream(cfg):
    """The configured data source's stream (importing the readers registers the sources)."""
    import lit_knowledge.data.edit_readers  # noqa: F401
    import lit_knowledge.data.readers  # noqa: F401
    import lit_knowledge.data.world  # noqa: F401

    return SOURCES.get(cfg.data.source)(cfg.data)


def encode_all(tokenizer, pairs: list[tuple[str, str]], max_length: int, **extra) -> Dataset:
    """A datasets.Dataset of encoded (prompt, target) pairs; extra columns are given per pair as lists."""
    rows = [encode_example(tokenizer, p, t, max_length) for p, t in pairs]
    for key, values in extra.items():
        for row, value in zip(rows, values):
            row[key] = value
    return Dataset.from_list(rows) if rows else Dataset.from_dict({"input_ids": [], "labels": []})


def chat_tokenizer(cfg, tokenizer):
    """The tokenizer whose chat template formats questions (`model.chat_template`), or None for plain prompts."""
    if not cfg.model.chat_template:
        return None
    if not getattr(tokenizer, "chat_template", None):
        raise UserError(f"model.chat_template=true but the tokenizer of '{cfg.model.name}' has no chat template: "
                        "set model.chat_template=false (plain 'Question: ... Answer:' prompts)")
    return tokenizer


class KnowledgeMethod(L.LightningModule):
    Params = MethodParams
    kind = "qa"
    phase = "learning the stream"  # the progress bar's name
    epochs_per_step = 1
    keeps_document_order = False  # True: a step's examples are trained in the stream's order, never shuffled
    shards_batches = True  # under DDP each process trains its share of a batch; False: every process all of it

    def __init__(self, cfg, model=None, tokenizer=None, stream=None):
        super().__init__()
        self.cfg = cfg
        self.params = cfg.method
        # before the model: a data mistake must not wait minutes for a model load (a subclass that builds a part
        # first loads the stream itself and hands it in)
        self.stream = stream if stream is not None else load_stream(cfg)
        if model is None:
            model, tokenizer = load_model(cfg.model, cfg)
        self.model, self.tokenizer = model, tokenizer
        self.chat = chat_tokenizer(cfg, tokenizer)
        self.model.train()  # from_pretrained returns a model in eval mode
        self.protocol = self.make_protocol()
        self.history: list[dict] = []
        self.step_times: list[float] = []
        self.eval_times: list[float] = []  # seconds of each step's evaluation (probes, locality, LM loss)
        self.batches_done = 0  # position in the stream's batch plan (a resumed run skips these)
        self.plan_batches = 0  # the plan's length, known once training starts (StreamWalk)
        # The budget the method spent: optimiser steps and the tokens of the batches it trained on (what the
        # trained model read; a teacher's or a probe's forward passes are not counted).
        self.optimizer_steps = 0
        self.train_tokens = 0
        self.process_tokens = 0
        self.trained_batches = 0  # batches whose training step returned a loss
        self._step_started: float | None = None
        self._fit_started = time.perf_counter()
        self._elapsed_before = 0.0  # wall time of earlier runs of this run (restored on resume)

    # ------------------------------------------------------------------------------ hooks to override

    def make_protocol(self):
        """The evaluation protocol for this method's stream (edit methods return an edit protocol)."""
        return StreamProtocol(self.stream, self.cfg.eval, self.cfg.run.seed)

    def stream_units(self) -> list:
        """What the stream walk iterates over: the knowledge stream's steps (edit methods: the edits)."""
        return self.stream.steps

    def training_examples(self, step) -> Dataset:
        return encode_all(self.tokenizer, [], self.cfg.data.max_length)

    def answer(self, probes) -> list[str]:
        return self.generate([self.qa_prompt(p.question) for p in probes])

    def finish_step(self, k: int) -> None:
        pass

    def after_evaluation(self, k: int) -> None:
        pass

    def method_state(self) -> dict:
        return {}

    def load_method_state(self, state: dict) -> None:
        pass

    def extra_storage_bytes(self) -> int:
        return 0

    # ------------------------------------------------------------------------------ shared tools

    def qa_prompt(self, question: str, context: str | None = None) -> str:
        """The prompt asking `question` (after `context`), in the model's format (plain or chat)."""
        return qa_prompt(question, context, self.chat)

    def generate(self, prompts: list[str]) -> list[str]:
        return generate_answers(self.model, self.tokenizer, prompts, self.cfg.eval.max_new_tokens,
                                self.cfg.eval.batch_size)  # inside the walk: the phase's bar counts the steps

    def scoring_model(self) -> torch.nn.Module:
        """What `lm_loss` and `predict_tokens` run: a module taking (input_ids, attention_mask) and returning
        logits; the method's model by default (a memory method returns its model reading the memory)."""
        return self.model

    def lm_loss(self, texts: list[str]) -> float | None:
        return lm_loss(self.scoring_model(), self.tokenizer, texts, self.cfg.data.max_length,
                       self.cfg.eval.batch_size)

    def predict_tokens(self, pairs: list[tuple[str, str]]) -> list[TokenPrediction]:
        """The model's teacher-forced argmax at the tokens of each (prompt, target) pair (see the contract)."""
        rows = [encode_scored_target(self.tokenizer, p, t, self.cfg.data.max_length) for p, t in pairs]
        predicted = teacher_forced_argmax(self.scoring_model(), rows, self.tokenizer.pad_token_id,
                                          self.cfg.eval.batch_size)
        return [TokenPrediction(pred, scored_tokens(row), self.tokenizer.decode(pred).strip())
                for row, pred in zip(rows, predicted)]

    def forward(self, **batch):
        return self.model(**batch)

    def lm_training_step(self, batch) -> torch.Tensor | None:
        """Next-token loss on the batch's scored tokens (the fine-tuning baselines' whole step)."""
        if "input_ids" not in batch:
            return None
        out = self.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], labels=batch["labels"])
        self.log("train/loss", out.loss, prog_bar=True, batch_size=batch["input_ids"].shape[0])
        return out.loss * batch["shard_weight"] if "shard_weight" in batch else out.loss  # DDP: see datamodules

    @property
    def batch_order_seed(self) -> int:
        """Seed of the shuffled batch order: run.seed, unless the method has a seed of its own for it."""
        return self.cfg.run.seed

    def datamodule(self):
        from lit_knowledge.data.datamodules import KnowledgeStreamDataModule

        return KnowledgeStreamDataModule(self.stream, self, self.cfg.data.batch_size, self.batch_order_seed,
                                         self.cfg.data.num_workers)

    # ------------------------------------------------------------------------------ the stream walk

    def on_train_batch_start(self, batch, batch_idx):
        if self._step_started is None:
            self._step_started = time.perf_counter()

    def end_of_batch(self, batch, trained: bool = True) -> None:
        """Called after every training batch (by `StreamWalk`, before any checkpoint is written); `trained`: the
        training step returned a loss (Lightning counts a step for a batch that returned none, so it is not used)."""
        self.batches_done += 1
        self.count_budget(batch, trained)
        if not batch["last_in_step"]:
            return
        k = batch["stream_step"]
        self.finish_step(k)
        self.step_times.append(time.perf_counter() - (self._step_started or time.perf_counter()))
        self._step_started = None
        started = time.perf_counter()
        row = self.protocol.evaluate(self, k)
        self.eval_times.append(time.perf_counter() - started)
        self.history.append(row)
        scalars = {f"stream/{key}": v for key, v in row.items() if isinstance(v, float)}
        self.log_dict(scalars, on_step=True, on_epoch=False, batch_size=1)
        self.after_evaluation(k)

    def callbacks(self) -> list:
        return [StreamWalk()]

    @property
    def batches_left(self) -> int:
        """Batches of the stream's plan not trained yet (0 when the walk went through)."""
        return max(0, self.plan_batches - self.batches_done)

    def wall_time(self) -> float:
        return self._elapsed_before + time.perf_counter() - self._fit_started

    def results(self) -> dict:
        """What results.json holds: the protocol's summary of the walk, its kind, and the budget spent."""
        out = self.protocol.summary(self.history, self.step_times, self.extra_storage_bytes(), self.wall_time())
        out["kind"] = self.protocol.kind
        self.add_budget(out)
        return out

    def count_budget(self, batch, trained: bool) -> None:
        manual = not self.automatic_optimization  # the method steps its optimiser itself: the trainer counts them
        if (trained or manual) and "attention_mask" in batch:  # the whole batch, across every process
            self.train_tokens += int(batch.get("batch_tokens", batch["attention_mask"].sum()))
            self.process_tokens += int(batch["attention_mask"].sum())  # this process's share of it
        if manual:
            self.optimizer_steps = int(self._trainer.global_step) if self._trainer is not None else 0
            return
        self.trained_batches += int(trained)
        accumulate = self._trainer.accumulate_grad_batches if self._trainer is not None else 1
        self.optimizer_steps = -(-self.trained_batches // accumulate)

    def add_budget(self, results: dict) -> None:
        """The arm's budget beside its scores: optimiser steps and trained tokens (wall time is there already),
        and how the wall time divides: updating on the stream, evaluating, and the rest (start, model, data)."""
        if results.get("metrics"):
            results["metrics"]["update_time_total_s"] = sum(self.step_times)
            results["metrics"]["eval_time_total_s"] = sum(self.eval_times)
            results["metrics"]["optimizer_steps"] = self.optimizer_steps
            results["metrics"]["train_tokens"] = self.train_tokens
            processes = rank_and_world()[1]
            if processes > 1:  # under DDP: how the batches were split
                results["metrics"].update({"processes": processes, "train_tokens_per_process": self.process_tokens})

    # ------------------------------------------------------------------------------ checkpointed state

    def on_save_checkpoint(self, checkpoint):
        checkpoint["lit_knowledge"] = {
            "config": to_dict(self.cfg),  # a checkpoint says what made it, even away from its run directory
            "history": self.history,
            "step_times": self.step_times,
            "eval_times": self.eval_times,
            "batches_done": self.batches_done,
            "budget": {"optimizer_steps": self.optimizer_steps, "train_tokens": self.train_tokens,
                       "trained_batches": self.trained_batches, "process_tokens": self.process_tokens},
            "wall_time_s": self.wall_time(),
            "method_state": self.method_state(),
        }

    def on_load_checkpoint(self, checkpoint):
        state = checkpoint.get("lit_knowledge", {})
        self.history = state.get("history", [])
        self.step_times = state.get("step_times", [])
        self.eval_times = state.get("eval_times", [])
        self.batches_done = state.get("batches_done", 0)
        budget = state.get("budget", {})
        self.optimizer_steps = budget.get("optimizer_steps", 0)
        self.train_tokens = budget.get("train_tokens", 0)
        self.trained_batches = budget.get("trained_batches", 0)
        self.process_tokens = budget.get("process_tokens", 0)
        self._elapsed_before = state.get("wall_time_s", 0.0)
        self._fit_started = time.perf_counter()
        self.load_method_state(state.get("method_state", {}))

    def configure_optimizers(self):
        params = [p for p in self.model.parameters() if p.requires_grad]
        if not params:
            return None
        lr = getattr(self.params, "lr", 1e-4)
        return torch.optim.AdamW(params, lr=lr, weight_decay=getattr(self.params, "weight_decay", 0.0))


class StreamWalk(L.Callback):
    """Finishes each batch of a stream walk (stream position, step end, probes), and ends the fit with the plan.

    It is a callback, and listed before the checkpoint callback, so that a checkpoint written after a
    batch already holds that batch's consequences (the position, the step's probes, a merged adapter).
    The trainer's epochs are unlimited: the walk stops it after the plan's last batch. A run that
    trainer.max_steps cut short and that is resumed with a larger budget goes on in a new epoch, whose
    loader starts at the restored stream position.
    """

    def on_train_start(self, trainer, pl_module):
        pl_module.plan_batches = trainer.num_training_batches  # the loader's length: the whole plan
        self._stop_after_plan(trainer, pl_module)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        # Lightning hands on what the training step returned: {"loss": ...}, or an empty dict / None for no loss.
        trained = outputs is not None and not (isinstance(outputs, dict) and not outputs)
        pl_module.end_of_batch(batch, trained=trained)
        self._stop_after_plan(trainer, pl_module)

    @staticmethod
    def _stop_after_plan(trainer, pl_module):
        if not pl_module.batches_left:
            trainer.should_stop = True
