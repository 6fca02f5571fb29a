"""FT-L: sequential editing by plain fine-tuning of the edited matrices.

Edits arrive one at a time and are applied at once: no replay of earlier edits, no batching across
edits. Each edit runs a few gradient steps on its loss (the NLL of target_new given the edit prompt,
optionally its paraphrases too) on the edited matrices (`method.layers` x `method.modules`; by default
the MLP down_proj of the middle decoder layer) and nothing else: `method.steps` steps at most, fewer once
the loss reaches `method.stop_loss`, with an optimiser (`method.optimizer`, sgd or adam) whose state starts
afresh at every edit and the gradient clipped to `method.max_grad_norm`. With `method.norm_constraint`
every edited weight stays within that bound of its value before the edit (L-infinity, as EasyEdit's FT-L
clamps it); without it the update is unbounded.

Nothing is kept from one edit to the next, so a later edit is free to overwrite an earlier one: FT-L is the
baseline O-Edit (oedit.py) is measured against, and its base. O-Edit fills the hooks this editor leaves
empty: `projection` (the identity here) takes every gradient and step off protected subspaces, and
`close_edit` (nothing here) grows them once an edit is done.
"""

from __future__ import annotations

import torch

from lit_knowledge.methods.editing.base import EditMethod
from lit_knowledge.methods.params import FTLParams


class FTL(EditMethod):
    """FT-L: gradient steps per edit on the edited matrices, manually optimised so that O-Edit can step in
    between backward and step."""

    Params = FTLParams

    def __init__(self, cfg, model=None, tokenizer=None):
        super().__init__(cfg, model, tokenizer)
        self.automatic_optimization = False  # the gradient passes `projection` between backward and step
        self._before: dict[str, torch.Tensor] | None = None  # the edited weights before the current edit

    # ------------------------------------------------------------------------------ one edit

    def configure_optimizers(self):
        params = list(self.weights().values())
        if self.params.optimizer == "adam":
            return torch.optim.Adam(params, lr=self.params.lr)
        return torch.optim.SGD(params, lr=self.params.lr)

    def training_step(self, batch, batch_idx):
        if "input_ids" not in batch:
            return None
        losses = self.apply_edit(batch, self.optimizers(), self.manual_backward)
        n = batch["input_ids"].shape[0]
        self.log("edit/loss_first", losses[0], batch_size=n)
        self.log("edit/loss_last", losses[-1], prog_bar=True, batch_size=n)
        self.log("edit/steps", float(len(losses) - 1), batch_size=n)
        return None

    def apply_edit(self, batch, optimizer, backward) -> list[float]:
        """Gradient steps on one edit's loss; each gradient passes `projection` before the step, and with adam the
        step passes it too (adam's per-coordinate scaling would take a projected gradient's step out of the
        subspace it was projected onto). Returns the losses seen."""
        weights = self.weights()
        self._before = {name: w.detach().clone() for name, w in weights.items()}
        inner = getattr(optimizer, "optimizer", optimizer)
        inner.state.clear()  # every edit starts afresh: no moments carried over from the previous edit
        losses = []
        for _ in range(self.params.steps):
            loss = self.edit_loss(batch)
            losses.append(loss.item())
            if losses[-1] <= self.params.stop_loss:
                break
            optimizer.zero_grad(set_to_none=True)
            backward(loss)
            for name, w in weights.items():
                w.grad = self.projection(name, w.grad)
            if self.params.max_grad_norm:
                torch.nn.utils.clip_grad_norm_(list(weights.values()), self.params.max_grad_norm)
            if self.params.optimizer == "sgd":  # plain SGD steps along the projected gradient: nothing to redo
                optimizer.step()
            else:
                previous = {name: w.detach().clone() for name, w in weights.items()}
                optimizer.step()
                with torch.no_grad():
                    for name, w in weights.items():
                        w.copy_(previous[name] + self.projection(name, w - previous[name]))
            self.bound_update(weights)
        else:
            with torch.no_grad():
                losses.append(self.edit_loss(batch).item())
        return losses

    def projection(self, name: str, matrix: torch.Tensor) -> torch.Tensor:
        """What of `matrix` (a gradient or a step of matrix `name`) the edit may use: all of it."""
        return matrix

    def bound_update(self, weights: dict[str, torch.Tensor]) -> None:
        """Every edited weight within `norm_constraint` of its value before this edit (L-infinity)."""
        bound = self.params.norm_constraint
        if bound is None:
            return
        with torch.no_grad():
            for name, w in weights.items():
                w.copy_(torch.clamp(w, self._before[name] - bound, self._before[name] + bound))

    def finish_step(self, k: int) -> None:
        if self._before is not None:  # an edit with nothing to train on applied nothing
            self.close_edit()
        self._before = None

    def close_edit(self) -> None:
        """What becomes of an edit's finished update, `_before` still holding the weights before it: nothing here
        (O-Edit grows its bases from it)."""
