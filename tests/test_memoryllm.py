"""MemoryLLM: the pool's read, write and update on tiny models, the stream method's state, and (slow) that a
trained memory module answers from what it wrote."""

import math

import pytest
import torch
from conftest import CONFIGS, DEBUG_YAML, write_step
from transformers import GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM

from lit_knowledge.config import load_config
from lit_knowledge.errors import UserError
from lit_knowledge.methods.memoryllm.memory import MemoryModel, update_pool

MEMORYLLM_YAML = CONFIGS / "memoryllm" / "memoryllm.yaml"


def tiny_llama(kv_heads: int = 4, seed: int = 0, max_positions: int = 128) -> LlamaForCausalLM:
    torch.manual_seed(seed)
    config = LlamaConfig(vocab_size=60, hidden_size=32, intermediate_size=64, num_hidden_layers=3,
                         num_attention_heads=4, num_key_value_heads=kv_heads, max_position_embeddings=max_positions)
    return LlamaForCausalLM(config).eval()


def with_random_vectors(memory: MemoryModel) -> MemoryModel:
    with torch.no_grad():
        memory.start.normal_()
        memory.write_vector.normal_()
    return memory


def causal_mask(length: int) -> torch.Tensor:
    return torch.full((length, length), float("-inf")).triu(1)[None, None]


def run_layers(lm, per_layer_prefix, hidden, before_layer=lambda h: h, scale: float = 1.0):
    """The reference: at every layer the prefix tokens go through the whole layer beside the text (queries, MLP),
    and their outputs are thrown away; returns the text's final hidden states and each layer's outputs.
    Positions are 0, 1, 2, ... times `scale`."""
    outputs = []
    for layer_i, layer in enumerate(lm.model.layers):
        prefix = per_layer_prefix[layer_i]
        hidden = before_layer(hidden)
        full = torch.cat([prefix, hidden], dim=1)
        positions = torch.arange(full.shape[1])[None] * scale
        out = layer(full, attention_mask=causal_mask(full.shape[1]),
                    position_embeddings=lm.model.rotary_emb(full, positions), position_ids=positions)
        out = out[0] if isinstance(out, tuple) else out
        hidden = out[:, prefix.shape[1]:]
        outputs.append(hidden)
    return hidden, outputs


@pytest.mark.parametrize("kv_heads", [4, 2, 1], ids=["mha", "gqa", "mqa"])
def test_reading_the_pool_as_a_key_value_prefix_equals_running_it_through_each_layer(kv_heads):
    lm = tiny_llama(kv_heads)
    memory = with_random_vectors(MemoryModel(lm, pool_size=8, write_size=3))
    pool = torch.randn(3, 2, 8, 32)
    ids = torch.randint(3, 60, (2, 5))
    with torch.no_grad():
        logits = memory.read(pool, ids, torch.ones_like(ids)).logits
        prefix = [torch.cat([memory.start[layer_i].expand(2, 1, -1), pool[layer_i]], dim=1) for layer_i in range(3)]
        hidden, _ = run_layers(lm, prefix, lm.model.embed_tokens(ids))
        reference = lm.lm_head(lm.model.norm(hidden))
        torch.testing.assert_close(logits, reference, rtol=1e-5, atol=1e-5)
        # the memory matters: another pool gives other logits
        assert not torch.allclose(memory.read(pool + 1, ids, torch.ones_like(ids)).logits, logits, atol=1e-3)


