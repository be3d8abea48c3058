"""Semi-supervised VAE (Kingma et al.'s M2): the label is a latent variable, observed for a few examples.

Generative model ``p(y) p(z) p(x | y, z)`` with a uniform class prior, a standard-normal ``z`` and the VAE's conv
decoder (discretized logistic on 8-bit pixels, or Bernoulli); inference ``q(y | x) q(z | x, y)`` where ``q(y | x)``
is the small CNN of :class:`genlab.metrics.classifier.DigitCNN` — the classifier is what this family is trained for
(:meth:`SSVAE.classify`). Per example the loss is

* labelled ``(x, y)``: ``-L(x, y)`` with ``L(x, y) = E_q[log p(x|y,z)] + log p(y) - KL(q(z|x,y) ‖ p(z))``;
* unlabelled ``x``: ``U(x) = Σ_y q(y|x) (-L(x, y)) - H(q(y|x))`` (the label summed out, one decoder pass per class);

averaged over the batch in nats per dimension, plus ``alpha ·`` the cross-entropy of ``q(y|x)`` on the labelled
examples of the batch (the auxiliary classification loss of the paper's eq. 9, which gives ``q(y|x)`` a direct
signal from the labels).

Which labels are seen: ``--labels N`` keeps ``N`` of the training labels, spread evenly over the classes and chosen
by a seeded per-class permutation that depends only on the labels, ``N`` and ``--label-seed``
(:func:`genlab.data.labels.labelled_subset`); the others are hidden before training. Every batch takes
``--labelled-share`` of its examples from the labelled ones (cycled) and the rest from all examples with their labels
hidden. Without ``--labels`` every label is used.

References:
    Kingma, Rezende, Mohamed & Welling, "Semi-Supervised Learning with Deep Generative Models", NeurIPS 2014,
    arXiv:1406.5298 (the M2 model, eqs. 6-9).
    Burda et al., "Importance Weighted Autoencoders", 2016, arXiv:1509.00519 (the NLL bound in ``log_prob``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import torch
import torch.nn.functional as F
from torch import Tensor

from genlab.config import check
from genlab.core import Batch, DataSpec, GenerativeModel, register_model
from genlab.data import Dataset
from genlab.data.images import to_model, to_uint8
from genlab.data.labels import UNLABELLED, semi_supervised
from genlab.distributions import bernoulli_log_prob, discretized_logistic_log_prob, logistic_sample
from genlab.errors import DataError
from genlab.metrics.classifier import DigitCNN
from genlab.nn.conv import ConvDecoder, ConvEncoder

LOG_2PI = math.log(2 * math.pi)


@dataclass(frozen=True)
class SSVAEConfig:
    """Semi-supervised VAE hyper-parameters.

    Arguments:
        labels: training labels kept (spread evenly over the classes); None keeps every label.
        label_seed: seed of the per-class choice of the kept labels.
        labelled_share: share of every training batch drawn from the labelled examples.
        alpha: weight of the auxiliary cross-entropy of ``q(y|x)`` on labelled examples (the ELBO terms are in
            nats per dimension, the cross-entropy in nats per example).
        latent_dim: size of the Gaussian latent z.
        widths: conv channels per resolution level of the encoder (the decoder mirrors them).
        hidden: width of the encoder's feature vector.
        classifier_features: width of the classifier's feature layer.
        likelihood: ``logistic`` (discretized logistic on 8-bit pixels) or ``bernoulli`` (use with ``--binarize``).
        iwae_k: importance samples per class of the test NLL bound (``log_prob``).
        sample_mode: ``mean`` decodes to the decoder's mean image; ``sample`` also samples the pixel noise.
    """

    labels: int | None = None
    label_seed: int = 0
    labelled_share: float = 0.25
    alpha: float = 1.0
    latent_dim: int = 32
    widths: tuple[int, ...] = (32, 64)
    hidden: int = 256
    classifier_features: int = 128
    likelihood: Literal["logistic", "bernoulli"] = "logistic"
    iwae_k: int = 16
    sample_mode: Literal["mean", "sample"] = "mean"

    def __post_init__(self) -> None:
        check(self.labels is None or self.labels > 0, f"--labels must be positive, got {self.labels}")
        check(0 < self.labelled_share <= 1, f"--labelled-share must be in (0, 1], got {self.labelled_share}")
        check(self.alpha >= 0, "--alpha must be >= 0")
        check(self.latent_dim > 0, "--latent-dim must be positive")
        check(len(self.widths) > 0 and min(self.widths) > 0, "--widths must be positive integers")
        check(self.hidden > 0 and self.classifier_features > 0, "--hidden/--classifier-features must be positive")
        check(self.iwae_k >= 1, "--iwae-k must be >= 1")


@register_model("ssvae")
class SSVAE(GenerativeModel):
    """M2: classifier ``q(y|x)``, encoder ``q(z|x,y)``, decoder ``p(x|y,z)``; samples by class.

    ``log_prob(x, y)`` is the IWAE bound on ``log p(x | y)``; ``log_prob(x)`` the bound on ``log p(x) =
    log Σ_y p(y) p(x | y)``. The latent code of :meth:`to_latent` is ``[μ_z, q(y|x)]``: the style and the class
    probabilities, so moving it along a class direction changes the digit and keeps the style.
    """

    config_cls = SSVAEConfig
    likelihood_bound = True
    latent_space = True
    latent_path = "linear"
    classifies = True
    train_defaults: ClassVar[dict[str, Any]] = {"lr": 1e-3}

    def __init__(self, config: SSVAEConfig, spec: DataSpec) -> None:
        super().__init__(config, spec)
        if spec.num_classes < 2:
            raise DataError("ssvae learns a classifier and needs labelled data with at least 2 classes; give a "
                            "labelled dataset (class subfolders, an .npz with y, mnist, digits)")
        c, h, w = spec.shape
        k = spec.num_classes
        self.classifier = DigitCNN(c, k, config.classifier_features)
        self.encoder = ConvEncoder(c, (h, w), config.widths, config.hidden)
        self.head = torch.nn.Linear(config.hidden + k, 2 * config.latent_dim)
        out_ch = 2 * c if config.likelihood == "logistic" else c
        self.decoder = ConvDecoder(config.latent_dim + k, out_ch, (h, w), tuple(reversed(config.widths)))

    @property
    def conditional(self) -> bool:
        """Always: the class is part of the model and samples are drawn by class."""
        return True

    # -- pieces --------------------------------------------------------------------------------------
    def classify(self, x: Tensor) -> Tensor:
        """Class probabilities ``q(y | x)`` ``(B, K)`` of ``uint8`` images ``x``."""
        return torch.softmax(self.classifier(x), dim=1)

    def _onehot(self, y: Tensor) -> Tensor:
        return F.one_hot(y.long(), self.spec.num_classes).float()

    def _features(self, x: Tensor) -> Tensor:
        return F.silu(self.encoder(to_model(x)))  # (B, hidden)

    def _posterior(self, feats: Tensor, y_vec: Tensor) -> tuple[Tensor, Tensor]:
        mu, logvar = self.head(torch.cat([feats, y_vec], dim=1)).chunk(2, dim=1)
        return mu, logvar.clamp(-12.0, 8.0)

    def _log_px(self, x: Tensor, z: Tensor, y_vec: Tensor) -> Tensor:
        """log p(x | y, z) summed over dimensions → (B,)."""
        params = self.decoder(torch.cat([z, y_vec], dim=1))
        if self.config.likelihood == "logistic":
            mean, log_scale = params.chunk(2, dim=1)
            lp = discretized_logistic_log_prob(x, mean, log_scale)
        else:
            lp = bernoulli_log_prob(x, params)
        return lp.flatten(1).sum(1)

    def _elbo(self, x: Tensor, feats: Tensor, y_vec: Tensor, eps: Tensor) -> Tensor:
        """One-sample ``L(x, y)`` per example (nats) with reparametrization noise ``eps`` ``(B, latent_dim)``."""
        mu, logvar = self._posterior(feats, y_vec)
        z = mu + torch.exp(0.5 * logvar) * eps
        kl = 0.5 * (mu.pow(2) + logvar.exp() - 1.0 - logvar).sum(1)  # KL(q(z|x,y) || N(0, I))
        return self._log_px(x, z, y_vec) - kl - math.log(self.spec.num_classes)  # + log p(y), uniform

    def _decode(self, z: Tensor, y_vec: Tensor, generator: torch.Generator | None = None) -> Tensor:
        params = self.decoder(torch.cat([z, y_vec], dim=1))
        if self.config.likelihood == "logistic":
            mean, log_scale = params.chunk(2, dim=1)
            v = mean if self.config.sample_mode == "mean" else logistic_sample(mean, log_scale, generator)
            return to_uint8(v)
        probs = torch.sigmoid(params)
        if self.config.sample_mode == "sample":
            probs = (torch.rand(probs.shape, generator=generator, device=probs.device) < probs).float()
        return (probs * 255).round().to(torch.uint8)

    # -- training data -------------------------------------------------------------------------------
    def training_data(self, train: Dataset) -> Dataset:
        """All but ``--labels`` of the labels hidden (see the module docstring); every label without it."""
        if self.config.labels is None:
            return train
        return semi_supervised(train, self.config.labels, self.config.label_seed, self.config.labelled_share)

    # -- contract ----------------------------------------------------------------------------------
    def loss(self, batch: Batch, group: str = "main") -> tuple[Tensor, dict[str, float]]:
        x = batch.x
        b, k, d = x.shape[0], self.spec.num_classes, self.spec.dims
        y = batch.y if batch.y is not None else torch.full((b,), UNLABELLED, dtype=torch.long, device=x.device)
        eps = batch.randn(k, self.config.latent_dim)  # (B, K, L): one draw per example and class
        lab = y >= 0
        feats = self._features(x)
        logits = self.classifier(x)
        total = x.new_zeros((), dtype=torch.float32)
        logs: dict[str, float] = {}
        if lab.any():
            yl = y[lab]
            elbo = self._elbo(x[lab], feats[lab], self._onehot(yl), eps[lab, 0])
            ce = F.cross_entropy(logits[lab], yl, reduction="none")
            total = total + (-elbo).sum() / d + self.config.alpha * ce.sum()
            logs["nelbo_bpd"] = float(-elbo.detach().mean()) / (d * math.log(2))
            logs["ce"] = float(ce.detach().mean())
            logs["acc"] = float((logits[lab].argmax(1) == yl).float().mean())
        if (~lab).any():
            xu, fu, n = x[~lab], feats[~lab], int((~lab).sum())
            classes = torch.arange(k, device=x.device).repeat(n)  # (n·K,)
            elbo_u = self._elbo(xu.repeat_interleave(k, 0), fu.repeat_interleave(k, 0), self._onehot(classes),
                                eps[~lab].reshape(n * k, -1)).view(n, k)
            log_q = F.log_softmax(logits[~lab], dim=1)
            q = log_q.exp()
            u = (q * (-elbo_u + log_q)).sum(1)  # Σ_y q(y|x)(-L(x,y)) - H(q(y|x))
            total = total + u.sum() / d
            logs["u_bpd"] = float(u.detach().mean()) / (d * math.log(2))
        return total / b, logs

    @torch.no_grad()
    def log_prob(self, x: Tensor, cond: Tensor | None = None, *, k: int | None = None) -> Tensor:
        """IWAE bound (nats per example) on ``log p(x | y)`` for labels ``cond``, else on ``log p(x)``."""
        k = k or self.config.iwae_k
        x = x.to(self.device)
        feats = self._features(x)
        if cond is not None:
            y = torch.as_tensor(cond, dtype=torch.long, device=x.device).reshape(-1).expand(x.shape[0])
            return self._iwae(x, feats, self._onehot(y), k)
        per_class = [self._iwae(x, feats, self._onehot(torch.full((x.shape[0],), c, device=x.device)), k)
                     for c in range(self.spec.num_classes)]
        return torch.logsumexp(torch.stack(per_class), dim=0) - math.log(self.spec.num_classes)

    def _iwae(self, x: Tensor, feats: Tensor, y_vec: Tensor, k: int) -> Tensor:
        """``log (1/k) Σ_i p(x, z_i | y) / q(z_i | x, y)`` per example (noise seeded alike for every class, so the
        marginal is exactly the log-mean-exp of the conditional bounds)."""
        g = torch.Generator(device=x.device).manual_seed(0)
        mu, logvar = self._posterior(feats, y_vec)
        std = torch.exp(0.5 * logvar)
        log_w = []
        for _ in range(k):
            eps = torch.randn(mu.shape, generator=g, device=x.device)
            z = mu + std * eps
            log_pz = -0.5 * (z.pow(2) + LOG_2PI).sum(-1)
            log_qz = -0.5 * (eps.pow(2) + LOG_2PI + logvar).sum(-1)
            log_w.append(self._log_px(x, z, y_vec) + log_pz - log_qz)
        return torch.logsumexp(torch.stack(log_w), dim=0) - math.log(k)

    @torch.no_grad()
    def sample(self, n: int, cond: Tensor | None = None, *, generator: torch.Generator | None = None) -> Tensor:
        y = self.check_cond(n, cond, generator)
        assert y is not None
        z = torch.randn((n, self.config.latent_dim), generator=generator,
                        device=generator.device if generator else "cpu").to(self.device)
        return self._decode(z, self._onehot(y), generator)

    # -- latent space --------------------------------------------------------------------------------
    @torch.no_grad()
    def to_latent(self, x: Tensor, cond: Tensor | None = None) -> Tensor:
        """``[μ_z, q(y|x)]`` ``(B, latent_dim + K)``; with labels ``cond`` their one-hot vectors replace q(y|x)."""
        x = x.to(self.device)
        y_vec = self.classify(x) if cond is None else self._onehot(
            torch.as_tensor(cond, device=x.device).reshape(-1).expand(x.shape[0]))
        mu, _ = self._posterior(self._features(x), y_vec)
        return torch.cat([mu, y_vec], dim=1)

    @torch.no_grad()
    def from_latent(self, z: Tensor, cond: Tensor | None = None) -> Tensor:
        """Mean images from ``[z, class weights]`` codes; labels ``cond`` replace the class part."""
        zz, y_vec = z[:, : self.config.latent_dim], z[:, self.config.latent_dim :]
        if cond is not None:
            y_vec = self._onehot(torch.as_tensor(cond, device=z.device).reshape(-1).expand(z.shape[0]))
        return self._decode(zz, y_vec)
