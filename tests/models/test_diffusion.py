"""The diffusion family: objectives, guidance, the likelihood bound, sampling options, inpainting, CLI."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

import genlab
from genlab.cli import app
from genlab.core import Batch, DataSpec
from genlab.errors import CapabilityError, ConfigError
from tests.conftest import TINY

SPEC = DataSpec("image", (1, 8, 8), num_classes=10)
TINY_OPTS = {**TINY["diffusion"], "num_timesteps": 20}


pytestmark = pytest.mark.usefixtures("one_thread")


def _model(**options):
    m = genlab.create("diffusion", SPEC, **{**TINY_OPTS, **options})
    for p in m.parameters():  # the U-Net's residual and output layers start at zero; make outputs non-trivial
        if p.ndim > 1 and not p.any():
            torch.nn.init.normal_(p, std=0.1)
    return m.eval()


def _images(n=4, seed=0):
    return torch.randint(0, 256, (n, 1, 8, 8), generator=torch.Generator().manual_seed(seed), dtype=torch.uint8)


@pytest.mark.parametrize("prediction", ["eps", "x0", "v"])
@pytest.mark.parametrize("weighting", ["uniform", "min_snr"])
def test_loss_for_every_parametrization(prediction, weighting):
    m = _model(prediction=prediction, loss_weighting=weighting).train()
    loss, logs = m.loss(Batch(_images(8), torch.arange(8) % 10, seed=1))
    assert loss.ndim == 0 and torch.isfinite(loss)
    loss.backward()
    assert all(p.grad is not None for p in m.net.out.parameters())
    assert {"mse", "mse_eps"} <= set(logs)


def test_min_snr_weights_agree_across_parametrizations():
    """Min-SNR-γ puts the same weight on the x_0 error whatever the network predicts (arXiv:2303.09556)."""
    t = torch.arange(20)
    snr = _model().schedule.snr(t)
    w_x0 = _model(prediction="x0", loss_weighting="min_snr")._loss_weight(t)
    w_eps = _model(prediction="eps", loss_weighting="min_snr")._loss_weight(t)
    w_v = _model(prediction="v", loss_weighting="min_snr")._loss_weight(t)
    torch.testing.assert_close(w_eps * snr, w_x0)  # ‖ε̂-ε‖² = SNR ‖x̂_0-x_0‖²
    torch.testing.assert_close(w_v * (snr + 1), w_x0)  # ‖v̂-v‖² = (SNR+1) ‖x̂_0-x_0‖²


def test_guidance_scale_0_and_1_are_exact():
    m = _model()
    x = torch.randn(3, 1, 8, 8)
    t = torch.tensor([3, 10, 19])
    y = torch.tensor([1, 4, 7])
    null = torch.full((3,), m.null_label)
    assert torch.equal(m.guided_output(x, t, y, 0.0), m.forward_net(x, t, null))
    assert torch.equal(m.guided_output(x, t, y, 1.0), m.forward_net(x, t, y))
    cond, uncond = m.forward_net(x, t, y), m.forward_net(x, t, null)
    assert not torch.allclose(cond, uncond)
    torch.testing.assert_close(m.guided_output(x, t, y, 3.0), uncond + 3.0 * (cond - uncond), rtol=1e-4, atol=1e-5)


def test_label_dropout_uses_the_null_label():
    m = _model(label_dropout=0.5).train()
    seen = []
    m.net.label_emb.register_forward_hook(lambda mod, inp, out: seen.append(inp[0].clone()))
    m.loss(Batch(_images(64), torch.zeros(64, dtype=torch.long), seed=0))
    frac = (seen[0] == m.null_label).float().mean().item()
    assert 0.3 < frac < 0.7


def test_log_prob_is_a_deterministic_lower_bound():
    m = _model()
    x = _images(5)
    lp = m.log_prob(x, torch.arange(5))
    assert lp.shape == (5,) and torch.isfinite(lp).all() and (lp < 0).all()
    assert torch.equal(lp, m.log_prob(x, torch.arange(5)))
    assert type(m).likelihood_bound and not type(m).exact_likelihood


def test_ranking_bound_shares_its_timesteps_across_images():
    """Copies of one image: per-image timesteps spread their bounds far apart; shared timesteps leave only the
    noise draws between them (what anomaly ranking needs)."""
    m = _model(bound_timesteps=2)
    x = _images(1).expand(64, -1, -1, -1).contiguous()
    y = torch.zeros(64, dtype=torch.long)
    per, shared = m.log_prob(x, y), m.ranking_log_prob(x, y)
    assert shared.shape == per.shape == (64,) and torch.isfinite(shared).all()
    assert shared.std() < 0.5 * per.std()
    assert torch.equal(shared, m.ranking_log_prob(x, y))


@pytest.mark.parametrize("prediction", ["eps", "x0", "v"])
def test_bound_with_an_oracle_denoiser_is_prior_plus_decoder(prediction):
    """Data concentrated on one image and a network predicting it exactly: every L_t vanishes, leaving
    KL(q(x_T | x) ‖ N(0, I)) and the discretized-logistic decoder term with scale √β_0 · √3/π."""
    m = _model(prediction=prediction, num_timesteps=50, bound_timesteps=3)
    x = _images(1, seed=3)
    v = x.double() / 127.5 - 1
    sched = m.schedule

    def oracle(xt, t, label=None):
        eps = (xt.double() - sched._bcast(sched.alpha_bar_at(t).sqrt(), v) * v) / sched._bcast(
            (1 - sched.alpha_bar_at(t)).sqrt(), v)
        return sched.target(v, eps, t, prediction).float()

    m.forward_net = oracle
    lp = m.log_prob(x)
    ab_T = float(sched.alpha_bar_at(49))
    prior = (-0.5 * np.log(1 - ab_T) + 0.5 * (1 - ab_T + ab_T * v.pow(2)) - 0.5).sum()
    s = np.sqrt(float(sched.betas[0])) * np.sqrt(3) / np.pi
    bin_mass = torch.sigmoid(torch.tensor(1 / 255 / s)) - torch.sigmoid(torch.tensor(-1 / 255 / s))
    edge_mass = torch.sigmoid(torch.tensor(1 / 255 / s))  # k = 0 or 255: the bin extends to ±∞
    edge = (x == 0) | (x == 255)
    decoder = -(torch.where(edge, edge_mass.log(), bin_mass.log())).sum()
    torch.testing.assert_close(lp.double(), -(prior + decoder).reshape(1).double(), rtol=1e-3, atol=1e-2)


def test_sample_options_and_errors():
    m = _model()
    g = torch.Generator().manual_seed(0)
    for sampler, steps in (("ddpm", None), ("ddim", 5), ("dpmpp_2m", 4)):
        x = m.sample(3, generator=g, sampler=sampler, steps=steps, guidance=2.0)
        assert x.shape == (3, 1, 8, 8) and x.dtype == torch.uint8
    with pytest.raises(ConfigError):
        m.sample(2, sampler="euler")
    with pytest.raises(ConfigError):
        m.sample(2, steps=21)
    with pytest.raises(ConfigError):
        genlab.sample(m, 2, eta=2.0)
    with pytest.raises(CapabilityError):
        _model(conditional=False).sample(2, guidance=3.0)


def test_inpainting_keeps_unmasked_pixels():
    m = _model()
    x = _images(3)
    mask = torch.zeros(8, 8, dtype=torch.bool)
    mask[2:6, 1:7] = True
    for sampler in ("ddpm", "ddim", "dpmpp_2m"):
        out = genlab.api.inpaint(m, x, mask, seed=1, sampler=sampler, steps=5, resample=2)
        assert out.dtype == torch.uint8 and out.shape == x.shape
        assert torch.equal(out[:, :, ~mask], x[:, :, ~mask])
        assert not torch.equal(out[:, :, mask], x[:, :, mask])
    with pytest.raises(ConfigError):
        genlab.api.inpaint(m, x, mask, resample=0)
    with pytest.raises(ConfigError):
        genlab.api.inpaint(m, x, torch.zeros(8, 8, dtype=torch.bool))


def test_cli_sample_and_inpaint(tmp_path):
    genlab.train("diffusion", "digits", out=tmp_path / "run", max_steps=2, batch_size=16, quiet=True, device="cpu",
                 eval_every=0, n_samples=4, **TINY_OPTS)
    runner = CliRunner()
    res = runner.invoke(app, ["sample", str(tmp_path / "run"), "-n", "4", "--out", str(tmp_path / "s.png"),
                              "--label", "3", "--sampler", "dpmpp_2m", "--steps", "5", "--guidance", "3"])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "s.png").is_file()
    np.savez(tmp_path / "in.npz", x=_images(2).numpy())
    res = runner.invoke(app, ["inpaint", str(tmp_path / "run"), "--images", str(tmp_path / "in.npz"),
                              "--box", "0,0,4,8", "--out", str(tmp_path / "out.npz"), "--steps", "4",
                              "--resample", "1"])
    assert res.exit_code == 0, res.output
    with np.load(tmp_path / "out.npz") as f:
        out = f["x"]
    assert np.array_equal(out[..., 4:], _images(2).numpy()[..., 4:])
    res = runner.invoke(app, ["inpaint", str(tmp_path / "run"), "--images", str(tmp_path / "in.npz"),
                              "--box", "0,0,40,8", "--out", str(tmp_path / "o.png")])
    assert res.exit_code != 0 and isinstance(res.exception, ConfigError)


def test_mlp_denoiser_sees_the_whole_image_and_memorizes_a_tiny_set():
    """``denoiser=mlp`` replaces the U-Net by one MLP over the flattened image: every output pixel depends on every
    input pixel, and trained long on four images its samples are those images (the memorizing limit)."""
    torch.manual_seed(0)
    m = genlab.create("diffusion", SPEC, denoiser="mlp", mlp_widths=(256, 256), model_channels=64,
                      num_timesteps=100, conditional=False)
    assert not any(isinstance(mod, torch.nn.Conv2d) for mod in m.modules())
    x = torch.randn(1, 1, 8, 8, requires_grad=True)
    m.forward_net(x, torch.tensor([50]))[0, 0, 7, 7].backward()
    assert (x.grad != 0).all()  # the bottom-right output pixel depends on every input pixel
    train = _images(4, seed=3)
    opt = torch.optim.Adam(m.parameters(), lr=2e-3)
    for step in range(1500):
        loss, _ = m.loss(Batch(train.repeat(8, 1, 1, 1), None, seed=step))
        opt.zero_grad()
        loss.backward()
        opt.step()
    out = m.eval().sample(8, generator=torch.Generator().manual_seed(0), sampler="ddim", steps=50, progress=False)
    assert out.shape == (8, 1, 8, 8) and out.dtype == torch.uint8
    d = (out.float()[:, None] - train.float()[None]).flatten(2).pow(2).mean(2).sqrt()  # (8, 4) RMS, 0–255
    gap = (train.float()[:, None] - train.float()[None]).flatten(2).pow(2).mean(2).sqrt()
    assert d.min(1).values.max() < 0.25 * gap[gap > 0].min(), d.min(1).values  # each sample is one of the four
    with pytest.raises(ConfigError, match="--denoiser: expected one of unet, mlp"):
        genlab.create("diffusion", SPEC, denoiser="transformer")
