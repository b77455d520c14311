"""Tests of the data pipeline (senet.data): every dataset kind, augmentation, subsets, errors."""

from __future__ import annotations

import os
import pickle
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from senet.data import DATASETS_HELP, Data, load_data
from senet.data.augment import Normalizer, channel_stats, crop_flip
from senet.data.builtin import CLASS_NAMES, generate
from senet.data.images import center_box, random_resized_box
from senet.data.streaming import StreamingData
from senet.data.subset import class_quotas, stratified_subset
from senet.data.tensor_data import TensorData
from senet.errors import SenetError

CPU = torch.device("cpu")


@pytest.fixture(autouse=True)
def _isolated(tmp_path_factory, monkeypatch):
    # Never touch ~/.cache or the network from tests.
    monkeypatch.setenv("SENET_CACHE", str(tmp_path_factory.mktemp("cache")))
    monkeypatch.setenv("SENET_OFFLINE", "1")
    monkeypatch.delenv("SENET_GPU_DECODE", raising=False)


def load(dataset: str, **kw) -> Data:
    args = dict(root=None, device=CPU, subset=None, seed=0, batch_size=32, workers=0)
    args.update(kw)
    return load_data(dataset, **args)


def first_batches(data: Data, epoch: int, n: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    out = []
    for i, batch in enumerate(data.train_batches(epoch)):
        if i == n:
            break
        out.append(batch)
    return out


# --------------------------------------------------------------------------- builtin


def test_builtin_generation_is_deterministic_and_balanced():
    x1, y1 = generate(30)
    x2, y2 = generate(30)
    assert torch.equal(x1, x2) and torch.equal(y1, y2)
    assert x1.shape == (300, 3, 32, 32) and x1.dtype == torch.uint8
    assert len(CLASS_NAMES) >= 10 and len(set(CLASS_NAMES)) == len(CLASS_NAMES)
    assert torch.bincount(y1).tolist() == [30] * len(CLASS_NAMES)
    # Not degenerate: pixels use most of the range and images differ from each other.
    assert x1.min() < 30 and x1.max() > 225
    assert (x1[0].float() - x1[10].float()).abs().mean() > 10
    # Colour carries class information: warm classes are redder than cool ones on average.
    warm = x1[y1 < 5].float().mean(dim=(0, 2, 3))
    cool = x1[y1 >= 5].float().mean(dim=(0, 2, 3))
    assert (warm[0] - warm[2]) - (cool[0] - cool[2]) > 15


def test_builtin_colour_is_global_and_never_separable():
    from senet.data.builtin import cast_strengths

    x, y = generate(200)
    warm = y < 5
    # Bayes error: the hidden cast strength has the other family's sign for ~10 % of images,
    # at any size, so even a perfect colour reader gets those wrong.
    wrong_sign = ((cast_strengths(200) > 0) != warm).float().mean().item()
    assert 0.06 < wrong_sign < 0.15
    # The cast is global: the whole image's red-minus-blue mean calls it almost as well as the
    # hidden strength does, a 3x3 patch much worse.
    rb = x[:, 0].float() - x[:, 2].float()
    global_err = ((rb.mean(dim=(1, 2)) > 0) != warm).float().mean().item()
    patch_err = ((rb[:, 14:17, 14:17].mean(dim=(1, 2)) > 0) != warm).float().mean().item()
    assert global_err < wrong_sign + 0.03 and patch_err > global_err + 0.1


@pytest.fixture
def full_builtin(monkeypatch):
    """The built-in data at its real size, not the suite's smaller one (conftest.py)."""
    from senet.data.builtin import SIZE_ENV, builtin_data

    monkeypatch.delenv(SIZE_ENV)
    builtin_data.cache_clear()
    yield
    builtin_data.cache_clear()  # later tests generate the small one again


def test_builtin_size_env_shrinks_the_set_and_its_digest_and_rejects_nonsense(monkeypatch):
    from senet.data.builtin import SIZE_ENV, builtin_data

    small = load("builtin")
    assert (small.train_len, small.val_len) == (1000, 200)  # "100,20" from conftest.py
    monkeypatch.setenv(SIZE_ENV, "30,5")
    builtin_data.cache_clear()
    try:
        smaller = load("builtin")
        assert (smaller.train_len, smaller.val_len) == (300, 50)
        assert smaller.digest != small.digest
        monkeypatch.setenv(SIZE_ENV, "30")
        builtin_data.cache_clear()
        with pytest.raises(SenetError, match="SENET_BUILTIN_PER_CLASS='30': expected two"):
            load("builtin")
    finally:
        monkeypatch.undo()
        builtin_data.cache_clear()


def test_builtin_data_contract(full_builtin):
    data = load("builtin", batch_size=64)
    assert isinstance(data, Data)
    assert data.name == "builtin" and data.num_classes == 10 and data.image_size == 32
    assert data.class_names[0] == "warm-horizontal"
    assert data.train_len == 10_000 and data.val_len == 2_000
    assert data.steps_per_epoch() == 10_000 // 64
    assert len(data.digest) == 16 and data.source.startswith("senet://builtin")
    assert load("builtin", seed=5).digest == data.digest  # the data never depends on the seed
    x, y = next(iter(data.train_batches(0)))
    assert x.shape == (64, 3, 32, 32) and x.dtype == torch.float32
    assert x.is_contiguous(memory_format=torch.channels_last)
    assert y.shape == (64,) and y.dtype == torch.int64
    assert 0 <= y.min() and y.max() < 10


def test_train_batches_deterministic_per_seed_and_epoch():
    a = first_batches(load("builtin", subset=500), 3, 4)
    b = first_batches(load("builtin", subset=500), 3, 4)  # a fresh object, as after a resume
    for (xa, ya), (xb, yb) in zip(a, b, strict=True):
        assert torch.equal(xa, xb) and torch.equal(ya, yb)
    other_epoch = first_batches(load("builtin", subset=500), 4, 1)[0]
    other_seed = first_batches(load("builtin", subset=500, seed=1), 3, 1)[0]
    assert not torch.equal(other_epoch[0], a[0][0])
    assert not torch.equal(other_seed[0], a[0][0])


def test_epoch_covers_each_image_once_and_drops_last_batch():
    data = load("builtin", subset=100, batch_size=32)
    batches = list(data.train_batches(0))
    assert len(batches) == data.steps_per_epoch() == 3
    labels = torch.cat([y for _, y in batches])
    assert labels.numel() == 96
    # 100 images, 10 per class: the 96 seen can lack at most 4 images in total.
    assert torch.bincount(labels, minlength=10).min() >= 6


def test_val_batches_are_unaugmented_and_complete():
    data = load("builtin", batch_size=64)  # the suite's 20 validation images per class
    assert isinstance(data, TensorData)
    xs, ys = zip(*data.val_batches(), strict=True)
    x, y = torch.cat(xs), torch.cat(ys)
    assert x.shape == (200, 3, 32, 32) and [len(b) for b in xs][-1] == 200 - 3 * 64
    val_x, val_y = generate(20, offset=1)
    mean = torch.tensor(data.mean).view(1, 3, 1, 1)
    std = torch.tensor(data.std).view(1, 3, 1, 1)
    expected = (val_x.float() / 255 - mean) / std
    assert torch.equal(y, val_y)
    assert torch.allclose(x, expected, atol=1e-5)
    again = torch.cat([b for b, _ in data.val_batches()])
    assert torch.equal(again, x)


def test_train_batch_is_crop_flip_of_the_planned_images():
    data = load("builtin", subset=200, batch_size=50)
    order, oy, ox, flip = data.epoch_plan(2)
    x, y = next(iter(data.train_batches(2)))
    src = data._train_x[order[:50]].float()
    padded = F.pad(src, (4, 4, 4, 4))  # zero padding in pixel space, as in torchvision
    expected = torch.stack(
        [
            padded[i, :, oy[i] : oy[i] + 32, ox[i] : ox[i] + 32].flip(-1)
            if flip[i]
            else padded[i, :, oy[i] : oy[i] + 32, ox[i] : ox[i] + 32]
            for i in range(50)
        ]
    )
    mean = torch.tensor(data.mean).view(1, 3, 1, 1)
    std = torch.tensor(data.std).view(1, 3, 1, 1)
    assert torch.allclose(x, (expected / 255 - mean) / std, atol=1e-5)
    assert torch.equal(y, data._train_y[order[:50]])
    # The augmentation really varies: shifts in both directions and both flip states occur.
    assert set(oy.tolist()) == set(range(9)) and 0.3 < flip.float().mean() < 0.7


# --------------------------------------------------------------------------- augmentation


def _numbered(n: int = 1, h: int = 6, w: int = 6) -> torch.Tensor:
    """Images whose every pixel value is distinct and non-zero (so zeros mean padding)."""
    x = torch.arange(1, n * 3 * h * w + 1).remainder(250).add(1).to(torch.uint8)
    return x.view(n, 3, h, w).contiguous(memory_format=torch.channels_last)


def test_crop_offsets_shift_the_padded_image():
    img = _numbered()
    idx = torch.zeros(3, dtype=torch.int64)
    oy = torch.tensor([4, 0, 8])
    ox = torch.tensor([4, 0, 5])
    out = crop_flip(img, idx, oy, ox, torch.zeros(3, dtype=torch.bool), pad=4)
    assert out.shape == (3, 3, 6, 6) and out.dtype == torch.uint8
    assert torch.equal(out[0], img[0])  # offset == pad: the original image
    # Offset (0,0): the image moves 4 down and 4 right; a zero border fills the top/left.
    assert torch.equal(out[1, :, 4:, 4:], img[0, :, :2, :2])
    assert out[1, :, :4, :].eq(0).all() and out[1, :, :, :4].eq(0).all()
    # Offset (8,5): known pixel (4,1) of the source lands at (0,0); bottom rows are zero.
    assert torch.equal(out[2, :, 0, 0], img[0, :, 4, 1])
    assert torch.equal(out[2, :, :2, :5], img[0, :, 4:, 1:])
    assert out[2, :, 2:, :].eq(0).all()


def test_flip_mirrors_the_crop():
    img = _numbered(2)
    idx = torch.tensor([0, 1, 1])
    oy = torch.tensor([4, 4, 2])
    ox = torch.tensor([4, 4, 7])
    out = crop_flip(img, idx, oy, ox, torch.tensor([True, False, True]), pad=4)
    assert torch.equal(out[0], img[0].flip(-1))
    assert torch.equal(out[1], img[1])
    padded = F.pad(img[1], (4, 4, 4, 4))
    assert torch.equal(out[2], padded[:, 2:8, 7:13].flip(-1))


def test_normalizer_gives_zero_mean_unit_std():
    x, _ = generate(50)
    mean, std = channel_stats(x)
    out = Normalizer(mean, std, CPU)(x.contiguous(memory_format=torch.channels_last))
    assert out.is_contiguous(memory_format=torch.channels_last)
    assert torch.allclose(out.mean(dim=(0, 2, 3)), torch.zeros(3), atol=1e-4)
    assert torch.allclose(out.std(dim=(0, 2, 3)), torch.ones(3), atol=1e-3)
    assert mean == pytest.approx((x.double() / 255).mean(dim=(0, 2, 3)).tolist(), abs=1e-9)


def test_random_resized_and_center_boxes():
    import random

    rng = random.Random(0)
    for _ in range(200):
        left, top, right, bottom = random_resized_box(400, 300, rng)
        assert 0 <= left < right <= 400 and 0 <= top < bottom <= 300
        area = (right - left) * (bottom - top) / (400 * 300)
        assert 0.07 < area <= 1.0
        assert 3 / 4 - 0.02 < (right - left) / (bottom - top) < 4 / 3 + 0.02
    # Resize shorter side 300 -> 256, centre 224: a 262.5 px square in the middle.
    assert center_box(400, 300, 256, 224) == pytest.approx((68.75, 18.75, 331.25, 281.25))


# --------------------------------------------------------------------------- subsets


def test_class_quotas_spread_evenly():
    assert class_quotas([5, 5, 5], 7) == [3, 2, 2]
    assert class_quotas([1, 10, 10], 9) == [1, 4, 4]  # a small class gives all it has
    assert class_quotas([2, 3, 10], 15) == [2, 3, 10]


def test_stratified_subset_takes_first_images_of_each_class():
    labels = torch.tensor([0, 1, 0, 1, 0, 1, 0, 2, 2])
    assert stratified_subset(labels, 5, 3).tolist() == [0, 1, 2, 3, 7]
    with pytest.raises(SenetError, match="smaller than the number of classes"):
        stratified_subset(labels, 2, 3)
    with pytest.raises(SenetError, match="larger than the training set"):
        stratified_subset(labels, 10, 3)


def test_subset_on_builtin_is_stratified():
    data = load("builtin", subset=25, batch_size=5)
    assert data.train_len == 25 and data.val_len == 200  # all of the (suite's) val set
    counts = torch.bincount(data._train_y, minlength=10).tolist()
    assert counts == [3, 3, 3, 3, 3, 2, 2, 2, 2, 2]
    assert data.digest != load("builtin").digest
    with pytest.raises(SenetError, match="subset 5"):
        load("builtin", subset=5)


def test_batch_larger_than_training_set_is_an_error():
    with pytest.raises(SenetError, match="batch size 64"):
        load("builtin", subset=50, batch_size=64)


# --------------------------------------------------------------------------- folders


def _save(path: Path, img: Image.Image, fmt: str | None = None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path, fmt)


def _noise(mode: str, size: tuple[int, int], seed: int) -> Image.Image:
    rng = np.random.default_rng(seed)
    channels = {"RGB": 3, "L": 1, "CMYK": 4, "RGBA": 4}[mode]
    arr = rng.integers(0, 256, (size[1], size[0], channels), dtype=np.uint8)
    return Image.fromarray(arr.squeeze(-1) if channels == 1 else arr, mode)


def make_small_tree(root: Path, val_name: str = "test") -> Path:
    """cat/dog tree of 16x16 images in mixed formats and modes."""
    seed = 0
    for split, n in (("train", 6), (val_name, 2)):
        for c, cls in enumerate(("cat", "dog")):
            for i in range(n):
                seed += 1
                if i == 0 and split == "train":
                    _save(root / split / cls / "gray.jpg", _noise("L", (16, 16), seed))
                elif i == 1 and split == "train":
                    _save(root / split / cls / "cmyk.jpg", _noise("CMYK", (16, 16), seed))
                elif i == 2 and split == "train":
                    palette = _noise("RGB", (16, 16), seed).convert("P")
                    _save(root / split / cls / "pal.png", palette)
                elif i == 3 and split == "train":
                    _save(root / split / cls / "alpha.png", _noise("RGBA", (16, 16), seed))
                else:
                    _save(root / split / cls / f"{i}.png", _noise("RGB", (16, 16), seed + c))
    (root / "train" / "cat" / "notes.txt").write_text("not an image")
    return root


def test_folder_small_images_decode_to_tensor_and_cache(tmp_path):
    root = make_small_tree(tmp_path / "tree")
    first = load(f"folder:{root}", batch_size=4, workers=0)
    assert isinstance(first, TensorData) and not first.from_cache
    assert first.name == f"folder:{root}" and first.class_names == ["cat", "dog"]
    assert first.train_len == 12 and first.val_len == 4 and first.image_size == 16
    images = first._train_x
    assert images.shape == (12, 3, 16, 16) and images.dtype == torch.uint8
    # Sorted order: cat/0.png.. first; the grayscale JPEG became 3 equal channels.
    files = sorted(p.name for p in (root / "train" / "cat").iterdir() if p.suffix != ".txt")
    gray = images[files.index("gray.jpg")]
    assert torch.equal(gray[0], gray[1]) and torch.equal(gray[1], gray[2])
    png = images[files.index("4.png")].permute(1, 2, 0).numpy()
    assert np.array_equal(png, np.asarray(Image.open(root / "train" / "cat" / "4.png")))

    second = load(f"folder:{root}", batch_size=4, workers=2)
    assert second.from_cache
    assert torch.equal(second._train_x, images) and second.digest == first.digest
    x, y = next(iter(second.train_batches(0)))
    assert x.shape == (4, 3, 16, 16) and y.dtype == torch.int64

    # Touching a file invalidates the cache; decoding in 2 processes gives the same tensor.
    (root / "test" / "dog" / "0.png").touch()
    third = load(f"folder:{root}", batch_size=4, workers=2)
    assert not third.from_cache and torch.equal(third._train_x, images)
    # The superseded cache file of the same tree is removed; one file remains.
    assert len(list(Path(os.environ["SENET_CACHE"]).glob("folder-*.pt"))) == 1


def test_folder_accepts_val_split_and_reports_missing_split(tmp_path):
    root = make_small_tree(tmp_path / "tree", val_name="val")
    assert load(f"folder:{root}", batch_size=4).val_len == 4
    (tmp_path / "bare" / "train" / "a").mkdir(parents=True)
    with pytest.raises(SenetError, match=r"missing split directory .*bare/test or .*bare/val"):
        load(f"folder:{tmp_path / 'bare'}")
    with pytest.raises(SenetError, match="no such directory"):
        load(f"folder:{tmp_path / 'nowhere'}")


@pytest.mark.parametrize("workers", [0, 2])
def test_folder_corrupt_image_names_the_file(tmp_path, workers):
    root = make_small_tree(tmp_path / "tree")
    bad = root / "train" / "dog" / "x.jpg"
    bad.write_bytes(b"this is not a jpeg at all" * 10)
    with pytest.raises(SenetError) as err:
        load(f"folder:{root}", workers=workers)
    message = str(err.value)
    assert str(bad) in message and "cannot identify image file" in message
    assert "\n" not in message


# --------------------------------------------------------------------------- imagenet


def make_large_tree(root: Path, corrupt: bool = False) -> Path:
    """Two wnids, 400x300 JPEGs (one grayscale, one CMYK), train and val."""
    for split, n in (("train", 3), ("val", 2)):
        for c, wnid in enumerate(("n01443537", "n02110958")):
            for i in range(n):
                mode = "L" if (i == 0 and c == 0) else "CMYK" if (i == 1 and c == 1) else "RGB"
                # Smooth content (upscaled noise): resamplers then agree closely.
                img = _noise(mode, (20, 15), 10 * c + i).resize((400, 300), Image.BILINEAR)
                _save(root / split / wnid / f"{wnid}_{i}.JPEG", img, "JPEG")
    if corrupt:
        (root / "train" / "n01443537" / "broken.JPEG").write_bytes(b"\xff\xd8garbage" * 50)
    return root


def test_imagenet_batches_shapes_and_worker_determinism(tmp_path):
    root = make_large_tree(tmp_path / "in")
    inline = load("imagenet", root=str(root), batch_size=2, workers=0)
    assert isinstance(inline, StreamingData) and isinstance(inline, Data)
    assert inline.class_names == ["n01443537", "n02110958"] and inline.image_size == 224
    assert inline.train_len == 6 and inline.val_len == 4 and inline.steps_per_epoch() == 3
    batches = list(inline.train_batches(1))
    assert len(batches) == 3
    x, y = batches[0]
    assert x.shape == (2, 3, 224, 224) and x.dtype == torch.float32
    assert x.is_contiguous(memory_format=torch.channels_last) and y.dtype == torch.int64
    pooled = load("imagenet", root=str(root), batch_size=2, workers=2)
    for (xa, ya), (xb, yb) in zip(batches, pooled.train_batches(1), strict=True):
        assert torch.equal(xa, xb) and torch.equal(ya, yb)
    assert not torch.equal(next(iter(pooled.train_batches(2)))[0], x)
    val = list(pooled.val_batches())
    assert [len(b[1]) for b in val] == [2, 2]
    assert torch.cat([b[1] for b in val]).tolist() == [0, 0, 1, 1]
    # The grayscale JPEG (first val image of class 0) decodes to three equal channels.
    gray = val[0][0][0] * torch.tensor([0.229, 0.224, 0.225]).view(3, 1, 1)
    gray = gray + torch.tensor([0.485, 0.456, 0.406]).view(3, 1, 1)
    assert torch.allclose(gray[0], gray[1], atol=1e-5) and torch.allclose(gray[1], gray[2])


def test_imagenet_eval_transform_matches_torchvision(tmp_path):
    import torchvision.transforms as T

    root = make_large_tree(tmp_path / "in")
    data = load("imagenet", root=str(root), batch_size=4)
    got = next(iter(data.val_batches()))[0]
    reference = T.Compose(
        [
            T.Resize(256),
            T.CenterCrop(224),
            T.ToTensor(),
            T.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225]),
        ]
    )
    files = sorted((root / "val").glob("*/*.JPEG"))
    expected = torch.stack([reference(Image.open(f).convert("RGB")) for f in files])
    assert torch.allclose(got, expected, atol=1e-5)


