"""Where the ImageNet input's time goes, stage by stage, and the whole loader's img/s.

    python benchmarks/bench_input.py --device cuda --input-root /data/imagenet
    python benchmarks/bench_input.py --device cpu --quick

Also the input rows of benchmarks/bench_gpu.py (``input_rows``). Stages, each timed over
the same images in batches of ``--batch`` (img/s; one process unless it says workers):
  read           the files' bytes (page cache warm after the first pass)
  decode-pil     PIL decoding one by one (what each worker of the CPU path does)
  decode-batch   torchvision.io.decode_jpeg on the whole batch (nvJPEG on CUDA)
  resize-each    crop, resize and flip one image at a time (the device path before)
  resize-batch   senet.data.augment.crop_resize_batch on the whole batch
  loader-pil     StreamingData, PIL path, --input-workers workers, second epoch
  loader-device  StreamingData, device-decode path, same workers, second epoch
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from senet.data import load_data  # noqa: E402
from senet.data.augment import crop_resize_batch  # noqa: E402
from senet.data.images import open_rgb  # noqa: E402
from senet.data.pipeline import CropPlan  # noqa: E402

SIZE = 224


@dataclass
class Stage:
    stage: str
    shape: str
    img_s: float | None
    note: str = ""


def synthetic_tree(root: Path, images: int) -> Path:
    """An imagenet-style tree of smooth 500x375 JPEGs (about ImageNet's mean size)."""
    from PIL import Image

    rng = np.random.default_rng(0)
    for split, n in (("train", images), ("val", max(2, images // 8))):
        for i in range(n):
            folder = root / split / f"n{i % 2:08d}"
            folder.mkdir(parents=True, exist_ok=True)
            small = rng.integers(0, 256, (38, 50, 3), dtype=np.uint8)
            Image.fromarray(small).resize((500, 375), Image.BILINEAR).save(
                folder / f"img_{i}.JPEG", quality=90)
    return root


def _files(root: Path, images: int) -> list[str]:
    from senet.data.scan import scan_split

    return scan_split(root / "train").files[:images]


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _rate(fn: Callable[[], int], device: torch.device, repeats: int) -> float:
    """Median img/s of ``fn`` (which returns the images it handled) over ``repeats``."""
    fn()  # warm: page cache, cuDNN/nvJPEG handles, lazy imports
    rates = []
    for _ in range(repeats):
        _sync(device)
        t0 = time.perf_counter()
        n = fn()
        _sync(device)
        rates.append(n / (time.perf_counter() - t0))
    return statistics.median(rates)


def _batches(items: list, batch: int) -> list[list]:
    return [items[i:i + batch] for i in range(0, len(items) - batch + 1, batch)]


def input_rows(device: torch.device, args: argparse.Namespace) -> list[Stage]:
    from torchvision.io import ImageReadMode, decode_jpeg

    quick = getattr(args, "quick", False)
    images = args.input_images or (16 if quick else 2048)
    batch = min(8 if quick else 256, images)
    workers = 0 if quick else args.input_workers
    repeats = 1 if quick else 3
    tmp = None
    if args.input_root:
        root = Path(args.input_root)
    else:
        tmp = tempfile.TemporaryDirectory()
        root = synthetic_tree(Path(tmp.name), images)
    try:
        files = _files(root, images)
        groups = _batches(files, batch)
        shape = f"{batch}x{SIZE}"
        decoder = "nvJPEG" if device.type == "cuda" else "torchvision CPU decoder"
        blobs = [torch.frombuffer(bytearray(Path(f).read_bytes()), dtype=torch.uint8)
                 for f in files[:len(groups) * batch]]
        plan = CropPlan(SIZE, True, 256)
        decoded = [decode_jpeg(blobs[i:i + batch], mode=ImageReadMode.RGB, device=device)
                   for i in range(0, len(blobs), batch)]
        boxes = [[plan.box_and_flip(int(im.shape[2]), int(im.shape[1]), seed)
                  for seed, im in enumerate(group)] for group in decoded]

        def read() -> int:
            return sum(len(Path(f).read_bytes()) > 0 for f in files)

        def decode_pil() -> int:
            return sum(open_rgb(f).width > 0 for f in files)

        def decode_batch() -> int:
            for i in range(0, len(blobs), batch):
                decode_jpeg(blobs[i:i + batch], mode=ImageReadMode.RGB, device=device)
            return len(blobs)

        def resize_each() -> int:
            for group, drawn in zip(decoded, boxes, strict=True):
                out = torch.empty(len(group), 3, SIZE, SIZE, device=device)
                for i, (img, (box, flip)) in enumerate(zip(group, drawn, strict=True)):
                    left, top, right, bottom = (round(v) for v in box)
                    crop = img[None, :, top:bottom, left:right].float()
                    r = F.interpolate(crop, size=(SIZE, SIZE), mode="bilinear",
                                      antialias=True)[0]
                    out[i] = r.flip(-1) if flip else r
            return sum(len(g) for g in decoded)

        def resize_batch() -> int:
            for group, drawn in zip(decoded, boxes, strict=True):
                crop_resize_batch(group, torch.tensor([b for b, _ in drawn]),
                                  torch.tensor([f for _, f in drawn]), SIZE)
            return sum(len(g) for g in decoded)

        rows = [Stage("read", shape, _rate(read, device, repeats), f"{len(files)} files"),
                Stage("decode-pil", shape, _rate(decode_pil, device, repeats), "one process"),
                Stage("decode-batch", shape, _rate(decode_batch, device, repeats), decoder),
                Stage("resize-each", shape, _rate(resize_each, device, repeats),
                      "crop + antialiased interpolate + flip per image"),
                Stage("resize-batch", shape, _rate(resize_batch, device, repeats),
                      "one roi_align over a canvas")]
        for stage, flag in (("loader-pil", "0"), ("loader-device", "1")):
            rows.append(Stage(stage, shape, _loader_rate(root, device, batch, workers, flag),
                              f"{workers} workers, second epoch"
                              + (f", {decoder}" if flag == "1" else "")))
        return rows
    finally:
        if tmp is not None:
            tmp.cleanup()


def _loader_rate(root: Path, device: torch.device, batch: int, workers: int,
                 gpu_decode: str) -> float:
    previous = os.environ.get("SENET_GPU_DECODE")
    os.environ["SENET_GPU_DECODE"] = gpu_decode
    try:
        data = load_data("imagenet", root=str(root), device=device, subset=None, seed=0,
                         batch_size=batch, workers=workers)
        for epoch in (1, 2):  # the first epoch starts the workers and warms the cache
            _sync(device)
            t0 = time.perf_counter()
            n = sum(int(y.shape[0]) for _, y in data.train_batches(epoch))
            _sync(device)
        return n / (time.perf_counter() - t0)
    finally:
        if previous is None:
            os.environ.pop("SENET_GPU_DECODE", None)
        else:
            os.environ["SENET_GPU_DECODE"] = previous


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--quick", action="store_true", help="16 images, batch 8, no workers")
    ap.add_argument("--input-root")
    ap.add_argument("--input-images", type=int)
    ap.add_argument("--input-workers", type=int, default=12)
    args = ap.parse_args()
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        sys.exit("--device cuda: CUDA is not available here; use --device cpu --quick")
    print("| stage | batch x size | img/s | note |\n|---|---|---|---|")
    for row in input_rows(device, args):
        print(f"| {row.stage} | {row.shape} | {row.img_s:,.0f} | {row.note} |")


if __name__ == "__main__":
    main()
