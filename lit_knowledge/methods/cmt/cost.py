"""CMT's cost as its bank grows: `python -m lit_knowledge.bench cmt [--sizes 16 64 256 1000]`.

The meta-trained parts (configs/cmt/cmt.yaml unless `--config` says otherwise) compress documents of fresh
people into a bank, one at a time. At each bank size it records the bank's bytes per document, the mean
seconds to compress one document since the last size, the seconds to answer `questions` questions (encoding,
aggregation over the bank, greedy answers), and F1 on the first `first_docs` documents' held-out questions
(retention as the bank grows) and on the newest `first_docs` documents'. Beside these, F1 on the first
documents' questions when each reads its own document's entry alone (`gold_entry_f1`): what the compressor
kept, whatever matching and aggregation make of a bank. A low F1 there is a compressor that lost the answers,
not a bank too large to find them in. And `soft_token_overlap`: the mean cosine between two soft tokens' picks
over a document's words (1: all T tokens pick alike, so the entry holds one mixture T times).

What the method promises: bytes per document constant, time to write a document flat; the time to answer grows
with the bank only through the aggregation (linear in the entries without top-k, and the top-k scoring is
one matrix product).
"""

from __future__ import annotations

import random
import time

import torch
import torch.nn.functional as F

from lit_knowledge.data.prompts import qa_prompt
from lit_knowledge.data.world import World
from lit_knowledge.evaluation.metrics import qa_scores
from lit_knowledge.methods.cmt.training import encode_texts, load_cmt_memory
from lit_knowledge.models.prefix import greedy_answers


@torch.no_grad()
def bank_cost(cfg, sizes=(16, 64, 256, 1000), first_docs: int = 8, seed: int = 12345) -> dict:
    memory, tokenizer = load_cmt_memory(cfg)
    memory.eval()
    world = World(cfg.data.world)
    rng = random.Random(seed)
    people, texts, bank, seconds = [], [], None, 0.0
    rows, written = [], 0

    def encode(batch: list[str]):
        return encode_texts(tokenizer, batch, cfg.data.max_length, memory.device)

    def asked(group) -> tuple[float, float, int]:
        """(F1 on the group's held-out questions read from the bank, seconds to answer them, questions)."""
        qa = [(q, a) for person in group for _, q, a in world.questions(person, "probe", people)]
        start = time.perf_counter()
        enc = encode([q for q, _ in qa])
        prefix = memory.memory_for(memory.encode_question(enc["input_ids"], enc["attention_mask"]), bank)
        answers = greedy_answers(memory.reader, prefix, tokenizer, [qa_prompt(q) for q, _ in qa],
                                 cfg.eval.max_new_tokens, len(qa))
        took = time.perf_counter() - start
        return qa_scores(answers, [[a] for _, a in qa])["f1"], took, len(qa)

    def gold_entry_f1(group) -> float:
        """F1 on the group's held-out questions, each read from its own document's entry alone."""
        answers, gold = [], []
        for person in group:
            qa = [(q, a) for _, q, a in world.questions(person, "probe", people)]
            entry = bank[people.index(person)][None]
            answers += greedy_answers(memory.reader, memory.to_layers(entry), tokenizer, [qa_prompt(q) for q, _ in qa],
                                      cfg.eval.max_new_tokens, len(qa))
            gold += [[a] for _, a in qa]
        return qa_scores(answers, gold)["f1"]

    def soft_token_overlap(documents) -> float:
        """Mean cosine between two different soft tokens' picks over a document's words."""
        docs = encode(documents)
        picks = memory.compressor.picks(memory.hidden_states(docs["input_ids"], docs["attention_mask"]),
                                        docs["attention_mask"])
        picks = F.normalize(picks, dim=-1)  # (B, T, S)
        cosines = picks @ picks.transpose(1, 2)
        T = cosines.shape[-1]
        return float((cosines.sum((1, 2)) - T).mean() / (T * (T - 1)))

    for size in sorted(sizes):
        since = written
        while written < size:
            person = world.fresh_person(rng)
            texts.append(world.document(person, rng))
            doc = encode(texts[-1:])
            start = time.perf_counter()
            entry = memory.compress(doc["input_ids"], doc["attention_mask"])
            bank = entry if bank is None else torch.cat([bank, entry])
            seconds += time.perf_counter() - start
            people.append(person)
            written += 1
        first_f1, _, _ = asked(people[:first_docs])
        newest_f1, answer_s, questions = asked(people[-first_docs:])
        rows.append({"bank": written, "bytes_per_document": bank.numel() * bank.element_size() / written,
                     "write_s_per_document": seconds / max(1, written - since), "answer_s_per_question":
                     answer_s / questions, "first_docs_f1": first_f1, "newest_docs_f1": newest_f1})
        seconds = 0.0
    return {"gold_entry_f1": gold_entry_f1(people[:first_docs]),
            "soft_token_overlap": soft_token_overlap(texts[:first_docs]),
            "config": {k: cfg.method[k] for k in ("memory_tokens", "top_k_aggregation", "top_k", "window",
                                                  "self_matching", "memory_aware")}, "rows": rows}


def format_cost(res: dict) -> str:
    lines = ["| bank | bytes per document | write s per document | answer s per question | F1 first docs | "
             "F1 newest docs |", "|---|---|---|---|---|---|"]
    for r in res["rows"]:
        lines.append(f"| {r['bank']} | {r['bytes_per_document']:,.0f} | {r['write_s_per_document']:.4f} | "
                     f"{r['answer_s_per_question']:.4f} | {r['first_docs_f1']:.3f} | {r['newest_docs_f1']:.3f} |")
    lines += ["", f"F1 on the first documents' questions, each reading its own entry alone: {res['gold_entry_f1']:.3f}",
              f"soft tokens' overlap (mean cosine of two soft tokens' picks over a document): "
              f"{res['soft_token_overlap']:.3f}"]
    return "\n".join(lines)
