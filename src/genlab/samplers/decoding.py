"""Token decoding for autoregressive models: temperature, top-k, nucleus (top-p), repetition penalty, stop
conditions, batched and streamed.

The decoder knows nothing of the network: it drives any object with ``prefill(ids) -> logits`` and
``step(ids) -> logits`` (next-token logits ``(B, V)``), e.g. a KV-cached transformer or one recomputing the whole
context each step.

References:
    Holtzman et al., "The Curious Case of Neural Text Degeneration", 2020, arXiv:1904.09751 (nucleus sampling).
    Fan et al., "Hierarchical Neural Story Generation", 2018, arXiv:1805.04833 (top-k sampling).
    Keskar et al., "CTRL", 2019, arXiv:1909.05858 (repetition penalty).
    Sanchez et al., "Stay on Topic with Classifier-Free Guidance", 2023, arXiv:2306.17806 (guidance of a prompt).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any, Protocol

import torch
from torch import Tensor

from genlab.config import ConfigError, check


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
        guidance: classifier-free guidance scale γ of the prompt (:class:`GuidedDecoder`): 1 = off, > 1 follows
            the prompt more closely (e.g. a molecule's property prefix), 0 ignores it.
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
    guidance: float = 1.0

    def __post_init__(self) -> None:
        check(self.max_tokens is None or self.max_tokens > 0, "--max-tokens must be positive")
        check(self.temperature >= 0, "--temperature must be >= 0 (0 = greedy)")
        check(self.top_k >= 0, "--top-k must be >= 0 (0 = off)")
        check(0 < self.top_p <= 1, "--top-p must be in (0, 1]")
        check(self.repetition_penalty > 0, "--repetition-penalty must be positive (1 = off)")
        check(self.watermark is None or bool(self.watermark.strip()), "--watermark must be a non-empty key")
        check(0 <= self.watermark_delta < float("inf"), "--watermark-delta must be a finite number >= 0")
        check(0 <= self.guidance < float("inf"), "--guidance must be a finite number >= 0 (1 = off)")


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


class GuidedDecoder:
    """Classifier-free guidance of a prompted decoder: next-token log-probabilities
    ``log p̂(x) = log p(x | ∅) + γ (log p(x | prompt) − log p(x | ∅))``, where ``∅`` is the start token alone.

    Two decoders of the same network read the same new tokens: ``cond`` after the whole context, ``uncond`` after
    its first (start) token only. A model trained with its prompts dropped at random (e.g. ``--property-dropout``)
    knows both distributions. Tokens impossible under the prompt stay impossible; a token impossible without the
    prompt but possible with it keeps its prompted log-probability.

    References:
        Sanchez et al., "Stay on Topic with Classifier-Free Guidance", 2023, arXiv:2306.17806.
        Ho & Salimans, "Classifier-Free Diffusion Guidance", 2022, arXiv:2207.12598.
    """

    def __init__(self, cond: Decoder, uncond: Decoder, scale: float) -> None:
        self.cond, self.uncond, self.scale = cond, uncond, scale

    def _mix(self, cond: Tensor, uncond: Tensor) -> Tensor:
        lc, lu = cond.float().log_softmax(-1), uncond.float().log_softmax(-1)  # (B, V)
        lu = torch.where(torch.isfinite(lu), lu, lc)
        return torch.where(torch.isfinite(lc), lu + self.scale * (lc - lu), lc)

    def prefill(self, ids: Tensor) -> Tensor:
        """Condition ``cond`` on ``ids (B, P)`` and ``uncond`` on ``ids[:, :1]``; guided logits ``(B, V)``."""
        return self._mix(self.cond.prefill(ids), self.uncond.prefill(ids[:, :1]))

    def step(self, ids: Tensor) -> Tensor:
        """Append ``ids (B, k)`` to both; guided logits ``(B, V)``."""
        return self._mix(self.cond.step(ids), self.uncond.step(ids))


def guide(decoder: Decoder, unconditional: Callable[[], Decoder], ctx: Tensor, scale: float) -> Decoder:
    """``decoder`` at ``scale == 1``; otherwise :class:`GuidedDecoder` against ``unconditional()`` (a fresh
    decoder of the same network) for contexts ``ctx (B, P)`` of a start token and a prompt.

    Raises:
        ConfigError: for guidance without a prompt (``P == 1``).
    """
    if scale == 1.0:
        return decoder
    if ctx.shape[1] < 2:
        raise ConfigError("--guidance needs a prompt to follow: give --prompt, or --condition for a run trained "
                          "with --properties")
    return GuidedDecoder(decoder, unconditional(), scale)


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


def stop_condition(stop: tuple[str, ...], start: int,
                   text: Callable[[list[int]], str]) -> Callable[[Tensor], Tensor] | None:
    """``finished(history (B, L)) -> (B,)``: whether the text generated after position ``start`` holds one of the
    ``stop`` strings (None without any)."""
    if not stop:
        return None

    def finished(history: Tensor) -> Tensor:
        return torch.tensor([any(s in text(row) for s in stop) for row in history[:, start:].tolist()])

    return finished


def rows_can_join(o: DecodingOptions) -> bool:
    """Whether samples of options ``o`` can be decoded by iteration-level batching (rows joining a running batch
    at its next step): KV-cached, and without guidance, watermark or repetition penalty, which read a whole batch's
    history rather than one row's."""
    return o.kv_cache and o.guidance == 1.0 and not o.watermark and o.repetition_penalty == 1.0