def test_a_pool_and_text_longer_than_the_models_positions_are_read_and_written_at_interpolated_positions():
    """12 positions, start + 8 memory tokens + 5 text tokens = 14: every position is scaled by 11 / 13, so the
    last lands on position 11; reading and writing equal the reference run at those positions."""
    lm = tiny_llama(2, max_positions=12)
    memory = with_random_vectors(MemoryModel(lm, pool_size=8, write_size=3))
    assert memory.position_scale(12) == 1.0 and memory.position_scale(14) == pytest.approx(11 / 13)
    pool = torch.randn(3, 1, 8, 32)
    ids = torch.randint(3, 60, (1, 5))
    with torch.no_grad():
        logits = memory.read(pool, ids, torch.ones_like(ids)).logits
        prefix = [torch.cat([memory.start[layer_i].expand(1, 1, -1), pool[layer_i]], dim=1) for layer_i in range(3)]
        hidden, _ = run_layers(lm, prefix, lm.model.embed_tokens(ids), scale=11 / 13)
        torch.testing.assert_close(logits, lm.lm_head(lm.model.norm(hidden)), rtol=1e-5, atol=1e-5)
        # the unscaled positions 0..13 run past the model's range and give other logits
        unscaled, _ = run_layers(lm, prefix, lm.model.embed_tokens(ids))
        assert not torch.allclose(logits, lm.lm_head(lm.model.norm(unscaled)), atol=1e-4)
        chunk = torch.randint(3, 60, (1, 10))  # start + 3 recent tokens + 10 = 14 positions: scaled too
        new = memory.write(pool, chunk, torch.ones_like(chunk))
        recent = [torch.cat([memory.start[layer_i].expand(1, 1, -1), pool[layer_i, :, -3:]], dim=1) for layer_i in range(3)]

        def add_vector(h):
            return torch.cat([h[:, :-3], h[:, -3:] + memory.write_vector], dim=1)

        _, outputs = run_layers(lm, recent, lm.model.embed_tokens(chunk), before_layer=add_vector, scale=11 / 13)
    for layer_i in range(3):
        torch.testing.assert_close(new[layer_i], outputs[layer_i][:, -3:], rtol=1e-5, atol=1e-5)


def test_padded_text_reads_the_pool_as_unpadded_text_does():
    lm = tiny_llama(2)
    memory = with_random_vectors(MemoryModel(lm, pool_size=8, write_size=3))
    pool = torch.randn(3, 1, 8, 32)
    ids = torch.randint(3, 60, (1, 5))
    padded = torch.cat([ids, torch.zeros(1, 3, dtype=torch.long)], dim=1)
    mask = torch.tensor([[1, 1, 1, 1, 1, 0, 0, 0]])
    with torch.no_grad():
        alone = memory.read(pool, ids, torch.ones_like(ids)).logits
        in_batch = memory.read(pool, padded, mask).logits[:, :5]
    torch.testing.assert_close(alone, in_batch, rtol=1e-5, atol=1e-5)


def test_a_write_is_each_layers_output_at_the_chunks_last_k_positions_after_the_recent_pool():
    lm = tiny_llama(2)
    memory = with_random_vectors(MemoryModel(lm, pool_size=8, write_size=3))
    pool = torch.randn(3, 1, 8, 32)
    chunk = torch.randint(3, 60, (1, 7))
    with torch.no_grad():
        new = memory.write(pool, chunk, torch.ones_like(chunk))
        prefix = [torch.cat([memory.start[layer_i].expand(1, 1, -1), pool[layer_i, :, -3:]], dim=1) for layer_i in range(3)]

        def add_vector(h):
            return torch.cat([h[:, :-3], h[:, -3:] + memory.write_vector], dim=1)

        _, outputs = run_layers(lm, prefix, lm.model.embed_tokens(chunk), before_layer=add_vector)
    assert new.shape == (3, 1, 3, 32)
    for layer_i in range(3):
        torch.testing.assert_close(new[layer_i], outputs[layer_i][:, -3:], rtol=1e-5, atol=1e-5)


def test_a_chunk_shorter_than_k_writes_as_many_tokens_as_it_has_and_the_pool_keeps_its_size():
    memory = with_random_vectors(MemoryModel(tiny_llama(), pool_size=8, write_size=4))
    pool = torch.randn(3, 1, 8, 32)
    chunk = torch.randint(3, 60, (1, 3))
    with torch.no_grad():
        new = memory.write(pool, chunk, torch.ones_like(chunk))
        assert new.shape == (3, 1, 3, 32)
        assert memory.update(pool, new, torch.Generator().manual_seed(0)).shape == pool.shape
        with pytest.raises(UserError, match="empty chunk"):
            memory.write(pool, chunk, torch.zeros_like(chunk))


def test_a_model_that_is_not_llama_family_is_refused():
    gpt2 = GPT2LMHeadModel(GPT2Config(vocab_size=50, n_embd=16, n_layer=1, n_head=2))
    with pytest.raises(UserError, match="Llama-family"):
        MemoryModel(gpt2, pool_size=8, write_size=2)


