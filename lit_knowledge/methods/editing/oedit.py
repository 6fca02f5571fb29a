"""O-Edit and O-Edit+ (arXiv 2410.11469): sequential editing with each update orthogonal to the earlier ones.

O-Edit is FT-L (ft_l.py) with its gradients projected. Edits arrive one at a time and are applied at once:
no replay of earlier edits, no batching across edits. Each edit runs a few gradient steps on its loss (the
NLL of target_new given the edit prompt, optionally its paraphrases too) on chosen weight matrices
(`method.layers` x `method.modules`; by default the MLP down_proj of the middle decoder layer), with manual
optimisation, so that every gradient is projected before the optimiser sees it:

1. **Core gradient space.** When an edit is done, the SVD of its weight change dW = U S V^T gives its
   dominant directions: the fewest singular directions that hold `method.energy` of sum(S^2).
2. **Edit basis.** Those directions join an orthonormal basis E (one per edited matrix). Every later
   edit's gradient is projected onto the orthogonal complement of E, so later updates do not overwrite
   earlier ones.
3. **Knowledge subspace.** Before the first edit, the model's existing ("implicit") knowledge is summarised
   by the top `method.knowledge_rank` singular directions K of the per-document gradients of the LM loss
   on generic text at the unedited weights (`method.knowledge_texts: pretrain` = the synthetic world's
   background documents, the reader's own pretraining text). K is kept orthogonal to E (its overlap with
   the edit basis removed), and gradients are projected off E and K together.
4. **O-Edit+** (`method.plus: true`) post-processes each finished update: Gram-Schmidt of the flattened
   update (all edited matrices together) against an orthonormal basis of the earlier flattened updates,
   so that its cosine with every earlier update is ~0; the result is what the edit applies.

Which side of W is projected (`method.projection_side`). For a linear layer y = W k the gradient is
dW = sum_t g_t k_t^T: its rows live in the span of the layer's inputs (the "keys" k_t of the edited
prompt), its columns in the span of the output gradients g_t. The default, `input`, keeps E in the
key space (the rows of dW V, V spanning the keys) and projects G <- G (I - E^T E). A later update
W' = W + D with D E^T = 0 gives W' k = W k for every key k in span(E): the earlier edit's forward pass
through this layer is unchanged, exactly, which is the invariant that makes edits not overwrite each
other (as in null-space methods and gradient projection memory). `output` keeps E in the output space
(the columns of U) and projects G <- (I - E^T E) G: a later update then never *writes* along an earlier
update's output directions, but it still changes the layer's output on the earlier keys in every
other direction, so it protects less; it is there to compare, and because the paper's text (not
available when this was written) may have meant that side.

The bases are method state: saved in every checkpoint, restored exactly; their bytes are the method's
only storage overhead (`extra_storage_bytes`). See docs/oedit.md for the defaults and what was reconstructed,
docs/results/oedit.md for what was measured.
"""

from __future__ import annotations

import torch
from lightning.pytorch.utilities import rank_zero_warn

from lit_knowledge.data.prompts import IGNORE
from lit_knowledge.methods.editing.base import Capture
from lit_knowledge.methods.editing.ft_l import FTL
from lit_knowledge.methods.editing.subspace import (
    GrowingRows,
    core_directions,
    extend_basis,
    gram_schmidt,
    orthonormal_rows,
    project_out,
    remove_overlap,
)
from lit_knowledge.methods.params import OEditParams
from lit_knowledge.models.modes import evaluating


