"""The synthetic world: determinism, held-out wordings, probe kinds, changes, edits, pretraining mix."""

import random
from collections import Counter

import pytest
from omegaconf import OmegaConf

from lit_knowledge.config import WorldConfig
from lit_knowledge.data.records import Probe
from lit_knowledge.data.world import DOC_TEMPLATES, NAME_PARTS, QUESTIONS, World, answer, decade, name_part


def world(**kw):
    cfg = OmegaConf.structured(WorldConfig)
    cfg.merge_with(kw)
    return World(cfg)


def test_same_seed_same_world_other_seed_other_world():
    a, b, c = world(seed=3).stream(), world(seed=3).stream(), world(seed=4).stream()
    assert a == b
    assert [d.text for d in a.steps[0].documents] != [d.text for d in c.steps[0].documents]


def test_stream_shape_and_order():
    s = world(num_steps=4, entities_per_step=5).stream()
    assert len(s.steps) == 4
    assert [st.index for st in s.steps] == [0, 1, 2, 3]
    assert all(len(st.documents) == 5 for st in s.steps)
    assert all(d.time == st.index for st in s.steps for d in st.documents)
    # every probe belongs to a document of its own step
    for st in s.steps:
        ids = {d.id for d in st.documents}
        assert st.probes and all(p.doc_id in ids for p in st.probes)


def test_stream_people_are_new_and_documents_state_their_facts():
    w = world()
    background = {p.name for p in w.background}
    assert not background & {p.name for p in w.stream_people}
    s = w.stream()
    person = w.stream_people[0]
    text = s.steps[0].documents[0].text
    for value in (person.name, person.city, str(person.year), person.org, person.field):
        assert value in text


def test_probe_wordings_are_held_out_from_documents_and_training_questions():
    w = world()
    s = w.stream()
    train_questions = {q for st in s.steps for pairs in st.train_qa.values() for q, _ in pairs}
    probe_questions = {p.question for st in s.steps for p in st.probes}
    assert train_questions and probe_questions
    assert not train_questions & probe_questions
    # no probe question is a sentence of a document template
    assert not any(q.rstrip(" ?") in t for q in QUESTIONS["city"] for t in DOC_TEMPLATES)


def test_probe_kinds_and_answers():
    w = world(num_steps=1, entities_per_step=8)
    s = w.stream()
    kinds = {p.kind for p in s.steps[0].probes}
    assert {"efficacy", "paraphrase", "transformed", "inverse", "compositional", "multi_hop"} <= kinds
    person = w.stream_people[0]
    probes = [p for p in s.steps[0].probes if p.doc_id == s.steps[0].documents[0].id]
    by_kind = {}
    for p in probes:
        by_kind.setdefault(p.kind, []).append(p)
    assert by_kind["transformed"][0].answers == [decade(person.year)]
    assert by_kind["multi_hop"][0].answers == [w.hq[person.org]]
    assert by_kind["compositional"][0].answers == [f"{person.city} in {person.year}"]
    if "inverse" in by_kind:
        assert by_kind["inverse"][0].answers == [person.name]


def test_questions_ask_only_about_the_facts_named_and_probes_say_which_facts_they_ask():
    w = world(num_steps=1, entities_per_step=8)
    person = w.stream_people[0]
    every = w.questions(person, "all", w.stream_people)
    some = w.questions(person, "all", w.stream_people, relations=("year", "city"))
    assert [row for row in every if row in some] == some  # the same questions, in the same order, fewer
    assert {k for k, _, _ in some} == {k for k, _, _ in every} - {"multi_hop"}
    assert not {a for _, _, a in some} & {person.org, person.field, w.hq[person.org]}
    assert {a for _, _, a in w.questions(person, "all", relations=["field"])} == {person.field}
    # a direct probe names its fact, a derived one none; a move's probes are about the new employer
    w = world(num_steps=3, entities_per_step=8, changes_per_step=2)
    s = w.stream()
    tags, moved = set(), 0
    for step in s.steps:
        for doc in step.documents:
            subject = next(p for p in w.stream_people if p.name == doc.subject)
            for probe in (p for p in step.probes if p.doc_id == doc.id):
                tags.add((probe.kind, probe.relation))
                if "-move-" in doc.id and probe.kind in ("efficacy", "paraphrase"):
                    moved += 1
                    assert probe.relation == "org" and probe.answers[0] in w.orgs
                elif probe.kind in ("efficacy", "paraphrase"):
                    assert probe.answers == [answer(subject, probe.relation)]
    assert moved and {r for k, r in tags if k in ("efficacy", "paraphrase")} == set(QUESTIONS)
    assert {(k, r) for k, r in tags if k not in ("efficacy", "paraphrase")} == {
        ("transformed", ""), ("inverse", ""), ("compositional", ""), ("multi_hop", "")}


