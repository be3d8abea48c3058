"""RNN: an LSTM or GRU language model on tokens (text, code, molecules), with exact likelihoods, streamed
decoding with the same options as GPT (prompt, temperature, top-k/p, stop strings) and fine-tuning from a run.

A window ``x = (x_1 … x_T)`` is modelled as ``p(x) = Π_t p(x_t | <s>, x_<t)`` with ``<s>`` the tokenizer's
``<|endoftext|>`` and the recurrent state starting at zero, so ``log_prob`` is exact and ``loss`` the mean
next-token cross-entropy in nats. On molecules it is the CharRNN of the MOSES benchmark (a 3-layer LSTM of 768 units
there; the defaults here are smaller for CPUs).

References:
    Hochreiter & Schmidhuber, "Long Short-Term Memory", Neural Computation 1997.
    Cho et al., "Learning Phrase Representations using RNN Encoder-Decoder" (GRU), 2014, arXiv:1406.1078.
    Segler et al., "Generating Focused Molecule Libraries for Drug Discovery with Recurrent Neural Networks",
    2018, arXiv:1701.01329.
    Press & Wolf, "Using the Output Embedding to Improve Language Models", 2017, arXiv:1608.05859.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor

from genlab import checkpoint as ckpt
from genlab.config import check
from genlab.core import Batch, DataSpec, GenerativeModel, register_model
from genlab.data.tokens import TOKENIZER_FILE, Tokenizer
from genlab.errors import CheckpointError, ConfigError
from genlab.nn.rnn import RNNLM, Cell, State
from genlab.samplers.decoding import DecodingOptions, PromptedTokens

#: model options that describe the network's shape: a fine-tuned run takes them from the run it starts from
ARCHITECTURE = ("cell", "n_layer", "hidden", "n_embd", "tie_weights", "bos_id")


@dataclass(frozen=True)
class RNNConfig:
    """RNN hyper-parameters (the vocabulary is the data's tokenizer's).

    Arguments:
        cell: ``lstm`` or ``gru``.
        n_layer: stacked recurrent layers.
        hidden: recurrent state width.
        n_embd: token embedding width.
        dropout: dropout on embeddings, between layers and before the head.
        tie_weights: share the token embedding with the output head.
        bos_id: start token id (``<|endoftext|>``: 0 for genlab's tokenizers).
        init_from: a trained rnn run folder to fine-tune; its architecture and tokenizer are reused.
    """

    cell: Cell = "lstm"
    n_layer: int = 2
    hidden: int = 512
    n_embd: int = 128
    dropout: float = 0.0
    tie_weights: bool = True
    bos_id: int = 0
    init_from: str | None = None

    def __post_init__(self) -> None:
        check(self.n_layer > 0 and self.hidden > 0 and self.n_embd > 0,
              "--n-layer, --hidden and --n-embd must be positive")
        check(0 <= self.dropout < 1, "--dropout must be in [0, 1)")
        check(self.bos_id >= 0, "--bos-id must be >= 0")


class _RecurrentDecoder:
    """Incremental decoding: the recurrent state carries the whole context."""

    def __init__(self, net: RNNLM) -> None:
        self.net = net
        self.state: State = None

    def prefill(self, ids: Tensor) -> Tensor:
        """Read the context ``(B, P)`` from the zero state → next-token logits ``(B, V)``."""
        logits, self.state = self.net(ids)
        return logits[:, -1]

    def step(self, ids: Tensor) -> Tensor:
        """Read new tokens ``(B, k)`` → next-token logits ``(B, V)``."""
        logits, self.state = self.net(ids, self.state)
        return logits[:, -1]


@register_model("rnn")
class RNN(PromptedTokens, GenerativeModel):
    """LSTM/GRU language model (tied embeddings, zero initial state after the start token)."""

    config_cls = RNNConfig
    data_forms = ("tokens",)
    exact_likelihood = True
    streaming = True
    watermark = "green-list"
    sample_options_cls = DecodingOptions
    train_defaults: ClassVar[dict[str, Any]] = {"lr": 2e-3, "betas": (0.9, 0.99), "warmup_steps": 50,
                                                "grad_clip": 1.0, "batch_size": 64, "min_lr_ratio": 0.1,
                                                "eval_examples": 64, "n_samples": 4}

    def __init__(self, config: RNNConfig, spec: DataSpec) -> None:
        super().__init__(config, spec)
        if spec.levels <= config.bos_id:
            raise ConfigError(f"--bos-id {config.bos_id} is outside the vocabulary of {spec.levels} tokens")
        self.net = RNNLM(spec.levels, config.n_embd, config.hidden, config.n_layer, config.cell, config.dropout,
                         config.tie_weights)
        self._tokenizer: Tokenizer | None = None

    # -- contract ----------------------------------------------------------------------------------
    def _inputs(self, x: Tensor) -> Tensor:
        """``(<s>, x_1 … x_{T-1})``: the inputs whose next tokens are ``x``."""
        return torch.cat([torch.full_like(x[:, :1], self.config.bos_id), x[:, :-1]], dim=1)

    def token_nll(self, x: Tensor) -> Tensor:
        """Per-token negative log-likelihood ``-log p(x_t | <s>, x_<t)`` in nats → ``(B, T)``."""
        logits, _ = self.net(self._inputs(x))  # (B, T, V)
        return F.cross_entropy(logits.float().flatten(0, 1), x.flatten(), reduction="none").view_as(x)

    def loss(self, batch: Batch, group: str = "main") -> tuple[Tensor, dict[str, float]]:
        """Mean next-token cross-entropy (nats/token) of windows ``batch.x (B, T)``."""
        logits, _ = self.net(self._inputs(batch.x))
        return F.cross_entropy(logits.flatten(0, 1), batch.x.flatten()), {}

    @torch.no_grad()
    def log_prob(self, x: Tensor, cond: Tensor | None = None) -> Tensor:
        """Exact ``log p(x)`` in nats of each window ``x (B, T)`` (the start token given)."""
        return -self.token_nll(x.to(self.device)).double().sum(1).float()

    def decoder(self, batch: int, kv_cache: bool = True) -> _RecurrentDecoder:
        """Decoding state for ``batch`` sequences (the recurrent state is the cache; ``kv_cache`` is ignored)."""
        return _RecurrentDecoder(self.net)

    # -- tokens ------------------------------------------------------------------------------------
    @property
    def tokenizer(self) -> Tokenizer:
        """The run's tokenizer (its ``tokenizer`` artifact).

        Raises:
            CheckpointError: when the model has none.
        """
        if self._tokenizer is None:
            raise CheckpointError(f"this rnn model has no tokenizer; prompts and stop strings need the run "
                                  f"folder's {TOKENIZER_FILE} (load the run with genlab.load)")
        return self._tokenizer

    def attach(self, artifacts: Mapping[str, Any]) -> None:
        """Take the run's ``tokenizer`` artifact (token data from a tokenizer-free modality has none)."""
        tok = artifacts.get("tokenizer")
        if isinstance(tok, Tokenizer):
            self._tokenizer = tok

    # -- fine-tuning -------------------------------------------------------------------------------
    @classmethod
    def resolve_options(cls, options: dict[str, Any]) -> dict[str, Any]:
        """With ``init_from``: take the architecture and tokenizer of the source run and default the learning
        rate to a tenth of its.

        Raises:
            ConfigError: when the source is not an rnn run, or an architecture option contradicts it.
        """
        src = options.get("init_from")
        if not src:
            return options
        if not (Path(src) / ckpt.CONFIG).is_file():
            raise ConfigError(f"--init-from {src}: no config.json there; give an rnn run folder")
        run = ckpt.read_run_config(src)
        if run["family"] != "rnn":
            raise ConfigError(f"--init-from {src} is a {run['family']} run, not rnn")
        out = dict(options)
        for k in ARCHITECTURE:
            if k in run["model"]:
                if k in options and str(options[k]) != str(run["model"][k]):
                    raise ConfigError(f"--{k.replace('_', '-')} is fixed by --init-from {src} ({run['model'][k]}); "
                                      "drop it")
                out[k] = run["model"][k]
        out.setdefault("tokenizer", str(src))
        if run["train"].get("lr"):
            out.setdefault("lr", run["train"]["lr"] / 10)
        return out

    def start_from(self, source: str) -> None:
        """Load the weights of an rnn run folder (``--init-from``).

        Raises:
            CheckpointError: when the weights do not fit this model.
        """
        state, _ = ckpt.read_tensors(Path(source) / ckpt.WEIGHTS)
        try:
            self.load_state_dict(state)
        except RuntimeError as e:
            raise CheckpointError(f"the weights in {source} do not fit this model ({str(e).splitlines()[0]}); "
                                  "the new data must use the run's tokenizer") from None
