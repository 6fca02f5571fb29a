"""The sequential-editing protocol, shared by every editor (`oedit`, `ft_l`, `alphaedit`).

T edits are applied one at a time. At checkpoints along the stream (after the edit counts in
`eval_at`, by default 1, 2, 5, 10, 20, 50, ... and always the last) *every edit so far* is asked of the
current model, teacher-forced, EasyEdit-style (`metrics.token_match`):

- reliability:    argmax on the edit prompt against the tokens of target_new;
- generalization: argmax on each paraphrase against the tokens of target_new;
- locality:       argmax on each locality prompt + its answer, against the PRE-EDIT model's argmax at the
                  same positions (recorded once, before the first edit; 1.0 = the prediction is unchanged);
                  `locality_covered` the same on the edit's covered locality prompts (knowledge that the
                  editors' knowledge texts hold; the world's `locality` asks about people no text holds);
- portability:    argmax on each portability question against the tokens of its answer (where present);
- general ability: held-out language-model loss (`method.lm_loss`).

The protocol asks the method only through the contract (evaluation/contract.py): `predict_tokens` for the
four scores, `lm_loss` for general ability. It never reads the method's weights, so a method whose knowledge
lives in a memory or a bank is scored like one that edits weights.

Every token of a target counts, including tokens the unedited model already predicts (the world's
portability answers are "NEW in YEAR": " in" and a known year come free). So the unedited model is scored
first, on all T edits (`pre_edit_*`, with locality 1.0 by construction), and `mean_gain` is the mean of the
edited scores minus the mean of the pre-edit ones over the same metrics: compare methods by their gains.

Prompt formatting depends on the data source, which says it in its stream (`EditStream.prompt_style`): the
synthetic world's edits are questions, answered as the reader was trained to (`qa_prompt(prompt)` -> " answer");
CounterFact / zsRE / MQuAKE prompts are cloze prompts (prompt -> " target"). Training an edit and
scoring it use the same encoding (`encode_edit_pair`): the target's tokens only, no end-of-sequence.
"""

from __future__ import annotations

from lit_knowledge.data.prompts import encode_scored_target, qa_prompt
from lit_knowledge.evaluation.metrics import edit_mean, edit_scores, mean, token_match

# ------------------------------------------------------------------------------------------- formatting


def format_prompt(style: str, prompt: str) -> str:
    if style == "qa":
        return qa_prompt(prompt)
    if style == "cloze":
        return prompt
    raise ValueError(f"unknown prompt style {style!r}")


def encode_edit_pair(tokenizer, style: str, prompt: str, target: str, max_length: int = 256) -> dict:
    """The formatted prompt followed by " " + target, the target's tokens scored: how editors train an edit."""
    return encode_scored_target(tokenizer, format_prompt(style, prompt), target, max_length)


# ------------------------------------------------------------------------------------------- schedule


def default_eval_at(num_edits: int) -> list[int]:
    """Log-spaced edit counts 1, 2, 5, 10, 20, 50, ... below num_edits, plus num_edits itself."""
    counts, scale = [], 1
    while scale < num_edits:
        counts += [c * scale for c in (1, 2, 5) if c * scale < num_edits]
        scale *= 10
    return counts + [num_edits] if num_edits > 0 else []


# ------------------------------------------------------------------------------------------- protocol