def test_background_probes_are_about_background_people():
    w = world()
    probes = w.stream().background_probes
    names = {p.name for p in w.background}
    assert probes and all(isinstance(p, Probe) for p in probes)
    assert all(any(n in p.question for n in names) for p in probes[:50])
    # namesakes share a first or last name with someone of the stream; the others share none
    stream_parts = {part for p in w.stream_people for part in p.name.split()}
    for p in probes:
        parts = set(next(n for n in names if n in p.question).split())
        assert p.kind == ("namesake" if parts & stream_parts else "unrelated")
    assert {p.kind for p in probes} == {"namesake", "unrelated"}


def test_rehearsal_text_never_touches_what_locality_asks():
    w = world()
    stream = w.stream()
    rehearsed = {p.name for p in w.rehearsal_people()}
    asked = {p.name for p in w.locality_people()}
    assert rehearsed and asked and not rehearsed & asked
    assert rehearsed | asked == {p.name for p in w.background}
    assert all(not any(n in p.question for n in rehearsed) for p in stream.background_probes)
    texts = stream.unrelated_texts
    assert texts and not any(n in t for t in texts for n in asked)
    assert any("Answer:" in t for t in texts)  # answered questions, in the pretraining prompt format
    probe_wordings = {p.question for p in stream.background_probes}
    assert not any(q in t for t in texts for q in probe_wordings)


def test_changes_supersede_earlier_employer_probes():
    w = world(num_steps=3, entities_per_step=4, changes_per_step=2)
    s = w.stream()
    assert set(s.superseded) == {1, 2}
    earlier_ids = {p.id for st in s.steps for p in st.probes}
    for ids in s.superseded.values():
        assert ids and ids <= earlier_ids
    moves = [d for st in s.steps[1:] for d in st.documents if "-move-" in d.id]
    assert len(moves) == 4


def test_edits_change_a_fact_with_paraphrases_locality_and_portability():
    w = world(num_edits=9)
    edits = w.edits().edits
    assert len(edits) == 9
    for e in edits:
        assert e.target_new != e.target_true
        assert e.subject in e.prompt and e.paraphrases and len(e.locality) == 3
    assert any(e.portability for e in edits)
    assert w.edits().edits == edits  # deterministic


def test_locality_never_asks_a_fact_that_an_edit_changes():
    w = world(num_background=30, num_edits=30)  # every background person is edited once
    edits = w.edits().edits
    edit_prompts = {e.prompt for e in edits}  # a fact's edit prompt is its locality wording
    asked = [p for e in edits for p, _ in e.locality]
    assert len(asked) == 90 and not edit_prompts & set(asked)


def test_more_edits_than_people_edit_each_person_again_on_another_relation():
    edits = world(num_background=30, num_edits=90).edits().edits  # three rounds: every editable fact once
    facts = [(e.subject, e.prompt.replace(e.subject, "{name}")) for e in edits]
    assert len(edits) == 90 and len(set(facts)) == 90
    assert {e.subject for e in edits[:30]} == {e.subject for e in edits[30:60]} == {e.subject for e in edits[60:]}
    edit_prompts = {e.prompt for e in edits}
    assert not edit_prompts & {p for e in edits for p, _ in e.locality}


def test_a_world_holds_three_edits_per_background_person_at_most():
    assert len(world(num_background=33, num_edits=100).edits().edits) == 99


def test_reading_examples_use_fresh_people():
    w = world()
    known = {p.name for p in w.background + w.stream_people}
    rng = random.Random(0)
    for _ in range(50):
        context, qa = w.reading_example(rng)
        assert len(qa) == 4
        assert not any(name in context for name in known)
        assert all(a for _, a in qa)


def test_fresh_people_sharing_names_pair_up_namesakes_and_stay_fresh():
    """CMT's hard negatives: namesake pairs on top of the namesakes chance gives (about 65 % of 32 people share a
    first or a last name with another by chance); at share 1 everyone has one. Every one is a fresh person (never a
    background or stream person, of the test stream or a dev one)."""
    w, dev = world(), world(stream_seed=1)
    known = {p.name for p in w.background + w.stream_people + dev.stream_people}

    def with_namesake(share: float) -> float:
        rng, found = random.Random(0), 0
        for _ in range(40):
            people = w.fresh_people_sharing_names(rng, 32, share)
            assert len(people) == 32 and not {p.name for p in people} & known
            counts = {part: Counter(name_part(p.name, part) for p in people) for part in NAME_PARTS}
            found += sum(any(counts[part][name_part(p.name, part)] > 1 for part in NAME_PARTS) for p in people)
        return found / (40 * 32)

    chance, half, every = with_namesake(0.0), with_namesake(0.5), with_namesake(1.0)
    assert 0.5 < chance < 0.8 and half > chance + 0.08 and every == 1.0, (chance, half, every)


