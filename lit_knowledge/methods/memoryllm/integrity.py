"""MemoryLLM's integrity and cost over many writes: `python -m lit_knowledge.bench memoryllm [--writes W]`.

The trained memory module (configs/memoryllm/memoryllm.yaml unless `--config` says otherwise) writes, in order:
`probe_docs` target documents about fresh people, then W documents of unrelated fresh people, then
`probe_docs` more targets. Every `every` writes it records the pool's bytes, the held-out LM loss read with
the pool, and the mean seconds per write since the last record. The first targets are asked right after their
own write, and so are the last: the paper's integrity claim is that the last writes are answered as well as
the first, the pool's size never changes and the model's general ability holds.

Targets (issue: MemoryLLM): pool bytes constant; held-out LM loss within 5 % of its value after the first
targets; the last targets' F1 at least the first targets'. The command reports and exits 0 either way.
"""

from __future__ import annotations

import random
import time

import torch

from lit_knowledge.data.prompts import qa_prompt
from lit_knowledge.data.world import World
from lit_knowledge.evaluation.metrics import qa_scores
from lit_knowledge.methods.memoryllm.training import load_memory_model, write_texts
from lit_knowledge.models.generate import lm_loss
from lit_knowledge.models.prefix import PrefixScorer, greedy_answers

LM_LOSS_TOLERANCE = 0.05


def integrity(cfg, writes: int = 2000, every: int = 250, probe_docs: int = 10, seed: int = 12345) -> dict:
    memory, tokenizer = load_memory_model(cfg)
    memory.eval()
    world = World(cfg.data.world)
    heldout = world.stream().heldout_texts[: cfg.eval.lm_loss_texts]
    rng = random.Random(seed)
    drop = torch.Generator().manual_seed(cfg.run.seed)
    state = {"pool": None, "writes": 0, "seconds": 0.0, "since": 0}  # since: writes since the last record

    @torch.no_grad()
    def write(text: str) -> None:
        start = time.perf_counter()
        new = write_texts(memory, tokenizer, state["pool"], [text], cfg.method.chunk_length)
        state["pool"] = memory.update(state["pool"], new, drop)
        state["seconds"] += time.perf_counter() - start
        state["writes"] += 1
        state["since"] += 1

    def targets() -> float:
        """Write probe_docs fresh people's documents, each asked right after its own write; their F1."""
        answers, gold = [], []
        for _ in range(probe_docs):
            person = world.fresh_person(rng)
            write(world.document(person, rng))
            asked = [(q, a) for _, q, a in world.questions(person, "probe", [person])]
            answers += greedy_answers(memory, state["pool"], tokenizer, [qa_prompt(q) for q, _ in asked])
            gold += [[a] for _, a in asked]
        return qa_scores(answers, gold)["f1"]

    def record() -> dict:
        pool = state["pool"]
        row = {"writes": state["writes"], "pool_bytes": pool.numel() * pool.element_size(),
               "lm_loss": lm_loss(PrefixScorer(memory, pool), tokenizer, heldout, cfg.data.max_length),
               "seconds_per_write": state["seconds"] / max(1, state["since"])}
        state["seconds"], state["since"] = 0.0, 0
        return row

    first_f1 = targets()
    rows = [record()]
    for i in range(writes):
        write(world.document(world.fresh_person(rng), rng))
        if (i + 1) % every == 0 or i + 1 == writes:
            rows.append(record())
    last_f1 = targets()
    start_loss, end_loss = rows[0]["lm_loss"], rows[-1]["lm_loss"]
    return {
        "rows": rows, "first_targets_f1": first_f1, "last_targets_f1": last_f1,
        "pool_bytes_constant": len({r["pool_bytes"] for r in rows}) == 1,
        "lm_loss_change": (end_loss - start_loss) / start_loss,
        "lm_loss_within_tolerance": abs(end_loss - start_loss) <= LM_LOSS_TOLERANCE * start_loss,
        "last_as_well_as_first": last_f1 >= first_f1,
        "pool_size": memory.pool_size, "write_size": memory.write_size, "writes": state["writes"],
    }


def format_integrity(res: dict) -> str:
    lines = [f"MemoryLLM integrity: N = {res['pool_size']}, K = {res['write_size']}, {res['writes']} writes",
             "", "| writes | pool bytes | held-out LM loss | ms per write |", "|---|---|---|---|"]
    for r in res["rows"]:
        lines.append(f"| {r['writes']} | {r['pool_bytes']} | {r['lm_loss']:.3f} | {1000 * r['seconds_per_write']:.2f} |")
    lines += ["", f"first targets F1 {res['first_targets_f1']:.3f}, last targets F1 {res['last_targets_f1']:.3f} "
                  f"({'met' if res['last_as_well_as_first'] else 'missed'}: last >= first)",
              f"pool bytes constant: {'met' if res['pool_bytes_constant'] else 'missed'}",
              f"held-out LM loss change {100 * res['lm_loss_change']:+.1f} % "
              f"({'met' if res['lm_loss_within_tolerance'] else 'missed'}: within {100 * LM_LOSS_TOLERANCE:.0f} %)"]
    return "\n".join(lines)