def test_the_update_keeps_a_sorted_random_subset_and_appends_the_new_tokens():
    layers, rows, N, K = 3, 2, 10, 4
    first = torch.arange(K, dtype=torch.float)[None, None, :, None].expand(layers, rows, K, 1)
    pool = update_pool(None, first, N)
    assert pool.shape == (layers, rows, N, 1)  # the first write fills the pool by repeating its tokens
    old = torch.arange(N, dtype=torch.float)[None, None, :, None].expand(layers, rows, N, 1).clone()
    new = torch.full((layers, rows, K, 1), -1.0)
    updated = update_pool(old, new, N, torch.Generator().manual_seed(0))
    assert updated.shape == old.shape  # the size never changes
    assert (updated[:, :, -K:] == -1).all()
    kept = updated[:, :, : N - K, 0]
    assert (kept[..., 1:] > kept[..., :-1]).all()  # old tokens keep their order
    assert len({tuple(kept[layer_i, r].tolist()) for layer_i in range(layers) for r in range(rows)}) > 1  # per layer and row


def test_a_writes_surviving_share_of_the_pool_follows_one_minus_k_over_n_to_the_power_t_minus_one():
    layers, rows, N, K = 4, 512, 64, 8
    generator = torch.Generator().manual_seed(0)
    pool = update_pool(None, torch.zeros(layers, rows, K, 1), N)  # a full pool of earlier writes (tag 0)
    target = 1.0
    pool = update_pool(pool, torch.full((layers, rows, K, 1), target), N, generator)
    for t in range(1, 25):
        survived = (pool == target).float().sum(2).mean().item() / K
        assert survived == pytest.approx((1 - K / N) ** (t - 1), abs=0.01), t
        pool = update_pool(pool, torch.full((layers, rows, K, 1), 100.0 + t), N, generator)


# ------------------------------------------------------------------------------------------ the stream method


def debug_method(tmp_path, *overrides):
    from lit_knowledge.methods.memoryllm.method import MemoryLLM

    cfg = load_config([str(MEMORYLLM_YAML), str(DEBUG_YAML)],
                      [f"run.root={tmp_path}", "method.train_steps=0", "method.pool_size=32",
                       "method.write_size=8", *overrides])
    return MemoryLLM(cfg)


def test_documents_are_written_in_order_and_the_pool_keeps_its_size(tmp_path, tmp_cache):
    method = debug_method(tmp_path)
    assert method.keeps_document_order
    write_step(method, 0)
    documents = len(method.stream.steps[0].documents)
    assert method.writes == documents
    assert method.pool.shape == (method.memory.num_layers, 1, 32, method.memory.hidden)
    assert not method.pool.requires_grad
    before = method.extra_storage_bytes()
    write_step(method, 1)
    assert method.pool.shape[2] == 32 and method.extra_storage_bytes() == before


def test_a_checkpointed_pool_resumes_bit_for_bit(tmp_path, tmp_cache):
    method = debug_method(tmp_path)
    write_step(method, 0)
    checkpoint = {}
    method.on_save_checkpoint(checkpoint)
    path = tmp_path / "state.pt"
    torch.save(checkpoint, path)
    write_step(method, 1)

    resumed = debug_method(tmp_path)
    resumed.on_load_checkpoint(torch.load(path, weights_only=False))
    write_step(resumed, 1)
    assert torch.equal(method.pool, resumed.pool)
    assert resumed.writes == method.writes
    probes = method.stream.steps[1].probes[:4]
    assert method.answer(probes) == resumed.answer(probes)


def test_an_edit_stream_is_written_edit_by_edit_and_scored_against_the_empty_memory(tmp_path, tmp_cache, capsys):
    import json

    from lit_knowledge import train

    root = tmp_path / "runs"
    code = train.main(["--config", str(MEMORYLLM_YAML), "--config", str(DEBUG_YAML), f"run.root={root}",
                       "data.source=world_edits", "data.num_edits=4", "method.train_steps=0", "method.pool_size=32",
                       "method.write_size=8"])
    assert code == 0, capsys.readouterr().err
    results = json.loads(next(root.rglob("results.json")).read_text())
    metrics = results["metrics"]
    assert results["kind"] == "edit"
    for name in ("reliability", "generalization", "locality", "portability"):
        assert 0 <= metrics[name] <= 1 and 0 <= metrics[f"pre_edit_{name}"] <= 1
    assert metrics["mean_gain"] is not None and metrics["extra_storage_bytes"] == 3 * 32 * 128 * 4 + 4 * 128 * 4


