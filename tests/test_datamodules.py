"""The pretraining stream: seeded per batch index (resumable anywhere), batches of similar length."""

import itertools
import random

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
