"""O-Edit and O-Edit+ (arXiv 2410.11469): sequential editing with each update orthogonal to the earlier ones.

Edits arrive one at a time and are applied at once: no replay of earlier edits, no batching across
edits. Each edit runs a few gradient steps on its loss (the NLL of target_new given the edit prompt,
optionally its paraphrases too) on chosen weight matrices (`method.layers` x `method.modules`; by
default the MLP down_proj of the middle decoder layer), with manual optimisation, so that every gradient
is projected before the optimiser sees it:

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

Also here, on the same stream and protocol (`lit_knowledge/evaluation/edit_protocol.py`):
- `ft_l`: the same sequential editor without any projection (FT-L): same matrices, steps and lr;
- `alphaedit`: an AlphaEdit-style closed-form editor of one matrix: the residual that makes the model say
  target_new is found at the subject's last token, and the least-squares update is projected onto the
  null space of the key covariance K0 K0^T of the model's pretraining text, regularised by the keys of
  earlier edits.

The bases are method state: saved in every checkpoint, restored exactly; their bytes are the method's
only storage overhead (`extra_storage_bytes`). See docs/oedit.md for the defaults and what was reconstructed.
"""

from __future__ import annotations

import os

import torch
from datasets import Dataset
from lightning.pytorch.utilities import rank_zero_warn

from lit_knowledge.data.datamodules import EditStreamDataModule
from lit_knowledge.data.prompts import IGNORE, collate, encode_example, token_ids
from lit_knowledge.data.streams import EditStream
from lit_knowledge.errors import UserError
from lit_knowledge.evaluation.edit_protocol import (
    EditProtocol,
    encode_edit_pair,
    format_prompt,
)
from lit_knowledge.methods.base import KnowledgeMethod, encode_all
from lit_knowledge.methods.params import (
    AlphaEditParams,
    EditParams,
    FTLParams,
    OEditParams,
)

# ============================================================================================ linear algebra
# Bases are stored as rows: a (m x dim) tensor with orthonormal rows spans an m-dimensional subspace.


def project_out(matrix: torch.Tensor, basis: torch.Tensor | None, side: str) -> torch.Tensor:
    """`matrix` (d_out x d_in) with the span of `basis` removed: from its rows (input) or its columns (output)."""
    if basis is None or basis.shape[0] == 0:
        return matrix
    b = basis.to(matrix.dtype)
    if side == "input":
        return matrix - (matrix @ b.T) @ b
    return matrix - b.T @ (b @ matrix)


def orthonormal_rows(vectors: torch.Tensor, tol: float = 1e-4) -> torch.Tensor:
    """An orthonormal basis (rows) of the span of `vectors`' rows, without directions of size below `tol`."""
    if vectors.shape[0] == 0:
        return vectors
    _, s, vh = torch.linalg.svd(vectors, full_matrices=False)
    return vh[s > tol]


def extend_basis(basis: torch.Tensor, new: torch.Tensor, tol: float = 1e-4) -> torch.Tensor:
    """`basis` followed by the part of span(new) it does not cover yet, orthonormal.

    `new`'s rows are unit vectors; what is left of them after removing `basis` (twice: one pass of
    classical Gram-Schmidt loses orthogonality in float32) is kept when larger than `tol`.
    """
    for _ in range(2):
        if basis.shape[0]:
            new = new - (new @ basis.T) @ basis
    return torch.cat([basis, orthonormal_rows(new, tol)])


def remove_overlap(basis: torch.Tensor, other: torch.Tensor, tol: float = 1e-4) -> torch.Tensor:
    """An orthonormal basis of the part of span(basis) orthogonal to span(other)."""
    if basis.shape[0] == 0 or other.shape[0] == 0:
        return basis
    for _ in range(2):
        basis = basis - (basis @ other.T) @ other
    return orthonormal_rows(basis, tol)


def core_directions(delta: torch.Tensor, energy: float, side: str, max_directions: int = 0,
                    rel_tol: float = 1e-6) -> torch.Tensor:
    """The core gradient space of an update: its fewest singular directions holding `energy` of sum(S^2).

    Rows of V^T (input side: directions in the key space) or columns of U (output side), as rows.
    Singular values below rel_tol x the largest are numerical noise and never kept.
    """
    u, s, vh = torch.linalg.svd(delta.float(), full_matrices=False)
    if s.numel() == 0 or s[0] <= 0:
        return delta.new_zeros(0, delta.shape[1] if side == "input" else delta.shape[0]).float()
    s2 = s.double() ** 2
    share = torch.cumsum(s2, 0) / s2.sum()
    r = int((share < energy - 1e-12).sum()) + 1  # energy 1.0: every direction above the noise floor
    r = min(r, int((s > rel_tol * s[0]).sum()))
    if max_directions:
        r = min(r, max_directions)
    return vh[:r] if side == "input" else u[:, :r].T


