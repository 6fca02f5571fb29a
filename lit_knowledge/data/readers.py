"""Readers for real knowledge data sets, and the data sources built on them.

Each reader parses one public file format into the canonical records (`Document`, `Probe`,
`Edit`). The accepted layouts are spelled out in each docstring and in data/README.md.

A malformed file stops with one `UserError` line that names the file, the record and the field,
e.g. ``counterfact-val.json: record 12: missing field 'target_new' (expected CounterFact layout: ...)``.

Sources registered here (`data.source` in the config): squad, streamingqa, archivalqa and templama
give a `KnowledgeStream`. The edit data sets (counterfact, zsre, mquake, mquake_hops: an `EditStream`) are
read in lit_knowledge/data/edit_readers.py, with the file checks defined here.
"""

from __future__ import annotations

import csv
import gzip
import json
import re
from pathlib import Path
from typing import Any, Iterator, Optional

from lit_knowledge.data.records import Document, Probe
from lit_knowledge.data.sources import SOURCES
from lit_knowledge.data.streams import KnowledgeStream, chunk_documents
from lit_knowledge.errors import UserError

SQUAD_LAYOUT = (
    'SQuAD layout: {"data": [{"title", "paragraphs": [{"context", '
    '"qas": [{"id", "question", "answers": [{"text"}]}]}]}]}'
)
TEMPLAMA_LAYOUT = (
    "TempLAMA layout: a JSON list of facts (or of lists of facts), or JSONL; "
    "fact = {id, query with _X_, answer: [{name}], date: YYYY}"
)
STREAMINGQA_LAYOUT = "StreamingQA layout: JSONL of {qa_id, question, answers, evidence_id, ...}"
WMT_DOCS_LAYOUT = "WMT documents layout: JSONL of {sorting_key, publication_ts, text}"
ARCHIVALQA_LAYOUT = "ArchivalQA layout: CSV with a header row and columns question, answer, para_id, para"

HELDOUT_MIN_DOCS = 16  # a document source with more documents than this ...
HELDOUT_DOCS = 8  # ... keeps its last this-many documents out of the stream as held-out text


# ----------------------------------------------------------------------------- small helpers


def _check_file(path: str | Path) -> Path:
    p = Path(path)
    if not p.is_file():
        raise UserError(f"data file not found: {path}" + (" (it is a directory)" if p.is_dir() else ""))
    return p


def _open_text(path: Path):
    """Open a text file for reading; `.gz` files are decompressed on the fly."""
    if path.suffix == ".gz":
        return gzip.open(path, "rt", encoding="utf-8")
    return path.open(encoding="utf-8")


def _load_json(path: str | Path, layout: str) -> Any:
    p = _check_file(path)
    try:
        with _open_text(p) as f:
            return json.load(f)
    except json.JSONDecodeError as e:
        raise UserError(f"{path}: bad JSON at line {e.lineno} column {e.colno}: {e.msg} (expected {layout})") from None
    except (UnicodeDecodeError, OSError) as e:
        raise UserError(f"{path}: cannot read the file: {e} (expected {layout})") from None


def _iter_jsonl(path: str | Path, layout: str) -> Iterator[tuple[str, Any]]:
    """("line N", parsed object) for every non-empty line of a JSONL file (.gz too)."""
    p = _check_file(path)
    try:
        with _open_text(p) as f:
            for lineno, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    obj = json.loads(line)
                except json.JSONDecodeError as e:
                    raise UserError(f"{path}: line {lineno}: bad JSON: {e.msg} (expected {layout})") from None
                yield f"line {lineno}", obj
    except (UnicodeDecodeError, OSError) as e:
        raise UserError(f"{path}: cannot read the file: {e} (expected {layout})") from None


_TYPE_NAMES = {str: "a string", int: "an integer", float: "a number", bool: "a boolean", list: "a list",
               dict: "an object", type(None): "null"}


def _type_name(value: Any) -> str:
    return _TYPE_NAMES.get(type(value), type(value).__name__)


