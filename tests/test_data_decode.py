"""The batched device-decode input path: its crops against the PIL path's, its batched
crop-and-resize against PIL, and the per-rank slices under torchrun."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from PIL import Image
from test_data import make_large_tree

from senet.data import load_data
from senet.data.augment import crop_resize_batch, shelf_layout
from senet.data.images import crop_resize
from senet.data.pipeline import CropPlan
from senet.errors import SenetError

CPU = torch.device("cpu")
pytestmark = pytest.mark.filterwarnings("ignore:The image decoding:DeprecationWarning")
needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(),
                                reason="needs a CUDA device: nvJPEG decoding runs there")


@pytest.fixture(autouse=True)
def _pil_unless_told(monkeypatch):
    monkeypatch.delenv("SENET_GPU_DECODE", raising=False)


def load(name, **kwargs):
    kwargs.setdefault("root", None)
    kwargs.setdefault("subset", None)
    kwargs.setdefault("seed", 0)
    kwargs.setdefault("batch_size", 32)
    return load_data(name, device=CPU, **kwargs)


def _ks(a: np.ndarray, b: np.ndarray) -> float:
    """Two-sample Kolmogorov-Smirnov distance: the largest gap between the two ECDFs."""
    grid = np.concatenate([a, b])
    cdf_a = np.searchsorted(np.sort(a), grid, side="right") / len(a)
    cdf_b = np.searchsorted(np.sort(b), grid, side="right") / len(b)
    return float(np.abs(cdf_a - cdf_b).max())


def _reference_crops(width: int, height: int, draws: int, ratio=(3 / 4, 4 / 3)):
    """(area fraction, log aspect) of torchvision's RandomResizedCrop, the reference."""
    import torchvision.transforms as T

    torch.manual_seed(0)
    img = torch.zeros(3, height, width)
    out = []
    for _ in range(draws):
        _, _, h, w = T.RandomResizedCrop.get_params(img, (0.08, 1.0), ratio)
        out.append((w * h / (width * height), math.log(w / h)))
    return np.array(out).T


def test_device_path_draws_the_cpu_paths_crops_over_many_draws(tmp_path):
    from senet.data.gpu_decode import EncodedImages

    # Two shapes: landscape 400x300 (the tree's) and a portrait one.
    root = make_large_tree(tmp_path / "in")
    files = sorted(str(p) for p in (root / "train").glob("*/*.JPEG"))[:1]
    portrait = tmp_path / "portrait.jpg"
    Image.new("RGB", (240, 360), (90, 120, 30)).save(portrait)
    files.append(str(portrait))
    plan = CropPlan(224, True, 256)
    device_side = EncodedImages(files, [0, 1], plan)
    draws = 1000
    for index, path in enumerate(files):
        width, height = Image.open(path).size
        area, log_ratio, flips = [], [], []
        for seed in range(draws):
            got = device_side[(index, seed)]
            # The CPU path (PilImages -> CropPlan.apply) draws with box_and_flip.
            box, flip = plan.box_and_flip(width, height, seed)
            assert got.box == box and got.flip == flip
            left, top, right, bottom = box
            area.append((right - left) * (bottom - top) / (width * height))
            log_ratio.append(math.log((right - left) / (bottom - top)))
            flips.append(flip)
        # Scale 0.08-1 and ratio 3/4-4/3 as torchvision draws them (a crop that does not
        # fit is drawn again, so the areas are not uniform): two-sample KS distances
        # below 0.09, about the 0.1 % critical value for 1000 draws against 1000.
        ref_area, ref_ratio = _reference_crops(width, height, draws)
        assert _ks(np.array(area), ref_area) < 0.09
        assert _ks(np.array(log_ratio), ref_ratio) < 0.09
        assert abs(np.mean(flips) - 0.5) < 0.05
        # And the test can fail: crops of ratio 1/2-2 are far from what was drawn.
        wide = _reference_crops(width, height, draws, ratio=(1 / 2, 2))[1]
        assert _ks(np.array(log_ratio), wide) > 0.15


