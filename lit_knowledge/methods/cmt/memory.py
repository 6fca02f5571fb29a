"""CMT's memory over a frozen Llama-family LLM: a compressor, a bank, an aggregator, and the prefix the LLM reads.

MAC (arXiv 2403.04317) amortizes a document into a few vectors; CMT (arXiv 2412.07393) adds three techniques
on top. The parts, in the order a document and a question meet them:

- **Compressor** (MAC's amortization network). A small transformer encoder reads the document's hidden states
  from the frozen LLM (its last layer, no gradient: the LLM is the pretrained encoder, where MAC downloads a
  T5) together with T learnable soft tokens, and its outputs at the soft tokens, mapped into the LLM's hidden
  size, are the document's T memory vectors. A document's memory has T x hidden numbers whatever its length.
- **Bank**: one entry (T vectors) per document, appended in stream order.
- **Question encoding**. The aggregator is conditioned on the question. With self-matching (CMT) the question
  is encoded by the compressor itself, so questions and documents live in one space; without it (MAC) by a
  question encoder of the same shape with its own weights.
- **Top-k aggregation** (CMT). Each bank entry is scored by the cosine between its mean memory vector and the
  question's; the aggregator reads only the k best entries (kept in bank order). Off (MAC): the whole bank.
- **Aggregator**: blocks of cross-attention from the question's T vectors to the bank's tokens (entries x T),
  with an MLP after each. A bank longer than `window` entries is aggregated hierarchically: each window of
  the bank becomes one entry, and so on until one window is left (over the bank, not the question: MAC's
  reference loops over the question's length there).
- **Into the LLM**: the T aggregated vectors become one memory per layer (a low-rank per-layer correction of
  a shared vector) read at every layer as a key/value prefix through the frozen layer's own norm, key and
  value projections (lit_knowledge/models/prefix.py). MAC generates keys and values directly (P-tuning v2);
  letting the frozen projections make them sizes the prefix by the model's key/value heads (grouped-query
  models need nothing) and keeps the added parameters to O(hidden x rank) per layer.

Everything except the LLM is trained (training.py); at test time nothing is.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from lit_knowledge.models.prefix import PrefixReader, causal_lm


class Compressor(nn.Module):
    """A document's (or question's) hidden states -> T memory vectors of the LLM's hidden size."""

    def __init__(self, hidden: int, memory_tokens: int, width: int, layers: int, heads: int, max_length: int):
        super().__init__()
        self.inp = nn.Linear(hidden, width)
        self.positions = nn.Parameter(torch.randn(max_length, width) * 0.02)
        self.soft_tokens = nn.Parameter(torch.randn(memory_tokens, width) * 0.02)
        block = nn.TransformerEncoderLayer(width, heads, 4 * width, dropout=0.0, batch_first=True, norm_first=True)
        self.encoder = nn.TransformerEncoder(block, layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(width)
        self.out = nn.Linear(width, hidden)
        self.mlp = nn.Sequential(nn.LayerNorm(hidden), nn.Linear(hidden, hidden), nn.Tanh(), nn.Linear(hidden, hidden))

    def forward(self, states: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """states (B, S, hidden), mask (B, S) -> (B, T, hidden). Padding is never read."""
        batch, length = mask.shape
        x = self.inp(states) + self.positions[:length]
        x = torch.cat([x, self.soft_tokens.expand(batch, -1, -1)], dim=1)
        ignore = torch.cat([mask == 0, mask.new_zeros(batch, self.soft_tokens.shape[0], dtype=torch.bool)], dim=1)
        x = self.encoder(x, src_key_padding_mask=ignore)
        memory = self.out(self.norm(x[:, length:]))
        return memory + self.mlp(memory)


class AggregatorBlock(nn.Module):
    def __init__(self, hidden: int, heads: int):
        super().__init__()
        self.norm_q, self.norm_kv = nn.LayerNorm(hidden), nn.LayerNorm(hidden)
        self.attention = nn.MultiheadAttention(hidden, heads, batch_first=True)
        self.mlp = nn.Sequential(nn.LayerNorm(hidden), nn.Linear(hidden, 4 * hidden), nn.GELU(),
                                 nn.Linear(4 * hidden, hidden))

    def forward(self, x: torch.Tensor, bank: torch.Tensor) -> torch.Tensor:
        kv = self.norm_kv(bank)
        x = x + self.attention(self.norm_q(x), kv, kv, need_weights=False)[0]
        return x + self.mlp(x)


class Aggregator(nn.Module):
    """The question's T vectors cross-attend over bank entries (B, n, T, hidden) -> (B, T, hidden)."""

    def __init__(self, hidden: int, heads: int, blocks: int, window: int):
        super().__init__()
        self.blocks = nn.ModuleList(AggregatorBlock(hidden, heads) for _ in range(blocks))
        self.window = window
        self.calls = 0  # aggregations run (a test counts the hierarchy's)

    def once(self, question: torch.Tensor, entries: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        bank = entries.flatten(1, 2)  # (B, n x T, hidden)
        x = question
        for block in self.blocks:
            x = block(x, bank)
        return x

    def forward(self, question: torch.Tensor, entries: torch.Tensor) -> torch.Tensor:
        """Hierarchical over the bank: while it has more than `window` entries, each window of it is aggregated
        into one entry; the last window left is aggregated into the answer's memory."""
        while entries.shape[1] > self.window:
            windows = entries.split(self.window, dim=1)
            entries = torch.stack([self.once(question, w) for w in windows], dim=1)
        return self.once(question, entries)


class CMTMemory(nn.Module):
    """The frozen LLM (as a PrefixReader) with CMT's trained parts; see the module's docstring."""

    def __init__(self, model, p, max_length: int):
        super().__init__()
        self.reader = PrefixReader(model, "cmt")
        self.reader.model.requires_grad_(False)
        hidden, T = self.reader.hidden, p.memory_tokens
        width = p.compressor_width or hidden
        self.memory_tokens = T
        self.self_matching, self.top_k_aggregation, self.top_k = p.self_matching, p.top_k_aggregation, p.top_k
        self.compressor = Compressor(hidden, T, width, p.compressor_layers, p.compressor_heads, max_length)
        # MAC: the question has an encoder of its own; CMT's self-matching encodes it with the compressor
        self.question_encoder = None if p.self_matching else \
            Compressor(hidden, T, width, p.compressor_layers, p.compressor_heads, max_length)
        self.aggregator = Aggregator(hidden, p.aggregator_heads, p.aggregator_blocks, p.window)
        L = self.reader.num_layers
        self.down = nn.Linear(hidden, p.prefix_rank, bias=False)
        self.up = nn.Linear(p.prefix_rank, L * hidden)
        nn.init.zeros_(self.up.weight)
        nn.init.zeros_(self.up.bias)

    # ------------------------------------------------------------------------------ the parts

    def trained_state(self) -> dict:
        """Everything but the frozen LLM (what the cached build stores)."""
        return {k: v for k, v in self.state_dict().items() if not k.startswith("reader.model.")
                and not k.startswith("reader.decoder.") and not k.startswith("reader.layers.")}

    @property
    def device(self) -> torch.device:
        return self.reader.start.device

    def hidden_states(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """The frozen LLM's last hidden states of the text (no gradient: the LLM is frozen)."""
        with torch.no_grad():
            states = self.reader.decoder(input_ids=ids, attention_mask=mask).last_hidden_state
        return states.float()

    def compress(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Documents (B, S) -> their bank entries (B, T, hidden)."""
        return self.compressor(self.hidden_states(ids, mask), mask)

    def encode_question(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Questions (B, S) -> (B, T, hidden): by the compressor (self-matching) or the question encoder (MAC)."""
        encoder = self.compressor if self.question_encoder is None else self.question_encoder
        return encoder(self.hidden_states(ids, mask), mask)

    @staticmethod
    def summary(vectors: torch.Tensor) -> torch.Tensor:
        """A unit vector per entry (its mean memory vector): what self-matching and top-k compare."""
        return F.normalize(vectors.mean(dim=-2), dim=-1)

    def match_scores(self, question: torch.Tensor, entries: torch.Tensor) -> torch.Tensor:
        """Cosine between each question (B, T, h) and each bank entry (n, T, h) or (B, n, T, h): (B, n)."""
        q = self.summary(question)
        e = self.summary(entries)
        return q @ e.T if e.dim() == 2 else torch.einsum("bh,bnh->bn", q, e)

    def select(self, question: torch.Tensor, bank: torch.Tensor) -> torch.Tensor:
        """The entries each question reads, (B, n', T, h): the k best-matching in bank order (top-k aggregation),
        or the whole bank."""
        entries = bank.expand(question.shape[0], -1, -1, -1) if bank.dim() == 3 else bank
        if not self.top_k_aggregation or entries.shape[1] <= self.top_k:
            return entries
        best = self.match_scores(question, bank).topk(self.top_k, dim=-1).indices.sort(dim=-1).values
        return entries.gather(1, best[:, :, None, None].expand(-1, -1, *entries.shape[2:]))

    def to_layers(self, vectors: torch.Tensor) -> torch.Tensor:
        """(B, T, hidden) -> a memory per layer, (layers, B, T, hidden), read by the frozen LLM."""
        B, T, h = vectors.shape
        per_layer = self.up(self.down(vectors)).view(B, T, self.reader.num_layers, h).permute(2, 0, 1, 3)
        return vectors[None] + per_layer

    def memory_for(self, question: torch.Tensor, bank: torch.Tensor | None) -> torch.Tensor | None:
        """The prefix memory for encoded questions (B, T, h) reading `bank` (n, T, h); None for an empty bank."""
        if bank is None or bank.shape[-3] == 0:
            return None
        return self.to_layers(self.aggregator(question, self.select(question, bank)))

    def read(self, memory, input_ids, attention_mask, labels=None):
        return self.reader.read(memory, input_ids, attention_mask, labels=labels)


def frozen_llm_parameters(memory: CMTMemory) -> list[nn.Parameter]:
    return list(causal_lm(memory.reader.model).parameters())