def test_a_long_document_is_written_as_chunks_of_at_least_k_tokens(tmp_path, tmp_cache):
    method = debug_method(tmp_path, "method.chunk_length=12")
    text = " ".join(d.text for d in method.stream.steps[0].documents[:2])
    chunks = method.chunks(text)
    assert len(chunks) > 1 and all(8 <= len(c) <= 12 + 8 for c in chunks)
    from lit_knowledge.data.prompts import token_ids

    ids = token_ids(method.tokenizer, text)
    assert chunks[0] == ids[:12] and chunks[-1][-3:] == ids[-3:]  # in order, from the first token to the last


def small_training(tmp_path, *overrides):
    """The memory module's training on the debug reader with a pool of 32 and writes of 8, not logging."""
    from lit_knowledge.methods.memoryllm.training import MemoryTraining

    cfg = load_config([str(MEMORYLLM_YAML), str(DEBUG_YAML)],
                      [f"run.root={tmp_path}", "method.pool_size=32", "method.write_size=8", *overrides])
    module = MemoryTraining(cfg)
    module.log = lambda *a, **k: None
    return module


def test_training_keeps_the_running_pool_out_of_the_gradient(tmp_path, tmp_cache):
    module = small_training(tmp_path, "method.train_batch_size=3", "method.background_rows=2")
    for step in range(4):
        loss = module.training_step(torch.tensor(step), 0)
        loss.backward()
        assert not module.pool.requires_grad and module.pool.shape == (module.memory.num_layers, 3, 32, 128)
    trained = [n for n, p in module.memory.named_parameters() if p.grad is not None and p.grad.abs().sum() > 0]
    assert "start" in trained and "write_vector" in trained and any("lora" in n for n in trained)


def test_shuffled_reads_in_training_permute_the_memory_read_and_leave_the_running_pool_in_order(tmp_path, tmp_cache):
    from lit_knowledge.methods.memoryllm.training import memory_recipe

    def reads(*overrides):
        module = small_training(tmp_path, "method.train_batch_size=2", "method.background_rows=0",
                                "method.single_share=1", "method.multi_share=0", "method.replay_share=0",
                                "method.join_pool_share=1", *overrides)
        seen, read = [], module.memory.read
        module.memory.read = lambda memory, *a, **k: seen.append(memory.detach().clone()) or read(memory, *a, **k)
        for step in range(2):
            module.training_step(torch.tensor(step), 0)
        return seen[-1], module.pool

    cfg = load_config([str(MEMORYLLM_YAML)], [])
    assert "shuffle_read_in_training" not in memory_recipe(cfg)["training"]  # off: the keys of earlier builds
    assert memory_recipe(load_config([str(MEMORYLLM_YAML)], ["method.shuffle_read_in_training=true"])) != \
        memory_recipe(cfg)
    plain, pool = reads()
    shuffled, shuffled_pool = reads("method.shuffle_read_in_training=true")
    assert torch.equal(plain, pool) and torch.equal(shuffled_pool, pool)  # the same writes; the running pool in order
    layers, rows = plain.shape[:2]
    for layer in range(layers):  # the same tokens, in another order
        for row in range(rows):
            assert sorted(map(tuple, shuffled[layer, row].tolist())) == sorted(map(tuple, plain[layer, row].tolist()))
    # the newest write's 8 tokens: one set of places for every layer and row, not the last 8
    places = {tuple(int((shuffled[layer, row] == token).all(-1).nonzero()[0]) for token in plain[layer, row, -8:])
              for layer in range(layers) for row in range(rows)}
    assert len(places) == 1 and places != {tuple(range(24, 32))}


def test_gradient_through_earlier_writes_reaches_every_write_of_a_several_contexts_step(tmp_path, tmp_cache):
    """The paper's several-contexts regime writes all but the last document without gradient; the option keeps the
    gradient of every write, so the loss trains the earlier writes too, through their surviving tokens and the
    writes that read them. Off by default, with the keys of earlier builds."""
    from lit_knowledge.methods.memoryllm.training import memory_recipe

    def writes(*overrides):
        module = small_training(tmp_path, "method.train_batch_size=2", "method.background_rows=0",
                                "method.single_share=0", "method.multi_share=1", "method.replay_share=0",
                                "method.max_contexts=3", "method.curriculum_steps=1", *overrides)
        made, write = [], module.write

        def keep(documents):
            out = write(documents)
            if out.requires_grad:
                out.retain_grad()
            made.append(out)
            return out

        module.write = keep
        module.training_step(torch.tensor(3), 0).backward()
        assert len(made) >= 2 and not module.pool.requires_grad
        return made

    cfg = load_config([str(MEMORYLLM_YAML)], [])
    assert "gradient_through_earlier_writes" not in memory_recipe(cfg)["training"]
    assert memory_recipe(load_config([str(MEMORYLLM_YAML)], ["method.gradient_through_earlier_writes=true"])) != \
        memory_recipe(cfg)
    paper = writes()
    assert [w.requires_grad for w in paper] == [False] * (len(paper) - 1) + [True]
    chained = writes("method.gradient_through_earlier_writes=true")
    assert all(w.grad is not None and w.grad.abs().sum() > 0 for w in chained)


