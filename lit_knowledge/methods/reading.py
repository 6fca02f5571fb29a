"""`bench reading`: can a model find a fact among several documents in its prompt?

MemoryLLM's pool holds the tokens of several writes and CMT's bank several documents' memories; reading either
means picking the asked person's document among others. This asks the same of the model with plain text: the
stream's documents joined as in the reader's pretraining, the asked one first or last of t of them.
"""

from __future__ import annotations

from lit_knowledge.data.prompts import qa_prompt
from lit_knowledge.data.world import reading_context
from lit_knowledge.errors import UserError
from lit_knowledge.evaluation.metrics import qa_scores
from lit_knowledge.methods.base import chat_tokenizer, load_stream
from lit_knowledge.methods.components import load_model
from lit_knowledge.methods.pretrain import reader_key
from lit_knowledge.models.generate import generate_answers


def reading_among_documents(cfg, max_documents: int = 5, probes_per_document: int = 4) -> dict:
    """Can the reader find a fact among several documents in its prompt? F1 on a document's probes when
    it is followed by t - 1 later documents of the stream (`after`, as a memory holds older writes behind
    newer ones) and when t - 1 earlier ones precede it (`before`), t = 1 .. max_documents; documents joined
    as in pretraining. The stream's documents, in order; the first `probes_per_document` probes of each."""
    if max_documents < 1:
        raise UserError("--documents must be >= 1")
    if probes_per_document < 1:
        raise UserError(f"probes_per_document={probes_per_document}: ask at least one probe per document")
    stream = load_stream(cfg)
    docs = [d for s in stream.steps for d in s.documents]
    if len(docs) < max_documents:
        raise UserError(f"the stream has {len(docs)} documents, fewer than max_documents={max_documents}; "
                        "raise data.world.num_steps or data.world.entities_per_step")
    probes: dict[str, list] = {}
    for s in stream.steps:
        for p in s.probes:
            probes.setdefault(p.doc_id, []).append(p)
    model, tokenizer = load_model(cfg.model, cfg)
    model.eval()
    chat = chat_tokenizer(cfg, tokenizer)
    res = {"reader": reader_key(cfg) if cfg.model.name == "reader" else cfg.model.name, "after": {}, "before": {}}
    # The floor: the same probes asked closed book (no document in the prompt).
    floor = [p for d in docs for p in probes.get(d.id, [])[:probes_per_document]]
    predictions = generate_answers(model, tokenizer, [qa_prompt(p.question, None, chat) for p in floor],
                                   cfg.eval.max_new_tokens, cfg.eval.batch_size)
    res["closed_book"] = {"f1": qa_scores(predictions, [p.answers for p in floor])["f1"], "probes": len(floor)}
    for t in range(1, max_documents + 1):
        for side in ("after", "before"):
            if t == 1 and side == "before":  # one document alone: the same prompts as `after`
                res["before"][1] = res["after"][1]
                continue
            prompts, answers = [], []
            for i in range(len(docs) - t + 1):  # the window docs[i : i + t]; the asked one first or last
                window = docs[i:i + t]
                asked = window[0] if side == "after" else window[-1]
                context = reading_context([d.text for d in window])
                for p in probes.get(asked.id, [])[:probes_per_document]:
                    prompts.append(qa_prompt(p.question, context, chat))
                    answers.append(p.answers)
            predictions = generate_answers(model, tokenizer, prompts, cfg.eval.max_new_tokens, cfg.eval.batch_size)
            res[side][t] = {"f1": qa_scores(predictions, answers)["f1"], "probes": len(prompts)}
    return res


def format_reading(res: dict) -> str:
    lines = [f"reader {res['reader']}: F1 on a document's probes with other documents in the prompt", "",
             "| documents in the prompt | asked document first (later ones after it) | asked document last |",
             "|---|---|---|"]
    lines.append(f"| 0 (closed book, the floor) | {res['closed_book']['f1']:.3f} | {res['closed_book']['f1']:.3f} |")
    for t in res["after"]:
        lines.append(f"| {t} | {res['after'][t]['f1']:.3f} | {res['before'][t]['f1']:.3f} |")
    return "\n".join(lines)