class _Where:
    """Where a record sits in a file; builds the one-line error messages of the readers."""

    def __init__(self, path: str | Path, record: str, layout: str):
        self.path, self.record, self.layout = path, record, layout

    def error(self, what: str) -> UserError:
        return UserError(f"{self.path}: {self.record}: {what} (expected {self.layout})")

    def obj(self, value: Any) -> dict:
        if not isinstance(value, dict):
            raise self.error(f"should be a JSON object, got {_type_name(value)}")
        return value

    def get(self, rec: dict, key: str, typ: type | tuple = str, nonempty: bool = False) -> Any:
        """rec[key], checked to exist, to have type `typ` and (optionally) to be non-empty."""
        if key not in rec:
            raise self.error(f"missing field {key!r}")
        value = rec[key]
        types = typ if isinstance(typ, tuple) else (typ,)
        if not isinstance(value, types) or (isinstance(value, bool) and bool not in types):
            expected = " or ".join(_TYPE_NAMES.get(t, t.__name__) for t in types)
            raise self.error(f"field {key!r} should be {expected}, got {_type_name(value)}")
        if nonempty and not (value.strip() if isinstance(value, str) else value):
            raise self.error(f"field {key!r} is empty")
        return value

    def strings(self, rec: dict, key: str, nonempty: bool = True) -> list[str]:
        """rec[key] as a list of strings (a single string is accepted as a list of one)."""
        value = self.get(rec, key, (list, str))
        items = [value] if isinstance(value, str) else value
        for i, item in enumerate(items):
            if not isinstance(item, str):
                raise self.error(f"field {key!r}[{i}] should be a string, got {_type_name(item)}")
        if nonempty and not any(s.strip() for s in items):
            raise self.error(f"field {key!r} is empty")
        return items


def _dedup(items: list[str]) -> list[str]:
    """Drop repeated strings, keeping the first occurrence's position."""
    return list(dict.fromkeys(items))


# ----------------------------------------------------------------------------- SQuAD


def read_squad(path: str | Path) -> tuple[list[Document], list[Probe]]:
    """Parse a SQuAD v1.1 JSON file (v2.0 too: unanswerable questions are skipped).

    Every paragraph becomes a `Document` with id ``"<title>-<paragraph index>"`` and time = its
    position in the file (0, 1, 2, ...), so the stream keeps the file's order. Every question
    becomes an efficacy `Probe` with the question's `id`; its answers are the answer texts of all
    annotators, repeats removed, first-seen order kept. `answer_start` is not needed and not checked.
    """
    raw = _load_json(path, SQUAD_LAYOUT)
    top = _Where(path, "top level", SQUAD_LAYOUT)
    articles = top.get(top.obj(raw), "data", list)
    documents: list[Document] = []
    probes: list[Probe] = []
    seen_docs: set[str] = set()
    seen_qas: set[str] = set()
    for a, article in enumerate(articles):
        where = _Where(path, f"data[{a}]", SQUAD_LAYOUT)
        article = where.obj(article)
        title = where.get(article, "title", str, nonempty=True)
        paragraphs = where.get(article, "paragraphs", list)
        for p, paragraph in enumerate(paragraphs):
            where = _Where(path, f"data[{a}].paragraphs[{p}]", SQUAD_LAYOUT)
            paragraph = where.obj(paragraph)
            context = where.get(paragraph, "context", str, nonempty=True)
            qas = where.get(paragraph, "qas", list)
            doc_id = f"{title}-{p}"
            if doc_id in seen_docs:
                raise where.error(f"document id {doc_id!r} repeats (two articles titled {title!r})")
            seen_docs.add(doc_id)
            documents.append(Document(id=doc_id, text=context, time=len(documents)))
            for q, qa in enumerate(qas):
                where = _Where(path, f"data[{a}].paragraphs[{p}].qas[{q}]", SQUAD_LAYOUT)
                qa = where.obj(qa)
                qa_id = where.get(qa, "id", str, nonempty=True)
                where = _Where(path, f"data[{a}].paragraphs[{p}].qas[{q}] (id {qa_id})", SQUAD_LAYOUT)
                question = where.get(qa, "question", str, nonempty=True)
                answers = where.get(qa, "answers", list)
                if qa.get("is_impossible") is True:
                    continue
                if not answers:
                    raise where.error("field 'answers' is empty")
                texts = []
                for k, answer in enumerate(answers):
                    w = _Where(path, f"data[{a}].paragraphs[{p}].qas[{q}].answers[{k}] (id {qa_id})", SQUAD_LAYOUT)
                    texts.append(w.get(w.obj(answer), "text", str, nonempty=True))
                if qa_id in seen_qas:
                    raise where.error(f"question id {qa_id!r} repeats")
                seen_qas.add(qa_id)
                probes.append(Probe(id=qa_id, doc_id=doc_id, question=question, answers=_dedup(texts), kind="efficacy"))
    return documents, probes