def test_imagenet_train_size_and_subset(tmp_path):
    root = make_large_tree(tmp_path / "in")
    data = load("imagenet", root=str(root), batch_size=2, subset=4, train_size=96)
    assert data.train_len == 4 and data.image_size == 96
    x, _ = next(iter(data.train_batches(0)))
    assert x.shape == (2, 3, 96, 96)
    assert next(iter(data.val_batches()))[0].shape == (2, 3, 96, 96)


def test_large_image_folder_streams(tmp_path):
    root = make_large_tree(tmp_path / "big")
    data = load(f"folder:{root}", batch_size=2)
    assert isinstance(data, StreamingData) and data.name == f"folder:{root}"
    assert next(iter(data.val_batches()))[0].shape == (2, 3, 224, 224)


@pytest.mark.parametrize("workers", [0, 2])
def test_imagenet_corrupt_image_is_one_line_error(tmp_path, workers):
    root = make_large_tree(tmp_path / "in", corrupt=True)
    data = load("imagenet", root=str(root), batch_size=7, workers=workers)
    with pytest.raises(SenetError) as err:
        list(data.train_batches(0))
    message = str(err.value)
    # The caught exception's traceback holds this frame, which holds it: left so, the data
    # loader and its worker processes would go to the cyclic garbage collector, whose
    # order of finalizing can close a worker's queue before its stop signal is sent, and
    # then the loader waits 5 s for that worker (in whichever later test collects them).
    del err
    assert "broken.JPEG" in message and "corrupt or unreadable image" in message
    assert "\n" not in message and "Traceback" not in message


