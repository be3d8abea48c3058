"""GPT: a decoder-only transformer language model for text and code, with exact likelihoods, fast decoding,
fine-tuning (frozen blocks, LoRA) and GPT-2 weight import.

A training window ``x = (x_1 … x_T)`` of token ids is a stretch of running text (``--window-start text``, the
default): ``p(x) = p(x_1 | <s>) Π_{t≥2} p(x_t | x_<t)``, so every token but the first is predicted from the real
text before it in the window, as nanoGPT's windows are, and the first from ``<s>`` (the tokenizer's
``<|endoftext|>``, the document separator) alone. With ``--window-start bos`` every window is modelled as the start
of a document, ``p(x) = Π_t p(x_t | <s>, x_<t>)`` (genlab's first GPT objective: one target in T is then predicted
from nothing and the real context is one token shorter). Either way ``log_prob`` is the exact log-probability of
the whole window and ``loss`` the mean next-token cross-entropy in nats.

Token data whose positions each own a range of ids (a table, one token per column: ``spec.info["token_ranges"]``)
is modelled over the allowed ids only: logits outside a position's range are masked in the loss, the likelihood and
decoding, so ``log_prob`` stays exact and every sample is valid. ``inpaint`` generates left to right and emits the
given token wherever one is kept (exact conditioning on a prefix, a steer elsewhere).

References:
    Radford et al., "Improving Language Understanding by Generative Pre-Training" (GPT), 2018.
    Radford et al., "Language Models are Unsupervised Multitask Learners" (GPT-2), 2019.
    Su et al., "RoFormer: Enhanced Transformer with Rotary Position Embedding", 2021, arXiv:2104.09864.
    Hu et al., "LoRA: Low-Rank Adaptation of Large Language Models", 2021, arXiv:2106.09685.
    Holtzman et al., "The Curious Case of Neural Text Degeneration", 2020, arXiv:1904.09751.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal

import torch
import torch.nn.functional as F
from torch import Tensor

from genlab import checkpoint as ckpt
from genlab.config import check
from genlab.core import Batch, DataSpec, GenerativeModel, register_model
from genlab.data.tokens import TOKENIZER_FILE, Tokenizer
from genlab.errors import CheckpointError, ConfigError
from genlab.nn.transformer import KVCache, TransformerLM
from genlab.samplers.decoding import DecodingOptions, PromptedTokens, next_token

#: model options that describe the network's shape: a fine-tuned run takes them from the run it starts from
ARCHITECTURE = ("n_layer", "n_head", "n_embd", "bias", "positions", "tie_weights", "bos_id")


@dataclass(frozen=True)
class GPTConfig:
    """GPT hyper-parameters (the context length is the data's ``--block-size``, the vocabulary its tokenizer's).

    Arguments:
        n_layer: transformer blocks.
        n_head: attention heads per block.
        n_embd: model width (divisible by ``n_head``).
        dropout: dropout on embeddings, attention output and residual branches.
        bias: biases in linear layers and LayerNorms (GPT-2 has them).
        positions: ``learned`` absolute position embeddings (GPT-2) or ``rotary`` (RoPE).
        tie_weights: share the token embedding with the output head.
        bos_id: start token id (``<|endoftext|>``: 0 for genlab's tokenizers, 50256 for GPT-2's).
        window_start: ``text`` — a window continues running text: tokens 2…T are predicted from the window's
            earlier tokens and the first from the start token alone (decoding drops the start token once a real
            token follows, to match); ``bos`` — every window is modelled from the start token.
        init_from: a trained gpt run folder or a local Hugging Face GPT-2 folder (``config.json`` +
            ``model.safetensors``) to fine-tune; its architecture and tokenizer are reused.
        freeze_blocks: freeze the token/position embeddings and the first k blocks.
        lora_rank: add LoRA adapters of this rank to attention and MLP projections and train only them (0 = off).
        lora_alpha: LoRA scale numerator (the update is ``alpha / rank · B A``).
    """

    n_layer: int = 4
    n_head: int = 4
    n_embd: int = 128
    dropout: float = 0.0
    bias: bool = False
    positions: Literal["learned", "rotary"] = "learned"
    tie_weights: bool = True
    bos_id: int = 0
    window_start: Literal["text", "bos"] = "text"
    init_from: str | None = None
    freeze_blocks: int = 0
    lora_rank: int = 0
    lora_alpha: float = 16.0

    def __post_init__(self) -> None:
        check(self.n_layer > 0 and self.n_head > 0, "--n-layer and --n-head must be positive")
        check(self.n_embd > 0 and self.n_embd % self.n_head == 0,
              f"--n-embd {self.n_embd} must be a positive multiple of --n-head {self.n_head}")
        check(self.positions != "rotary" or (self.n_embd // self.n_head) % 2 == 0,
              "rotary positions need an even head size (--n-embd / --n-head)")
        check(0 <= self.dropout < 1, "--dropout must be in [0, 1)")
        check(0 <= self.freeze_blocks <= self.n_layer, f"--freeze-blocks must be in 0..{self.n_layer}")
        check(self.lora_rank >= 0 and self.lora_alpha > 0, "--lora-rank must be >= 0 and --lora-alpha positive")
        check(self.bos_id >= 0, "--bos-id must be >= 0")


class _CachedDecoder:
    """Incremental decoding with a key/value cache; past the block size it re-encodes the last 3/4 block."""

    def __init__(self, net: TransformerLM, batch: int, strip: int | None = None) -> None:
        self.net, self.cache = net, net.new_cache(batch)
        self.ids: Tensor | None = None
        self.strip = strip  # a start token to drop once real tokens follow it (``window_start = text``)
        # contexts a ``text`` model was trained on have at most block_size - 1 tokens
        self.limit = net.block_size - (strip is not None)

    def _encode(self, ids: Tensor) -> Tensor:
        self.cache.length = 0
        self.ids = ids
        return self.net(ids, self.cache, last_only=True)[:, -1]  # (B, V)

    def prefill(self, ids: Tensor) -> Tensor:
        """Encode the context ``(B, P)`` (its last ``block_size`` tokens) → next-token logits ``(B, V)``."""
        return self._encode(_strip_start(ids, self.strip)[:, -self.limit :])

    def step(self, ids: Tensor) -> Tensor:
        """Append new tokens ``(B, k)`` to the cache → next-token logits ``(B, V)``."""
        assert self.ids is not None
        if self.strip is not None and self.ids.shape[1] == 1 and bool((self.ids == self.strip).all()):
            return self._encode(ids)  # the first real tokens replace the lone start token
        self.ids = torch.cat([self.ids, ids], dim=1)
        if self.cache.length + ids.shape[1] > self.limit:
            return self._encode(self.ids[:, -(3 * self.limit) // 4 :])
        return self.net(ids, self.cache, last_only=True)[:, -1]


class _RangeMask:
    """Wraps a decoder so that the logits of position ``i`` only allow the ids of ``allowed[i]`` (the position of
    the first generated token is ``start``)."""

    def __init__(self, inner: _CachedDecoder | _FullDecoder, allowed: Tensor, start: int) -> None:
        self.inner, self.allowed, self.pos = inner, allowed, start

    def _mask(self, logits: Tensor) -> Tensor:
        i = min(self.pos, self.allowed.shape[0] - 1)
        self.pos += 1
        return logits.masked_fill(~self.allowed[i], float("-inf"))

    def prefill(self, ids: Tensor) -> Tensor:
        return self._mask(self.inner.prefill(ids))

    def step(self, ids: Tensor) -> Tensor:
        return self._mask(self.inner.step(ids))


class _FullDecoder:
    """Reference decoding: recompute the last ``block_size`` tokens from scratch every step."""

    def __init__(self, net: TransformerLM, strip: int | None = None) -> None:
        self.net, self.strip = net, strip
        self.ids: Tensor | None = None
        self.limit = net.block_size - (strip is not None)

    def prefill(self, ids: Tensor) -> Tensor:
        """Next-token logits ``(B, V)`` of the last ``block_size`` tokens of ``ids``."""
        self.ids = ids = _strip_start(ids, self.strip)
        return self.net(ids[:, -self.limit :], last_only=True)[:, -1]

    def step(self, ids: Tensor) -> Tensor:
        """Append ``ids`` and recompute the whole context."""
        assert self.ids is not None
        return self.prefill(torch.cat([self.ids, ids], dim=1))


class _RowDecoder:
    """Iteration-level decoding: sequences join and leave one running batch between steps (a
    :class:`~genlab.nn.transformer.RowCache`), each at its own position. The context of a joining sequence is
    encoded once and copied (the sequences of one batch share it); a lone start token that the first real token
    replaces (``window_start = text``) is dropped by starting that row over at position 0."""

    def __init__(self, net: TransformerLM, slots: int, strip: int | None = None) -> None:
        self.net, self.rows, self.strip = net, net.new_row_cache(slots), strip
        self.limit = net.block_size - (strip is not None)
        self._fresh: list[bool] = []  # per row: its context is the lone start token
        self._prefix: tuple[tuple[int, ...], KVCache, Tensor] | None = None

    @property
    def slots(self) -> int:
        """Most rows at once."""
        return self.rows.slots

    def fits(self, context: int, new_tokens: int) -> bool:
        """Whether ``new_tokens`` after a context of ``context`` ids (start token included) stay in the block."""
        return context - (self.strip is not None and context > 1) + new_tokens - 1 <= self.limit

    @torch.no_grad()
    def add(self, ctx: list[int]) -> Tensor:
        """A new row after the context ``ctx`` (start token and prompt) → its next-token logits ``(V,)``."""
        key = tuple(ctx)
        if self._prefix is None or self._prefix[0] != key:
            ids = _strip_start(torch.tensor([ctx], device=self.net.wte.weight.device), self.strip)
            cache = self.net.new_cache(1, ids.shape[1])
            self._prefix = (key, cache, self.net(ids, cache, last_only=True)[0, -1])
        self.rows.add(self._prefix[1])
        self._fresh.append(self.strip is not None and ctx == [self.strip])
        return self._prefix[2]

    @torch.no_grad()
    def step(self, ids: Tensor) -> Tensor:
        """Append one token ``ids (live,)`` to every row → next-token logits ``(live, V)``."""
        for i, fresh in enumerate(self._fresh):
            if fresh:  # the first real token replaces the start token: the row starts over
                self.rows.lengths[i] = 0
                self._fresh[i] = False
        return self.net.step_rows(ids, self.rows)

    def remove(self, i: int) -> int:
        """Free row ``i``; the last row moves into it → the index it had."""
        moved = self.rows.remove(i)
        self._fresh[i] = self._fresh[moved]
        self._fresh.pop()
        return moved


def _strip_start(ids: Tensor, start: int | None) -> Tensor:
    """``ids (B, P)`` without a leading start token when real tokens follow it (and ``start`` is set)."""
    if start is not None and ids.shape[1] > 1 and bool((ids[:, 0] == start).all()):
        return ids[:, 1:]
    return ids


@register_model("gpt")
class GPT(PromptedTokens, GenerativeModel):
    """Decoder-only transformer LM (pre-LN GPT-2 blocks, fused causal attention, tied embeddings)."""

    config_cls = GPTConfig
    data_forms = ("tokens",)
    exact_likelihood = True
    streaming = True
    #: fills given tokens (a table's conditioned columns) while generating the others
    inpainting_by_form: ClassVar[dict[str, bool]] = {"tokens": True}
    sample_options_cls = DecodingOptions
    watermark = "green-list"
    train_defaults: ClassVar[dict[str, Any]] = {"lr": 1e-3, "betas": (0.9, 0.99), "weight_decay": 0.1,
                                                "warmup_steps": 100, "grad_clip": 1.0, "batch_size": 32,
                                                "min_lr_ratio": 0.1, "eval_examples": 64, "n_samples": 4}
    legacy_options: ClassVar[dict[str, Any]] = {"window_start": "bos"}  # runs from before --window-start

    def __init__(self, config: GPTConfig, spec: DataSpec) -> None:
        super().__init__(config, spec)
        if spec.levels <= config.bos_id:
            raise ConfigError(f"--bos-id {config.bos_id} is outside the vocabulary of {spec.levels} tokens")
        self.net = TransformerLM(spec.levels, spec.shape[0], config.n_layer, config.n_head, config.n_embd,
                                 config.dropout, config.bias, config.positions, config.tie_weights)
        if config.lora_rank:
            for layer in self.net.lora_layers():
                layer.add_lora(config.lora_rank, config.lora_alpha)
            for name, p in self.named_parameters():
                p.requires_grad_("lora_" in name)
        if config.freeze_blocks:
            frozen = [self.net.wte, self.net.wpe, *self.net.h[: config.freeze_blocks]]
            for m in frozen:
                if m is not None:
                    m.requires_grad_(False)
        if not any(p.requires_grad for p in self.parameters()):
            raise ConfigError(f"--freeze-blocks {config.freeze_blocks} freezes every block of this {config.n_layer}-"
                              "layer model (LoRA adapters included): nothing is left to train; freeze fewer blocks")
        self._tokenizer: Tokenizer | None = None
        ranges = spec.info.get("token_ranges")
        allowed = None
        if ranges:  # (T, V): the ids each position may take
            ids = torch.arange(spec.levels)
            allowed = torch.stack([(ids >= lo) & (ids < hi) for lo, hi in ranges])
        self._allowed: Tensor | None
        self.register_buffer("_allowed", allowed, persistent=False)

    def _masked(self, logits: Tensor) -> Tensor:
        """Logits ``(B, T, V)`` with the ids a position may not take at -inf (token data with ranges)."""
        if self._allowed is None:
            return logits
        return logits.masked_fill(~self._allowed[: logits.shape[1]], float("-inf"))

    # -- contract ----------------------------------------------------------------------------------
    def _inputs(self, x: Tensor) -> Tensor:
        """``(<s>, x_1 … x_{T-1})``: the inputs whose next tokens are ``x``."""
        bos = torch.full_like(x[:, :1], self.config.bos_id)
        return torch.cat([bos, x[:, :-1]], dim=1)

    def _logits(self, x: Tensor) -> Tensor:
        """Next-token logits ``(B, T, V)`` whose row t predicts ``x_t`` (see the module docstring)."""
        if self.config.window_start == "bos" or x.shape[1] == 1:
            return self.net(self._inputs(x))
        first = self.net(torch.full_like(x[:1, :1], self.config.bos_id))  # (1, 1, V): p(x_1 | <s>)
        rest = self.net(x[:, :-1])  # (B, T-1, V): p(x_t | x_<t), t ≥ 2
        return torch.cat([first.expand(x.shape[0], -1, -1), rest], dim=1)

    def token_nll(self, x: Tensor) -> Tensor:
        """Per-token negative log-likelihood ``-log p(x_t | context)`` in nats → ``(B, T)``."""
        logits = self._masked(self._logits(x))  # (B, T, V)
        return F.cross_entropy(logits.float().flatten(0, 1), x.flatten(), reduction="none").view_as(x)

    def loss(self, batch: Batch, group: str = "main") -> tuple[Tensor, dict[str, float]]:
        """Mean next-token cross-entropy (nats/token) of windows ``batch.x (B, T)``."""
        x = batch.x
        loss = F.cross_entropy(self._masked(self._logits(x)).flatten(0, 1), x.flatten())
        return loss, {}

    @torch.no_grad()
    def log_prob(self, x: Tensor, cond: Tensor | None = None) -> Tensor:
        """Exact ``log p(x)`` in nats of each window ``x (B, T)`` (the start token given)."""
        return -self.token_nll(x.to(self.device)).double().sum(1).float()

    def decoder(self, batch: int, kv_cache: bool = True) -> _CachedDecoder | _FullDecoder:
        """Decoding state for ``batch`` sequences: KV-cached, or recomputing the full context each step."""
        strip = self.config.bos_id if self.config.window_start == "text" else None
        return _CachedDecoder(self.net, batch, strip) if kv_cache else _FullDecoder(self.net, strip)

    def row_decoder(self, slots: int) -> _RowDecoder | None:
        """Iteration-level decoding state for up to ``slots`` sequences that join and leave between steps (the
        server's continuous batching); None for token data whose positions own id ranges."""
        if self._allowed is not None:
            return None
        return _RowDecoder(self.net, slots, self.config.bos_id if self.config.window_start == "text" else None)

    def _wrap(self, start: int) -> Callable[[Any], Any] | None:
        """Token data whose positions own id ranges: mask the ids position ``start`` onwards may not take."""
        allowed = self._allowed
        return None if allowed is None else (lambda d: _RangeMask(d, allowed, start))

    @torch.no_grad()
    def inpaint(self, x: Tensor, keep: Tensor, cond: Tensor | None = None, *,
                generator: torch.Generator | None = None, prompt: str = "", max_tokens: int | None = None,
                temperature: float = 1.0, top_k: int = 0, top_p: float = 1.0, repetition_penalty: float = 1.0,
                stop: tuple[str, ...] = (), kv_cache: bool = True, watermark: str | None = None,
                watermark_delta: float = 2.0, guidance: float = 1.0) -> Tensor:
        """Sequences ``(n, T)`` equal to ``x`` where ``keep`` (``(T,)`` or ``(n, T)``) is True, generated left to
        right elsewhere (each generated token sees the kept tokens before it)."""
        if watermark:
            raise ConfigError("--watermark marks freely generated text; inpainting (--condition) takes none")
        if guidance != 1.0:
            raise ConfigError("--guidance follows a prompt; inpainting (--condition) takes none")
        self.check_cond(x.shape[0], cond, generator)
        n, steps = x.shape
        keep = torch.as_tensor(keep, dtype=torch.bool, device=self.device).expand(n, steps)
        x = x.to(self.device)
        dec: Any = self.decoder(n, kv_cache)
        if self._allowed is not None:
            dec = _RangeMask(dec, self._allowed, 0)
        logits = dec.prefill(torch.full((n, 1), self.config.bos_id, dtype=torch.long, device=self.device))
        out = []
        for i in range(steps):
            tok = torch.where(keep[:, i], x[:, i], next_token(logits, temperature, top_k, top_p, generator))
            out.append(tok)
            if i + 1 < steps:
                logits = dec.step(tok[:, None])
        return torch.stack(out, dim=1)

    # -- text --------------------------------------------------------------------------------------
    @property
    def tokenizer(self) -> Tokenizer:
        """The run's tokenizer (the ``tokenizer`` artifact of its run, or one given to ``use_tokenizer``).

        Raises:
            CheckpointError: when the model has none.
        """
        if self._tokenizer is None:
            raise CheckpointError(f"this gpt model has no tokenizer; text prompts and decoding need the run "
                                  f"folder's {TOKENIZER_FILE} (load the run with genlab.load)")
        return self._tokenizer

    def use_tokenizer(self, tokenizer: Tokenizer) -> GPT:
        """Attach ``tokenizer`` for prompts and decoding; returns self."""
        self._tokenizer = tokenizer
        return self

    def attach(self, artifacts: Mapping[str, Any]) -> None:
        """Take the run's ``tokenizer`` artifact (token data from a tokenizer-free modality has none)."""
        tok = artifacts.get("tokenizer")
        if isinstance(tok, Tokenizer):
            self._tokenizer = tok

    def decode(self, ids: Tensor, stop: tuple[str, ...] = ()) -> list[str]:
        """Text of each row of token ids, cut before the first stop string."""
        texts = [self.tokenizer.decode(row) for row in ids.tolist()]
        for s in stop:
            texts = [t.split(s, 1)[0] for t in texts]
        return texts

    # -- transfer learning -------------------------------------------------------------------------------
    def merge_lora(self) -> GPT:
        """Fold every LoRA adapter into its weight (``W ← W + α/r · B A``); outputs are unchanged. Returns self."""
        for layer in self.net.lora_layers():
            layer.merge()
        return self

    @classmethod
    def resolve_options(cls, options: dict[str, Any]) -> dict[str, Any]:
        """With ``init_from``: take the architecture, tokenizer and block size from the source, and default the
        learning rate to a tenth of the source run's.

        Raises:
            ConfigError: when the source is missing, or an architecture option contradicts it.
        """
        src = options.get("init_from")
        if not src:
            return options
        out = dict(options)
        arch, data = source_options(str(src))
        for k, v in arch.items():
            if k in options and str(options[k]) != str(v):
                raise ConfigError(f"--{k.replace('_', '-')} is fixed by --init-from {src} ({v}); drop it")
            out[k] = v
        out.setdefault("tokenizer", data["tokenizer"])
        out.setdefault("block_size", data["block_size"])
        if "lr" in data:
            out.setdefault("lr", data["lr"] / 10)
        return out

    def start_from(self, source: str) -> None:
        """Load the weights of a gpt run folder or a local Hugging Face GPT-2 folder (``--init-from``).

        Raises:
            CheckpointError: when the weights do not fit this model.
        """
        p = Path(source)
        if (p / ckpt.CONFIG).is_file() and "format_version" in json.loads((p / ckpt.CONFIG).read_text()):
            state, _ = ckpt.read_tensors(p / ckpt.WEIGHTS)
        else:
            state = gpt2_state_dict(p)
        wpe = "net.wpe.weight"
        if wpe in state and self.net.wpe is not None:
            state[wpe] = state[wpe][: self.net.block_size]
        missing, unexpected = self.load_state_dict(state, strict=False)
        missing = [k for k in missing if "lora_" not in k]
        if missing or unexpected:
            raise CheckpointError(f"the weights in {source} do not fit this model (missing {missing[:3]}, "
                                  f"unexpected {unexpected[:3]})")


# -- GPT-2 weights from a local Hugging Face folder -------------------------------------------------

_CONV1D = ("attn.c_attn.weight", "attn.c_proj.weight", "mlp.c_fc.weight", "mlp.c_proj.weight")


def read_hf_config(folder: str | Path) -> dict[str, Any]:
    """``config.json`` of a local Hugging Face GPT-2 folder.

    Raises:
        CheckpointError: when it is missing or not a GPT-2 configuration genlab's GPT reproduces.
    """
    p = Path(folder) / "config.json"
    if not p.is_file():
        raise CheckpointError(f"{folder} is neither a genlab run nor a Hugging Face folder (no config.json)")
    cfg = json.loads(p.read_text())
    if cfg.get("model_type") != "gpt2":
        raise CheckpointError(f"{folder} holds a {cfg.get('model_type')!r} model; only gpt2 weights can be loaded")
    if cfg.get("activation_function", "gelu_new") not in ("gelu_new", "gelu_pytorch_tanh"):
        raise CheckpointError(f"{folder} uses activation {cfg['activation_function']}; genlab's GPT uses gelu_new")
    if cfg.get("scale_attn_by_inverse_layer_idx") or cfg.get("reorder_and_upcast_attn") or cfg.get("n_inner"):
        raise CheckpointError(f"{folder} uses GPT-2 options genlab's GPT does not have (n_inner, scaled attention)")
    return cfg


def gpt2_state_dict(folder: str | Path) -> dict[str, Tensor]:
    """GPT-2 weights of ``folder/model.safetensors`` renamed for :class:`GPT` (``Conv1D`` weights transposed).

    References:
        Radford et al., "Language Models are Unsupervised Multitask Learners" (GPT-2), 2019.
    """
    read_hf_config(folder)
    tensors, _ = ckpt.read_tensors(Path(folder) / "model.safetensors")
    out: dict[str, Tensor] = {}
    for k, v in tensors.items():
        name = k.removeprefix("transformer.")
        if name.endswith((".attn.bias", ".attn.masked_bias")) or name == "lm_head.weight":
            continue
        if name.endswith(_CONV1D):
            v = v.t().contiguous()
        out["net." + name] = v
    out["net.lm_head.weight"] = out["net.wte.weight"]
    return out


def source_options(src: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """(architecture options, data/trainer options) of a fine-tuning source: a gpt run or a GPT-2 folder.

    Raises:
        ConfigError: when ``src`` is neither.
    """
    p = Path(src)
    cfg_path = p / ckpt.CONFIG
    if not cfg_path.is_file():
        raise ConfigError(f"--init-from {src}: no config.json there; give a gpt run folder or a GPT-2 folder")
    raw = json.loads(cfg_path.read_text())
    if "format_version" in raw:
        run = ckpt.read_run_config(p)
        if run["family"] != "gpt":
            raise ConfigError(f"--init-from {src} is a {run['family']} run, not gpt")
        arch = {k: run["model"][k] for k in ARCHITECTURE if k in run["model"]}
        return arch, {"tokenizer": str(p), "block_size": run["data"]["block_size"], "lr": run["train"]["lr"]}
    hf = read_hf_config(p)
    arch = {"n_layer": hf["n_layer"], "n_head": hf["n_head"], "n_embd": hf["n_embd"], "bias": True,
            "positions": "learned", "tie_weights": True, "bos_id": hf.get("eos_token_id", 50256)}
    if not (p / TOKENIZER_FILE).is_file():
        raise ConfigError(f"--init-from {src}: the GPT-2 folder has no tokenizer.json to encode the new data with")
    return arch, {"tokenizer": str(p / TOKENIZER_FILE), "block_size": min(int(hf["n_positions"]), 1024)}


def import_gpt2(folder: str | Path, out: str | Path) -> Path:
    """Write a genlab run folder holding the GPT-2 weights of a local Hugging Face folder, so ``genlab sample``
    and ``genlab.load`` work on them (the folder's ``tokenizer.json`` is copied when present).

    Raises:
        CheckpointError: when the folder is not a GPT-2 model genlab can reproduce.
    """
    from genlab.api import __version__
    from genlab.config import build, to_json

    hf = read_hf_config(folder)
    arch = {"n_layer": hf["n_layer"], "n_head": hf["n_head"], "n_embd": hf["n_embd"], "bias": True,
            "positions": "learned", "tie_weights": True, "bos_id": hf.get("eos_token_id", 50256)}
    cfg = build(GPTConfig, arch)
    spec = DataSpec(kind="text", shape=(int(hf["n_positions"]),), form="tokens", levels=int(hf["vocab_size"]))
    model = GPT(cfg, spec)
    model.start_from(str(folder))
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    tok = Path(folder) / TOKENIZER_FILE
    if tok.is_file():
        ckpt.write_bytes(out / TOKENIZER_FILE, tok.read_bytes())
    ckpt.write_json(out / ckpt.CONFIG, {
        "format_version": ckpt.FORMAT_VERSION, "genlab_version": __version__, "family": "gpt",
        "model": to_json(cfg), "train": {}, "data": {"data": str(folder), "block_size": spec.shape[0]},
        "spec": spec.to_json(), "preprocessing": {"source": f"GPT-2 weights from {folder}"}})
    ckpt.write_tensors(out / ckpt.WEIGHTS, model.state_dict(), {"step": 0})
    return out