def _smooth(width: int, height: int, seed: int) -> Image.Image:
    small = np.random.default_rng(seed).integers(0, 256, (height // 10, width // 10, 3),
                                                 dtype=np.uint8)
    return Image.fromarray(small).resize((width, height), Image.BILINEAR)


def test_batched_crop_resize_matches_pil_within_resampling_differences():
    pils = [_smooth(400, 300, 0), _smooth(120, 200, 1), _smooth(640, 480, 2)]
    images = [torch.from_numpy(np.asarray(p).copy()).permute(2, 0, 1) for p in pils]
    # A downscale, an upscale with flip, and a fractional (evaluation-style) box.
    boxes = torch.tensor([[10, 20, 390, 290], [30, 40, 80, 100],
                          [100.5, 50.25, 500.75, 450.5]])
    flips = torch.tensor([False, True, False])
    out = crop_resize_batch(images, boxes, flips, 224)
    assert out.shape == (3, 3, 224, 224) and out.is_contiguous(memory_format=torch.channels_last)
    for i, pil in enumerate(pils):
        ref = crop_resize(pil, tuple(boxes[i].tolist()), 224, bool(flips[i]))
        diff = (out[i] - torch.from_numpy(ref).permute(2, 0, 1).float()).abs()
        # Grey levels 0-255: PIL weighs with a triangle, roi_align averages samples.
        assert diff.mean() < 1.0 and diff.max() < 10, (i, diff.mean(), diff.max())
    unflipped = crop_resize_batch(images, boxes, torch.tensor([False] * 3), 224)
    assert torch.equal(out[1], unflipped[1].flip(-1))
    assert not torch.equal(out[1], unflipped[1])


def test_shelf_layout_places_every_image_apart_on_a_small_canvas():
    gen = np.random.default_rng(0)
    sizes = [(int(h), int(w)) for h, w in gen.integers(100, 700, (64, 2))] + [(2000, 50)]
    places, height, width = shelf_layout(sizes, 1500)
    canvas = np.zeros((height, width), dtype=np.int32)
    for (top, left), (h, w) in zip(places, sizes, strict=True):
        canvas[top:top + h, left:left + w] += 1
    assert canvas.max() == 1 and canvas.sum() == sum(h * w for h, w in sizes)
    assert height * width < 2.5 * canvas.sum()


@pytest.mark.parametrize("decode", ["pil", "device"])
def test_each_rank_reads_only_its_slice_of_the_global_batch(tmp_path, monkeypatch, decode):
    atol = 0.0
    if decode == "device":
        monkeypatch.setenv("SENET_GPU_DECODE", "1")  # the nvJPEG code path, CPU decoder
        atol = 1e-3
    root = make_large_tree(tmp_path / "in")
    whole = load("imagenet", root=str(root), batch_size=3, workers=0)
    assert not getattr(whole, "rank_sliced", False)
    full = list(whole.train_batches(1))
    full_val = list(whole.val_batches())
    assert [len(y) for _, y in full] == [3, 3] and [len(y) for _, y in full_val] == [3, 1]
    for rank in (0, 1):
        data = load("imagenet", root=str(root), batch_size=3, workers=0, rank=rank, world=2)
        assert data.rank_sliced and data.steps_per_epoch() == whole.steps_per_epoch()
        mine = list(data.train_batches(1))
        assert len(mine) == len(full)
        for (x, y), (fx, fy) in zip(mine, full, strict=True):
            assert torch.equal(y, fy[rank::2])
            # The device path resamples a canvas laid out for the images at hand: the
            # same crops, at other float coordinates, so equal to float rounding.
            torch.testing.assert_close(x, fx[rank::2], atol=atol, rtol=0)
        val = list(data.val_batches())
        # Rank 1's slice of the last batch (one image) is empty: skipped.
        assert [len(y) for _, y in val] == ([2, 1] if rank == 0 else [1])
        torch.testing.assert_close(val[0][0], full_val[0][0][rank::2], atol=atol, rtol=0)


def test_a_rank_outside_the_world_is_a_one_line_error(tmp_path):
    root = make_large_tree(tmp_path / "in")
    with pytest.raises(SenetError, match=r"imagenet: rank 2 is outside a world of 2 processes; "
                                         r"check RANK and WORLD_SIZE$"):
        load("imagenet", root=str(root), batch_size=2, workers=0, rank=2, world=2)


@needs_cuda
def test_nvjpeg_batch_matches_the_cpu_decoder_within_decoder_differences(tmp_path):
    root = make_large_tree(tmp_path / "in")
    cpu = torch.cat([x for x, _ in load("imagenet", root=str(root), batch_size=2).val_batches()])
    gpu_data = load_data("imagenet", root=str(root), device=torch.device("cuda"), subset=None,
                         seed=0, batch_size=2)
    gpu = torch.cat([x for x, _ in gpu_data.val_batches()]).cpu()
    assert gpu.shape == cpu.shape
    assert (gpu - cpu).abs().mean() < 0.05  # normalised units: about 3 grey levels
    x, _ = next(iter(gpu_data.train_batches(0)))
    assert x.device.type == "cuda" and x.shape == (2, 3, 224, 224)
