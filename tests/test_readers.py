"""Readers of real data formats: exact counts on the full files, the shipped slices, malformed input, the CLI."""

from __future__ import annotations

import csv
import gzip
import json
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from lit_knowledge.data.edit_readers import read_counterfact, read_mquake, read_zsre
from lit_knowledge.data.readers import read_archivalqa, read_squad, read_streamingqa, read_templama
from lit_knowledge.data.sources import SOURCES
from lit_knowledge.data.streams import EditStream, KnowledgeStream
from lit_knowledge.errors import UserError

REPO = Path(__file__).parents[1]
SHARED = Path(__file__).parents[1].parent / "shared" / "data"
SLICES = REPO / "data"

FULL = {
    "squad": SHARED / "squad" / "dev-v1.1.part1.json",
    "counterfact": SHARED / "counterfact" / "counterfact-val.json",
    "zsre": SHARED / "zsre" / "zsre_mend_train-1k.json",
    "mquake": SHARED / "mquake" / "MQuAKE-hard.part1.json",
    "templama": SHARED / "templama" / "time_editing.json",
}
MINI = {
    "squad": SLICES / "squad" / "squad-mini.json",
    "counterfact": SLICES / "counterfact" / "counterfact-mini.json",
    "zsre": SLICES / "zsre" / "zsre-mini.json",
    "mquake": SLICES / "mquake" / "mquake-mini.json",
    "templama": SLICES / "templama" / "templama-mini.json",
}


def full(name: str) -> Path:
    path = FULL[name]
    if not path.is_file():
        pytest.skip(f"real data not found: {path}")
    return path


def cfg(path=None, docs_per_step=10, num_steps=None, num_edits=None, qa_share=0.0):
    return SimpleNamespace(path=None if path is None else str(path), docs_per_step=docs_per_step,
                           num_steps=num_steps, num_edits=num_edits, qa_share=qa_share)


def one_line_error(fn, *args, **kwargs) -> str:
    with pytest.raises(UserError) as info:
        fn(*args, **kwargs)
    message = str(info.value)
    assert "\n" not in message, message
    return message


# ----------------------------------------------------------------------------- the full files


def test_squad_full():
    documents, probes = read_squad(full("squad"))
    assert (len(documents), len(probes)) == (1048, 5696)  # 24 articles
    assert [d.time for d in documents] == list(range(1048))
    assert len({d.id for d in documents}) == 1048 and len({p.id for p in probes}) == 5696
    assert documents[0].id == "Super_Bowl_50-0" and documents[0].text.startswith("Super Bowl 50 was an American")
    p = probes[0]
    assert (p.id, p.doc_id, p.kind) == ("56be4db0acb8001400a502ec", "Super_Bowl_50-0", "efficacy")
    assert p.question == "Which NFL team represented the AFC at Super Bowl 50?"
    assert p.answers == ["Denver Broncos"]  # three identical annotations, deduplicated
    assert sum(len(p.answers) for p in probes) == 9593  # distinct answer texts over all questions
    text = {d.id: d.text for d in documents}
    assert all(a in text[p.doc_id] for p in probes for a in p.answers)  # answers are spans of their paragraph


def test_counterfact_full():
    edits = read_counterfact(full("counterfact"))
    assert len(edits) == 1919
    e = edits[0]
    assert (e.id, e.prompt, e.subject, e.target_new, e.target_true) == ("10", "BBC One, by", "BBC One", "Sega", "BBC")
    assert e.paraphrases == ["BBC One is my favorite product out of everything owned by"]
    assert e.locality == [("BBC Radio, by", "BBC")] and e.portability == []
    assert all(e.subject in e.prompt for e in edits)


