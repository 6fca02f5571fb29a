"""MemoryLLM's memory over any Llama-family causal LM: a fixed-size pool of latent tokens in every layer.

The Hugging Face model is wrapped, never subclassed or copied. Per layer l the pool θ_l holds N vectors of
the hidden size; a learned start vector per layer sits before it.

- **Read.** At layer l the text attends to [start_l; θ_l] as a key/value prefix. The memory passes through
  that layer's input norm, key and value projections and rotary embedding and through nothing else: no
  queries, no MLP. Start takes position 0, memory positions 1..N, and the text follows. When start, memory
  and text together outnumber the model's positions, every position is scaled down by one factor (RoPE
  position interpolation) so that the last lands on the model's last position.
- **Write** a chunk of text. The same prefix, made of the last K pool tokens ([start_l; θ_l[-K:]]), comes
  before the chunk at every layer; one learned vector (`write_vector`) is added to the chunk's last K hidden
  states before every layer, and the layer's outputs there are that layer's K new memory tokens. A chunk
  shorter than K tokens (an edit's one-line statement) writes as many tokens as it has: the update then
  drops as many old ones, and the pool keeps its size.
- **Update.** Per layer, independently, a random sorted subset of N - K old tokens is kept and the K new
  ones are appended. The first write fills the pool by repeating its K tokens.

A pool is a tensor (layers, batch, N, hidden). It is data, not a weight: it never receives a gradient from
the stream and its size never changes.
"""

from __future__ import annotations

import inspect
import math

import torch
from torch import nn

from lit_knowledge.errors import UserError


def causal_lm(model):
    """The Hugging Face causal LM inside `model` (a peft wrapper's base model; LoRA layers stay active)."""
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Llama's rotary embedding of x (batch, heads, positions, head_dim) with cos/sin (batch, positions, head_dim)."""
    cos, sin = cos.unsqueeze(1), sin.unsqueeze(1)
    half = x.shape[-1] // 2
    rotated = torch.cat((-x[..., half:], x[..., :half]), dim=-1)
    return x * cos + rotated * sin


def text_positions(attention_mask: torch.Tensor, offset: int, scale: float = 1.0) -> torch.Tensor:
    """Position ids of (left- or right-padded) text that follows `offset` prefix positions, times `scale` (below
    1 they are fractional: the rotary embedding interpolates, see `MemoryModel.position_scale`)."""
    positions = offset + (attention_mask.long().cumsum(1) - 1).clamp(min=0)
    return positions if scale == 1.0 else positions.float() * scale


