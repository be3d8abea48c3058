"""Denoising: PSNR against scikit-image, the noise model, each method's plumbing, the baseline, CLI and bad input."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from genlab.apps.denoise import add_noise, denoise, non_local_means, psnr, ssim
from tests.test_cli import assert_one_line_error, run_cli

skimage_metrics = pytest.importorskip("skimage.metrics", reason="scikit-image (genlab[apps]) is not installed")


def _images(run, n=6):
    return run.modality.read_examples(run, None).x[:n]


def test_psnr_and_ssim_match_scikit_image(tiny_runs):
    x = _images(tiny_runs["vae"])
    y = (x.float() + torch.randn(x.shape, generator=torch.Generator().manual_seed(0)) * 20).clamp(0, 255)
    y = y.round().to(torch.uint8)
    for i in range(len(x)):
        a, b = x[i, 0].numpy() / 255.0, y[i, 0].numpy() / 255.0
        assert float(psnr(x, y)[i]) == pytest.approx(skimage_metrics.peak_signal_noise_ratio(a, b, data_range=1.0))
        assert float(ssim(x, y)[i]) == pytest.approx(skimage_metrics.structural_similarity(a, b, data_range=1.0))
    assert float(ssim(x, x).min()) == pytest.approx(1.0)


def test_noise_model_is_seeded_and_has_the_right_level():
    x = torch.full((200, 1, 8, 8), 128, dtype=torch.uint8)
    y = add_noise(x, 0.2, seed=3)
    assert torch.equal(y, add_noise(x, 0.2, seed=3)) and not torch.equal(y, add_noise(x, 0.2, seed=4))
    assert float((y - 128 / 255).std()) == pytest.approx(0.2, rel=0.03)


def test_every_method_returns_images_and_nlm_beats_the_noise(tiny_runs):
    x = _images(tiny_runs["vae"])
    noisy = add_noise(x, 0.2)
    for name in ("vae", "diffusion", "ssvae"):
        out = denoise(tiny_runs[name], noisy, 0.2)
        assert out.dtype == torch.uint8 and out.shape == x.shape
    assert non_local_means(noisy, 0.2).shape == x.shape
    # on a 28x28 image with flat regions and an edge, non-local means removes most of the noise
    big = torch.zeros(2, 1, 28, 28, dtype=torch.uint8)
    big[:, :, :, 14:] = 200
    noisy = add_noise(big, 0.2)
    noisy_u8 = (noisy.clamp(0, 1) * 255).round().to(torch.uint8)
    assert float(psnr(big, non_local_means(noisy, 0.2)).mean()) > float(psnr(big, noisy_u8).mean()) + 5


def test_cli_denoise_writes_png_and_npz(tiny_runs, tmp_path, capsys):
    run = tiny_runs["diffusion"]
    np.savez(tmp_path / "noisy.npz", x=add_noise(_images(run, 3), 0.1).numpy())
    code, out, err = run_cli(["denoise", run.path, "--images", tmp_path / "noisy.npz", "--sigma", "0.1", "--out",
                              tmp_path / "clean.png", "--steps", "3"], capsys)
    assert code == 0, err
    assert Image.open(tmp_path / "clean.png").size[0] > 0 and "3 denoised" in out
    code, _, err = run_cli(["denoise", tiny_runs["vae"].path, "--images", tmp_path / "noisy.npz", "--sigma", "0.1",
                            "--out", tmp_path / "clean.npz"], capsys)
    assert code == 0, err
    assert np.load(tmp_path / "clean.npz")["x"].shape == (3, 1, 8, 8)


@pytest.mark.parametrize("case", ["gan", "flow", "bad-shape", "sigma", "conditional-vae"])
def test_cli_bad_inputs(case, tiny_runs, tmp_path, capsys):
    np.savez(tmp_path / "n.npz", x=np.zeros((2, 1, 8, 8), np.float32))
    np.savez(tmp_path / "big.npz", x=np.zeros((2, 1, 9, 9), np.float32))
    run, images, sigma, needle = {
        "gan": ("gan", "n.npz", "0.1", "cannot denoise"),
        "flow": ("flow", "n.npz", "0.1", "cannot denoise"),
        "bad-shape": ("diffusion", "big.npz", "0.1", "shape"),
        "sigma": ("diffusion", "n.npz", "-1", "--sigma must be positive"),
        "conditional-vae": ("cvae", "n.npz", "0.1", "--label"),
    }[case]
    code, _, err = run_cli(["denoise", tiny_runs[run].path, "--images", tmp_path / images, "--sigma", sigma, "--out",
                            tmp_path / "c.png"], capsys)
    assert_one_line_error(code, err, needle)
    assert not (tmp_path / "c.png").exists()