# ----------------------------------------------------------------------------- TempLAMA


def _templama_year(date: Any, where: _Where) -> int:
    if isinstance(date, int) and not isinstance(date, bool):
        return date
    if isinstance(date, str) and re.fullmatch(r"\d{4}", date.strip()):
        return int(date)
    raise where.error(f"field 'date' should be a year like \"2019\", got {date!r}")


def _templama_question(query: str) -> str:
    """The cloze question of a TempLAMA query: the text before `_X_` when only punctuation follows it."""
    before, after = query.split("_X_", 1)
    if not after.strip(" .?!"):
        return before.rstrip()
    return query.replace("_X_", "___")


def read_templama(path: str | Path) -> tuple[list[Document], list[Probe]]:
    """Parse TempLAMA-style dated facts (Dhingra et al. 2022 layout).

    Accepted: a JSON list of facts, a JSON list of groups (lists of facts about one subject and
    relation, as in time_editing.json), or JSONL with one fact per line (.jsonl / .jsonl.gz).
    A fact is ``{id, query, answer: [{name, wikidata_id}], date: "YYYY", relation, ...}`` where the
    query holds `_X_` in place of the answer; `most_frequent_answer` / `most_recent_answer` are not used.

    Each fact -> Document(id=fact id, text=query with _X_ replaced by the answer names joined by
    " and ", time=year) and an efficacy Probe(id=fact id, doc_id=fact id, question=the cloze
    question, answers=all answer names). The cloze question is the query's text before `_X_`
    ("Tom Brady plays for") when only punctuation follows `_X_`, else the query with `_X_` shown
    as "___". The question carries no year: a later fact about the same query supersedes it
    (see `templama_source`). Documents come in file order; the stream orders them by year.
    """
    facts = _templama_facts(path)
    documents, probes = [], []
    seen: set[str] = set()
    for record, fact in facts:
        where = _Where(path, record, TEMPLAMA_LAYOUT)
        fact = where.obj(fact)
        fact_id = where.get(fact, "id", str, nonempty=True)
        where = _Where(path, f"{record} (id {fact_id})", TEMPLAMA_LAYOUT)
        query = where.get(fact, "query", str, nonempty=True)
        if "_X_" not in query:
            raise where.error("field 'query' has no _X_ slot")
        answers = where.get(fact, "answer", list, nonempty=True)
        names = []
        for k, answer in enumerate(answers):
            w = _Where(path, f"{record} (id {fact_id}) answer[{k}]", TEMPLAMA_LAYOUT)
            names.append(w.get(w.obj(answer), "name", str, nonempty=True))
        names = _dedup(names)
        year = _templama_year(where.get(fact, "date", (str, int)), where)
        if fact_id in seen:
            raise where.error(f"fact id {fact_id!r} repeats")
        seen.add(fact_id)
        documents.append(Document(id=fact_id, text=query.replace("_X_", " and ".join(names)), time=year))
        probes.append(Probe(id=fact_id, doc_id=fact_id, question=_templama_question(query), answers=names))
    return documents, probes


def _templama_facts(path: str | Path) -> list[tuple[str, Any]]:
    """(record label, fact object) pairs from any of the three accepted TempLAMA layouts."""
    name = str(path)
    if name.endswith(".jsonl") or name.endswith(".jsonl.gz"):
        return list(_iter_jsonl(path, TEMPLAMA_LAYOUT))
    raw = _load_json(path, TEMPLAMA_LAYOUT)
    if not isinstance(raw, list):
        raise _Where(path, "top level", TEMPLAMA_LAYOUT).error(f"should be a JSON list, got {_type_name(raw)}")
    facts = []
    for g, item in enumerate(raw):
        if isinstance(item, list):
            facts.extend((f"record {g}[{k}]", fact) for k, fact in enumerate(item))
        else:
            facts.append((f"record {g}", item))
    return facts


