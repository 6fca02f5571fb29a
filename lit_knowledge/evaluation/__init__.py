"""Evaluation: the protocols (knowledge streams, edit streams), their metrics, results files and reports.

Each protocol owns its metric names (`MAIN_METRICS`, `SCORES`, `CURVES`) and its summary; training, results and the
report read them from here.
"""

from __future__ import annotations


def protocols() -> dict:
    """The protocol classes by the `kind` their results carry ('qa', 'edit')."""
    from lit_knowledge.evaluation.edit_protocol import EditProtocol
    from lit_knowledge.evaluation.protocol import StreamProtocol

    return {cls.kind: cls for cls in (StreamProtocol, EditProtocol)}


def main_metrics(kind: str | None) -> list[str]:
    """The columns a run of this kind prints at its end (none for other kinds, e.g. pretraining)."""
    cls = protocols().get(kind)
    return list(cls.MAIN_METRICS) if cls else []


def plotted_curves() -> tuple[str, ...]:
    """Every protocol's curves, knowledge streams first: what results plots draw when a run has them."""
    return tuple(name for cls in protocols().values() for name in cls.CURVES)


def scores() -> tuple[str, ...]:
    """Every protocol's scores in [0, 1], knowledge streams first."""
    return tuple(name for cls in protocols().values() for name in cls.SCORES)


def headline_curves() -> tuple[str, ...]:
    """Each protocol's first curve: the one a report draws for a run of that kind."""
    return tuple(cls.CURVES[0] for cls in protocols().values())
