"""The built-in dataset: synthetic 32x32 colour textures generated in memory, no files needed.

Design (also in docs/training.md). A class is a pair (colour cast, texture): two casts ("warm",
"cool") times five grey-level textures, ten classes. The two halves of the label live at
different scales on purpose:

- the texture is local: a luminance pattern that a 3x3 neighbourhood already shows;
- the cast is global: a faint shift of every pixel's colour along the red-blue axis, buried
  under strong per-pixel colour noise. A small patch cannot tell warm from cool, the mean
  of a channel over the whole image can, which is exactly what an SE block's squeeze sees.

The task is never separable, whatever the number of images: each image's cast strength is
drawn from one of two overlapping normal distributions, so a fixed share of warm images are
(slightly) cool and the reverse, and no classifier can get those right. A Bayes error well
above 0 leaves room to tell variants apart at every budget. Per-image frequency, phase,
orientation, position, grey levels and noise are random, so the task has to be learned
rather than memorised. Generation uses a fixed seed: the dataset is identical in every run
regardless of the run's own seed.
"""

from __future__ import annotations

import functools
import math
import os
from dataclasses import dataclass

import torch
from torch import Tensor

from senet.data.augment import channel_stats
from senet.data.base import tensor_digest

GENERATOR_VERSION = "builtin-v2"  # bump when the recipe below changes; it feeds the digest
SEED = 20170905  # fixed; independent of the training seed
SIZE = 32
TRAIN_PER_CLASS = 1000
VAL_PER_CLASS = 200
# "TRAIN,VAL" images per class instead of the two above. For the test suite, whose CPU
# trainings would otherwise spend most of their time validating 2,000 images; the sizes
# feed the digest, so a shrunken set is never mistaken for the real one in MLflow.
SIZE_ENV = "SENET_BUILTIN_PER_CLASS"

# Cast sign of each colour family: +1 pushes red up and blue down, -1 the reverse.
CASTS = {"warm": 1.0, "cool": -1.0}
# Every structure survives horizontal flips and small shifts, so the standard
# flip-and-crop augmentation never turns one class into another.
STRUCTURES = ("horizontal", "vertical", "checker", "rings", "blob")
CLASS_NAMES = [f"{cast}-{shape}" for cast in CASTS for shape in STRUCTURES]

# The cast strength of an image is N(sign, CAST_SPREAD): with a spread of 0.78 about 10 % of
# images have a cast of the other family's sign (Phi(-1/0.78) = 0.100), so the best
# possible colour call is wrong for roughly that share: the data's Bayes error is near 10 %.
CAST_SPREAD = 0.78
CAST_AMPLITUDE = 0.03  # colour shift at strength 1, in [0,1] pixel units
CHROMA_NOISE = 0.15  # per-pixel, per-channel colour noise (std), 5x the cast
LUMA_NOISE = 0.04  # per-pixel grey-level noise shared by the three channels
# Unit vector along which the cast moves a pixel: red up, blue down, green unchanged.
CAST_AXIS = torch.tensor([1.0, 0.0, -1.0]) / math.sqrt(2.0)


def generate(
    per_class: int, *, seed: int = SEED, size: int = SIZE, offset: int = 0
) -> tuple[Tensor, Tensor]:
    """per_class images of every class as uint8 (N,3,size,size) plus int64 labels.

    Labels cycle through the classes (0,1,...,9,0,1,...) so any prefix is balanced.
    offset shifts the random stream, so train and val are disjoint draws.
    """
    images, labels, _ = _generate(per_class, seed=seed, size=size, offset=offset)
    return images, labels


def cast_strengths(per_class: int, *, seed: int = SEED, offset: int = 0) -> Tensor:
    """The signed cast strength drawn for each image of ``generate`` (same order): the
    hidden variable behind the colour half of the label, for tests and analysis."""
    return _generate(per_class, seed=seed, size=8, offset=offset)[2]


def _generate(per_class: int, *, seed: int, size: int, offset: int) -> tuple[Tensor, ...]:
    num_classes = len(CLASS_NAMES)
    n = per_class * num_classes
    gen = torch.Generator().manual_seed(seed + offset)

    def uniform(lo: float, hi: float, *shape: int) -> Tensor:
        return lo + (hi - lo) * torch.rand(n, *shape, generator=gen)

    labels = torch.arange(n) % num_classes
    sign = torch.tensor(list(CASTS.values()))[labels // len(STRUCTURES)]
    shape = labels % len(STRUCTURES)
    strength = sign + CAST_SPREAD * torch.randn(n, generator=gen)

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
    mask = torch.sigmoid(field)  # soft-edged, in [0,1]

    # The texture in grey levels only: two random greys at least 0.2 apart, either way round.
    low = uniform(0.2, 0.45)
    high = low + uniform(0.2, 0.35)
    flip = torch.rand(n, generator=gen) < 0.5
    fg = torch.where(flip, low, high)[:, None, None]
    bg = torch.where(flip, high, low)[:, None, None]
    grey = mask * fg + (1 - mask) * bg + LUMA_NOISE * torch.randn(n, size, size, generator=gen)

    cast = (CAST_AMPLITUDE * strength)[:, None, None, None] * CAST_AXIS[None, :, None, None]
    # In place on the one full-size float buffer: this is most of the generation time.
    images = torch.randn(n, 3, size, size, generator=gen).mul_(CHROMA_NOISE)
    images.add_(grey[:, None]).add_(cast).clamp_(0, 1).mul_(255).round_()
    images = images.to(torch.uint8)
    return images, labels, strength


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


@dataclass(frozen=True)
class Builtin:
    train: tuple[Tensor, Tensor]
    val: tuple[Tensor, Tensor]
    stats: tuple[list[float], list[float]]
    digest: str


def per_class() -> tuple[int, int]:
    """(training, validation) images per class: the defaults, or $SENET_BUILTIN_PER_CLASS."""
    raw = os.environ.get(SIZE_ENV)
    if not raw:
        return TRAIN_PER_CLASS, VAL_PER_CLASS
    try:
        train, val = (int(v) for v in raw.split(","))
    except ValueError:
        train = val = 0
    if train < 1 or val < 1:
        from senet.errors import SenetError

        raise SenetError(f"{SIZE_ENV}={raw!r}: expected two positive counts, e.g. 100,20 "
                         "(training and validation images per class); unset it for the "
                         f"full {TRAIN_PER_CLASS},{VAL_PER_CLASS}")
    return train, val


@functools.cache
def builtin_data() -> Builtin:
    """The generated dataset with its statistics, built once per process (it never changes)."""
    train_per_class, val_per_class = per_class()
    train = generate(train_per_class)
    val = generate(val_per_class, offset=1)
    return Builtin(train, val, channel_stats(train[0]), tensor_digest(*train, *val))