class MemoryModel(nn.Module):
    """A causal LM with a memory pool read and written at every layer (see the module's docstring).

    `start` (layers x hidden) and `write_vector` (hidden) are the memory's learned parameters; the pool itself
    is passed in and returned, never stored here.
    """

    def __init__(self, model, pool_size: int, write_size: int):
        super().__init__()
        if not 1 <= write_size <= pool_size:
            raise UserError(f"method.write_size={write_size} must be between 1 and method.pool_size={pool_size}")
        self.model = model
        lm = causal_lm(model)
        self.decoder = getattr(lm, "model", None)
        layers = getattr(self.decoder, "layers", None)
        if layers is None or not hasattr(self.decoder, "rotary_emb") or not all(
            hasattr(layer, "input_layernorm") and hasattr(getattr(layer, "self_attn", None), "k_proj") for layer in layers
        ):
            raise UserError(f"memoryllm needs a Llama-family model (decoder layers with input_layernorm and "
                            f"self_attn.k_proj/v_proj, and a rotary embedding); {type(lm).__name__} is not one")
        self.layers = layers
        config = lm.config
        self.hidden = config.hidden_size
        self.kv_heads = config.num_key_value_heads
        self.head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
        self.pool_size, self.write_size = pool_size, write_size
        self.max_positions = getattr(config, "max_position_embeddings", None)
        dtype = next(lm.parameters()).dtype
        self.start = nn.Parameter(torch.zeros(len(layers), self.hidden, dtype=dtype))
        self.write_vector = nn.Parameter(torch.zeros(self.hidden, dtype=dtype))
        # transformers renamed the decoder's cache argument (past_key_values -> cache); take whichever it has
        self._cache_arg = "cache" if "cache" in inspect.signature(self.decoder.forward).parameters else "past_key_values"

    @property
    def num_layers(self) -> int:
        return len(self.layers)

    # ------------------------------------------------------------------------------ parameters

    @torch.no_grad()
    def start_from_token(self, token_id: int) -> None:
        """Start vectors = the hidden states entering each layer for `token_id` alone (a BOS token's)."""
        states = self.decoder(input_ids=torch.tensor([[token_id]], device=self.start.device),
                              output_hidden_states=True).hidden_states
        self.start.copy_(torch.stack([h[0, 0] for h in states[: self.num_layers]]))

    def memory_state(self) -> dict:
        return {"start": self.start.detach().cpu().clone(), "write_vector": self.write_vector.detach().cpu().clone()}

    def load_memory_state(self, state: dict) -> None:
        with torch.no_grad():
            self.start.copy_(state["start"])
            self.write_vector.copy_(state["write_vector"])

    # ------------------------------------------------------------------------------ read

    def position_scale(self, total: int) -> float:
        """RoPE position interpolation: 1 while `total` positions (start, memory, text) fit the model's
        `max_position_embeddings`; beyond, every position is multiplied by (max - 1) / (total - 1), so the last one
        lands on the last position the model was trained on."""
        if not self.max_positions or total <= self.max_positions:
            return 1.0
        return (self.max_positions - 1) / (total - 1)

    @staticmethod
    def prefix_length(memory: torch.Tensor | None) -> int:
        """Positions the prefix takes: the start vector and the memory tokens."""
        return 1 + (0 if memory is None else memory.shape[2])

    def prefix_cache(self, memory: torch.Tensor | None, batch: int, scale: float = 1.0):
        """A fresh key/value cache holding [start_l; memory_l] at every layer, positions 0..M (times `scale`).

        `memory`: (layers, 1 or batch, M, hidden), or None for the start vector alone.
        """
        from transformers import DynamicCache

        cache = DynamicCache()
        rows = 1 if memory is None else memory.shape[1]
        start = self.start[:, None, None, :].expand(-1, rows, 1, -1)
        tokens = start if memory is None else torch.cat([start, memory.to(self.start.dtype)], dim=2)
        length = tokens.shape[2]
        positions = torch.arange(length, device=tokens.device)[None].expand(rows, -1)
        if scale != 1.0:
            positions = positions.float() * scale
        cos, sin = self.decoder.rotary_emb(tokens[0], positions)
        for layer_i, layer in enumerate(self.layers):
            h = layer.input_layernorm(tokens[layer_i])
            attn = layer.self_attn
            k = attn.k_proj(h).view(rows, length, -1, self.head_dim).transpose(1, 2)
            v = attn.v_proj(h).view(rows, length, -1, self.head_dim).transpose(1, 2)
            if hasattr(attn, "k_norm"):  # models that normalise keys per head (Qwen3-style)
                k = attn.k_norm(k.transpose(1, 2)).transpose(1, 2)
            k = rotate(k, cos, sin)
            if rows != batch:
                k, v = k.expand(batch, -1, -1, -1), v.expand(batch, -1, -1, -1)
            cache.update(k, v, layer_i)
        return cache, length

    def read(self, memory: torch.Tensor | None, input_ids: torch.Tensor, attention_mask: torch.Tensor,
             labels: torch.Tensor | None = None, use_cache: bool = False):
        """The causal LM's output for text that reads `memory` at every layer (labels: its loss too)."""
        batch = input_ids.shape[0]
        scale = self.position_scale(self.prefix_length(memory) + input_ids.shape[1])
        cache, length = self.prefix_cache(memory, batch, scale)
        mask = torch.cat([attention_mask.new_ones(batch, length), attention_mask], dim=1)
        lm = causal_lm(self.model)
        return lm(input_ids=input_ids, attention_mask=mask, position_ids=text_positions(attention_mask, length, scale),
                  labels=labels, use_cache=use_cache, **{self._cache_arg: cache})

    # ------------------------------------------------------------------------------ write

    def write(self, pool: torch.Tensor | None, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """The new memory tokens per layer, (layers, batch, K', hidden), written from left-padded chunks: K' = K,
        or the shortest chunk's length when that is less (a short edit statement writes as many tokens as it has,
        and the update then drops as many old ones)."""
        K = min(self.write_size, int(attention_mask.sum(1).min()))
        if K < 1:
            raise UserError("memoryllm was asked to write an empty chunk: every written text needs a token")
        recent = None if pool is None else pool[:, :, -self.write_size:]
        batch = input_ids.shape[0]
        scale = self.position_scale(self.prefix_length(recent) + input_ids.shape[1])
        cache, length = self.prefix_cache(recent, batch, scale)
        mask = torch.cat([attention_mask.new_ones(batch, length), attention_mask], dim=1)
        captured: list[torch.Tensor] = []

        def add_write_vector(module, args, kwargs):
            hidden = args[0] if args else kwargs["hidden_states"]
            hidden = torch.cat([hidden[:, :-K], hidden[:, -K:] + self.write_vector], dim=1)
            return ((hidden, *args[1:]), kwargs) if args else (args, {**kwargs, "hidden_states": hidden})

        def capture(module, args, output):
            captured.append((output[0] if isinstance(output, tuple) else output)[:, -K:])

        hooks = [h for layer in self.layers for h in (layer.register_forward_pre_hook(add_write_vector, with_kwargs=True),
                                                      layer.register_forward_hook(capture))]
        try:
            self.decoder(input_ids=input_ids, attention_mask=mask, position_ids=text_positions(attention_mask, length, scale),
                         use_cache=False, **{self._cache_arg: cache})
        finally:
            for h in hooks:
                h.remove()
        return torch.stack(captured)

    # ------------------------------------------------------------------------------ update

    def update(self, pool: torch.Tensor | None, new: torch.Tensor, generator: torch.Generator | None = None
               ) -> torch.Tensor:
        """The pool after a write: per layer (and row) a random sorted N - K of the old tokens, then the K new."""
        return update_pool(pool, new, self.pool_size, generator)


def update_pool(pool: torch.Tensor | None, new: torch.Tensor, pool_size: int,
                generator: torch.Generator | None = None) -> torch.Tensor:
    """MemoryLLM's update (see the module docstring); `new` is (layers, batch, K, hidden)."""
    K = new.shape[2]
    if pool is None:  # the first write fills the pool
        return new.repeat(1, 1, math.ceil(pool_size / K), 1)[:, :, -pool_size:]
    layers, batch, N, hidden = pool.shape
    scores = torch.rand(layers, batch, N, generator=generator, device="cpu").to(pool.device)
    keep = scores.argsort(dim=-1)[..., : N - K].sort(dim=-1).values
    kept = pool.gather(2, keep[..., None].expand(-1, -1, -1, hidden))
    return torch.cat([kept, new.to(pool.dtype)], dim=2)


# ---------------------------------------------------------------------------------- asking the memory


@torch.no_grad()
def greedy_answers(memory_model: MemoryModel, pool: torch.Tensor | None, tokenizer, prompts: list[str],
                   max_new_tokens: int = 12, batch_size: int = 32) -> list[str]:
    """Greedy answers to `prompts` read with `pool`, each cut at end-of-sequence or a new line.

    An own loop rather than `generate()`: the memory is a key/value prefix the cache starts with.
    """
    from lit_knowledge.data.prompts import token_ids

    device = memory_model.start.device
    eos = tokenizer.eos_token_id
    answers = []
    for i in range(0, len(prompts), batch_size):
        rows = [token_ids(tokenizer, p) for p in prompts[i : i + batch_size]]
        ids, mask = left_padded(rows, tokenizer.pad_token_id, device)
        batch = ids.shape[0]
        scale = memory_model.position_scale(memory_model.prefix_length(pool) + ids.shape[1] + max_new_tokens)
        cache, length = memory_model.prefix_cache(pool, batch, scale)
        lm = causal_lm(memory_model.model)
        full_mask = torch.cat([mask.new_ones(batch, length), mask], dim=1)
        positions = text_positions(mask, length, scale)
        done = torch.zeros(batch, dtype=torch.bool, device=device)
        out: list[list[int]] = [[] for _ in range(batch)]
        for _ in range(max_new_tokens):
            logits = lm(input_ids=ids, attention_mask=full_mask, position_ids=positions, use_cache=True,
                        **{memory_model._cache_arg: cache}).logits[:, -1]
            nxt = logits.argmax(-1)
            for r in range(batch):
                if not done[r]:
                    out[r].append(int(nxt[r]))
            done |= nxt == eos
            if bool(done.all()):
                break
            ids = nxt[:, None]
            positions = positions[:, -1:] + (1 if scale == 1.0 else scale)
            full_mask = torch.cat([full_mask, full_mask.new_ones(batch, 1)], dim=1)
        texts = tokenizer.batch_decode([[t for t in seq if t != eos] for seq in out], skip_special_tokens=True)
        answers += [t.split("\n")[0].strip() for t in texts]
    return answers


def left_padded(rows: list[list[int]], pad_id: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    """(ids, attention mask) of token-id lists padded on the left (their last tokens line up)."""
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, r in enumerate(rows):
        if r:
            ids[i, -len(r):] = torch.tensor(r)
            mask[i, -len(r):] = 1
    return ids.to(device), mask.to(device)


class PoolReader(nn.Module):
    """`memory_model` reading `pool`, called as a causal LM is (input_ids, attention_mask -> output with logits):
    what the shared scoring tools (models/generate.py's `lm_loss`, `teacher_forced_argmax`) run."""

    def __init__(self, memory_model: MemoryModel, pool: torch.Tensor | None):
        super().__init__()
        self.memory_model, self.pool = memory_model, pool

    def forward(self, input_ids, attention_mask):
        return self.memory_model.read(self.pool, input_ids, attention_mask)
