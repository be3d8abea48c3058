"""Denoising diffusion on 8-bit images: ε/x₀/v-prediction, classifier-free guidance, RePaint inpainting and the
variational bound in bits/dim; absorbing-state (masked) diffusion on categorical grids (music), whose inpainting
is exact; and on tables (TabDDPM): Gaussian diffusion of the numbers and multinomial diffusion of every one-hot
block, with an MLP denoiser, the same samplers, guidance, inpainting of given columns and bound.

References:
    Ho et al., "Denoising Diffusion Probabilistic Models", 2020, arXiv:2006.11239.
    Nichol & Dhariwal, "Improved Denoising Diffusion Probabilistic Models", 2021, arXiv:2102.09672.
    Salimans & Ho, "Progressive Distillation for Fast Sampling of Diffusion Models", 2022, arXiv:2202.00512.
    Ho & Salimans, "Classifier-Free Diffusion Guidance", 2022, arXiv:2207.12598.
    Hang et al., "Efficient Diffusion Training via Min-SNR Weighting Strategy", 2023, arXiv:2303.09556.
    Lugmayr et al., "RePaint", 2022, arXiv:2201.09865.
    Song et al., "Denoising Diffusion Implicit Models", 2021, arXiv:2010.02502 (DDIM inversion: the latent space).
    Zhu et al., "DiffPIR", 2023, arXiv:2305.08995 (denoising with a data-consistency step).
    Sahoo et al., "Simple and Effective Masked Diffusion Language Models", 2024, arXiv:2406.07524 (grids).
    Kotelnikov et al., "TabDDPM: Modelling Tabular Data with Diffusion Models", 2023, arXiv:2209.15421.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from genlab.config import check
from genlab.core import Batch, DataSpec, GenerativeModel, register_model
from genlab.data.images import to_model, to_uint8
from genlab.data.tables import TableLayout
from genlab.distributions import discretized_logistic_log_prob
from genlab.errors import CapabilityError, ConfigError, DataError
from genlab.nn.grid import GridTransformer
from genlab.nn.mlp import DenoiserMLP, FlatDenoiser
from genlab.nn.unet import UNet
from genlab.samplers import SAMPLERS, NoiseSchedule, ddim_decode, ddim_invert, denoise_from, repaint, sample_loop
from genlab.samplers.absorbing import elbo_weight, mask_cells, unmask
from genlab.samplers.base import Denoiser, gaussian, progress
from genlab.samplers.invert import latent_timestep
from genlab.samplers.multinomial import MultinomialDiffusion
from genlab.samplers.schedules import Prediction, ScheduleKind

#: log of the logistic scale whose variance is 1: s = σ √3 / π
_LOGISTIC_LOG_SCALE = math.log(math.sqrt(3.0) / math.pi)

#: images denoised per U-Net call when sampling many (``-n 5000``): on a 2-core CPU one evaluation of the 28×28
#: U-Net costs 0.65 s per 100 images at a batch of 100, 0.71 at 250 and 1.0 at 1,000 (cache misses), so large
#: requests are denoised 100 at a time (``benchmarks/RESULTS.md``, issue 18)
SAMPLE_CHUNK = 100


@contextlib.contextmanager
def channels_last(net: torch.nn.Module) -> Iterator[None]:
    """Run ``net`` in channels-last memory format inside the block (oneDNN's fastest convolution layout on CPU for
    inference: 1.2–1.4× per U-Net evaluation here; not for training, where its GroupNorm backward is slower),
    restoring the default layout after. The values of the weights do not change."""
    net.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    try:
        yield
    finally:
        net.to(memory_format=torch.contiguous_format)  # type: ignore[call-overload]


@dataclass(frozen=True)
class DiffusionConfig:
    """Diffusion hyper-parameters (network, schedule, objective, conditioning, likelihood bound).

    Arguments:
        denoiser: the network on images: ``unet`` (convolutional, local: it composes training patches into new
            images) or ``mlp`` (TabDDPM's MLP over the flattened image, ``mlp_widths`` hidden layers: non-local,
            so on a small training set it approaches the empirical optimum, which only reproduces training
            images — the memorizing limit of Kamb & Ganguli 2024, arXiv:2412.20292). Pair it with
            ``prediction=x0``: ``v`` and ``eps`` ask the MLP for a near-identity map of the noisy image at low
            noise, which it learns slowly (on 100 mnist digits its v-loss stayed at 0.53–0.55 from step 500 to
            1,500, its x0-loss was 0.059 by step 300). It is a memorizing baseline for audits, not a source of
            fresh images: after 20 CPU-minutes on the 4,000 mnist digits 60 % of its samples were still copies
            (benchmarks/RESULTS.md). Tables always use the MLP.
        model_channels: base width of the U-Net.
        channel_mult: U-Net width multiplier per resolution level (each extra level halves the resolution).
        num_res_blocks: residual blocks per U-Net level.
        attn_resolutions: feature-map heights with self-attention.
        heads: attention heads.
        dropout: dropout in residual blocks.
        scale_shift: the time and class embedding scale and shift every residual block's normalized features
            (adaptive group norm, arXiv:2105.05233) instead of being added to them.
        num_timesteps: T, the number of discrete noise levels.
        schedule: ``linear`` (DDPM) or ``cosine`` (improved DDPM) noise schedule.
        prediction: what the network predicts: ``v`` (velocity, the default), ``eps`` (noise) or ``x0`` (clean
            image). ``v`` keeps the clean-image estimate well posed at the noisiest timesteps, where the cosine
            schedule's ``ᾱ`` is ~1e-5 and an ε-prediction's ``x̂_0 = (x_t − σ ε̂) / α`` amplifies every error by
            ``1/α`` (saturated blobs after clipping), and its uniform loss weights the clean-image error by
            ``SNR + 1``, so the class and the layout are learnt at high noise (arXiv:2202.00512, Sec. 4).
        loss_weighting: ``uniform`` — plain MSE on the prediction target; ``min_snr`` — Min-SNR-γ weights,
            which equalise the effective weight over timesteps for every parametrization.
        snr_gamma: γ of ``min_snr``.
        conditional: train class-conditionally when the data has labels (needed for guidance).
        label_dropout: probability of replacing a label by the null label in training (for guidance).
        bound_timesteps: timesteps per example in the Monte-Carlo estimate of the variational bound (eval).
        inversion_steps: DDIM steps between data and its latent noise (``to_latent`` / ``from_latent``).
        grid_width: width of the transformer denoiser on grid data (music); the U-Net options are for images.
        grid_layers: transformer blocks of the grid denoiser.
        mlp_widths: hidden layers of the MLP denoiser on tables and with ``denoiser=mlp`` (its embeddings have
            ``4 · model_channels`` units).
    """

    denoiser: Literal["unet", "mlp"] = "unet"
    model_channels: int = 32
    channel_mult: tuple[int, ...] = (1, 2, 2)
    num_res_blocks: int = 1
    attn_resolutions: tuple[int, ...] = (7,)
    heads: int = 4
    dropout: float = 0.0
    scale_shift: bool = True
    num_timesteps: int = 1000
    schedule: ScheduleKind = "cosine"
    prediction: Prediction = "v"
    loss_weighting: Literal["uniform", "min_snr"] = "uniform"
    snr_gamma: float = 5.0
    conditional: bool = True
    label_dropout: float = 0.1
    bound_timesteps: int = 8
    inversion_steps: int = 50
    grid_width: int = 128
    grid_layers: int = 4
    mlp_widths: tuple[int, ...] = (256, 256)

    def __post_init__(self) -> None:
        check(self.denoiser in ("unet", "mlp"), f"--denoiser must be unet or mlp, got {self.denoiser}")
        check(self.model_channels > 0, "--model-channels must be positive")
        check(len(self.channel_mult) > 0 and min(self.channel_mult) > 0, "--channel-mult must be positive integers")
        check(self.num_res_blocks >= 1, "--num-res-blocks must be >= 1")
        check(self.heads >= 1, "--heads must be >= 1")
        check(0 <= self.dropout < 1, "--dropout must be in [0, 1)")
        check(self.num_timesteps >= 2, f"--num-timesteps must be at least 2, got {self.num_timesteps}")
        check(self.schedule in ("linear", "cosine"), f"--schedule must be linear or cosine, got {self.schedule}")
        check(self.prediction in ("eps", "x0", "v"), f"--prediction must be eps, x0 or v, got {self.prediction}")
        check(self.snr_gamma > 0, "--snr-gamma must be positive")
        check(0 <= self.label_dropout < 1, "--label-dropout must be in [0, 1)")
        check(self.bound_timesteps >= 1, "--bound-timesteps must be >= 1")
        check(self.inversion_steps >= 1, "--inversion-steps must be >= 1")
        check(self.grid_width > 0 and self.grid_width % self.heads == 0,
              f"--grid-width must be a positive multiple of --heads {self.heads}")
        check(self.grid_layers >= 1, "--grid-layers must be >= 1")
        check(all(w > 0 for w in self.mlp_widths), "--mlp-widths must be positive integers")


@dataclass(frozen=True)
class DiffusionSampleOptions:
    """Sampling-time choices (``genlab sample RUN --sampler ddim --steps 25 --guidance 3``).

    Arguments:
        sampler: ``ddpm`` (ancestral), ``ddim`` (with ``eta``) or ``dpmpp_2m`` (DPM-Solver++(2M)).
        steps: network evaluations; None picks the sampler's default (all T for ddpm, 50 ddim, 25 dpmpp_2m; 64
            unmasking steps on grids, where the sampler is always the absorbing-state one).
        eta: DDIM stochasticity, 0 (deterministic) to 1 (DDPM-like).
        guidance: classifier-free guidance scale w, output ``(1 - w)·uncond + w·cond``: 0 is unconditional,
            1 plainly conditional, > 1 guided.
        clip_denoised: clamp the predicted clean image to [-1, 1] at every step.
        resample: RePaint resampling rounds per step (inpainting only).
        progress: show a progress bar (when stderr is a terminal).
        watermark: a secret key: start from Tree-Ring watermarked noise of that key (:mod:`genlab.audit.watermark`).
    """

    sampler: str = "dpmpp_2m"
    steps: int | None = None
    eta: float = 0.0
    guidance: float = 1.0
    clip_denoised: bool = True
    resample: int = 5
    progress: bool = True
    watermark: str | None = None

    def __post_init__(self) -> None:
        check(self.sampler in SAMPLERS,
              f"unknown --sampler '{self.sampler}'; choose one of: {', '.join(SAMPLERS)}")
        check(self.steps is None or self.steps >= 1, f"--steps must be at least 1, got {self.steps}")
        check(0 <= self.eta <= 1, f"--eta must be in [0, 1], got {self.eta}")
        check(math.isfinite(self.guidance), "--guidance must be a finite number")
        check(self.resample >= 1, f"--resample must be at least 1, got {self.resample}")
        check(self.watermark is None or bool(self.watermark.strip()), "--watermark must be a non-empty key")


_SO = DiffusionSampleOptions


@register_model("diffusion")
class Diffusion(GenerativeModel):
    """Gaussian diffusion with a U-Net denoiser over a discrete schedule of T noise levels.

    ``loss`` is the (optionally Min-SNR-weighted) MSE of the chosen prediction target at a uniformly drawn
    timestep (DDPM's L_simple). ``log_prob`` is a Monte-Carlo estimate of the negative variational bound
    ``-(L_T + Σ_{t≥1} L_t + L_0)`` on ``log P(x)`` of the discrete 8-bit image (see :meth:`log_prob`).

    On ``grid`` data (categorical cells, e.g. the SATB grid of a chorale) the model is :class:`MaskedGrid`
    instead: absorbing-state diffusion with a transformer denoiser.
    """

    config_cls = DiffusionConfig
    data_forms = ("image", "grid", "table")
    sample_options_cls = DiffusionSampleOptions
    likelihood_bound = True
    inpainting = True
    watermark = "tree-ring"
    private_groups = ("main",)
    denoising = True
    #: the latent of an image is the noise DDIM maps to it (``to_latent``: DDIM inversion)
    latent_space = True
    latent_by_form: ClassVar[dict[str, bool]] = {"grid": False, "table": False}
    train_defaults: ClassVar[dict[str, Any]] = {"lr": 1e-3, "warmup_steps": 100, "ema_decay": 0.999, "grad_clip": 1.0}
    legacy_options: ClassVar[dict[str, Any]] = {"scale_shift": False}  # runs from before --scale-shift

    grid: MaskedGrid | None

    def __init__(self, config: DiffusionConfig, spec: DataSpec) -> None:
        super().__init__(config, spec)
        if spec.form == "grid":
            self.grid = MaskedGrid(spec, config)
            return
        self.grid = None
        self.schedule = NoiseSchedule.make(config.schedule, config.num_timesteps)
        self.null_label = spec.num_classes  # index of the "no label" embedding used for guidance
        self.net: torch.nn.Module
        classes = spec.num_classes + 1 if self.conditional else 0  # label embeddings, with the null label
        if spec.form == "table":
            self.layout = TableLayout.of(spec)
            self.multinomial = MultinomialDiffusion(self.schedule)
            self.net = DenoiserMLP(spec.dims, config.mlp_widths, 4 * config.model_channels, classes, config.dropout)
            return
        if len(spec.shape) != 3:
            raise DataError(f"diffusion needs images of shape (C, H, W), got {spec.shape}")
        c, h, _ = spec.shape
        if config.denoiser == "mlp":
            self.net = FlatDenoiser(DenoiserMLP(spec.dims, config.mlp_widths, 4 * config.model_channels, classes,
                                                config.dropout))
            return
        self.net = UNet(c, c, h, config.model_channels, config.channel_mult, config.num_res_blocks,
                        config.attn_resolutions, classes, config.heads, config.dropout, config.scale_shift)

    # -- network ---------------------------------------------------------------------------------
    def forward_net(self, x: Tensor, t: Tensor, label: Tensor | None = None) -> Tensor:
        """Raw network output at ``x_t`` for integer timesteps ``t (B,)`` (time fed as ``t · 1000 / T``)."""
        time = t.float() * (1000.0 / self.config.num_timesteps)
        return self.net(x, time, label if self.conditional else None).float()

    def guided_output(self, x: Tensor, t: Tensor, label: Tensor | None, guidance: float = 1.0) -> Tensor:
        """Classifier-free guided output ``(1 - w)·f(x, ∅) + w·f(x, y)`` in the model's parametrization.

        ``w = 1`` (or an unconditional model / no label) costs one network call and ``w = 0`` one call with the
        null label, so both ends are exact; otherwise both are computed in one batched call.

        References:
            Ho & Salimans, 2022, arXiv:2207.12598 (eq. 6, with w here = 1 + w there).
        """
        if not self.conditional or label is None:
            if guidance != 1.0 and self.conditional:
                raise ConfigError("--guidance needs class labels; pass --label or drop --guidance")
            return self.forward_net(x, t, self._null(x.shape[0]) if self.conditional else None)
        if guidance == 1.0:
            return self.forward_net(x, t, label)
        null = self._null(x.shape[0])
        if guidance == 0.0:
            return self.forward_net(x, t, null)
        both = self.forward_net(torch.cat([x, x]), torch.cat([t, t]), torch.cat([label, null]))
        cond, uncond = both.chunk(2)
        return (1.0 - guidance) * uncond + guidance * cond

    def _null(self, n: int) -> Tensor:
        return torch.full((n,), self.null_label, dtype=torch.long, device=self.device)

    def denoiser(self, label: Tensor | None, guidance: float = 1.0, clip: bool = True) -> Denoiser:
        """The sampler-facing ``(x_t, t) -> (x̂_0, ε̂)`` with guidance and optional clipping of x̂_0."""

        def denoise(x: Tensor, t: int) -> tuple[Tensor, Tensor]:
            tt = torch.full((x.shape[0],), t, dtype=torch.long, device=x.device)
            out = self.guided_output(x, tt, label, guidance)
            return self.schedule.predictions(out, x, t, self.config.prediction, clip=clip)

        return denoise

    # -- contract ----------------------------------------------------------------------------------
    def loss(self, batch: Batch, group: str = "main") -> tuple[Tensor, dict[str, float]]:
        if self.grid is not None:
            return self.grid.loss(batch)
        if self.spec.form == "table":
            return self._table_loss(batch)
        x0 = to_model(batch.x)
        T = self.config.num_timesteps
        t = (batch.rand(1)[:, 0] * T).long().clamp(max=T - 1)  # t ~ U{0, …, T-1}, (B,)
        eps = batch.randn(*x0.shape[1:])
        label = None
        if self.conditional and batch.y is not None:
            drop = batch.rand(1)[:, 0] < self.config.label_dropout
            label = torch.where(drop, torch.full_like(batch.y, self.null_label), batch.y)
        xt = self.schedule.add_noise(x0, eps, t)
        out = self.forward_net(xt, t, label)
        target = self.schedule.target(x0, eps, t, self.config.prediction)
        mse = (out - target).pow(2).flatten(1).mean(1)  # (B,)
        weight = self._loss_weight(t).to(mse)
        loss = (weight * mse).mean()
        _, eps_hat = self.schedule.predictions(out.detach(), xt, t, self.config.prediction)
        return loss, {"mse": mse.mean().item(), "mse_eps": (eps_hat - eps).pow(2).mean().item()}

    def _loss_weight(self, t: Tensor) -> Tensor:
        """Per-example weights: 1, or Min-SNR-γ expressed for the chosen target (arXiv:2303.09556, eq. 12)."""
        if self.config.loss_weighting == "uniform":
            return torch.ones(t.shape, dtype=torch.float64)
        snr = self.schedule.snr(t)
        clipped = snr.clamp(max=self.config.snr_gamma)
        if self.config.prediction == "eps":
            return clipped / snr
        if self.config.prediction == "x0":
            return clipped
        return clipped / (snr + 1)

    @torch.no_grad()
    def ranking_log_prob(self, x: Tensor, cond: Tensor | None = None) -> Tensor:
        """The bound of :meth:`log_prob` with the same stratified timesteps for every image (common random numbers;
        tables and grids keep their own draws). Per-example timesteps make the estimate's spread across images
        larger than the differences between them (300 mnist test images: mean 6.3, standard deviation 8.9
        bits/dim with 4 per-image draws); held-out mnist digits scored that way gave AUROC 0.50 ± 0.01 for all ten
        digits, and shared draws restore the ranking the other families show."""
        return self.log_prob(x, cond, shared_timesteps=True)

    @torch.no_grad()
    def log_prob(self, x: Tensor, cond: Tensor | None = None, *, shared_timesteps: bool = False) -> Tensor:
        """Monte-Carlo estimate of the variational lower bound on ``log P(x)`` (nats) of 8-bit images ``x``.

        ``log P(x) ≥ -L_T - Σ_{t=1}^{T-1} L_t - L_0`` with the prior term ``L_T = KL(q(x_{T-1}|x) ‖ N(0, I))``
        (exact), the denoising terms ``L_t = KL(q(x_{t-1}|x_t, x) ‖ p(x_{t-1}|x_t))`` where ``p`` is the
        posterior with x̂_0 plugged in (variance β̃_t, so ``L_t = ‖μ̃ - μ_θ‖² / 2β̃_t``), and the decoder
        ``L_0 = -log p(x | x_0)`` under a discretized logistic centred on x̂_0 with the variance β_0.
        The sum over t is estimated with ``bound_timesteps`` stratified draws per example, times (T-1): an
        unbiased estimate of the bound (every term is ≥ 0, so the estimate is itself ≤ 0). Draws come from a
        generator with a fixed seed, so the result is deterministic. The reverse model uses x̂_0 clamped to the
        data range [-1, 1] (as the samplers do); any function of x_t gives a valid bound, and this one is tighter.
        ``shared_timesteps`` draws the timesteps once for all images of the call instead of per image (see
        :meth:`ranking_log_prob`).

        References:
            Ho et al., 2020, arXiv:2006.11239 (eq. 5); Nichol & Dhariwal, 2021, arXiv:2102.09672 (Sec. 3).
        """
        if self.grid is not None:
            return self.grid.log_prob(x.to(self.device), self.config.bound_timesteps)
        y = cond if self.conditional else None
        if y is not None:
            y = torch.as_tensor(y, dtype=torch.long, device=self.device).reshape(-1)
        if self.spec.form == "table":
            return self._table_log_prob(x.to(self.device).float(), y)
        v = to_model(x.to(self.device))
        b = v.shape[0]
        g = torch.Generator(device=v.device).manual_seed(0)
        T, k = self.config.num_timesteps, self.config.bound_timesteps
        sched = self.schedule
        # prior: KL(N(√ᾱ v, 1-ᾱ) ‖ N(0, 1)) at the last step
        ab_T = float(sched.alpha_bar_at(T - 1))
        prior = 0.5 * (ab_T * v.pow(2) + (1 - ab_T) - 1 - math.log(1 - ab_T)).flatten(1).sum(1)  # (B,)
        # decoder at t = 0
        t0 = torch.zeros(b, dtype=torch.long, device=v.device)
        z0 = sched.add_noise(v, gaussian(v.shape, v, g), t0)
        x0_hat, _ = sched.predictions(self.forward_net(z0, t0, y), z0, t0, self.config.prediction, clip=True)
        log_scale = torch.full_like(x0_hat, 0.5 * math.log(float(sched.betas[0])) + _LOGISTIC_LOG_SCALE)
        decoder = -discretized_logistic_log_prob(x.to(self.device), x0_hat, log_scale).flatten(1).sum(1)
        # denoising terms, stratified over t ∈ {1, …, T-1}
        terms = torch.zeros(b, dtype=torch.float64, device=v.device)
        for j in range(k):
            u = (j + torch.rand(1 if shared_timesteps else b, generator=g, device=v.device).expand(b)) / k
            t = (1 + (u * (T - 1)).long()).clamp(max=T - 1)
            xt = sched.add_noise(v, gaussian(v.shape, v, g), t)
            x0_hat, _ = sched.predictions(self.forward_net(xt, t, y), xt, t, self.config.prediction, clip=True)
            mu, var = sched.posterior(v, xt, t)
            mu_hat, _ = sched.posterior(x0_hat, xt, t)
            terms += ((mu - mu_hat).pow(2) / (2 * var)).flatten(1).sum(1).double()
        denoising = terms / k * (T - 1)
        return -(prior.double() + decoder.double() + denoising)

    @torch.no_grad()
    def sample(self, n: int, cond: Tensor | None = None, *, generator: torch.Generator | None = None,
               sampler: str = _SO.sampler, steps: int | None = _SO.steps, eta: float = _SO.eta,
               guidance: float = _SO.guidance, clip_denoised: bool = _SO.clip_denoised,
               resample: int = _SO.resample, progress: bool = _SO.progress,
               watermark: str | None = _SO.watermark) -> Tensor:
        """Draw ``n`` ``uint8`` images with the chosen sampler (arguments as in :class:`DiffusionSampleOptions`).

        References:
            Ho et al., 2020, arXiv:2006.11239; Song et al., 2021, arXiv:2010.02502; Lu et al., 2022,
            arXiv:2211.01095; Ho & Salimans, 2022, arXiv:2207.12598.
        """
        opts = DiffusionSampleOptions(sampler, steps, eta, guidance, clip_denoised, resample, progress, watermark)
        if guidance != 1.0 and not self.conditional:
            raise CapabilityError("--guidance needs a class-conditional diffusion model; this one is unconditional")
        label = self.check_cond(n, cond, generator)
        if opts.watermark and self.spec.form != "image":
            raise CapabilityError(f"--watermark (Tree-Ring) marks images; diffusion on {self.spec.form} data takes "
                                  "none")
        if self.grid is not None:
            return self.grid.sample(n, generator, opts.steps, opts.progress)
        if self.spec.form == "table":
            return self._table_sample(n, label, generator, opts)
        s = SAMPLERS[opts.sampler](self.schedule, opts.eta)
        if opts.watermark:  # keyed initial noise: the Tree-Ring watermark
            from genlab.audit.watermark import TreeRing

            x = TreeRing(opts.watermark, tuple(self.spec.shape)).noise(n, generator, self.device)
        else:
            x = torch.randn((n, *self.spec.shape), generator=generator,
                            device=generator.device if generator is not None else "cpu").to(self.device)
        outs = []
        layout = channels_last(self.net) if self.device.type == "cpu" else contextlib.nullcontext()
        with layout:
            for lo in range(0, n, SAMPLE_CHUNK):  # the starting noise is drawn for all n at once, then denoised
                y = None if label is None else label[lo : lo + SAMPLE_CHUNK]
                xc = x[lo : lo + SAMPLE_CHUNK].contiguous(memory_format=torch.channels_last)
                outs.append(sample_loop(s, self.denoiser(y, opts.guidance, opts.clip_denoised), xc, opts.steps,
                                        generator, opts.progress).contiguous())
        return to_uint8(torch.cat(outs))

    @torch.no_grad()
    def inpaint(self, images: Tensor, keep: Tensor, cond: Tensor | None = None, *,
                generator: torch.Generator | None = None, sampler: str = _SO.sampler, steps: int | None = _SO.steps,
                eta: float = _SO.eta, guidance: float = _SO.guidance, clip_denoised: bool = _SO.clip_denoised,
                resample: int = _SO.resample, progress: bool = _SO.progress,
                watermark: str | None = _SO.watermark) -> Tensor:
        """Fill the pixels of ``uint8`` images ``(N, C, H, W)`` where ``keep`` is False (RePaint).

        Arguments:
            images: the given images.
            keep: boolean mask broadcastable to ``images``; True where the pixel is kept.
            cond: labels for a conditional model (None: the unconditional prediction is used).
            generator: source of all noise.

        Returns:
            ``uint8`` images equal to ``images`` wherever ``keep`` holds.

        References:
            Lugmayr et al., 2022, arXiv:2201.09865.
        """
        opts = DiffusionSampleOptions(sampler, steps, eta, guidance, clip_denoised, resample, progress)
        if watermark:
            raise ConfigError("--watermark marks sampled images; inpainting keeps given pixels and takes none")
        if self.spec.form == "table":
            n = images.shape[0]
            label = self.check_cond(n, cond, generator)
            keep = torch.as_tensor(keep, dtype=torch.bool, device=self.device).expand_as(images)
            return self._table_sample(n, label, generator, opts, images.to(self.device).float(), keep)
        if images.shape[1:] != self.spec.shape:
            raise DataError(f"images have shape {tuple(images.shape[1:])} but the model makes {self.spec.shape}")
        n = images.shape[0]
        if self.grid is not None:
            self.check_cond(n, cond, generator)
            return self.grid.inpaint(images.to(self.device), torch.as_tensor(keep, device=self.device), generator,
                                     opts.steps, opts.progress)
        label = None if cond is None else self.check_cond(n, cond, generator)
        if opts.guidance != 1.0 and label is None:
            raise ConfigError("--guidance needs --label when inpainting with a conditional model")
        images = images.to(self.device)
        keep = torch.as_tensor(keep, dtype=torch.bool, device=self.device)
        s = SAMPLERS[opts.sampler](self.schedule, opts.eta)
        out = repaint(s, self.denoiser(label, opts.guidance, opts.clip_denoised), to_model(images), keep,
                      opts.steps, opts.resample, generator, opts.progress)
        return torch.where(keep.expand_as(images), images, to_uint8(out))

    @torch.no_grad()
    def invert(self, images: Tensor, *, steps: int = 50, cond: Tensor | None = None) -> Tensor:
        """The initial noise whose deterministic DDIM sample is (approximately) each ``uint8`` image (DDIM
        inversion with the unconditional model unless ``cond`` gives labels); Tree-Ring detection reads it.

        References:
            Song et al., 2021, arXiv:2010.02502; Wen et al., 2023, arXiv:2305.20030.
        """
        if self.spec.form != "image":
            raise CapabilityError(f"diffusion on {self.spec.form} data has no latent space or Gaussian denoising "
                                  "(only images do); use a vae run for latents")
        if images.shape[1:] != self.spec.shape:
            raise DataError(f"images have shape {tuple(images.shape[1:])} but the model makes {self.spec.shape}")
        label = None if cond is None else self.check_cond(images.shape[0], cond, None)
        return ddim_invert(self.schedule, self.denoiser(label), to_model(images.to(self.device)), steps,
                           show_progress=False)

    # -- latent space and denoising ----------------------------------------------------------------------
    def _label_or_null(self, n: int, cond: Tensor | None) -> Tensor | None:
        if cond is None or not self.conditional:
            return None
        return self.check_cond(n, cond, None)

    def _inversion_steps(self) -> int:
        return min(self.config.inversion_steps, self.config.num_timesteps)

    @torch.no_grad()
    def to_latent(self, x: Tensor, cond: Tensor | None = None) -> Tensor:
        """The noise ``x_t`` that deterministic DDIM (``inversion_steps`` steps) maps to ``uint8`` images ``x``
        (DDIM inversion, without clipping so that it can be undone; unconditional when no labels are given), at
        the last timestep whose ᾱ is still ≥ 1e-3 (:func:`genlab.samplers.invert.latent_timestep`): decoding from
        ``T - 1`` amplifies the model's error at the first step ~20× and returns noise."""
        if self.spec.form != "image":
            raise CapabilityError(f"diffusion on {self.spec.form} data has no latent space or Gaussian denoising "
                                  "(only images do); use a vae run for latents")
        if tuple(x.shape[1:]) != tuple(self.spec.shape):
            raise DataError(f"images have shape {tuple(x.shape[1:])} but the model makes {self.spec.shape}")
        label = self._label_or_null(x.shape[0], cond)
        return ddim_invert(self.schedule, self.denoiser(label, clip=False), to_model(x.to(self.device)),
                           self._inversion_steps(), show_progress=False, top=latent_timestep(self.schedule))

    @torch.no_grad()
    def from_latent(self, z: Tensor, cond: Tensor | None = None) -> Tensor:
        """``uint8`` images from latent noise by deterministic DDIM over ``inversion_steps`` steps."""
        if self.spec.form != "image":
            raise CapabilityError(f"diffusion on {self.spec.form} data has no latent space or Gaussian denoising "
                                  "(only images do); use a vae run for latents")
        label = self._label_or_null(z.shape[0], cond)
        return to_uint8(ddim_decode(self.schedule, self.denoiser(label, clip=False), z.to(self.device),
                                    self._inversion_steps(), show_progress=False, top=latent_timestep(self.schedule)))

    @torch.no_grad()
    def denoise(self, noisy: Tensor, sigma: float, cond: Tensor | None = None, *,
                generator: torch.Generator | None = None, consistency: float = 0.0, sampler: str = "ddim",
                steps: int | None = 25, eta: float = _SO.eta, guidance: float = _SO.guidance,
                clip_denoised: bool = _SO.clip_denoised, resample: int = _SO.resample,
                progress: bool = _SO.progress) -> Tensor:
        """``uint8`` images from noisy images on the [0, 1] pixel scale (noise σ on that scale): the reverse process
        started at the matching noise level (with ``consistency`` > 0 also DiffPIR's data-consistency step)
        (:func:`genlab.samplers.restore.denoise_from`; ``steps`` from there down, DDIM unless ``sampler`` says)."""
        if self.spec.form != "image":
            raise CapabilityError(f"diffusion on {self.spec.form} data has no latent space or Gaussian denoising "
                                  "(only images do); use a vae run for latents")
        opts = DiffusionSampleOptions(sampler, steps, eta, guidance, clip_denoised, resample, progress)
        if tuple(noisy.shape[1:]) != tuple(self.spec.shape):
            raise DataError(f"images have shape {tuple(noisy.shape[1:])} but the model makes {self.spec.shape}")
        label = self._label_or_null(noisy.shape[0], cond)
        if opts.guidance != 1.0 and label is None:
            raise ConfigError("--guidance needs --label when denoising with a conditional model")
        s = SAMPLERS[opts.sampler](self.schedule, opts.eta)
        y = 2.0 * noisy.to(self.device, torch.float32) - 1.0  # [0, 1] pixel scale → model space (k/127.5 - 1)
        out = denoise_from(s, self.denoiser(label, opts.guidance, opts.clip_denoised), y, 2.0 * sigma,
                           opts.steps or 25, consistency, generator, opts.progress)
        return to_uint8(out)

    # -- tables (TabDDPM) ------------------------------------------------------------------------------
    def _blocks(self) -> list[tuple[int, int]]:
        return [(b.offset, b.width) for b in self.layout.cats]

    def _noisy(self, x: Tensor, t: Tensor | int, eps: Tensor, uniform: Tensor) -> Tensor:
        """``x_t``: the numbers through ``q(x_t | x_0)`` with noise ``eps``, each one-hot block through the
        multinomial ``q(x_t | x_0)`` with uniform noise."""
        num = self.layout.num_index.to(x.device)
        xt = x.clone()
        if len(num):
            xt[:, num] = self.schedule.add_noise(x[:, num], eps, t)
        for off, w in self._blocks():
            xt[:, off : off + w] = self.multinomial.add_noise(x[:, off : off + w], t, uniform[:, off : off + w])
        return xt

    def _table_loss(self, batch: Batch) -> tuple[Tensor, dict[str, float]]:
        """TabDDPM's loss: the (Min-SNR-weighted) MSE of the numbers' prediction target plus the mean over blocks of
        ``KL(q(x_{t-1} | x_t, x_0) ‖ p(x_{t-1} | x_t))`` (``-log p(x_0 | x_t)`` at t = 0)."""
        x = batch.x
        num = self.layout.num_index.to(x.device)
        T = self.config.num_timesteps
        t = (batch.rand(1)[:, 0] * T).long().clamp(max=T - 1)
        eps = batch.randn(len(num))
        xt = self._noisy(x, t, eps, batch.rand(self.spec.dims))
        label = None
        if self.conditional and batch.y is not None:
            drop = batch.rand(1)[:, 0] < self.config.label_dropout
            label = torch.where(drop, torch.full_like(batch.y, self.null_label), batch.y)
        out = self.forward_net(xt, t, label)
        gauss = x.new_zeros(x.shape[0])
        if len(num):
            target = self.schedule.target(x[:, num], eps, t, self.config.prediction)
            gauss = (out[:, num] - target).pow(2).mean(1) * self._loss_weight(t).to(x)
        blocks = self._blocks()
        multi = x.new_zeros(x.shape[0])
        for off, w in blocks:
            multi = multi + self.multinomial.kl(xt[:, off : off + w], x[:, off : off + w],
                                                F.log_softmax(out[:, off : off + w], dim=1), t)
        multi = multi / max(1, len(blocks))
        return gauss.mean() + multi.mean(), {"mse": gauss.mean().item(), "kl_categories": multi.mean().item()}

    def _table_denoise(self, x: Tensor, t: int, label: Tensor | None, guidance: float) -> tuple[Tensor, Tensor, Tensor]:
        """(x̂_0, ε̂) of the numbers and the raw output (logits of every block) at ``x_t``."""
        num = self.layout.num_index.to(x.device)
        tt = torch.full((x.shape[0],), t, dtype=torch.long, device=x.device)
        out = self.guided_output(x, tt, label, guidance)
        x0, eps = self.schedule.predictions(out[:, num], x[:, num], t, self.config.prediction)
        ab = float(self.schedule.alpha_bar_at(t))
        x0 = x0.clamp(-8.0, 8.0)  # beyond the Gaussianised range; keeps ε̂ consistent with x_t
        eps = (x[:, num] - math.sqrt(ab) * x0) / math.sqrt(1 - ab)
        return x0, eps, out

    def _table_sample(self, n: int, label: Tensor | None, generator: torch.Generator | None,
                      opts: DiffusionSampleOptions, known: Tensor | None = None, keep: Tensor | None = None) -> Tensor:
        """Reverse diffusion of table rows: the chosen Gaussian sampler steps the numbers, ancestral multinomial
        steps the blocks at the same timesteps; with ``known``/``keep`` the kept positions are replaced by the
        forward-noised known values after every step and each step is resampled ``resample`` times (RePaint)."""
        dev = generator.device if generator is not None else self.device
        num = self.layout.num_index.to(self.device)
        d = self.spec.dims
        blocks = self._blocks()
        sampler = SAMPLERS[opts.sampler](self.schedule, opts.eta)
        ts = sampler.timesteps(opts.steps)
        sampler.reset()

        def rand(*shape: int) -> Tensor:
            return torch.rand(shape, generator=generator, device=dev).to(self.device)

        def randn(*shape: int) -> Tensor:
            return torch.randn(shape, generator=generator, device=dev).to(self.device)

        x = torch.zeros(n, d, device=self.device)
        x[:, num] = randn(n, len(num))
        for off, w in blocks:  # the multinomial chain ends in the uniform distribution
            x[:, off : off + w] = MultinomialDiffusion.draw(torch.zeros(n, w, device=self.device), rand(n, w))
        rounds = opts.resample if known is not None else 1
        with progress(len(ts) * rounds, f"sample {type(sampler).__name__}", opts.progress) as advance:
            for i, t in enumerate(ts):
                t_prev = ts[i + 1] if i + 1 < len(ts) else -1
                for r in range(rounds):
                    x0, eps, out = self._table_denoise(x, t, label, opts.guidance)
                    x_prev = x.clone()
                    x_prev[:, num] = sampler.step(x0, eps, t, t_prev, x[:, num], generator)
                    for off, w in blocks:
                        x_prev[:, off : off + w] = self.multinomial.step(
                            x[:, off : off + w], F.log_softmax(out[:, off : off + w], dim=1), t, t_prev, rand(n, w))
                    if known is not None and keep is not None:
                        given = known if t_prev < 0 else self._noisy(known, t_prev, randn(n, len(num)), rand(n, d))
                        x_prev = torch.where(keep, given, x_prev)
                    if r + 1 < rounds and t_prev >= 0:  # jump back to t and redo the step (RePaint)
                        x = x_prev.clone()
                        x[:, num] = self.schedule.renoise(x_prev[:, num], randn(n, len(num)), t_prev, t)
                        for off, w in blocks:
                            x[:, off : off + w] = self.multinomial.renoise(x_prev[:, off : off + w], t_prev, t,
                                                                           rand(n, w))
                        sampler.reset()
                    else:
                        x = x_prev
                    advance()
                    if t_prev < 0:
                        break
        x = self.layout.harden(x)
        if known is not None and keep is not None:
            x = torch.where(keep, known, x)
        return self.layout.set_label(x, label)

    def _table_log_prob(self, x: Tensor, y: Tensor | None) -> Tensor:
        """Monte-Carlo estimate of the variational bound on ``log p(numbers) + log P(categories)`` of table rows:
        prior terms at T-1 (Gaussian and multinomial KL to the stationary law), the t = 0 decoder (a Gaussian of
        variance β_0 around x̂_0 for the numbers, ``p(x_0 | x_t)`` for the blocks) and ``bound_timesteps``
        stratified denoising KL terms scaled by ``T - 1``, as for images."""
        num = self.layout.num_index.to(x.device)
        blocks = self._blocks()
        g = torch.Generator(device=x.device).manual_seed(0)
        b = x.shape[0]
        T, k = self.config.num_timesteps, self.config.bound_timesteps
        sched = self.schedule
        xn = x[:, num].double()
        ab_T = float(sched.alpha_bar_at(T - 1))
        prior = 0.5 * (ab_T * xn.pow(2) + (1 - ab_T) - 1 - math.log(1 - ab_T)).sum(1)
        for off, w in blocks:
            prior = prior + self.multinomial.prior_kl(x[:, off : off + w]).double()

        def noisy(t: Tensor) -> Tensor:
            return self._noisy(x, t, torch.randn((b, len(num)), generator=g, device=x.device),
                               torch.rand(x.shape, generator=g, device=x.device))

        def cat_kl(xt: Tensor, out: Tensor, t: Tensor) -> Tensor:
            total = torch.zeros(b, dtype=torch.float64, device=x.device)
            for off, w in blocks:
                total += self.multinomial.kl(xt[:, off : off + w], x[:, off : off + w],
                                             F.log_softmax(out[:, off : off + w], dim=1), t).double()
            return total

        t0 = torch.zeros(b, dtype=torch.long, device=x.device)
        z0 = noisy(t0)
        out = self.forward_net(z0, t0, y)
        x0_hat, _ = sched.predictions(out[:, num], z0[:, num], t0, self.config.prediction)
        var0 = float(sched.betas[0])
        decoder = (0.5 * (xn - x0_hat.double()).pow(2) / var0 + 0.5 * math.log(2 * math.pi * var0)).sum(1)
        decoder = decoder + cat_kl(z0, out, t0)
        terms = torch.zeros(b, dtype=torch.float64, device=x.device)
        for j in range(k):
            u = (j + torch.rand(b, generator=g, device=x.device)) / k
            t = (1 + (u * (T - 1)).long()).clamp(max=T - 1)
            xt = noisy(t)
            out = self.forward_net(xt, t, y)
            x0_hat, _ = sched.predictions(out[:, num], xt[:, num], t, self.config.prediction)
            mu, var = sched.posterior(x[:, num], xt[:, num], t)
            mu_hat, _ = sched.posterior(x0_hat, xt[:, num], t)
            terms += ((mu - mu_hat).pow(2) / (2 * var)).sum(1).double() + cat_kl(xt, out, t)
        return -(prior + decoder + terms / k * (T - 1))


#: unmasking steps of grid diffusion when ``--steps`` is not given
GRID_STEPS = 64


class MaskedGrid(nn.Module):
    """Absorbing-state diffusion on categorical grids ``int64 (B, V, T)`` with ``spec.levels`` values (the mask
    is the extra value ``levels``), denoised by a bidirectional transformer (:class:`~genlab.nn.grid.GridTransformer`).

    ``loss`` is the continuous-time negative ELBO ``E_t[1/t · Σ_masked −log p_θ(x_i | x_t)]`` per cell;
    ``log_prob`` a Monte-Carlo estimate of the bound (``bound_timesteps`` stratified times per example, fixed seed);
    ``sample`` and ``inpaint`` run the unmasking reverse process (:func:`genlab.samplers.absorbing.unmask`), which
    keeps given cells exactly.

    Why absorbing rather than Gaussian diffusion on one-hot cells: given cells stay exact (no RePaint), the bound is
    a plain sum of cross-entropies in nats comparable with the token models, and sampling needs no rounding.

    References:
        Sahoo et al., 2024, arXiv:2406.07524; Shi et al., 2024, arXiv:2406.04329; Austin et al., 2021,
        arXiv:2107.03006.
    """

    def __init__(self, spec: DataSpec, config: DiffusionConfig) -> None:
        super().__init__()
        if len(spec.shape) != 2 or spec.levels < 2:
            raise DataError(f"grid diffusion needs (rows, steps) grids with levels, got {spec.shape}")
        self.spec, self.mask_id = spec, spec.levels
        self.net = GridTransformer(spec.shape, spec.levels, config.grid_width, config.grid_layers, config.heads,
                                   config.dropout)

    def _nelbo(self, x: Tensor, t: Tensor, u: Tensor) -> tuple[Tensor, Tensor]:
        """(weighted masked cross-entropy summed per example, masked cells' mean cross-entropy)."""
        xt, masked = mask_cells(x, t, u, self.mask_id)
        logits = self.net(xt)  # (B, V, T, L)
        ce = F.cross_entropy(logits.float().permute(0, 3, 1, 2), x, reduction="none")  # (B, V, T)
        per = (ce * masked).flatten(1).sum(1)
        return elbo_weight(t) * per, per.sum() / masked.sum().clamp(min=1)

    def loss(self, batch: Batch) -> tuple[Tensor, dict[str, float]]:
        x = batch.x
        t = batch.rand(1)[:, 0].clamp(min=1e-3)  # t ~ U(0, 1]
        nelbo, ce = self._nelbo(x, t, batch.rand(*x.shape[1:]))
        loss = nelbo.mean() / self.spec.dims
        return loss, {"nelbo_per_cell": loss.item(), "masked_ce": ce.item()}

    @torch.no_grad()
    def log_prob(self, x: Tensor, timesteps: int) -> Tensor:
        """Monte-Carlo estimate of the ELBO on ``log P(x)`` (nats) per grid: the mean over ``timesteps`` stratified
        times ``t_j = (j + u_j) / k``; each term is ≤ 0, so the estimate is too."""
        g = torch.Generator(device=x.device).manual_seed(0)
        k, b = timesteps, x.shape[0]
        total = torch.zeros(b, dtype=torch.float64, device=x.device)
        for j in range(k):
            t = ((j + torch.rand(b, generator=g, device=x.device)) / k).clamp(min=1e-3)
            nelbo, _ = self._nelbo(x, t, torch.rand(x.shape, generator=g, device=x.device))
            total += nelbo.double()
        return -(total / k)

    def _predict(self, x: Tensor) -> Tensor:
        return self.net(x)

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None, steps: int | None, show_progress: bool) -> Tensor:
        x = torch.full((n, *self.spec.shape), self.mask_id, dtype=torch.long, device=self.net.head.weight.device)
        return unmask(self._predict, x, self.mask_id, steps or GRID_STEPS, generator, show_progress)

    @torch.no_grad()
    def inpaint(self, x: Tensor, keep: Tensor, generator: torch.Generator | None, steps: int | None,
                show_progress: bool) -> Tensor:
        """Grids equal to ``x`` where ``keep`` holds, the other cells drawn by the reverse process."""
        if tuple(x.shape[1:]) != tuple(self.spec.shape):
            raise DataError(f"grids have shape {tuple(x.shape[1:])} but the model makes {self.spec.shape}")
        keep = keep.bool().expand_as(x)
        start = torch.where(keep, x, torch.full_like(x, self.mask_id))
        return unmask(self._predict, start, self.mask_id, steps or GRID_STEPS, generator, show_progress)
