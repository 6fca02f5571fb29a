"""Batched greedy answering and language-model loss, shared by every method and the protocol."""

from __future__ import annotations

import torch
from tqdm.auto import tqdm

from lit_knowledge.data.prompts import IGNORE, collate, encode_example
from lit_knowledge.models.modes import evaluating


@torch.no_grad()
def generate_answers(model, tokenizer, prompts: list[str], max_new_tokens: int = 12, batch_size: int = 32,
                     progress: bool = False, desc: str = "answering") -> list[str]:
    """Greedy completion of each prompt, cut at end-of-sequence or a new line."""
    with evaluating(model):
        device = next(model.parameters()).device
        answers = []
        for i in tqdm(range(0, len(prompts), batch_size), desc=desc, disable=not progress, leave=False):
            enc = tokenizer(prompts[i : i + batch_size], return_tensors="pt", padding=True, add_special_tokens=False)
            enc = {k: v.to(device) for k, v in enc.items()}
            out = model.generate(**enc, max_new_tokens=max_new_tokens, do_sample=False,
                                 eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
            texts = tokenizer.batch_decode(out[:, enc["input_ids"].shape[1]:], skip_special_tokens=True)
            answers += [t.split("\n")[0].strip() for t in texts]
    return answers


@torch.no_grad()
def lm_loss(model, tokenizer, texts: list[str], max_length: int = 256, batch_size: int = 16) -> float | None:
    """Mean per-token negative log-likelihood of `texts` (general ability); None for no texts."""
    if not texts:
        return None
    with evaluating(model):
        device = next(model.parameters()).device
        total, count = 0.0, 0
        for i in range(0, len(texts), batch_size):
            batch = collate([encode_example(tokenizer, t, "", max_length) for t in texts[i : i + batch_size]],
                            tokenizer.pad_token_id)
            batch = {k: v.to(device) for k, v in batch.items()}
            logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits[:, :-1]
            labels = batch["labels"][:, 1:]
            nll = torch.nn.functional.cross_entropy(logits.float().transpose(1, 2), labels, ignore_index=IGNORE,
                                                    reduction="sum")
            total += nll.item()
            count += (labels != IGNORE).sum().item()
    return total / max(count, 1)


@torch.no_grad()
def teacher_forced_argmax(model, rows: list[dict], pad_id: int, batch_size: int = 32) -> list[list[int]]:
    """For each encoded row, the model's argmax prediction at every scored position (aligned with its labels)."""
    if not rows:
        return []
    out = []
    with evaluating(model):
        device = next(model.parameters()).device
        for start in range(0, len(rows), batch_size):
            chunk = rows[start:start + batch_size]
            batch = collate(chunk, pad_id)
            logits = model(input_ids=batch["input_ids"].to(device), attention_mask=batch["attention_mask"].to(device)).logits
            pred = logits[:, :-1].argmax(-1).cpu()  # position t predicts token t + 1
            labels = batch["labels"][:, 1:]
            for i in range(len(chunk)):
                out.append(pred[i][labels[i] != IGNORE].tolist())
    return out
