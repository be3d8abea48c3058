"""Exporters of the ``table`` form (torch side): TVAE's decoder, CTGAN's generator, the flow's inverse and TabDDPM's
denoiser, each one MLP graph quantized with dynamic int8; the sampling loops are the numpy runtimes of
:mod:`genlab.export.kinds.tabular`.

The adapters here are export-only wrappers around the families' own modules:

* :class:`TableVAEDecoder` puts the (class) prior in the graph — ``z = μ_y + σ_y ε`` — and returns the decoder's
  means/logits with the learned log-scales of the numbers (``VAE.decode`` on tables);
* :class:`TableGANGenerator` takes the conditional vector as an input (``GAN._table_raw``).

References:
    Xu et al., "Modeling Tabular Data using Conditional GAN" (CTGAN, TVAE), 2019, arXiv:1907.00503.
    Kotelnikov et al., "TabDDPM: Modelling Tabular Data with Diffusion Models", 2023, arXiv:2209.15421.
"""

from __future__ import annotations

from typing import Any, cast

import torch
from torch import Tensor, nn

from genlab.export import adapters
from genlab.export.exporters import (
    BATCH,
    DiffusionExporter,
    Exporter,
    FlowExporter,
    GraphSpec,
    _gen,
    _labels,
    register_exporter,
)
from genlab.nn.conv import cat_cond
from genlab.run import Run


class TableVAEDecoder(nn.Module):
    """``(eps (B, L)[, label (B,)]) → (out (B, D), log_scale (B, n_num))``: the TVAE decoder's means at numbers and
    logits at one-hot blocks, and the numbers' log standard deviations, for latents ``z = μ_y + e^{½ log σ²_y} ε``
    of the prior (``VAE.prior_params``: zeros without a class prior)."""

    def __init__(self, vae: Any) -> None:
        super().__init__()
        self.decoder, self.emb, self.prior, self.num_scale = vae.decoder, vae.emb_dec, vae.prior, vae.num_scale

    def forward(self, eps: Tensor, label: Tensor | None = None) -> tuple[Tensor, Tensor]:
        z = eps
        if self.prior is not None and label is not None:
            mu, logvar = self.prior(label).chunk(2, dim=1)
            z = mu + (0.5 * logvar.clamp(-12.0, 8.0)).exp() * eps
        out = self.decoder(cat_cond(z, cast(nn.Embedding | None, self.emb), label))
        return out, self.num_scale(out)


class TableGANGenerator(nn.Module):
    """``(z (B, z_dim), cond (B, cond_dim)[, label (B,)]) → (B, D)``: CTGAN's generator output (numbers, and logits
    at every one-hot block) given the conditional vector."""

    def __init__(self, gan: Any) -> None:
        super().__init__()
        self.generator, self.emb = gan.generator, gan.g_emb

    def forward(self, z: Tensor, cond: Tensor, label: Tensor | None = None) -> Tensor:
        return cast(Tensor, self.generator(torch.cat([cat_cond(z, cast(nn.Embedding | None, self.emb), label), cond],
                                                     dim=1)))


def _label_inputs(run: Run, names: list[str]) -> list[str]:
    return [*names, "label"] if run.model.conditional else names


@register_exporter("vae", "table")
class TableVAEExporter(Exporter):
    """TVAE's decoder with its prior: ``ε → (means/logits, log-scales)``."""

    runtime = "table-vae"

    def graphs(self, run: Run) -> list[GraphSpec]:
        model: Any = run.model
        d = int(model.config.latent_dim)
        g = _gen(0)
        inputs = _label_inputs(run, ["eps"])

        def args(n: int) -> tuple[Tensor, ...]:
            eps = torch.randn(n, d, generator=g)
            return (eps, _labels(run, n, g)) if model.conditional else (eps,)

        return [GraphSpec("decoder", TableVAEDecoder(model), args(3), inputs, ["out", "log_scale"],
                          {name: {0: BATCH} for name in inputs}, "dynamic", [args(5), args(2)])]

    def config(self, run: Run) -> dict[str, Any]:
        return {"latent_dim": int(run.model.config.latent_dim), "conditional": run.model.conditional}


@register_exporter("gan", "table")
class TableGANExporter(Exporter):
    """CTGAN's (EMA) generator: ``(z, conditional vector) → raw rows``."""

    runtime = "table-gan"

    def graphs(self, run: Run) -> list[GraphSpec]:
        model: Any = run.model
        d, c = int(model.config.z_dim), int(model.cond_dim)
        g = _gen(0)
        inputs = _label_inputs(run, ["z", "cond"])

        def args(n: int) -> tuple[Tensor, ...]:
            z = torch.randn(n, d, generator=g)
            cond = torch.nn.functional.one_hot(torch.randint(0, max(c, 1), (n,), generator=g), max(c, 1))[:, :c]
            base = (z, cond.float())
            return (*base, _labels(run, n, g)) if model.conditional else base

        return [GraphSpec("generator", TableGANGenerator(model), args(3), inputs, ["raw"],
                          {name: {0: BATCH} for name in inputs}, "dynamic", [args(5), args(2)])]

    def config(self, run: Run) -> dict[str, Any]:
        model: Any = run.model
        blocks = [i for i, b in enumerate(model.layout.blocks) if any(b is c for c in model.cond_blocks)]
        return {"latent_dim": int(model.config.z_dim), "conditional": model.conditional, "cond_blocks": blocks}


@register_exporter("flow", "table")
class TableFlowExporter(FlowExporter):
    """The vector flow's inverse on table rows: ``(ε, temperature) → lifted rows`` (hardened in numpy; dynamic
    int8, as for vectors)."""

    runtime = "table-flow"


@register_exporter("diffusion", "table")
class TableDiffusionExporter(DiffusionExporter):
    """TabDDPM's MLP denoiser, one call ``(x_t, t[, label]) → output`` (the numbers' target, the blocks' logits);
    both reverse chains run in numpy. The config is the image diffusion's (schedule, prediction, sampler)."""

    runtime = "table-diffusion"

    def graphs(self, run: Run) -> list[GraphSpec]:
        model: Any = run.model
        T = model.config.num_timesteps
        g = _gen(0)
        inputs = _label_inputs(run, ["x", "t"])

        def args(n: int) -> tuple[Tensor, ...]:
            base = (torch.randn(n, run.spec.dims, generator=g), torch.randint(0, T, (n,), generator=g))
            return (*base, torch.randint(0, run.spec.num_classes + 1, (n,), generator=g)) if model.conditional \
                else base

        return [GraphSpec("unet", adapters.UNetStep(model), args(3), inputs, ["out"],
                          {name: {0: BATCH} for name in inputs}, "dynamic", [args(5), args(2)])]
