"""Where MemoryLLM's retention goes: `python -m lit_knowledge.bench memoryllm-recency`.

After a document A is written into an empty pool (which the first write fills with A's K tokens), one more
write of another document B keeps 7/8 of A's tokens at N = 128, K = 16, untouched. If A's questions are then
answered much worse than right after A's own write, either the kept tokens lost what A's questions need, or
the model no longer reads them. Four pools over the same two documents tell which:

- `target`: A written alone (efficacy, t = 1);
- `target_then_other`: A, then B (t = 2, as the stream writes them);
- `other_block_first`: that same pool with B's K tokens moved to the front and A's newest K tokens to the end:
  the same tokens in other places;
- `target_then_empty`: A, then an update with K zero vectors: A's tokens shift exactly as under B's write,
  and nothing new is there to read.

If `other_block_first` and `target_then_empty` answer as well as `target` while `target_then_other` does not,
the tokens still hold A, and the model answers from whatever sits in the last K places. The floor beside them is
the same probes read with an empty memory (the start vectors alone).
"""

from __future__ import annotations

import random

import torch

from lit_knowledge.data.prompts import qa_prompt
from lit_knowledge.data.world import World
from lit_knowledge.evaluation.metrics import qa_scores
from lit_knowledge.methods.memoryllm.training import load_memory_model, write_texts
from lit_knowledge.models.prefix import greedy_answers

POOLS = ("target", "target_then_other", "other_block_first", "target_then_empty")


def recency_pools(memory, target_tokens: torch.Tensor, other_tokens: torch.Tensor,
                  drop: torch.Generator) -> dict[str, torch.Tensor]:
    """The four pools of the module docstring from the K new tokens of A and of B (each (layers, 1, K, hidden));
    B's tokens must have been written reading A's pool, as the stream writes them."""
    K = target_tokens.shape[2]
    target = memory.update(None, target_tokens, drop)
    draws = drop.get_state()
    then_other = memory.update(target, other_tokens, drop)
    # then_other's last K are B's; its first N - K are A's survivors, whose newest K copies go last here
    block_first = torch.cat([other_tokens, then_other[:, :, K:-K], target_tokens], dim=2)
    after = drop.get_state()
    drop.set_state(draws)  # the zero write drops the very tokens B's write dropped
    then_empty = memory.update(target, torch.zeros_like(target_tokens), drop)
    drop.set_state(after)
    return {"target": target, "target_then_other": then_other, "other_block_first": block_first,
            "target_then_empty": then_empty}


@torch.no_grad()
def recency(cfg, pairs: int = 40, seed: int = 123) -> dict:
    """F1 on `pairs` fresh people's held-out probes from each of the four pools, and the pool's sizes."""
    memory, tokenizer = load_memory_model(cfg)
    memory.eval()
    world = World(cfg.data.world)
    rng = random.Random(seed)
    drop = torch.Generator().manual_seed(cfg.run.seed)

    def write(pool, text):
        return write_texts(memory, tokenizer, pool, [text], cfg.method.chunk_length)

    answers = {name: [] for name in POOLS}
    floor, gold = [], []
    for _ in range(pairs):
        person, other = world.fresh_person(rng), world.fresh_person(rng)
        target_doc, other_doc = world.document(person, rng), world.document(other, rng)
        target_tokens = write(None, target_doc)
        other_tokens = write(memory.update(None, target_tokens, drop), other_doc)
        asked = [(q, a) for _, q, a in world.questions(person, "probe", [person])]
        prompts = [qa_prompt(q) for q, _ in asked]
        gold += [[a] for _, a in asked]
        floor += greedy_answers(memory, None, tokenizer, prompts)
        for name, pool in recency_pools(memory, target_tokens, other_tokens, drop).items():
            answers[name] += greedy_answers(memory, pool, tokenizer, prompts)
    return {"f1": {name: qa_scores(answers[name], gold)["f1"] for name in POOLS},
            "empty_memory_f1": qa_scores(floor, gold)["f1"], "pairs": pairs,
            "probes": len(gold), "pool_size": memory.pool_size, "write_size": memory.write_size}


def format_recency(res: dict) -> str:
    f1 = res["f1"]
    lines = [f"MemoryLLM recency: N = {res['pool_size']}, K = {res['write_size']}, {res['pairs']} pairs of documents, "
             f"{res['probes']} probes about the first", "", "| pool | F1 |", "|---|---|"]
    lines += [f"| {name} | {f1[name]:.3f} |" for name in POOLS]
    lines.append(f"| empty memory (the floor) | {res['empty_memory_f1']:.3f} |")
    return "\n".join(lines)