def test_training_never_names_a_stream_or_locality_person(tmp_path, tmp_cache):
    """Held out at the level of people: a training step's documents and questions are about fresh people and
    the rehearsal half of the background, never about a stream person (test or dev stream) or a person locality
    asks about, so none of their facts is in any text the memory module learns from."""
    from lit_knowledge.data.world import World
    from lit_knowledge.methods.memoryllm.training import MemoryTraining

    cfg = load_config([str(MEMORYLLM_YAML), str(DEBUG_YAML)], [f"run.root={tmp_path}", "method.write_size=8",
                                                               "method.train_batch_size=8"])
    module = MemoryTraining(cfg)
    world = module.world
    dev = World(load_config([str(MEMORYLLM_YAML), str(DEBUG_YAML)], ["data.world.stream_seed=1"]).data.world)
    held_out = {p.name for p in world.stream_people + dev.stream_people + world.locality_people()}
    rehearsed = {p.name for p in world.rehearsal_people()}
    seen, regimes = set(), set()
    for step in range(300):
        draw = module.draw(step, can_replay=step % 2 == 1)
        regimes.add(draw.regime)
        texts = [d for group in draw.documents for d in group]
        texts += [f"{q} {a}" for rows in (draw.asked, draw.background) for qa in rows for q, a in qa]
        for text in texts:
            named = {name for name in held_out | rehearsed if name in text}
            assert not named & held_out, (named & held_out, text)
            seen |= named
    assert regimes == {"single", "multi", "replay"}
    assert seen and seen <= rehearsed  # background rows name rehearsed people only


@pytest.mark.slow
def test_a_trained_memory_module_answers_from_what_it_wrote(tmp_path, tmp_cache):
    """The paper's claim at its smallest: after a short training on fresh people, questions about a document
    just written into a pool of other documents are answered better than with no memory."""
    from lit_knowledge.methods.memoryllm.training import memory_build, train_memory_module

    cfg = load_config([str(MEMORYLLM_YAML)], [f"run.root={tmp_path}", "method.train_steps=300",
                                              "trainer.enable_progress_bar=false"])
    train_memory_module(cfg)
    import json

    report = json.loads((memory_build(cfg).path / "memory.json").read_text())["report"]
    assert report["efficacy_f1"] > report["no_memory_f1"] + 0.15, report
    assert math.isfinite(report["efficacy_f1"])


def test_retention_by_age_recovers_the_decay_rate_of_a_stream_that_follows_the_theory():
    from lit_knowledge.methods.memoryllm.method import retention_by_age

    K, N, floor, a1, steps = 16, 64, 0.1, 0.8, 12
    rate = math.log(1 - K / N)
    matrix = [[floor + (a1 - floor) * math.exp(rate * (k - j)) for j in range(k + 1)] + [None] * (steps - k - 1)
              for k in range(steps)]
    out = retention_by_age(matrix, K, N, floor)
    assert out["age"] == list(range(1, steps + 1))
    assert out["fitted_decay_rate"] == pytest.approx(rate, rel=1e-6)
    assert out["theory_decay_rate"] == pytest.approx(rate)
    assert out["theory_f1"] == pytest.approx(out["f1"])
    flat = retention_by_age([[0.5] * (k + 1) + [None] * (steps - k - 1) for k in range(steps)], K, N, 0.1)
    assert flat["fitted_decay_rate"] == pytest.approx(0.0, abs=1e-9)  # nothing forgotten: no decay