def test_zsre_full():
    edits = read_zsre(full("zsre"))
    assert len(edits) == 998  # 1,000 records, two with an empty 'alt' are skipped
    ids = {e.id for e in edits}
    assert "zsre-534" not in ids and "zsre-723" not in ids and "zsre-999" in ids
    e = edits[0]
    assert (e.id, e.prompt, e.subject) == ("zsre-0", "What is the product made by UniFirst?", "UniFirst")
    assert (e.target_new, e.target_true) == ("unmanned aircraft", "uniform")
    assert e.paraphrases == ["What will be the product of UniFirst?"]
    assert e.locality == [("john goodman's character in the big lebowski", "Walter Sobchak")]
    assert not any(e.locality[0][0].startswith("nq question:") for e in edits)


def test_mquake_full():
    path = full("mquake")
    edits = read_mquake(path)
    assert len(edits) == 214
    e = edits[0]
    assert (e.id, e.prompt, e.subject) == ("7417", "Hey Jude was performed by", "Hey Jude")
    assert (e.target_new, e.target_true) == ("Madonna", "The Beatles")
    assert e.paraphrases == ["Who performed Hey Jude?"] and e.locality == []
    assert len(e.portability) == 3 and all(a == "Arabic" for _, a in e.portability)
    assert e.portability[0][0].startswith("What is the official language of the country of citizenship")
    hops = read_mquake(path, unit="rewrite")
    assert len(hops) == 856  # 4 rewrites in every case
    assert [h.id for h in hops[:4]] == ["7417-0", "7417-1", "7417-2", "7417-3"]
    assert (hops[3].prompt, hops[3].target_new) == ("The official language of Australia is", "Arabic")
    assert hops[0].portability == [] and hops[3].portability == e.portability
    assert not any("{}" in h.prompt for h in hops)


def test_templama_full():
    documents, probes = read_templama(full("templama"))
    assert (len(documents), len(probes)) == (2067, 2067)
    assert len({p.question for p in probes}) == 928  # one query per group
    d, p = documents[0], probes[0]
    assert (d.id, d.text, d.time) == ("Q313381_P54_2019", "Tom Brady plays for New England Patriots.", 2019)
    assert (p.id, p.doc_id, p.question, p.answers) == (d.id, d.id, "Tom Brady plays for", ["New England Patriots"])
    assert {d.time for d in documents} == set(range(2010, 2021))


def test_document_sources_on_full_files():
    squad = SOURCES.get("squad")(cfg(full("squad"), docs_per_step=10))
    assert isinstance(squad, KnowledgeStream)
    assert squad.counts()["documents"] == 1040 and len(squad.steps) == 104 and len(squad.heldout_texts) == 8
    assert squad.background_probes == []
    temporal = SOURCES.get("templama")(cfg(full("templama"), docs_per_step=100))
    assert temporal.counts()["documents"] == 2059
    times = [d.time for s in temporal.steps for d in s.documents]
    assert times == sorted(times)
    step_of = {p.id: s.index for s in temporal.steps for p in s.probes}
    brady_2020 = step_of["Q313381_P54_2020"]
    assert "Q313381_P54_2019" in temporal.superseded[brady_2020]
    assert all(pid in step_of and step_of[pid] <= k for k, ids in temporal.superseded.items() for pid in ids)


def test_edit_sources_on_full_files():
    stream = SOURCES.get("counterfact")(cfg(full("counterfact"), num_edits=50))
    assert isinstance(stream, EditStream) and len(stream.edits) == 50 and stream.heldout_texts == []
    assert len(SOURCES.get("mquake_hops")(cfg(full("mquake"))).edits) == 856


# ----------------------------------------------------------------------------- the shipped slices


def test_slices():
    documents, probes = read_squad(MINI["squad"])
    assert (len(documents), len(probes)) == (47, 232)
    assert documents[0].id == "Sky_(United_Kingdom)-0"
    assert len(read_counterfact(MINI["counterfact"])) == 100
    assert len(read_zsre(MINI["zsre"])) == 100
    assert len(read_mquake(MINI["mquake"])) == 100
    documents, probes = read_templama(MINI["templama"])
    assert (len(documents), len(probes)) == (46, 46)


