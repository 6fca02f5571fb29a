"""A Llama-family causal LM that reads a per-layer memory as a key/value prefix (shared by MemoryLLM and CMT).

The Hugging Face model is wrapped, never subclassed or copied. A memory is one vector of the hidden size per
memory token and layer: a tensor (layers, rows, M, hidden). At layer l the text attends to [start_l; memory_l]
as a key/value prefix: the memory passes through that layer's input norm, key and value projections and
rotary embedding and through nothing else (no queries, no MLP). The key/value projections size the prefix, so
grouped-query models need nothing special. A learned start vector per layer takes position 0, memory
positions 1..M, and the text follows. When start, memory and text together outnumber the model's positions,
every position is scaled down by one factor (RoPE position interpolation) so that the last lands on the
model's last position.

MemoryLLM's pool and CMT's aggregated bank are both read this way; what differs is how the memory is made.
"""

from __future__ import annotations

import inspect

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
    1 they are fractional: the rotary embedding interpolates, see `PrefixReader.position_scale`)."""
    positions = offset + (attention_mask.long().cumsum(1) - 1).clamp(min=0)
    return positions if scale == 1.0 else positions.float() * scale


class PrefixReader(nn.Module):
    """A causal LM whose text reads a per-layer memory at every layer (see the module's docstring).

    `start` (layers x hidden) is the only parameter added; the memory itself is passed in, never stored here.
    `method` names the method in the error a non-Llama model gets.
    """

    def __init__(self, model, method: str = "this method"):
        super().__init__()
        self.model = model
        lm = causal_lm(model)
        self.decoder = getattr(lm, "model", None)
        layers = getattr(self.decoder, "layers", None)
        if layers is None or not hasattr(self.decoder, "rotary_emb") or not all(
            hasattr(layer, "input_layernorm") and hasattr(getattr(layer, "self_attn", None), "k_proj") for layer in layers
        ):
            raise UserError(f"{method} needs a Llama-family model (decoder layers with input_layernorm and "
                            f"self_attn.k_proj/v_proj, and a rotary embedding); {type(lm).__name__} is not one")
        self.layers = layers
        config = lm.config
        self.hidden = config.hidden_size
        self.kv_heads = config.num_key_value_heads
        self.head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
        self.max_positions = getattr(config, "max_position_embeddings", None)
        dtype = next(lm.parameters()).dtype
        self.start = nn.Parameter(torch.zeros(len(layers), self.hidden, dtype=dtype))
        # transformers renamed the decoder's cache argument (past_key_values -> cache); take whichever it has
        self._cache_arg = "cache" if "cache" in inspect.signature(self.decoder.forward).parameters else "past_key_values"

    @property
    def num_layers(self) -> int:
        return len(self.layers)

    @torch.no_grad()
    def start_from_token(self, token_id: int) -> None:
        """Start vectors = the hidden states entering each layer for `token_id` alone (a BOS token's)."""
        states = self.decoder(input_ids=torch.tensor([[token_id]], device=self.start.device),
                              output_hidden_states=True).hidden_states
        self.start.copy_(torch.stack([h[0, 0] for h in states[: self.num_layers]]))

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


# ---------------------------------------------------------------------------------- asking with a memory


@torch.no_grad()
def greedy_answers(reader: PrefixReader, memory: torch.Tensor | None, tokenizer, prompts: list[str],
                   max_new_tokens: int = 12, batch_size: int = 32) -> list[str]:
    """Greedy answers to `prompts` read with `memory` (rows 1: one memory for all; else one row per prompt), each
    cut at end-of-sequence or a new line.

    An own loop rather than `generate()`: the memory is a key/value prefix the cache starts with.
    """
    from lit_knowledge.data.prompts import token_ids

    device = reader.start.device
    eos = tokenizer.eos_token_id
    per_prompt = memory is not None and memory.shape[1] > 1
    if per_prompt and memory.shape[1] != len(prompts):
        raise ValueError(f"a memory of {memory.shape[1]} rows for {len(prompts)} prompts")
    answers = []
    for i in range(0, len(prompts), batch_size):
        rows = [token_ids(tokenizer, p) for p in prompts[i : i + batch_size]]
        here = memory[:, i : i + len(rows)] if per_prompt else memory
        ids, mask = left_padded(rows, tokenizer.pad_token_id, device)
        batch = ids.shape[0]
        scale = reader.position_scale(reader.prefix_length(here) + ids.shape[1] + max_new_tokens)
        cache, length = reader.prefix_cache(here, batch, scale)
        lm = causal_lm(reader.model)
        full_mask = torch.cat([mask.new_ones(batch, length), mask], dim=1)
        positions = text_positions(mask, length, scale)
        done = torch.zeros(batch, dtype=torch.bool, device=device)
        out: list[list[int]] = [[] for _ in range(batch)]
        for _ in range(max_new_tokens):
            logits = lm(input_ids=ids, attention_mask=full_mask, position_ids=positions, use_cache=True,
                        **{reader._cache_arg: cache}).logits[:, -1]
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


class PrefixScorer(nn.Module):
    """`reader` reading `memory`, called as a causal LM is (input_ids, attention_mask -> output with logits):
    what the shared scoring tools (models/generate.py's `lm_loss`, `teacher_forced_argmax`) run."""

    def __init__(self, reader: PrefixReader, memory: torch.Tensor | None):
        super().__init__()
        self.reader, self.memory = reader, memory

    def forward(self, input_ids, attention_mask):
        return self.reader.read(self.memory, input_ids, attention_mask)