def test_the_report_draws_retention_by_age_and_tables_the_decay_rates(tmp_path):
    import json

    from lit_knowledge.methods.memoryllm.method import retention_by_age
    from lit_knowledge.report import build_report

    matrix = [[0.8 * 0.75 ** (k - j) for j in range(k + 1)] + [None] * (5 - k) for k in range(6)]
    for name, floor in (("memoryllm-N64", 0.0), ("base", None)):
        run = tmp_path / "exp" / name
        run.mkdir(parents=True)
        results = {"run": name, "method": name.split("-")[0], "kind": "qa", "metrics": {"efficacy_f1": 0.5},
                   "curves": {}}
        if floor is not None:
            results["retention_by_age"] = retention_by_age(matrix, 16, 64, floor)
        (run / "results.json").write_text(json.dumps(results))
    build_report(tmp_path / "exp")
    text = (tmp_path / "exp" / "comparison.md").read_text()
    assert "## Retention by age" in text and "| memoryllm-N64 | 0.800 | 0.000 | -0.2877 | -0.2877 | 1.00 | 6 |" in text
    assert (tmp_path / "exp" / "retention_by_age.png").stat().st_size > 0


def test_one_memory_module_serves_every_stream_and_pool_size_of_a_world():
    from lit_knowledge.methods.memoryllm.training import memory_build

    def key(*overrides):
        return memory_build(load_config([str(MEMORYLLM_YAML)], ["method.train_pool_size=128", *overrides])).key

    same = {key(), key("data.world.num_steps=40", "data.world.entities_per_step=1"), key("data.world.stream_seed=1"),
            key("method.pool_size=256"), key("eval.max_probes=5")}
    assert len(same) == 1
    assert key("method.train_steps=10") not in same and key("data.world.num_background=50") not in same
    assert key("model.lora.r=4") not in same


def test_the_integrity_bench_keeps_the_pool_size_and_reports_every_target(tmp_path, tmp_cache):
    from lit_knowledge.methods.memoryllm.integrity import format_integrity, integrity

    cfg = load_config([str(MEMORYLLM_YAML), str(DEBUG_YAML)],
                      [f"run.root={tmp_path}", "method.train_steps=0", "method.pool_size=32", "method.write_size=8"])
    res = integrity(cfg, writes=6, every=3, probe_docs=2)
    assert [r["writes"] for r in res["rows"]] == [2, 5, 8] and res["writes"] == 10
    assert res["pool_bytes_constant"] and res["rows"][0]["pool_bytes"] == 3 * 32 * 128 * 4
    text = format_integrity(res)
    assert "pool bytes constant: met" in text and "held-out LM loss change" in text and "last targets F1" in text


def test_the_recency_probe_moves_the_same_tokens_and_reports_every_pool(tmp_path, tmp_cache):
    from lit_knowledge.methods.memoryllm.memory import update_pool
    from lit_knowledge.methods.memoryllm.recency import POOLS, format_recency, recency, recency_pools

    class Pool:  # the update alone, at N = 8, K = 2
        pool_size = 8

        def update(self, pool, new, generator=None):
            return update_pool(pool, new, 8, generator)

    a, b = torch.randn(3, 1, 2, 4), torch.randn(3, 1, 2, 4)
    pools = recency_pools(Pool(), a, b, torch.Generator().manual_seed(0))
    assert all(p.shape == (3, 1, 8, 4) for p in pools.values())
    then_other, moved = pools["target_then_other"], pools["other_block_first"]
    assert torch.equal(then_other[:, :, -2:], b) and torch.equal(moved[:, :, :2], b)
    assert torch.equal(moved[:, :, -2:], a) and torch.equal(moved[:, :, 2:-2], then_other[:, :, 2:-2])
    assert torch.equal(pools["target_then_empty"][:, :, -2:], torch.zeros_like(a))
    assert torch.equal(pools["target_then_empty"][:, :, :-2], then_other[:, :, :-2])  # the same drop draws

    cfg = load_config([str(MEMORYLLM_YAML), str(DEBUG_YAML)],
                      [f"run.root={tmp_path}", "method.train_steps=0", "method.pool_size=32", "method.write_size=8"])
    res = recency(cfg, pairs=2)
    assert set(res["f1"]) == set(POOLS) and res["probes"] > 0
    assert all(0.0 <= f <= 1.0 for f in [*res["f1"].values(), res["empty_memory_f1"]])
    assert "| other_block_first |" in format_recency(res) and "| empty memory (the floor) |" in format_recency(res)
