"""O-Edit, O-Edit+, FT-L and AlphaEdit on tiny models, and the edit protocol on a scripted fake."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from conftest import CONFIGS
from omegaconf import OmegaConf

from lit_knowledge import train
from lit_knowledge.config import load_config
from lit_knowledge.data.records import Edit
from lit_knowledge.data.streams import EditStream
from lit_knowledge.evaluation.edit_protocol import (
    EditProtocol,
    default_eval_at,
    encode_edit_pair,
    summarize_edits,
)
from lit_knowledge.methods import METHODS
from lit_knowledge.methods.editing.subspace import core_directions, extend_basis, orthonormal_rows, project_out

TINY = ["model.name=tiny", "data.source=world_edits", "data.world.num_background=30", "data.world.num_organisations=8",
        "data.num_edits=3", "eval.lm_loss_texts=4", "logger.backend=none", "trainer.enable_progress_bar=false",
        "model.tiny.num_layers=2", "model.tiny.hidden_size=64", "model.tiny.intermediate_size=128",
        "model.tiny.num_heads=4", "model.tiny.num_kv_heads=4"]


def make(method: str, *overrides: str):
    cfg = load_config([], [f"method.name={method}", *TINY, *overrides])
    torch.manual_seed(0)
    m = METHODS.get(method)(cfg)
    dm = m.datamodule()
    dm.setup()
    m._batches = [dm.batch(i) for i in range(len(m.stream.edits))]  # one planned batch per edit
    return m


def apply(m, k: int, optimizer=None) -> None:
    """Edit k outside a Trainer: what training_step + finish_step do inside one."""
    batch = m._batches[k]
    assert batch["stream_step"] == k and batch["last_in_step"]
    if hasattr(m, "apply_edit"):
        m.apply_edit(batch, optimizer, lambda loss: loss.backward())
    else:
        m.log = lambda *a, **kw: None
        m.training_step(batch, k)
    m.finish_step(k)


def weight(m) -> torch.Tensor:
    (w,) = m.weights().values()
    return w.detach().clone()


def logits_on(m, k: int) -> torch.Tensor:
    """Edit k's output: the logits that predict target_new's tokens on its prompt (what reliability reads)."""
    e = m.stream.edits[k]
    row = encode_edit_pair(m.tokenizer, m.style, e.prompt, e.target_new, 256)
    scored = torch.tensor(row["labels"][1:]) != -100
    with torch.no_grad():
        return m.model(input_ids=torch.tensor([row["input_ids"]])).logits[0, :-1][scored]


# ------------------------------------------------------------------------------------------ linear algebra


@pytest.mark.parametrize("side", ["input", "output"])
def test_projection_leaves_the_gradient_orthogonal_to_the_basis(side):
    g = torch.Generator().manual_seed(0)
    grad = torch.randn(24, 40, generator=g)
    dim = 40 if side == "input" else 24
    basis = orthonormal_rows(torch.randn(7, dim, generator=g))
    projected = project_out(grad, basis, side)
    overlap = projected @ basis.T if side == "input" else basis @ projected
    assert overlap.abs().max() < 1e-5
    # what is left of the gradient is untouched: projecting twice changes nothing
    assert torch.allclose(project_out(projected, basis, side), projected, atol=1e-5)


def test_core_directions_cover_the_energy_and_extend_an_orthonormal_basis():
    g = torch.Generator().manual_seed(1)
    u = orthonormal_rows(torch.randn(4, 20, generator=g)).T
    v = orthonormal_rows(torch.randn(4, 30, generator=g))
    delta = u @ torch.diag(torch.tensor([4.0, 2.0, 1.0, 0.1])) @ v  # energy shares 16, 4, 1, 0.01 of 21.01
    assert core_directions(delta, 0.5, "input").shape == (1, 30)
    assert core_directions(delta, 0.95, "input").shape == (2, 30)
    assert core_directions(delta, 0.99, "output").shape == (3, 20)
    assert core_directions(delta, 1.0, "input").shape == (4, 30)
    assert core_directions(delta, 1.0, "input", max_directions=2).shape == (2, 30)
    basis = extend_basis(torch.zeros(0, 30), core_directions(delta, 0.95, "input"))
    basis = extend_basis(basis, core_directions(delta, 1.0, "input"))  # two of the four are there already
    assert basis.shape == (4, 30)
    assert torch.allclose(basis @ basis.T, torch.eye(4), atol=1e-5)


# ------------------------------------------------------------------------------------------ the editors


def test_oedit_gradients_are_orthogonal_to_the_edit_basis_and_knowledge_subspace():
    m = make("oedit", "method.steps=5")
    m.prepare()
    (name,) = m.edit_basis
    assert m.knowledge_basis[name].shape[0] == 16  # rank q of the knowledge subspace
    opt = m.configure_optimizers()
    apply(m, 0, opt)
    apply(m, 1, opt)
    edit_basis, knowledge = m.edit_basis[name], m.knowledge_basis[name]
    assert edit_basis.shape[0] > 0
    assert (knowledge @ edit_basis.T).abs().max() < 1e-5  # its overlap with the edit basis removed
    # a real gradient of the next edit, projected as apply_edit does
    batch = m._batches[2]
    m.model.zero_grad()
    m.edit_loss(batch).backward()
    w = m.weights()[name]
    projected = m.projection(name, w.grad)
    scale = w.grad.norm()
    for basis in (edit_basis, knowledge):
        assert (projected @ basis.T).abs().max() < 1e-6 * max(1.0, scale)
    assert projected.norm() > 1e-3 * scale  # there is something left to learn with


def test_dense_projector_once_the_bases_cover_half_the_space_projects_the_same():
    m = make("oedit", "method.steps=5", "method.knowledge_rank=70", "data.num_edits=4")  # 70 of 128 dimensions
    m.prepare()
    (name,) = m.edit_basis
    opt = m.configure_optimizers()
    for k in range(3):
        apply(m, k, opt)
    assert name in m._complement  # in use, and kept up to date edit by edit
    rows = torch.cat([m.edit_basis[name], m.knowledge_basis[name]]).double()
    rebuilt = torch.eye(rows.shape[1], dtype=torch.float64) - rows.T @ rows
    assert (m._complement[name] - rebuilt).abs().max() < 1e-5
    batch = m._batches[3]
    m.model.zero_grad()
    m.edit_loss(batch).backward()
    grad = m.weights()[name].grad
    by_bases = project_out(project_out(grad, m.edit_basis[name], "input"), m.knowledge_basis[name], "input")
    assert torch.allclose(m.projection(name, grad), by_bases, atol=1e-5 * max(1.0, grad.norm().item()))
    # a restored editor rebuilds it from the bases
    fresh = make("oedit", "method.steps=5", "method.knowledge_rank=70", "data.num_edits=4")
    fresh.on_load_checkpoint(_round_trip(m))
    assert torch.allclose(fresh.projection(name, grad), m.projection(name, grad), atol=1e-6)


def test_mix_knowledge_texts_hold_question_turns_but_never_a_locality_prompt():
    m = METHODS.get("oedit")(load_config([], ["method.name=oedit", *TINY]))
    texts = m.knowledge_texts("mix", 40)
    assert len(texts) == 40 and sum("Answer:" in t for t in texts) >= 15
    asked = {p for e in m.stream.edits for p, _ in e.locality} | {e.prompt for e in m.stream.edits}
    assert not any(q in t for t in texts for q in asked)
    assert all("Answer:" not in t for t in m.knowledge_texts("pretrain", 40))


def test_editors_on_a_source_without_knowledge_texts_warn_and_go_without():
    m = make("oedit", "data.source=counterfact", "data.path=data/counterfact/counterfact-mini.json",
             "method.knowledge_texts=mix")
    with pytest.warns(UserWarning, match="data source 'counterfact' comes with no pretraining text"):
        m.prepare()
    assert all(b.shape[0] == 0 for b in m.knowledge_basis.values())


def facts_in(text: str, people) -> set[tuple[str, str, str]]:
    """The (person, relation, value) facts a text states or asks, whatever its wording: the person's full name
    and the value both appear in it."""
    from lit_knowledge.data.world import QUESTIONS, answer

    return {(p.name, r, answer(p, r)) for p in people if p.name in text for r in QUESTIONS if answer(p, r) in text}


@pytest.mark.parametrize("config", ["tiny", "oedit.yaml", "bench_t1000.yaml"])
def test_held_out_locality_people_appear_in_no_knowledge_text(config):
    """At the level of facts: no knowledge text (O-Edit's subspace, AlphaEdit's K0; both sources) holds a fact of
    a person `locality` asks about, nor names them; `locality_covered` asks about people the texts do hold."""
    from lit_knowledge.data.world import QUESTIONS, World

    files = [] if config == "tiny" else [str(CONFIGS / "oedit" / config)]
    cfg = load_config(files, TINY if config == "tiny" else ["model.name=tiny"])
    world = World(cfg.data.world)
    by_question = {QUESTIONS[r][0].format(name=p.name): (p.name, r) for p in world.background for r in QUESTIONS}
    edits = world.edits().edits
    held_out = {by_question[q] for e in edits for q, _ in e.locality}
    covered = {by_question[q] for e in edits for q, _ in e.locality_covered}
    held_out_people = {name for name, _ in held_out}
    assert held_out_people <= {p.name for p in world.locality_people()} and len(held_out) >= 3
    assert not held_out_people & {name for name, _ in covered}

    texts = [t for which in ("pretrain", "mix") for t in world.knowledge_texts(which, 10_000, cfg.run.seed)]
    stated = set().union(*(facts_in(t, world.background) for t in texts))
    assert not {(name, r) for name, r, _ in stated} & held_out
    assert not any(name in t for t in texts for name in held_out_people)
    assert {(name, r) for name, r, _ in stated} & covered  # the covered ones are covered


def test_the_dev_edit_stream_is_another_draw_over_the_same_reader():
    from lit_knowledge.data.world import World
    from lit_knowledge.methods.pretrain import reader_key

    test_cfg = load_config([str(CONFIGS / "oedit" / "oedit.yaml")])
    dev_cfg = load_config([str(CONFIGS / "oedit" / "oedit.yaml")], ["data.world.edit_seed=1"])
    assert reader_key(test_cfg) == reader_key(dev_cfg)  # settings are chosen on the reader they are published on
    test = {(e.prompt, e.target_new) for e in World(test_cfg.data.world).edits().edits[:100]}
    dev = {(e.prompt, e.target_new) for e in World(dev_cfg.data.world).edits().edits[:100]}
    assert len(test & dev) <= 5, "the dev stream asks (almost) no edit the test stream asks"


@pytest.mark.parametrize("source", ["gradients", "keys"])
def test_knowledge_subspace_from_gradients_or_keys_is_orthonormal_of_rank_q(source):
    m = make("oedit", "method.knowledge_texts=mix", "method.knowledge_rank=8", f"method.knowledge_from={source}")
    m.prepare()
    (basis,) = m.knowledge_basis.values()
    assert basis.shape[0] == 8
    assert torch.allclose(basis @ basis.T, torch.eye(8), atol=1e-5)
    if source == "keys":  # the top directions of the layer's inputs: most of a key's energy lies in them
        texts = list(m.encoded_texts(["Question: " + m.stream.edits[0].prompt + "\nAnswer:"]))
        from lit_knowledge.methods.editing.base import Capture

        capture = Capture(m.edited)
        with torch.no_grad():
            m.model(input_ids=texts[0]["input_ids"], attention_mask=texts[0]["attention_mask"])
        capture.close()
        keys = next(iter(capture.inputs.values()))[0]
        assert (keys @ basis.T).norm() > 0.5 * keys.norm()


def test_a_second_edit_leaves_the_first_edits_output_unchanged_where_ft_l_changes_it():
    common = ["method.optimizer=sgd", "method.lr=0.5", "method.steps=10", "method.stop_loss=0.0"]
    changes = {}
    for method, extra in (("oedit", ["method.energy=1.0"]), ("ft_l", [])):
        m = make(method, *common, *extra)
        m.prepare()
        opt = m.configure_optimizers()
        apply(m, 0, opt)
        first = logits_on(m, 0)
        before = weight(m)
        loss_before = m.edit_loss(m._batches[1]).item()
        apply(m, 1, opt)
        assert (weight(m) - before).norm() > 1e-3  # the second edit did change the matrix ...
        assert m.edit_loss(m._batches[1]).item() < loss_before - 0.1  # ... and learnt something
        changes[method] = (logits_on(m, 0) - first).abs().max().item()
    assert changes["oedit"] < 1e-4, changes
    assert changes["ft_l"] > 1e-2, changes


def test_oedit_plus_updates_are_orthogonal_to_every_earlier_update():
    # energy < 1 leaves part of each update outside the edit basis: without O-Edit+ updates would overlap there
    m = make("oedit", "method.plus=true", "method.energy=0.5", "method.steps=5", "data.num_edits=4")
    m.prepare()
    opt = m.configure_optimizers()
    updates = []
    for k in range(4):
        before = weight(m)
        apply(m, k, opt)
        updates.append((weight(m) - before).flatten())
    assert m.update_basis.n == 4
    for i in range(4):
        assert updates[i].norm() > 0
        for j in range(i):
            cos = torch.nn.functional.cosine_similarity(updates[i], updates[j], dim=0)
            assert abs(cos.item()) < 1e-5, (i, j, cos.item())


def _round_trip(m):
    ckpt = {}
    m.on_save_checkpoint(ckpt)
    buf = io.BytesIO()
    torch.save(ckpt, buf)
    buf.seek(0)
    return torch.load(buf, weights_only=True)  # what a checkpoint may hold: tensors, lists, dicts, numbers


def test_bases_survive_a_checkpoint_round_trip_exactly():
    m = make("oedit", "method.plus=true", "method.steps=4")
    m.prepare()
    opt = m.configure_optimizers()
    apply(m, 0, opt)
    apply(m, 1, opt)
    ckpt = _round_trip(m)
    fresh = make("oedit", "method.plus=true", "method.steps=4")
    fresh.on_load_checkpoint(ckpt)
    assert fresh.prepared
    for key in ("edit_basis", "knowledge_basis"):
        for name, basis in getattr(m, key).items():
            assert basis.shape[0] > 0
            assert torch.equal(getattr(fresh, key)[name], basis), key
    assert torch.equal(fresh.update_basis.rows, m.update_basis.rows)
    assert fresh.protocol.pre_edit_locality == m.protocol.pre_edit_locality
    assert fresh.extra_storage_bytes() == m.extra_storage_bytes() > 0
    fresh.prepare()  # restored state is not recomputed
    assert torch.equal(fresh.knowledge_basis[name], m.knowledge_basis[name])


def test_alphaedit_update_lives_in_the_null_space_and_is_checkpointed():
    m = make("alphaedit", "method.value_steps=5", "method.layers=[0]")
    m.prepare()
    p = m.null_projector
    assert 0 < torch.linalg.matrix_rank(p).item() < p.shape[0]
    before = weight(m)
    apply(m, 0)
    delta = weight(m) - before
    assert delta.norm() > 0
    assert (delta @ (torch.eye(p.shape[0]) - p)).norm() < 1e-4 * delta.norm()
    assert m.edited_key_cov.abs().sum() > 0
    fresh = make("alphaedit", "method.value_steps=5", "method.layers=[0]")
    fresh.on_load_checkpoint(_round_trip(m))
    assert torch.equal(fresh.null_projector, p) and torch.equal(fresh.edited_key_cov, m.edited_key_cov)
    assert fresh.extra_storage_bytes() == 2 * p.numel() * 4


def test_ft_l_keeps_no_state_and_projects_nothing():
    m = make("ft_l", "method.steps=3")
    m.prepare()
    apply(m, 0, m.configure_optimizers())
    assert m.extra_storage_bytes() == 0 and set(m.method_state()) == {"prepared", "protocol"}
    g = torch.randn(5, 7)
    assert m.projection("any", g) is g


def test_oedit_is_ft_l_with_projection_state_that_ft_l_does_not_have():
    from lit_knowledge.methods.editing.ft_l import FTL
    from lit_knowledge.methods.editing.oedit import OEdit

    assert issubclass(OEdit, FTL) and METHODS.get("oedit") is OEdit and METHODS.get("ft_l") is FTL
    bases = {"side", "dims", "edit_basis", "knowledge_basis", "update_basis", "_complement", "_complement32"}
    assert bases <= set(vars(make("oedit", "method.plus=true")))
    assert not bases & set(vars(make("ft_l")))


EDITING = "lit_knowledge.methods.editing"
# What each module of the package imports of it, besides itself: FT-L and AlphaEdit only the editors' base, and
# O-Edit FT-L and the linear algebra; the linear algebra nothing (not even Lightning).
NEEDS = {"subspace": set(), "base": set(), "ft_l": {"base"}, "alphaedit": {"base"}, "oedit": {"base", "ft_l", "subspace"}}
IMPORTS = f"""
import importlib, json, sys
seen = {{}}
for module in {list(NEEDS)!r}:  # each afresh: the package's modules leave sys.modules in between
    for name in [m for m in sys.modules if m.startswith("{EDITING}.")]:
        del sys.modules[name]
    importlib.import_module("{EDITING}." + module)
    seen[module] = [m.rsplit(".", 1)[1] for m in sys.modules if m.startswith("{EDITING}.")]
    seen[module] += ["lightning"] if "lightning" in sys.modules else []
