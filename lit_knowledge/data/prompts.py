"""Prompt formats, written once: every method and the evaluation protocol build prompts here.

closed-book:  "q : <question> a :"                 -> " <answer></s>"
in-context:   "<context> q : <question> a :"       -> " <answer></s>"
The answer is followed by the tokenizer's end-of-sequence token; generation stops there.
"""

from __future__ import annotations

import torch

IGNORE = -100


def qa_prompt(question: str, context: str | None = None) -> str:
    prompt = f"q : {question} a :"
    return f"{context} {prompt}" if context else prompt


def encode_example(tokenizer, prompt: str, target: str, max_length: int) -> dict:
    """Token ids of prompt + target (+ eos when target is an answer) and labels that score only the target.

    When `target` is empty the prompt is plain text and every token is scored (language modelling).
    Over-long examples lose tokens from the left of the prompt, never from the target.
    """
    prompt_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    if target:
        target_ids = tokenizer(" " + target, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
        prompt_ids = prompt_ids[-max(1, max_length - len(target_ids)) :]
        ids = prompt_ids + target_ids
        labels = [IGNORE] * len(prompt_ids) + target_ids
    else:
        ids = (prompt_ids + [tokenizer.eos_token_id])[:max_length]
        labels = list(ids)
    return {"input_ids": ids[-max_length:], "labels": labels[-max_length:]}


def collate(examples: list[dict], pad_id: int) -> dict:
    """Right-pad a list of encoded examples into a training batch."""
    width = max(len(e["input_ids"]) for e in examples)
    ids = torch.full((len(examples), width), pad_id, dtype=torch.long)
    labels = torch.full((len(examples), width), IGNORE, dtype=torch.long)
    mask = torch.zeros((len(examples), width), dtype=torch.long)
    for i, e in enumerate(examples):
        n = len(e["input_ids"])
        ids[i, :n] = torch.tensor(e["input_ids"])
        labels[i, :n] = torch.tensor(e["labels"])
        mask[i, :n] = 1
    return {"input_ids": ids, "labels": labels, "attention_mask": mask}