def decode_stream(new_decoder: Callable[[], Decoder], ctx: Tensor, o: DecodingOptions, *, vocab: int,
                  text: Callable[[list[int]], str], default_tokens: int, generator: torch.Generator | None = None,
                  wrap: Callable[[Decoder], Decoder] | None = None) -> Iterator[Tensor]:
    """A token family's stream: ``(B,)`` new token ids per step after contexts ``ctx (B, P)`` (the start token and
    the prompt), with every option of ``o`` (guidance, watermark, stop strings, filters).

    Arguments:
        new_decoder: a fresh decoding state of the network (two are made for guidance).
        ctx: start token and prompt ids.
        o: the decoding options.
        vocab: vocabulary size (for the watermark's green list).
        text: token ids → text (for stop strings).
        default_tokens: tokens to generate when ``o.max_tokens`` is None.
        generator: random generator of the draws.
        wrap: applied to the (guided) decoder, e.g. a mask of the ids each position may take.
    """
    dec = guide(new_decoder(), new_decoder, ctx, o.guidance)
    if wrap is not None:
        dec = wrap(dec)
    with torch.no_grad():
        yield from generate(dec, ctx, o.max_tokens or default_tokens, temperature=o.temperature, top_k=o.top_k,
                            top_p=o.top_p, penalty=o.repetition_penalty, generator=generator,
                            finished=stop_condition(o.stop, ctx.shape[1], text),
                            processor=watermark_processor(o.watermark, vocab, o.watermark_delta))


def collect_rows(tokens: Iterable[Tensor], n: int, steps: int, head: list[int], pad: int,
                 device: torch.device | str = "cpu") -> Tensor:
    """``(n, len(head) + steps)`` int64: the prompt ids ``head``, then the streamed tokens, padded with ``pad``
    after a stream that stopped early."""
    toks = list(tokens)
    out = torch.full((n, steps), pad, dtype=torch.long, device=device)
    if toks:
        out[:, : len(toks)] = torch.stack(toks, dim=1)
    return torch.cat([torch.tensor(head, dtype=torch.long, device=device).view(1, -1).expand(n, -1), out], dim=1)


class _TokenFamily(Protocol):
    """What :class:`PromptedTokens` needs of a family (a :class:`genlab.core.GenerativeModel`)."""

    spec: Any
    config: Any

    @property
    def device(self) -> torch.device: ...

    @property
    def tokenizer(self) -> Any: ...

    def decoder(self, batch: int, kv_cache: bool = True) -> Any: ...

    def check_cond(self, n: int, cond: Tensor | None, generator: torch.Generator | None) -> Tensor | None: ...

    def _prompt_ids(self, prompt: str) -> list[int]: ...

    def context_ids(self, prompt: str) -> list[int]: ...

    def _wrap(self, start: int) -> Callable[[Decoder], Decoder] | None: ...

    def stream(self, n: int, *, generator: torch.Generator | None = None, **options: Any) -> Iterator[Tensor]: ...


class PromptedTokens:
    """``stream`` and ``sample`` of an autoregressive token family (``gpt``, ``rnn``): the start token and the
    prompt, then :func:`decode_stream` with every :class:`DecodingOptions` option. A family mixes it in before
    :class:`genlab.core.GenerativeModel` and gives ``decoder(n, kv_cache)``, ``tokenizer`` and, to mask the ids each
    position may take, :meth:`_wrap`."""

    def _wrap(self, start: int) -> Callable[[Decoder], Decoder] | None:
        """A wrapper of the decoder whose first generated token has position ``start`` (None: no wrapper)."""
        return None

    def _prompt_ids(self: _TokenFamily, prompt: str) -> list[int]:
        return self.tokenizer.encode(prompt, strict=True).tolist() if prompt else []

    def context_ids(self: _TokenFamily, prompt: str) -> list[int]:
        """The ids every sample of ``prompt`` continues: the start token, then the prompt's tokens."""
        return [self.config.bos_id, *self._prompt_ids(prompt)]

    def stream(self: _TokenFamily, n: int, *, generator: torch.Generator | None = None,
               **options: Any) -> Iterator[Tensor]:
        """Stream ``(n,)`` new token ids per step after the prompt (``options``: :class:`DecodingOptions`)."""
        o = DecodingOptions(**options)
        ctx = torch.tensor([self.context_ids(o.prompt)], device=self.device).expand(n, -1)
        return decode_stream(lambda: self.decoder(n, o.kv_cache), ctx, o, vocab=self.spec.levels,
                             text=lambda ids: self.tokenizer.decode(ids), default_tokens=self.spec.shape[0],
                             generator=generator, wrap=self._wrap(ctx.shape[1] - 1))

    @torch.no_grad()
    def sample(self: _TokenFamily, n: int, cond: Tensor | None = None, *, generator: torch.Generator | None = None,
               **options: Any) -> Tensor:
        """``n`` token sequences ``(n, len(prompt) + max_tokens)`` int64: the prompt's tokens, then generated ones
        (padded with ``<|endoftext|>`` once every sequence met a stop string; ``options``:
        :class:`DecodingOptions`)."""
        self.check_cond(n, cond, generator)
        o = DecodingOptions(**options)
        return collect_rows(self.stream(n, generator=generator, **options), n, o.max_tokens or self.spec.shape[0],
                            self._prompt_ids(o.prompt), self.config.bos_id, self.device)