print(json.dumps(seen))
"""


def test_each_editing_module_imports_only_the_modules_of_the_package_it_needs():
    out = subprocess.run([sys.executable, "-c", IMPORTS], capture_output=True, text=True, check=True).stdout
    seen = {module: set(names) for module, names in json.loads(out).items()}
    assert seen.pop("subspace") == {"subspace"}  # first, and pure: torch only
    for module, names in seen.items():
        assert names - {"lightning"} == NEEDS[module] | {module}, module


def test_ft_l_norm_constraint_bounds_every_weight_of_an_edit():
    """With method.norm_constraint, no edited weight moves further than the bound in an edit; without it the same
    edit moves some weight further."""
    bound = 1e-3
    free = make("ft_l", "method.steps=5", "method.lr=5")
    before = weight(free)
    opt = free.configure_optimizers()
    apply(free, 0, opt)
    assert (weight(free) - before).abs().max() > bound

    bounded = make("ft_l", "method.steps=5", "method.lr=5", f"method.norm_constraint={bound}")
    before = weight(bounded)
    opt = bounded.configure_optimizers()
    apply(bounded, 0, opt)
    moved = (weight(bounded) - before).abs()
    assert moved.max() <= bound + 1e-7 and moved.max() > 0
    apply(bounded, 1, opt)  # the bound holds per edit, from the weights each edit starts at
    assert (weight(bounded) - before).abs().max() <= 2 * bound + 1e-7


def test_editors_refuse_document_streams_and_sharded_strategies():
    from lit_knowledge.errors import UserError

    with pytest.raises(UserError, match="trainer.strategy"):
        load_config([], ["method.name=oedit", *TINY, "trainer.strategy=fsdp"])
    with pytest.raises(UserError, match="edits an edit stream"):
        make("ft_l", "data.source=world")
    with pytest.raises(UserError, match="exactly one matrix"):
        load_config([], ["method.name=alphaedit", *TINY, "method.layers=[0,1]"])


# ------------------------------------------------------------------------------------------ the protocol


class WordTokenizer:
    """Whitespace words -> ids, growing its vocabulary; 0 is padding."""

    pad_token_id = 0

    def __init__(self):
        self.vocab = {"<pad>": 0}

    def __call__(self, text, add_special_tokens=False):
        return {"input_ids": [self.vocab.setdefault(w, len(self.vocab)) for w in text.split()]}

    def decode(self, ids):
        words = {i: w for w, i in self.vocab.items()}
        return " ".join(words[i] for i in ids)


class ScriptedModel(torch.nn.Module):
    """Predicts, after each prefix, the next word its script says (else <pad>)."""

    def __init__(self, tokenizer, script: dict[str, str], vocab: int = 64):
        super().__init__()
        self.tok, self.vocab, self.dummy = tokenizer, vocab, torch.nn.Parameter(torch.zeros(1))
        self.script = script

    def forward(self, input_ids, attention_mask=None):
        table = {tuple(self.tok(k)["input_ids"]): self.tok(v)["input_ids"][0] for k, v in self.script.items()}
        logits = torch.zeros(*input_ids.shape, self.vocab)
        for b, row in enumerate(input_ids.tolist()):
            for t in range(len(row)):
                logits[b, t, table.get(tuple(row[: t + 1]), 0)] = 1.0
        return SimpleNamespace(logits=logits)


def scripted(model, tok, batch_size: int = 2):
    """A method over a scripted model, through the contract only (it has no `model` for a protocol to read)."""
    from lit_knowledge.data.prompts import encode_scored_target, scored_tokens
    from lit_knowledge.evaluation.contract import TokenPrediction
    from lit_knowledge.models.generate import teacher_forced_argmax

    def predict_tokens(pairs):
        rows = [encode_scored_target(tok, p, t) for p, t in pairs]
        predicted = teacher_forced_argmax(model, rows, tok.pad_token_id, batch_size)
        return [TokenPrediction(pred, scored_tokens(row), tok.decode(pred)) for row, pred in zip(rows, predicted)]

    return SimpleNamespace(predict_tokens=predict_tokens, lm_loss=lambda texts: float(len(texts)))


class MemoryEditor:
    """An editor whose knowledge is not in weights: edits are written into a table; a prompt it holds is answered
    from the table, anything else with padding (what it answered before any edit)."""

    def __init__(self, tok):
        self.tok, self.memory = tok, {}

    def write(self, edit) -> None:
        self.memory[edit.prompt] = edit.target_new

    def predict_tokens(self, pairs):
        from lit_knowledge.evaluation.contract import TokenPrediction

        out = []
        for prompt, target in pairs:
            target_ids = self.tok(" " + target)["input_ids"]
            known = self.tok(self.memory.get(prompt, ""))["input_ids"][: len(target_ids)]
            predicted = known + [0] * (len(target_ids) - len(known))
            out.append(TokenPrediction(predicted, target_ids, self.tok.decode(predicted)))
        return out

    def lm_loss(self, texts):
        return None


def test_the_edit_protocol_scores_a_method_whose_knowledge_is_not_in_its_weights():
    from lit_knowledge.evaluation.contract import Answers

    tok = WordTokenizer()
    edits = [Edit("e0", "a lives in", "a", "x y", paraphrases=["b says a lives in"], locality=[("e f", "u v")]),
             Edit("e1", "h lives in", "h", "z", locality=[("k l", "m n")])]
    protocol = EditProtocol(EditStream(edits, heldout_texts=["t"]), OmegaConf.create({"lm_loss_texts": 1}))
    editor = MemoryEditor(tok)
    assert not hasattr(editor, "model")
    protocol.record_pre_edit(editor)
    assert protocol.pre_edit["reliability"] == 0.0 and protocol.pre_edit["locality"] == 1.0
    for k, edit in enumerate(edits):
        editor.write(edit)
        row = protocol.evaluate(editor, k)
    assert row["reliability"] == 1.0 and row["locality"] == 1.0  # both edits held, the rest unchanged
    assert row["generalization"] == 0.0  # a table knows no paraphrase
    assert row["examples"][0] == ("a lives in", "x y", "x y")
    out = protocol.summary([row], [0.1, 0.1], 0, 1.0)
    assert out["metrics"]["mean_gain"] == pytest.approx((1.0 + 0.0 + 1.0) / 3 - (0.0 + 0.0 + 1.0) / 3)
    assert isinstance(editor, Answers) is False  # it has no `answer`: the edit protocol never asks for one


def test_prompt_style_and_knowledge_texts_come_with_the_stream():
    from lit_knowledge.data.sources import SOURCES
    from lit_knowledge.methods.base import load_stream

    world = load_stream(load_config([], ["method.name=oedit", *TINY]))
    assert world.prompt_style == "qa" and world.knowledge_texts("pretrain", 4, 0)
    shorter = world.truncate(1)
    assert (shorter.prompt_style, shorter.knowledge_texts) == ("qa", world.knowledge_texts)
    for source, name in (("counterfact", "counterfact"), ("zsre", "zsre"), ("mquake", "mquake"),
                         ("mquake_hops", "mquake")):
        data_cfg = SimpleNamespace(path=f"data/{name}/{name}-mini.json", num_edits=2)
        stream = SOURCES.get(source)(data_cfg)
        assert (stream.prompt_style, stream.knowledge_texts) == ("cloze", None), source
    tok = WordTokenizer()
    qa = encode_edit_pair(tok, "qa", "who is a ?", "x y")
    assert tok.decode(qa["input_ids"]) == "Question: who is a ? Answer: x y"
    assert qa["labels"][-2:] == tok("x y")["input_ids"] and qa["labels"][:-2] == [-100] * 6
    cloze = encode_edit_pair(tok, "cloze", "a lives in", "x y")
    assert tok.decode(cloze["input_ids"]) == "a lives in x y"


def test_default_checkpoints_are_log_spaced_plus_the_last():
    assert default_eval_at(1) == [1]
    assert default_eval_at(7) == [1, 2, 5, 7]
    assert default_eval_at(100) == [1, 2, 5, 10, 20, 50, 100]
    assert default_eval_at(1000)[-3:] == [200, 500, 1000]


def test_protocol_metrics_match_hand_computed_values():
    tok = WordTokenizer()
    edits = [
        Edit("e0", "a lives in", "a", "x y", paraphrases=["b says a lives in", "c"], locality=[("e f", "u v")],
             portability=[("g is", "w")]),
        Edit("e1", "h lives in", "h", "z", locality=[("k l", "m n"), ("o", "p")]),
    ]
    stream = EditStream(edits, heldout_texts=["t1", "t2", "t3"])
    eval_cfg = OmegaConf.create({"batch_size": 2, "lm_loss_texts": 2})
    protocol = EditProtocol(stream, eval_cfg, eval_at=[2])
    model = ScriptedModel(tok, {
        # pre-edit predictions on the locality prompts (teacher-forced on their answers)
        "e f": "u", "e f u": "q", "k l": "m", "k l m": "n", "o": "p",
        # the unedited model already gets some target tokens for free: the floor
        "a lives in x": "y",  # e0 reliability 1 of 2
        "g is": "w",  # e0 portability 1/1
    })
    protocol.record_pre_edit(scripted(model, tok))
    assert protocol.pre_edit_locality == [[tok("u q")["input_ids"]], [tok("m n")["input_ids"], tok("p")["input_ids"]]]
    assert protocol.pre_edit == pytest.approx({"reliability": (0.5 + 0.0) / 2, "generalization": 0.0,
                                               "locality": 1.0, "portability": 1.0})
    assert protocol.state()["pre_edit"] == protocol.pre_edit  # checkpointed with the locality predictions
    model.script = {
        "a lives in": "x", "a lives in x": "q",  # reliability of e0: 1 of 2 tokens
        "b says a lives in": "x", "b says a lives in x": "y", "c": "x",  # paraphrases: 2/2 and 1/2
        "e f": "u", "e f u": "v",  # locality: now "u v" where it said "u q": 1 of 2 agree
        "g is": "w",  # portability: 1/1
        "h lives in": "z",  # e1 reliability 1/1
        "k l": "m", "k l m": "q", "o": "p",  # e1 locality: 1/2 and 1/1
    }
    fake = scripted(model, tok)
    assert protocol.evaluate(fake, 0) == {"step": 0, "edits": 1, "evaluated": False}
    row = protocol.evaluate(fake, 1)
    assert row["evaluated"] and row["n_edits"] == 2
    assert row["reliability"] == pytest.approx((0.5 + 1.0) / 2)
    assert row["generalization"] == pytest.approx((1.0 + 0.5) / 2)  # e1 has no paraphrase
    assert row["locality"] == pytest.approx((0.5 + (0.5 + 1.0) / 2) / 2)
    assert row["portability"] == pytest.approx(1.0)  # e1 has none
    assert row["lm_loss"] == 2.0  # eval.lm_loss_texts of the held-out texts
    assert row["examples"][0] == ("a lives in", "x y", "x q")

    history = [{"step": 0, "edits": 1, "evaluated": False}, row]
    out = summarize_edits(history, [0.5, 0.25], extra_storage_bytes=12, wall_time_s=3.0)
    assert out["metrics"]["reliability"] == row["reliability"]
    assert out["metrics"]["time_per_edit_first"] == 0.5 and out["metrics"]["time_per_edit_last"] == 0.25
    assert out["metrics"]["update_time_per_step_s"] == pytest.approx(0.375)
    assert out["metrics"]["extra_storage_bytes"] == 12 and out["metrics"]["num_edits"] == 2
    assert out["curves"]["step"] == [2] and out["curves"]["update_time_s"] == [pytest.approx(0.375)]
    assert out["timings"]["update_time_s"] == [0.5, 0.25]
    assert "mean_gain" not in out["metrics"]  # no floor given, no gain claimed

    out = summarize_edits(history, [0.5, 0.25], 12, 3.0, pre_edit=protocol.pre_edit)
    m = out["metrics"]
    assert (m["pre_edit_reliability"], m["pre_edit_portability"]) == (pytest.approx(0.25), 1.0)
    edited = [row["reliability"], row["generalization"], row["locality"], row["portability"]]
    assert m["mean_gain"] == pytest.approx(sum(edited) / 4 - (0.25 + 0.0 + 1.0 + 1.0) / 4)


# ------------------------------------------------------------------------------------------ configs and runs

WORLD_CONFIGS = ["oedit.yaml", "oedit_plus.yaml", "ft_l.yaml", "alphaedit.yaml", "bench_t1000.yaml"]
REAL_CONFIGS = [f"{source}_smollm{arm}.yaml" for source in ("counterfact", "zsre", "mquake") for arm in ("", "_ft_l", "_alphaedit")]


@pytest.mark.parametrize("name", WORLD_CONFIGS + REAL_CONFIGS)
def test_dry_run_of_every_oedit_config(name, tmp_path, capsys):
    path = CONFIGS / "oedit" / name
    cfg = load_config([str(path)])
    model = str(cfg.model.name)
    if name in REAL_CONFIGS:
        from lit_knowledge.models.provision import MODELS, provisioned_path

        provisioned = provisioned_path(model, cfg.run.cache_dir) if model in MODELS else None
        if provisioned is None and not Path(os.path.expanduser(model)).exists():
            pytest.skip(f"{model} is not provisioned (python -m lit_knowledge.models.provision smollm2)")
    code = train.main(["--config", str(path), f"run.root={tmp_path / 'runs'}", "logger.backend=none", "--dry-run"])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert f"dry run ok: method={cfg.method.name}" in out
    assert not (tmp_path / "runs").exists()


@pytest.mark.slow
@pytest.mark.parametrize("method", ["oedit", "alphaedit"])
def test_end_to_end_run_writes_edit_results(method, tmp_path, capsys):
    import json

    code = train.main([f"method.name={method}", *TINY, f"run.root={tmp_path}", "method.eval_at=[1,3]",
                       "trainer.accelerator=cpu"] + (["method.steps=5"] if method == "oedit" else
                                                     ["method.value_steps=5"]))
    assert code == 0, capsys.readouterr().err
    (results,) = tmp_path.rglob("results.json")
    r = json.loads(results.read_text())
    assert r["kind"] == "edit"
    for key in ("reliability", "generalization", "locality", "portability", "lm_loss", "wall_time_s",
                "update_time_per_step_s", "extra_storage_bytes", "time_per_edit_first", "time_per_edit_last",
                "pre_edit_reliability", "pre_edit_portability", "mean_gain"):
        assert key in r["metrics"], key
    assert r["curves"]["step"] == [1, 3] and r["metrics"]["extra_storage_bytes"] > 0
    assert len(r["timings"]["update_time_s"]) == 3


@pytest.mark.slow
def test_an_edit_run_pretrains_the_reader_it_needs_on_an_empty_cache(tmp_cache, tmp_path, capsys):
    """On a fresh machine an edit config builds the world's reader first (it used to refuse: data.source)."""
    code = train.main(["method.name=ft_l", *[o for o in TINY if not o.startswith("model.name")], "model.name=reader",
                       "pretrain.max_steps=2", "eval.max_probes=2", "method.steps=1", f"run.root={tmp_path}",
                       "trainer.accelerator=cpu"])
    assert code == 0, capsys.readouterr().err
    assert list(tmp_cache.glob("readers/*/reader.json"))
