"""Tree-Ring and green-list watermarks: the tests' null distributions, their power, the sampler hooks, the CLI."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from genlab.audit.watermark import TREE_RING_TESTS, GreenList, TreeRing, split_samples
from genlab.errors import ConfigError
from genlab.samplers import NoiseSchedule
from genlab.samplers.invert import ddim_invert
from tests.conftest import TINY
from tests.test_cli import assert_one_line_error, run_cli

pytest.importorskip("scipy", reason="the Tree-Ring p-value needs scipy")


def test_tree_ring_key_survives_the_real_projection_and_nothing_else_changes():
    ring = TreeRing("k", (1, 28, 28))
    x = torch.randn(4, 1, 28, 28, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    y = ring.embed(x)
    fx, fy = ring.spectrum(x[:, 0]), ring.spectrum(y[:, 0])
    torch.testing.assert_close(fy[:, ring.mask].real, ring.pattern[ring.mask].expand(4, -1))
    torch.testing.assert_close(fy[:, ring.mask].imag, torch.zeros(4, int(ring.mask.sum()), dtype=torch.float64))
    torch.testing.assert_close(fy[:, ~ring.mask], fx[:, ~ring.mask])
    assert ring.radius == 4 and not torch.equal(TreeRing("other", (1, 28, 28)).pattern, ring.pattern)
    for key in ("k", "other", "benchmark-key"):  # every key has the strength Σ_M k² = |M|
        assert float(TreeRing(key, (1, 28, 28)).pattern.pow(2).sum()) == pytest.approx(int(ring.mask.sum()))


@pytest.mark.parametrize("test", TREE_RING_TESTS)
def test_tree_ring_p_values_are_calibrated_and_powerful(test):
    ring = TreeRing("secret", (1, 28, 28))
    g = torch.Generator().manual_seed(1)
    clean = ring.p_values(torch.randn(2000, 1, 28, 28, generator=g), test)
    assert abs(np.mean(clean < 0.01) - 0.01) < 0.008 and abs(np.mean(clean < 0.2) - 0.2) < 0.03  # ~ U(0, 1)
    marked = ring.noise(200, torch.Generator().manual_seed(2))
    noisy = marked + 0.5 * torch.randn(marked.shape, generator=g)  # recovered noise is never exact
    assert (ring.p_values(marked, test) < 1e-6).all() and np.mean(ring.p_values(noisy, test) < 0.01) > 0.95
    assert np.mean(TreeRing("wrong", (1, 28, 28)).p_values(marked, test) < 0.01) < 0.05


def test_tree_ring_correlation_by_hand_and_against_a_shrunk_key():
    ring = TreeRing("secret", (1, 28, 28))
    marked = ring.noise(400, torch.Generator().manual_seed(5))
    u, v, m = ring._whitened(marked)
    assert u.shape == m.shape and v.shape[1] == u.shape[1] - 1  # the zero frequency has no imaginary part
    z = ring.correlation(marked)
    np.testing.assert_allclose(z, ((m * u).sum(-1) / m.pow(2).sum(-1).sqrt()).numpy())
    np.testing.assert_allclose(z, m.pow(2).sum(-1).sqrt().numpy(), rtol=1e-6)  # an exact key: z = √λ
    # inversion returns a shrunk key with its error where the image content is, in the low frequencies
    # (y = a·k + e, e of sd 1.5 inside the mask): the projection still finds it, the distance does not
    e = torch.randn(marked.shape, generator=torch.Generator().manual_seed(6))
    f = ring.spectrum(e[:, 0])
    f[:, ~ring.mask] = 0
    low = ring.image(f)[:, None].float()
    shrunk = 0.8 * marked + 1.5 * low + (e - low)
    hit = {t: float(np.mean(ring.p_values(shrunk, t) < 0.01)) for t in TREE_RING_TESTS}
    assert hit["correlation"] > 0.9 and hit["distance"] < 0.2, hit
    with pytest.raises(ConfigError, match="--test"):
        ring.p_values(marked, "cosine")


def test_ddim_inversion_undoes_ddim_sampling():
    from genlab.samplers import SAMPLERS, sample_loop

    sched = NoiseSchedule.make("cosine", 1000)
    field = torch.randn(1, 1, 8, 8, generator=torch.Generator().manual_seed(3)) * 0.3

    def denoise(x, t):  # a model whose noise prediction does not depend on x: the ODE is then exactly invertible
        return sched.predictions(field.expand_as(x), x, t, "eps")

    x_t = torch.randn(5, 1, 8, 8, generator=torch.Generator().manual_seed(4))
    x0 = sample_loop(SAMPLERS["ddim"](sched), denoise, x_t, steps=20, show_progress=False)
    back = ddim_invert(sched, denoise, x0, steps=20, show_progress=False)
    assert float((back - x_t).abs().max()) < 2e-2


def test_green_list_z_score_by_hand_and_under_the_null():
    gl = GreenList("key", vocab=100)
    assert gl.n_green == 25 and gl.gamma == 0.25
    seq, prev = [], 0
    for _ in range(40):  # a sequence of green tokens only
        tok = int(torch.nonzero(gl.green(prev))[0])
        seq.append(tok)
        prev = tok
    s = gl.score(seq, 0)
    assert s["green"] == 40 and s["z"] == pytest.approx((40 - 10) / math.sqrt(40 * 0.25 * 0.75))
    rng = np.random.default_rng(0)
    zs = [gl.score(rng.integers(0, 100, 100).tolist(), 0)["z"] for _ in range(300)]
    assert abs(np.mean(zs)) < 0.15 and 0.85 < np.std(zs) < 1.15
    logits = torch.zeros(2, 100)
    out = GreenList("key", 100, delta=2.0)(torch.tensor([[5], [7]]), logits)
    torch.testing.assert_close(out[0], 2.0 * gl.green(5).float())
    assert split_samples("--- sample 0 ---\nab\n\n--- sample 1 ---\ncd\n") == ["ab", "cd"]


@pytest.fixture(scope="module", params=["gpt", "rnn"])  # the token families that embed green lists
def gpt_run(tmp_path_factory, request):
    from genlab.cli import main

    family = request.param
    out = tmp_path_factory.mktemp("wm") / family
    args = ["train", family, "--data", "lee", "--block-size", "16", "--out", out, "--max-steps", "1", "--batch-size",
            "4", "--quiet", "--device", "cpu", "--eval-every", "0", "--n-samples", "1"]
    for k, v in TINY[family].items():
        args += [f"--{k.replace('_', '-')}", v]
    try:
        main([str(a) for a in args])
    except SystemExit as e:
        assert e.code in (0, None)
    return out


def test_text_watermark_end_to_end(gpt_run, tmp_path, capsys):
    path = tmp_path / "w.txt"
    code, _, err = run_cli(["sample", gpt_run, "-n", "3", "--max-tokens", "200", "--watermark", "s3cret",
                            "--watermark-delta", "4", "--out", path], capsys)
    assert code == 0, err
    code, out, err = run_cli(["detect-watermark", gpt_run, path, "--key", "s3cret"], capsys)
    assert code == 0 and "3 of 3 samples" in out, err
    code, out, err = run_cli(["detect-watermark", gpt_run, path, "--key", "another"], capsys)
    assert code == 0 and "0 of 3 samples" in out, err
    import genlab
    from genlab.audit.watermark import detect

    run = genlab.load(gpt_run)
    plain = genlab.sample(run, 3, max_tokens=200, seed=1)
    res = detect(run, plain[:, :], "s3cret")
    assert res["detected"] == 0 and all(abs(s["z"]) < 4 for s in res["samples"])
    code, _, err = run_cli(["detect-watermark", gpt_run, path], capsys)
    assert code == 2 and "--key" in err


def test_tree_ring_sampling_and_detection_plumbing(tmp_path, capsys):
    from genlab.audit.watermark import detect
    from genlab.cli import main

    run = tmp_path / "diff"
    args = ["train", "diffusion", "--data", "digits", "--out", run, "--max-steps", "1", "--batch-size", "8",
            "--quiet", "--device", "cpu", "--eval-every", "0", "--n-samples", "2"]
    for k, v in TINY["diffusion"].items():
        args += [f"--{k.replace('_', '-')}", ",".join(map(str, v)) if isinstance(v, tuple) else v]
    with pytest.raises(SystemExit) as e:
        main([str(a) for a in args])
    assert e.value.code in (0, None)
    code, _, err = run_cli(["sample", run, "-n", "6", "--watermark", "k", "--sampler", "ddim", "--out",
                            tmp_path / "w.npz"], capsys)
    assert code == 0, err
    res = detect(run, tmp_path / "w.npz", "k", steps=10)
    assert res["scheme"] == "tree-ring" and res["n"] == 6 and all(0 <= s["p_value"] <= 1 for s in res["samples"])
    assert res["test"] == "correlation" and detect(run, tmp_path / "w.npz", "k", steps=2, test="distance")["test"] == \
        "distance"
    import genlab

    a = genlab.sample(run, 2, seed=0, sampler="ddim", watermark="k")
    b = genlab.sample(run, 2, seed=0, sampler="ddim")
    assert not torch.equal(a, b) and torch.equal(a, genlab.sample(run, 2, seed=0, sampler="ddim", watermark="k"))
    code, _, err = run_cli(["detect-watermark", run, tmp_path / "w.npz", "--key", "k", "--alpha", "2"], capsys)
    assert_one_line_error(code, err, "--alpha")
    code, _, err = run_cli(["detect-watermark", run, tmp_path / "w.npz", "--key", "k", "--test", "cosine"], capsys)
    assert_one_line_error(code, err, "--test")
    code, out, err = run_cli(["detect-watermark", run, tmp_path / "w.npz", "--key", "k", "--steps", "2", "--test",
                              "distance"], capsys)
    assert code == 0 and "of 6 samples" in out, err


def test_watermark_on_a_family_without_one(tmp_path, capsys):
    from tests.test_cli import FAST

    run = tmp_path / "vae"
    code, _, err = run_cli(["train", "vae", "--data", "digits", "--out", run, *FAST], capsys)
    assert code == 0, err
    code, _, err = run_cli(["sample", run, "--watermark", "k", "--out", tmp_path / "x.png"], capsys)
    assert_one_line_error(code, err, "embeds no watermark", "diffusion")
    code, _, err = run_cli(["detect-watermark", run, tmp_path / "x.png", "--key", "k"], capsys)
    assert_one_line_error(code, err, "embeds no watermark")
    assert not (tmp_path / "x.png").exists()
