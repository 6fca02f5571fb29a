"""The stream evaluation protocol, the same for every method.

After each step of a knowledge stream the model is asked, closed-book (unless the method itself
puts text in the prompt, as `in_context` and `rag_bm25` do):
- efficacy:   the probes of the step just learned;
- retention:  the probes of every earlier step (one F1 per earlier step: a row of the retention matrix);
- locality:   probes about background knowledge the model had before the stream;
- general ability: language-model loss on held-out text.

Probes a later step supersedes (a fact that changed) are no longer asked from that step on.
The method answers through the contract (evaluation/contract.py): `method.answer(probes)` and
`method.lm_loss(texts)`, so the protocol never needs to know how or where the method keeps what it knows.
"""

from __future__ import annotations

import random
from collections import defaultdict

from lit_knowledge.data.records import Probe
from lit_knowledge.data.streams import KnowledgeStream
from lit_knowledge.distributed import sharded
from lit_knowledge.evaluation.metrics import mean, qa_scores


def _cap(probes: list[Probe], limit: int | None, seed: int) -> list[Probe]:
    """At most `limit` probes of each kind, drawn with a fixed seed (the same subset at every step)."""
    if limit is None:
        return list(probes)
    by_kind: dict[str, list[Probe]] = defaultdict(list)
    for p in probes:
        by_kind[p.kind].append(p)
    rng = random.Random(seed)
    out = []
    for kind in sorted(by_kind):
        group = by_kind[kind]
        out += group if len(group) <= limit else rng.sample(group, limit)
    return out


class StreamProtocol:
    kind = "qa"
    # The columns a run prints at its end and a report shows first; the curves drawn against the stream step.
    MAIN_METRICS = ("efficacy_em", "efficacy_f1", "retention_f1", "locality_f1", "lm_loss", "update_time_per_step_s")
    SCORES = ("efficacy_em", "efficacy_f1", "retention_f1", "locality_f1")  # in [0, 1]: a report's bars
    CURVES = ("retention_f1", "efficacy_f1", "locality_f1")  # the first is the one a report draws per run

    def __init__(self, stream: KnowledgeStream, eval_cfg, seed: int = 0):
        self.stream = stream
        self.cfg = eval_cfg
        self.step_probes = [_cap(s.probes, eval_cfg.max_probes, seed + s.index) for s in stream.steps]
        self.background = list(stream.background_probes)
        if eval_cfg.max_locality_probes is not None and len(self.background) > eval_cfg.max_locality_probes:
            keep = set(random.Random(seed - 1).sample(range(len(self.background)), eval_cfg.max_locality_probes))
            self.background = [p for i, p in enumerate(self.background) if i in keep]
        # Locality is also reported per kind when the background has several (the world: namesakes of stream
        # people and the rest).
        self.background_by_kind: dict[str, list[Probe]] = defaultdict(list)
        for p in self.background:
            self.background_by_kind[p.kind].append(p)
        self.heldout = stream.heldout_texts[: eval_cfg.lm_loss_texts]

    def superseded_by(self, k: int) -> set[str]:
        out: set[str] = set()
        for t, ids in self.stream.superseded.items():
            if t <= k:
                out |= ids
        return out

    def evaluate(self, method, k: int) -> dict:
        """Scores of the model after step k: one row of the per-step history."""
        gone = self.superseded_by(k)
        asked = [[p for p in self.step_probes[j] if p.id not in gone] for j in range(k + 1)]
        flat = [p for group in asked for p in group] + self.background
        # under DDP each process answers its share of the probes and all gather every answer
        predictions = dict(zip([p.id for p in flat], sharded(method.answer, flat))) if flat else {}

        def score(probes):
            return qa_scores([predictions[p.id] for p in probes], [p.answers for p in probes])

        row_scores = [score(group) if group else None for group in asked]
        efficacy = row_scores[k]
        earlier = [p for group in asked[:k] for p in group]
        retention = score(earlier) if earlier else None
        locality = score(self.background) if self.background else None
        by_kind, by_relation = defaultdict(list), defaultdict(list)
        for p in asked[k]:
            by_kind[p.kind].append(p)
        for p in (p for group in asked[: k + 1] for p in group if p.relation):
            by_relation[p.relation].append(p)
        return {
            "step": k,
            "efficacy_em": efficacy["em"] if efficacy else None,
            "efficacy_f1": efficacy["f1"] if efficacy else None,
            "retention_f1": retention["f1"] if retention else None,
            "retention_em": retention["em"] if retention else None,
            "locality_f1": locality["f1"] if locality else None,
            "lm_loss": method.lm_loss(self.heldout),
            "efficacy_f1_by_kind": {kind: score(ps)["f1"] for kind, ps in sorted(by_kind.items())},
            # every document's probes so far, pooled by the fact a direct question asks (sources that tag them: the
            # world); final_f1_all_steps averages per step instead
            "f1_by_relation_all_steps": {rel: score(ps)["f1"] for rel, ps in sorted(by_relation.items())},
            "locality_f1_by_kind": ({kind: score(ps)["f1"] for kind, ps in sorted(self.background_by_kind.items())}
                                    if len(self.background_by_kind) > 1 else {}),
            "retention_row": [s["f1"] if s else None for s in row_scores],
            "retention_row_em": [s["em"] if s else None for s in row_scores],
            "examples": [(p.question, p.answers[0], predictions[p.id]) for p in asked[k][:5]],
        }

    def summary(self, history: list[dict], timings: list[float], extra_storage_bytes: int,
                wall_time_s: float) -> dict:
        """results.json's `metrics`, `curves` and `retention_matrix`, and the last step's examples."""
        out = summarize(history, timings, extra_storage_bytes, wall_time_s)
        out["examples"] = history[-1]["examples"] if history else []
        return out


