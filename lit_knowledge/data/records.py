"""Canonical records of the knowledge stream and their JSONL round trip.

Every reader, the synthetic world and every method speak in these three records:

- `Document`: a piece of text to be learned, with the time it appears in the stream (and its subject, if known).
- `Probe`: a question about a document (or about background knowledge), with its accepted answers.
- `Edit`: a knowledge-editing request (a prompt whose completion should change).
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator, TypeVar


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


RECORD_TYPES = {"document": Document, "probe": Probe, "edit": Edit}
R = TypeVar("R", Document, Probe, Edit)


def to_dict(record) -> dict:
    return dataclasses.asdict(record)


def from_dict(cls: type[R], d: dict) -> R:
    """Build a record from a dict; tuples come back as tuples (JSON stores them as lists)."""
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = set(d) - names
    if unknown:
        raise ValueError(f"unknown field(s) {sorted(unknown)} for {cls.__name__}")
    d = dict(d)
    if cls is Edit:
        for key in ("locality", "portability", "locality_covered"):
            d[key] = [tuple(pair) for pair in d.get(key, [])]
    return cls(**d)


def write_jsonl(path: str | Path, records: Iterable) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    with tmp.open("w") as f:
        for r in records:
            f.write(json.dumps(to_dict(r), ensure_ascii=False) + "\n")
    tmp.replace(path)


def read_jsonl(path: str | Path, cls: type[R]) -> Iterator[R]:
    with Path(path).open() as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                yield from_dict(cls, json.loads(line))
            except (ValueError, TypeError) as e:
                raise ValueError(f"{path}:{lineno}: bad {cls.__name__} record: {e}") from None
