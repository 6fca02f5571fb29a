"""SELF-PARAM on tiny models: the KL, where gradients go, what injection does to the student's answers."""

import pytest
import torch

from lit_knowledge.config import load_config
from lit_knowledge.methods.selfparam import SelfParam, kl_per_token, target_logits

TINY = ["method.name=selfparam", "model.name=tiny", "model.lora.enabled=true", "model.lora.r=4",
        "data.world.num_background=20", "data.world.num_organisations=8", "data.world.num_steps=2",
        "data.world.entities_per_step=2", "eval.max_probes=4", "eval.lm_loss_texts=4", "logger.backend=none",
        "trainer.enable_progress_bar=false"]


def method(*overrides):
    cfg = load_config([], TINY + list(overrides))
    torch.manual_seed(0)
    return SelfParam(cfg)


def test_kl_is_zero_for_identical_distributions_and_positive_otherwise():
    logits = torch.randn(5, 11)
    assert torch.allclose(kl_per_token(logits, logits), torch.zeros(5), atol=1e-6)
    assert (kl_per_token(logits, logits + torch.randn(5, 11)) > 0).all()
    # temperature: the T^2 scaling keeps the order of magnitude
    assert kl_per_token(logits, 2 * logits, temperature=2.0).shape == (5,)


def test_kl_runs_from_the_teacher_to_the_student():
    """KL(teacher || student) = sum p_t log(p_t / p_s), hand-computed; the reversed KL gives another value."""
    import math

    teacher = torch.log(torch.tensor([[0.9, 0.1]]))
    student = torch.log(torch.tensor([[0.5, 0.5]]))
    forward = 0.9 * math.log(0.9 / 0.5) + 0.1 * math.log(0.1 / 0.5)
    reverse = 0.5 * math.log(0.5 / 0.9) + 0.5 * math.log(0.5 / 0.1)
    assert kl_per_token(teacher, student).item() == pytest.approx(forward, abs=1e-6)
    assert abs(forward - reverse) > 0.1  # so a reversed implementation fails the line above


def test_the_training_loss_is_the_forward_kl_of_the_batch():
    """The loss of a training step is KL(teacher || student) on the batch's target tokens, where the teacher's
    logits come from the adapter-disabled model reading the document and the student's from the question alone."""
    import torch.nn.functional as F

    from lit_knowledge.data.datamodules import collate_examples
    from lit_knowledge.data.prompts import collate

    m = method("method.namesake_contrasts=0", "method.kl_mean=token")
    for module in m.model.modules():  # a non-zero adapter, so that student and teacher differ
        if hasattr(module, "lora_B"):
            torch.nn.init.normal_(module.lora_B["default"].weight, std=0.5)
    rows = [r for r in m.training_examples(m.stream.steps[0]) if r["labels"][0] == -100][:3]  # QA pairs
    batch = {**collate_examples(rows, m.tokenizer.pad_token_id), "stream_step": 0}  # as the datamodule makes it
    m.log = lambda *a, **kw: None
    with torch.no_grad():
        loss = m.training_step(batch, 0)
        teacher_batch = collate([{"input_ids": r["teacher_input_ids"], "labels": r["teacher_labels"]} for r in rows],
                                m.tokenizer.pad_token_id)
        with m.model.disable_adapter():  # peft's own switch, against the method's
            t = target_logits(m.model, teacher_batch["input_ids"], teacher_batch["attention_mask"], teacher_batch["labels"])
        s = target_logits(m.model, batch["input_ids"], batch["attention_mask"], batch["labels"])
    p_t, log_t, log_s = F.softmax(t, -1), F.log_softmax(t, -1), F.log_softmax(s, -1)
    forward = (p_t * (log_t - log_s)).sum(-1).mean()
    reverse = (F.softmax(s, -1) * (log_s - log_t)).sum(-1).mean()
    assert loss.item() == pytest.approx(forward.item(), rel=1e-4)
    assert abs(forward.item() - reverse.item()) > 1e-3 * forward.item()


def test_the_teacher_reads_the_document():
    """The teacher's distributions on a QA pair depend on the document in its prompt: the same questions with
    another document before them give other teacher logits (through the method's own teacher path)."""
    import dataclasses

    from lit_knowledge.data.datamodules import collate_examples

    m = method("method.namesake_contrasts=0")
    step = m.stream.steps[0]

    def teacher_on_first_qa_pairs():
        rows = [r for r in m.training_examples(step) if r["labels"][0] == -100][:2]
        return m.teacher_logits(collate_examples(rows, m.tokenizer.pad_token_id))

    before = teacher_on_first_qa_pairs()
    first, second = step.documents[0], step.documents[1]
    step.documents[0] = dataclasses.replace(first, text=second.text)  # same QA pairs, another document read
    after = teacher_on_first_qa_pairs()
    assert before.shape == after.shape
    assert not torch.allclose(before, after, atol=1e-4)


