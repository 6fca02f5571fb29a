"""The contract between methods and protocols: all a protocol may ask of a method.

A protocol never reads a method's weights. Where a method keeps its knowledge (its weights, a memory pool,
a bank of compressed documents, the document in the prompt) is its own business; it answers three calls:

- `answer(probes)`: a short answer to each probe, greedy (the stream protocol's F1 and EM);
- `predict_tokens(pairs)`: for each (prompt, target), the method's argmax at every token of " " + target
  given the prompt and the target's earlier tokens, i.e. teacher-forced (the edit protocol's token accuracy);
- `lm_loss(texts)`: the mean next-token loss on texts (general ability), None for no texts.

`KnowledgeMethod` answers them from `self.model`; a method whose knowledge lives elsewhere overrides them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable


@dataclass
class TokenPrediction:
    """The method's teacher-forced argmax at each token of a target, and those tokens."""

    predicted: list[int]
    target: list[int]  # the target's token ids (" " + target, no end of sequence)
    text: str  # the predicted tokens, decoded


@runtime_checkable
class Answers(Protocol):
    def answer(self, probes) -> list[str]: ...

    def predict_tokens(self, pairs: list[tuple[str, str]]) -> list[TokenPrediction]: ...

    def lm_loss(self, texts: list[str]) -> float | None: ...
