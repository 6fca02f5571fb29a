"""Readers for the edit data sets (CounterFact, zsRE, MQuAKE), and the edit sources built on them.

Each reader parses one public file format into `Edit` records; the accepted layouts are spelled out in each
docstring and in data/README.md. The file checks and the one-line errors (naming the file, the record and
the field) are those of lit_knowledge/data/readers.py, which reads the document data sets.

Sources registered here (`data.source` in the config): counterfact, zsre, mquake and mquake_hops, each an
`EditStream` of cloze prompts.
"""

from __future__ import annotations

from pathlib import Path

from lit_knowledge.data.readers import _load_json, _path, _type_name, _Where
from lit_knowledge.data.records import Edit
from lit_knowledge.data.sources import SOURCES
from lit_knowledge.data.streams import EditStream

COUNTERFACT_LAYOUT = (
    "CounterFact layout: a JSON list of {case_id, prompt, subject, target_new, ground_truth, rephrase_prompt, "
    "locality_prompt, locality_ground_truth}, or ROME's {case_id, requested_rewrite, paraphrase_prompts, "
    "neighborhood_prompts}"
)
ZSRE_LAYOUT = "zsRE MEND layout: a JSON list of {subject, src, alt, answers, rephrase, loc, loc_ans}"
MQUAKE_LAYOUT = (
    "MQuAKE layout: a JSON list of {case_id, requested_rewrite: [{prompt, subject, target_new: {str}, "
    "target_true: {str}, question}], questions, new_answer}"
)


def _fill(prompt: str, subject: str) -> str:
    """Fill a `{}` subject slot if the prompt has one (ROME / MQuAKE templates)."""
    return prompt.replace("{}", subject) if "{}" in prompt else prompt


# ----------------------------------------------------------------------------- CounterFact


def read_counterfact(path: str | Path) -> list[Edit]:
    """Parse CounterFact edit requests, in either of two layouts (chosen per record).

    Toolkit layout (EasyEdit's counterfact-*.json, and the slice in data/counterfact): ``{case_id, prompt,
    subject, target_new, ground_truth, rephrase_prompt, locality_prompt, locality_ground_truth}``
    -> Edit(id=str(case_id), prompt, subject, target_new, target_true=ground_truth,
    paraphrases=[rephrase_prompt], locality=[(locality_prompt, locality_ground_truth)]).

    ROME's original layout: ``{case_id, requested_rewrite: {prompt with "{}", subject,
    target_new: {str}, target_true: {str}}, paraphrase_prompts, neighborhood_prompts}`` -> the prompt
    with the subject filled in, paraphrases = paraphrase_prompts, and locality = every
    neighborhood prompt paired with target_true (ROME's neighbours share the true object).
    """
    raw = _load_json(path, COUNTERFACT_LAYOUT)
    if not isinstance(raw, list):
        raise _Where(path, "top level", COUNTERFACT_LAYOUT).error(f"should be a JSON list, got {_type_name(raw)}")
    edits = []
    for i, rec in enumerate(raw):
        where = _Where(path, f"record {i}", COUNTERFACT_LAYOUT)
        rec = where.obj(rec)
        case_id = where.get(rec, "case_id", (int, str))
        where = _Where(path, f"record {i} (case_id {case_id})", COUNTERFACT_LAYOUT)
        if "requested_rewrite" in rec:
            edits.append(_rome_counterfact(rec, case_id, where))
            continue
        subject = where.get(rec, "subject", str, nonempty=True)
        edits.append(Edit(
            id=str(case_id),
            prompt=_fill(where.get(rec, "prompt", str, nonempty=True), subject),
            subject=subject,
            target_new=where.get(rec, "target_new", str, nonempty=True),
            target_true=where.get(rec, "ground_truth", str),
            paraphrases=[_fill(p, subject) for p in where.strings(rec, "rephrase_prompt")],
            locality=[(where.get(rec, "locality_prompt", str, nonempty=True),
                       where.get(rec, "locality_ground_truth", str, nonempty=True))],
        ))
    return edits


def _rome_counterfact(rec: dict, case_id, where: _Where) -> Edit:
    rewrite = where.get(rec, "requested_rewrite", dict)
    subject = where.get(rewrite, "subject", str, nonempty=True)
    target_new = where.get(where.get(rewrite, "target_new", dict), "str", str, nonempty=True)
    target_true = where.get(where.get(rewrite, "target_true", dict), "str", str)
    neighbours = where.strings(rec, "neighborhood_prompts", nonempty=False)
    return Edit(
        id=str(case_id),
        prompt=_fill(where.get(rewrite, "prompt", str, nonempty=True), subject),
        subject=subject,
        target_new=target_new,
        target_true=target_true,
        paraphrases=where.strings(rec, "paraphrase_prompts", nonempty=False),
        locality=[(p, target_true) for p in neighbours],
    )


# ----------------------------------------------------------------------------- zsRE


_NQ_PREFIX = "nq question: "