class EditProtocol:
    """Evaluates all edits so far at the checkpoints of an edit stream; one history row per edit.

    `record_pre_edit(method)` must run once before the first edit (the editors do it when training
    starts); its result is part of `state()`, which the editors keep in their checkpoints, so a resumed
    run scores locality against the same pre-edit predictions.
    """

    kind = "edit"
    # The columns a run prints at its end and a report shows first; the curves drawn against the edit count.
    MAIN_METRICS = ("reliability", "generalization", "locality", "portability", "mean_gain", "pre_edit_portability",
                    "lm_loss", "update_time_per_step_s")
    SCORES = ("reliability", "generalization", "locality", "portability")  # in [0, 1]: a report's bars
    CURVES = SCORES  # the first is the one a report draws per run

    def __init__(self, stream, eval_cfg, eval_at: list[int] | None = None):
        self.edits = list(stream.edits)
        self.style, self.cfg = stream.prompt_style, eval_cfg
        n = len(self.edits)
        wanted = default_eval_at(n) if eval_at is None else [int(c) for c in eval_at]
        self.eval_at = sorted({c for c in wanted if 1 <= c <= n} | ({n} if n else set()))
        self.heldout = list(stream.heldout_texts[: eval_cfg.lm_loss_texts])
        self.pre_edit_locality: list[list[list[int]]] | None = None  # [edit][locality prompt] -> argmax ids
        self.pre_edit: dict | None = None  # the unedited method's scores on all edits: the floor

    @staticmethod
    def unchanged_prompts(edit) -> list[tuple[str, str]]:
        """The prompts whose pre-edit prediction must survive: held-out locality, then covered locality."""
        return [*edit.locality, *edit.locality_covered]

    def ask(self, method, pairs: list[tuple[str, str]]):
        """The method's teacher-forced predictions on (prompt, target) pairs, prompts in the stream's style."""
        return method.predict_tokens([(format_prompt(self.style, p), t) for p, t in pairs])

    # ------------------------------------------------------------------------------ state

    def record_pre_edit(self, method) -> None:
        """The unedited method, once: its argmax on every locality prompt (teacher-forced on the answer), what
        locality compares with, and its scores on all edits, the floor of every edited score."""
        preds = self.ask(method, [pair for e in self.edits for pair in self.unchanged_prompts(e)])
        it = iter(preds)
        self.pre_edit_locality = [[next(it).predicted for _ in self.unchanged_prompts(e)] for e in self.edits]
        per = self.scores(method, len(self.edits))
        floor = edit_scores(per["reliability"], per["generalization"], per["locality"], per["portability"])
        self.pre_edit = {name: floor[name] for name in EDIT_SCORES}

    def state(self) -> dict:
        return {"pre_edit_locality": self.pre_edit_locality, "pre_edit": self.pre_edit}

    def load_state(self, state: dict) -> None:
        self.pre_edit_locality = state.get("pre_edit_locality")
        self.pre_edit = state.get("pre_edit")

    # ------------------------------------------------------------------------------ scores

    def scores(self, method, n: int) -> dict:
        """Per-edit scores of the first n edits, asked of `method`: lists for `metrics.edit_scores`, plus examples."""
        edits = self.edits[:n]
        pairs, owners = [], []  # owners[i] = (edit index, kind)

        def add(i, kind, prompt, target):
            pairs.append((prompt, target))
            owners.append((i, kind))

        for i, e in enumerate(edits):
            add(i, "reliability", e.prompt, e.target_new)
            for p in e.paraphrases:
                add(i, "generalization", p, e.target_new)
            for p, a in e.locality:
                add(i, "locality", p, a)
            for p, a in e.locality_covered:
                add(i, "locality_covered", p, a)
            for q, a in e.portability:
                add(i, "portability", q, a)
        preds = self.ask(method, pairs)
        per = {kind: [[] for _ in edits] for kind in (*EDIT_SCORES, "locality_covered")}
        seen_locality = [0] * len(edits)
        for (i, kind), pred in zip(owners, preds):
            if kind in ("locality", "locality_covered"):
                if self.pre_edit_locality is None:
                    raise RuntimeError("record_pre_edit(method) must run before the first edit")
                reference = self.pre_edit_locality[i][seen_locality[i]]
                seen_locality[i] += 1
            else:
                reference = pred.target
            per[kind][i].append(token_match(pred.predicted, reference))
        first = [(edits[i].prompt, edits[i].target_new, pred.text)
                 for (i, kind), pred in zip(owners, preds) if kind == "reliability" and i < 5]
        return {
            "reliability": [s[0] for s in per["reliability"]],
            "generalization": [s or None for s in per["generalization"]],
            "locality": [s or None for s in per["locality"]],
            "portability": [s or None for s in per["portability"]],
            "locality_covered": [s or None for s in per["locality_covered"]],
            "examples": first,
        }

    def evaluate(self, method, k: int) -> dict:
        """One history row after edit k (0-based). Only at the checkpoints is the method asked anything."""
        n = k + 1
        row = {"step": k, "edits": n, "evaluated": n in self.eval_at}
        if not row["evaluated"]:
            return row
        per = self.scores(method, n)
        row.update(edit_scores(per["reliability"], per["generalization"], per["locality"], per["portability"]))
        row["locality_covered"] = edit_mean(per["locality_covered"])
        row["lm_loss"] = method.lm_loss(self.heldout)
        row["examples"] = per["examples"]
        return row

    def summary(self, history: list[dict], timings: list[float], extra_storage_bytes: int,
                wall_time_s: float) -> dict:
        """results.json's `metrics`, `curves` and `timings`, with the unedited floor and the examples."""
        out = summarize_edits(history, timings, extra_storage_bytes, wall_time_s, self.pre_edit)
        evaluated = [r for r in history if r.get("evaluated")]
        out["examples"] = evaluated[-1].get("examples", []) if evaluated else []
        return out