def templama_superseded(steps) -> dict[int, set[str]]:
    """For each step k, the ids of probes whose fact a document of step k replaces.

    Facts with the same question are one subject and relation over time; each fact supersedes the
    one before it (by year). A superseded probe may sit in step k itself when both years land there.
    """
    step_of = {p.id: s.index for s in steps for p in s.probes}
    by_question: dict[str, list[Probe]] = {}
    for s in steps:
        for p in s.probes:
            by_question.setdefault(p.question, []).append(p)
    superseded: dict[int, set[str]] = {}
    for chain in by_question.values():
        for older, newer in zip(chain, chain[1:]):
            superseded.setdefault(step_of[newer.id], set()).add(older.id)
    return superseded


# ----------------------------------------------------------------------------- StreamingQA


def _default_wmt_docs(qa_path: Path) -> Path:
    for name in ("wmt_docs.jsonl", "wmt_docs.jsonl.gz"):
        if (qa_path.parent / name).is_file():
            return qa_path.parent / name
    raise UserError(f"StreamingQA needs the evidence articles: no wmt_docs.jsonl(.gz) next to {qa_path} "
                    f"({WMT_DOCS_LAYOUT}; see data/README.md)")


def read_streamingqa(path: str | Path, docs_path: str | Path | None = None) -> tuple[list[Document], list[Probe]]:
    """Parse StreamingQA questions (JSONL, optionally .gz) and the WMT articles they cite.

    Question lines (the official streaminqa_{train,valid,eval}.jsonl.gz): ``{qa_id, question,
    answers: [str], evidence_id, evidence_ts, question_ts, answers_additional, recent_or_past,
    written_or_generated, toxicity_*}``; qa_id, question, answers and evidence_id are required, the
    rest are not used (answers_additional is not an evaluation reference; the article's own
    publication_ts gives the time, evidence_ts is the same date).
    The question files carry no article text, so the articles come from `docs_path` (default:
    wmt_docs.jsonl or wmt_docs.jsonl.gz next to the question file): JSONL of ``{sorting_key,
    publication_ts, text}``, the fields of the `WMTDoc`s that StreamingQA's extraction.py yields.

    Every article that some question cites -> Document(id=sorting_key, text, time=publication_ts,
    UTC seconds); every question whose article is present -> efficacy Probe(id=qa_id,
    doc_id=evidence_id, answers=answers, repeats removed). Questions whose article is absent from the
    docs file are dropped (so a docs file may hold a subset); none present at all is an error.
    """
    qa_path = _check_file(path)
    docs_file = _check_file(docs_path) if docs_path is not None else _default_wmt_docs(qa_path)
    questions = []
    for line, rec in _iter_jsonl(path, STREAMINGQA_LAYOUT):
        where = _Where(path, line, STREAMINGQA_LAYOUT)
        rec = where.obj(rec)
        qa_id = where.get(rec, "qa_id", str, nonempty=True)
        where = _Where(path, f"{line} (qa_id {qa_id})", STREAMINGQA_LAYOUT)
        questions.append(Probe(id=qa_id, doc_id=where.get(rec, "evidence_id", str, nonempty=True),
                               question=where.get(rec, "question", str, nonempty=True),
                               answers=_dedup(where.strings(rec, "answers"))))
    wanted = {p.doc_id for p in questions}
    documents: dict[str, Document] = {}
    for line, rec in _iter_jsonl(docs_file, WMT_DOCS_LAYOUT):
        where = _Where(docs_file, line, WMT_DOCS_LAYOUT)
        rec = where.obj(rec)
        key = where.get(rec, "sorting_key", str, nonempty=True)
        if key in wanted and key not in documents:
            where = _Where(docs_file, f"{line} (sorting_key {key!r})", WMT_DOCS_LAYOUT)
            documents[key] = Document(id=key, text=where.get(rec, "text", str, nonempty=True),
                                      time=where.get(rec, "publication_ts", int))
    if questions and not documents:
        raise UserError(f"{docs_file}: none of the {len(wanted)} articles cited by {path} is in it "
                        f"(expected {WMT_DOCS_LAYOUT}, keyed by the questions' evidence_id)")
    docs = sorted(documents.values(), key=lambda d: d.time)
    return docs, [p for p in questions if p.doc_id in documents]


