"""Metrics of the evaluation protocol: pure functions over strings, lists and tensors.

QA streams (closed-book question answering):
    `qa_scores(predictions, answers)` gives SQuAD exact match and token F1, in [0, 1], computed
    with torchmetrics' SQuAD metric item by item; the aggregate is the mean of the per-item scores.

Edit streams (knowledge editing, EasyEdit-style "token accuracy"):
    `token_match(pred_token_ids, target_token_ids)` is the share of target tokens that the model's
    teacher-forced argmax predicts. One score per probe:
      - reliability:    token_match(argmax on the edit prompt, tokens of target_new)
      - generalization: token_match(argmax on a paraphrase, tokens of target_new)
      - locality:       token_match(post-edit argmax, pre-edit argmax) on an unrelated prompt
                        (1.0 = the edit left the prompt's prediction unchanged); or against the
                        locality answer's tokens when that is the chosen reading
      - portability:    token_match(argmax on a multi-hop question, tokens of its answer)
    `edit_scores(...)` combines the per-item lists into the four means.
    `completion_match(generated, target)` is the generation-based alternative (the free-running
    completion starts with the target, after SQuAD normalisation).

The model-facing code (running the model, teacher forcing, decoding) lives elsewhere.
"""

from __future__ import annotations

import re
import string
from collections.abc import Iterable, Sequence

import torch
from torchmetrics.functional.text import squad

_PUNCTUATION = set(string.punctuation)
_ARTICLES = re.compile(r"\b(a|an|the)\b")


def normalize_answer(s: str) -> str:
    """SQuAD normalisation: lower case, drop punctuation, drop the articles a/an/the, collapse whitespace."""
    s = s.lower()
    s = "".join(ch for ch in s if ch not in _PUNCTUATION)
    s = _ARTICLES.sub(" ", s)
    return " ".join(s.split())


def mean(xs: Iterable[float | None]) -> float | None:
    """Mean of the values that are not None; None when there are none."""
    values = [float(x) for x in xs if x is not None]
    return sum(values) / len(values) if values else None


# --------------------------------------------------------------------------------------------- QA


def _squad_item(prediction: str, answers: Sequence[str]) -> tuple[float, float]:
    """(EM, F1) in [0, 1] of one prediction against its accepted answers (the best answer counts)."""
    result = squad(
        [{"id": "0", "prediction_text": prediction}],
        [{"id": "0", "answers": {"text": list(answers), "answer_start": [0] * len(answers)}}],
    )
    return float(result["exact_match"]) / 100.0, float(result["f1"]) / 100.0


def qa_scores(predictions: list[str], answers: list[list[str]]) -> dict:
    """SQuAD exact match and token F1 of `predictions` against lists of accepted `answers`.

    Returns {"em", "f1", "n", "per_item"}: em and f1 are means in [0, 1] (the mean of the per-item
    scores, so they always agree), n the number of items, per_item a list of (em, f1) tuples.
    Each item takes the best score over its answers. An item with no accepted answer is an
    unanswerable question: only an empty prediction is right. A single string in place of an
    answer list counts as a one-element list. Empty input gives em = f1 = 0.0 with n = 0 (read n
    before trusting the means).
    """
    if len(predictions) != len(answers):
        raise ValueError(f"{len(predictions)} predictions but {len(answers)} answer lists")
    per_item = []
    for prediction, accepted in zip(predictions, answers):
        if isinstance(accepted, str):
            accepted = [accepted]
        per_item.append(_squad_item(prediction or "", list(accepted) or [""]))
    n = len(per_item)
    em = sum(e for e, _ in per_item) / n if n else 0.0
    f1 = sum(f for _, f in per_item) / n if n else 0.0
    return {"em": em, "f1": f1, "n": n, "per_item": per_item}


# ------------------------------------------------------------------------------------------- edits


def _as_long_tensor(x) -> torch.Tensor:
    t = x.detach().cpu() if isinstance(x, torch.Tensor) else torch.as_tensor(list(x))
    return t.reshape(-1).long()


def token_match(pred_token_ids, target_token_ids, ignore_index: int | None = -100) -> float:
    """Share of target tokens equal to the predicted token at the same position, in [0, 1].

    `pred_token_ids` are the model's argmax predictions under teacher forcing, already aligned
    with `target_token_ids` (same length; lists or tensors). Positions whose target is
    `ignore_index` (the usual label padding, -100) are not counted.
    """
    pred = _as_long_tensor(pred_token_ids)
    target = _as_long_tensor(target_token_ids)
    if pred.shape != target.shape:
        raise ValueError(f"predictions have {pred.numel()} tokens but targets have {target.numel()}")
    keep = torch.ones_like(target, dtype=torch.bool) if ignore_index is None else target != ignore_index
    if not bool(keep.any()):
        raise ValueError("token_match needs at least one target token")
    return float((pred[keep] == target[keep]).float().mean())


def completion_match(generated: str, target: str) -> float:
    """1.0 when the generated completion starts with the target (word by word, after SQuAD normalisation)."""
    gen_words = normalize_answer(generated).split()
    target_words = normalize_answer(target).split()
    return float(gen_words[: len(target_words)] == target_words)


def _item_score(item) -> float | None:
    """One edit's score: a number, None (not measured), or a list (e.g. one per paraphrase) averaged."""
    if item is None:
        return None
    if isinstance(item, (list, tuple)):
        return mean(item)
    return float(item)


def edit_mean(items: Sequence) -> float | None:
    """The mean over edits of one metric, every edit weighing the same (see `edit_scores`)."""
    return mean(_item_score(item) for item in items)


def edit_scores(
    reliability: Sequence,
    generalization: Sequence = (),
    locality: Sequence = (),
    portability: Sequence = (),
) -> dict:
    """Means of per-edit scores for the four edit metrics.

    Each argument holds one entry per edit: a score in [0, 1] (e.g. from `token_match`), None when
    the edit has no such probe, or a list of scores (one per paraphrase / locality prompt /
    portability question) that is averaged first, so every edit weighs the same. A metric with no
    score at all is None. Also returns n_edits (the length of `reliability`).
    """
    out = {"n_edits": len(reliability)}
    for name, items in (
        ("reliability", reliability),
        ("generalization", generalization),
        ("locality", locality),
        ("portability", portability),
    ):
        out[name] = edit_mean(items)
    return out
