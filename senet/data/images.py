"""Opening image files as RGB and the crop geometry of the ImageNet transforms.

This module needs only PIL and numpy, so decode worker processes stay light.
"""

from __future__ import annotations

import math
import random
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from senet.errors import SenetError

IMAGE_SUFFIXES = frozenset(
    {".jpg", ".jpeg", ".png", ".ppm", ".pgm", ".bmp", ".tif", ".tiff", ".webp", ".gif"}
)

Box = tuple[float, float, float, float]  # left, top, right, bottom in source pixels


def unreadable(path: str | Path, exc: BaseException) -> SenetError:
    """The one-line error for a file that cannot be decoded (the documented choice: stop)."""
    if isinstance(exc, UnidentifiedImageError):
        reason = "cannot identify image file"
    else:
        reason = (str(exc).splitlines() or [type(exc).__name__])[0]
    return SenetError(f"corrupt or unreadable image: {path} ({reason}); delete or replace it")


def open_rgb(path: str | Path) -> Image.Image:
    """The fully decoded image in RGB, whatever its mode (grayscale, CMYK, palette, alpha)."""
    try:
        with Image.open(path) as img:
            img.load()  # decode fully here, inside the try, while the file is open
            return img if img.mode == "RGB" else img.convert("RGB")
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        raise unreadable(path, exc) from None


def image_size(path: str | Path) -> tuple[int, int]:
    """(width, height) from the header only."""
    try:
        with Image.open(path) as img:
            return img.size
    except (OSError, ValueError, SyntaxError) as exc:
        raise unreadable(path, exc) from None


def decode_small(paths: list[str], height: int, width: int) -> np.ndarray:
    """Decode files into one uint8 (N,H,W,3) array; any odd-sized image is resized to fit."""
    out = np.empty((len(paths), height, width, 3), dtype=np.uint8)
    for i, path in enumerate(paths):
        img = open_rgb(path)
        if img.size != (width, height):
            img = img.resize((width, height), Image.Resampling.BILINEAR)
        out[i] = np.asarray(img)
    return out


def random_resized_box(
    width: int,
    height: int,
    rng: random.Random,
    scale: tuple[float, float] = (0.08, 1.0),
    ratio: tuple[float, float] = (3 / 4, 4 / 3),
) -> Box:
    """A crop of random area fraction and aspect ratio (Inception-style RandomResizedCrop).

    Tries a few random draws; if none fits inside the image, falls back to the largest
    central crop whose aspect ratio lies within `ratio`.
    """
    area = width * height
    log_lo, log_hi = math.log(ratio[0]), math.log(ratio[1])
    for _ in range(10):
        target = area * rng.uniform(*scale)
        aspect = math.exp(rng.uniform(log_lo, log_hi))
        w = round(math.sqrt(target * aspect))
        h = round(math.sqrt(target / aspect))
        if 0 < w <= width and 0 < h <= height:
            left = rng.randint(0, width - w)
            top = rng.randint(0, height - h)
            return (left, top, left + w, top + h)
    aspect = width / height
    if aspect < ratio[0]:
        w, h = width, round(width / ratio[0])
    elif aspect > ratio[1]:
        w, h = round(height * ratio[1]), height
    else:
        w, h = width, height
    left, top = (width - w) // 2, (height - h) // 2
    return (left, top, left + w, top + h)


def center_box(width: int, height: int, resize: int, crop: int) -> Box:
    """The source region that Resize(resize) (shorter side) + CenterCrop(crop) keeps.

    Cropping that region and resizing it straight to crop x crop skips the intermediate
    image, which is cheaper and (up to resampling) the same result.
    """
    side = crop * min(width, height) / resize  # the crop's side in source pixels
    side = min(side, width, height)
    left = (width - side) / 2
    top = (height - side) / 2
    return (left, top, left + side, top + side)


def resize_center_crop(img: Image.Image, resize: int, crop: int) -> np.ndarray:
    """uint8 (crop,crop,3): shorter side to `resize`, then the central crop x crop.

    Follows torchvision's Resize(resize) + CenterCrop(crop) on PIL images step by step
    (same sizes, same rounding, same PIL filter), so evaluation matches the reference
    protocol exactly; released weights are scored on this transform.
    """
    width, height = img.size
    if width <= height:
        size = (resize, int(resize * height / width))
    else:
        size = (int(resize * width / height), resize)
    img = img.resize(size, Image.Resampling.BILINEAR)
    left = int(round((size[0] - crop) / 2.0))
    top = int(round((size[1] - crop) / 2.0))
    return np.array(img.crop((left, top, left + crop, top + crop)))


def crop_resize(img: Image.Image, box: Box, size: int, flip: bool) -> np.ndarray:
    """uint8 (size,size,3) array of `box` resized to size x size, mirrored if `flip`."""
    out = img.resize((size, size), Image.Resampling.BILINEAR, box=box)
    if flip:
        out = out.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    return np.array(out)  # a writable copy: torch.from_numpy warns on read-only arrays