def test_slices_are_unchanged_records_of_the_full_files():
    assert read_counterfact(MINI["counterfact"]) == read_counterfact(full("counterfact"))[:100]
    assert read_zsre(MINI["zsre"]) == read_zsre(full("zsre"))[:100]
    assert read_mquake(MINI["mquake"]) == read_mquake(full("mquake"))[:100]
    assert read_templama(MINI["templama"])[0] == read_templama(full("templama"))[0][:46]
    full_probes = {p.id: p for p in read_squad(full("squad"))[1]}
    assert all(full_probes[p.id] == p for p in read_squad(MINI["squad"])[1])


def test_sources_on_slices():
    squad = SOURCES.get("squad")(cfg(MINI["squad"], docs_per_step=5, num_steps=3))
    assert len(squad.steps) == 3 and all(len(s.documents) == 5 for s in squad.steps)
    assert len(squad.heldout_texts) == 8  # 47 > 16 documents: the last 8 are held out
    templama = SOURCES.get("templama")(cfg(MINI["templama"], docs_per_step=4))
    assert templama.counts()["documents"] == 38
    zsre = SOURCES.get("zsre")(cfg(MINI["zsre"], num_edits=7))
    assert zsre.counts() == {"steps": 7, "documents": 0, "probes": 0, "background_probes": 0, "edits": 7}
    assert len(SOURCES.get("mquake")(cfg(MINI["mquake"])).edits) == 100
    assert len(SOURCES.get("counterfact")(cfg(MINI["counterfact"])).edits) == 100


def test_small_document_source_keeps_everything(tmp_path):
    path = tmp_path / "tiny.json"
    path.write_text(json.dumps({"data": [{"title": "T", "paragraphs": [
        {"context": f"Paragraph {i}.", "qas": [{"id": f"q{i}", "question": f"Which {i}?", "answers": [{"text": f"{i}"}]}]}
        for i in range(5)]}]}))
    stream = SOURCES.get("squad")(cfg(path, docs_per_step=2))
    assert stream.counts()["documents"] == 5 and stream.heldout_texts == [] and len(stream.steps) == 3


def test_every_source_is_registered_and_needs_a_path():
    for name in ("squad", "counterfact", "zsre", "mquake", "templama", "streamingqa", "archivalqa"):
        message = one_line_error(SOURCES.get(name), cfg(None))
        assert message.startswith(f"data.path is required for source {name}")


# ----------------------------------------------------------------------------- malformed input


def write_json(tmp_path: Path, name: str, obj) -> Path:
    path = tmp_path / name
    path.write_text(json.dumps(obj))
    return path


CF_RECORD = {"case_id": 1, "prompt": "A is in", "subject": "A", "target_new": "X", "ground_truth": "Y",
             "rephrase_prompt": "A lies in", "locality_prompt": "B is in", "locality_ground_truth": "Y"}
ZSRE_RECORD = {"subject": "A", "src": "Where is A?", "pred": "Y", "rephrase": "A is where?", "alt": "X",
               "answers": ["Y"], "loc": "nq question: who is b", "loc_ans": "B", "cond": ""}


def test_missing_field_names_file_record_and_field(tmp_path):
    broken = dict(CF_RECORD)
    del broken["target_new"]
    path = write_json(tmp_path, "cf-broken.json", [CF_RECORD, CF_RECORD, broken])
    message = one_line_error(read_counterfact, path)
    assert "cf-broken.json: record 2" in message and "missing field 'target_new'" in message
    assert "expected CounterFact layout" in message


def test_wrong_type_names_file_record_and_field(tmp_path):
    path = write_json(tmp_path, "zsre-broken.json", [ZSRE_RECORD, dict(ZSRE_RECORD, answers=3)])
    message = one_line_error(read_zsre, path)
    assert "zsre-broken.json: record 1" in message and "field 'answers' should be a list or a string" in message
    path = write_json(tmp_path, "zsre-item.json", [dict(ZSRE_RECORD, answers=["Y", 7])])
    assert "field 'answers'[1] should be a string, got an integer" in one_line_error(read_zsre, path)
    path = write_json(tmp_path, "cf-id.json", [dict(CF_RECORD, case_id=True)])
    assert "field 'case_id' should be an integer or a string, got a boolean" in one_line_error(read_counterfact, path)
    path = write_json(tmp_path, "cf-top.json", {"records": []})
    assert "cf-top.json: top level: should be a JSON list, got an object" in one_line_error(read_counterfact, path)


