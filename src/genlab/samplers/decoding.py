"""Token decoding for autoregressive models: temperature, top-k, nucleus (top-p), repetition penalty, stop
conditions, batched and streamed.

The decoder knows nothing of the network: it drives any object with ``prefill(ids) -> logits`` and
``step(ids) -> logits`` (next-token logits ``(B, V)``), e.g. a KV-cached transformer or one recomputing the whole
context each step.

References:
    Holtzman et al., "The Curious Case of Neural Text Degeneration", 2020, arXiv:1904.09751 (nucleus sampling).
    Fan et al., "Hierarchical Neural Story Generation", 2018, arXiv:1805.04833 (top-k sampling).
    Keskar et al., "CTRL", 2019, arXiv:1909.05858 (repetition penalty).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Protocol

import torch
from torch import Tensor

from genlab.config import check


@dataclass(frozen=True)
class DecodingOptions:
    """Sampling-time options of token models (``genlab sample RUN --prompt … --max-tokens …``).

    Arguments:
        prompt: text every sample continues ("" starts from the start token).
        max_tokens: tokens to generate per sample (None = the model's block size).
        temperature: divide logits by this; 0 = greedy (argmax).
        top_k: keep only the k most likely tokens (0 = off).
        top_p: keep the smallest set of most likely tokens whose probability reaches p (1 = off).
        repetition_penalty: CTRL penalty > 1 discourages tokens already in the sequence (1 = off).
        stop: strings that end a sample (the text is cut before them).
        kv_cache: decode incrementally with a key/value cache (False recomputes the full context each step).
        watermark: a secret key: embed the green-list watermark of that key (:mod:`genlab.audit.watermark`).
        watermark_delta: logit bias δ of the watermark's green tokens.
    """

    prompt: str = ""
    max_tokens: int | None = None
    temperature: float = 1.0
    top_k: int = 0
    top_p: float = 1.0
    repetition_penalty: float = 1.0
    stop: tuple[str, ...] = ()
    kv_cache: bool = True
    watermark: str | None = None
    watermark_delta: float = 2.0

    def __post_init__(self) -> None:
        check(self.max_tokens is None or self.max_tokens > 0, "--max-tokens must be positive")
        check(self.temperature >= 0, "--temperature must be >= 0 (0 = greedy)")
        check(self.top_k >= 0, "--top-k must be >= 0 (0 = off)")
        check(0 < self.top_p <= 1, "--top-p must be in (0, 1]")
        check(self.repetition_penalty > 0, "--repetition-penalty must be positive (1 = off)")
        check(self.watermark is None or bool(self.watermark.strip()), "--watermark must be a non-empty key")
        check(0 <= self.watermark_delta < float("inf"), "--watermark-delta must be a finite number >= 0")


#: ``(history (B, L), logits (B, V)) -> logits``: changes next-token logits before the draw (e.g. a watermark)
LogitsProcessor = Callable[[Tensor, Tensor], Tensor]


def watermark_processor(key: str | None, vocab: int, delta: float) -> LogitsProcessor | None:
    """The green-list logit processor of ``key`` over ``vocab`` tokens (None without a key), for every token
    family's ``--watermark`` (:class:`genlab.audit.watermark.GreenList`; Kirchenbauer et al., 2023,
    arXiv:2301.10226)."""
    if not key:
        return None
    from genlab.audit.watermark import GreenList

    return GreenList(key, vocab, delta=delta)


class Decoder(Protocol):
    """What :func:`generate` drives: next-token logits after a prompt, then after each new token."""

    def prefill(self, ids: Tensor) -> Tensor:
        """Condition on ``ids (B, P)``; next-token logits ``(B, V)``."""
        ...

    def step(self, ids: Tensor) -> Tensor:
        """Append ``ids (B, k)``; next-token logits ``(B, V)``."""
        ...


def top_k_filter(logits: Tensor, k: int) -> Tensor:
    """Set every logit below the k-th largest of its row to -inf (``k = 0`` keeps all).

    References:
        Fan et al., "Hierarchical Neural Story Generation", 2018, arXiv:1805.04833.
    """
    if k <= 0 or k >= logits.shape[-1]:
        return logits
    kth = torch.topk(logits, k, dim=-1).values[..., -1:]  # (B, 1)
    return logits.masked_fill(logits < kth, float("-inf"))


def top_p_filter(logits: Tensor, p: float) -> Tensor:
    """Nucleus filter: keep the smallest set of most likely tokens with total probability ≥ ``p``.

    References:
        Holtzman et al., "The Curious Case of Neural Text Degeneration", 2020, arXiv:1904.09751.
    """
    if p >= 1.0:
        return logits
    sorted_logits, order = torch.sort(logits, dim=-1, descending=True)
    probs = sorted_logits.softmax(-1)
    # drop token i when the mass of the tokens before it already reaches p (the top token is always kept)
    drop = (probs.cumsum(-1) - probs) >= p
    drop_orig = torch.zeros_like(drop).scatter(-1, order, drop)
    return logits.masked_fill(drop_orig, float("-inf"))


def repetition_penalty(logits: Tensor, history: Tensor, penalty: float) -> Tensor:
    """CTRL repetition penalty: logits of tokens in ``history (B, L)`` are divided by ``penalty`` when positive and
    multiplied by it when negative.

    References:
        Keskar et al., "CTRL", 2019, arXiv:1909.05858.
    """
    if penalty == 1.0 or history.numel() == 0:
        return logits
    seen = logits.gather(-1, history)
    seen = torch.where(seen > 0, seen / penalty, seen * penalty)
    return logits.scatter(-1, history, seen)


def next_token(logits: Tensor, temperature: float = 1.0, top_k: int = 0, top_p: float = 1.0,
               generator: torch.Generator | None = None) -> Tensor:
    """Draw one token per row of ``logits (B, V)`` → ``(B,)`` int64 (argmax when ``temperature == 0``)."""
    logits = logits.float()
    if temperature == 0:
        return logits.argmax(-1)
    logits = top_p_filter(top_k_filter(logits / temperature, top_k), top_p)
    probs = logits.softmax(-1)
    gen_device = generator.device if generator is not None else probs.device
    return torch.multinomial(probs.to(gen_device), 1, generator=generator).squeeze(-1).to(logits.device)


def generate(decoder: Decoder, prompt: Tensor, max_tokens: int, *, temperature: float = 1.0, top_k: int = 0,
             top_p: float = 1.0, penalty: float = 1.0, generator: torch.Generator | None = None,
             finished: Callable[[Tensor], Tensor] | None = None,
             processor: LogitsProcessor | None = None) -> Iterator[Tensor]:
    """Stream ``max_tokens`` new tokens for a batch of prompts, one ``(B,)`` tensor per step.

    Arguments:
        decoder: the model's decoding state (:class:`Decoder`).
        prompt: ``(B, P)`` token ids the model is conditioned on (``P ≥ 1``; e.g. the start token).
        max_tokens: maximum tokens to generate.
        temperature, top_k, top_p: see :class:`DecodingOptions`.
        penalty: repetition penalty over prompt and generated tokens.
        generator: random generator for reproducible draws.
        finished: ``fn(history (B, L)) -> (B,)`` bool; generation stops once every row is finished.
        processor: applied to the logits after the repetition penalty, before temperature and filtering.
    """
    logits = decoder.prefill(prompt)
    history = prompt
    for i in range(max_tokens):
        logits = repetition_penalty(logits, history, penalty)
        if processor is not None:
            logits = processor(history, logits)
        tok = next_token(logits, temperature, top_k, top_p, generator)
        yield tok
        history = torch.cat([history, tok[:, None]], dim=1)
        if i == max_tokens - 1 or (finished is not None and bool(finished(history).all())):
            return
        logits = decoder.step(tok[:, None])
