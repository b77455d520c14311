"""The built-in dataset: synthetic 32x32 colour textures generated in memory, no files needed.

Each class pairs a colour family with a spatial structure (e.g. "red-rings", "blue-rings"),
so telling classes apart needs both colour (channel) and shape (spatial) evidence, which
gives channel attention something to do. Per-image frequency, phase, orientation, position,
background and noise are random, so the task has to be learned rather than memorised.
Generation uses a fixed seed: the dataset is identical in every run regardless of the
run's own seed.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import torch
from torch import Tensor

from senet.data.augment import channel_stats
from senet.data.base import tensor_digest

GENERATOR_VERSION = "builtin-v1"  # bump when the recipe below changes; it feeds the digest
SEED = 20170905  # fixed; independent of the training seed
SIZE = 32
TRAIN_PER_CLASS = 1000
VAL_PER_CLASS = 200

# Hue centre (fraction of the colour wheel) of each colour family.
PALETTES = {"red": 0.0, "blue": 0.62}
# Every structure survives horizontal flips and small shifts, so the standard
# flip-and-crop augmentation never turns one class into another.
STRUCTURES = ("horizontal", "vertical", "checker", "rings", "blob")
CLASS_NAMES = [f"{colour}-{shape}" for colour in PALETTES for shape in STRUCTURES]


def generate(
    per_class: int, *, seed: int = SEED, size: int = SIZE, offset: int = 0
) -> tuple[Tensor, Tensor]:
    """per_class images of every class as uint8 (N,3,size,size) plus int64 labels.

    Labels cycle through the classes (0,1,...,9,0,1,...) so any prefix is balanced.
    offset shifts the random stream, so train and val are disjoint draws.
    """
    num_classes = len(CLASS_NAMES)
    n = per_class * num_classes
    gen = torch.Generator().manual_seed(seed + offset)

    def uniform(lo: float, hi: float, *shape: int) -> Tensor:
        return lo + (hi - lo) * torch.rand(n, *shape, generator=gen)

    labels = torch.arange(n) % num_classes
    palette = torch.tensor(list(PALETTES.values()))[labels // len(STRUCTURES)]
    shape = labels % len(STRUCTURES)

    # Pixel coordinates centred on a per-image jittered point, rotated by a small angle.
    coords = torch.arange(size, dtype=torch.float32) - (size - 1) / 2
    cy = uniform(-6, 6)[:, None, None]
    cx = uniform(-6, 6)[:, None, None]
    y = coords[None, :, None] - cy
    x = coords[None, None, :] - cx
    angle = uniform(-0.2, 0.2)[:, None, None]
    y, x = y * torch.cos(angle) - x * torch.sin(angle), y * torch.sin(angle) + x * torch.cos(angle)
    radius = torch.sqrt(y * y + x * x)

    freq = uniform(2.0, 4.0)[:, None, None] * (2 * math.pi / size)  # 2-4 cycles per image
    phase = uniform(0, 2 * math.pi, 2)[:, :, None, None]
    blob_radius = uniform(5, 10)[:, None, None]
    # Signed "foreground-ness" per pixel; each structure only evaluated on its own images.
    field = torch.empty(n, size, size)
    for k, name in enumerate(STRUCTURES):
        i = torch.nonzero(shape == k).flatten()
        field[i] = _structure(
            name, y[i], x[i], radius[i], freq[i], phase[i, 0], phase[i, 1], blob_radius[i]
        )
    mask = torch.sigmoid(field)[:, None]  # soft-edged, in [0,1]: where the colour shows

    hue = (palette + uniform(-0.07, 0.07)) % 1.0
    fg = _hsv_to_rgb(hue, uniform(0.55, 1.0), uniform(0.55, 1.0))[:, :, None, None]
    bg = uniform(0.15, 0.85)[:, None].expand(n, 3) + uniform(-0.08, 0.08, 3)  # near-grey
    bg = bg[:, :, None, None]
    images = mask * fg + (1 - mask) * bg
    images = images + 0.08 * torch.randn(images.shape, generator=gen)
    images = (images.clamp(0, 1) * 255).round().to(torch.uint8)
    return images, labels


def _structure(
    name: str,
    y: Tensor,
    x: Tensor,
    radius: Tensor,
    freq: Tensor,
    phase: Tensor,
    phase2: Tensor,
    blob_radius: Tensor,
) -> Tensor:
    if name == "horizontal":
        return 4 * torch.sin(freq * y + phase)
    if name == "vertical":
        return 4 * torch.sin(freq * x + phase)
    if name == "checker":
        return 8 * torch.sin(freq * x + phase) * torch.sin(freq * y + phase2)
    if name == "rings":
        return 4 * torch.sin(freq * radius + phase)
    if name == "blob":
        return (blob_radius - radius) / 0.4
    raise ValueError(name)


def _hsv_to_rgb(h: Tensor, s: Tensor, v: Tensor) -> Tensor:
    """Vectorised HSV -> RGB for (N,) tensors in [0,1]; returns (N,3)."""
    out = []
    for n in (5.0, 3.0, 1.0):  # the R, G, B phase offsets on the hue hexagon
        k = (n + h * 6) % 6
        out.append(v - v * s * torch.clamp(torch.minimum(k, 4 - k), 0, 1))
    return torch.stack(out, dim=1)


@dataclass(frozen=True)
class Builtin:
    train: tuple[Tensor, Tensor]
    val: tuple[Tensor, Tensor]
    stats: tuple[list[float], list[float]]
    digest: str


@functools.cache
def builtin_data() -> Builtin:
    """The generated dataset with its statistics, built once per process (it never changes)."""
    train = generate(TRAIN_PER_CLASS)
    val = generate(VAL_PER_CLASS, offset=1)
    return Builtin(train, val, channel_stats(train[0]), tensor_digest(*train, *val))
