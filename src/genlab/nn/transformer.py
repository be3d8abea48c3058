"""Decoder-only transformer backbone: pre-LayerNorm blocks, causal fused attention, learned or rotary positions,
tied embeddings, LoRA-capable linear layers and a key/value cache for incremental decoding.

Module names follow GPT-2 (``wte``, ``wpe``, ``h.{i}.attn.c_attn``, ``mlp.c_fc``, ``ln_f``) so GPT-2 weights map
onto it by name (with the usual transpose of GPT-2's ``Conv1D`` weights).

References:
    Radford et al., "Language Models are Unsupervised Multitask Learners" (GPT-2), 2019.
    Su et al., "RoFormer: Enhanced Transformer with Rotary Position Embedding", 2021, arXiv:2104.09864.
    Hu et al., "LoRA: Low-Rank Adaptation of Large Language Models", 2021, arXiv:2106.09685.
    Dao et al., "FlashAttention", 2022, arXiv:2205.14135 (the fused kernel behind ``scaled_dot_product_attention``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class LoRALinear(nn.Linear):
    """``nn.Linear`` with an optional low-rank adapter: ``y = x Wᵀ + b + (α / r) · x Aᵀ Bᵀ``.

    With rank 0 (the default) it is exactly ``nn.Linear`` and has no extra parameters. ``B`` starts at zero so an
    adapter initially leaves the layer unchanged; :meth:`merge` folds ``(α / r) · B A`` into ``W`` once.

    References:
        Hu et al., "LoRA: Low-Rank Adaptation of Large Language Models", 2021, arXiv:2106.09685.
    """

    lora_merged: Tensor  # buffer registered by ``add_lora``

    def __init__(self, in_features: int, out_features: int, bias: bool = True) -> None:
        super().__init__(in_features, out_features, bias=bias)
        self.lora_rank = 0
        self.lora_scale = 0.0

    def add_lora(self, rank: int, alpha: float) -> None:
        """Attach a rank-``rank`` adapter with scale ``alpha / rank`` (A: Kaiming-uniform, B: zeros)."""
        self.lora_rank, self.lora_scale = rank, alpha / rank
        self.register_buffer("lora_merged", torch.zeros((), dtype=torch.bool, device=self.weight.device))
        self.lora_A = nn.Parameter(torch.empty(rank, self.in_features, device=self.weight.device))
        self.lora_B = nn.Parameter(torch.zeros(self.out_features, rank, device=self.weight.device))
        nn.init.kaiming_uniform_(self.lora_A, a=math.sqrt(5))

    @torch.no_grad()
    def merge(self) -> None:
        """Fold the adapter into the weight: ``W ← W + (α / r) · B A``; later calls do nothing."""
        if self.lora_rank and not self.lora_merged:
            self.weight += self.lora_scale * (self.lora_B @ self.lora_A)
            self.lora_merged.fill_(True)

    def forward(self, x: Tensor) -> Tensor:
        y = F.linear(x, self.weight, self.bias)
        if self.lora_rank and not self.lora_merged:
            y = y + self.lora_scale * F.linear(F.linear(x, self.lora_A), self.lora_B)
        return y


def rotary_tables(positions: int, head_dim: int, base: float = 10000.0) -> tuple[Tensor, Tensor]:
    """Cosine and sine tables ``(positions, head_dim / 2)`` of rotary embeddings, ``θ_i = base^(-2i / d)``.

    References:
        Su et al., "RoFormer", 2021, arXiv:2104.09864.
    """
    inv = base ** (-torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim)
    ang = torch.outer(torch.arange(positions, dtype=torch.float32), inv)  # (P, hs/2)
    return ang.cos(), ang.sin()


def apply_rotary(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    """Rotate pairs ``(x_i, x_{i+d/2})`` of ``x (B, nh, T, hs)`` by the angles in ``cos``/``sin`` ``(T, hs/2)``."""
    x1, x2 = x.float().chunk(2, dim=-1)
    # (x1, x2) -> (x1 cos - x2 sin, x1 sin + x2 cos)
    return torch.cat([x1 * cos - x2 * sin, x1 * sin + x2 * cos], dim=-1).to(x.dtype)


@dataclass
class KVCache:
    """Pre-allocated keys and values of every layer, ``(L, B, nh, max_len, hs)`` each, filled up to ``length``."""

    k: Tensor
    v: Tensor
    length: int = 0

    @classmethod
    def empty(cls, n_layer: int, batch: int, n_head: int, max_len: int, head_dim: int, device: torch.device,
              dtype: torch.dtype) -> KVCache:
        """An empty (uninitialised) cache of ``max_len`` positions."""
        shape = (n_layer, batch, n_head, max_len, head_dim)
        return cls(torch.empty(shape, device=device, dtype=dtype), torch.empty(shape, device=device, dtype=dtype))

    @property
    def capacity(self) -> int:
        """Positions the cache can hold."""
        return self.k.shape[3]


@dataclass
class RowCache:
    """Keys and values of up to ``slots`` independent sequences, each at its own length, for iteration-level
    batching (a sequence joins or leaves the running batch between two decoding steps).

    ``k``/``v`` are ``(L, slots, nh, max_len, hs)``; rows ``0 … live - 1`` are in use, row ``i`` holding
    ``lengths[i]`` positions. A row leaving is replaced by the last live row, so live rows stay contiguous and a
    step reads a view of the first ``live`` rows.

    References:
        Yu et al., "Orca: A Distributed Serving System for Transformer-Based Generative Models", OSDI 2022
        (iteration-level scheduling).
    """

    k: Tensor
    v: Tensor
    lengths: Tensor  # (slots,) int64
    live: int = 0
    mask: Tensor | None = None  # the current step's keys per row, (live, 1, 1, S) bool: set once per step

    @property
    def slots(self) -> int:
        """Sequences the cache can hold."""
        return self.k.shape[1]

    @property
    def capacity(self) -> int:
        """Positions each sequence can hold."""
        return self.k.shape[3]

    def add(self, prefix: KVCache) -> int:
        """Copy the one cached sequence of ``prefix`` (batch 1) into a new row → its index.

        Raises:
            ValueError: when every slot is taken.
        """
        if self.live >= self.slots:
            raise ValueError(f"all {self.slots} rows of the cache are in use")
        i, n = self.live, prefix.length
        self.k[:, i, :, :n] = prefix.k[:, 0, :, :n]
        self.v[:, i, :, :n] = prefix.v[:, 0, :, :n]
        self.lengths[i] = n
        self.live += 1
        return i

    def remove(self, i: int) -> int:
        """Free row ``i``; the last live row moves into it. → the index of the row that moved (``i`` itself when
        it was the last)."""
        last = self.live - 1
        if i != last:
            n = int(self.lengths[last])
            self.k[:, i, :, :n] = self.k[:, last, :, :n]
            self.v[:, i, :, :n] = self.v[:, last, :, :n]
            self.lengths[i] = n
        self.live = last
        return last


def causal_mask(t: int, s: int, device: torch.device) -> Tensor:
    """``(T, S)`` boolean mask for ``t`` queries that are the last ``t`` of ``s`` positions: query i sees keys
    ``j <= s - t + i``."""
    return torch.ones(t, s, dtype=torch.bool, device=device).tril(diagonal=s - t)


def causal_attention_math(q: Tensor, k: Tensor, v: Tensor, dropout_p: float = 0.0) -> Tensor:
    """Causal ``softmax(q kᵀ / √d) v`` written out (the same values as ``scaled_dot_product_attention``).

    Used for training on CPU: there the fused flash kernel's backward pass is several times slower than these
    plain batched matmuls for short contexts, and ``torch.compile`` fuses the mask, scale and softmax.
    """
    t, s = q.shape[-2], k.shape[-2]
    att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(q.shape[-1]))  # (B, nh, T, S)
    att = att.masked_fill(~causal_mask(t, s, q.device), float("-inf")).softmax(dim=-1)
    if dropout_p > 0:
        att = F.dropout(att, dropout_p)
    return att @ v  # (B, nh, T, hs)


class CausalSelfAttention(nn.Module):
    """Multi-head causal self-attention: ``F.scaled_dot_product_attention`` (flash/fused kernels) for inference,
    cached decoding and GPU training; :func:`causal_attention_math` for training on CPU."""

    def __init__(self, n_embd: int, n_head: int, dropout: float, bias: bool) -> None:
        super().__init__()
        self.n_head, self.dropout = n_head, dropout
        self.c_attn = LoRALinear(n_embd, 3 * n_embd, bias=bias)
        self.c_proj = LoRALinear(n_embd, n_embd, bias=bias)
        self.resid_dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor, rope: tuple[Tensor, Tensor] | None = None,
                cache: KVCache | RowCache | None = None, layer: int = 0) -> Tensor:
        b, t, c = x.shape
        q, k, v = self.c_attn(x).split(c, dim=2)
        q, k, v = (z.view(b, t, self.n_head, c // self.n_head).transpose(1, 2) for z in (q, k, v))  # (B, nh, T, hs)
        if rope is not None:
            q, k = apply_rotary(q, *rope), apply_rotary(k, *rope)
        if isinstance(cache, RowCache):  # one new token per live row, each at its own position
            y = self._row_step(q, k, v, cache, layer)
            return self.resid_dropout(self.c_proj(y.transpose(1, 2).reshape(b, t, c)))
        start = 0
        if cache is not None:
            start = cache.length
            cache.k[layer, :, :, start : start + t] = k
            cache.v[layer, :, :, start : start + t] = v
            k, v = cache.k[layer, :, :, : start + t], cache.v[layer, :, :, : start + t]  # (B, nh, S+T, hs)
        p = self.dropout if self.training else 0.0
        if start == 0 and x.device.type == "cpu" and torch.is_grad_enabled():
            y = causal_attention_math(q, k, v, p)
        elif start == 0:
            y = F.scaled_dot_product_attention(q, k, v, dropout_p=p, is_causal=True)
        elif t == 1:  # one new token sees every cached one
            y = F.scaled_dot_product_attention(q, k, v, dropout_p=p)
        else:  # new token i (absolute position start + i) sees keys j <= start + i
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=causal_mask(t, start + t, x.device), dropout_p=p)
        y = y.transpose(1, 2).contiguous().view(b, t, c)  # (B, T, C)
        return self.resid_dropout(self.c_proj(y))

    @staticmethod
    def _row_step(q: Tensor, k: Tensor, v: Tensor, cache: RowCache, layer: int) -> Tensor:
        """Attention of one new token per row ``q, k, v (m, nh, 1, hs)``; row ``i`` writes its key at
        ``lengths[i]`` and sees keys ``j ≤ lengths[i]`` → ``(m, nh, 1, hs)``."""
        m, mask = q.shape[0], cache.mask
        assert mask is not None, "TransformerLM.step_rows sets the step's mask"
        pos, s = cache.lengths[:m], mask.shape[-1]
        rows = torch.arange(m, device=q.device)
        cache.k[layer][rows, :, pos] = k[:, :, 0]  # (m, nh, hs) at each row's own position
        cache.v[layer][rows, :, pos] = v[:, :, 0]
        return F.scaled_dot_product_attention(q, cache.k[layer, :m, :, :s], cache.v[layer, :m, :, :s], attn_mask=mask)


class MLP(nn.Module):
    """Position-wise feed-forward block ``c_proj(GELU(c_fc(x)))`` with width ``4 · n_embd`` (GPT-2's tanh GELU)."""

    def __init__(self, n_embd: int, dropout: float, bias: bool) -> None:
        super().__init__()
        self.c_fc = LoRALinear(n_embd, 4 * n_embd, bias=bias)
        self.c_proj = LoRALinear(4 * n_embd, n_embd, bias=bias)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:
        return self.dropout(self.c_proj(F.gelu(self.c_fc(x), approximate="tanh")))


class Block(nn.Module):
    """Pre-LayerNorm transformer block: ``x + attn(ln_1(x))`` then ``x + mlp(ln_2(x))``."""

    def __init__(self, n_embd: int, n_head: int, dropout: float, bias: bool) -> None:
        super().__init__()
        self.ln_1 = nn.LayerNorm(n_embd, bias=bias)
        self.attn = CausalSelfAttention(n_embd, n_head, dropout, bias)
        self.ln_2 = nn.LayerNorm(n_embd, bias=bias)
        self.mlp = MLP(n_embd, dropout, bias)

    def forward(self, x: Tensor, rope: tuple[Tensor, Tensor] | None = None,
                cache: KVCache | RowCache | None = None, layer: int = 0) -> Tensor:
        x = x + self.attn(self.ln_1(x), rope, cache, layer)
        return x + self.mlp(self.ln_2(x))


class TransformerLM(nn.Module):
    """Decoder-only language model: token (+ learned position) embeddings, ``n_layer`` pre-LN blocks, final
    LayerNorm and a linear head (tied to the token embedding when ``tie_weights``).

    Arguments:
        vocab_size: number of token ids.
        block_size: longest context (positions) the model handles.
        n_layer: number of blocks.
        n_head: attention heads per block.
        n_embd: model width (divisible by ``n_head``).
        dropout: dropout on embeddings, attention weights and residual branches.
        bias: biases in linear layers and LayerNorms (GPT-2 has them).
        positions: ``learned`` absolute embeddings (GPT-2) or ``rotary`` (RoPE, arXiv:2104.09864).
        tie_weights: share the token embedding with the output head.

    References:
        Radford et al., "Language Models are Unsupervised Multitask Learners" (GPT-2), 2019.
    """

    rope_cos: Tensor  # buffers of rotary positions
    rope_sin: Tensor

    def __init__(self, vocab_size: int, block_size: int, n_layer: int, n_head: int, n_embd: int,
                 dropout: float = 0.0, bias: bool = True, positions: str = "learned", tie_weights: bool = True) -> None:
        super().__init__()
        if n_embd % n_head:
            raise ValueError(f"n_embd {n_embd} is not divisible by n_head {n_head}")
        self.vocab_size, self.block_size, self.n_layer, self.n_head = vocab_size, block_size, n_layer, n_head
        self.head_dim = n_embd // n_head
        self.wte = nn.Embedding(vocab_size, n_embd)
        self.wpe = nn.Embedding(block_size, n_embd) if positions == "learned" else None
        if positions == "rotary":
            cos, sin = rotary_tables(block_size, self.head_dim)
            self.register_buffer("rope_cos", cos, persistent=False)
            self.register_buffer("rope_sin", sin, persistent=False)
        self.drop = nn.Dropout(dropout)
        self.h = nn.ModuleList(Block(n_embd, n_head, dropout, bias) for _ in range(n_layer))
        self.ln_f = nn.LayerNorm(n_embd, bias=bias)
        self.lm_head = nn.Linear(n_embd, vocab_size, bias=False)
        if tie_weights:
            self.lm_head.weight = self.wte.weight
        self.apply(self._init)
        for name, p in self.named_parameters():  # GPT-2: residual projections scaled by 1/sqrt(2 · n_layer)
            if name.endswith("c_proj.weight"):
                nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * n_layer))

    @staticmethod
    def _init(m: nn.Module) -> None:
        if isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, mean=0.0, std=0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Embedding):
            nn.init.normal_(m.weight, mean=0.0, std=0.02)

    def new_cache(self, batch: int, max_len: int | None = None, dtype: torch.dtype | None = None) -> KVCache:
        """An empty :class:`KVCache` for ``batch`` sequences of up to ``max_len`` (default ``block_size``) tokens."""
        p = self.wte.weight
        return KVCache.empty(self.n_layer, batch, self.n_head, max_len or self.block_size, self.head_dim, p.device,
                             dtype or p.dtype)

    def new_row_cache(self, slots: int, max_len: int | None = None) -> RowCache:
        """An empty :class:`RowCache` for up to ``slots`` sequences of up to ``max_len`` (default ``block_size``)
        tokens each. Zeroed, not uninitialised: a step reads every row up to the longest one, and a masked key
        whose uninitialised value is NaN would still give NaN (0 · NaN) in the attention output."""
        c = self.new_cache(slots, max_len)
        c.k.zero_()
        c.v.zero_()
        return RowCache(c.k, c.v, torch.zeros(slots, dtype=torch.long, device=c.k.device))

    def step_rows(self, idx: Tensor, cache: RowCache) -> Tensor:
        """Next-token logits ``(m, vocab)`` after appending one token ``idx (m,)`` to each of the ``m`` live rows
        of ``cache`` (row ``i`` at its own position ``cache.lengths[i]``); the rows grow by one.

        Raises:
            ValueError: when ``m`` is not the number of live rows, or a row would pass the block size.
        """
        m = idx.shape[0]
        if m != cache.live:
            raise ValueError(f"{m} tokens for {cache.live} live rows")
        pos = cache.lengths[:m]
        span = int(pos.max()) + 1  # keys the longest row sees after this step
        if span > min(self.block_size, cache.capacity):
            raise ValueError(f"a row of {span} tokens is longer than the block size {self.block_size}")
        cache.mask = (torch.arange(span, device=idx.device) <= pos[:, None])[:, None, None, :]  # (m, 1, 1, S)
        x = self.wte(idx[:, None])  # (m, 1, C)
        rope = None
        if self.wpe is not None:
            x = x + self.wpe(pos)[:, None]
        else:
            rope = (self.rope_cos[pos][:, None, None], self.rope_sin[pos][:, None, None])  # (m, 1, 1, hs/2)
        x = self.drop(x)
        for i, block in enumerate(self.h):
            x = block(x, rope, cache, i)
        cache.lengths[:m] += 1
        return self.lm_head(self.ln_f(x))[:, 0]  # (m, vocab)

    def forward(self, idx: Tensor, cache: KVCache | None = None, last_only: bool = False) -> Tensor:
        """Next-token logits ``(B, T, vocab)`` (``(B, 1, vocab)`` with ``last_only``) for token ids ``idx (B, T)``.

        With a ``cache`` the tokens continue the cached sequence at positions ``cache.length …`` and the cache is
        extended by them.
        """
        _b, t = idx.shape
        start = cache.length if cache is not None else 0
        if start + t > self.block_size:
            raise ValueError(f"sequence of {start + t} tokens is longer than the block size {self.block_size}")
        x = self.wte(idx)  # (B, T, C)
        rope = None
        if self.wpe is not None:
            x = x + self.wpe(torch.arange(start, start + t, device=idx.device))
        else:
            rope = (self.rope_cos[start : start + t], self.rope_sin[start : start + t])
        x = self.drop(x)
        for i, block in enumerate(self.h):
            x = block(x, rope, cache, i)
        if cache is not None:
            cache.length = start + t
        if last_only:
            x = x[:, -1:]
        return self.lm_head(self.ln_f(x))  # (B, T, vocab)

    def lora_layers(self) -> list[LoRALinear]:
        """Every adapter-capable linear layer (attention and MLP projections)."""
        return [m for m in self.modules() if isinstance(m, LoRALinear)]