def test_per_example_mean_weighs_each_example_the_same():
    from lit_knowledge.methods.selfparam import per_example_mean

    labels = torch.tensor([[0, 5, -100, -100], [0, -100, -100, -100], [0, 1, 2, 3]])  # 1, 0 and 3 scored tokens
    values = torch.tensor([4.0, 1.0, 2.0, 3.0])
    assert per_example_mean(values, labels).item() == pytest.approx((4.0 + 2.0) / 2)
    assert values.mean().item() == pytest.approx(2.5)  # the token mean lets the long example dominate


def test_kl_zero_when_student_is_teacher_and_context_is_empty():
    m = method()
    rows = m.training_examples(m.stream.steps[0])
    row = rows[0]
    ids = torch.tensor([row["input_ids"]])
    labels = torch.tensor([row["labels"]])
    mask = torch.ones_like(ids)
    # with no context the teacher reads the student's own tokens; the adapter starts at B = 0
    with torch.no_grad(), m.model.disable_adapter():
        teacher = target_logits(m.model, ids, mask, labels)
    student = target_logits(m.model, ids, mask, labels)
    assert torch.allclose(kl_per_token(teacher, student), torch.zeros(len(teacher)), atol=1e-5)


def test_teacher_tokens_end_with_the_student_tokens():
    m = method("method.namesake_contrasts=0")
    rows = m.training_examples(m.stream.steps[0])
    assert len(rows) > 0
    for row in rows:
        n = len(row["input_ids"])
        assert row["teacher_input_ids"][-n:] == row["input_ids"]
        assert row["teacher_labels"][-n + 1 :] == row["labels"][1:]
        assert sum(t != -100 for t in row["teacher_labels"]) == sum(t != -100 for t in row["labels"][1:])
        if row["labels"][0] == -100:  # a QA pair (an unrelated text scores every token): the document comes first
            assert len(row["teacher_input_ids"]) > n
    questions = {m.tokenizer.decode(r["input_ids"]) for r in rows}
    probes = {p.question for p in m.stream.steps[0].probes}
    assert not any(p in q for p in probes for q in questions)  # the target set never holds a probe


def test_target_set_mixes_in_the_same_unrelated_texts_ft_qa_can_rehearse():
    from lit_knowledge.methods.baselines import FTQA

    m = method("method.unrelated_per_document=3")
    step = m.stream.steps[0]
    target = m.target_set(step)
    unrelated = [(c, text) for c, text, a in target if not a]
    assert len(unrelated) == 3 * len(step.documents)
    assert all(text in m.stream.unrelated_texts for _, text in unrelated)
    assert {c for c, _ in unrelated} == {""}  # by default the teacher reads an unrelated text alone
    with_document = method("method.unrelated_per_document=3", "method.unrelated_teacher=document")
    assert {c for c, _, a in with_document.target_set(step) if not a} == {d.text for d in step.documents}
    cfg = load_config([], TINY + ["method.name=ft_qa", "method.unrelated_per_document=3"])
    ft = FTQA(cfg)
    rehearsed = [prompt for prompt, target in ft.pairs(step) if not target]
    assert rehearsed == [text for _, text in unrelated]  # same texts, same seed: a like-for-like ablation
    plain = FTQA(load_config([], TINY + ["method.name=ft_qa"]))
    assert all(target for _, target in plain.pairs(step))  # FT(S) of the paper: the QA set alone