def read_zsre(path: str | Path) -> list[Edit]:
    """Parse zsRE edit requests in the MEND layout (a JSON list of objects).

    ``{subject, src, pred, rephrase, alt, answers, loc, loc_ans, cond}`` -> Edit(id="zsre-<index in
    file>", prompt=src, subject, target_new=alt, target_true=answers[0], paraphrases=[rephrase],
    locality=[(loc without its "nq question: " prefix, loc_ans)]). `pred` (the prediction of the
    MEND paper's model, not the truth) and `cond` are not used.

    A record whose `alt` is empty has nothing to edit towards and is skipped (the full 1k file
    has two: records 534 and 723), so its index is missing from the ids.
    """
    raw = _load_json(path, ZSRE_LAYOUT)
    if not isinstance(raw, list):
        raise _Where(path, "top level", ZSRE_LAYOUT).error(f"should be a JSON list, got {_type_name(raw)}")
    edits = []
    for i, rec in enumerate(raw):
        where = _Where(path, f"record {i}", ZSRE_LAYOUT)
        rec = where.obj(rec)
        subject = where.get(rec, "subject", str, nonempty=True)
        src = where.get(rec, "src", str, nonempty=True)
        alt = where.get(rec, "alt", str)
        answers = where.strings(rec, "answers")
        rephrase = where.get(rec, "rephrase", str, nonempty=True)
        loc = where.get(rec, "loc", str, nonempty=True)
        loc_ans = where.get(rec, "loc_ans", str, nonempty=True)
        if not alt.strip():
            continue
        if loc.startswith(_NQ_PREFIX):
            loc = loc[len(_NQ_PREFIX):]
        edits.append(Edit(id=f"zsre-{i}", prompt=src, subject=subject, target_new=alt, target_true=answers[0],
                          paraphrases=[rephrase], locality=[(loc, loc_ans)]))
    return edits


# ----------------------------------------------------------------------------- MQuAKE


def read_mquake(path: str | Path, unit: str = "case") -> list[Edit]:
    """Parse MQuAKE cases (MQuAKE-CF / -CF-3k / -T / -hard: a JSON list of case objects).

    A case holds a chain of `requested_rewrite`s (each ``{prompt with "{}", subject,
    target_new: {str}, target_true: {str}, question}``), multi-hop `questions` and the
    `new_answer` those questions have once *all* of the case's rewrites are applied.

    unit="case" (one Edit per case, id = str(case_id)): prompt/subject/target_new/target_true come
    from the first rewrite (prompt with the subject filled in); paraphrases = [that rewrite's
    `question`], the same fact asked as a question (the other rewrites state other facts, so they are
    not paraphrases); portability = [(q, new_answer) for q in questions]. Caveat: new_answer follows
    only when the case's other rewrites are applied too, which one Edit per case cannot express.
    unit="rewrite" (one Edit per rewrite, id = "<case_id>-<k>"): the faithful MQuAKE protocol; the
    multi-hop portability pairs sit on the case's last rewrite, so they are asked once the whole
    chain is in (and are dropped with it when a stream is cut before it).
    In both, locality is empty: MQuAKE has no unrelated-fact prompts (its `single_hops` are the
    chain's own, partly edited, facts), and `answer_alias` / `new_answer_alias` are not used.
    """
    if unit not in ("case", "rewrite"):
        raise ValueError(f"unit must be 'case' or 'rewrite', not {unit!r}")
    raw = _load_json(path, MQUAKE_LAYOUT)
    if not isinstance(raw, list):
        raise _Where(path, "top level", MQUAKE_LAYOUT).error(f"should be a JSON list, got {_type_name(raw)}")
    edits = []
    for i, rec in enumerate(raw):
        where = _Where(path, f"record {i}", MQUAKE_LAYOUT)
        rec = where.obj(rec)
        case_id = where.get(rec, "case_id", (int, str))
        where = _Where(path, f"record {i} (case_id {case_id})", MQUAKE_LAYOUT)
        rewrites = where.get(rec, "requested_rewrite", list, nonempty=True)
        questions = where.strings(rec, "questions")
        new_answer = where.get(rec, "new_answer", str, nonempty=True)
        portability = [(q, new_answer) for q in questions]
        case_edits = []
        for k, rewrite in enumerate(rewrites):
            w = _Where(path, f"record {i} (case_id {case_id}) requested_rewrite[{k}]", MQUAKE_LAYOUT)
            rewrite = w.obj(rewrite)
            subject = w.get(rewrite, "subject", str, nonempty=True)
            case_edits.append(Edit(
                id=f"{case_id}-{k}",
                prompt=_fill(w.get(rewrite, "prompt", str, nonempty=True), subject),
                subject=subject,
                target_new=w.get(w.get(rewrite, "target_new", dict), "str", str, nonempty=True),
                target_true=w.get(w.get(rewrite, "target_true", dict), "str", str),
                paraphrases=[w.get(rewrite, "question", str, nonempty=True)],
            ))
        if unit == "case":
            first = case_edits[0]
            first.id, first.portability = str(case_id), portability
            edits.append(first)
        else:
            case_edits[-1].portability = portability
            edits.extend(case_edits)
    return edits


def _edit_stream(edits: list[Edit], data_cfg) -> EditStream:
    """Cloze prompts (prompt -> " target"); no knowledge texts: the file does not say what a model was pretrained on."""
    return EditStream(edits, prompt_style="cloze").truncate(data_cfg.num_edits)


@SOURCES.register("counterfact")
def counterfact_source(data_cfg) -> EditStream:
    """CounterFact edit requests, in file order."""
    return _edit_stream(read_counterfact(_path(data_cfg, "counterfact")), data_cfg)


@SOURCES.register("zsre")
def zsre_source(data_cfg) -> EditStream:
    """zsRE (MEND layout) edit requests, in file order."""
    return _edit_stream(read_zsre(_path(data_cfg, "zsre")), data_cfg)


@SOURCES.register("mquake")
def mquake_source(data_cfg) -> EditStream:
    """MQuAKE, one edit per case (its first rewrite); see `read_mquake` for the portability caveat."""
    return _edit_stream(read_mquake(_path(data_cfg, "mquake"), unit="case"), data_cfg)


@SOURCES.register("mquake_hops")
def mquake_hops_source(data_cfg) -> EditStream:
    """MQuAKE, one edit per rewrite (every hop of a case's chain), multi-hop questions on the last hop."""
    return _edit_stream(read_mquake(_path(data_cfg, "mquake_hops"), unit="rewrite"), data_cfg)