class GrowingRows:
    """A (n x width) float tensor that grows by rows without copying everything each time (capacity doubles)."""

    def __init__(self, width: int, rows: torch.Tensor | None = None):
        self._data = torch.zeros(0, width) if rows is None else rows.clone()
        self.n = self._data.shape[0]

    @property
    def rows(self) -> torch.Tensor:
        return self._data[: self.n]

    def append(self, rows: torch.Tensor) -> None:
        need = self.n + rows.shape[0]
        if need > self._data.shape[0]:
            grown = torch.zeros(max(need, 2 * self._data.shape[0], 4), self._data.shape[1], dtype=self._data.dtype)
            grown[: self.n] = self.rows
            self._data = grown
        self._data[self.n:need] = rows.to(self._data.dtype)
        self.n = need


def gram_schmidt(vector: torch.Tensor, basis: torch.Tensor) -> torch.Tensor:
    """`vector` minus its projection on the span of `basis`' orthonormal rows (two passes, for float32)."""
    for _ in range(2):
        if basis.shape[0]:
            vector = vector - basis.T @ (basis @ vector)
    return vector


# ============================================================================================ model pieces


def load_edit_model(cfg):
    """(model, tokenizer) as `model.name` says; a path starting with ~ is expanded (the provisioned SmolLM2)."""
    from lit_knowledge.methods.components import load_model
    from lit_knowledge.models.build import load_pretrained

    name = cfg.model.name
    if name.startswith("~"):
        return load_pretrained(cfg.model, os.path.expanduser(name))
    return load_model(cfg.model, cfg)