def test_bad_json_names_file_and_line(tmp_path):
    path = tmp_path / "bad.json"
    path.write_text('[\n  {"case_id": 1,\n  "prompt": }\n]')
    message = one_line_error(read_counterfact, path)
    assert "bad.json: bad JSON at line 3" in message


def test_missing_file_names_the_path(tmp_path):
    path = tmp_path / "nowhere" / "counterfact.json"
    for reader in (read_squad, read_counterfact, read_zsre, read_mquake, read_templama, read_archivalqa):
        assert one_line_error(reader, path) == f"data file not found: {path}"


def test_squad_malformed(tmp_path):
    good = {"id": "q1", "question": "Who?", "answers": [{"text": "Me", "answer_start": 0}]}
    data = {"data": [{"title": "T", "paragraphs": [{"context": "Me.", "qas": [good, {"id": "q2", "answers": []}]}]}]}
    message = one_line_error(read_squad, write_json(tmp_path, "squad-broken.json", data))
    assert "squad-broken.json: data[0].paragraphs[0].qas[1] (id q2): missing field 'question'" in message
    data["data"][0]["paragraphs"][0]["qas"][1] = {"id": "q2", "question": "Who?", "answers": [{"answer_start": 0}]}
    message = one_line_error(read_squad, write_json(tmp_path, "squad-broken.json", data))
    assert "qas[1].answers[0] (id q2): missing field 'text'" in message
    assert "missing field 'data'" in one_line_error(read_squad, write_json(tmp_path, "s.json", {"version": "1.1"}))


def test_squad_v2_unanswerable_questions_are_skipped(tmp_path):
    qas = [{"id": "a", "question": "Q?", "answers": [{"text": "x"}, {"text": "y"}, {"text": "x"}]},
           {"id": "b", "question": "Q?", "answers": [], "is_impossible": True}]
    path = write_json(tmp_path, "v2.json", {"data": [{"title": "T", "paragraphs": [{"context": "x y", "qas": qas}]}]})
    documents, probes = read_squad(path)
    assert [p.id for p in probes] == ["a"] and probes[0].answers == ["x", "y"]


def test_counterfact_rome_layout(tmp_path):
    rec = {"case_id": 0, "requested_rewrite": {"prompt": "The mother tongue of {} is", "subject": "Danielle Darrieux",
                                               "target_new": {"str": "English", "id": "Q1860"},
                                               "target_true": {"str": "French", "id": "Q150"}},
           "paraphrase_prompts": ["Danielle Darrieux speaks"], "neighborhood_prompts": ["Léon Blum speaks", "X speaks"]}
    (e,) = read_counterfact(write_json(tmp_path, "rome.json", [rec]))
    assert (e.prompt, e.target_new, e.target_true) == ("The mother tongue of Danielle Darrieux is", "English", "French")
    assert e.paraphrases == ["Danielle Darrieux speaks"]
    assert e.locality == [("Léon Blum speaks", "French"), ("X speaks", "French")]


def test_mquake_malformed(tmp_path):
    rewrite = {"prompt": "{} is in", "subject": "A", "target_new": {"str": "X"}, "target_true": {"str": "Y"},
               "question": "Where is A?"}
    case = {"case_id": 5, "requested_rewrite": [rewrite], "questions": ["Q?"], "new_answer": "X"}
    path = write_json(tmp_path, "mq.json", [case, dict(case, requested_rewrite=[dict(rewrite, target_new="X")])])
    message = one_line_error(read_mquake, path)
    assert "mq.json: record 1 (case_id 5) requested_rewrite[0]: field 'target_new' should be an object" in message
    path = write_json(tmp_path, "mq2.json", [{k: v for k, v in case.items() if k != "new_answer"}])
    assert "record 0 (case_id 5): missing field 'new_answer'" in one_line_error(read_mquake, path)


