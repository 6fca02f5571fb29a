"""MemoryLLM's memory over any Llama-family causal LM: a fixed-size pool of latent tokens in every layer.

The Hugging Face model is wrapped, never subclassed or copied. Per layer l the pool θ_l holds N vectors of
the hidden size; a learned start vector per layer sits before it.

- **Read.** At layer l the text attends to [start_l; θ_l] as a key/value prefix (lit_knowledge/models/prefix.py,
  shared with CMT). The memory passes through that layer's input norm, key and value projections and rotary
  embedding and through nothing else: no queries, no MLP. Start takes position 0, memory positions 1..N, and
  the text follows. When start, memory and text together outnumber the model's positions, every position is
  scaled down by one factor (RoPE position interpolation) so that the last lands on the model's last position.
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

import math

import torch
from torch import nn

from lit_knowledge.errors import UserError
from lit_knowledge.models.prefix import PrefixReader, text_positions


class MemoryModel(PrefixReader):
    """A causal LM with a memory pool read and written at every layer (see the module's docstring).

    `start` (layers x hidden, from PrefixReader) and `write_vector` (hidden) are the memory's learned parameters;
    the pool itself is passed in and returned, never stored here.
    """

    def __init__(self, model, pool_size: int, write_size: int):
        if not 1 <= write_size <= pool_size:
            raise UserError(f"method.write_size={write_size} must be between 1 and method.pool_size={pool_size}")
        super().__init__(model, "memoryllm")
        self.pool_size, self.write_size = pool_size, write_size
        self.write_vector = nn.Parameter(torch.zeros(self.hidden, dtype=self.start.dtype))

    def memory_state(self) -> dict:
        return {"start": self.start.detach().cpu().clone(), "write_vector": self.write_vector.detach().cpu().clone()}

    def load_memory_state(self, state: dict) -> None:
        with torch.no_grad():
            self.start.copy_(state["start"])
            self.write_vector.copy_(state["write_vector"])

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
