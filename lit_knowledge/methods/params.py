"""Every method's hyper-parameters (the `method:` section), in a module that is cheap to import.

Loading a config, `--help-config` and `--list-methods` read these dataclasses without importing torch,
Lightning or transformers: a method's module (its LightningModule) is imported only when that method
runs (see lit_knowledge/methods/__init__.py). Each dataclass may define `validate(cfg)` for checks that
span several keys; single-key ranges and choices are declared in the field (`doc(...)`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from lit_knowledge.config import MethodParams, ModelConfig, TinyModelConfig, doc
from lit_knowledge.errors import UserError

# The facts the world's people have (lit_knowledge.data.world.RELATIONS, written out here: that module imports torch)
WORLD_FACTS = ("city", "year", "org", "field")

SIDES = ("input", "output")
KNOWLEDGE_TEXTS = ("pretrain", "mix", "none")  # see EditMethod.knowledge_texts()
SINGLE_DEVICE_STRATEGIES = ("auto", "ddp", "ddp_spawn")


# ------------------------------------------------------------------------------------------ baselines


@dataclass
class FineTuneParams(MethodParams):
    lr: float = doc(1e-3, "Learning rate (AdamW).", above=0)
    weight_decay: float = doc(0.0, "AdamW weight decay.", minimum=0)
    epochs_per_step: int = doc(10, "Passes over a stream step's training examples.", minimum=1)
    reset_each_step: bool = doc(False, "Reset the model to the base model after each step is evaluated (the "
                                       "single-context setting: every document injected into the base model "
                                       "on its own).")
    merge_lora_each_step: bool = doc(True, "With LoRA: merge the adapter into the weights after each step "
                                           "and start a fresh one (sequential injection).")
    unrelated_per_document: int = doc(0, "Texts of what the model already knows (the stream's unrelated text: "
                                         "on the world, documents and answered questions about the rehearsal half "
                                         "of the background) added to the training set per document.", minimum=0)
    namesake_contrasts: int = doc(0, "ft_qa and selfparam: for each QA pair that names its document's subject, "
                                     "this many copies naming a namesake instead (one part of the name swapped for "
                                     "the same part of another subject seen so far), trained towards what the model "
                                     "says closed-book about them. Needs documents with a subject; 0: off.",
                                minimum=0)
    seed: Optional[int] = doc(None, "Seed of the batch order: each pass over a step's examples is shuffled with it "
                                    "(null: run.seed). A group varies it for another fine-tuning seed on the same "
                                    "reader and probes; run.seed would also draw other probes (eval.max_probes).",
                              minimum=0)


@dataclass
class RAGParams(MethodParams):
    top_k: int = doc(2, "Documents retrieved into the prompt.", minimum=1)


# ------------------------------------------------------------------------------------------ selfparam


@dataclass
class SelfParamParams(FineTuneParams):
    lr: float = doc(1e-3, "Learning rate (AdamW).", above=0)
    temperature: float = doc(1.0, "Distillation temperature T (the loss is scaled by T^2).", above=0)
    unrelated_per_document: int = doc(64, "Unrelated texts added to the target set per document: the student "
                                          "keeps matching the teacher on them (docs/results/selfparam.md).", minimum=0)
    unrelated_teacher: str = doc("plain", "What the teacher reads before an unrelated text: plain (the text alone: "
                                          "the student keeps the base model's predictions) or document (the step's "
                                          "document first, as for the QA pairs; a small reader then copies the "
                                          "document's facts into the unrelated text and teaches them).",
                                 choices=("plain", "document"))
    namesake_contrasts: int = doc(0, "Beyond the paper (0, off: the paper's target set): for each QA pair that "
                                     "names its document's subject, this many copies naming a namesake instead "
                                     "(one part of the name swapped for the same part of another subject seen so "
                                     "far in the stream, never a real person's name), where the student keeps the "
                                     "closed-book teacher's answer, so new facts stay with the full name. Needs "
                                     "documents with a subject.", minimum=0)
    teacher: str = doc("live", "live: a teacher forward per batch (LoRA: adapter disabled); cached: teacher "
                               "distributions computed at the start of each step (needed for full fine-tuning).",
                       choices=("live", "cached"))
    kl_mean: str = doc("token", "How the KL of a batch is averaged: token (every scored token weighs the same, so "
                                "an unrelated text of forty tokens weighs twenty answers of two; docs/results/selfparam.md "
                                "compares both) or example (each member of the target set weighs the same).",
                       choices=("example", "token"))

    @staticmethod
    def validate(cfg) -> None:
        if not cfg.model.lora.enabled and cfg.method.teacher == "live":
            raise UserError("selfparam with full fine-tuning (model.lora.enabled=false) needs method.teacher=cached: "
                            "a live teacher is the student with its adapter disabled")


# ------------------------------------------------------------------------------------------ editors (oedit, ft_l, alphaedit)


@dataclass
class EditParams(MethodParams):
    """What every sequential editor here shares: which matrices it edits, what it trains on, when it is asked."""

    layers: Optional[list[int]] = doc(None, "Decoder layers whose matrices are edited (negative counts from the "
                                            "top); null: the middle layer (num_hidden_layers // 2).")
    modules: list[str] = doc(help="Matrices edited in each of those layers, as paths inside a decoder layer.",
                             factory=lambda: ["mlp.down_proj"])
    module_template: str = doc("model.layers.{layer}.{module}", "Path of an edited matrix in the model "
                               "(Llama-family Hugging Face models: model.layers.N.mlp.down_proj).")
    train_on_paraphrases: bool = doc(False, "Also train each edit on its paraphrases (they are the "
                                            "generalization probes, so this inflates generalization).")
    eval_at: Optional[list[int]] = doc(None, "Edit counts after which all edits so far are evaluated; "
                                             "null: 1, 2, 5, 10, 20, 50, ... and always the last.")

    @classmethod
    def validate(cls, cfg) -> None:
        m = cfg.method
        if cfg.trainer.strategy not in SINGLE_DEVICE_STRATEGIES:
            raise UserError(f"method {m.name} edits whole weight matrices one edit at a time; trainer.strategy="
                            f"{cfg.trainer.strategy} shards them: use one of {', '.join(SINGLE_DEVICE_STRATEGIES)}")
        if cfg.trainer.accumulate_grad_batches != 1:
            raise UserError(f"method {m.name} optimises manually: trainer.accumulate_grad_batches must be 1")
        if cfg.model.lora.enabled:
            raise UserError(f"method {m.name} edits the model's own weights: set model.lora.enabled=false")
        if m.layers is not None and not m.layers:
            raise UserError("method.layers is empty: give at least one layer, or null for the middle layer")
        if not m.modules:
            raise UserError("method.modules is empty: give at least one module, e.g. [mlp.down_proj]")


@dataclass
class FTLParams(EditParams):
    """Gradient steps per edit (`ft_l`, and the base of `oedit`)."""

    steps: int = doc(25, "Gradient steps per edit (fewer when the loss reaches stop_loss).", minimum=1)
    lr: float = doc(2.0, "Learning rate of the per-edit optimiser (with sgd and max_grad_norm 1, a step moves the "
                         "edited matrices by at most lr in Frobenius norm).", above=0)
    optimizer: str = doc("sgd", "Per-edit optimiser; its state is reset at every edit. sgd keeps an update inside "
                                "the span of the edit's keys (rank <= tokens); adam's per-coordinate scaling spreads "
                                "it over every direction (the step is projected again after adam).",
                         choices=("sgd", "adam"))
    stop_loss: float = doc(0.02, "Stop an edit's steps once its NLL (mean per target token) is at most this.",
                           minimum=0)
    max_grad_norm: Optional[float] = doc(1.0, "Clip each (projected) gradient to this Frobenius norm, over all edited "
                                              "matrices (null: no clipping). Editors optimise manually, so "
                                              "trainer.gradient_clip_val does not apply to them.", above=0)
    norm_constraint: Optional[float] = doc(None, "FT-L's bound on an edit's update: after every step each edited "
                                                 "weight is clamped to within this of its value before the edit "
                                                 "(L-infinity; null: unbounded). O-Edit inherits it; the clamp acts "
                                                 "weight by weight, so a clamped O-Edit update leaves the projected "
                                                 "subspace.", above=0)


@dataclass
class OEditParams(FTLParams):
    projection_side: str = doc("input", "Side of W the bases live on: input (the key space; rows of dW V; "
                                        "protects earlier edits exactly) or output (columns of U dW).",
                               choices=SIDES)
    energy: float = doc(0.9, "Share of an edit's squared singular values its core gradient space covers.",
                        above=0, maximum=1)
    max_directions_per_edit: int = doc(0, "At most this many directions per edit join the edit basis (0: no cap).",
                                       minimum=0)
    knowledge_texts: str = doc("pretrain", "Generic text whose gradients give the knowledge subspace: pretrain "
                                           "(the world's background documents), mix (the reader's pretraining mix: "
                                           "documents and background question turns, never a locality prompt's "
                                           "wording) or none. Real-data sources have no pretraining text here and "
                                           "fall back to none with a warning.",
                               choices=KNOWLEDGE_TEXTS)
    knowledge_rank: int = doc(16, "Rank q of the knowledge subspace kept orthogonal to every update (0: none).",
                                minimum=0)
    knowledge_from: str = doc("gradients", "What the knowledge subspace is the top-q subspace of: gradients (per-text "
                                           "gradients of the LM loss on the knowledge texts) or keys (the edited "
                                           "layer's inputs at every token of them; outputs for projection_side "
                                           "output): gradients weigh a direction by how much the model still has "
                                           "to learn there, keys by how much the model uses it.",
                              choices=("gradients", "keys"))
    knowledge_samples: int = doc(64, "Knowledge texts sampled for the knowledge subspace.", minimum=0)
    plus: bool = doc(False, "O-Edit+: Gram-Schmidt each finished update against all earlier updates "
                            "(stores one flattened copy of the edited matrices per edit).")


@dataclass
class AlphaEditParams(EditParams):
    knowledge_texts: str = doc("pretrain", "Text whose keys give K0 K0^T (the knowledge kept in the null space): "
                                           "pretrain (the world's background documents), mix (documents and "
                                           "background question turns, as the reader was pretrained) or none (no "
                                           "null-space projection; real-data sources fall back to none with a "
                                           "warning).",
                               choices=KNOWLEDGE_TEXTS)
    knowledge_samples: int = doc(256, "Knowledge texts whose token keys form K0.", minimum=0)
    null_space_threshold: float = doc(1e-2, "Eigen-directions of K0 K0^T below this share of the largest "
                                            "eigenvalue span the null space the update is projected onto.", minimum=0)
    ridge: float = doc(1.0, "Weight of the ||dW P||^2 term: the identity in (K_p K_p^T P + K K^T P + ridge I).",
                       above=0)
    value_steps: int = doc(25, "Adam steps finding the residual that makes the edited layer say target_new.",
                             minimum=1)
    value_lr: float = doc(0.5, "Learning rate of those steps.", above=0)
    value_weight_decay: float = doc(1e-3, "Weight of ||delta||^2 / ||v||^2 in the residual's objective.", minimum=0)
    clamp_norm_factor: float = doc(4.0, "The residual's norm is at most this times the norm of the layer's output.",
                                     above=0)
    key_position: str = doc("subject_last", "Tokens whose keys and values are edited: subject_last (the subject's "
                                            "last token, where ROME / MEMIT / AlphaEdit locate facts) or "
                                            "target_predictors (each token that predicts a token of target_new).",
                            choices=("subject_last", "target_predictors"))

    @classmethod
    def validate(cls, cfg) -> None:
        super().validate(cfg)
        m = cfg.method
        if len(m.layers or [None]) * len(m.modules) != 1:
            raise UserError("method alphaedit edits exactly one matrix: give one layer and one module")


# ------------------------------------------------------------------------------------------ memoryllm


@dataclass
class MemoryLLMParams(MethodParams):
    """MemoryLLM: the pool (N, K) the stream writes into, and the training of the memory module (a cached build)."""

    pool_size: int = doc(128, "N: memory tokens per layer; the pool never grows or shrinks.", minimum=1)
    write_size: int = doc(16, "K: memory tokens one write makes per layer (and old ones it drops); a written chunk "
                              "must have at least K tokens.", minimum=1)
    chunk_length: int = doc(128, "Longest chunk written at once: a longer document is written as several chunks, in "
                                 "order.", minimum=1)
    train_steps: int = doc(3000, "Optimiser steps training the memory module (LoRA on the base model, the start "
                                 "vectors and the write vector) on fresh people; 0: the untrained wrapper.", minimum=0)
    train_lr: float = doc(1e-3, "Peak learning rate of that training (AdamW, warm-up then cosine).", above=0)
    train_batch_size: int = doc(16, "Rows per training step; each row keeps its own running pool.", minimum=1)
    train_pool_size: Optional[int] = doc(None, "N during training (null: pool_size).", minimum=1)
    questions_per_target: int = doc(4, "Question-answer turns about the target document per training row.",
                                    minimum=1)
    single_share: float = doc(0.5, "Share of training steps in the one-context regime: one document written with "
                                   "gradient, its questions answered from memory.", minimum=0, maximum=1)
    join_pool_share: float = doc(0.5, "In that regime, the share of steps whose memory is the running pool updated "
                                      "with the new tokens (N - K random old ones, detached) rather than the new "
                                      "tokens alone.", minimum=0, maximum=1)
    multi_share: float = doc(0.3, "Share of steps in the several-contexts regime: earlier documents written without "
                                  "gradient, the last with it, questions about one of them (multi_target).",
                             minimum=0, maximum=1)
    multi_target: str = doc("any", "Which document a several-contexts step asks about: any of them, or only the earlier "
                                   "ones, never the newest (docs/results/memoryllm.md compares both on the dev stream).",
                            choices=("any", "earlier"))
    max_contexts: int = doc(8, "Most documents written in one several-contexts step (curriculum's end).", minimum=2)
    shuffle_read_in_training: bool = doc(False, "Training only, not the paper's: the memory a question reads is "
                                                "shuffled along the pool (one order per step), so a token's place "
                                                "says nothing of its age and a document must be found by content "
                                                "(docs/results/memoryllm.md). The running pool keeps its order.")
    gradient_through_earlier_writes: bool = doc(
        False, "Training only, not the paper's: in the several-contexts regime every write of the step keeps its "
               "gradient (the paper writes all but the last without), so a question about an earlier document "
               "trains the write that made its surviving tokens, and the writes after it that read them.")
    curriculum_steps: int = doc(1500, "Steps over which the most contexts grows from 2 to max_contexts.", minimum=1)
    replay_share: float = doc(0.2, "Share of steps replaying an earlier step's questions after the writes made since "
                                   "(gradient through the read only).", minimum=0, maximum=1)
    background_rows: int = doc(8, "Rows per training step asking what the model already knew (the world's rehearsal "
                                  "half of the background; locality asks only the other half), read with the same "
                                  "memory, so that reading a full pool keeps the model's own knowledge.", minimum=0)

    @staticmethod
    def validate(cfg) -> None:
        m = cfg.method
        if m.write_size > m.pool_size:
            raise UserError(f"method.write_size={m.write_size} is larger than method.pool_size={m.pool_size}: "
                            "a write makes at most the whole pool")
        if m.write_size > m.chunk_length:
            raise UserError(f"method.chunk_length={m.chunk_length} is shorter than method.write_size="
                            f"{m.write_size}: a chunk needs at least K tokens")
        shares = m.single_share + m.multi_share + m.replay_share
        if shares <= 0:
            raise UserError("method.single_share, multi_share and replay_share are all 0: give one regime a share")


# ------------------------------------------------------------------------------------------ lora_transfer

# init arm -> one line; lit_knowledge/methods/lora_transfer/extraction.py builds each
TRANSFER_INITS = ("sensitivity", "standard", "random_layers", "random_submatrix", "spectrum", "student_svd")


def _teacher_reader() -> ModelConfig:
    return ModelConfig(name="reader", tiny=TinyModelConfig(num_layers=6, hidden_size=256, intermediate_size=1024))


@dataclass
class LoRATransferParams(MethodParams):
    """Knowledge transfer from a larger teacher's weights into the student's LoRA (the student is `model`)."""

    init: str = doc("sensitivity", "How the student's LoRA starts: sensitivity (the paper: the teacher's most "
                                   "sensitive layers and sub-matrices, factorised by SVD), standard (peft's init), "
                                   "random_layers, random_submatrix, spectrum (random singular vectors, the "
                                   "extracted singular values), student_svd (the student's own weights).",
                    choices=TRANSFER_INITS)
    teacher: ModelConfig = doc(help="The larger model whose weights are extracted (same tokenizer as the student); "
                                    "by default a 6-layer, 256-wide reader of the same world.",
                               factory=_teacher_reader)
    teacher_background_share: float = doc(1.0, "pretrain.background_share of the teacher when it is the world's "
                                                "reader (the student's is pretrain.background_share).",
                                          above=0, maximum=1)
    seed_examples: int = doc(32, "Seed examples (training questions) over which the teacher's sensitivity "
                                 "|theta * grad| is summed, the loss on the answer only.", minimum=1)
    train_share: float = doc(0.5, "Share of the people the student does not know whose facts it is fine-tuned on; "
                                  "the others' facts are held out (what transfer alone could teach).",
                             above=0, maximum=1)
    lr: float = doc(1e-3, "Learning rate of the LoRA fine-tuning (AdamW, linear warm-up, then constant so that an "
                          "early evaluation step equals a shorter run).", above=0)
    warmup_steps: int = doc(30, "Linear warm-up steps.", minimum=0)
    batch_size: int = doc(16, "Questions per fine-tuning step.", minimum=1)
    eval_steps: list[int] = doc(help="Steps after which held-out, fitted and locality F1 are measured (step 0, "
                                     "before fine-tuning, always is); the last is the run's length.",
                                factory=lambda: [50, 200, 1000])
    max_probes: int = doc(200, "Most questions in each evaluation set (held out, fitted, locality).", minimum=1)
    seed: int = doc(0, "Seed of this arm: the split of people, the seed examples, random inits and the batch order "
                       "(run.seed stays, so the student and teacher readers are the same for every seed).",
                    minimum=0)

    @staticmethod
    def validate(cfg) -> None:
        steps = list(cfg.method.eval_steps)
        if not steps or any(s < 1 for s in steps) or steps != sorted(set(steps)):
            raise UserError(f"method.eval_steps={steps} must be increasing positive step counts, e.g. [50,200,1000]")
        if cfg.data.source != "world":
            raise UserError("method lora_transfer measures transfer on the synthetic world: set data.source=world")
        if not cfg.model.lora.enabled:
            raise UserError("method lora_transfer fine-tunes a LoRA adapter: set model.lora.enabled=true")


# ------------------------------------------------------------------------------------------ cmt


@dataclass
class CMTParams(MethodParams):
    """CMT (on MAC): documents compressed into a bank read by the frozen LLM; the compressor and aggregator are
    meta-trained once (a cached build). MAC is CMT with self_matching, memory_aware and top_k_aggregation off."""

    memory_tokens: int = doc(12, "T: memory tokens per document (and per question); a document's bank entry holds T "
                                 "keys and T vectors per layer, the same bytes whatever its length.", minimum=1)
    compressor_width: Optional[int] = doc(None, "Width of the compressor's encoder (null: the LLM's hidden size).",
                                          minimum=1)
    compressor_layers: int = doc(2, "Encoder layers of the compressor.", minimum=1)
    soft_token_std: float = doc(1.0, "Standard deviation of the compressor's T soft tokens at initialisation. Near "
                                     "zero (0.02, the first default) they start almost alike, and a meta-training "
                                     "seed can end with every soft token picking the same words "
                                     "(docs/results/cmt.md).", above=0)
    compressor_heads: int = doc(4, "Attention heads of the compressor.", minimum=1)
    compressor_reads_embeddings: bool = doc(False, "The compressor reads the frozen LLM's token embeddings (the "
                                                   "states entering its first layer) beside its last layer's "
                                                   "output, which is all it reads when off: a name is the very "
                                                   "word there (no gain on the dev stream: docs/results/cmt.md).")
    keys_read_every_word: bool = doc(False, "Each key adds the mean of the text's encoded words to what its "
                                            "attention picked, so every word of a question or document reaches the "
                                            "match score (off: only the words the keys' attention picks). On the "
                                            "dev stream keys still ignored the last name (docs/results/cmt.md).")
    key_token_dropout: float = doc(0.0, "In meta-training only, each token of a text is hidden from the keys' "
                                        "attention with this probability (never all of them; the memory's layer "
                                        "vectors still read every token), so that a key cannot rest on one word "
                                        "alone, such as a person's first name.", minimum=0, maximum=0.9)
    aggregator_blocks: int = doc(2, "Cross-attention blocks of the aggregator.", minimum=1)
    aggregator_heads: int = doc(4, "Attention heads of the aggregator.", minimum=1)
    window: int = doc(32, "Bank entries the aggregator reads at once; a larger bank is aggregated hierarchically, "
                          "window by window.", minimum=2)
    self_matching: bool = doc(True, "CMT: questions are encoded by the compressor itself and matched with the "
                                    "document memories by an in-batch contrastive loss (MAC: a question encoder of "
                                    "its own, no matching loss).")
    memory_aware: bool = doc(True, "CMT: the memory-aware objective, the frozen LLM predicting each document from "
                                   "its own memory, added to the QA loss (memory_loss_weight).")
    top_k_aggregation: bool = doc(True, "CMT: the aggregator reads only the top_k bank entries that best match the "
                                        "question (MAC: the whole bank).")
    top_k: int = doc(8, "Entries read with top_k_aggregation.", minimum=1)
    matching: str = doc("mean", "How a question's keys are scored against a bank entry's (self-matching's loss and "
                                "top-k): 'mean', the cosine of their mean keys; 'late', each question key's best "
                                "cosine among the entry's keys, averaged over the question's keys (late "
                                "interaction).", choices=("mean", "late"))
    memory_loss_weight: float = doc(0.5, "Weight of the memory-aware objective.", minimum=0)
    match_loss_weight: float = doc(3.0, "Weight of self-matching's contrastive loss (at 0.5 the bank's keys stayed "
                                        "alike and matching never started in a 500-step check).", minimum=0)
    match_temperature: float = doc(0.1, "Temperature of that loss.", above=0)
    match_every_document: bool = doc(False, "Self-matching's loss also asks one question about each document of "
                                            "the step's bank that carries no gradient (off: only the gradient "
                                            "documents' questions, those of the QA loss). Keys then have to tell "
                                            "both members of a namesake pair apart, not one; the QA loss is "
                                            "unchanged. No effect without self_matching.")
    seed: Optional[int] = doc(None, "Meta-training's seed: the parts' initialisation and the fresh people each step "
                                    "draws (null: run.seed). A group varies it, not run.seed, which would also "
                                    "pretrain another reader.", minimum=0)
    train_steps: int = doc(3000, "Meta-training steps on fresh people (never the stream's); 0: untrained parts.",
                           minimum=0)
    train_lr: float = doc(1e-3, "Peak learning rate of meta-training (AdamW, warm-up then cosine).", above=0)
    train_bank_size: int = doc(32, "Documents per meta-training step: the step's bank.", minimum=2)
    train_shared_names: float = doc(1.0, "Share of each meta-training bank's people drawn in pairs that share a "
                                         "first or a last name, so that matching must read the whole name (among "
                                         "32 fresh people about one other shares a name with any one; among 256 "
                                         "stream documents about 7.5). 1.0 was chosen on the dev stream with "
                                         "grad_share 1.0 (docs/results/cmt.md); 0: the draws before the option.",
                                    minimum=0, maximum=1)
    grad_share: float = doc(1.0, "Backprop dropout: the share of the step's documents whose memory carries "
                                 "gradient; only their questions enter the QA loss. 1.0 (none) was chosen on the "
                                 "dev stream: with MAC's 0.25 the keys never learnt the last name. 0.25 is what "
                                 "keeps a 7B LLM's meta-training in accelerator memory.", above=0, maximum=1)
    questions_per_document: int = doc(2, "Questions asked about each document that carries gradient.", minimum=1)
    train_relations: list[str] = doc(help="The facts meta-training's questions (QA, background rows, matching) may "
                                          "ask about, in any order: some of city, year, org, field. A derived "
                                          "question counts as the facts it needs (the decade: year; inverse and "
                                          "compositional: city and year; the employer's city: org). Leaving some "
                                          "out tests whether the memory holds what was never asked: the "
                                          "memory-aware objective's claim (docs/results/cmt.md).",
                                     factory=lambda: list(WORLD_FACTS))
    background_rows: int = doc(8, "Rows per step asking what the LLM already knew (the rehearsal half of the "
                                  "world's background), read with the same bank, so that reading a bank keeps the "
                                  "LLM's own knowledge.", minimum=0)

    @staticmethod
    def validate(cfg) -> None:
        m = cfg.method
        if m.memory_tokens > cfg.data.max_length:
            raise UserError(f"method.memory_tokens={m.memory_tokens} exceeds data.max_length={cfg.data.max_length}")
        unknown = [r for r in m.train_relations if r not in WORLD_FACTS]
        if unknown or not m.train_relations:
            raise UserError(f"method.train_relations={list(m.train_relations)} must name some of {list(WORLD_FACTS)}, "
                            "e.g. method.train_relations=[city,year]")
        if m.top_k_aggregation and m.top_k > m.window:
            raise UserError(f"method.top_k={m.top_k} is larger than method.window={m.window}: the aggregator reads "
                            "the top k entries in one window; lower top_k or raise window")