def test_namesake_contrasts_ask_the_qa_set_about_namesakes_closed_book():
    m = method("method.unrelated_per_document=0", "method.namesake_contrasts=2")
    step = m.stream.steps[1]
    doc = step.documents[0]
    first, last = doc.subject.split()
    qa = step.train_qa[doc.id]
    contrasts = m.namesake_contrasts(step)[doc.id]
    naming = [(q, a) for q, a in qa if doc.subject in q]
    assert naming and len(contrasts) == 2 * len(naming)
    seen = {part for s in m.stream.steps[:2] for d in s.documents for part in d.subject.split()}
    swaps = ([f"{x} {last}" for x in seen], [f"{first} {x}" for x in seen])  # first name swapped, then last
    for j, ((q, a), (contrast, answer)) in enumerate(zip([p for p in naming for _ in range(2)], contrasts)):
        assert answer == a and doc.subject not in contrast
        assert any(q.replace(doc.subject, n) == contrast for n in swaps[j % 2] if n != doc.subject)
    # in the target set they come after the document's QA pairs, and their teacher reads no document
    target = m.target_set(step)
    assert target[len(qa) : len(qa) + len(contrasts)] == [("", q, a) for q, a in contrasts]
    rows = m.training_examples(step)
    for r in rows.select(range(len(qa), len(qa) + len(contrasts))):
        assert r["teacher_input_ids"] == r["input_ids"]
    assert method("method.namesake_contrasts=0").namesake_contrasts(step) == {}


def test_a_namesake_is_never_a_real_person():
    """Swapping a name part can give the full name of someone the model knew before the stream, or of a stream
    subject: such names are never used."""
    m = method("method.unrelated_per_document=0", "method.namesake_contrasts=2")
    step = m.stream.steps[1]
    doc = step.documents[0]
    first, last = doc.subject.split()
    seen_first = {d.subject.split()[0] for s in m.stream.steps[:2] for d in s.documents} - {first}
    kept, *real = sorted(f"{x} {last}" for x in seen_first)
    assert real, "the tiny stream must offer at least two first-name swaps"
    m.stream.known_names = list(real)  # as if the background held every first-name swap but one
    asked = {q for q, _ in m.namesake_contrasts(step)[doc.id]}
    assert not any(name in q for q in asked for name in real)
    assert any(kept in q for q in asked)
    world_names = set(method().stream.known_names)
    assert len(world_names) == 20 and not world_names & {d.subject for s in m.stream.steps for d in s.documents}


def test_ft_qa_learns_namesake_contrasts_as_the_model_answered_them():
    from lit_knowledge.methods.baselines import FTQA

    torch.manual_seed(0)
    ft = FTQA(load_config([], TINY + ["method.name=ft_qa", "method.namesake_contrasts=2"]))
    step = ft.stream.steps[1]
    contrasts = [ft.qa_prompt(q) for d in step.documents for q, _ in ft.namesake_contrasts(step)[d.id]]
    pairs = ft.pairs(step)
    assert contrasts and [p for p, _ in pairs if p in contrasts] == contrasts
    # the targets are the model's own closed-book answers (hard targets: FT(S)'s like-for-like arm)
    assert [t for p, t in pairs if p in contrasts] == ft.generate(contrasts)
    plain = FTQA(load_config([], TINY + ["method.name=ft_qa"]))
    assert not [p for p, _ in plain.pairs(step) if p in contrasts]


def test_gradients_reach_only_the_adapter():
    m = method()
    dm = m.datamodule()
    dm.setup()
    batch = dm.batch(0)
    m.log = lambda *a, **k: None  # no trainer attached: logging is a no-op here
    loss = m.training_step(batch, 0)
    loss.backward()
    grads = {n for n, p in m.model.named_parameters() if p.grad is not None and p.grad.abs().sum() > 0}
    assert grads and all("lora_" in n for n in grads)


def test_full_finetuning_needs_a_cached_teacher():
    from lit_knowledge.errors import UserError

    with pytest.raises(UserError, match="method.teacher=cached"):
        load_config([], TINY + ["model.lora.enabled=false"])
    load_config([], TINY + ["model.lora.enabled=false", "method.teacher=cached"])


@pytest.mark.parametrize("name, lora", [("selfparam", "true"), ("ft_qa", "true"), ("ft_context", "true"),
                                        ("ft_qa", "false")])
