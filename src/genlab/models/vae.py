"""Variational autoencoder for 8-bit images with a discretized-logistic (or Bernoulli) decoder, and for tables
(TVAE-like: MLP encoder/decoder, Gaussian numbers with a learned scale each, categorical one-hot blocks).

References:
    Kingma & Welling, "Auto-Encoding Variational Bayes", 2014, arXiv:1312.6114.
    Higgins et al., "β-VAE", ICLR 2017.
    Burda et al., "Importance Weighted Autoencoders", 2016, arXiv:1509.00519 (the test-NLL bound).
    Salimans et al., "PixelCNN++", 2017, arXiv:1701.05517 (discretized logistic likelihood).
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
from genlab.nn.conv import ConvDecoder, ConvEncoder, cat_cond, class_embedding
from genlab.nn.mlp import MLP

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
        iwae_k: importance samples for the test NLL bound (``log_prob``).
        sample_mode: ``mean`` decodes to the decoder's mean image; ``sample`` also samples the pixel noise (tables
            always sample their numbers and categories).
    """

    latent_dim: int = 32
    widths: tuple[int, ...] = (32, 64, 128)
    hidden: int = 256
    beta: float = 1.0
    likelihood: Literal["logistic", "bernoulli"] = "logistic"
    conditional: bool = True
    class_dim: int = 16
    iwae_k: int = 100
    sample_mode: Literal["mean", "sample"] = "mean"

    def __post_init__(self) -> None:
        check(self.latent_dim > 0, "--latent-dim must be positive")
        check(len(self.widths) > 0 and min(self.widths) > 0, "--widths must be positive integers")
        check(self.beta >= 0, "--beta must be >= 0")
        check(self.iwae_k >= 1, "--iwae-k must be >= 1")


@register_model("vae")
class VAE(GenerativeModel):
    """Convolutional VAE: Gaussian encoder q(z|x,y), standard-normal prior, per-pixel decoder p(x|z,y).

    ``loss`` is the negative (β-)ELBO in nats per dimension; ``log_prob`` is the IWAE bound
    ``log p(x) ≥ E[log (1/k) Σ_i p(x, z_i) / q(z_i | x)]`` (a lower bound, tighter as k grows).
    """

    config_cls = VAEConfig
    data_forms = ("image", "table")
    likelihood_bound = True
    latent_space = True
    train_defaults: ClassVar[dict[str, Any]] = {"lr": 1e-3}

    def __init__(self, config: VAEConfig, spec: DataSpec) -> None:
        super().__init__(config, spec)
        k = spec.num_classes if config.conditional else 0
        self.emb_enc = class_embedding(k, config.class_dim)
        self.emb_dec = class_embedding(k, config.class_dim)
        cdim = config.class_dim if self.emb_enc is not None else 0
        self.encoder: torch.nn.Module
        self.decoder: torch.nn.Module
        if spec.form == "table":  # TVAE: MLPs; the decoder outputs means at numbers and logits at categories
            self.layout = TableLayout.of(spec)
            self.encoder = MLP(spec.dims, config.hidden, (config.hidden,), act="relu")
            self.head = torch.nn.Linear(config.hidden + cdim, 2 * config.latent_dim)
            self.decoder = MLP(config.latent_dim + cdim, spec.dims, (config.hidden, config.hidden), act="relu")
            self.log_scale = torch.nn.Parameter(torch.full((len(self.layout.num_index),), math.log(0.1)))
            self._cats = [(b.offset, b.width) for b in self.layout.cats]
            return
        c, h, w = spec.shape
        self.encoder = ConvEncoder(c, (h, w), config.widths, config.hidden)
        self.head = torch.nn.Linear(config.hidden + cdim, 2 * config.latent_dim)
        out_ch = 2 * c if config.likelihood == "logistic" else c
        self.decoder = ConvDecoder(config.latent_dim + cdim, out_ch, (h, w), tuple(reversed(config.widths)))

    # -- encoder / decoder -----------------------------------------------------------------------
    def encode(self, x: Tensor, cond: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Posterior parameters ``(μ, log σ²)``, each ``(B, latent_dim)``, of ``uint8`` images ``x``."""
        feats = torch.nn.functional.silu(self.encoder(x if self.spec.form == "table" else to_model(x)))
        mu, logvar = self.head(cat_cond(feats, self.emb_enc, cond)).chunk(2, dim=1)
        return mu, logvar.clamp(-12.0, 8.0)

    def _decode_params(self, z: Tensor, cond: Tensor | None) -> Tensor:
        return self.decoder(cat_cond(z, self.emb_dec, cond))  # (B, 2C or C, H, W)

    def _log_px(self, x: Tensor, params: Tensor) -> Tensor:
        """log p(x | z) summed over dimensions → (B,)."""
        if self.spec.form == "table":
            return mixed_log_prob(x, params, self.layout.num_index.to(x.device), self._cats,
                                  self.log_scale.clamp(-7.0, 2.0))
        if self.config.likelihood == "logistic":
            mean, log_scale = params.chunk(2, dim=1)
            lp = discretized_logistic_log_prob(x, mean, log_scale)
        else:
            lp = bernoulli_log_prob(x, params)
        return lp.flatten(1).sum(1)

    def decode(self, z: Tensor, cond: Tensor | None = None, *, generator: torch.Generator | None = None) -> Tensor:
        """``uint8`` images from latents ``z`` (the mean image, or a pixel sample with ``sample_mode=sample``)."""
        cond = None if not self.conditional else cond
        params = self._decode_params(z, cond)
        if self.spec.form == "table":
            x = sample_mixed(params, self.layout.num_index.to(z.device), self._cats, self.log_scale.clamp(-7.0, 2.0),
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
        rec = -self._log_px(x, self._decode_params(z, y))  # (B,)
        kl = 0.5 * (mu.pow(2) + logvar.exp() - 1.0 - logvar).sum(1)  # KL(q(z|x) || N(0, I)), (B,)
        d = self.spec.dims
        loss = (rec + self.config.beta * kl).mean() / d
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
            log_px = self._log_px(xs, self._decode_params(z.reshape(-1, z.shape[-1]), ys)).view(m, -1)
            log_pz = -0.5 * (z.pow(2) + LOG_2PI).sum(-1)
            log_qz = -0.5 * (eps.pow(2) + LOG_2PI + logvar).sum(-1)
            log_w.append(log_px + log_pz - log_qz)  # (m, B)
        return torch.logsumexp(torch.cat(log_w), dim=0) - math.log(k)

    @torch.no_grad()
    def sample(self, n: int, cond: Tensor | None = None, *, generator: torch.Generator | None = None) -> Tensor:
        cond = self.check_cond(n, cond, generator)
        z = torch.randn((n, self.config.latent_dim), generator=generator,
                        device=generator.device if generator else "cpu").to(self.device)
        return self.decode(z, cond, generator=generator)
