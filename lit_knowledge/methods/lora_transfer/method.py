"""`lora_transfer`: knowledge extracted from a larger model's weights into a smaller one through LoRA.

ParaKnowTransfer ("Seeking Neural Nuggets", arXiv 2310.11451) initialises the student's LoRA from the teacher's
weights (extraction.py), then fine-tunes the LoRA on the task. Its reported gains are small, and later work
found this kind of transfer unstable, so this module is built to measure it, arm against arm.

The task on the world: the student reader learnt only part of the background (`pretrain.background_share`),
the teacher learnt all of it. The people only the teacher knows are split in two (`method.train_share`): the
student is fine-tuned on the first part's facts (training wordings) and asked, closed book and in held-out
wordings, about

- `heldout_f1`: the other part's facts, which no text the student sees states: only transfer can teach them;
- `fitted_f1`: the fine-tuned facts (in other wordings): how fast the LoRA learns;
- `locality_f1`: facts the student knew before (the background it learnt): what fine-tuning keeps.

Step 0 (before any fine-tuning) is the floor: every init leaves the student unchanged. The teacher's own
closed-book F1 on the held-out facts is the ceiling.
"""

from __future__ import annotations

import random
import sys
from dataclasses import dataclass

import lightning as L
import torch
from omegaconf import OmegaConf

from lit_knowledge.data.datamodules import PretrainDataModule
from lit_knowledge.data.prompts import encode_example, qa_prompt
from lit_knowledge.data.world import World
from lit_knowledge.errors import UserError
from lit_knowledge.evaluation.metrics import qa_scores
from lit_knowledge.methods.components import load_model
from lit_knowledge.methods.lora_transfer.extraction import (
    TEACHER_ARMS,
    decoder_layers,
    lora_init,
    select_layers,
    sensitivity,
)
from lit_knowledge.methods.params import LoRATransferParams
from lit_knowledge.methods.schedules import warmup_constant
from lit_knowledge.models.generate import generate_answers, lm_loss
from lit_knowledge.models.lora import add_lora

CURVES = ("heldout_f1", "fitted_f1", "locality_f1")


@dataclass
class TransferTask:
    """The questions of one arm: what it is fine-tuned on, its seed examples, and the three evaluation sets."""

    train_qa: list[tuple[str, str]]  # fine-tuning: the fitted people's facts in training wordings
    seed_qa: list[tuple[str, str]]  # the sensitivity's seed examples, drawn from train_qa
    heldout: list[tuple[str, str]]  # held-out people, held-out wordings
    fitted: list[tuple[str, str]]  # fitted people, held-out wordings
    locality: list[tuple[str, str]]  # people the student learnt in pretraining, held-out wordings
    fitted_people: list[str]
    heldout_people: list[str]


def direct_questions(world: World, person, split: str) -> list[tuple[str, str]]:
    """The person's four facts asked directly, in the `split` wordings ('train' or 'probe')."""
    return [(q, a) for kind, q, a in world.questions(person, split, derived=False)
            if kind in ("efficacy", "paraphrase")]


def transfer_task(world: World, student_share: float, train_share: float, seed_examples: int, seed: int,
                  max_probes: int) -> TransferTask:
    """Split the people only the teacher knows into fitted and held-out ones (drawn with `seed`)."""
    learnt = world.learnt_background(student_share)
    unknown = world.background[len(learnt):]
    if len(unknown) < 2:
        raise UserError(f"pretrain.background_share={student_share} leaves {len(unknown)} background people the "
                        "student does not know; lower it (e.g. 0.5) so there is something to transfer")
    rng = random.Random(seed)
    unknown = rng.sample(unknown, len(unknown))
    n_fit = min(len(unknown) - 1, max(1, round(train_share * len(unknown))))
    fitted, heldout = unknown[:n_fit], unknown[n_fit:]
    train_qa = [qa for p in fitted for qa in direct_questions(world, p, "train")]

    def probes(people) -> list[tuple[str, str]]:
        asked = [qa for p in people for qa in direct_questions(world, p, "probe")]
        return rng.sample(asked, min(max_probes, len(asked)))

    return TransferTask(train_qa=train_qa, seed_qa=rng.sample(train_qa, min(seed_examples, len(train_qa))),
                        heldout=probes(heldout), fitted=probes(fitted), locality=probes(learnt),
                        fitted_people=[p.name for p in fitted], heldout_people=[p.name for p in heldout])