def test_imagenet_missing_dirs(tmp_path):
    with pytest.raises(SenetError, match="no data root"):
        load("imagenet")
    with pytest.raises(SenetError, match="no such directory"):
        load("imagenet", root=str(tmp_path / "absent"))
    (tmp_path / "in" / "train" / "n1").mkdir(parents=True)
    with pytest.raises(SenetError, match=r"in/val"):
        load("imagenet", root=str(tmp_path / "in"))


def test_decode_path_selection(monkeypatch):
    from senet.data.streaming import PIL_PIPELINE, _choose_pipeline

    assert _choose_pipeline(CPU) is PIL_PIPELINE  # CPU default: never the device decoder
    cuda = torch.device("cuda")
    assert _choose_pipeline(cuda) is not PIL_PIPELINE  # automatic on CUDA
    monkeypatch.setenv("SENET_GPU_DECODE", "0")
    assert _choose_pipeline(cuda) is PIL_PIPELINE
    monkeypatch.setenv("SENET_GPU_DECODE", "1")
    assert _choose_pipeline(CPU) is not PIL_PIPELINE


@pytest.mark.filterwarnings("ignore:The image decoding:DeprecationWarning")
def test_device_decode_path_matches_pil_path(tmp_path, monkeypatch):
    """The nvJPEG code path, run with torchvision's CPU decoder (no GPU here)."""
    root = make_large_tree(tmp_path / "in")
    pil = torch.cat([x for x, _ in load("imagenet", root=str(root), batch_size=2).val_batches()])
    monkeypatch.setenv("SENET_GPU_DECODE", "1")
    data = load("imagenet", root=str(root), batch_size=2)
    dev = torch.cat([x for x, _ in data.val_batches()])
    assert dev.shape == pil.shape == (4, 3, 224, 224)
    # Different decoders and resamplers: close, not equal.
    assert (dev - pil).abs().mean() < 0.05
    x, _ = next(iter(data.train_batches(0)))
    assert x.shape == (2, 3, 224, 224) and x.is_contiguous(memory_format=torch.channels_last)


