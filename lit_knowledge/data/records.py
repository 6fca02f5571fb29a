"""Canonical records of the knowledge stream.

Every reader, the synthetic world and every method speak in these three records:

- `Document`: a piece of text to be learned, with the time it appears in the stream (and its subject, if known).
- `Probe`: a question about a document (or about background knowledge), with its accepted answers.
- `Edit`: a knowledge-editing request (a prompt whose completion should change).
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Document:
    id: str
    text: str
    time: int = 0
    # The entity the document is about, when the source knows it (the world's documents: the person's name).
    subject: str = ""


@dataclass
class Probe:
    id: str
    doc_id: str
    question: str
    answers: list[str]
    kind: str = "efficacy"
    # The fact a direct question asks about, when the source knows it (the world: "city", "year", "org" or
    # "field"; "" for its derived questions and for sources that do not say).
    relation: str = ""


@dataclass
class Edit:
    """One knowledge edit: `prompt` (mentioning `subject`) should now be completed by `target_new`.

    `paraphrases` are other prompts with the same meaning (generalization), `locality` holds
    (prompt, answer) pairs that must not change, `portability` holds (question, answer) pairs
    that follow from the edit by one more hop. `locality_covered` holds more pairs that must not
    change, about knowledge that an editor's own texts (its knowledge texts) cover; `locality` is then
    about knowledge no text of any method holds.
    """

    id: str
    prompt: str
    subject: str
    target_new: str
    target_true: str = ""
    paraphrases: list[str] = field(default_factory=list)
    locality: list[tuple[str, str]] = field(default_factory=list)
    portability: list[tuple[str, str]] = field(default_factory=list)
    locality_covered: list[tuple[str, str]] = field(default_factory=list)