def load_teacher(cfg):
    """(teacher, tokenizer): `method.teacher`, the world's reader pretrained on `teacher_background_share`."""
    share = OmegaConf.merge(cfg, {"pretrain": {"background_share": cfg.method.teacher_background_share}})
    return load_model(cfg.method.teacher, share)


def lora_modules(layer):
    """(name, module) of every LoRA-wrapped linear layer inside one decoder layer."""
    return [(name, m) for name, m in layer.named_modules() if hasattr(m, "lora_A") and hasattr(m, "base_layer")]


@torch.no_grad()
def initialise_from_teacher(student, teacher, arm: str, seed_rows: list[dict], generator: torch.Generator) -> dict:
    """Set every LoRA adapter of `student` (a peft model) by `arm` and take its product out of the frozen weight,
    so the student's function is unchanged; return the teacher layers used and the adapter's starting size."""
    if arm == "standard":
        return {"teacher_layers": None, "adapter_to_weight_norm": 0.0}
    student_layers = decoder_layers(student)
    chosen, scores, teacher_layers = None, None, None
    if arm in TEACHER_ARMS:
        with torch.enable_grad():
            scores = sensitivity(teacher, seed_rows)
        teacher_layers = decoder_layers(teacher)
        if arm == "random_layers":
            chosen = sorted(torch.randperm(len(teacher_layers), generator=generator)[:len(student_layers)].tolist())
        else:
            chosen = select_layers(scores, len(teacher_layers), len(student_layers))
    ratios = []  # |B A| / |W| per matrix: how much of the student's weight the adapter starts with
    for j, layer in enumerate(student_layers):
        for name, module in lora_modules(layer):
            weight = module.base_layer.weight
            teacher_weight = teacher_scores = None
            if chosen is not None:
                teacher_weight = teacher_layers[chosen[j]].get_submodule(name).weight.detach()
                teacher_scores = scores[f"{chosen[j]}.{name}.weight"]
            b, a = lora_init(arm, teacher_weight, teacher_scores, weight.detach(), module.r["default"], generator)
            scale = module.scaling["default"]
            module.lora_B["default"].weight.copy_((b / scale).to(weight.dtype))
            module.lora_A["default"].weight.copy_(a.to(weight.dtype))
            ratios.append(float((b @ a).norm() / weight.norm()))
            weight.sub_((b @ a).to(weight.dtype))  # scale * (B / scale) @ A: the adapter's whole product
    return {"teacher_layers": chosen, "adapter_to_weight_norm": sum(ratios) / len(ratios)}


