"""lora_transfer: the paper's extraction steps, the controls, what is held out, and a run end to end (tiny models)."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import pytest
import torch
from conftest import CONFIGS, DEBUG_YAML

from lit_knowledge.config import load_config
from lit_knowledge.data.world import World
from lit_knowledge.methods.lora_transfer.extraction import (
    ARMS,
    best_window,
    decoder_layers,
    lora_init,
    select_layers,
    sensitivity,
    svd_factors,
    window_sums,
)
from lit_knowledge.methods.lora_transfer.method import LoRATransfer, initialise_from_teacher, lora_modules
from lit_knowledge.methods.params import TRANSFER_INITS

TRANSFER_YAML = str(CONFIGS / "lora_transfer" / "lora_transfer.yaml")
STUDENT = ["model.name=tiny", "model.tiny.num_layers=2", "model.tiny.hidden_size=32", "model.tiny.num_heads=4",
           "model.tiny.num_kv_heads=2", "model.tiny.intermediate_size=64", "model.lora.r=4", "model.lora.alpha=8"]
TEACHER = ["method.teacher.name=tiny", "method.teacher.tiny.num_layers=4", "method.teacher.tiny.hidden_size=64",
           "method.teacher.tiny.num_heads=4", "method.teacher.tiny.num_kv_heads=2",
           "method.teacher.tiny.intermediate_size=128"]


def config(tmp_path, *overrides):
    return load_config([TRANSFER_YAML, str(DEBUG_YAML)],
                       [f"run.root={tmp_path}", *STUDENT, *TEACHER, "method.seed_examples=4", *overrides])


# ------------------------------------------------------------------------------------------ dimension alignment


@pytest.mark.parametrize("shape,window", [((7, 5), (3, 2)), ((6, 6), (6, 6)), ((9, 4), (1, 4)), ((5, 8), (5, 1))])
def test_the_summed_area_scan_finds_the_window_a_brute_force_search_finds(shape, window):
    scores = torch.rand(*shape, generator=torch.Generator().manual_seed(sum(shape)))
    h, w = window
    brute = {(r, c): scores[r:r + h, c:c + w].double().sum().item()
             for r, c in itertools.product(range(shape[0] - h + 1), range(shape[1] - w + 1))}
    sums = window_sums(scores, h, w)
    for (r, c), total in brute.items():
        assert sums[r, c].item() == pytest.approx(total)
    assert best_window(scores, h, w) == max(brute, key=brute.get)


def test_a_student_wider_than_its_teacher_is_refused_in_one_line():
    from lit_knowledge.errors import UserError

    with pytest.raises(UserError, match="at least as wide"):
        best_window(torch.ones(4, 4), 5, 2)
    with pytest.raises(UserError, match="at least as many layers"):
        select_layers({"0.w": torch.ones(2)}, num_teacher=1, num_student=2)


def test_layer_selection_takes_the_most_sensitive_layers_in_their_own_order():
    scores = {f"{i}.mlp.weight": torch.full((2, 2), float(s)) for i, s in enumerate([5, 1, 9, 3, 7])}
    assert select_layers(scores, 5, 3) == [0, 2, 4]  # 9, 7, 5 by sensitivity, kept in index order


# ------------------------------------------------------------------------------------------ sensitivity


def test_sensitivity_sums_absolute_values_example_by_example_on_the_answer_only(tmp_path):
    from lit_knowledge.data.prompts import encode_example, qa_prompt
    from lit_knowledge.models import load_model

    cfg = config(tmp_path)
    model, tokenizer = load_model(cfg.method.teacher, cfg)
    rows = [encode_example(tokenizer, qa_prompt("where was ada abbott born ?"), "velmora", 64),
            encode_example(tokenizer, qa_prompt("who employs ada abbott ?"), "norcrest labs", 64)]
    both, first, second = sensitivity(model, rows), sensitivity(model, rows[:1]), sensitivity(model, rows[1:])
    for name in both:
        assert torch.allclose(both[name], first[name] + second[name], atol=1e-6)
    # |sum| would be smaller than sum |.| wherever the two examples' gradients disagree in sign
    joint = next(iter(both))
    assert (both[joint] > 0).any()
    # by hand, for one matrix: |θ ⊙ ∂L/∂θ| with the loss on the answer tokens alone
    name = "0.self_attn.q_proj.weight"
    weight = decoder_layers(model)[0].self_attn.q_proj.weight
    model.zero_grad()
    logits = model(input_ids=torch.tensor([rows[0]["input_ids"]])).logits[0, :-1]
    labels = torch.tensor(rows[0]["labels"][1:])
    scored = labels != -100
    assert scored.sum() < len(labels)  # the prompt is not scored
    torch.nn.functional.cross_entropy(logits[scored], labels[scored]).backward()
    assert torch.allclose(first[name], (weight.detach() * weight.grad).abs(), atol=1e-6)


# ------------------------------------------------------------------------------------------ the LoRA init


def logits_of(model, tokenizer):
    ids = tokenizer("where was ada abbott born ? velmora", return_tensors="pt", add_special_tokens=False)["input_ids"]
    with torch.no_grad():
        return model(input_ids=ids).logits


@pytest.mark.parametrize("arm", TRANSFER_INITS)
def test_every_init_leaves_the_student_unchanged_before_fine_tuning(tmp_path, arm):
    from lit_knowledge.models import load_model

    cfg = config(tmp_path, f"method.init={arm}")
    student, tokenizer = load_model(cfg.model, cfg)
    before = logits_of(student, tokenizer)
    method = LoRATransfer(cfg, student, tokenizer)
    assert torch.allclose(logits_of(method.model, tokenizer), before, atol=1e-5)
    adapters = [m for layer in decoder_layers(method.model) for _, m in lora_modules(layer)]
    assert len(adapters) == 2 * 7  # every target matrix of both layers
    b_norm = sum(m.lora_B["default"].weight.norm() for m in adapters)
    assert (b_norm == 0) == (arm == "standard")  # only peft's own init starts with B = 0


def test_a_teacher_identical_to_the_student_gives_the_identity_alignment(tmp_path):
    """Same weights: all layers in order, every window the whole matrix, so the paper's init is the student's own
    truncated SVD."""
    from lit_knowledge.data.prompts import encode_example, qa_prompt
    from lit_knowledge.models import load_model
    from lit_knowledge.models.lora import add_lora

    cfg = config(tmp_path)
    torch.manual_seed(0)
    student, tokenizer = load_model(cfg.model, cfg)
    teacher = type(student)(student.config)
    teacher.load_state_dict(student.state_dict())
    weights = {n: p.detach().clone() for n, p in decoder_layers(student).named_parameters()}
    rows = [encode_example(tokenizer, qa_prompt("where was ada abbott born ?"), "velmora", 64)]
    peft_student = add_lora(student, cfg.model.lora)
    choice = initialise_from_teacher(peft_student, teacher, "sensitivity", rows, torch.Generator().manual_seed(0))
    assert choice["teacher_layers"] == [0, 1]
    for i, layer in enumerate(decoder_layers(peft_student)):
        for name, module in lora_modules(layer):
            weight = weights[f"{i}.{name}.weight"]
            assert best_window(torch.rand_like(weight), *weight.shape) == (0, 0)
            u, s, vh = svd_factors(weight, module.r["default"])
            product = module.scaling["default"] * module.lora_B["default"].weight @ module.lora_A["default"].weight
            assert torch.allclose(product, (u * s) @ vh, atol=1e-5)
            assert torch.allclose(module.base_layer.weight + product, weight, atol=1e-5)


def test_the_spectrum_control_keeps_the_singular_values_and_redraws_the_vectors():
    g = torch.Generator().manual_seed(0)
    teacher, scores, student = torch.randn(12, 10, generator=g), torch.rand(12, 10, generator=g), torch.randn(6, 5)
    b, a = lora_init("sensitivity", teacher, scores, student, 3, torch.Generator().manual_seed(1))
    b_s, a_s = lora_init("spectrum", teacher, scores, student, 3, torch.Generator().manual_seed(1))
    assert torch.allclose(torch.linalg.svdvals(b @ a)[:3], torch.linalg.svdvals(b_s @ a_s)[:3], atol=1e-5)
    assert not torch.allclose(b @ a, b_s @ a_s, atol=1e-3)
    assert set(ARMS) == set(TRANSFER_INITS)


# ------------------------------------------------------------------------------------------ what is held out


def test_held_out_facts_are_in_no_text_the_student_sees(tmp_path):
    """At the level of facts: no (person, relation, value) of a held-out person is in the student's pretraining
    corpus, its fine-tuning questions or the seed examples; the fitted people were never pretrained on either."""
    from lit_knowledge.methods.lora_transfer.method import transfer_task

    cfg = config(tmp_path)
    world = World(cfg.data.world)
    task = transfer_task(world, 0.5, 0.5, 8, seed=3, max_probes=1000)
    people = {p.name: p for p in world.background}
    learnt = {p.name for p in world.learnt_background(0.5)}
    assert not learnt & set(task.heldout_people) and not learnt & set(task.fitted_people)
    assert not set(task.heldout_people) & set(task.fitted_people)
    documents, qa = world.background_corpus(world.learnt_background(0.5))
    seen = documents + [q + " " + a for q, a in qa + task.train_qa + task.seed_qa]
    for name in task.heldout_people:
        assert not any(name in text for text in seen), name
    for name in task.fitted_people:
        assert not any(name in text for text in documents + [q for q, _ in qa]), name
    # every held-out question asks a held-out person's fact, with that fact's value as its answer
    for question, answer in task.heldout:
        name = next(n for n in task.heldout_people if n in question)
        assert answer in {str(v) for v in vars(people[name]).values()}
    assert {q for q, _ in task.heldout}.isdisjoint({q for q, _ in task.train_qa})


# ------------------------------------------------------------------------------------------ end to end


@pytest.mark.slow  # ~20 s: two runs, fine-tuning and evaluation at three steps
def test_a_run_learns_its_fitted_facts_and_resumes_with_its_evaluations(tmp_path):
    from lit_knowledge import train

    overrides = ["method.eval_steps=[20,60]", "method.lr=1e-2", "model.lora.r=8", "model.lora.alpha=8",
                 "method.batch_size=8", "trainer.enable_progress_bar=false"]
    results = train.run_experiment(config(tmp_path, *overrides), resume="never")
    curves, metrics = results["curves"], results["metrics"]
    assert curves["step"] == [0, 20, 60]
    assert metrics["optimizer_steps"] == 60
    assert metrics["fitted_f1"] > metrics["floor_fitted_f1"]  # the LoRA learns what it is fine-tuned on
    assert results["transfer"]["teacher_layers"] is not None and len(results["transfer"]["teacher_layers"]) == 2

    # stopped after step 30 and resumed: the same evaluations as the run that went through
    cut = config(tmp_path / "cut", *overrides, "trainer.max_steps=30", "trainer.checkpoint_every_n_steps=10")
    stopped = train.run_experiment(cut, resume="auto")
    assert "stopped by trainer.max_steps at step 30 of its 60" in stopped["stopped"]
    assert json.loads((Path(stopped["run_dir"]) / "run_meta.json").read_text())["status"] == "stopped"
    resumed = train.run_experiment(config(tmp_path / "cut", *overrides), resume="auto")
    assert resumed["curves"]["step"] == [0, 20, 60]
    assert resumed["curves"]["heldout_f1"][:2] == curves["heldout_f1"][:2]
    assert resumed["metrics"]["train_tokens"] == metrics["train_tokens"] > 0  # the budget survives the resume too


# ------------------------------------------------------------------------------------------ the arms' report


def test_the_report_gives_each_arm_its_interval_and_the_paired_difference_to_standard(tmp_path):
    from lit_knowledge.report import mean_ci, transfer_arms_section

    assert mean_ci([0.5]) == (0.5, 0.0)
    m, h = mean_ci([0.1, 0.2, 0.3, 0.4, 0.5])
    assert m == pytest.approx(0.3) and h == pytest.approx(2.776 * 0.158114 / 5 ** 0.5, rel=1e-4)

    def row(init, seed, heldout):
        curves = {"step": [0, 50], "heldout_f1": [0.1, heldout], "fitted_f1": [0.0, 0.5], "locality_f1": [1.0, 0.9]}
        return {"run": f"{init}-{seed}", "transfer": {"init": init}, "curves": curves,
                "config": {"method": {"seed": seed}}}

    rows = [row("standard", s, 0.1 + 0.01 * s) for s in range(3)]
    rows += [row("sensitivity", s, 0.3 + 0.01 * s) for s in range(3)]
    section = transfer_arms_section(rows, tmp_path / "arms.png")
    assert (tmp_path / "arms.png").stat().st_size > 0
    assert "| sensitivity | 3 | 0.100 ± 0.000 | 0.310 ± 0.025 |" in section
    assert "| sensitivity | 0.000 ± 0.000 | 0.200 ± 0.000 |" in section  # paired by seed: exactly +0.2 each
    assert transfer_arms_section([{"run": "x", "metrics": {}}], tmp_path / "none.png") == ""
    # a dev sweep: runs of one init at two lrs are two arms, labelled by the setting that differs
    for r, lr in zip(rows[:2], (1e-3, 3e-3)):
        r["config"]["method"]["lr"] = lr
    dev = transfer_arms_section(rows[:3], tmp_path / "dev.png")
    assert "| standard lr=0.001 | 1 |" in dev and "| standard lr=0.003 | 1 |" in dev and "| standard lr=None | 1 |" in dev
