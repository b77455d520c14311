"""What the image-file pipelines share: the crop plan, the file dataset base, errors sent
as data, and the Pipeline pair (worker-side dataset, main-side assembly).

Both the PIL path (senet.data.streaming) and the device-decode path
(senet.data.gpu_decode) build on this module; neither imports the other's internals.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from senet.data.images import (
    Box,
    center_box,
    crop_resize,
    random_resized_box,
    resize_center_crop,
)


@dataclass
class LoadError:
    """Sent from a worker in place of a batch: errors travel as data, not as exceptions.

    DataLoader re-raises worker exceptions with the whole worker traceback as the message;
    passing the message as data keeps it the one line the user should see.
    """

    message: str


@dataclass(frozen=True)
class CropPlan:
    """How one image is turned into a network input: resize target, crop, flip."""

    size: int
    train: bool
    resize: int  # eval: shorter side before the centre crop

    def box_and_flip(self, width: int, height: int, sample_seed: int) -> tuple[Box, bool]:
        """Source region to resize to size x size, and whether to mirror it."""
        if not self.train:
            return center_box(width, height, self.resize, self.size), False
        rng = random.Random(sample_seed)
        return random_resized_box(width, height, rng), rng.random() < 0.5

    def apply(self, img: Image.Image, sample_seed: int) -> np.ndarray:
        """uint8 (size,size,3): RandomResizedCrop + flip, or Resize + CenterCrop for eval."""
        if not self.train:
            return resize_center_crop(img, self.resize, self.size)
        box, flip = self.box_and_flip(img.width, img.height, sample_seed)
        return crop_resize(img, box, self.size, flip)


class ImageFiles(Dataset):
    """Image files with their labels and the crop plan; subclasses decide how to decode."""

    def __init__(self, files: list[str], labels: list[int], plan: CropPlan) -> None:
        self.files = files
        self.labels = labels
        self.plan = plan

    def __len__(self) -> int:
        return len(self.files)


@dataclass(frozen=True)
class Pipeline:
    """Where decoding happens: `dataset` runs in workers, `assemble` on the main process."""

    dataset: Callable[[list[str], list[int], CropPlan], tuple[Dataset, Callable]]
    assemble: Callable[[Any, torch.device, int], tuple[torch.Tensor, torch.Tensor]]
