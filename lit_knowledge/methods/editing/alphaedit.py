"""AlphaEdit: a closed-form edit of one matrix, projected onto the null space of the model's knowledge.

Locate, then solve. Each edit has keys, the edited matrix's inputs where the fact is read (the subject's
last token of the edit's prompt, or each token that predicts target_new: `method.key_position`), and
values, its outputs there. A residual added to those outputs is optimised until the model says target_new;
then the least-squares update that writes the residuals on the keys is solved in closed form, within the
null space of K0 K0^T, the key covariance of the model's pretraining text at the unedited weights (the
update is D P, P the projector onto that null space): the keys of what the model knew give (nearly) the
same outputs as before. The keys of the earlier edits enter the least squares too, so their values hold.
One matrix, one edit at a time: no replay, no MEMIT-style spreading of the update over several layers.

The projector and the earlier edits' key covariance are method state, saved in every checkpoint; their bytes
are the storage overhead. See docs/oedit.md for the defaults and docs/results/oedit.md for what was measured.
"""

from __future__ import annotations

import torch

from lit_knowledge.data.prompts import IGNORE
from lit_knowledge.methods.editing.base import Capture, EditMethod
from lit_knowledge.methods.params import AlphaEditParams


class AlphaEdit(EditMethod):
    """AlphaEdit-style closed-form editing of one matrix W (d_out x d_in) with keys k (inputs) and values W k.

    Per edit: the keys K are the matrix's inputs at the subject's last token of the edit's prompt(s); a
    residual delta added to its output there is found (Adam, `value_steps`) so that the model says
    target_new; with R = delta for each key, the update is

        dW = R K^T P (K_p K_p^T P + K K^T P + ridge I)^-1

    where P projects onto the null space of K0 K0^T (keys of the model's pretraining text at the unedited
    weights: the knowledge to keep) and K_p K_p^T accumulates the keys of the earlier edits. The state (P
    and K_p K_p^T) is checkpointed; its bytes are the storage overhead.
    """

    Params = AlphaEditParams

    def __init__(self, cfg, model=None, tokenizer=None):
        super().__init__(cfg, model, tokenizer)
        self.automatic_optimization = False
        self.model.requires_grad_(False)  # the update is closed-form; only the residual vector is optimised
        (self.target,) = self.edited  # the one edited matrix (a plain attribute: not registered twice)
        d = self.edited[self.target].in_features
        self.null_projector = torch.eye(d)
        self.edited_key_cov = torch.zeros(d, d)

    def configure_optimizers(self):
        return None

    def prepare_method(self) -> None:
        """P: the projector onto the eigen-directions of K0 K0^T whose eigenvalues are (relatively) small."""
        texts = self.knowledge_texts(self.params.knowledge_texts, self.params.knowledge_samples)
        if not texts:
            return
        cov = self.key_covariance(texts, [self.target])[self.target]
        values, vectors = torch.linalg.eigh(cov)
        null = vectors[:, values < self.params.null_space_threshold * values.max()]
        self.null_projector = (null @ null.T).float().cpu()

    def key_positions(self, batch) -> tuple[torch.Tensor, torch.Tensor]:
        """(rows, positions) of the tokens whose keys are edited (see `method.key_position`)."""
        if self.params.key_position == "subject_last":
            positions = torch.tensor(batch["subject_pos"])
            return torch.arange(len(positions)), positions
        rows, positions = torch.nonzero(batch["labels"][:, 1:] != IGNORE, as_tuple=True)
        return rows, positions  # position t predicts the scored token t + 1

    def training_step(self, batch, batch_idx):
        if "input_ids" not in batch:
            return None
        ids, mask = batch["input_ids"].to(self.device), batch["attention_mask"].to(self.device)
        labels = batch["labels"].to(self.device)
        rows, positions = (t.to(self.device) for t in self.key_positions(batch))
        capture = Capture({self.target: self.edited[self.target]})
        try:
            with torch.no_grad():
                self.model(input_ids=ids, attention_mask=mask)
            keys = capture.inputs[self.target][rows, positions].float()  # (n, d_in)
            values = capture.outputs[self.target][rows, positions].detach().float()  # (n, d_out)
            delta = torch.zeros_like(values, requires_grad=True)  # one residual per key
            optimizer = torch.optim.Adam([delta], lr=self.params.value_lr)
            scale = values.norm(dim=1, keepdim=True).clamp(min=1e-6)
            for _ in range(self.params.value_steps):
                capture.add = (delta, rows, positions)
                nll = self.model(input_ids=ids, attention_mask=mask, labels=labels).loss
                loss = nll + self.params.value_weight_decay * (delta.pow(2).sum(1, keepdim=True) / scale**2).mean()
                (delta.grad,) = torch.autograd.grad(loss, [delta])
                optimizer.step()
                with torch.no_grad():  # each residual at most clamp_norm_factor x the output it corrects
                    limit = self.params.clamp_norm_factor * scale
                    delta.mul_(torch.clamp(limit / delta.norm(dim=1, keepdim=True).clamp(min=1e-12), max=1.0))
        finally:
            capture.close()
        self.apply_update(keys.T.cpu(), delta.detach().T.cpu())
        self.log("edit/value_nll", nll.detach(), prog_bar=True, batch_size=ids.shape[0])
        return None

    @torch.no_grad()
    def apply_update(self, keys: torch.Tensor, residuals: torch.Tensor) -> torch.Tensor:
        """W += R K^T P (K_p K_p^T P + K K^T P + ridge I)^-1 for keys K (d_in x n) and residuals R (d_out x n)."""
        p = self.null_projector.double()
        k, r = keys.double(), residuals.double()
        a = self.edited_key_cov.double() @ p + k @ k.T @ p + self.params.ridge * torch.eye(p.shape[0], dtype=p.dtype)
        b = r @ k.T @ p
        update = torch.linalg.solve(a.T, b.T).T  # update @ a = b
        w = self.edited[self.target].weight
        w.add_(update.to(device=w.device, dtype=w.dtype))
        self.edited_key_cov += (k @ k.T).float()
        return update.float()

    def editor_state(self) -> dict:
        return {"null_projector": self.null_projector.clone(), "edited_key_cov": self.edited_key_cov.clone()}

    def load_editor_state(self, state: dict) -> None:
        if state.get("null_projector") is not None:
            self.null_projector = state["null_projector"].clone()
            self.edited_key_cov = state["edited_key_cov"].clone()

    def extra_storage_bytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in (self.null_projector, self.edited_key_cov))