class LoRATransfer(L.LightningModule):
    Params = LoRATransferParams
    kind = "transfer"
    phase = "fine-tuning the transferred LoRA"

    def __init__(self, cfg, model=None, tokenizer=None):
        super().__init__()
        self.cfg, self.params = cfg, cfg.method
        p = self.params
        if model is None:
            model, tokenizer = load_model(cfg.model, cfg)
        self.tokenizer = tokenizer
        self.world = World(cfg.data.world)
        self.task = transfer_task(self.world, cfg.pretrain.background_share, p.train_share, p.seed_examples, p.seed,
                                  p.max_probes)
        self.max_length = cfg.data.max_length
        self.teacher_heldout_f1 = None
        teacher = None
        if p.init in TEACHER_ARMS:
            teacher, teacher_tokenizer = load_teacher(cfg)
            if teacher_tokenizer.get_vocab() != tokenizer.get_vocab():
                raise UserError("the teacher and the student have different tokenizers; method.teacher must share "
                                "the student's vocabulary (the same world and model.tiny.vocab_size, or one family)")
            self.teacher_heldout_f1 = self.ask(teacher, self.task.heldout)
        seed_rows = [encode_example(tokenizer, qa_prompt(q), a, self.max_length) for q, a in self.task.seed_qa]
        generator = torch.Generator().manual_seed(p.seed)
        with torch.random.fork_rng(devices=[]):  # peft's random A draws from the arm's seed
            torch.manual_seed(p.seed)
            self.model = add_lora(model, cfg.model.lora)
        self.choice = initialise_from_teacher(self.model, teacher, p.init, seed_rows, generator)
        del teacher
        self.evaluations: list[dict] = []  # one per evaluated step, kept in checkpoints
        self.train_tokens = 0  # the budget: tokens of the fine-tuning batches (padding excluded)

    @property
    def step_budget(self) -> int:
        return int(self.params.eval_steps[-1])

    # ------------------------------------------------------------------------------------ fine-tuning

    def datamodule(self):
        train_qa, tokenizer, max_length = self.task.train_qa, self.tokenizer, self.max_length

        def sample(rng):
            question, answer = rng.choice(train_qa)
            return encode_example(tokenizer, qa_prompt(question), answer, max_length)

        return PretrainDataModule(sample, self.params.batch_size, tokenizer.pad_token_id, self.params.seed,
                                  start=lambda: self.trainer.global_step)

    def training_step(self, batch, batch_idx):
        loss = self.model(**batch).loss
        self.train_tokens += int(batch["attention_mask"].sum())
        self.log("train/loss", loss, prog_bar=True, batch_size=batch["input_ids"].shape[0])
        return loss

    def configure_optimizers(self):
        p = self.params
        trainable = [w for w in self.model.parameters() if w.requires_grad]
        opt = torch.optim.AdamW(trainable, lr=p.lr, weight_decay=0.0)
        sched = torch.optim.lr_scheduler.LambdaLR(opt, warmup_constant(p.warmup_steps))
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}

    # ------------------------------------------------------------------------------------ evaluation

    def ask(self, model, pairs: list[tuple[str, str]]) -> float:
        """Closed-book F1 of `model` on (question, answer) pairs."""
        e = self.cfg.eval
        answers = generate_answers(model, self.tokenizer, [qa_prompt(q) for q, _ in pairs], e.max_new_tokens,
                                   e.batch_size)
        return qa_scores(answers, [[a] for _, a in pairs])["f1"]

    def evaluate(self, step: int) -> None:
        t = self.task
        scores = {"step": step, "heldout_f1": self.ask(self.model, t.heldout), "fitted_f1": self.ask(self.model, t.fitted),
                  "locality_f1": self.ask(self.model, t.locality)}
        self.evaluations.append(scores)
        print(f"lit_knowledge: step {step}: " + ", ".join(f"{k} {v:.3f}" for k, v in scores.items() if k != "step"),
              file=sys.stderr)

    def on_train_start(self):
        if not self.evaluations:
            self.evaluate(0)

    def on_train_batch_end(self, outputs, batch, batch_idx):
        step = self.trainer.global_step
        if step in self.params.eval_steps and all(e["step"] != step for e in self.evaluations):
            self.evaluate(step)

    def on_save_checkpoint(self, checkpoint):
        checkpoint["transfer_evaluations"] = self.evaluations
        checkpoint["transfer_train_tokens"] = self.train_tokens

    def on_load_checkpoint(self, checkpoint):
        self.evaluations = checkpoint.get("transfer_evaluations", [])
        self.train_tokens = checkpoint.get("transfer_train_tokens", 0)

    def results(self) -> dict:
        first, last = self.evaluations[0], self.evaluations[-1]
        metrics = {k: last[k] for k in CURVES}
        metrics.update({f"floor_{k}": first[k] for k in CURVES})
        metrics.update({f"{k}_gain": last[k] - first[k] for k in CURVES})
        metrics.update({
            "teacher_heldout_f1": self.teacher_heldout_f1,
            "lm_loss": lm_loss(self.model, self.tokenizer, self.world.heldout_texts(), self.max_length),
            "optimizer_steps": int(self.trainer.global_step) if self._trainer is not None else 0,
            "train_tokens": self.train_tokens,
            "train_questions": len(self.task.train_qa),
        })
        curves = {"step": [e["step"] for e in self.evaluations]}
        curves.update({k: [e[k] for e in self.evaluations] for k in CURVES})
        return {"kind": "transfer", "metrics": metrics, "curves": curves,
                "transfer": {"init": self.params.init, **self.choice, "fitted_people": self.task.fitted_people,
                             "heldout_people": self.task.heldout_people}}
