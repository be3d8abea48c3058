"""Latent space: slerp and lerp against closed forms, interpolation ends, round trips, class-mean directions, the
CLI and bad inputs."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from PIL import Image

from genlab.apps.latent import attribute_direction, class_means, edit, interpolate, lerp, round_trip, slerp
from genlab.errors import CapabilityError
from tests.test_cli import assert_one_line_error, run_cli


def test_slerp_closed_form_and_lerp():
    a, b = torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, 1.0]])
    p = slerp(a, b, torch.tensor([0.0, 0.5, 1.0]))
    assert torch.allclose(p[0, 1], torch.tensor([math.sqrt(0.5), math.sqrt(0.5)]), atol=1e-6)
    assert torch.allclose(p[0, 0], a[0]) and torch.allclose(p[0, 2], b[0], atol=1e-6)
    assert torch.allclose(p[0].norm(dim=1), torch.ones(3), atol=1e-6)  # stays on the sphere
    same = slerp(a, 2 * a, torch.tensor([0.5]))  # parallel ends: a straight line
    assert torch.allclose(same[0, 0], torch.tensor([1.5, 0.0]))
    assert torch.allclose(lerp(a, b, torch.tensor([0.25]))[0, 0], torch.tensor([0.75, 0.25]))


def _x(run, n=4):
    ex = run.modality.read_examples(run, None)
    return ex.x[:n], ex.y[:n]


def test_interpolation_ends_are_the_decoded_codes(tiny_runs):
    for name in ("vae", "flow", "ssvae"):
        run = tiny_runs[name]
        x, _ = _x(run)
        path = interpolate(run, x[:2], x[2:], steps=5)
        assert path.shape == (10, 1, 8, 8)
        ends = run.model.from_latent(run.model.to_latent(x))
        assert torch.equal(path[0], ends[0]) and torch.equal(path[4], ends[2]) and torch.equal(path[9], ends[3])


def test_round_trips(tiny_runs):
    x, _ = _x(tiny_runs["flow"], 8)
    rt = round_trip(tiny_runs["flow"], x)
    assert rt["mae"] == 0.0 and rt["code_dims"] == rt["data_dims"] == 64  # a flow inverts exactly
    rt = round_trip(tiny_runs["vae"], x)
    assert rt["mae"] > 0 and rt["code_dims"] == 8  # a VAE's bottleneck does not
    rt = round_trip(tiny_runs["diffusion"], x)
    assert np.isfinite(rt["mae"]) and rt["code_dims"] == 64


def test_direction_is_the_difference_of_class_means(tiny_runs):
    run = tiny_runs["flow"]
    from genlab.api import load_splits

    train = load_splits(run).train
    means = torch.stack([run.model.to_latent(train.x[train.y == c][:5]).double().mean(0) for c in range(10)])
    assert torch.allclose(class_means(run, per_class=5), means)
    d = attribute_direction(run, 3, per_class=5)
    assert torch.allclose(d, means[3] - torch.cat([means[:3], means[4:]]).mean(0))
    x, _ = _x(run, 2)
    assert torch.equal(edit(run, x, 3, 0.0, direction=d), run.model.from_latent(run.model.to_latent(x)))


def test_ssvae_edit_moves_the_class_part(tiny_runs):
    run = tiny_runs["ssvae"]
    d = attribute_direction(run, 7, per_class=5)
    k = run.spec.num_classes
    assert torch.allclose(d[-k:], torch.eye(k)[7].double() - (1 - torch.eye(k)[7].double()) / 9, atol=1e-6)


def test_cli_interpolate_and_edit(tiny_runs, tmp_path, capsys):
    run = tiny_runs["diffusion"]
    x, y = _x(run)
    Image.fromarray(x[0, 0].numpy()).save(tmp_path / "a.png")
    Image.fromarray(x[1, 0].numpy()).save(tmp_path / "b.png")
    code, out, err = run_cli(["interpolate", run.path, "--from", tmp_path / "a.png", "--to", tmp_path / "b.png",
                              "--steps", "4", "--out", tmp_path / "path.png", "--inversion-steps", "3"], capsys)
    assert code == 0, err
    assert Image.open(tmp_path / "path.png").size[0] > Image.open(tmp_path / "path.png").size[1]
    np.savez(tmp_path / "x.npz", x=x.numpy(), y=y.numpy())
    code, out, err = run_cli(["edit", tiny_runs["cvae"].path, "--images", tmp_path / "x.npz", "--attribute", "7",
                              "--strength", "1.5", "--per-class", "3", "--out", tmp_path / "e.png"], capsys)
    assert code == 0, err
    assert "4 edited" in out and (tmp_path / "e.png").is_file()


@pytest.mark.parametrize("case", ["gan", "attribute", "shape", "steps", "count"])
def test_cli_bad_inputs(case, tiny_runs, tmp_path, capsys):
    x, _ = _x(tiny_runs["vae"])
    np.savez(tmp_path / "x.npz", x=x.numpy())
    np.savez(tmp_path / "x3.npz", x=x.numpy()[:3])
    np.savez(tmp_path / "big.npz", x=np.zeros((1, 1, 9, 9), np.uint8))
    f = tmp_path / "x.npz"
    args, needle = {
        "gan": (["interpolate", tiny_runs["gan"].path, "--from", f, "--to", f], "no latent space"),
        "attribute": (["edit", tiny_runs["vae"].path, "--images", f, "--attribute", "12"], "out of range"),
        "shape": (["interpolate", tiny_runs["vae"].path, "--from", tmp_path / "big.npz", "--to", f], "shape"),
        "steps": (["interpolate", tiny_runs["vae"].path, "--from", f, "--to", f, "--steps", "1"], "--steps"),
        "count": (["interpolate", tiny_runs["vae"].path, "--from", f, "--to", tmp_path / "x3.npz"], "as many"),
    }[case]
    code, _, err = run_cli([*args, "--out", tmp_path / "o.png"], capsys)
    assert_one_line_error(code, err, needle)
    assert not (tmp_path / "o.png").exists()


def test_gan_has_no_latent_to_encode(tiny_runs):
    x, _ = _x(tiny_runs["gan"], 2)
    with pytest.raises(CapabilityError):
        interpolate(tiny_runs["gan"], x[:1], x[1:])
