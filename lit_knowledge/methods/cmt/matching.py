"""CMT's matching over a stream's bank: `python -m lit_knowledge.bench cmt-matching [--probes N] [key=value ...]`.

The config's stream is compressed into the bank in order, as the stream method does. For `probes` of the
stream's probes (a fixed draw), it records where the question's own document ranks among the bank by the match
score (best, top 2, 4, 8), F1 when the aggregator reads the best 1, 2, 4 or 8 entries (k above the window or
the bank is skipped; without top-k aggregation, the whole bank once), and, for the questions whose best match is
another document, whether that document is about the same subject, shares the gold subject's first name, or its
last name alone (sources whose documents name no subject leave that split out). On the world, also how much a question's key
moves when the asked person's first or last name alone is swapped for another (the cosine of the two keys' means,
over `probes` random names): 1 means the key ignores that name; and what share of the keys' attention over the
question's words (averaged over the keys) falls on the first name's and on the last name's words.
"""

from __future__ import annotations

import random

import torch

from lit_knowledge.data.world import FIRST_NAMES, LAST_NAMES, PROBE_SPLIT, QUESTIONS
from lit_knowledge.errors import UserError
from lit_knowledge.evaluation.metrics import qa_scores
from lit_knowledge.methods.cmt.method import CMT
from lit_knowledge.methods.cmt.training import cmt_build, encode_texts

RANKS = (1, 2, 4, 8)


@torch.no_grad()
def matching_over_bank(cfg, probes: int = 200, reads=RANKS, seed: int = 0) -> dict:
    if probes < 1:
        raise UserError("--probes must be >= 1")
    method = CMT(cfg)
    memory = method.memory
    docs = [d for step in method.stream.steps for d in step.documents]
    for i in range(0, len(docs), cfg.eval.batch_size):
        enc = encode_texts(method.tokenizer, [d.text for d in docs[i : i + cfg.eval.batch_size]],
                           cfg.data.max_length, memory.device)
        method.add_documents(enc["input_ids"], enc["attention_mask"])
    index = {d.id: i for i, d in enumerate(docs)}
    asked = [p for step in method.stream.steps for p in step.probes if p.doc_id in index]
    random.Random(seed).shuffle(asked)
    asked = asked[:probes]
    enc = encode_texts(method.tokenizer, [p.question for p in asked], cfg.data.max_length, memory.device)
    scores = memory.match_scores(memory.encode_question(enc["input_ids"], enc["attention_mask"]), method.bank)
    gold = torch.tensor([index[p.doc_id] for p in asked], device=scores.device)
    rank = (scores > scores.gather(1, gold[:, None])).sum(1)  # entries scored above the gold one
    res = {"module": cmt_build(cfg).key, "bank": len(docs), "probes": len(asked),
           "gold_in_top": {k: float((rank < k).float().mean()) for k in RANKS}, "f1_reading": {}}
    answers = [p.answers for p in asked]
    if memory.top_k_aggregation:
        kept = memory.top_k
        try:
            for k in (k for k in reads if k <= min(memory.aggregator.window, len(docs))):
                memory.top_k = k
                res["f1_reading"][k] = qa_scores(method.answer(asked), answers)["f1"]
        finally:
            memory.top_k = kept
    else:
        res["f1_reading"]["all"] = qa_scores(method.answer(asked), answers)["f1"]
    best = scores.argmax(1).tolist()
    misses = [(docs[index[p.doc_id]].subject.split(), docs[b].subject.split())
              for p, b in zip(asked, best) if b != index[p.doc_id]]
    res["misses"] = len(misses)
    if misses and all(g and m for g, m in misses):
        res["miss_same_subject"] = sum(g == m for g, m in misses)  # another document about the same person
        res["miss_shares_first_name"] = sum(g != m and g[0] == m[0] for g, m in misses)
        res["miss_shares_last_name_only"] = sum(g[0] != m[0] and g[-1] == m[-1] for g, m in misses)
    if cfg.data.source == "world":
        res.update(name_sensitivity(memory, method.tokenizer, cfg, probes, seed))
    return res


