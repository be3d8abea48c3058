"""Image modality: built-in splits, folders, .npz, resizing, channels, augmentation, the model-space mapping,
sample files, inpainting inputs, routing of --data."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from genlab.config import build
from genlab.data.images import DEQUANT_LOG_BIN, dequantize, to_model, to_uint8
from genlab.errors import ConfigError, DataError
from genlab.modalities.image import ImageDataConfig, load_images, parse_mask, read_images


def load(**kw):
    s = load_images(build(ImageDataConfig, kw))
    return s.train, s.test, s.preprocessing


def test_builtin_splits_are_fixed_and_documented():
    tr, te, prep = load(data="mnist")
    assert (len(tr), len(te)) == (4000, 1000)
    assert tr.x.dtype == torch.uint8 and tr.x.shape[1:] == (1, 28, 28)
    assert torch.bincount(te.y).tolist() == [100] * 10 and torch.bincount(tr.y).tolist() == [400] * 10
    assert prep["n_train"] == 4000
    _, te2, _ = load(data="mnist")
    assert torch.equal(te.x, te2.x)
    tr, te, _ = load(data="digits")
    assert (len(tr), len(te)) == (1433, 364) and tr.spec.shape == (1, 8, 8) and tr.spec.num_classes == 10
    assert int(tr.x.max()) == 255


def _folder(root, classes=("cat", "dog"), n=5, size=(10, 10), mode="L"):
    for ci, c in enumerate(classes):
        (root / c).mkdir(parents=True)
        for i in range(n):
            arr = np.full((*size[::-1], 3) if mode == "RGB" else size[::-1], 20 * i + ci, np.uint8)
            Image.fromarray(arr, mode=mode).save(root / c / f"{i}.png")
    return root


def test_folder_of_class_subfolders(tmp_path):
    tr, te, _ = load(data=str(_folder(tmp_path / "d")), test_fraction=0.2)
    assert tr.spec.class_names == ("cat", "dog") and tr.spec.shape == (1, 10, 10)
    assert len(tr) + len(te) == 10 and sorted(te.y.tolist()) == [0, 1]


def test_folder_resize_and_rgb(tmp_path):
    root = _folder(tmp_path / "d", size=(12, 10), mode="RGB")
    with pytest.raises(DataError, match="not square"):
        load(data=str(root))
    tr, _, _ = load(data=str(root), size=8)
    assert tr.spec.shape == (3, 8, 8)
    tr, _, _ = load(data=str(root), size=8, channels=1)
    assert tr.spec.shape == (1, 8, 8)


def test_unlabelled_folder(tmp_path):
    root = tmp_path / "u"
    root.mkdir()
    for i in range(6):
        Image.fromarray(np.full((6, 6), i, np.uint8)).save(root / f"{i}.jpg")
    tr, te, _ = load(data=str(root), test_fraction=0.3)
    assert tr.y is None and tr.spec.num_classes == 0 and len(tr) + len(te) == 6


@pytest.mark.parametrize("layout", ["nhw", "nhwc", "nchw", "float"])
def test_npz_layouts(tmp_path, layout):
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (20, 6, 6, 3), dtype=np.uint8)
    arr = {"nhw": x[..., 0], "nhwc": x, "nchw": x.transpose(0, 3, 1, 2), "float": x / 255.0}[layout]
    np.savez(tmp_path / "d.npz", x=arr, y=np.arange(20) % 4)
    tr, te, _ = load(data=str(tmp_path / "d.npz"), test_fraction=0.25)
    assert tr.spec.shape == ((1, 6, 6) if layout == "nhw" else (3, 6, 6))
    assert tr.spec.num_classes == 4 and len(te) == 8
    if layout == "float":
        assert tr.x.dtype == torch.uint8


def test_npz_with_its_own_test_split(tmp_path):
    x = np.zeros((10, 4, 4), np.uint8)
    np.savez(tmp_path / "d.npz", x=x, x_test=x[:3])
    tr, te, _ = load(data=str(tmp_path / "d.npz"))
    assert (len(tr), len(te)) == (10, 3)


def test_npz_bad_values(tmp_path):
    np.savez(tmp_path / "d.npz", x=np.full((4, 4, 4), 300, np.int32))
    with pytest.raises(DataError, match=r"outside 0\.\.255"):
        load(data=str(tmp_path / "d.npz"))


def test_binarize_and_max_examples():
    tr, _, _ = load(data="digits", binarize=True, max_examples=100)
    assert len(tr) == 100 and set(torch.unique(tr.x).tolist()) <= {0, 255}


def test_augmentations_are_switchable_and_deterministic():
    tr, _, _ = load(data="digits")
    plain = tr.batch(3, 16, seed=0)[0]
    for opts in ({"shift": 2}, {"crop": 0.7}, {"flip": True}):
        aug, _, _ = load(data="digits", **opts)
        a = aug.batch(3, 16, seed=0)[0]
        assert a.shape == plain.shape and a.dtype == torch.uint8
        assert torch.equal(a, aug.batch(3, 16, seed=0)[0])
        assert not torch.equal(a, plain), opts
    flip, _, _ = load(data="digits", flip=True)
    a = flip.batch(3, 16, seed=0)[0]
    assert all(torch.equal(a[i], plain[i]) or torch.equal(a[i], plain[i].flip(-1)) for i in range(16))


def test_model_space_mapping():
    k = torch.arange(256, dtype=torch.uint8)
    v = to_model(k)
    assert v[0] == -1 and v[-1] == 1
    assert torch.equal(to_uint8(v), k)
    lo, hi = dequantize(k, torch.zeros(256)), dequantize(k, torch.full((256,), 0.99))
    assert lo.min() >= -1 and hi.max() < 1
    assert pytest.approx(np.log(2 / 256)) == DEQUANT_LOG_BIN


def test_bad_data_options():
    with pytest.raises(ConfigError, match="--channels"):
        load(data="digits", channels=2)
    with pytest.raises(ConfigError, match="--crop"):
        load(data="digits", crop=1.5)


def test_npz_with_nan_is_a_clear_error(tmp_path):
    x = np.full((4, 4, 4), 0.5, np.float32)
    x[1, 2, 3] = np.nan
    np.savez(tmp_path / "d.npz", x=x)
    with pytest.raises(DataError, match="NaN"):
        load(data=str(tmp_path / "d.npz"))


def test_inpaint_inputs_and_masks(tmp_path):
    np.savez(tmp_path / "x.npz", x=np.zeros((2, 1, 8, 8), np.uint8))
    assert read_images(tmp_path / "x.npz", (1, 8, 8)).shape == (2, 1, 8, 8)
    with pytest.raises(DataError, match="shape"):
        read_images(tmp_path / "x.npz", (1, 28, 28))
    m = parse_mask("0,2,4,8", None, 8, 8)
    assert m.shape == (8, 8) and m.sum() == 4 * 6 and m[2:, :4].all()
    Image.fromarray((m * 255).astype(np.uint8)).save(tmp_path / "m.png")
    assert np.array_equal(parse_mask(None, tmp_path / "m.png", 8, 8), m)
    for box, mask in (("0,0,9,8", None), ("a,b", None), (None, None), ("0,0,1,1", tmp_path / "m.png")):
        with pytest.raises(ConfigError):
            parse_mask(box, mask, 8, 8)


def test_image_paths_are_claimed_by_the_image_modality(tmp_path):
    from genlab.modalities import resolve_kind

    _folder(tmp_path / "imgs")
    np.savez(tmp_path / "d.npz", x=np.zeros((4, 4, 4), np.uint8))
    (tmp_path / "notes.txt").write_text("hello\n" * 20)
    assert resolve_kind(str(tmp_path / "imgs"), ("image",)) == "image"
    assert resolve_kind(str(tmp_path / "d.npz"), ("image", "vector")) == "image"
    assert resolve_kind(str(tmp_path / "notes.txt"), ("tokens",)) == "text"
    with pytest.raises(DataError, match="not data this family reads"):
        resolve_kind(str(tmp_path / "notes.txt"), ("image",))
