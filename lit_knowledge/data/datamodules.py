"""LightningDataModules: the knowledge stream, the edit stream, and the reader's pretraining mix.

The tokenizer belongs to the model, so a DataModule is connected to it after the model is built:
each DataModule takes the method, which owns the tokenizer and says what its training examples are.

Knowledge stream: one epoch walks the stream in order. For stream step k it yields the method's
training examples for that step (`method.training_examples(step)`, a `datasets.Dataset`), repeated
`method.epochs_per_step` times in a seeded shuffle (or in the stream's order, for a method whose state
depends on the order it reads documents in: `method.keeps_document_order`), cut into batches. Every batch carries its
`stream_step` and whether it is the last of its step, which is where the method finishes the step
(merge, record, evaluate). A step with nothing to train on still yields one empty batch, so the step
boundary is always seen. The whole plan is fixed by the seed, so a resumed run skips exactly the
batches it has already done (the method's `batches_done`, kept in every checkpoint).
"""

from __future__ import annotations

import random

import lightning as L
from datasets import Dataset
from torch.utils.data import DataLoader, IterableDataset, Sampler
from torch.utils.data import Dataset as TorchDataset

from lit_knowledge.data.prompts import collate, scored_tokens
from lit_knowledge.distributed import rank_and_world, shard


def collate_prompt(examples: list[dict], name: str, pad_id: int) -> dict:
    """The examples' second prompt, given as `<name>_input_ids` and `<name>_labels` (SELF-PARAM's teacher), padded
    into a batch as the first is: `input_ids`, `labels`, `attention_mask`."""
    return collate([{"input_ids": e[f"{name}_input_ids"], "labels": e[f"{name}_labels"]} for e in examples], pad_id)


def collate_examples(examples: list[dict], pad_id: int) -> dict:
    """A method's encoded examples as one batch. Their other fields: a second prompt (`collate_prompt`) is padded
    into tensors named `<name>_input_ids`, `<name>_labels`, `<name>_attention_mask`; any other field travels as a
    list."""
    batch = collate(examples, pad_id)
    extra = examples[0].keys() - {"input_ids", "labels"}
    for name in sorted(k.removesuffix("_input_ids") for k in extra if k.endswith("_input_ids")):
        if f"{name}_labels" in extra:
            batch.update({f"{name}_{k}": v for k, v in collate_prompt(examples, name, pad_id).items()})
            extra -= {f"{name}_input_ids", f"{name}_labels", f"{name}_attention_mask"}
    for key in extra:
        batch[key] = [e[key] for e in examples]
    return batch


class _PlannedBatches(TorchDataset):
    """A fixed list of batches: (stream_step, is_last_of_step, example indices into that step's examples).

    With `shard`, a multi-process launch splits every batch across its processes (lit_knowledge/distributed.py);
    `batch_tokens` counts the whole batch's tokens, what all processes trained together."""

    def __init__(self, per_step: list[Dataset], plan: list[tuple[int, bool, list[int]]], pad_id: int,
                 shard: bool = True):
        self.per_step, self.plan, self.pad_id, self.shard = per_step, plan, pad_id, shard
        self._rows: tuple[int, list[dict]] | None = None  # (step, its examples as plain rows), read at once

    def rows(self, step: int) -> list[dict]:
        """Step `step`'s examples as plain rows; the walk goes step by step, so only the current step's are kept."""
        if self._rows is None or self._rows[0] != step:
            examples = self.per_step[step]
            self._rows = (step, examples.to_list() if isinstance(examples, Dataset) else list(examples))
        return self._rows[1]

    def __len__(self):
        return len(self.plan)

    def __getitem__(self, i):
        step, last, idx = self.plan[i]
        rows = self.rows(step) if idx else []
        examples = [rows[j] for j in idx]
        batch_tokens = sum(len(e["input_ids"]) for e in examples)
        weight = None
        rank, world = rank_and_world()
        if self.shard and world > 1 and len(examples) >= world:
            # A next-token loss is a mean over the scored tokens a process holds; times this weight it is the
            # process's share of the whole batch's mean, so DDP's average of gradients is the one-process one.
            scored = sum(len(scored_tokens(e)) for e in examples)
            examples = shard(examples, rank, world)
            weight = sum(len(scored_tokens(e)) for e in examples) * world / max(1, scored)
        batch = collate_examples(examples, self.pad_id) if examples else {}
        if weight is not None:
            batch["shard_weight"] = weight
        batch.update({"stream_step": step, "last_in_step": last, "position": i, "batch_tokens": batch_tokens})
        return batch


def plan_batches(sizes: list[int], epochs: int, batch_size: int, seed: int,
                 keep_order: bool = False) -> list[tuple[int, bool, list[int]]]:
    """(stream_step, is_last_of_step, example indices) of every batch: each step's examples `epochs` times,
    shuffled per pass with a seed of the step's own, or in their order with `keep_order`."""
    plan = []
    for step, n in enumerate(sizes):
        order = []
        rng = random.Random(seed * 1_000_003 + step)
        for _ in range(epochs if n else 0):
            perm = list(range(n))
            if not keep_order:
                rng.shuffle(perm)
            order += perm
        chunks = [order[i : i + batch_size] for i in range(0, len(order), batch_size)] or [[]]
        plan += [(step, i == len(chunks) - 1, chunk) for i, chunk in enumerate(chunks)]
    return plan


