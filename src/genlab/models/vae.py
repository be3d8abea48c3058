"""Variational autoencoder for 8-bit images with a discretized-logistic (or Bernoulli) decoder, for token
sequences (molecules, text) with a GRU encoder and a latent-conditioned GRU decoder, for categorical grids
(music's SATB grid) with a per-cell categorical decoder, and for tables (TVAE-like: MLP encoder/decoder, Gaussian
numbers with a learned scale each, categorical one-hot blocks).

References:
    Kingma & Welling, "Auto-Encoding Variational Bayes", 2014, arXiv:1312.6114.
    Higgins et al., "β-VAE", ICLR 2017.
    Burda et al., "Importance Weighted Autoencoders", 2016, arXiv:1509.00519 (the test-NLL bound).
    Salimans et al., "PixelCNN++", 2017, arXiv:1701.05517 (discretized logistic likelihood).
    Bowman et al., "Generating Sentences from a Continuous Space", 2016, arXiv:1511.06349 (sequence VAE, KL warm-up).
    Gómez-Bombarelli et al., "Automatic Chemical Design Using a Data-Driven Continuous Representation of
    Molecules", 2018, arXiv:1610.02415 (the molecule VAE).
    Xu et al., "Modeling Tabular Data using Conditional GAN" (TVAE), 2019, arXiv:1907.00503.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import torch
from torch import Tensor

from genlab.config import check
from genlab.core import Batch, DataSpec, GenerativeModel, register_model
from genlab.data.images import to_model, to_uint8
from genlab.data.tables import TableLayout
from genlab.distributions import (
    bernoulli_log_prob,
    discretized_logistic_log_prob,
    logistic_sample,
    mixed_log_prob,
    sample_mixed,
)
from genlab.errors import CapabilityError
from genlab.nn.conv import ConvDecoder, ConvEncoder, cat_cond, class_embedding
from genlab.nn.grid import GridDecoder, GridEncoder
from genlab.nn.mlp import MLP
from genlab.nn.rnn import SeqDecoder, SeqEncoder

LOG_2PI = math.log(2 * math.pi)


@dataclass(frozen=True)
class VAEConfig:
    """VAE hyper-parameters.

    Arguments:
        latent_dim: size of the Gaussian latent z.
        widths: conv channels per resolution level of the encoder (the decoder mirrors them).
        hidden: width of the encoder's output vector before the (μ, log σ²) head (tables: of every MLP layer).
        beta: weight of the KL term (β-VAE); 1 gives the ELBO.
        likelihood: ``logistic`` — discretized logistic on 8-bit pixels (bits/dim comparable with other
            families); ``bernoulli`` — pixels binarized at 128 (use with ``--binarize``).
        conditional: condition encoder and decoder on the class label when the data has labels.
        class_dim: size of the class embedding.
        class_prior: with ``conditional``, a learned Gaussian prior per class ``p(z | y) = N(μ_y, diag σ_y²)``
            (starting at N(0, I)) instead of one N(0, I): the latent space is organised by class, so a sample of
            class y starts where images of y are encoded and the decoder cannot ignore the label (the KL term and
            the IWAE bound use that prior).
        iwae_k: importance samples for the test NLL bound (``log_prob``).
        sample_mode: ``mean`` decodes to the decoder's mean image (tokens: the most likely next token each step;
            grids: each cell's most likely value); ``sample`` also samples the pixel noise (tokens: each next
            token; grids: each cell; tables always sample their numbers and categories).
        seq_embd: tokens: token embedding width of encoder and decoder.
        seq_decoder: tokens: decoder GRU width (``hidden`` is the encoder's, per direction).
        seq_layers: tokens: decoder GRU layers.
        kl_warmup: training steps over which the KL weight rises linearly from 0 to ``beta`` (0 = off).
    """

    latent_dim: int = 32
    widths: tuple[int, ...] = (32, 64, 128)
    hidden: int = 256
    beta: float = 1.0
    likelihood: Literal["logistic", "bernoulli"] = "logistic"
    conditional: bool = True
    class_dim: int = 16
    class_prior: bool = True
    iwae_k: int = 100
    sample_mode: Literal["mean", "sample"] = "mean"
    seq_embd: int = 64
    seq_decoder: int = 512
    seq_layers: int = 3
    kl_warmup: int = 0

    def __post_init__(self) -> None:
        check(self.latent_dim > 0, "--latent-dim must be positive")
        check(len(self.widths) > 0 and min(self.widths) > 0, "--widths must be positive integers")
        check(self.beta >= 0, "--beta must be >= 0")
        check(self.iwae_k >= 1, "--iwae-k must be >= 1")
        check(min(self.seq_embd, self.seq_decoder, self.seq_layers) > 0 and self.kl_warmup >= 0,
              "--seq-embd, --seq-decoder and --seq-layers must be positive, --kl-warmup >= 0")


@register_model("vae")
class VAE(GenerativeModel):
    """Convolutional VAE: Gaussian encoder q(z|x,y), standard-normal prior, per-pixel decoder p(x|z,y).

    ``loss`` is the negative (β-)ELBO in nats per dimension; ``log_prob`` is the IWAE bound
    ``log p(x) ≥ E[log (1/k) Σ_i p(x, z_i) / q(z_i | x)]`` (a lower bound, tighter as k grows).

    On ``grid`` data (``int64 (V, T)`` cells with ``spec.levels`` values) encoder and decoder are 1-D convolutions
    over time (:mod:`genlab.nn.grid`) and ``p(x | z)`` is a categorical distribution per cell.
    """

    config_cls = VAEConfig
    data_forms = ("image", "grid", "table", "tokens")  # preference order: tables and music grids before tokens
    likelihood_bound = True
    latent_space = True
    private_groups = ("main",)
    train_defaults: ClassVar[dict[str, Any]] = {"lr": 1e-3}
    legacy_options: ClassVar[dict[str, Any]] = {"class_prior": False}  # runs from before --class-prior
    steps: Tensor  # training steps taken (a buffer, for the KL warm-up; token data always has it)

    def __init__(self, config: VAEConfig, spec: DataSpec) -> None:
        super().__init__(config, spec)
        if spec.form == "tokens":
            self._init_tokens(config, spec)
            return
        c, h, w = spec.shape if spec.form == "image" else (1, 1, 1)  # grids and tables: unused
        k = spec.num_classes if config.conditional else 0
        self.emb_enc = class_embedding(k, config.class_dim)
        self.emb_dec = class_embedding(k, config.class_dim)
        cdim = config.class_dim if self.emb_enc is not None else 0
        self.grid = spec.form == "grid"
        self.encoder: torch.nn.Module
        self.decoder: torch.nn.Module
        if self.grid:
            self.encoder = GridEncoder(spec.shape, spec.levels, config.widths, config.hidden)
            self.decoder = GridDecoder(config.latent_dim + cdim, spec.shape, spec.levels,
                                       tuple(reversed(config.widths)))
        elif spec.form == "table":  # TVAE: MLPs; the decoder outputs means at numbers and logits at categories
            self.layout = TableLayout.of(spec)
            self.encoder = MLP(spec.dims, config.hidden, (config.hidden,), act="relu")
            self.decoder = MLP(config.latent_dim + cdim, spec.dims, (config.hidden, config.hidden), act="relu")
            self.num_scale = LogScale(len(self.layout.num_index))
            self._cats = [(b.offset, b.width) for b in self.layout.cats]
        else:
            self.encoder = ConvEncoder(c, (h, w), config.widths, config.hidden)
            out_ch = 2 * c if config.likelihood == "logistic" else c
            self.decoder = ConvDecoder(config.latent_dim + cdim, out_ch, (h, w), tuple(reversed(config.widths)))
        self.head = torch.nn.Linear(config.hidden + cdim, 2 * config.latent_dim)
        if config.kl_warmup:  # resumable warm-up: the step count travels with the weights
            self.register_buffer("steps", torch.zeros((), dtype=torch.long))
        self.prior = None  # per-class (μ_y, log σ²_y), zero = N(0, I) at the start
        if k and config.class_prior:
            self.prior = torch.nn.Embedding(k, 2 * config.latent_dim)
            torch.nn.init.zeros_(self.prior.weight)

    def prior_params(self, n: int, cond: Tensor | None) -> tuple[Tensor, Tensor]:
        """Prior mean and log-variance ``(n, latent_dim)`` each: the class's with ``class_prior``, else zeros."""
        if self.prior is None or cond is None:
            zeros = torch.zeros(n, self.config.latent_dim, device=self.device)
            return zeros, zeros
        mu, logvar = self.prior(cond).chunk(2, dim=1)
        return mu, logvar.clamp(-12.0, 8.0)

    # -- encoder / decoder -----------------------------------------------------------------------
    def encode(self, x: Tensor, cond: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Posterior parameters ``(μ, log σ²)``, each ``(B, latent_dim)``, of ``uint8`` images ``x`` (token
        windows ``(B, T)``, table rows ``(B, D)``)."""
        if self.spec.form == "tokens":
            mu, logvar = self.seq_encoder(x, _lengths(x))
            return mu, logvar.clamp(-12.0, 8.0)
        feats = torch.nn.functional.silu(self.encoder(x if self.spec.form in ("grid", "table") else to_model(x)))
        mu, logvar = self.head(cat_cond(feats, self.emb_enc, cond)).chunk(2, dim=1)
        return mu, logvar.clamp(-12.0, 8.0)

    def _decode_params(self, z: Tensor, cond: Tensor | None) -> Tensor:
        return self.decoder(cat_cond(z, self.emb_dec, cond))  # (B, 2C or C, H, W)

    def _log_px(self, x: Tensor, params: Tensor) -> Tensor:
        """log p(x | z) summed over dimensions → (B,)."""
        if self.grid:  # params: logits (B, V, T, L)
            return params.float().log_softmax(-1).gather(-1, x[..., None]).flatten(1).sum(1)
        if self.spec.form == "table":
            return mixed_log_prob(x, params, self.layout.num_index.to(x.device), self._cats,
                                  self.num_scale(x))
        if self.config.likelihood == "logistic":
            mean, log_scale = params.chunk(2, dim=1)
            lp = discretized_logistic_log_prob(x, mean, log_scale)
        else:
            lp = bernoulli_log_prob(x, params)
        return lp.flatten(1).sum(1)

    def decode(self, z: Tensor, cond: Tensor | None = None, *, generator: torch.Generator | None = None) -> Tensor:
        """``uint8`` images from latents ``z`` (the mean image, or a pixel sample with ``sample_mode=sample``), or
        token windows ``(B, T)`` decoded step by step."""
        if self.spec.form == "tokens":
            return self._decode_tokens(z, generator)
        cond = None if not self.conditional else cond
        params = self._decode_params(z, cond)
        if self.grid:
            if self.config.sample_mode == "mean":
                return params.argmax(-1)
            probs = params.float().softmax(-1).reshape(-1, params.shape[-1])
            gen_device = generator.device if generator is not None else probs.device
            return torch.multinomial(probs.to(gen_device), 1, generator=generator).view(params.shape[:-1]).to(
                params.device)
        if self.spec.form == "table":
            x = sample_mixed(params, self.layout.num_index.to(z.device), self._cats, self.num_scale(z),
                             generator)
            return self.layout.set_label(x, cond)
        if self.config.likelihood == "logistic":
            mean, log_scale = params.chunk(2, dim=1)
            v = mean if self.config.sample_mode == "mean" else logistic_sample(mean, log_scale, generator)
            return to_uint8(v)
        probs = torch.sigmoid(params)
        if self.config.sample_mode == "sample":
            probs = (torch.rand(probs.shape, generator=generator, device=probs.device) < probs).float()
        return (probs * 255).round().to(torch.uint8)

    def interpolate(self, a: Tensor, b: Tensor, steps: int = 8, cond: Tensor | None = None) -> Tensor:
        """Decode ``steps`` points on the line between the posterior means of images ``a`` and ``b`` (each
        ``(C, H, W)``) → ``(steps, C, H, W)`` ``uint8``."""
        x = torch.stack([a, b]).to(self.device)
        c = None if cond is None else torch.as_tensor(cond, device=self.device).reshape(-1)[:1].expand(2)
        mu, _ = self.encode(x, c if self.conditional else None)
        t = torch.linspace(0, 1, steps, device=self.device)[:, None]
        z = (1 - t) * mu[0] + t * mu[1]
        return self.decode(z, None if c is None else c[:1].expand(steps))

    # -- contract ----------------------------------------------------------------------------------
    def loss(self, batch: Batch, group: str = "main") -> tuple[Tensor, dict[str, float]]:
        x, y = batch.x, batch.y if self.conditional else None
        mu, logvar = self.encode(x, y)
        z = mu + torch.exp(0.5 * logvar) * batch.randn(self.config.latent_dim)  # reparametrization
        rec = -self._log_px_z(x, z, y)  # (B,)
        pm, plv = self.prior_params(len(x), y)
        # KL(N(μ, σ²) ‖ N(m, s²)) = ½ Σ [log s² − log σ² + (σ² + (μ − m)²) / s² − 1], (B,)
        kl = 0.5 * (plv - logvar + (logvar.exp() + (mu - pm).pow(2)) / plv.exp() - 1.0).sum(1)
        d = self.spec.dims
        loss = (rec + self._beta() * kl).mean() / d
        nelbo_bpd = ((rec + kl).mean() / (d * math.log(2))).item()
        return loss, {"nelbo_bpd": nelbo_bpd, "rec": rec.mean().item(), "kl": kl.mean().item()}

    @torch.no_grad()
    def log_prob(self, x: Tensor, cond: Tensor | None = None, *, k: int | None = None) -> Tensor:
        """IWAE lower bound on ``log p(x)`` in nats, per example (with ``k`` importance samples)."""
        k = k or self.config.iwae_k
        y = cond if self.conditional else None
        mu, logvar = self.encode(x, y)
        std = torch.exp(0.5 * logvar)
        g = torch.Generator(device=x.device).manual_seed(0)
        chunk = max(1, 4096 // max(1, x.shape[0]))
        log_w = []
        for start in range(0, k, chunk):
            m = min(chunk, k - start)
            eps = torch.randn((m, *mu.shape), generator=g, device=x.device)  # (m, B, L)
            z = mu + std * eps
            xs = x.expand(m, *x.shape).reshape(-1, *x.shape[1:])
            ys = None if y is None else y.expand(m, *y.shape).reshape(-1)
            log_px = self._log_px_z(xs, z.reshape(-1, z.shape[-1]), ys).view(m, -1)
            pm, plv = self.prior_params(x.shape[0], y)
            log_pz = -0.5 * ((z - pm).pow(2) / plv.exp() + plv + LOG_2PI).sum(-1)
            log_qz = -0.5 * (eps.pow(2) + LOG_2PI + logvar).sum(-1)
            log_w.append(log_px + log_pz - log_qz)  # (m, B)
        return torch.logsumexp(torch.cat(log_w), dim=0) - math.log(k)

    @torch.no_grad()
    def sample(self, n: int, cond: Tensor | None = None, *, generator: torch.Generator | None = None) -> Tensor:
        cond = self.check_cond(n, cond, generator)
        z = torch.randn((n, self.config.latent_dim), generator=generator,
                        device=generator.device if generator else "cpu").to(self.device)
        pm, plv = self.prior_params(n, cond)
        return self.decode(pm + (0.5 * plv).exp() * z, cond, generator=generator)

    # -- latent space --------------------------------------------------------------------------------
    def _labels_for(self, n: int, cond: Tensor | None) -> Tensor | None:
        if not self.conditional:
            return None
        if cond is None:
            raise CapabilityError("this VAE is class-conditional: give the labels (--label) to encode or decode, or "
                                  "train it with --no-conditional")
        return self.check_cond(n, cond, None)

    @torch.no_grad()
    def to_latent(self, x: Tensor, cond: Tensor | None = None) -> Tensor:
        """Posterior means ``μ`` ``(B, latent_dim)`` of ``uint8`` images (a conditional VAE needs their labels)."""
        return self.encode(x.to(self.device), self._labels_for(x.shape[0], cond))[0]

    @torch.no_grad()
    def from_latent(self, z: Tensor, cond: Tensor | None = None) -> Tensor:
        """Mean images from latents ``z`` (a conditional VAE needs labels)."""
        return self.decode(z.to(self.device), self._labels_for(z.shape[0], cond))

    # -- token sequences ---------------------------------------------------------------------------
    def _init_tokens(self, config: VAEConfig, spec: DataSpec) -> None:
        """GRU encoder and latent-conditioned GRU decoder for token windows (the MOSES VAE's shape)."""
        self.seq_encoder = SeqEncoder(spec.levels, config.seq_embd, config.hidden, config.latent_dim)
        self.seq_decoder = SeqDecoder(spec.levels, config.seq_embd, config.seq_decoder, config.latent_dim,
                                      config.seq_layers)
        self.register_buffer("steps", torch.zeros((), dtype=torch.long))  # drives the KL warm-up
        self.prior = None  # token windows carry no class: the prior is N(0, I)
        self.grid = False

    def _beta(self) -> float | Tensor:
        """The KL weight now: ``beta``, reached linearly over ``kl_warmup`` training steps (Bowman et al. 2016,
        "Generating Sentences from a Continuous Space": the decoder learns to use z before the KL term can close
        the posterior). A tensor while warming up, so that a compiled loss reads the step without a graph break."""
        if not self.config.kl_warmup:
            return self.config.beta
        if self.training:
            self.steps += 1
        return self.config.beta * (self.steps / self.config.kl_warmup).clamp(max=1.0)

    def _log_px_z(self, x: Tensor, z: Tensor, cond: Tensor | None) -> Tensor:
        """log p(x | z) summed over dimensions → (B,)."""
        if self.spec.form != "tokens":
            return self._log_px(x, self._decode_params(z, cond))
        inputs = torch.cat([torch.zeros_like(x[:, :1]), x[:, :-1]], dim=1)  # <s> = <|endoftext|> = 0
        logits, _ = self.seq_decoder(inputs, z)  # (B, T, V)
        nll = torch.nn.functional.cross_entropy(logits.float().flatten(0, 1), x.flatten(), reduction="none")
        return -nll.view_as(x).sum(1)

    def _decode_tokens(self, z: Tensor, generator: torch.Generator | None) -> Tensor:
        """Token windows ``(B, T)`` from latents: the most likely or a sampled next token each step, from the
        start token; everything after the first ``<|endoftext|>`` is ``<|endoftext|>``."""
        ids = torch.zeros((len(z), 1), dtype=torch.long, device=z.device)
        state = None
        out = []
        for _ in range(self.spec.shape[0]):
            logits, state = self.seq_decoder(ids, z, state)
            logits = logits[:, -1].float()
            if self.config.sample_mode == "mean":
                ids = logits.argmax(-1, keepdim=True)
            else:
                probs = logits.softmax(-1)
                dev = generator.device if generator is not None else probs.device
                ids = torch.multinomial(probs.to(dev), 1, generator=generator).to(z.device)
            out.append(ids)
        x = torch.cat(out, dim=1)
        return x.masked_fill(torch.cumsum(x == 0, dim=1) > 0, 0)


class LogScale(torch.nn.Module):
    """A learned log standard deviation per numeric column of a table (TVAE's σ), clamped to [-7, 2]: a module of
    its own, called on the batch, so that DP-SGD (Opacus) gives it per-example gradients like every other layer."""

    def __init__(self, n: int) -> None:
        super().__init__()
        self.value = torch.nn.Parameter(torch.full((n,), math.log(0.1)))

    def forward(self, like: Tensor) -> Tensor:
        """``(B, n)``: the log-scales, one row per row of ``like``."""
        return self.value.clamp(-7.0, 2.0).expand(like.shape[0], -1)


def _lengths(x: Tensor) -> Tensor:
    """Tokens of each window up to and including its first ``<|endoftext|>`` (id 0), or all of them → ``(B,)``."""
    end = (x == 0).int().argmax(1) + 1
    return torch.where((x == 0).any(1), end, torch.full_like(end, x.shape[1]))