def name_sensitivity(memory, tokenizer, cfg, questions: int, seed: int = 0) -> dict:
    """The cosine between a question's key summary and that of the same question about a person whose first (or
    last) name alone differs, averaged over `questions` random names of the world's lists, and the share of the
    keys' attention on each of the two names."""
    rng = random.Random(seed)
    template = QUESTIONS["city"][PROBE_SPLIT]  # a held-out wording
    asked, other_first, other_last, names = [], [], [], []
    for _ in range(questions):
        first, last = rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)
        names.append((first, last))
        asked.append(template.format(name=f"{first} {last}"))
        other_first.append(template.format(name=f"{rng.choice([n for n in FIRST_NAMES if n != first])} {last}"))
        other_last.append(template.format(name=f"{first} {rng.choice([n for n in LAST_NAMES if n != last])}"))

    def summary(texts):
        enc = encode_texts(tokenizer, texts, cfg.data.max_length, memory.device)
        return memory.summary(memory.encode_question(enc["input_ids"], enc["attention_mask"]))

    base = summary(asked)
    first_share, last_share = key_attention_on_names(memory, tokenizer, cfg, template, names, asked)
    return {"key_cos_other_first_name": float((base * summary(other_first)).sum(-1).mean()),
            "key_cos_other_last_name": float((base * summary(other_last)).sum(-1).mean()),
            "key_attention_first_name": first_share, "key_attention_last_name": last_share}


def key_attention_on_names(memory, tokenizer, cfg, template: str, names: list[tuple[str, str]],
                           texts: list[str]) -> tuple[float, float]:
    """The share of the question keys' attention over the tokens (mean over keys and questions) that falls on the
    first name's tokens and on the last name's, in `texts`: `template` asked about each (first, last). A token belongs to a
    name when its characters overlap the name's (the tokenizer's offsets: plain texts are encoded without special
    tokens in front)."""
    encoder = memory.compressor if memory.question_encoder is None else memory.question_encoder
    enc = encode_texts(tokenizer, texts, cfg.data.max_length, memory.device)
    mask = enc["attention_mask"]
    soft, read = encoder.encode(memory.hidden_states(enc["input_ids"], mask), mask)
    weights = encoder.pick(encoder.key_query, encoder.key_key, soft, read, mask).mean(1)  # (B, S)
    at = template.index("{name}")
    on_first = on_last = 0.0
    for row, ((given, family), text) in enumerate(zip(names, texts)):
        spans = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)["offset_mapping"]
        last_at = at + len(given) + 1
        for i, (a, b) in enumerate(spans[: mask.shape[1]]):
            on_first += float(weights[row, i]) if a < at + len(given) and b > at else 0.0
            on_last += float(weights[row, i]) if a < last_at + len(family) and b > last_at else 0.0
    return on_first / len(names), on_last / len(names)


def format_matching(res: dict) -> str:
    ranks = " | ".join(f"{res['gold_in_top'][k]:.2f}" for k in RANKS)
    reads = list(res["f1_reading"])
    lines = [f"CMT module {res['module']}: a bank of {res['bank']} documents, {res['probes']} probes", "",
             "| gold best | in top 2 | top 4 | top 8 | " + " | ".join(f"F1 reading {k}" for k in reads) + " |",
             "|---" * (4 + len(reads)) + "|",
             f"| {ranks} | " + " | ".join(f"{res['f1_reading'][k]:.3f}" for k in reads) + " |"]
    if "miss_shares_first_name" in res:
        lines += ["", f"best match wrong for {res['misses']}: about the same subject in {res['miss_same_subject']}, "
                      f"another sharing its first name in {res['miss_shares_first_name']}, its last name alone in "
                      f"{res['miss_shares_last_name_only']}"]
    if "key_cos_other_first_name" in res:
        lines += [f"a question's key against the same question with another first name: cosine "
                  f"{res['key_cos_other_first_name']:.3f}; with another last name: {res['key_cos_other_last_name']:.3f}",
                  f"the keys' attention over a question's words: {res['key_attention_first_name']:.2f} on the first "
                  f"name, {res['key_attention_last_name']:.2f} on the last name"]
    return "\n".join(lines)
