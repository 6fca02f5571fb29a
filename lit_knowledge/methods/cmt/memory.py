"""CMT's memory over a frozen Llama-family LLM: a compressor, a bank, an aggregator, and the prefix the LLM reads.

MAC (arXiv 2403.04317) amortizes a document into a few vectors; CMT (arXiv 2412.07393) adds three techniques
on top. The parts, in the order a document and a question meet them:

- **Compressor** (MAC's amortization network). A small transformer encoder reads the document's last hidden
  states from the frozen LLM (no gradient: the LLM is the pretrained encoder, where MAC downloads a T5; with
  `compressor_reads_embeddings` its token embeddings too) together with T learnable soft tokens. Each soft
  token attends over the document's tokens twice: once to make its key (what questions are matched with),
  once to pick, at every layer l, a mixture of the document's hidden states entering layer l (what the frozen
  LLM reads). A document's memory is one bank entry, (1 + layers, T, hidden): the same bytes whatever its
  length.
- **Bank**: one entry per document, appended in stream order.
- **Question encoding**. The aggregator is conditioned on the question's keys. With self-matching (CMT) the
  question is encoded by the compressor itself, so questions and documents live in one space, and an
  in-batch contrastive loss ranks the gold document first; without it (MAC) by a question encoder of the
  same shape with its own weights.
- **Top-k aggregation** (CMT). Each bank entry is scored by the cosine between its mean key and the
  question's (`matching: late`: each question key's best cosine among the entry's keys, averaged); the
  aggregator reads only the k best entries (kept in bank order). Off (MAC): the whole bank.
- **Aggregator**: blocks of cross-attention from the question's keys to the bank's keys refine the question;
  the refined question then weighs the entries (a softmax over the cosines of mean keys, at a learned
  temperature) and mixes their per-layer vectors: the result is an entry of the same form. A bank longer than
  `window` entries is aggregated hierarchically: each window of the bank becomes one entry, and so on until
  one window is left (over the bank, not the question: MAC's reference loops over the question's length).
- **Into the LLM**: the aggregated entry's vectors for layer l are read at layer l as a key/value prefix
  through the frozen layer's own norm, key and value projections and RoPE (lit_knowledge/models/prefix.py).
  MAC generates keys and values with an MLP (P-tuning v2). Here the memory is made of the LLM's own hidden
  states, so the frozen LLM reads it as it reads context (with a document's hidden states themselves as the
  prefix, the world's reader answers as well as with the document in its prompt), and the frozen projections
  size the prefix by the model's key/value heads: grouped-query models need nothing special. The first
  design tried, an MLP from T vectors to each layer's memory, was not readable by the frozen reader after
  3,000 steps (F1 below the no-memory floor) although matching was learnt.

Everything except the LLM is trained (training.py); at test time nothing is.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from lit_knowledge.models.prefix import PrefixReader

# The soft tokens' initial scale before `method.soft_token_std` existed; builds made at it keep their cache keys.
FIRST_SOFT_TOKEN_STD = 0.02


class Compressor(nn.Module):
    """A document's (or question's) hidden states -> its memory: (B, 1 + layers, T, hidden).

    Row 0 holds the T keys (each soft token's encoder output plus what its key attention picked from the
    document, and with `keys_read_every_word` the document's mean, mapped to the hidden size): what questions
    are matched and aggregated with. Rows 1..L hold, per layer l, T mixtures of the document's hidden states
    entering layer l, each soft token weighting the document's tokens by its own attention: what the frozen LLM
    reads at layer l, in the very space it reads context in. With `key_token_dropout`, in training each token is
    hidden from the keys' attention at random (the layers' vectors read every token).
    """

    def __init__(self, hidden: int, memory_tokens: int, width: int, layers: int, heads: int, max_length: int,
                 soft_token_std: float = FIRST_SOFT_TOKEN_STD, read_embeddings: bool = False,
                 keys_read_every_word: bool = False, key_token_dropout: float = 0.0):
        super().__init__()
        self.keys_read_every_word = keys_read_every_word
        self.key_token_dropout = key_token_dropout
        self.inp = nn.Linear(hidden, width)
        self.positions = nn.Parameter(torch.randn(max_length, width) * 0.02)
        self.soft_tokens = nn.Parameter(torch.randn(memory_tokens, width) * soft_token_std)
        block = nn.TransformerEncoderLayer(width, heads, 4 * width, dropout=0.0, batch_first=True, norm_first=True)
        self.encoder = nn.TransformerEncoder(block, layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(width)
        self.out = nn.Linear(width, hidden)
        self.mlp = nn.Sequential(nn.LayerNorm(hidden), nn.Linear(hidden, hidden), nn.Tanh(), nn.Linear(hidden, hidden))
        self.pick_query, self.pick_key = nn.Linear(width, width), nn.Linear(width, width)  # the layers' vectors
        self.key_query, self.key_key = nn.Linear(width, width), nn.Linear(width, width)  # the keys
        # The token embeddings too (the states entering the first layer), where a name is the very word it is
        self.inp_embeddings = nn.Linear(hidden, width) if read_embeddings else None

    @staticmethod
    def pick(query, key, soft, read, mask) -> torch.Tensor:
        """Each soft token's attention over the document's tokens, (B, T, S); zero for an empty text (the empty
        question the LM loss reads the bank with)."""
        scores = query(soft) @ key(read).transpose(1, 2) / soft.shape[-1] ** 0.5
        return scores.masked_fill(mask[:, None, :] == 0, float("-inf")).softmax(-1).nan_to_num(0.0)

    def encode(self, states: list[torch.Tensor], mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(soft tokens (B, T, width), text tokens (B, S, width)) after the encoder."""
        batch, length = mask.shape
        tokens = self.inp(states[-1]) + self.positions[:length]
        if self.inp_embeddings is not None:
            tokens = tokens + self.inp_embeddings(states[0])
        x = torch.cat([tokens, self.soft_tokens.expand(batch, -1, -1)], dim=1)
        ignore = torch.cat([mask == 0, mask.new_zeros(batch, self.soft_tokens.shape[0], dtype=torch.bool)], dim=1)
        x = self.norm(self.encoder(x, src_key_padding_mask=ignore))
        return x[:, length:], x[:, :length]

    def words_keys_see(self, mask: torch.Tensor) -> torch.Tensor:
        """The text's mask for the keys' attention: in training with `key_token_dropout`, each token hidden with
        that probability (a text that would lose every word keeps them all); otherwise the mask itself."""
        if not (self.training and self.key_token_dropout):
            return mask
        seen = mask * (torch.rand(mask.shape, device=mask.device) >= self.key_token_dropout)
        return torch.where(seen.sum(1, keepdim=True) > 0, seen, mask)

    def picks(self, states: list[torch.Tensor], mask: torch.Tensor) -> torch.Tensor:
        """Each soft token's weights over the text's tokens for the layers' vectors, (B, T, S)."""
        soft, read = self.encode(states, mask)
        return self.pick(self.pick_query, self.pick_key, soft, read, mask)

    def forward(self, states: list[torch.Tensor], mask: torch.Tensor) -> torch.Tensor:
        """states: the hidden states entering each layer, then the last layer's output, each (B, S, hidden);
        mask (B, S). Padding is never read."""
        soft, read = self.encode(states, mask)
        weights = self.pick(self.pick_query, self.pick_key, soft, read, mask)  # (B, T, S)
        key_weights = self.pick(self.key_query, self.key_key, soft, read, self.words_keys_see(mask))
        picked = key_weights @ read  # what each soft token picked, in the encoder's words
        if self.keys_read_every_word:  # and the text's mean, which every word reaches
            picked = picked + ((read * mask[..., None]).sum(1) / mask.sum(1, keepdim=True).clamp(min=1))[:, None]
        keys = self.out(soft + picked)
        keys = keys + self.mlp(keys)
        values = torch.stack([weights @ h for h in states[:-1]], dim=1)  # (B, L, T, hidden)
        return torch.cat([keys[:, None], values], dim=1)


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
    """The question's T keys read bank entries (B, n, 1 + L, T, hidden) -> one entry of the same form (B, 1 + L,
    T, hidden): blocks of cross-attention over the bank's keys refine the question's keys; then the refined
    question weighs each entry by the cosine of their mean keys (a softmax at a learned temperature), and the
    entries' per-layer vectors are mixed by those weights."""

    def __init__(self, hidden: int, heads: int, blocks: int, window: int):
        super().__init__()
        self.blocks = nn.ModuleList(AggregatorBlock(hidden, heads) for _ in range(blocks))
        self.norm = nn.LayerNorm(hidden)
        self.read_query, self.read_key = nn.Linear(hidden, hidden), nn.Linear(hidden, hidden)
        self.log_scale = nn.Parameter(torch.tensor(2.3))  # softmax temperature 1 / e^2.3 = 0.1 at first
        self.window = window
        self.calls = 0  # aggregations run (a test counts the hierarchy's)

    def once(self, question: torch.Tensor, entries: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        keys = entries[:, :, 0]  # (B, n, T, hidden)
        x = question
        for block in self.blocks:
            x = block(x, keys.flatten(1, 2))
        x = self.norm(x)
        q = F.normalize(self.read_query(x).mean(1), dim=-1)  # (B, hidden)
        k = F.normalize(self.read_key(keys).mean(2), dim=-1)  # (B, n, hidden)
        weights = (torch.einsum("bh,bnh->bn", q, k) * self.log_scale.exp()).softmax(-1)
        values = torch.einsum("bn,bnltd->bltd", weights, entries[:, :, 1:])
        return torch.cat([x[:, None], values], dim=1)

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
        self.matching = p.matching
        def new_compressor() -> Compressor:
            return Compressor(hidden, T, width, p.compressor_layers, p.compressor_heads, max_length,
                              p.soft_token_std, p.compressor_reads_embeddings, p.keys_read_every_word,
                              p.key_token_dropout)

        self.compressor = new_compressor()
        # MAC: the question has an encoder of its own; CMT's self-matching encodes it with the compressor
        self.question_encoder = None if p.self_matching else new_compressor()
        self.aggregator = Aggregator(hidden, p.aggregator_heads, p.aggregator_blocks, p.window)

    # ------------------------------------------------------------------------------ the parts

    def trained_state(self) -> dict:
        """Everything but the frozen LLM (what the cached build stores)."""
        return {k: v for k, v in self.state_dict().items() if not k.startswith("reader.model.")
                and not k.startswith("reader.decoder.") and not k.startswith("reader.layers.")}

    @property
    def device(self) -> torch.device:
        return self.reader.start.device

    def hidden_states(self, ids: torch.Tensor, mask: torch.Tensor) -> list[torch.Tensor]:
        """The frozen LLM's hidden states of the text entering each layer, then its last layer's (normed) output
        (no gradient: the LLM is frozen)."""
        with torch.no_grad():
            out = self.reader.decoder(input_ids=ids, attention_mask=mask, output_hidden_states=True)
        return [h.float() for h in out.hidden_states[: self.reader.num_layers]] + [out.last_hidden_state.float()]

    def compress(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Documents (B, S) -> their bank entries (B, 1 + layers, T, hidden)."""
        return self.compressor(self.hidden_states(ids, mask), mask)

    def encode_question(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Questions (B, S) -> their keys (B, T, hidden): by the compressor (self-matching) or the question
        encoder (MAC)."""
        encoder = self.compressor if self.question_encoder is None else self.question_encoder
        return encoder(self.hidden_states(ids, mask), mask)[:, 0]

    @staticmethod
    def summary(keys: torch.Tensor) -> torch.Tensor:
        """A unit vector per entry (its mean key): what `mean` matching compares."""
        return F.normalize(keys.mean(dim=-2), dim=-1)

    def match_scores(self, question: torch.Tensor, bank: torch.Tensor) -> torch.Tensor:
        """How well each question's keys (B, T, h) match each bank entry, (n, 1 + L, T, h) or (B, n, 1 + L, T, h):
        (B, n). `mean` matching: the cosine of their mean keys. `late`: each question key's best cosine among the
        entry's keys, averaged over the question's keys, so that one key holding a name can match on its own."""
        if self.matching == "mean":
            q = self.summary(question)
            e = self.summary(bank[..., 0, :, :])
            return q @ e.T if e.dim() == 2 else torch.einsum("bh,bnh->bn", q, e)
        q = F.normalize(question, dim=-1)
        e = F.normalize(bank[..., 0, :, :], dim=-1)
        pairs = torch.einsum("bth,nsh->bnts", q, e) if e.dim() == 3 else torch.einsum("bth,bnsh->bnts", q, e)
        return pairs.amax(-1).mean(-1)

    def select(self, question: torch.Tensor, bank: torch.Tensor) -> torch.Tensor:
        """The entries each question reads, (B, n', 1 + L, T, h): the k best-matching in bank order (top-k
        aggregation), or the whole bank."""
        entries = bank.expand(question.shape[0], *bank.shape) if bank.dim() == 4 else bank
        if not self.top_k_aggregation or entries.shape[1] <= self.top_k:
            return entries
        best = self.match_scores(question, bank).topk(self.top_k, dim=-1).indices.sort(dim=-1).values
        return entries.gather(1, best[:, :, None, None, None].expand(-1, -1, *entries.shape[2:]))

    @staticmethod
    def to_layers(entry: torch.Tensor) -> torch.Tensor:
        """An entry (B, 1 + L, T, hidden) -> the memory per layer the frozen LLM reads, (layers, B, T, hidden)."""
        return entry[:, 1:].transpose(0, 1)

    def memory_for(self, question: torch.Tensor, bank: torch.Tensor | None) -> torch.Tensor | None:
        """The prefix memory for encoded questions (B, T, h) reading `bank` (n, 1 + L, T, h); None for an empty
        bank."""
        if bank is None or bank.shape[0] == 0:
            return None
        return self.to_layers(self.aggregator(question, self.select(question, bank)))

    def read(self, memory, input_ids, attention_mask, labels=None):
        return self.reader.read(memory, input_ids, attention_mask, labels=labels)

