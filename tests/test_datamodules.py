"""The pretraining stream: seeded per batch index (resumable anywhere), batches of similar length."""

import itertools
import random

import pytest
import torch

from lit_knowledge.data.datamodules import PretrainDataModule


def sample(rng: random.Random) -> dict:
    n = rng.randint(1, 40)
    return {"input_ids": [rng.randint(1, 99) for _ in range(n)], "labels": [1] * n}


def batches(start: int, count: int) -> list[dict]:
    dm = PretrainDataModule(sample, batch_size=8, pad_id=0, seed=3, start=lambda: start)
    return list(itertools.islice(iter(dm.train_dataloader()), count))


def test_a_stream_started_at_batch_i_continues_exactly_where_an_uninterrupted_one_is():
    full = batches(0, 11)
    for start in (1, 4, 5, 7):
        resumed = batches(start, 11 - start)
        for a, b in zip(full[start:], resumed):
            assert torch.equal(a["input_ids"], b["input_ids"]) and torch.equal(a["labels"], b["labels"])


def test_batches_hold_examples_of_similar_length():
    rows = batches(0, 40)
    real = sum(int(b["attention_mask"].sum()) for b in rows)
    padded = sum(b["attention_mask"].numel() for b in rows)
    assert real / padded > 0.8  # random batches of lengths 1..40 would be about half padding


def test_a_plan_shuffles_each_pass_unless_the_method_keeps_the_documents_order():
    from lit_knowledge.data.datamodules import plan_batches

    shuffled = plan_batches([6, 4], epochs=2, batch_size=4, seed=0)
    kept = plan_batches([6, 4], epochs=2, batch_size=4, seed=0, keep_order=True)
    order = lambda plan, step: [i for s, _, idx in plan if s == step for i in idx]  # noqa: E731
    assert order(kept, 0) == [0, 1, 2, 3, 4, 5] * 2 and order(kept, 1) == [0, 1, 2, 3] * 2
    assert order(shuffled, 0) != order(kept, 0) and sorted(order(shuffled, 0)) == sorted(order(kept, 0))
    assert [(s, last) for s, last, _ in kept] == [(s, last) for s, last, _ in shuffled]  # same steps, same ends


def test_a_method_that_keeps_the_order_trains_a_step_in_the_streams_order():
    from datasets import Dataset

    from lit_knowledge.data.datamodules import KnowledgeStreamDataModule

    class Method:  # what the datamodule asks of a method
        epochs_per_step, keeps_document_order, batches_done = 1, True, 0
        tokenizer = type("T", (), {"pad_token_id": 0})

        def stream_units(self):
            return [0, 1]

        def training_examples(self, step):
            return Dataset.from_list([{"input_ids": [10 * step + i], "labels": [1]} for i in range(5)])

    dm = KnowledgeStreamDataModule(None, Method(), batch_size=2, seed=0)
    seen = [int(t) for b in dm.train_dataloader() for t in b["input_ids"][:, 0]]
    assert seen == [0, 1, 2, 3, 4, 10, 11, 12, 13, 14]
    assert dm.examples(1)["input_ids"] == [[10], [11], [12], [13], [14]]
    assert dm.batch(0)["stream_step"] == 0


def test_under_ddp_each_process_takes_its_share_of_a_batch_and_a_small_batch_whole(monkeypatch):
    from lit_knowledge.data import datamodules
    from lit_knowledge.distributed import shard

    assert shard(list(range(7)), 0, 2) == [0, 2, 4, 6] and shard(list(range(7)), 1, 2) == [1, 3, 5]
    assert shard([9], 1, 2) == [9]  # fewer items than processes: every process the whole batch
    rows = [{"input_ids": [1] * (i + 1), "labels": [1] * (i + 1)} for i in range(5)]
    planned = datamodules._PlannedBatches([rows], [(0, True, [0, 1, 2, 3, 4])], pad_id=0)
    monkeypatch.setattr(datamodules, "rank_and_world", lambda: (1, 2))
    batch = planned[0]
    assert batch["input_ids"].shape[0] == 2 and int(batch["attention_mask"].sum()) == 2 + 4
    assert batch["batch_tokens"] == 15  # the whole batch, what both processes trained together
    # rank 1 holds rows 1 and 3: 1 + 3 of the 0 + 1 + 2 + 3 + 4 scored tokens, so its mean loss counts 4 / 10 x 2
    assert batch["shard_weight"] == pytest.approx(4 * 2 / 10)
    whole = datamodules._PlannedBatches([rows], [(0, True, [0, 1, 2, 3, 4])], pad_id=0, shard=False)[0]
    assert whole["input_ids"].shape[0] == 5  # a method whose state needs every example (MemoryLLM)


def _agree_over_steps(rank: int, port: int, raised_at: dict, out):
    import os

    import torch.distributed as dist

    from lit_knowledge.distributed import LaterAgreement

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=2)
    agreement = LaterAgreement()
    answers = [agreement.any_raised(step in raised_at[rank], 2) for step in range(6)]
    out.put((rank, answers + [agreement.finish()]))
    dist.destroy_process_group()


def test_a_later_agreement_gives_every_process_the_same_answer_one_step_late():
    """Rank 0 raises its flag at step 1, rank 1 at steps 3 and 5: both learn it at steps 2 and 4, and of step 5
    when the exchange is finished; one process (or a one-device fit) learns its own flag at once."""
    import socket

    import torch.multiprocessing as mp

    from lit_knowledge.distributed import LaterAgreement

    assert [LaterAgreement().any_raised(f, 1) for f in (False, True)] == [False, True]
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    ctx = mp.get_context("spawn")
    out = ctx.Queue()
    procs = [ctx.Process(target=_agree_over_steps, args=(r, port, {0: {1}, 1: {3, 5}}, out), daemon=True)
             for r in range(2)]
    for p in procs:
        p.start()
    try:
        answers = dict(out.get(timeout=120) for _ in procs)
    finally:
        for p in procs:
            p.join(timeout=60)
            if p.is_alive():
                p.terminate()
    assert answers[0] == answers[1] == [False, False, True, False, True, False, True]