# ----------------------------------------------------------------------------- ArchivalQA


def _archivalqa_time(row: dict, where: _Where) -> Optional[int]:
    for column in ("date", "pub_date"):
        value = (row.get(column) or "").strip()
        if value:
            m = re.match(r"(\d{4})-?(\d{2})-?(\d{2})", value)
            if not m:
                raise where.error(f"column {column!r} should be a date like 1988-05-26, got {value!r}")
            return int("".join(m.groups()))
    return None


def read_archivalqa(path: str | Path) -> tuple[list[Document], list[Probe]]:
    """Parse an ArchivalQA CSV file (with a header row; .csv or .csv.gz).

    Required columns: `question`, `answer`, `para_id` (NYT document id and paragraph number,
    "1839755_20") and `para` (the paragraph text). Optional: `id` (else "archivalqa-<row>"),
    `date` or `pub_date` (YYYY-MM-DD or YYYYMMDD). Other columns of the release (`org_answer`, the
    answer as the paragraph words it before temporal rewriting; `answer_start`, `trans_que`,
    `trans_ans`, `source`) are not used: `answer` is the reference.

    Each distinct para_id -> Document(id=para_id, text=para, time=date as YYYYMMDD when given, else
    its order of first appearance); each row -> efficacy Probe(id, doc_id=para_id, question,
    answers=[answer]). Rows of one para_id must carry the same paragraph text.
    """
    p = _check_file(path)
    layout = ARCHIVALQA_LAYOUT
    documents: dict[str, Document] = {}
    probes = []
    try:
        with _open_text(p) as f:
            reader = csv.DictReader(f)
            header = reader.fieldnames or []
            for column in ("question", "answer", "para_id", "para"):
                if column not in header:
                    raise _Where(path, "header", layout).error(f"missing column {column!r}")
            for i, row in enumerate(reader):
                where = _Where(path, f"row {i + 2}", layout)  # row 1 is the header
                if None in row:
                    raise where.error("has more cells than the header has columns")
                if any(v is None for v in row.values()):
                    raise where.error("has fewer cells than the header has columns")
                values = {}
                for column in ("question", "answer", "para_id", "para"):
                    values[column] = row[column].strip()
                    if not values[column]:
                        raise where.error(f"column {column!r} is empty")
                qa_id = (row.get("id") or "").strip() or f"archivalqa-{i}"
                para_id = values["para_id"]
                time = _archivalqa_time(row, where)
                if para_id not in documents:
                    documents[para_id] = Document(id=para_id, text=values["para"],
                                                  time=len(documents) if time is None else time)
                elif documents[para_id].text != values["para"]:
                    raise where.error(f"para_id {para_id!r} has a different 'para' text than in an earlier row")
                probes.append(Probe(id=qa_id, doc_id=para_id, question=values["question"], answers=[values["answer"]]))
    except csv.Error as e:
        raise UserError(f"{path}: bad CSV: {e} (expected {layout})") from None
    except (UnicodeDecodeError, OSError) as e:
        raise UserError(f"{path}: cannot read the file: {e} (expected {layout})") from None
    return list(documents.values()), probes


# ----------------------------------------------------------------------------- sources


REPO_ROOT = Path(__file__).resolve().parents[2]


def _path(data_cfg, source: str) -> str:
    """data.path as given; a relative path that does not exist from here is taken from the repository root,
    so shipped configs can say `data/<source>/...` and run from any directory."""
    path = getattr(data_cfg, "path", None)
    if not path:
        raise UserError(f"data.path is required for source {source} (see data/README.md for the files it reads)")
    path = Path(str(path)).expanduser()
    if not path.is_absolute() and not path.exists() and (REPO_ROOT / path).exists():
        path = REPO_ROOT / path
    return str(path)


