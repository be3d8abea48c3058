"""GAN for images: spectral-norm discriminator with hinge loss (or WGAN-GP), projection conditioning; and for
tables (CTGAN-like): a residual MLP generator with Gumbel-softmax categories, a PacGAN MLP critic, and a conditional
vector over the categorical columns learned by training-by-sampling.

The two players are two param groups (``d`` then ``g``) stepped by the one trainer; sampling uses the trainer's
EMA of the weights (Yazıcı et al. 2019, arXiv:1806.04498) when EMA is on.

References:
    Goodfellow et al., "Generative Adversarial Nets", 2014, arXiv:1406.2661.
    Miyato et al., "Spectral Normalization for GANs", 2018, arXiv:1802.05957 (SN, hinge loss).
    Miyato & Koyama, "cGANs with Projection Discriminator", 2018, arXiv:1802.05637.
    Gulrajani et al., "Improved Training of Wasserstein GANs", 2017, arXiv:1704.00028 (WGAN-GP).
    Xu et al., "Modeling Tabular Data using Conditional GAN" (CTGAN), 2019, arXiv:1907.00503.
    Lin et al., "PacGAN: The power of two samples in generative adversarial networks", 2018, arXiv:1712.04086.
    Jang et al., "Categorical Reparameterization with Gumbel-Softmax", 2017, arXiv:1611.01144.
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
from genlab.data.tables import Block, TableLayout
from genlab.errors import CapabilityError
from genlab.nn.conv import ConvDecoder, ConvEncoder, cat_cond, class_embedding
from genlab.nn.mlp import MLP, ResidualMLP


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
        mlp_widths: hidden layers of the generator and the critic on tables.
        pac: rows the critic judges together on tables (PacGAN).
        tau: Gumbel-softmax temperature of generated categories on tables.
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
    mlp_widths: tuple[int, ...] = (256, 256)
    pac: int = 10
    tau: float = 0.2

    def __post_init__(self) -> None:
        check(self.z_dim > 0, "--z-dim must be positive")
        check(self.pac >= 1 and self.tau > 0, "--pac must be >= 1 and --tau positive")
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


class TableCritic(nn.Module):
    """PacGAN critic on table rows: ``pac`` rows (each with its conditional vector) side by side → one score, plus a
    projection term on the rows' mean class embedding.

    Arguments:
        cfg: the GAN config (``mlp_widths``, ``d_features``, ``pac``, ``spectral_norm``).
        width: size of one row with its conditional vector.
        num_classes: labels for the projection term (0 for none).
    """

    def __init__(self, cfg: GANConfig, width: int, num_classes: int) -> None:
        super().__init__()
        self.pac = cfg.pac
        sn = spectral_norm if cfg.spectral_norm else (lambda m: m)
        self.phi = MLP(cfg.pac * width, cfg.d_features, cfg.mlp_widths, act="lrelu", spectral=cfg.spectral_norm)
        self.psi = sn(nn.Linear(cfg.d_features, 1))
        self.embed = sn(nn.Embedding(num_classes, cfg.d_features)) if num_classes else None

    def forward(self, v: Tensor, y: Tensor | None) -> Tensor:
        b = v.shape[0]
        pad = (-b) % self.pac  # a batch that does not fill the last pack repeats its first rows
        if pad:
            v = torch.cat([v, v[:pad]])
            y = None if y is None else torch.cat([y, y[:pad]])
        f = F.leaky_relu(self.phi(v.reshape(-1, self.pac * v.shape[1])), 0.2)  # (B / pac, F)
        out = self.psi(f).squeeze(1)
        if self.embed is not None and y is not None:
            out = out + (self.embed(y).view(-1, self.pac, f.shape[1]).mean(1) * f).sum(1)
        return out  # (B / pac,)


@register_model("gan")
class GAN(GenerativeModel):
    """Generator G(z, y) → image in [-1, 1] (tanh), discriminator as :class:`Discriminator`."""

    config_cls = GANConfig
    data_forms = ("image", "table")
    #: on tables, ``inpaint`` fills the other columns given categorical ones through the conditional vector
    inpainting_by_form: ClassVar[dict[str, bool]] = {"table": True}
    progress_group = "d"
    private_groups = ("d", "g")  # D reads real images; G's loss reads the real labels of conditional batches
    train_defaults: ClassVar[dict[str, Any]] = {"lr": 2e-4, "betas": (0.5, 0.999), "ema_decay": 0.999}
    legacy_options: ClassVar[dict[str, Any]] = {"minibatch_std": False}  # runs from before --minibatch-std

    def __init__(self, config: GANConfig, spec: DataSpec) -> None:
        super().__init__(config, spec)
        k = spec.num_classes if config.conditional else 0
        self.g_emb = class_embedding(k, config.class_dim)
        cdim = config.class_dim if self.g_emb is not None else 0
        self.generator: nn.Module
        self.discriminator: nn.Module
        if spec.form == "table":
            self.layout = TableLayout.of(spec)
            label = self.layout.blocks[self.layout.label] if self.layout.label is not None and k else None
            #: blocks the conditional vector covers: categories and missingness, not modes nor the label
            self.cond_blocks: list[Block] = [b for b in self.layout.cats if b.role in ("category", "missing")
                                             and b is not label]
            self.cond_dim = sum(b.width for b in self.cond_blocks)
            self.generator = ResidualMLP(config.z_dim + cdim + self.cond_dim, spec.dims, config.mlp_widths)
            self.discriminator = TableCritic(config, spec.dims + self.cond_dim, k)
            return
        c, h, w = spec.shape
        self.generator = ConvDecoder(config.z_dim + cdim, c, (h, w), config.g_widths, act="relu")
        self.discriminator = Discriminator(config, spec, k)

    def param_groups(self) -> dict[str, list[nn.Parameter]]:
        g = [*self.generator.parameters(), *(self.g_emb.parameters() if self.g_emb is not None else [])]
        return {"d": list(self.discriminator.parameters()), "g": g}

    def generate(self, z: Tensor, y: Tensor | None) -> Tensor:
        """Model-space images in [-1, 1] from noise ``z`` (B, z_dim) and labels ``y``."""
        return torch.tanh(self.generator(cat_cond(z, self.g_emb, y)))

    def loss(self, batch: Batch, group: str = "main") -> tuple[Tensor, dict[str, float]]:
        if self.spec.form == "table":
            return self._table_loss(batch, group)
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
        if self.spec.form == "table":
            return self._table_sample(z, cond, self._draw_condvec(n, generator), generator)
        return to_uint8(self.generate(z, cond))

    # -- tables (CTGAN) ------------------------------------------------------------------------------
    def _table_raw(self, z: Tensor, y: Tensor | None, c: Tensor) -> Tensor:
        """Generator output ``(B, D)``: numbers, and logits at every one-hot block."""
        return self.generator(torch.cat([cat_cond(z, self.g_emb, y), c], dim=1))

    def _activate(self, raw: Tensor, uniform: Tensor) -> Tensor:
        """Gumbel-softmax (temperature ``tau``) on every one-hot block; numbers as they are."""
        out = raw.clone()
        for b in self.layout.cats:
            logits = raw[:, b.offset : b.offset + b.width]
            g = -torch.log(-torch.log(uniform[:, b.offset : b.offset + b.width].clamp(1e-10, 1 - 1e-7)))
            out[:, b.offset : b.offset + b.width] = F.softmax((logits + g) / self.config.tau, dim=1)
        return out

    def _condvec(self, x: Tensor, which: Tensor) -> tuple[Tensor, Tensor]:
        """The conditional vector ``(B, cond_dim)`` naming, per row, the level of block ``which[i]`` in ``x``, and
        that level as an index into the row of generator outputs (for the conditioning cross-entropy)."""
        c = x.new_zeros(x.shape[0], self.cond_dim)
        target = torch.zeros(x.shape[0], dtype=torch.long, device=x.device)
        off_c = 0
        for j, b in enumerate(self.cond_blocks):
            rows = which == j
            level = x[:, b.offset : b.offset + b.width].argmax(1)
            c[rows, off_c + level[rows]] = 1.0
            target[rows] = b.offset + level[rows]
            off_c += b.width
        return c, target

    def _table_loss(self, batch: Batch, group: str) -> tuple[Tensor, dict[str, float]]:
        """Training-by-sampling: each row names one categorical block; rows are resampled so that the named levels
        follow their log-frequencies (rare levels seen more often); the generator gets the conditional vector and
        must reproduce the named level (cross-entropy), the critic judges rows with their vectors."""
        x, y = batch.x, batch.y if self.conditional else None
        u = batch.rand(3)
        n_blocks = len(self.cond_blocks)
        if n_blocks:
            which = (u[:, 0] * n_blocks).long().clamp(max=n_blocks - 1)
            weight = torch.ones(x.shape[0], device=x.device)
            for j, b in enumerate(self.cond_blocks):  # log-frequency over frequency of each row's named level
                f = torch.tensor(b.freq or [1.0 / b.width] * b.width, device=x.device)
                lf = torch.log1p(f * 1000.0)
                lf = lf / lf.sum()
                level = x[:, b.offset : b.offset + b.width].argmax(1)
                rows = which == j
                weight[rows] = (lf[level] / f[level].clamp(min=1e-12))[rows]
            cdf = torch.cumsum(weight, 0) / weight.sum()
            pick = torch.searchsorted(cdf, u[:, 1].contiguous()).clamp(max=x.shape[0] - 1)
            x, which = x[pick], which[pick]
            y = None if y is None else y[pick]
            c, target = self._condvec(x, which)
        else:
            c, target = x.new_zeros(x.shape[0], 0), None
        z = batch.randn(self.config.z_dim)
        noise = batch.rand(self.spec.dims)
        d = self.discriminator
        if group == "d":
            with torch.no_grad():
                fake = self._activate(self._table_raw(z, y, c), noise)
            d_real, d_fake = d(torch.cat([x, c], 1), y), d(torch.cat([fake, c], 1), y)
            logs: dict[str, float] = {}
            if self.config.objective == "hinge":
                loss = F.relu(1.0 - d_real).mean() + F.relu(1.0 + d_fake).mean()
            else:
                loss = d_fake.mean() - d_real.mean()
                alpha = batch.rand(1)
                x_hat = (alpha * x + (1 - alpha) * fake).requires_grad_(True)
                (grad,) = torch.autograd.grad(d(torch.cat([x_hat, c], 1), y).sum(), x_hat, create_graph=True)
                gp = (grad.norm(dim=1) - 1).pow(2).mean()
                loss = loss + self.config.gp_weight * gp
                logs["gp"] = gp.item()
            return loss, {**logs, "d_real": d_real.mean().item(), "d_fake": d_fake.mean().item()}
        if group == "g":
            raw = self._table_raw(z, y, c)
            fake = self._activate(raw, noise)
            loss = -d(torch.cat([fake, c], 1), y).mean()
            if target is not None:
                ce = self._cond_loss(raw, target)
                loss = loss + ce
                return loss, {"cond_ce": ce.item()}
            return loss, {}
        raise ValueError(f"GAN has param groups 'd' and 'g', not {group!r}")

    def _cond_loss(self, raw: Tensor, target: Tensor) -> Tensor:
        """Mean cross-entropy of each row's named level under the generator's logits of that block."""
        total = raw.new_zeros(())
        for b in self.cond_blocks:
            rows = (target >= b.offset) & (target < b.offset + b.width)
            if rows.any():
                total = total + F.cross_entropy(raw[rows, b.offset : b.offset + b.width], target[rows] - b.offset,
                                                reduction="sum")
        return total / raw.shape[0]

    def _draw_condvec(self, n: int, generator: torch.Generator | None) -> Tensor:
        """Conditional vectors as CTGAN samples them: a block uniformly, its level by its training frequency."""
        dev = generator.device if generator is not None else "cpu"
        c = torch.zeros(n, self.cond_dim)
        if not self.cond_blocks:
            return c.to(self.device)
        which = torch.randint(0, len(self.cond_blocks), (n,), generator=generator, device=dev).cpu()
        off = 0
        for j, b in enumerate(self.cond_blocks):
            f = torch.tensor(b.freq or [1.0 / b.width] * b.width, dtype=torch.float64)
            level = torch.multinomial(f.to(dev), n, replacement=True, generator=generator).cpu()
            rows = which == j
            c[rows, off + level[rows]] = 1.0
            off += b.width
        return c.to(self.device)

    def _table_sample(self, z: Tensor, y: Tensor | None, c: Tensor, generator: torch.Generator | None) -> Tensor:
        raw = self._table_raw(z, y, c)
        dev = generator.device if generator is not None else raw.device
        uniform = torch.rand(raw.shape, generator=generator, device=dev).to(raw)
        out = raw.clone()
        for b in self.layout.cats:  # Gumbel-max: a draw from each block's softmax
            g = -torch.log(-torch.log(uniform[:, b.offset : b.offset + b.width].clamp(1e-10, 1 - 1e-7)))
            k = (raw[:, b.offset : b.offset + b.width] + g).argmax(1)
            out[:, b.offset : b.offset + b.width] = F.one_hot(k, b.width).to(raw)
        return self.layout.set_label(out, y)

    @torch.no_grad()
    def inpaint(self, x: Tensor, keep: Tensor, cond: Tensor | None = None, *,
                generator: torch.Generator | None = None) -> Tensor:
        """Table rows equal to ``x`` where ``keep`` is True, the rest generated with the conditional vector set to
        the kept categorical blocks (CTGAN's conditional generation; several blocks at once is a steer, not exact).

        Raises:
            CapabilityError: on images.
        """
        if self.spec.form != "table":
            raise CapabilityError("a GAN cannot inpaint images; use a diffusion run")
        n = x.shape[0]
        y = self.check_cond(n, cond, generator)
        keep = torch.as_tensor(keep, dtype=torch.bool, device=self.device).expand_as(x)
        kept = [b for b in self.cond_blocks if bool(keep[0, b.offset])]
        if kept:
            c = torch.zeros(n, self.cond_dim, device=self.device)
            off = 0
            for b in self.cond_blocks:
                if b in kept:
                    c[:, off : off + b.width] = x[:, b.offset : b.offset + b.width]
                off += b.width
        else:
            c = self._draw_condvec(n, generator)
        z = torch.randn((n, self.config.z_dim), generator=generator,
                        device=generator.device if generator else "cpu").to(self.device)
        return torch.where(keep, x.to(self.device), self._table_sample(z, y, c, generator))