class _FromPosition(Sampler):
    """Indices of the plan from `position()` on; its length stays the whole plan's."""

    def __init__(self, total: int, position):
        self.total, self.position = total, position

    def __iter__(self):
        return iter(range(self.position(), self.total))

    def __len__(self):
        return self.total


def _as_built(batch):
    return batch


class _StreamLoader(DataLoader):
    """A loader Lightning treats as resumable (it has state_dict / load_state_dict).

    On a resumed run Lightning restores how many batches of the epoch are done and counts on from there
    up to `len(loader)`; this loader starts at that same position (the method's `batches_done`, restored
    from the checkpoint before iteration begins), so every batch of the plan runs exactly once.
    """

    def __init__(self, dataset, position, num_workers: int = 0):
        # A planned batch is already collated: handed on as it is (the default would walk every list in it).
        super().__init__(dataset, batch_size=None, sampler=_FromPosition(len(dataset), position),
                         num_workers=num_workers, collate_fn=_as_built)
        self._position = position

    def state_dict(self) -> dict:
        return {"batches_done": self._position()}

    def load_state_dict(self, state: dict) -> None:
        pass  # the position lives in the method's checkpointed state, restored before iteration


class KnowledgeStreamDataModule(L.LightningDataModule):
    def __init__(self, stream, method, batch_size: int, seed: int = 0, num_workers: int = 0):
        super().__init__()
        self.stream, self.method = stream, method
        self.batch_size, self.seed, self.num_workers = batch_size, seed, num_workers
        self._dataset = None

    def setup(self, stage: str | None = None):
        if self._dataset is None:
            per_step = [self.method.training_examples(unit) for unit in self.method.stream_units()]
            plan = plan_batches([len(d) for d in per_step], self.method.epochs_per_step, self.batch_size, self.seed,
                                keep_order=self.method.keeps_document_order)
            self._dataset = _PlannedBatches(per_step, plan, self.method.tokenizer.pad_token_id,
                                            shard=getattr(self.method, "shards_batches", True))

    def examples(self, step: int) -> Dataset:
        """The encoded training examples of stream step `step`, as the method gave them."""
        self.setup()
        return self._dataset.per_step[step]

    def batch(self, i: int) -> dict:
        """The i-th batch of the plan, as the walk will see it."""
        self.setup()
        return self._dataset[i]

    def train_dataloader(self):
        """The plan from the method's stream position on: a resumed run skips the batches it has done."""
        self.setup()
        return _StreamLoader(self._dataset, lambda: self.method.batches_done, num_workers=self.num_workers)


class _MixStream(IterableDataset):
    """Batches drawn in groups of `bucket`: group g is drawn from its own seeded generator, its examples sorted by
    length and cut into `bucket` batches, so a batch holds examples of similar length and little padding (padding
    was over a third of the tokens of a random batch of the reader's mix). Batch i belongs to group i // bucket,
    so the stream can start at any batch index."""

    def __init__(self, sample_fn, batch_size: int, pad_id: int, seed: int, start: int = 0, bucket: int = 4):
        self.sample_fn, self.batch_size, self.pad_id, self.seed, self.start = sample_fn, batch_size, pad_id, seed, start
        self.bucket = bucket

    def group(self, g: int) -> list[dict]:
        rng = random.Random(self.seed * 1_000_003 + g)
        examples = sorted((self.sample_fn(rng) for _ in range(self.batch_size * self.bucket)),
                          key=lambda e: len(e["input_ids"]))
        batches = [examples[i : i + self.batch_size] for i in range(0, len(examples), self.batch_size)]
        rng.shuffle(batches)  # short and long batches in a random order
        return [collate(b, self.pad_id) for b in batches]

    def __iter__(self):
        g, skip = divmod(self.start, self.bucket)
        while True:
            yield from self.group(g)[skip:]
            g, skip = g + 1, 0


class PretrainDataModule(L.LightningDataModule):
    """An endless, seeded stream of pretraining batches drawn by `sample_fn(rng) -> encoded example`.

    `start()` gives the index of the first batch (the restored global step on resume), so a resumed
    run sees exactly the batches an uninterrupted run would have seen.
    """

    def __init__(self, sample_fn, batch_size: int, pad_id: int, seed: int = 0, start=lambda: 0):
        super().__init__()
        self.sample_fn, self.batch_size, self.pad_id, self.seed, self.start = sample_fn, batch_size, pad_id, seed, start

    def train_dataloader(self):
        stream = _MixStream(self.sample_fn, self.batch_size, self.pad_id, self.seed, self.start())
        return DataLoader(stream, batch_size=None)


class _StepIndexStream(IterableDataset):
    """Step indices from `start` on, without end."""

    def __init__(self, start: int):
        self.start = start

    def __iter__(self):
        step = self.start
        while True:
            yield step
            step += 1


class StepIndices(L.LightningDataModule):
    """A cached build's training data when each step draws its own examples, seeded by its index: the batches are
    the step indices from `start()` on (the trainer's global step, so a resumed build draws what an uninterrupted
    one would)."""

    def __init__(self, start):
        super().__init__()
        self.start = start

    def train_dataloader(self):
        return DataLoader(_StepIndexStream(self.start()), batch_size=None)