def test_templama_layouts_and_malformed(tmp_path):
    fact = {"id": "f1", "query": "A works for _X_.", "answer": [{"name": "B"}], "date": "2012", "relation": "P108"}
    later = dict(fact, id="f2", answer=[{"name": "C"}, {"name": "D"}], date="2015")
    flat_docs, _ = read_templama(write_json(tmp_path, "flat.json", [later, fact]))
    jsonl = tmp_path / "facts.jsonl"
    jsonl.write_text(json.dumps(later) + "\n\n" + json.dumps(fact) + "\n")
    jsonl_docs, probes = read_templama(jsonl)
    assert flat_docs == jsonl_docs and [d.text for d in jsonl_docs] == ["A works for C and D.", "A works for B."]
    assert probes[0].answers == ["C", "D"] and probes[0].question == "A works for"
    stream = SOURCES.get("templama")(cfg(jsonl, docs_per_step=1))
    assert [s.documents[0].id for s in stream.steps] == ["f1", "f2"] and stream.superseded == {1: {"f1"}}
    path = write_json(tmp_path, "tl.json", [[fact, dict(fact, id="f3", date="in 2013")]])
    assert "tl.json: record 0[1] (id f3): field 'date' should be a year" in one_line_error(read_templama, path)
    path = write_json(tmp_path, "tl2.json", [dict(fact, query="A works for B.")])
    assert "record 0 (id f1): field 'query' has no _X_ slot" in one_line_error(read_templama, path)
    jsonl.write_text(json.dumps(fact) + "\n{oops\n")
    assert "facts.jsonl: line 2: bad JSON" in one_line_error(read_templama, jsonl)


# ----------------------------------------------------------------------------- StreamingQA and ArchivalQA


def streamingqa_files(tmp_path: Path, gz: bool = False) -> Path:
    questions = [
        {"qa_id": "eval-0", "question": "Who won the vote?", "answers": ["Ann", "Ann Lee", "Ann"],
         "answers_additional": ["Lee"], "question_ts": 1600000000, "evidence_ts": 1590000000,
         "evidence_id": "k2", "recent_or_past": "past", "written_or_generated": "written",
         "toxicity_insult": 0.01},
        {"qa_id": "eval-1", "question": "What opened?", "answers": ["a bridge"], "answers_additional": "",
         "question_ts": 1600000000, "evidence_ts": 1580000000, "evidence_id": "k1"},
        {"qa_id": "eval-2", "question": "Not in the docs?", "answers": ["no"], "evidence_id": "k9"},
    ]
    docs = [
        {"sorting_key": "k2", "publication_ts": 1590000000, "text": "Ann Lee won the vote."},
        {"sorting_key": "k0", "publication_ts": 1570000000, "text": "Nobody asks about this."},
        {"sorting_key": "k1", "publication_ts": 1580000000, "text": "A bridge opened."},
    ]
    opener, suffix = (gzip.open, ".jsonl.gz") if gz else (open, ".jsonl")
    qa_path = tmp_path / f"streaminqa_eval{suffix}"
    with opener(qa_path, "wt") as f:
        f.write("".join(json.dumps(q) + "\n" for q in questions))
    with opener(tmp_path / f"wmt_docs{suffix}", "wt") as f:
        f.write("".join(json.dumps(d) + "\n" for d in docs))
    return qa_path


@pytest.mark.parametrize("gz", [False, True])
def test_streamingqa(tmp_path, gz):
    documents, probes = read_streamingqa(streamingqa_files(tmp_path, gz))
    assert [(d.id, d.time) for d in documents] == [("k1", 1580000000), ("k2", 1590000000)]
    assert [(p.id, p.doc_id, p.answers) for p in probes] == [("eval-0", "k2", ["Ann", "Ann Lee"]),
                                                            ("eval-1", "k1", ["a bridge"])]
    stream = SOURCES.get("streamingqa")(cfg(tmp_path / f"streaminqa_eval.jsonl{'.gz' if gz else ''}", docs_per_step=1))
    assert [s.probes[0].id for s in stream.steps] == ["eval-1", "eval-0"]