class OEdit(FTL):
    """O-Edit (and O-Edit+ with `method.plus`): FT-L's steps, each projected off the bases, grown after each edit."""

    Params = OEditParams

    def __init__(self, cfg, model=None, tokenizer=None):
        super().__init__(cfg, model, tokenizer)
        self._warned_full = False
        side = self.params.projection_side
        self.side = side
        self.dims = {name: m.in_features if side == "input" else m.out_features for name, m in self.edited.items()}
        self.edit_basis = {name: torch.zeros(0, d) for name, d in self.dims.items()}
        self.knowledge_basis = {name: torch.zeros(0, d) for name, d in self.dims.items()}
        # Once the two bases cover more than half of a matrix's space, projecting onto what is left with one
        # dense (d x d) projector costs less than projecting off k > d / 2 basis rows, and its cost no longer
        # grows with the number of edits. Derived from the bases (never saved): see `projector`. Kept in float64
        # (updated once per edit, over thousands of edits) with a float32 copy for the projections.
        self._complement: dict[str, torch.Tensor] = {}
        self._complement32: dict[str, torch.Tensor] = {}
        width = sum(m.weight.numel() for m in self.edited.values())
        self.update_basis = GrowingRows(width) if self.params.plus else None

    # ------------------------------------------------------------------------------ bases

    def prepare_method(self) -> None:
        """The knowledge subspace at the unedited weights: top-q directions of the per-text LM-loss gradients, or
        of the edited layer's keys (`method.knowledge_from`), over the knowledge texts."""
        q = self.params.knowledge_rank
        texts = self.knowledge_texts(self.params.knowledge_texts, self.params.knowledge_samples) if q else []
        if not texts:
            return
        if self.params.knowledge_from == "keys":
            gram = self.key_covariance(texts, list(self.edited), outputs=self.side == "output")
        else:
            gram = self.gradient_gram(texts)
        for name, g in gram.items():
            values, vectors = torch.linalg.eigh(g.double())
            order = torch.argsort(values, descending=True)[:q]
            order = order[values[order] > 1e-12 * values.max().clamp(min=1e-30)]
            top = vectors[:, order].T.float().cpu()
            self.knowledge_basis[name] = remove_overlap(orthonormal_rows(top), self.edit_basis[name])
            self._complement.pop(name, None)
            self._complement32.pop(name, None)

    def gradient_gram(self, texts: list[str]) -> dict[str, torch.Tensor]:
        """sum_d G_d^T G_d (input side; G_d G_d^T for output) over the per-text LM-loss gradients G_d of each
        edited matrix, at the current weights."""
        gram = {name: torch.zeros(d, d, device=self.device) for name, d in self.dims.items()}
        capture = Capture(self.edited)
        try:
            with evaluating(self.model):
                for batch in self.encoded_texts(texts):
                    logits = self.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
                    labels = batch["labels"][:, 1:]
                    loss = torch.nn.functional.cross_entropy(logits[:, :-1].float().transpose(1, 2), labels,
                                                             ignore_index=IGNORE, reduction="sum")
                    loss = loss / (labels != IGNORE).sum().clamp(min=1)
                    names = list(self.edited)
                    grads = torch.autograd.grad(loss, [capture.outputs[n] for n in names])
                    for name, g in zip(names, grads):
                        per_doc = torch.einsum("bto,bti->boi", g.float(), capture.inputs[name].float())
                        if self.side == "input":
                            gram[name] += torch.einsum("boi,boj->ij", per_doc, per_doc)
                        else:
                            gram[name] += torch.einsum("boi,bpi->op", per_doc, per_doc)
        finally:
            capture.close()
        return gram

    def projection(self, name: str, matrix: torch.Tensor) -> torch.Tensor:
        """`matrix` (a gradient or an update of matrix `name`) off the edit basis and the knowledge subspace."""
        dtype = matrix.dtype
        m = matrix.float()
        complement = self.projector(name)
        if complement is not None:
            complement = complement.to(m.device)
            return (m @ complement if self.side == "input" else complement @ m).to(dtype)
        for basis in (self.edit_basis[name], self.knowledge_basis[name]):
            m = project_out(m, basis.to(m.device), self.side)
        return m.to(dtype)

    def projector(self, name: str) -> torch.Tensor | None:
        """I - B^T B for the rows B of both bases (mutually orthogonal), once they hold over half the dimensions.

        Built from the bases the first time (after a restore too), then kept up to date by `close_edit` one
        edit's new directions at a time, so no edit pays for the whole basis again.
        """
        if name not in self._complement:
            covered = self.edit_basis[name].shape[0] + self.knowledge_basis[name].shape[0]
            if 2 * covered <= self.dims[name]:
                return None
            rows = torch.cat([self.edit_basis[name], self.knowledge_basis[name]]).double()
            self._complement[name] = torch.eye(self.dims[name], dtype=torch.float64) - rows.T @ rows
            self._complement32[name] = self._complement[name].float()
        return self._complement32[name]

    # ------------------------------------------------------------------------------ after each edit

    def close_edit(self) -> None:
        """After an edit: O-Edit+'s Gram-Schmidt of the update, then its core gradient space joins the edit basis."""
        weights = self.weights()
        delta = {name: (w.detach() - self._before[name]).float() for name, w in weights.items()}
        if self.update_basis is not None:
            delta = self.orthogonalise_update(delta)
            with torch.no_grad():
                for name, w in weights.items():
                    w.copy_((self._before[name].float() + delta[name]).to(w.dtype))
        for name, d in delta.items():
            directions = core_directions(d, self.params.energy, self.side, self.params.max_directions_per_edit)
            known = self.edit_basis[name].shape[0]
            self.edit_basis[name] = extend_basis(self.edit_basis[name], directions.cpu())
            new = self.edit_basis[name][known:]
            # The knowledge subspace is already orthogonal to the earlier edit directions: only the new ones
            # can overlap it (they rarely do, since every update was projected off it).
            if new.shape[0] and self.knowledge_basis[name].shape[0] and \
                    (self.knowledge_basis[name] @ new.T).abs().max() > 1e-4:
                self.knowledge_basis[name] = remove_overlap(self.knowledge_basis[name], new)
            if name in self._complement and new.shape[0]:
                # what the new directions add to the covered space, removed from the projector
                added = orthonormal_rows(new.double() @ self._complement[name])
                self._complement[name] -= added.T @ added
                self._complement32[name] = self._complement[name].float()
            if not self._warned_full and self.edit_basis[name].shape[0] >= 0.95 * self.dims[name]:
                self._warned_full = True
                rank_zero_warn(f"O-Edit: the edit basis of {name} fills {self.edit_basis[name].shape[0]} of "
                               f"{self.dims[name]} dimensions; later edits have little room left (lower "
                               "method.energy or set method.max_directions_per_edit)")

    def orthogonalise_update(self, delta: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """O-Edit+: the flattened update minus its projection on the earlier updates; the rest joins their basis."""
        names = list(delta)
        flat = torch.cat([delta[n].flatten().cpu() for n in names])
        norm = flat.norm()
        flat = gram_schmidt(flat, self.update_basis.rows)
        if flat.norm() > 1e-6 * norm.clamp(min=1e-30) and flat.norm() > 0:
            self.update_basis.append((flat / flat.norm())[None])
        out, start = {}, 0
        for n in names:
            size = delta[n].numel()
            out[n] = flat[start:start + size].view_as(delta[n]).to(delta[n].device)
            start += size
        return out

    # ------------------------------------------------------------------------------ state

    def state_sizes(self) -> dict:
        return {
            "edit_basis_dim": sum(b.shape[0] for b in self.edit_basis.values()),
            "knowledge_dim": sum(b.shape[0] for b in self.knowledge_basis.values()),
            "update_basis_size": self.update_basis.n if self.update_basis is not None else 0,
        }

    def editor_state(self) -> dict:
        return {
            "edit_basis": {n: b.clone() for n, b in self.edit_basis.items()},
            "knowledge_basis": {n: b.clone() for n, b in self.knowledge_basis.items()},
            "update_basis": self.update_basis.rows.clone() if self.update_basis is not None else None,
        }

    def load_editor_state(self, state: dict) -> None:
        self._complement, self._complement32 = {}, {}  # rebuilt from the restored bases when first needed
        for key in ("edit_basis", "knowledge_basis"):
            saved = state.get(key) or {}
            for name in self.dims:
                if name in saved:
                    getattr(self, key)[name] = saved[name].clone().float()
        if self.update_basis is not None and state.get("update_basis") is not None:
            self.update_basis = GrowingRows(self.update_basis.rows.shape[1], state["update_basis"].float())

    def extra_storage_bytes(self) -> int:
        tensors = list(self.edit_basis.values()) + list(self.knowledge_basis.values())
        if self.update_basis is not None:
            tensors.append(self.update_basis.rows)
        return sum(t.numel() * t.element_size() for t in tensors)