def test_single_setting_resets_the_student_to_the_base_model(name, lora):
    """The single-context setting (one document per step, back to the base model once it is probed) for
    SELF-PARAM and the baselines that fine-tune, so all of them can be compared there."""
    from lit_knowledge.methods import METHODS

    overrides = [f"method.name={name}", "method.reset_each_step=true", f"model.lora.enabled={lora}"]
    if name == "selfparam" and lora == "false":
        overrides.append("method.teacher=cached")
    cfg = load_config([], TINY + overrides)
    torch.manual_seed(0)
    m = METHODS.get(name)(cfg)
    assert m.shards_batches  # reset in place: DDP may split the batches
    ids = torch.tensor([m.training_examples(m.stream.steps[0])[0]["input_ids"]])
    with torch.no_grad():
        before = m.model(input_ids=ids).logits
    for p in m.model.parameters():  # pretend an injection happened: move every trained weight
        if p.requires_grad:
            p.data.add_(0.1)
    with torch.no_grad():
        assert not torch.allclose(m.model(input_ids=ids).logits, before, atol=1e-4)

    class Strategy:  # after_evaluation rebuilds the optimiser through the trainer's strategy
        def setup_optimizers(self, trainer):
            self.called = True

    class Trainer:
        strategy = Strategy()

    m._trainer = Trainer()
    m.after_evaluation(0)
    with torch.no_grad():
        assert torch.allclose(m.model(input_ids=ids).logits, before, atol=1e-5)
    assert m._trainer.strategy.called


def test_cached_teacher_gives_the_same_loss_as_the_live_teacher():
    live = method()
    cached = method("method.teacher=cached")
    cached.model.load_state_dict(live.model.state_dict())
    for m in (live, cached):
        m.log = lambda *a, **k: None
    dm_live, dm_cached = live.datamodule(), cached.datamodule()
    dm_live.setup()
    dm_cached.setup()

    class Trainer:
        datamodule = dm_cached

    cached._trainer = Trainer()
    batch = dm_live.batch(0)
    a = live.training_step(batch, 0)
    b = cached.training_step(dm_cached.batch(0), 0)
    assert torch.allclose(a, b, atol=1e-5)


CHAT = ("{% for m in messages %}<{{ m.role }}> {{ m.content }}\n{% endfor %}"
        "{% if add_generation_prompt %}<assistant>\n{% endif %}")


def test_chat_template_puts_the_document_in_the_teachers_user_turn():
    from lit_knowledge.models import load_model

    cfg = load_config([], TINY + ["model.chat_template=true"])
    torch.manual_seed(0)
    model, tokenizer = load_model(cfg.model, cfg)
    tokenizer.chat_template = CHAT
    m = SelfParam(cfg, model, tokenizer)
    step = m.stream.steps[0]
    question, answer = step.train_qa[step.documents[0].id][0]
    prompt = m.qa_prompt(question)
    assert prompt.startswith("<system> Answer the question with a short phrase") and prompt.endswith("<assistant>\n")
    assert f"<user> {question}\n" in prompt
    assert f"<user> {step.documents[0].text}\n\n{question}\n" in m.qa_prompt(question, step.documents[0].text)
    row = m.training_examples(step)[0]
    scored = [t for t in row["labels"] if t != -100]
    # the same target tokens, last in both rows: the answer right after the assistant header, then end of turn
    assert scored == [t for t in row["teacher_labels"] if t != -100] == row["teacher_input_ids"][-len(scored):]
    assert m.tokenizer.decode(scored[:-1]) == answer and scored[-1] == tokenizer.eos_token_id
    assert len(row["teacher_input_ids"]) > len(row["input_ids"])


def test_chat_template_without_a_template_is_one_clear_error():
    from lit_knowledge.errors import UserError

    with pytest.raises(UserError, match="has no chat template: set model.chat_template=false"):
        method("model.chat_template=true")


def test_a_fine_tuning_arms_seed_reorders_its_batches_and_keeps_the_reader_and_probes():
    """method.seed gives a fine-tuning arm another seed (its batch order) on the same reader and probes; run.seed
    would also draw another probe sample (eval.max_probes)."""
    from lit_knowledge.methods import METHODS

    def planned(*overrides):
        cfg = load_config([], TINY + ["method.name=ft_context", "data.world.entities_per_step=6", *overrides])
        torch.manual_seed(cfg.run.seed)  # as the run does before it builds the model
        m = METHODS.get("ft_context")(cfg)
        dm = m.datamodule()
        dm.setup("fit")
        probes = [p.question for step in m.make_protocol().step_probes for p in step]
        return [list(idx) for _, _, idx in dm._dataset.plan], probes, m.model.state_dict()

    plan0, probes0, weights0 = planned()
    assert planned("method.seed=0")[0] == plan0  # null means run.seed (0)
    plan1, probes1, weights1 = planned("method.seed=1")
    assert plan1 != plan0  # another order ...
    assert sorted(i for b in plan1 for i in b) == sorted(i for b in plan0 for i in b)  # ... of the same examples
    assert probes1 == probes0
    assert all(torch.equal(weights1[k], weights0[k]) for k in weights0)  # the same model
