"""SELF-PARAM (arXiv 2410.00487): put a document into the weights by distilling a teacher that sees it.

- Teacher: the model as it was before this step, with the document in its prompt. Frozen.
- Student: the same model without the document; trained (LoRA by default, full fine-tuning selectable).
  With LoRA the teacher is the student with its adapter disabled, so no second copy of the model is
  held. With `teacher: cached` the teacher's distributions are computed once at the start of each
  stream step, which also serves full fine-tuning without a copy.
- Target set S: question-answer pairs about the document (`StreamStep.train_qa`: several wordings per
  fact, disjoint from the probes' wordings), plus unrelated sentences (`KnowledgeStream.unrelated_texts`)
  so that the student keeps matching the teacher where the document says nothing.
  Beyond the paper (`namesake_contrasts`): the QA set's questions asked about namesakes of the document's
  subject, where the student keeps matching the closed-book teacher (new facts stay with the full name).
- Loss: token-level KL(teacher || student) over the full vocabulary on the target tokens,
      KL( P_teacher(a_i | context, q, a_<i) || P_student(a_i | q, a_<i) ),
  at temperature T (scaled by T^2). Never the argmax next token: that is the FT(S) baseline (`ft_qa`).

Settings (configs/selfparam/): `single` (one document per step, the student reset after each),
`batch` (many documents injected at once), `sequential` (a stream of steps, LoRA merged after each).
"""

from __future__ import annotations

from contextlib import contextmanager

import torch
import torch.nn.functional as F
from datasets import Dataset

from lit_knowledge.data.datamodules import collate_prompt
from lit_knowledge.data.prompts import IGNORE, encode_example, token_ids
from lit_knowledge.errors import UserError
from lit_knowledge.methods.base import encode_all
from lit_knowledge.methods.baselines import FineTune
from lit_knowledge.methods.params import SelfParamParams
from lit_knowledge.models.modes import evaluating