# ------------------------------------------------------------------------------------------- summary

EDIT_SCORES = ("reliability", "generalization", "locality", "portability")
METRICS = (*EDIT_SCORES, "locality_covered", "lm_loss")


def mean_gain(edited: dict, pre_edit: dict) -> float | None:
    """Mean of the edited scores minus the mean of the pre-edit ones, over the scores both have."""
    names = [n for n in EDIT_SCORES if edited.get(n) is not None and pre_edit.get(n) is not None]
    if not names:
        return None
    return mean([edited[n] for n in names]) - mean([pre_edit[n] for n in names])


def summarize_edits(history: list[dict], timings: list[float], extra_storage_bytes: int,
                    wall_time_s: float, pre_edit: dict | None = None) -> dict:
    """`metrics` (final checkpoint, i.e. all T edits on the final model) and `curves` against the edit count.

    With the unedited model's scores (`pre_edit`), metrics also hold `pre_edit_<score>` and `mean_gain`.
    Curves have one entry per checkpoint; `update_time_s` there is the mean time per edit of the edits since
    the previous checkpoint. `timings.update_time_s` keeps the time of every single edit.
    """
    rows = [r for r in history if r.get("evaluated")]
    metrics = {name: (rows[-1].get(name) if rows else None) for name in METRICS}
    if pre_edit is not None:
        metrics.update({f"pre_edit_{name}": pre_edit.get(name) for name in EDIT_SCORES})
        metrics["mean_gain"] = mean_gain(metrics, pre_edit)
    metrics.update({
        "num_edits": history[-1]["edits"] if history else 0,
        "wall_time_s": wall_time_s,
        "update_time_per_step_s": mean(timings) if timings else 0.0,
        "extra_storage_bytes": extra_storage_bytes,
        "time_per_edit_first": timings[0] if timings else None,
        "time_per_edit_last": timings[-1] if timings else None,
    })
    curves: dict = {"step": [r["edits"] for r in rows]}
    for name in METRICS:
        curves[name] = [r.get(name) for r in rows]
    spans, previous = [], 0
    for r in rows:
        spans.append(mean(timings[previous:r["edits"]]))
        previous = r["edits"]
    curves["update_time_s"] = spans
    # Method-specific numbers a row carries (e.g. O-Edit's basis sizes) become curves too.
    extra = sorted({key for r in rows for key, v in r.items()
                    if key not in METRICS and key not in ("step", "edits", "evaluated", "n_edits")
                    and isinstance(v, (int, float)) and not isinstance(v, bool)})
    for name in extra:
        curves[name] = [r.get(name) for r in rows]
    return {"metrics": metrics, "curves": curves, "timings": {"update_time_s": list(timings)}}
