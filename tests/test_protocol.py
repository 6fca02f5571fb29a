"""The stream protocol on a scripted method: which probes are asked when, and how they are scored."""

import pytest
from omegaconf import OmegaConf

from lit_knowledge.config import EvalConfig
from lit_knowledge.data.records import Document, Probe
from lit_knowledge.data.streams import KnowledgeStream, StreamStep
from lit_knowledge.evaluation.protocol import StreamProtocol, summarize


class Scripted:
    """Knows the answers of the probes whose ids it has been told; says 'nothing' otherwise."""

    def __init__(self):
        self.known: dict[str, str] = {}
        self.asked: list[list[str]] = []

    def answer(self, probes):
        self.asked.append([p.id for p in probes])
        return [self.known.get(p.id, "nothing") for p in probes]

    def lm_loss(self, texts):
        return 1.5


def make_stream():
    steps = []
    for t in range(3):
        doc = Document(f"d{t}", f"text {t}", t)
        probes = [Probe(f"p{t}a", doc.id, "q", [f"answer {t}"]), Probe(f"p{t}b", doc.id, "q", [f"other {t}"], "inverse")]
        steps.append(StreamStep(t, [doc], probes))
    background = [Probe("bg", "", "q", ["paris"], "locality")]
    return KnowledgeStream(steps, background, ["held out"], superseded={2: {"p0a"}})


def test_rows_score_efficacy_retention_locality():
    stream = make_stream()
    protocol = StreamProtocol(stream, OmegaConf.structured(EvalConfig))
    m = Scripted()
    m.known = {"p0a": "answer 0", "bg": "paris"}
    row0 = protocol.evaluate(m, 0)
    assert row0["efficacy_em"] == 0.5 and row0["retention_f1"] is None and row0["locality_f1"] == 1.0
    assert row0["efficacy_f1_by_kind"] == {"efficacy": 1.0, "inverse": 0.0}
    m.known.update({"p1a": "answer 1", "p1b": "other 1"})
    row1 = protocol.evaluate(m, 1)
    assert row1["efficacy_f1"] == 1.0
    # step 0's probes: "answer 0" right, "other 0" vs "nothing" wrong
    assert row1["retention_f1"] == 0.5 and row1["retention_row"] == [0.5, 1.0]
    assert row1["lm_loss"] == 1.5


def test_superseded_probes_are_no_longer_asked():
    protocol = StreamProtocol(make_stream(), OmegaConf.structured(EvalConfig))
    m = Scripted()
    protocol.evaluate(m, 1)
    assert "p0a" in m.asked[-1]
    protocol.evaluate(m, 2)
    assert "p0a" not in m.asked[-1] and "p0b" in m.asked[-1]


def test_max_probes_caps_each_kind_with_the_same_subset_every_time():
    stream = make_stream()
    cfg = OmegaConf.structured(EvalConfig)
    cfg.max_probes = 1
    a, b = StreamProtocol(stream, cfg), StreamProtocol(stream, cfg)
    assert [[p.id for p in s] for s in a.step_probes] == [[p.id for p in s] for s in b.step_probes]
    assert all(len(s) == 2 for s in a.step_probes)  # one per kind


def test_locality_asks_every_background_probe_unless_capped_on_its_own():
    stream = make_stream()
    stream.background_probes = [Probe(f"bg{i}", "", "q", ["paris"], "locality") for i in range(300)]
    cfg = OmegaConf.structured(EvalConfig)
    cfg.max_probes = 1  # caps the stream's probes, never locality
    assert len(StreamProtocol(stream, cfg).background) == 300
    cfg.max_locality_probes = 200
    a, b = StreamProtocol(stream, cfg).background, StreamProtocol(stream, cfg).background
    assert len(a) == 200 and a == b and a == sorted(a, key=lambda p: int(p.id[2:]))  # a fixed sample, in order


def test_summary_metrics_curves_and_matrix():
    stream = make_stream()
    protocol = StreamProtocol(stream, OmegaConf.structured(EvalConfig))
    m = Scripted()
    m.known = {p.id: p.answers[0] for s in stream.steps for p in s.probes}
    history = [protocol.evaluate(m, k) for k in range(3)]
    out = summarize(history, [0.1, 0.2, 0.3], extra_storage_bytes=7, wall_time_s=2.0)
    metrics = out["metrics"]
    assert metrics["efficacy_f1"] == 1.0 and metrics["retention_f1"] == 1.0
    assert abs(metrics["update_time_per_step_s"] - 0.2) < 1e-9 and metrics["extra_storage_bytes"] == 7
    assert out["curves"]["step"] == [1, 2, 3]
    assert out["retention_matrix"][0] == [1.0, None, None]
    assert len(out["retention_matrix"][2]) == 3


def test_locality_is_also_reported_for_each_kind_of_background():
    stream = make_stream()
    stream.background_probes = [Probe("bg1", "", "q", ["paris"], "namesake"), Probe("bg2", "", "q", ["rome"], "unrelated"),
                         Probe("bg3", "", "q", ["oslo"], "unrelated")]
    protocol = StreamProtocol(stream, OmegaConf.structured(EvalConfig))
    m = Scripted()
    m.known = {"bg2": "rome", "bg3": "oslo"}  # the namesake's fact was overwritten
    history = [protocol.evaluate(m, k) for k in range(3)]
    assert history[0]["locality_f1"] == pytest.approx(2 / 3)
    assert history[0]["locality_f1_by_kind"] == {"namesake": 0.0, "unrelated": 1.0}
    metrics = summarize(history, [0.1] * 3, 0, 1.0)["metrics"]
    assert metrics["locality_f1_namesake"] == 0.0 and metrics["locality_f1_unrelated"] == 1.0
    # one kind of background: no breakdown
    assert StreamProtocol(make_stream(), OmegaConf.structured(EvalConfig)).evaluate(m, 0)["locality_f1_by_kind"] == {}


def test_every_documents_probes_are_also_scored_by_the_facts_they_ask_about():
    steps = []
    for t in range(2):
        probes = [Probe(f"p{t}c", f"d{t}", "q", [f"city {t}"], relation="city"),
                  Probe(f"p{t}o", f"d{t}", "q", [f"org {t}"], relation="org"),
                  Probe(f"p{t}x", f"d{t}", "q", ["untagged"])]
        steps.append(StreamStep(t, [Document(f"d{t}", "text", t)], probes))
    protocol = StreamProtocol(KnowledgeStream(steps, [], []), OmegaConf.structured(EvalConfig))
    m = Scripted()
    m.known = {"p0c": "city 0", "p1c": "city 1", "p1o": "org 1"}
    history = [protocol.evaluate(m, 0), protocol.evaluate(m, 1)]
    assert history[0]["f1_by_relation_all_steps"] == {"city": 1.0, "org": 0.0}
    assert history[1]["f1_by_relation_all_steps"] == {"city": 1.0, "org": 0.5}  # both steps' documents
    metrics = summarize(history, [0.1, 0.1], 0, 1.0)["metrics"]
    assert metrics["final_f1_about_city"] == 1.0 and metrics["final_f1_about_org"] == 0.5
