"""Batched augmentation of uint8 image tensors: pad-and-crop, horizontal flip, normalisation.

Everything works on whole batches with index arithmetic, so the cost per image is a few
tensor ops regardless of batch size, and it runs on whatever device holds the data.
"""

from __future__ import annotations

import torch
from torch import Tensor


def channel_stats(images: Tensor) -> tuple[list[float], list[float]]:
    """Per-channel mean and std of uint8 images (N,C,H,W), in [0,1] units.

    Computed exactly from a 256-bin histogram per channel: cheaper than a float copy of
    the whole set, and free of rounding drift on large sets.
    """
    levels = torch.arange(256, dtype=torch.float64) / 255.0
    means, stds = [], []
    for c in range(images.shape[1]):
        hist = torch.bincount(images[:, c].reshape(-1).cpu(), minlength=256).double()
        p = hist / hist.sum()
        mean = float((p * levels).sum())
        var = float((p * (levels - mean) ** 2).sum())
        means.append(mean)
        stds.append(max(var, 1e-12) ** 0.5)
    return means, stds


class Normalizer:
    """uint8 NCHW -> float32 (x/255 - mean)/std as one fused multiply-add, keeping the layout."""

    def __init__(self, mean: list[float], std: list[float], device: torch.device) -> None:
        m = torch.tensor(mean, dtype=torch.float32)
        s = torch.tensor(std, dtype=torch.float32)
        self.scale = (1.0 / (255.0 * s)).view(1, -1, 1, 1).to(device)
        self.shift = (-m / s).view(1, -1, 1, 1).to(device)

    def __call__(self, images: Tensor) -> Tensor:
        out = torch.addcmul(self.shift, images.float(), self.scale)
        # addcmul follows the inputs' layout; the explicit call is a no-op when it already did.
        return out.contiguous(memory_format=torch.channels_last)


def crop_flip(
    images: Tensor, index: Tensor, offset_y: Tensor, offset_x: Tensor, flip: Tensor, pad: int
) -> Tensor:
    """Random-crop-with-zero-padding plus optional horizontal flip, for a batch at once.

    images: uint8 (N,C,H,W) in channels_last layout (the whole dataset).
    index: (B,) which images; offset_y/offset_x: (B,) crop corners in [0, 2*pad] within the
    zero-padded image; flip: (B,) bool. Returns uint8 (B,C,H,W) in channels_last layout.

    Instead of padding, each output pixel computes the source pixel it comes from; pixels
    that fall into the padding read a clamped neighbour and are then zeroed by a mask.
    """
    n, c, h, w = images.shape
    if not images.is_contiguous(memory_format=torch.channels_last):
        raise ValueError("crop_flip expects a channels_last tensor")
    flat = images.permute(0, 2, 3, 1).reshape(-1)  # a view: NHWC order is the storage order
    dev = images.device
    rows = offset_y[:, None] + torch.arange(h, device=dev) - pad  # (B,H)
    cols = offset_x[:, None] + torch.arange(w, device=dev) - pad  # (B,W)
    cols = torch.where(flip[:, None], cols.flip(1), cols)
    inside = ((rows >= 0) & (rows < h))[:, :, None] & ((cols >= 0) & (cols < w))[:, None, :]
    rows = rows.clamp(0, h - 1)
    cols = cols.clamp(0, w - 1)
    pixel = index[:, None, None] * (h * w) + rows[:, :, None] * w + cols[:, None, :]  # (B,H,W)
    linear = pixel[..., None] * c + torch.arange(c, device=dev)  # (B,H,W,C)
    out = flat.take(linear) * inside[..., None]
    return out.permute(0, 3, 1, 2)


def shelf_layout(sizes: list[tuple[int, int]], width: int
                 ) -> tuple[list[tuple[int, int]], int, int]:
    """Places images of ``sizes`` (height, width) on one canvas in shelves (rows).

    Tallest first, left to right, a new shelf when the row is full; returns each image's
    (top, left), and the canvas height and width. Close to the images' total area for
    photos of similar sizes, whatever the odd giant among them.
    """
    order = sorted(range(len(sizes)), key=lambda i: -sizes[i][0])
    width = max(width, max(w for _, w in sizes))
    places: list[tuple[int, int]] = [(0, 0)] * len(sizes)
    top = left = shelf = 0
    for i in order:
        h, w = sizes[i]
        if left + w > width:
            top, left, shelf = top + shelf, 0, 0
        places[i] = (top, left)
        left += w
        shelf = max(shelf, h)
    return places, top + shelf, width


def crop_resize_batch(images: list[Tensor], boxes: Tensor, flips: Tensor, size: int) -> Tensor:
    """Every image's box resized to size x size, mirrored where ``flips``, in one kernel.

    images: (3, H, W) uint8 tensors of any sizes, on one device (as a batched JPEG decode
    returns them); boxes: (B, 4) float (left, top, right, bottom) in source pixels, as
    ``senet.data.images`` draws them; flips: (B,) bool. Returns float32 (B, 3, size, size)
    in 0..255, channels_last.

    The images are copied onto one float canvas (``shelf_layout``) and cropped and resized
    by one ``roi_align`` with adaptive sampling: each output pixel averages ceil(box/size)
    x ceil(box/size) bilinear samples of its footprint, an antialiased downscale (close to
    PIL's, which weighs a footprint twice as wide with a triangle); an upscale is plain
    bilinear, as PIL's. Fractional boxes (the evaluation crop) are taken as they are.
    """
    from torchvision.ops import roi_align

    device = images[0].device
    sizes = [(int(img.shape[1]), int(img.shape[2])) for img in images]
    total = sum(h * w for h, w in sizes)
    places, height, width = shelf_layout(sizes, int(1.5 * total ** 0.5))
    canvas = torch.zeros(1, 3, height, width, device=device)
    for img, (top, left), (h, w) in zip(images, places, sizes, strict=True):
        canvas[0, :, top:top + h, left:left + w].copy_(img)  # uint8 -> float on the way
    shift = torch.tensor([[left, top, left, top] for top, left in places],
                         dtype=torch.float32).to(device, non_blocking=True)
    rois = torch.cat([torch.zeros(len(images), 1, device=device), boxes.to(device) + shift], 1)
    out = roi_align(canvas, rois, (size, size), spatial_scale=1.0, sampling_ratio=-1,
                    aligned=True)
    out = torch.where(flips.to(device).view(-1, 1, 1, 1), out.flip(-1), out)
    return out.contiguous(memory_format=torch.channels_last)
