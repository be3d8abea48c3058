"""GAN for images: spectral-norm discriminator with hinge loss (or WGAN-GP), projection conditioning.

The two players are two param groups (``d`` then ``g``) stepped by the one trainer; sampling uses the trainer's
EMA of the weights (Yazıcı et al. 2019, arXiv:1806.04498) when EMA is on.

References:
    Goodfellow et al., "Generative Adversarial Nets", 2014, arXiv:1406.2661.
    Miyato et al., "Spectral Normalization for GANs", 2018, arXiv:1802.05957 (SN, hinge loss).
    Miyato & Koyama, "cGANs with Projection Discriminator", 2018, arXiv:1802.05637.
    Gulrajani et al., "Improved Training of Wasserstein GANs", 2017, arXiv:1704.00028 (WGAN-GP).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils.parametrizations import spectral_norm

from genlab.config import check
from genlab.core import Batch, DataSpec, GenerativeModel, register_model
from genlab.data.images import to_model, to_uint8
from genlab.nn.conv import ConvDecoder, ConvEncoder, cat_cond, class_embedding


@dataclass(frozen=True)
class GANConfig:
    """GAN hyper-parameters.

    Arguments:
        z_dim: size of the generator's noise vector.
        g_widths: generator conv channels per level, lowest resolution first.
        d_widths: discriminator conv channels per level, highest resolution first.
        d_features: size of the discriminator's feature vector φ(x).
        objective: ``hinge`` (SNGAN) or ``wgan-gp``.
        gp_weight: gradient-penalty weight for ``wgan-gp``.
        spectral_norm: spectral normalization on every discriminator layer.
        conditional: class-conditional generator and projection discriminator when the data has labels.
        class_dim: size of the generator's class embedding.
        minibatch_std: give the discriminator the standard deviation of its features over groups of 4 images
            (ProGAN's minibatch standard deviation, arXiv:1710.10196, Sec. 3): a generator that draws one
            image per class is then easy to tell from real data, which counters collapse within a class.
    """

    z_dim: int = 64
    g_widths: tuple[int, ...] = (128, 64, 32)
    d_widths: tuple[int, ...] = (32, 64, 128)
    d_features: int = 256
    objective: Literal["hinge", "wgan-gp"] = "hinge"
    gp_weight: float = 10.0
    spectral_norm: bool = True
    conditional: bool = True
    class_dim: int = 32
    minibatch_std: bool = True

    def __post_init__(self) -> None:
        check(self.z_dim > 0, "--z-dim must be positive")
        check(len(self.g_widths) > 0 and len(self.d_widths) > 0, "--g-widths/--d-widths must not be empty")
        check(self.gp_weight >= 0, "--gp-weight must be >= 0")


class Discriminator(nn.Module):
    """D(x, y) = ψ(φ(x)) + ⟨embed(y), φ(x)⟩ (projection discriminator)."""

    def __init__(self, cfg: GANConfig, spec: DataSpec, num_classes: int) -> None:
        super().__init__()
        c, h, w = spec.shape
        sn = spectral_norm if cfg.spectral_norm else (lambda m: m)
        self.phi = ConvEncoder(c, (h, w), cfg.d_widths, cfg.d_features, norm="none", act="lrelu",
                               spectral=cfg.spectral_norm)
        self.mbstd = cfg.minibatch_std
        self.psi = sn(nn.Linear(cfg.d_features + int(cfg.minibatch_std), 1))
        self.embed = sn(nn.Embedding(num_classes, cfg.d_features)) if num_classes else None

    @staticmethod
    def minibatch_std(f: Tensor, group: int = 4) -> Tensor:
        """Mean over features of the standard deviation within groups of ``group`` rows → ``(B, 1)``."""
        b = f.shape[0]
        g = group if b % group == 0 else 1 if b < 2 else b
        std = f.view(g, b // g, -1).float().var(0, unbiased=False).add(1e-8).sqrt().mean(1)  # (B/g,)
        return std.repeat(g)[:, None].to(f.dtype)

    def forward(self, v: Tensor, y: Tensor | None) -> Tensor:
        f = F.leaky_relu(self.phi(v), 0.2)  # (B, F)
        out = self.psi(torch.cat([f, self.minibatch_std(f)], 1) if self.mbstd else f).squeeze(1)
        if self.embed is not None and y is not None:
            out = out + (self.embed(y) * f).sum(1)
        return out  # (B,)


@register_model("gan")
class GAN(GenerativeModel):
    """Generator G(z, y) → image in [-1, 1] (tanh), discriminator as :class:`Discriminator`."""

    config_cls = GANConfig
    progress_group = "d"
    private_groups = ("d", "g")  # D reads real images; G's loss reads the real labels of conditional batches
    train_defaults: ClassVar[dict[str, Any]] = {"lr": 2e-4, "betas": (0.5, 0.999), "ema_decay": 0.999}
    legacy_options: ClassVar[dict[str, Any]] = {"minibatch_std": False}  # runs from before --minibatch-std

    def __init__(self, config: GANConfig, spec: DataSpec) -> None:
        super().__init__(config, spec)
        c, h, w = spec.shape
        k = spec.num_classes if config.conditional else 0
        self.g_emb = class_embedding(k, config.class_dim)
        cdim = config.class_dim if self.g_emb is not None else 0
        self.generator = ConvDecoder(config.z_dim + cdim, c, (h, w), config.g_widths, act="relu")
        self.discriminator = Discriminator(config, spec, k)

    def param_groups(self) -> dict[str, list[nn.Parameter]]:
        g = [*self.generator.parameters(), *(self.g_emb.parameters() if self.g_emb is not None else [])]
        return {"d": list(self.discriminator.parameters()), "g": g}

    def generate(self, z: Tensor, y: Tensor | None) -> Tensor:
        """Model-space images in [-1, 1] from noise ``z`` (B, z_dim) and labels ``y``."""
        return torch.tanh(self.generator(cat_cond(z, self.g_emb, y)))

    def loss(self, batch: Batch, group: str = "main") -> tuple[Tensor, dict[str, float]]:
        y = batch.y if self.conditional else None
        z = batch.randn(self.config.z_dim)
        if group == "d":
            real = to_model(batch.x)
            with torch.no_grad():
                fake = self.generate(z, y)
            d_real, d_fake = self.discriminator(real, y), self.discriminator(fake, y)
            if self.config.objective == "hinge":
                loss = F.relu(1.0 - d_real).mean() + F.relu(1.0 + d_fake).mean()
                logs = {}
            else:
                loss = d_fake.mean() - d_real.mean()
                alpha = batch.rand(1, 1, 1)
                x_hat = (alpha * real + (1 - alpha) * fake).requires_grad_(True)
                (grad,) = torch.autograd.grad(self.discriminator(x_hat, y).sum(), x_hat, create_graph=True)
                gp = (grad.flatten(1).norm(dim=1) - 1).pow(2).mean()
                loss = loss + self.config.gp_weight * gp
                logs = {"gp": gp.item()}
            return loss, {**logs, "d_real": d_real.mean().item(), "d_fake": d_fake.mean().item()}
        if group == "g":
            return -self.discriminator(self.generate(z, y), y).mean(), {}
        raise ValueError(f"GAN has param groups 'd' and 'g', not {group!r}")

    @torch.no_grad()
    def sample(self, n: int, cond: Tensor | None = None, *, generator: torch.Generator | None = None) -> Tensor:
        cond = self.check_cond(n, cond, generator)
        z = torch.randn((n, self.config.z_dim), generator=generator,
                        device=generator.device if generator else "cpu").to(self.device)
        return to_uint8(self.generate(z, cond))
