"""The model's mode for a block of code, written once."""

from __future__ import annotations

from contextlib import contextmanager


@contextmanager
def evaluating(model):
    """`model` in eval mode (no dropout) inside the block, back in the mode it had after it, on an error too."""
    was_training = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was_training)
