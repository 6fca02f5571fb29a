"""Streams: the ordered units a method learns from, with the probes asked after each unit.

- A `KnowledgeStream` is a list of `StreamStep`s (documents + probes about them), plus background
  probes (knowledge the base model had before the stream: locality) and held-out texts (general
  ability, measured as language-model loss).
- An `EditStream` is an ordered list of `Edit`s, plus held-out texts, the style its prompts are written in
  and, where the source knows what the edited model was pretrained on, that text (`knowledge_texts`).

Every data source (the synthetic world, each real-data reader) produces one of the two.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Callable

from lit_knowledge.data.records import Document, Edit, Probe


@dataclass
class StreamStep:
    index: int
    documents: list[Document]
    probes: list[Probe]
    # The QA set about this step's documents that training methods may use (SELF-PARAM's target set S,
    # the FT(S) baseline): doc id -> [(question, answer)]. Its wordings are disjoint from the probes'.
    train_qa: dict[str, list[tuple[str, str]]] = field(default_factory=dict)


@dataclass
class KnowledgeStream:
    steps: list[StreamStep]
    background_probes: list[Probe] = field(default_factory=list)
    heldout_texts: list[str] = field(default_factory=list)
    # Probes answered by earlier steps that a later step supersedes (a fact that changed): ids.
    superseded: dict[int, set[str]] = field(default_factory=dict)
    # Text unrelated to the stream that methods may train on to keep general ability (never the
    # held-out texts or the background probes, which measure it).
    unrelated_texts: list[str] = field(default_factory=list)
    # Names of the people the model knew before the stream (the world's background): a method that makes up
    # names (namesake contrasts) must never make up one of these, nor a stream subject's.
    known_names: list[str] = field(default_factory=list)

    def truncate(self, num_steps: int | None) -> "KnowledgeStream":
        if num_steps is None:
            return self
        return KnowledgeStream(self.steps[:num_steps], self.background_probes, self.heldout_texts,
                               {k: v for k, v in self.superseded.items() if k < num_steps}, self.unrelated_texts,
                               self.known_names)

    def counts(self) -> dict:
        return {
            "steps": len(self.steps),
            "documents": sum(len(s.documents) for s in self.steps),
            "probes": sum(len(s.probes) for s in self.steps),
            "background_probes": len(self.background_probes),
            "edits": 0,
        }


@dataclass
class EditStream:
    edits: list[Edit]
    heldout_texts: list[str] = field(default_factory=list)
    # How an edit prompt is written, for training and scoring alike: 'qa' (a question, answered as the world's
    # reader was trained: `qa_prompt(prompt)` -> " answer") or 'cloze' (prompt -> " target": CounterFact, zsRE,
    # MQuAKE).
    prompt_style: str = "cloze"
    # Text that stands for what the edited model already knows, from the source that knows what it was
    # pretrained on (the world): `knowledge_texts(which, limit, seed)`, `which` being 'pretrain' or 'mix'.
    # None for real data: editors then go on without.
    knowledge_texts: Callable[[str, int, int], list[str]] | None = None

    def truncate(self, num_edits: int | None) -> "EditStream":
        if num_edits is None:
            return self
        return dataclasses.replace(self, edits=self.edits[:num_edits])

    def counts(self) -> dict:
        return {"steps": len(self.edits), "documents": 0, "probes": 0, "background_probes": 0, "edits": len(self.edits)}


def chunk_documents(documents: list[Document], probes: list[Probe], docs_per_step: int) -> list[StreamStep]:
    """Order documents by time (stable) and cut them into steps of `docs_per_step`; probes follow their document."""
    ordered = sorted(documents, key=lambda d: d.time)
    by_doc: dict[str, list[Probe]] = {}
    for p in probes:
        by_doc.setdefault(p.doc_id, []).append(p)
    steps = []
    for i in range(0, len(ordered), docs_per_step):
        docs = ordered[i : i + docs_per_step]
        steps.append(StreamStep(len(steps), docs, [p for d in docs for p in by_doc.get(d.id, [])]))
    return steps
