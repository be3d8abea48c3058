"""Issue 18's remedies on the image path: the VAE's class prior, the GAN's minibatch standard deviation, the
diffusion U-Net's adaptive group norm and v-prediction default, chunked diffusion sampling, and old runs."""

from __future__ import annotations

import json

import pytest
import torch

import genlab
from genlab.core import Batch, DataSpec
from genlab.models.gan import Discriminator
from tests.conftest import TINY

SPEC = DataSpec(kind="image", shape=(1, 8, 8), num_classes=3)


def test_vae_class_prior_kl_and_sampling_use_the_class_gaussian():
    torch.manual_seed(0)
    vae = genlab.create("vae", SPEC, **TINY["vae"])
    assert vae.prior is not None
    with torch.no_grad():
        vae.prior.weight.normal_()  # a non-trivial prior per class
    x = torch.randint(0, 256, (4, 1, 8, 8), dtype=torch.uint8)
    y = torch.tensor([0, 1, 2, 1])
    mu, logvar = vae.encode(x, y)
    pm, plv = vae.prior_params(4, y)
    q = torch.distributions.Normal(mu, (0.5 * logvar).exp())
    p = torch.distributions.Normal(pm, (0.5 * plv).exp())
    expected = torch.distributions.kl_divergence(q, p).sum(1).mean().detach()
    # the loss's KL equals torch.distributions' (the reparametrized reconstruction term is separate)
    _, logs = vae.loss(Batch(x, y, seed=0))
    assert logs["kl"] == pytest.approx(float(expected), rel=1e-4)
    # samples of class c decode z ~ N(μ_c, σ_c²): with the decoder's mean, z = μ_c gives the same image each time
    with torch.no_grad():
        vae.prior.weight[:, vae.config.latent_dim :] = -30.0  # σ → 0 (clamped at log σ² = -12)
    a = vae.sample(2, torch.tensor([2, 2]), generator=torch.Generator().manual_seed(0))
    assert (a[0].int() - a[1].int()).abs().max() <= 1
    assert not torch.equal(a[0], vae.sample(1, torch.tensor([0]), generator=torch.Generator().manual_seed(0))[0])


def test_minibatch_std_is_the_mean_feature_std_within_groups_of_four():
    f = torch.randn(8, 5)
    out = Discriminator.minibatch_std(f)
    for j in range(8):  # row j is in the group of rows j mod 2, j mod 2 + 2, …
        rows = f[j % 2 :: 2]
        assert out[j, 0] == pytest.approx(float(rows.var(0, unbiased=False).sqrt().mean()), rel=1e-5)
    assert Discriminator.minibatch_std(torch.randn(6, 5)).unique().numel() == 1  # 6 rows: one group of all


def test_diffusion_defaults_are_v_prediction_with_adaptive_group_norm():
    m = genlab.create("diffusion", SPEC, **TINY["diffusion"])
    assert m.config.prediction == "v" and m.config.scale_shift
    block = m.net.mid[0]
    assert block.emb.out_features == 2 * block.conv1.out_channels  # scale and shift per channel


def test_chunked_sampling_equals_one_batch(monkeypatch, one_thread):
    from genlab.models import diffusion as D

    m = genlab.create("diffusion", SPEC, **{**TINY["diffusion"], "num_timesteps": 20}).eval()
    labels = torch.arange(7) % 3
    a = m.sample(7, labels, generator=torch.Generator().manual_seed(0), steps=4, progress=False)
    monkeypatch.setattr(D, "SAMPLE_CHUNK", 3)
    b = m.sample(7, labels, generator=torch.Generator().manual_seed(0), steps=4, progress=False)
    # the deterministic default sampler from the same noise, 3 + 3 + 1 at a time: the same images up to float
    # rounding of the 8-bit values; and the weights keep their layout
    assert (a.int() - b.int()).abs().max() <= 1 and (a != b).float().mean() < 0.01
    assert all(p.is_contiguous() for p in m.parameters())


@pytest.mark.parametrize(("family", "option"), [("vae", "class_prior"), ("gan", "minibatch_std"),
                                              ("diffusion", "scale_shift")])
def test_old_image_runs_load_with_the_options_they_were_trained_with(tmp_path, family, option):
    old = genlab.MODELS[family].legacy_options[option]
    genlab.train(family, "digits", out=tmp_path / "r", max_steps=1, batch_size=8, quiet=True, device="cpu",
                 eval_every=0, n_samples=2, **TINY[family], **{option: old})
    cfg_path = tmp_path / "r" / "config.json"
    cfg = json.loads(cfg_path.read_text())
    del cfg["model"][option]  # as genlab wrote it before the option existed
    cfg_path.write_text(json.dumps(cfg))
    run = genlab.load(tmp_path / "r", device="cpu")  # the weights fit: no error
    assert getattr(run.model.config, option) == old
    assert genlab.sample(run, 2, seed=0, **({"steps": 2, "progress": False} if family == "diffusion" else {})
                         ).shape == (2, 1, 8, 8)