def kl_per_token(teacher_logits: torch.Tensor, student_logits: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """KL(teacher || student) at each target position, over the full vocabulary: shape (positions,)."""
    t = F.log_softmax(teacher_logits.float() / temperature, dim=-1)
    s = F.log_softmax(student_logits.float() / temperature, dim=-1)
    return (t.exp() * (t - s)).sum(-1) * temperature**2


def per_example_mean(values: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean over the batch's examples of each example's mean over its own scored tokens.

    `values` holds one entry per scored token, in the order `target_logits` gives them (row by row).
    """
    counts = (labels[:, 1:] != IGNORE).sum(1)
    counts = counts[counts > 0]
    example = torch.repeat_interleave(torch.arange(len(counts), device=values.device), counts.to(values.device))
    sums = torch.zeros(len(counts), device=values.device, dtype=values.dtype).index_add(0, example, values)
    return (sums / counts.to(values.dtype)).mean()


def target_logits(model, input_ids, attention_mask, labels) -> torch.Tensor:
    """The logits that predict each scored token (labels != IGNORE), in order: shape (positions, vocab)."""
    logits = model(input_ids=input_ids, attention_mask=attention_mask).logits[:, :-1]
    return logits[labels[:, 1:] != IGNORE]


@contextmanager
def adapter_off(model):
    """The model without its LoRA adapter (the teacher): peft's `disable_adapter` without the survey of every
    layer's status it makes on each call, which cost a step more than the switch itself."""
    model.base_model.disable_adapter_layers()
    try:
        yield
    finally:
        model.base_model.enable_adapter_layers()


class SelfParam(FineTune):
    Params = SelfParamParams

    def __init__(self, cfg, model=None, tokenizer=None):
        super().__init__(cfg, model, tokenizer)
        self._teacher_cache: dict[int, torch.Tensor] = {}
        self._cached_step: int | None = None

    # ------------------------------------------------------------------------------ the target set S

    def target_set(self, step) -> list[tuple[str, str, str]]:
        """(document, question, answer) for the QA pairs; (document or "", text, "") for the unrelated texts."""
        if step.documents and not step.train_qa:
            raise UserError(f"data source '{self.cfg.data.source}' gives no QA set for its documents; "
                            "selfparam needs one (data.source=world, or data.qa_share>0 for real documents)")
        out, contrasts = [], self.namesake_contrasts(step)
        for d, unrelated in zip(step.documents, self.unrelated_texts(step)):
            out += [(d.text, q, a) for q, a in step.train_qa.get(d.id, [])]
            out += [("", q, a) for q, a in contrasts.get(d.id, [])]
            context = d.text if self.params.unrelated_teacher == "document" else ""
            out += [(context, text, "") for text in unrelated]
        return out

    def training_examples(self, step):
        """Student rows (question alone) with the teacher's rows beside them (the document, then the question).

        Both score exactly the same target tokens, last in each row: the answer (and end of sequence) for a
        QA pair, the whole text for an unrelated text, which the teacher reads after its context.
        """
        rows, max_length = [], self.cfg.data.max_length
        for i, (context, q, a) in enumerate(self.target_set(step)):
            if a:
                student = encode_example(self.tokenizer, self.qa_prompt(q), a, max_length)
                teacher = encode_example(self.tokenizer, self.qa_prompt(q, context or None), a, max_length)
                teacher_ids, teacher_labels = teacher["input_ids"], teacher["labels"]
            else:
                student = encode_example(self.tokenizer, q, "", max_length)
                ctx = token_ids(self.tokenizer, context + "\n\n") if context else []
                ctx = ctx[max(0, len(ctx) - (max_length - len(student["input_ids"]))):]
                teacher_ids = ctx + student["input_ids"]
                # The student's first token has no prediction (nothing precedes it); in the teacher it
                # would, so it is not scored there either.
                teacher_labels = [IGNORE] * (len(ctx) + 1) + student["labels"][1:]
            rows.append({**student, "teacher_input_ids": teacher_ids, "teacher_labels": teacher_labels,
                         "example_index": i})
        return Dataset.from_list(rows) if rows else encode_all(self.tokenizer, [], max_length)

    # ------------------------------------------------------------------------------ distillation

    def teacher_logits(self, batch) -> torch.Tensor:
        if self.params.teacher == "cached":
            return torch.cat([self._teacher_cache[i] for i in batch["example_index"]]).to(self.device)
        with torch.no_grad(), adapter_off(self.model):
            return target_logits(self.model, batch["teacher_input_ids"], batch["teacher_attention_mask"],
                                 batch["teacher_labels"])

    @torch.no_grad()
    def cache_teacher(self, k: int) -> None:
        """Teacher distributions of every target token of step k, from the model as it is before the step."""
        self._teacher_cache = {}
        examples = self.trainer.datamodule.examples(k)
        with evaluating(self.model):
            for start in range(0, len(examples), self.cfg.eval.batch_size):
                rows = [examples[i] for i in range(start, min(len(examples), start + self.cfg.eval.batch_size))]
                teacher = {k: v.to(self.device)
                           for k, v in collate_prompt(rows, "teacher", self.tokenizer.pad_token_id).items()}
                logits = self.model(input_ids=teacher["input_ids"], attention_mask=teacher["attention_mask"]).logits[:, :-1]
                for j, r in enumerate(rows):
                    mask = teacher["labels"][j, 1:] != IGNORE
                    self._teacher_cache[r["example_index"]] = logits[j][mask].cpu()
        self._cached_step = k

    def training_step(self, batch, batch_idx):
        if "input_ids" not in batch:
            return None
        if self.params.teacher == "cached" and self._cached_step != batch["stream_step"]:
            self.cache_teacher(batch["stream_step"])
        teacher = self.teacher_logits(batch)
        student = target_logits(self.model, batch["input_ids"], batch["attention_mask"], batch["labels"])
        kl = kl_per_token(teacher, student, self.params.temperature)
        loss = kl.mean() if self.params.kl_mean == "token" else per_example_mean(kl, batch["labels"])
        n = batch["input_ids"].shape[0]
        self.log("train/loss", loss, prog_bar=True, batch_size=n)
        self.log("train/kl_per_token", kl.detach().mean(), batch_size=n)
        if "shard_weight" in batch and self.params.kl_mean == "token":  # DDP: this rank's share of the token mean
            loss = loss * batch["shard_weight"]
        return loss