# --------------------------------------------------------------------------- cifar


def make_fake_cifar(root: Path, n: int = 4) -> Path:
    """The python-pickle layout of CIFAR-10 with n random images per batch file."""
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    names = ["data_batch_1", "data_batch_2", "data_batch_3", "data_batch_4", "data_batch_5"]
    for i, name in enumerate([*names, "test_batch"]):
        entry = {
            "data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
            "labels": [(i + j) % 10 for j in range(n)],
            "batch_label": name,
        }
        (folder / name).write_bytes(pickle.dumps(entry))
    labels = ["airplane", "automobile", "bird", "cat", "deer"]
    labels += ["dog", "frog", "horse", "ship", "truck"]
    (folder / "batches.meta").write_bytes(pickle.dumps({"label_names": labels}))
    return folder


def test_cifar_missing_files_says_what_to_put_where(tmp_path):
    with pytest.raises(SenetError) as err:
        load("cifar10", root=str(tmp_path))
    message = str(err.value)
    assert "cifar-10-python.tar.gz" in message and str(tmp_path) in message
    assert "https://www.cs.toronto.edu/~kriz/cifar.html" in message
    with pytest.raises(SenetError, match="cifar-100-python.tar.gz"):
        load("cifar100", root=str(tmp_path))


def test_fake_cifar10_batches_load(tmp_path):
    folder = make_fake_cifar(tmp_path)
    data = load("cifar10", root=str(tmp_path), batch_size=8)
    assert isinstance(data, TensorData)
    assert data.train_len == 20 and data.val_len == 4 and data.num_classes == 10
    assert data.class_names[:2] == ["airplane", "automobile"]
    assert data.source == str(folder.resolve()) and data.image_size == 32
    first = pickle.loads((folder / "data_batch_1").read_bytes())
    expected = torch.from_numpy(first["data"][0].reshape(3, 32, 32))
    assert torch.equal(data._train_x[0], expected)
    assert data._train_y[:4].tolist() == first["labels"]
    x, y = next(iter(data.train_batches(0)))
    assert x.shape == (8, 3, 32, 32) and y.shape == (8,)


