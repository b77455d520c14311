"""Decoding JPEGs on the training device with torchvision.io.decode_jpeg (nvJPEG on CUDA).

Workers only read each file's bytes and its header (to draw the crop, with the same
``CropPlan`` and per-image seed as the PIL path, so the augmentation is the same draw for
draw); the main process decodes the whole batch in one call on the device, then crops,
resizes and flips the whole batch in one kernel (``senet.data.augment.crop_resize_batch``).
Files nvJPEG cannot take (PNG, CMYK JPEG, ...) are decoded by PIL in the worker instead.
Imported only when this path is selected, never by the default CPU path.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset
from torchvision.io import ImageReadMode, decode_jpeg

from senet.data.augment import crop_resize_batch
from senet.data.images import Box, open_rgb, unreadable
from senet.data.pipeline import CropPlan, ImageFiles, LoadError, Pipeline
from senet.errors import SenetError


@dataclass
class Encoded:
    """One image as it leaves a worker: JPEG bytes, or RGB pixels (H,W,3) when not a JPEG."""

    path: str
    data: torch.Tensor
    is_jpeg: bool
    box: Box  # left, top, right, bottom in source pixels, as drawn (not rounded)
    flip: bool
    label: int


class EncodedImages(ImageFiles):
    """Reads one file's bytes (decoding happens later, batched on the GPU)."""

    def __getitem__(self, key: int | tuple[int, int]) -> Encoded | LoadError:
        index, sample_seed = key if isinstance(key, tuple) else (key, 0)
        path = self.files[index]
        try:
            with Image.open(path) as img:
                width, height = img.size
                is_jpeg = img.format == "JPEG" and img.mode in ("RGB", "L")
            if is_jpeg:
                with open(path, "rb") as f:
                    data = torch.frombuffer(bytearray(f.read()), dtype=torch.uint8)
            else:
                data = torch.from_numpy(np.asarray(open_rgb(path)).copy())
        except SenetError as exc:
            return LoadError(str(exc))
        except (OSError, ValueError, SyntaxError) as exc:
            return LoadError(str(unreadable(path, exc)))
        box, flip = self.plan.box_and_flip(width, height, sample_seed)
        return Encoded(path, data, is_jpeg, box, flip, self.labels[index])


def _dataset(files: list[str], labels: list[int], plan: CropPlan) -> tuple[Dataset, Callable]:
    return EncodedImages(files, labels, plan), _list_collate


def _list_collate(samples: list) -> list[Encoded] | LoadError:
    for s in samples:
        if isinstance(s, LoadError):
            return s
    return samples


def _decode_jpegs(items: list[Encoded], device: torch.device) -> list[torch.Tensor]:
    try:
        return decode_jpeg([s.data for s in items], mode=ImageReadMode.RGB, device=device)
    except RuntimeError:
        pass
    # The batch call does not say which file failed: retry one by one to name it.
    out = []
    for s in items:
        try:
            out.append(decode_jpeg(s.data, mode=ImageReadMode.RGB, device=device))
        except RuntimeError as exc:
            raise unreadable(s.path, exc) from None
    return out


def _assemble(
    raw: list[Encoded], device: torch.device, size: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Decode, crop, resize and flip a batch on the device; float (B,3,S,S) in 0..255."""
    jpegs = [s for s in raw if s.is_jpeg]
    decoded = iter(_decode_jpegs(jpegs, device) if jpegs else [])
    images = [next(decoded) if s.is_jpeg else s.data.to(device).permute(2, 0, 1) for s in raw]
    boxes = torch.tensor([s.box for s in raw], dtype=torch.float32)
    flips = torch.tensor([s.flip for s in raw])
    out = crop_resize_batch(images, boxes, flips, size)
    labels = torch.tensor([s.label for s in raw], dtype=torch.int64)
    return out.clamp_(0, 255), labels


DEVICE_PIPELINE = Pipeline(_dataset, _assemble)