def test_streamingqa_malformed(tmp_path):
    qa_path = streamingqa_files(tmp_path)
    lines = qa_path.read_text().splitlines()
    qa_path.write_text("\n".join([lines[0], json.dumps({"qa_id": "eval-7", "question": "Q?", "answers": ["a"]})]))
    message = one_line_error(read_streamingqa, qa_path)
    assert "streaminqa_eval.jsonl: line 2 (qa_id eval-7): missing field 'evidence_id'" in message
    (tmp_path / "wmt_docs.jsonl").unlink()
    qa_path.write_text(lines[0])
    assert "no wmt_docs.jsonl(.gz) next to" in one_line_error(read_streamingqa, qa_path)
    docs = tmp_path / "articles.jsonl"
    docs.write_text(json.dumps({"sorting_key": "k2", "publication_ts": "2020-05-20", "text": "t"}) + "\n")
    message = one_line_error(read_streamingqa, qa_path, docs_path=docs)
    assert "articles.jsonl: line 1 (sorting_key 'k2'): field 'publication_ts' should be an integer" in message
    docs.write_text(json.dumps({"sorting_key": "k5", "publication_ts": 1, "text": "t"}) + "\n")
    assert "none of the 1 articles cited" in one_line_error(read_streamingqa, qa_path, docs_path=docs)


ARCHIVAL_HEADER = ["id", "question", "answer", "org_answer", "answer_start", "para_id", "para", "trans_que",
                   "trans_ans", "source"]


def write_csv(path: Path, header: list[str], rows: list[list]) -> Path:
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def test_archivalqa(tmp_path):
    para1 = "Tenneco said today that it planned to sell its oil and gas operations, a move analysts expected."
    para2 = 'Mr. Paik\'s family fled to Hong Kong, "fearing" the Korean War.\nThey returned later.'
    rows = [
        ["train_4", "When did Tenneco announce it would sell its oil operations?", "May 26, 1988", "today", 15,
         "148748_0", para1, 0, 1, "rand"],
        ["val_45", "What threat prompted Mr. Paik's family to flee to Hong Kong?", "the Korean War",
         "the Korean War", 52, "1736040_7", para2, 0, 0, "wiki"],
        ["train_5", "Who planned to sell oil and gas operations?", "Tenneco", "Tenneco", 0, "148748_0", para1, 0, 0,
         "wiki"],
    ]
    documents, probes = read_archivalqa(write_csv(tmp_path / "ArchivalQA_train.csv", ARCHIVAL_HEADER, rows))
    assert [(d.id, d.time, d.text) for d in documents] == [("148748_0", 0, para1), ("1736040_7", 1, para2)]
    assert [(p.id, p.doc_id, p.answers) for p in probes] == [
        ("train_4", "148748_0", ["May 26, 1988"]), ("val_45", "1736040_7", ["the Korean War"]),
        ("train_5", "148748_0", ["Tenneco"])]
    dated = write_csv(tmp_path / "dated.csv", ["question", "answer", "para_id", "para", "pub_date"],
                      [["Q1?", "a", "9_0", "late text", "1999-01-02"], ["Q2?", "b", "3_1", "early text", "19870605"]])
    documents, probes = read_archivalqa(dated)
    assert [d.time for d in documents] == [19990102, 19870605] and probes[0].id == "archivalqa-0"
    stream = SOURCES.get("archivalqa")(cfg(dated, docs_per_step=1))
    assert [s.documents[0].id for s in stream.steps] == ["3_1", "9_0"]


