"""What SELF-PARAM and FT(S) mix into a step's training set beside the documents' QA pairs.

- Unrelated texts: the stream's texts about what the model already knows (the world: the rehearsal half of
  its background), `method.unrelated_per_document` of them per document. SELF-PARAM's teacher reads them
  alone; FT(S) can take them as next-token targets (`ft_qa` with the same key), so both rehearse alike.
- Namesake contrasts (`method.namesake_contrasts`, beyond the paper): the QA set's questions asked about
  someone who shares part of the document subject's name.
"""

from __future__ import annotations

import random


def unrelated_texts(stream, step, n: int, seed: int) -> list[list[str]]:
    """For each document of the step, `n` of the stream's unrelated texts (seeded by `seed` and the step)."""
    texts = stream.unrelated_texts
    rng = random.Random(seed * 7919 + step.index)
    return [rng.sample(texts, min(len(texts), n)) if n else [] for _ in step.documents]


def namesake_contrasts(stream, step, n: int, seed: int) -> dict[str, list[tuple[str, str]]]:
    """For each document of the step: its QA set's questions about someone who shares part of its subject's
    name, each with the document's answer.

    Trained towards what the model says closed-book (SELF-PARAM: the teacher reading no document; FT(S):
    the model's own answers before training), they teach the update to keep what the model said about
    "luca castellan" while it learns "gus castellan"'s new facts. The answer kept is the document's: where
    SELF-PARAM compares the two distributions. Swapped parts come from the subjects of this and earlier steps;
    a namesake is never someone real: no stream subject (of any step) and no one the model knew before.
    """
    if not n:
        return {}
    # The name parts seen so far at each position (first names, last names, ...), per number of parts.
    seen: dict[int, list[dict[str, None]]] = {}
    for earlier in stream.steps[: step.index + 1]:
        for d in earlier.documents:
            parts = d.subject.split()
            for i, part in enumerate(parts):
                seen.setdefault(len(parts), [{} for _ in parts])[i][part] = None
    real = set(stream.known_names) | {d.subject for s in stream.steps for d in s.documents}
    out = {}
    for d in step.documents:
        parts = d.subject.split()
        if len(parts) < 2:
            continue
        pool = []  # per position: the names that swapping a seen part in there gives, real people left out
        for i, part in enumerate(parts):
            names = [" ".join(other if k == i else p for k, p in enumerate(parts))
                     for other in seen[len(parts)][i] if other != part]
            pool.append([name for name in names if name not in real])
        rng = random.Random(f"{seed}/{step.index}/{d.id}")
        out[d.id] = []
        for q, a in step.train_qa.get(d.id, []):
            if d.subject not in q:
                continue
            for j in range(n):
                i = j % len(parts)  # swap the first name, then the last name, ...
                if pool[i]:
                    out[d.id].append((q.replace(d.subject, rng.choice(pool[i])), a))
    return out