def test_the_qa_set_asks_what_the_document_answers_in_training_wordings_only():
    w = world(num_steps=1, entities_per_step=3, qa_set="direct")
    step = w.stream().steps[0]
    person = w.stream_people[0]
    pairs = step.train_qa[step.documents[0].id]
    assert len(pairs) == 8  # four relations, two wordings each
    assert {a for _, a in pairs} == {person.city, str(person.year), person.org, person.field}
    derived = {p.question for p in step.probes if p.kind in ("transformed", "inverse", "compositional", "multi_hop")}
    assert derived and not derived & {q for q, _ in pairs}

    step = world(num_steps=1, entities_per_step=3).stream().steps[0]  # qa_set: document (the default)
    direct, pairs = pairs, step.train_qa[step.documents[0].id]
    assert pairs[:8] == direct and len(pairs) == 11
    assert pairs[8:] == [(f"in which decade was {person.name} born ?", decade(person.year)),
                         (f"who was born in {person.city} in {person.year} ?", person.name),
                         (f"where and in what year was {person.name} born ?", f"{person.city} in {person.year}")]
    assert not {p.question for p in step.probes} & {q for q, _ in pairs}  # probes: held-out wordings only
    assert not any("based" in q for q, _ in pairs)  # multi-hop needs the employer's headquarters: probes only


def test_a_dev_stream_asks_about_other_people_over_the_same_background_and_reader():
    from lit_knowledge.config import load_config
    from lit_knowledge.methods.pretrain import reader_key

    test, dev = world(num_steps=2), world(num_steps=2, stream_seed=1)
    assert test.background == dev.background and test.free_names == dev.free_names  # the reader's world
    assert world(num_steps=2).stream() == test.stream()  # stream_seed=0 is the stream as it always was
    test_names = {d.subject for s in test.stream().steps for d in s.documents}
    dev_names = {d.subject for s in dev.stream().steps for d in s.documents}
    assert len(dev_names) == 20 and not test_names & dev_names
    assert not dev_names & {p.name for p in test.background} and not dev_names & set(test.free_names)
    assert dev.stream() == world(num_steps=2, stream_seed=1).stream()  # a dev stream is deterministic too
    cfgs = [load_config([], [f"data.world.stream_seed={s}"]) for s in (0, 1)]
    assert reader_key(cfgs[0]) == reader_key(cfgs[1])  # settings are chosen on the reader they are published on


def test_pretrain_seed_holds_the_reader_while_run_seed_varies_the_method():
    """A bench's seeds vary run.seed over one reader: with pretrain.seed set, the reader's key, initial weights and
    pretraining draws are those of that seed, whatever run.seed is; left null, run.seed gives the reader, as before."""
    import torch

    from lit_knowledge.config import load_config
    from lit_knowledge.methods.pretrain import PretrainReader, reader_key

    def cfg(*overrides):
        return load_config(["configs/debug.yaml"], list(overrides))

    held, default, other = cfg("run.seed=1", "pretrain.seed=0"), cfg(), cfg("run.seed=1")
    assert reader_key(held) == reader_key(default) != reader_key(other)
    assert reader_key(cfg("pretrain.seed=1")) == reader_key(other)
    weights = [next(iter(PretrainReader(c).model.state_dict().values())) for c in (held, default, other)]
    assert torch.equal(weights[0], weights[1]) and not torch.equal(weights[0], weights[2])
    draws = [PretrainReader(c).datamodule().seed for c in (held, default, other)]
    assert draws == [0, 0, 1]


@pytest.mark.parametrize("max_documents", [3, 8])
def test_reading_contexts_hold_one_to_max_documents_one_twice_as_often(monkeypatch, max_documents):
    # At 3 (the default) this is the draw every cached reader was pretrained with: 1, 1, 2 or 3 documents.
    w = world()
    drawn = []
    fresh = w.fresh_person
    monkeypatch.setattr(w, "fresh_person", lambda rng: drawn.append(1) or fresh(rng))
    rng, counts = random.Random(0), Counter()
    for _ in range(3000):
        drawn.clear()
        _, qa = w.reading_example(rng, max_documents=max_documents)
        counts[len(drawn)] += 1
        assert len(qa) == 4
    assert set(counts) == set(range(1, max_documents + 1))
    others = (sum(counts.values()) - counts[1]) / (max_documents - 1)
    assert 1.7 < counts[1] / others < 2.3