def split_questions(probes: list[Probe], share: float) -> tuple[dict[str, list[tuple[str, str]]], list[Probe]]:
    """Move `share` of each document's questions into its QA set: (doc id -> [(question, answer)], probes left).

    Questions are taken evenly through each document's list (with share 0.5, every second one, starting with
    the second), so a document with one question keeps it as a probe. The QA set and the probes never share a
    question: training on the QA set measures what a method makes of a document beyond the trained strings.
    """
    if not 0.0 <= share < 1.0:
        raise UserError(f"data.qa_share must be in [0, 1), got {share}: it is the share of a document's questions "
                        "that become its QA set")
    train_qa: dict[str, list[tuple[str, str]]] = {}
    kept, position = [], {}
    for p in probes:
        i = position[p.doc_id] = position.get(p.doc_id, -1) + 1
        if int((i + 1) * share) > int(i * share):
            train_qa.setdefault(p.doc_id, []).append((p.question, p.answers[0]))
        else:
            kept.append(p)
    return train_qa, kept


def document_stream(documents: list[Document], probes: list[Probe], data_cfg) -> KnowledgeStream:
    """A KnowledgeStream of `docs_per_step` documents a step, in time order.

    With more than 16 documents, the last 8 (in stream order) stay out of the stream and their
    texts become the held-out texts (general ability = language-model loss on them); their probes
    are dropped. Real data has no background (locality) probes. With `data.qa_share`, a share of each
    document's questions becomes its QA set (`split_questions`). When `data.num_steps` leaves documents
    out of the stream, their texts are the stream's unrelated texts (what a method may rehearse).
    """
    docs_per_step = int(data_cfg.docs_per_step)
    if docs_per_step < 1:
        raise UserError(f"data.docs_per_step must be at least 1, got {docs_per_step}")
    ordered = sorted(documents, key=lambda d: d.time)
    heldout: list[str] = []
    if len(ordered) > HELDOUT_MIN_DOCS:
        heldout = [d.text for d in ordered[-HELDOUT_DOCS:]]
        ordered = ordered[:-HELDOUT_DOCS]
    kept = {d.id for d in ordered}
    train_qa, probes = split_questions([p for p in probes if p.doc_id in kept], float(data_cfg.qa_share))
    steps = chunk_documents(ordered, probes, docs_per_step)
    for step in steps:
        step.train_qa = {d.id: train_qa[d.id] for d in step.documents if d.id in train_qa}
    used = steps if data_cfg.num_steps is None else steps[: data_cfg.num_steps]
    in_stream = {d.id for step in used for d in step.documents}
    unrelated = [d.text for d in ordered if d.id not in in_stream]
    return KnowledgeStream(steps=steps, heldout_texts=heldout, unrelated_texts=unrelated).truncate(data_cfg.num_steps)


@SOURCES.register("squad")
def squad_source(data_cfg) -> KnowledgeStream:
    """SQuAD paragraphs as a document stream (the SQuAD-Seq setting of MAC / CMT)."""
    return document_stream(*read_squad(_path(data_cfg, "squad")), data_cfg)


@SOURCES.register("templama")
def templama_source(data_cfg) -> KnowledgeStream:
    """TempLAMA facts by year; a probe is superseded at the step where a newer fact on its query arrives."""
    documents, probes = read_templama(_path(data_cfg, "templama"))
    stream = document_stream(documents, probes, data_cfg)
    stream.superseded = templama_superseded(stream.steps)
    return stream


@SOURCES.register("streamingqa")
def streamingqa_source(data_cfg) -> KnowledgeStream:
    """StreamingQA articles by publication time (data.path = the question JSONL; articles beside it)."""
    return document_stream(*read_streamingqa(_path(data_cfg, "streamingqa")), data_cfg)


@SOURCES.register("archivalqa")
def archivalqa_source(data_cfg) -> KnowledgeStream:
    """ArchivalQA paragraphs (by date when the CSV has one, else file order) as a document stream."""
    return document_stream(*read_archivalqa(_path(data_cfg, "archivalqa")), data_cfg)