def test_archivalqa_malformed(tmp_path):
    path = write_csv(tmp_path / "no-para.csv", ["question", "answer", "para_id"], [["Q?", "a", "1_0"]])
    message = one_line_error(read_archivalqa, path)
    assert "no-para.csv: header: missing column 'para' (expected ArchivalQA layout" in message
    path = write_csv(tmp_path / "empty.csv", ["question", "answer", "para_id", "para"],
                     [["Q?", "a", "1_0", "text"], ["Q2?", " ", "1_0", "text"]])
    assert "empty.csv: row 3: column 'answer' is empty" in one_line_error(read_archivalqa, path)
    path = write_csv(tmp_path / "short.csv", ["question", "answer", "para_id", "para"], [["Q?", "a", "1_0"]])
    assert "short.csv: row 2: has fewer cells" in one_line_error(read_archivalqa, path)
    path = write_csv(tmp_path / "clash.csv", ["question", "answer", "para_id", "para"],
                     [["Q?", "a", "1_0", "text"], ["Q2?", "b", "1_0", "other text"]])
    assert "clash.csv: row 3: para_id '1_0' has a different 'para' text" in one_line_error(read_archivalqa, path)


# ----------------------------------------------------------------------------- the stats CLI


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "lit_knowledge.data", *args], cwd=REPO, capture_output=True,
                          text=True, timeout=120)


def test_cli_stats_and_sources(tmp_path):
    result = cli("stats", "counterfact", "data/counterfact/counterfact-mini.json")
    assert result.returncode == 0, result.stderr
    counts = json.loads(result.stdout)
    assert counts["source"] == "counterfact" and counts["path"] == "data/counterfact/counterfact-mini.json"
    assert (counts["edits"], counts["steps"], counts["documents"], counts["probes"]) == (100, 100, 0, 0)
    result = cli("stats", "squad", "data/squad/squad-mini.json", "--docs-per-step", "13")
    assert result.returncode == 0, result.stderr
    counts = json.loads(result.stdout)
    assert (counts["documents"], counts["steps"], counts["heldout_texts"]) == (39, 3, 8)
    result = cli("sources")
    assert result.returncode == 0 and {"squad", "counterfact", "zsre", "mquake", "templama", "streamingqa",
                                       "archivalqa"} <= set(result.stdout.split())


def test_cli_errors(tmp_path):
    bad = write_json(tmp_path, "cf.json", [dict(CF_RECORD), {"case_id": 12}])
    result = cli("stats", "counterfact", str(bad))
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    assert result.stderr.startswith(f"error: {bad}: record 1 (case_id 12): missing field 'subject'")
    result = cli("stats", "squadd", "data/squad/squad-mini.json")
    assert result.returncode == 2 and "did you mean squad?" in result.stderr and "Traceback" not in result.stderr
    result = cli("stats", "zsre", str(tmp_path / "missing.json"))
    assert result.returncode == 2 and result.stderr == f"error: data file not found: {tmp_path / 'missing.json'}\n"


def test_qa_share_moves_every_other_question_into_the_qa_set():
    from lit_knowledge.data.readers import split_questions
    from lit_knowledge.data.records import Probe

    probes = [Probe(f"a{i}", "a", f"qa{i}?", [f"A{i}", "alt"]) for i in range(3)] + [Probe("b0", "b", "qb0?", ["B0"])]
    train_qa, kept = split_questions(probes, 0.5)
    assert train_qa == {"a": [("qa1?", "A1")]}  # the first answer is the target
    assert [p.id for p in kept] == ["a0", "a2", "b0"]  # a document with one question keeps it as a probe
    assert split_questions(probes, 0.0) == ({}, probes)
    assert "data.qa_share must be in [0, 1)" in one_line_error(split_questions, probes, 1.0)


def test_squad_qa_sets_and_unrelated_texts():
    stream = SOURCES.get("squad")(cfg(MINI["squad"], docs_per_step=3, num_steps=1, qa_share=0.5))
    step = stream.steps[0]
    assert set(step.train_qa) <= {d.id for d in step.documents} and step.train_qa
    asked = {p.question for p in step.probes}
    assert asked and not asked & {q for qa in step.train_qa.values() for q, _ in qa}
    # the documents the stream leaves out (not the held-out ones) are what a method may rehearse
    assert len(stream.unrelated_texts) == 47 - 8 - 3
    assert not set(stream.unrelated_texts) & ({d.text for d in step.documents} | set(stream.heldout_texts))
