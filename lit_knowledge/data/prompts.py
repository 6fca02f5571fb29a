"""Prompt formats, written once: every method and the evaluation protocol build prompts here.

closed-book:  "Question: <question>\nAnswer:"              -> " <answer></s>"
in-context:   "<context>\n\nQuestion: <question>\nAnswer:"  -> " <answer></s>"
The answer is followed by the tokenizer's end-of-sequence token; generation stops there.

Instruct models (`model.chat_template=true`) get the same question through their tokenizer's chat template
instead: a system turn asking for a short answer, a user turn holding the context (if any) and the question,
then the assistant's turn, which the answer fills ("<assistant header>\n" -> "<answer><end of turn>").
"""

from __future__ import annotations

import torch

IGNORE = -100


CHAT_INSTRUCTION = "Answer the question with a short phrase. If a text is given, take the answer from it."


def qa_prompt(question: str, context: str | None = None, chat=None) -> str:
    """The prompt that asks `question` (after `context`); `chat` is a tokenizer whose chat template to use."""
    if chat is not None:
        user = f"{context}\n\n{question}" if context else question
        messages = [{"role": "system", "content": CHAT_INSTRUCTION}, {"role": "user", "content": user}]
        return chat.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    prompt = f"Question: {question}\nAnswer:"
    return f"{context}\n\n{prompt}" if context else prompt


def answer_separator(prompt: str) -> str:
    """What goes between a prompt and its answer: a space, unless the prompt ends a line (chat templates)."""
    return "" if prompt.endswith(("\n", " ")) else " "


def answered_turns(qa_pairs) -> str:
    """Questions with their answers as plain text, one prompt-format turn per line (text a model already knows)."""
    return "\n".join(f"{qa_prompt(q)} {a}" for q, a in qa_pairs)


def token_ids(tokenizer, text: str) -> list[int]:
    """`tokenizer(text, add_special_tokens=False)["input_ids"]`, straight from the Rust tokenizer when there is
    one: the Python wrapper costs more than the tokenizing itself (a third of the reader's batch drawing)."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        return tokenizer(text, add_special_tokens=False)["input_ids"]
    return backend.encode(text, add_special_tokens=False).ids


def encode_example(tokenizer, prompt: str, target: str, max_length: int) -> dict:
    """Token ids of prompt + target (+ eos when target is an answer) and labels that score only the target.

    When `target` is empty the prompt is plain text and every token is scored (language modelling).
    Over-long examples lose tokens from the left of the prompt, never from the target.
    """
    prompt_ids = token_ids(tokenizer, prompt)
    if target:
        target_ids = token_ids(tokenizer, answer_separator(prompt) + target)
        target_ids += [tokenizer.eos_token_id]
        prompt_ids = prompt_ids[-max(1, max_length - len(target_ids)) :]
        ids = prompt_ids + target_ids
        labels = [IGNORE] * len(prompt_ids) + target_ids
    else:
        ids = (prompt_ids + [tokenizer.eos_token_id])[:max_length]
        labels = list(ids)
    return {"input_ids": ids[-max_length:], "labels": labels[-max_length:]}


def encode_scored_target(tokenizer, prompt: str, target: str, max_length: int = 256) -> dict:
    """Token ids of `prompt` followed by " " + target; labels score the target's tokens only (no end of sequence).

    Over-long examples lose tokens from the left of the prompt, never from the target.
    """
    prompt_ids = token_ids(tokenizer, prompt)
    target_ids = token_ids(tokenizer, " " + target.strip())
    if not target_ids:
        raise ValueError(f"target {target!r} has no tokens")
    prompt_ids = prompt_ids[-max(1, max_length - len(target_ids)):]
    return {"input_ids": prompt_ids + target_ids, "labels": [IGNORE] * len(prompt_ids) + target_ids}


def scored_tokens(row: dict) -> list[int]:
    """The token ids an encoded row scores, in order (the first token is never predicted: nothing precedes it)."""
    return [t for t in row["labels"][1:] if t != IGNORE]


def encode_dialogue(tokenizer, context: str | None, qa_pairs: list[tuple[str, str]], max_length: int,
                    score_prompts: bool = False) -> dict:
    """Several question/answer turns after one (optional) context, every answer scored.

    The first turn has exactly the evaluation prompt's form (`qa_prompt`); later turns follow the
    previous answer's end-of-sequence token. Packing several answers into one sequence gives the
    reader's pretraining several supervised answers for the price of reading the context once.
    """
    ids, labels = [], []
    for i, (question, answer) in enumerate(qa_pairs):
        prompt = qa_prompt(question, context) if i == 0 else "\n" + qa_prompt(question)
        prompt_ids = token_ids(tokenizer, prompt)
        answer_ids = token_ids(tokenizer, answer_separator(prompt) + answer)
        answer_ids += [tokenizer.eos_token_id]
        if len(ids) + len(prompt_ids) + len(answer_ids) > max_length:
            break
        ids += prompt_ids + answer_ids
        labels += (prompt_ids if score_prompts else [IGNORE] * len(prompt_ids)) + answer_ids
    if not ids:  # even the first turn is too long: fall back to a left-cut single turn
        return encode_example(tokenizer, qa_prompt(qa_pairs[0][0], context), qa_pairs[0][1], max_length)
    return {"input_ids": ids, "labels": labels}


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
