"""What every sequential editor shares: the edit stream, the protocol, the edited matrices, their state.

An editor walks an `EditStream` one edit at a time (one stream step and one training batch per edit) and is
scored by `EditProtocol` (lit_knowledge/evaluation/edit_protocol.py) at the stream's checkpoints. It changes
chosen weight matrices (`method.layers` x `method.modules`; by default the MLP down_proj of the middle decoder
layer) and nothing else. Once, before the first edit and at the unedited weights, `prepare()` records the
protocol's pre-edit predictions and runs the method's own preparation (a knowledge subspace, a null-space
projector) from the knowledge texts the stream's source gives, where it gives any.

Also here, for the editors' use: forward hooks that capture an edited matrix's inputs (its keys) and outputs,
the key covariance K0 K0^T over a set of texts, and the position of an edit's subject in its prompt.
"""

from __future__ import annotations

import torch
from datasets import Dataset
from lightning.pytorch.utilities import rank_zero_warn

from lit_knowledge.data.datamodules import KnowledgeStreamDataModule
from lit_knowledge.data.prompts import IGNORE, collate, encode_example, token_ids
from lit_knowledge.data.streams import EditStream
from lit_knowledge.errors import UserError
from lit_knowledge.evaluation.edit_protocol import EditProtocol, encode_edit_pair, format_prompt
from lit_knowledge.methods.base import KnowledgeMethod, encode_all
from lit_knowledge.methods.params import EditParams
from lit_knowledge.models.modes import evaluating


def load_edit_model(cfg):
    """(model, tokenizer) as `model.name` says (a path starting with ~ is expanded by `resolve_model_name`)."""
    from lit_knowledge.methods.components import load_model

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


class Capture:
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
        return KnowledgeStreamDataModule(self.stream, self, 1 << 30, self.cfg.run.seed, self.cfg.data.num_workers)

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
        capture = Capture({name: self.edited[name] for name in names})
        covs = {}
        try:
            with evaluating(self.model):
                for batch in self.encoded_texts(texts):
                    self.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
                    real = batch["attention_mask"].bool()
                    for name in names:
                        x = (capture.outputs[name] if outputs else capture.inputs[name])[real].double()
                        covs[name] = covs.get(name, 0) + x.T @ x
        finally:
            capture.close()
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