def test_cifar_archive_in_root_is_extracted(tmp_path):
    make_fake_cifar(tmp_path / "staging")
    root = tmp_path / "root"
    root.mkdir()
    with tarfile.open(root / "cifar-10-python.tar.gz", "w:gz") as tar:
        tar.add(tmp_path / "staging" / "cifar-10-batches-py", arcname="cifar-10-batches-py")
    assert load("cifar10", root=str(root), batch_size=4).train_len == 20


def test_fake_cifar100_loads(tmp_path):
    folder = tmp_path / "cifar-100-python"
    folder.mkdir()
    rng = np.random.default_rng(1)
    for name, n in (("train", 200), ("test", 100)):
        entry = {"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8)}
        entry["fine_labels"] = [j % 100 for j in range(n)]
        (folder / name).write_bytes(pickle.dumps(entry))
    meta = {"fine_label_names": [f"c{i}" for i in range(100)]}
    (folder / "meta").write_bytes(pickle.dumps(meta))
    data = load("cifar100", root=str(tmp_path), batch_size=16, subset=100)
    assert data.num_classes == 100 and data.train_len == 100 and data.val_len == 100


# --------------------------------------------------------------------------- names


@pytest.mark.parametrize("name", ["cifar", "folder:", "mnist", ""])
def test_unknown_dataset_lists_valid_names(name):
    with pytest.raises(SenetError) as err:
        load(name)
    assert "builtin, cifar10, cifar100, imagenet, folder:PATH" in str(err.value)


def test_help_and_train_size_on_tensor_dataset():
    for name in ("builtin", "cifar10", "cifar100", "imagenet", "folder:PATH"):
        assert name in DATASETS_HELP
    assert load("builtin", train_size=32).image_size == 32
    with pytest.raises(SenetError, match="train_size 224"):
        load("builtin", train_size=224)
