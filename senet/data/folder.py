"""`folder:PATH` datasets: any class-per-folder tree with train/ and test/ (or val/).

Trees of small images (at most SMALL_SIDE pixels, e.g. CIFAR-10 or Tiny-ImageNet as files)
are decoded once, in parallel, into uint8 tensors and cached on disk, then trained like
CIFAR from memory. The first training image decides: every image is decoded at its size
(odd-sized ones are resized to it). Trees of larger images are streamed like ImageNet.
"""

from __future__ import annotations

import logging
import multiprocessing
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from senet.data import cache
from senet.data.augment import channel_stats
from senet.data.base import Data, tensor_digest
from senet.data.images import decode_small, image_size
from senet.data.scan import Split, require_two_classes, scan_split, tree_splits
from senet.data.streaming import StreamingData
from senet.data.tensor_data import build_tensor_data

log = logging.getLogger(__name__)

SMALL_SIDE = 64
CHUNK = 256  # files per decode task: large enough to amortise inter-process overhead


def load_folder(
    path: str,
    *,
    device: torch.device,
    subset: int | None,
    seed: int,
    batch_size: int,
    workers: int,
    train_size: int | None,
    rank: int = 0,
    world: int = 1,
) -> Data:
    name = f"folder:{path}"
    train_dir, val_dir = tree_splits(name)
    root = train_dir.parent
    train = scan_split(train_dir)
    require_two_classes(name, train_dir, len(train.class_names))
    val = scan_split(val_dir, train.class_names)
    width, height = image_size(train.files[0])
    source = str(root.resolve())
    if max(width, height) > SMALL_SIDE:
        return StreamingData(
            name=name,
            train=train,
            val=val,
            device=device,
            subset=subset,
            seed=seed,
            batch_size=batch_size,
            workers=workers,
            train_size=train_size,
            source=source,
            rank=rank,
            world=world,
        )
    payload, from_cache = cached_tensors(root, train, val, height, width, workers)
    data = build_tensor_data(
        name=name,
        class_names=list(payload["class_names"]),
        train=(payload["train_x"], payload["train_y"]),
        val=(payload["val_x"], payload["val_y"]),
        stats=(list(payload["mean"]), list(payload["std"])),
        device=device,
        subset=subset,
        seed=seed,
        batch_size=batch_size,
        train_size=train_size,
        source=source,
        digest=str(payload["digest"]),
    )
    data.from_cache = from_cache
    return data


def cached_tensors(
    root: Path, train: Split, val: Split, height: int, width: int, workers: int
) -> tuple[dict, bool]:
    """The decoded tree from the cache, or decoded now and cached. Returns (payload, hit)."""
    files = train.files + val.files
    key = cache.tree_key(root, files)
    path = cache.tree_cache_path(root, key)
    payload = cache.load(path)
    if payload is not None:
        return payload, True
    start = time.perf_counter()
    train_x = decode_tree(train.files, height, width, workers)
    val_x = decode_tree(val.files, height, width, workers)
    train_y = torch.tensor(train.labels, dtype=torch.int64)
    val_y = torch.tensor(val.labels, dtype=torch.int64)
    mean, std = channel_stats(train_x)
    payload = {
        "class_names": train.class_names,
        "train_x": train_x,
        "train_y": train_y,
        "val_x": val_x,
        "val_y": val_y,
        "mean": mean,
        "std": std,
        # Content digest: the same images give the same digest wherever the tree lives.
        "digest": tensor_digest(train_x, train_y, val_x, val_y),
    }
    if cache.save(path, payload):
        cache.drop_stale(path)
    seconds = time.perf_counter() - start
    log.info("decoded %d images from %s in %.1f s; cache: %s", len(files), root, seconds, path)
    return payload, False


def decode_tree(files: list[str], height: int, width: int, workers: int) -> Tensor:
    """uint8 (N,3,H,W) in channels_last layout, decoded by `workers` processes (0: inline)."""
    chunks = [files[i : i + CHUNK] for i in range(0, len(files), CHUNK)]
    if workers <= 1 or len(chunks) == 1:
        parts = [decode_small(c, height, width) for c in chunks]
    else:
        # fork is cheapest (workers need only PIL and numpy); elsewhere use the default.
        ctx = multiprocessing.get_context("fork" if sys.platform == "linux" else None)
        with ProcessPoolExecutor(max_workers=workers, mp_context=ctx) as pool:
            # Worker errors (a corrupt file) come back as the SenetError raised in the worker.
            sizes = [height] * len(chunks), [width] * len(chunks)
            parts = list(pool.map(decode_small, chunks, *sizes))
    nhwc = torch.from_numpy(np.concatenate(parts))
    return nhwc.permute(0, 3, 1, 2)  # NCHW view of NHWC storage: channels_last, no copy