def summarize(history: list[dict], timings: list[float], extra_storage_bytes: int, wall_time_s: float) -> dict:
    """The `metrics`, `curves` and `retention_matrix` of results.json from the per-step history."""
    if not history:
        return {"metrics": {}, "curves": {}}
    final = history[-1]
    kinds = sorted({k for row in history for k in row["efficacy_f1_by_kind"]})
    metrics = {
        "efficacy_em": mean(r["efficacy_em"] for r in history),
        "efficacy_f1": mean(r["efficacy_f1"] for r in history),
        # Retention: the final model on the probes of every earlier step.
        "retention_f1": final["retention_f1"],
        "locality_f1": final["locality_f1"],
        "lm_loss": final["lm_loss"],
        "final_f1_all_steps": mean(v for v in final["retention_row"]),
        "final_em_all_steps": mean(v for v in final.get("retention_row_em", [])),
        "wall_time_s": wall_time_s,
        "update_time_per_step_s": mean(timings) if timings else 0.0,
        "extra_storage_bytes": extra_storage_bytes,
        "num_steps": len(history),
    }
    for kind in kinds:
        metrics[f"efficacy_f1_{kind}"] = mean(r["efficacy_f1_by_kind"].get(kind) for r in history)
    for relation, f1 in final.get("f1_by_relation_all_steps", {}).items():
        metrics[f"final_f1_about_{relation}"] = f1
    for kind, f1 in final.get("locality_f1_by_kind", {}).items():
        metrics[f"locality_f1_{kind}"] = f1
    curves = {
        "step": [r["step"] + 1 for r in history],
        "efficacy_f1": [r["efficacy_f1"] for r in history],
        "retention_f1": [r["retention_f1"] for r in history],
        "locality_f1": [r["locality_f1"] for r in history],
        "lm_loss": [r["lm_loss"] for r in history],
        "update_time_s": list(timings),
    }
    width = len(history)
    matrix = [r["retention_row"] + [None] * (width - len(r["retention_row"])) for r in history]
    return {"metrics": metrics, "curves": curves, "retention_matrix": matrix}