def edited_modules(model, params) -> dict[str, torch.nn.Linear]:
    """The linear layers the editor changes, by path: `module_template` over `layers` x `modules`."""
    num_layers = getattr(model.config, "num_hidden_layers", None)
    layers = list(params.layers) if params.layers is not None else [num_layers // 2]
    out = {}
    for layer in layers:
        if num_layers is not None and not -num_layers <= layer < num_layers:
            raise UserError(f"method.layers: layer {layer} is out of range for a model with {num_layers} layers")
        if num_layers is not None and layer < 0:
            layer += num_layers
        for name in params.modules:
            path = params.module_template.format(layer=layer, module=name)
            try:
                module = model.get_submodule(path)
            except AttributeError:
                raise UserError(f"method.modules: the model has no module {path!r} (Llama-family paths look like "
                                "model.layers.N.mlp.down_proj; set method.module_template for others)") from None
            if not isinstance(module, torch.nn.Linear):
                raise UserError(f"method.modules: {path!r} is a {type(module).__name__}, not a linear layer")
            out[path] = module
    return out


class _Capture:
    """Forward hooks on linear layers: keep each call's input (detached) and output (in the graph); optionally
    (`add = (vectors, rows, positions)`) add vectors[i] to the output at (rows[i], positions[i])."""

    def __init__(self, modules: dict[str, torch.nn.Module]):
        self.inputs, self.outputs, self.add = {}, {}, None
        self._handles = [m.register_forward_hook(self._hook(name)) for name, m in modules.items()]

    def _hook(self, name):
        def hook(module, args, output):
            self.inputs[name] = args[0].detach()
            if self.add is not None:
                vectors, rows, positions = self.add
                output = output.clone()
                output[rows, positions] = output[rows, positions] + vectors.to(output.dtype)
            self.outputs[name] = output
            return output

        return hook

    def close(self):
        for h in self._handles:
            h.remove()


def subject_position(tokenizer, text: str, subject: str, prompt_length: int) -> int:
    """Index of the subject's last token in the tokenised `text` (its first mention); the prompt's last
    token when the subject does not appear."""
    i = text.find(subject) if subject else -1
    if i < 0 and subject:
        i = text.lower().find(subject.lower())
    if i < 0:
        return prompt_length - 1
    prefix = token_ids(tokenizer, text[: i + len(subject)])
    return min(max(len(prefix) - 1, 0), prompt_length - 1)


# ============================================================================================ editors


class EditMethod(KnowledgeMethod):
    """A sequential editor over an `EditStream`: one stream step per edit, evaluated by `EditProtocol`.

    Subclasses apply the edit in `training_step` (one batch holds all of an edit's examples) and close it in
    `finish_step`. `prepare_method()` runs once before the first edit, at the unedited weights.
    """

    Params = EditParams
    kind = "edit"
    phase = "editing"

    def __init__(self, cfg, model=None, tokenizer=None):
        if model is None:
            model, tokenizer = load_edit_model(cfg)
        super().__init__(cfg, model, tokenizer)  # loads the stream and calls make_protocol
        self.style = self.stream.prompt_style
        self.edited = edited_modules(self.model, self.params)  # path -> nn.Linear
        self.model.requires_grad_(False)
        for module in self.edited.values():
            module.weight.requires_grad_(True)
        self.prepared = False

    # ------------------------------------------------------------------------------ the stream

    def make_protocol(self):
        if not isinstance(self.stream, EditStream):
            raise UserError(f"method {self.cfg.method.name} edits an edit stream; data source {self.cfg.data.source!r} "
                            "gives documents: use data.source=world_edits, counterfact, zsre, mquake or mquake_hops")
        return EditProtocol(self.stream, self.cfg.eval, self.params.eval_at)

    def stream_units(self) -> list:
        return self.stream.edits

    def training_examples(self, edit) -> Dataset:
        """The edit prompt (and with train_on_paraphrases its paraphrases), each followed by target_new."""
        prompts = [edit.prompt] + (list(edit.paraphrases) if self.params.train_on_paraphrases else [])
        rows = []
        for p in prompts:
            row = encode_edit_pair(self.tokenizer, self.style, p, edit.target_new, self.cfg.data.max_length)
            prompt_length = sum(1 for t in row["labels"] if t == IGNORE)
            row["subject_pos"] = subject_position(self.tokenizer, format_prompt(self.style, p), edit.subject,
                                                  prompt_length)
            rows.append(row)
        return Dataset.from_list(rows) if rows else encode_all(self.tokenizer, [], self.cfg.data.max_length)

    def datamodule(self):
        # One batch per edit, whatever data.batch_size says: an edit is applied as a whole.
        return EditStreamDataModule(self.stream, self, 1 << 30, self.cfg.run.seed, self.cfg.data.num_workers)

    def weights(self) -> dict[str, torch.nn.Parameter]:
        return {name: m.weight for name, m in self.edited.items()}

    def configure_callbacks(self):
        # Editors optimise manually, and Lightning refuses Trainer-level gradient clipping then: the gradient
        # editors clip the (projected) gradient themselves (method.max_grad_norm).
        if self._trainer is not None and self._trainer.gradient_clip_val:
            self._trainer.gradient_clip_val = None
        return []

    # ------------------------------------------------------------------------------ before the first edit

    def on_train_start(self):
        self.prepare()

    def prepare(self) -> None:
        """Pre-edit locality predictions and the method's own preparation, once, at the unedited weights."""
        if self.prepared:
            return
        self.protocol.record_pre_edit(self)
        with torch.enable_grad():
            self.prepare_method()
        self.prepared = True

    def prepare_method(self) -> None:
        pass

    def knowledge_texts(self, which: str, limit: int) -> list[str]:
        """At most `limit` texts that stand for the model's existing knowledge (`method.knowledge_texts`), as the
        stream's source gives them: only the synthetic world says what its model was pretrained on; for real-data
        sources there is no such text, and the editors go without it (with a warning)."""
        if which == "none" or limit == 0:
            return []
        if self.stream.knowledge_texts is None:
            rank_zero_warn(f"method.knowledge_texts={which}: data source {self.cfg.data.source!r} comes with no "
                           "pretraining text; going on without (as knowledge_texts=none)")
            return []
        return self.stream.knowledge_texts(which, limit, self.cfg.run.seed)

    def edit_loss(self, batch) -> torch.Tensor:
        """Mean NLL of target_new's tokens given the prompt(s) of the batch."""
        return self.model(input_ids=batch["input_ids"].to(self.device),
                          attention_mask=batch["attention_mask"].to(self.device),
                          labels=batch["labels"].to(self.device)).loss

    @torch.no_grad()
    def key_covariance(self, texts: list[str], names: list[str], outputs: bool = False) -> dict[str, torch.Tensor]:
        """sum_t x_t x_t^T (float64) over every real token of `texts`, x_t being the input of each edited matrix
        in `names` (its output with `outputs`): K0 K0^T of AlphaEdit, O-Edit's key-based knowledge subspace."""
        capture = _Capture({name: self.edited[name] for name in names})
        was_training = self.model.training
        self.model.eval()
        covs = {}
        try:
            for batch in self.encoded_texts(texts):
                self.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
                real = batch["attention_mask"].bool()
                for name in names:
                    x = (capture.outputs[name] if outputs else capture.inputs[name])[real].double()
                    covs[name] = covs.get(name, 0) + x.T @ x
        finally:
            capture.close()
            self.model.train(was_training)
        return covs

    def encoded_texts(self, texts: list[str], batch_size: int = 8):
        """Batches of plain text, every token scored (language modelling)."""
        for i in range(0, len(texts), batch_size):
            rows = [encode_example(self.tokenizer, t, "", self.cfg.data.max_length) for t in texts[i:i + batch_size]]
            yield {k: v.to(self.device) for k, v in collate(rows, self.tokenizer.pad_token_id).items()}

    # ------------------------------------------------------------------------------ after each edit

    def state_sizes(self) -> dict:
        return {}

    def after_evaluation(self, k: int) -> None:
        sizes = self.state_sizes()
        if sizes and self.history:
            self.history[-1].update(sizes)
            if self._trainer is not None:
                self.log_dict({f"edit/{key}": float(v) for key, v in sizes.items()}, on_step=True, batch_size=1)

    # ------------------------------------------------------------------------------ state

    def method_state(self) -> dict:
        return {"prepared": self.prepared, "protocol": self.protocol.state(), **self.editor_state()}

    def load_method_state(self, state: dict) -> None:
        self.prepared = bool(state.get("prepared", False))
        self.protocol.load_state(state.get("protocol", {}))
        self.load_editor_state(state)

    def editor_state(self) -> dict:
        return {}

    def load_editor_state(self, state: dict) -> None:
        pass


class OEdit(EditMethod):
    """O-Edit (and O-Edit+ with `method.plus`): projected gradient steps per edit, bases grown after each."""

    Params = OEditParams

    def __init__(self, cfg, model=None, tokenizer=None):
        super().__init__(cfg, model, tokenizer)
        self.automatic_optimization = False  # the gradient is projected between backward and step
        self._before: dict[str, torch.Tensor] | None = None  # the edited weights before the current edit
        self._warned_full = False
        self.init_bases()

    # ------------------------------------------------------------------------------ bases

    def init_bases(self) -> None:
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
        capture = _Capture(self.edited)
        was_training = self.model.training
        self.model.eval()
        try:
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
            self.model.train(was_training)
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
        """Gradient steps on one edit's loss, each gradient projected before the step (and the step after it:
        Adam's per-coordinate scaling would otherwise leave the projected subspace). Returns the losses seen."""
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

    def bound_update(self, weights: dict[str, torch.Tensor]) -> None:
        """FT-L's norm constraint (none for O-Edit, whose projections bound what an edit may touch)."""

    def finish_step(self, k: int) -> None:
        self.close_edit()

    def close_edit(self) -> None:
        """After an edit: O-Edit+'s Gram-Schmidt of the update, then its core gradient space joins the edit basis."""
        if self._before is None:
            return
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
        self._before = None

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


class FTL(OEdit):
    """FT-L: the same sequential editor with no projection at all (same matrices, steps, lr); no bases."""

    Params = FTLParams

    def init_bases(self) -> None:
        self.side, self.dims, self.update_basis = "input", {}, None
        self.edit_basis, self.knowledge_basis = {}, {}

    def prepare_method(self) -> None:
        pass

    def projection(self, name: str, matrix: torch.Tensor) -> torch.Tensor:
        return matrix

    def bound_update(self, weights: dict[str, torch.Tensor]) -> None:
        """Every edited weight within `norm_constraint` of its value before this edit (L-infinity)."""
        bound = self.params.norm_constraint
        if bound is None:
            return
        with torch.no_grad():
            for name, w in weights.items():
                w.copy_(torch.clamp(w, self._before[name] - bound, self._before[name] + bound))

    def close_edit(self) -> None:
        self._before = None

    def state_sizes(self) -> dict:
        return {}


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
        capture = _Capture({self.target: self.edited[self.target]})
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
