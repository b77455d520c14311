"""Datasets small enough to live on the training device as one uint8 tensor (CIFAR-sized)."""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch import Tensor

from senet.data.augment import Normalizer, crop_flip
from senet.data.base import Batch, epoch_generator, short_digest, small_ops_threads
from senet.data.subset import stratified_subset
from senet.errors import SenetError


class TensorData:
    """Train/val images held as uint8 (N,3,H,W) channels_last tensors on the device.

    Training batches get pad-and-crop plus horizontal-flip augmentation, all batched on the
    device. The random draws for an epoch are made up front on a CPU generator seeded from
    (seed, epoch), so the batches are identical on every device and on every resume.
    """

    def __init__(
        self,
        *,
        name: str,
        class_names: list[str],
        train_images: Tensor,
        train_labels: Tensor,
        val_images: Tensor,
        val_labels: Tensor,
        mean: list[float],
        std: list[float],
        device: torch.device,
        seed: int,
        batch_size: int,
        source: str,
        digest: str,
        pad: int = 4,
        flip: bool = True,
    ) -> None:
        if batch_size < 1:
            raise SenetError(f"batch size must be at least 1, got {batch_size}")
        if train_images.shape[0] < batch_size:
            raise SenetError(
                f"{name}: batch size {batch_size} is larger than the training set "
                f"({train_images.shape[0]} images); lower the batch size or the subset"
            )
        self.name = name
        self.class_names = list(class_names)
        self.num_classes = len(class_names)
        self.image_size = int(train_images.shape[-1])
        self.train_len = int(train_images.shape[0])
        self.val_len = int(val_images.shape[0])
        self.source = source
        self.digest = digest
        self.mean, self.std = list(mean), list(std)
        self.device = torch.device(device)
        self.seed = seed
        self.batch_size = batch_size
        self.pad = pad
        self.flip = flip
        self.from_cache = False  # set by loaders that keep a decoded copy on disk
        self._train_x = _to_device(train_images, self.device)
        self._train_y = train_labels.to(self.device, torch.int64)
        self._val_x = _to_device(val_images, self.device)
        self._val_y = val_labels.to(self.device, torch.int64)
        self._normalize = Normalizer(self.mean, self.std, self.device)

    def steps_per_epoch(self) -> int:
        return self.train_len // self.batch_size  # the last incomplete batch is dropped

    def epoch_plan(self, epoch: int) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """The epoch's order, crop offsets and flips, drawn on CPU in a fixed sequence."""
        gen = epoch_generator(self.seed, epoch)
        n = self.train_len
        order = torch.randperm(n, generator=gen)
        offset_y = torch.randint(0, 2 * self.pad + 1, (n,), generator=gen)
        offset_x = torch.randint(0, 2 * self.pad + 1, (n,), generator=gen)
        flip = torch.rand(n, generator=gen) < 0.5
        if not self.flip:
            flip.zero_()
        return order, offset_y, offset_x, flip

    def train_batches(self, epoch: int) -> Iterator[Batch]:
        # One host-to-device copy per epoch rather than four small ones per batch.
        plan = [t.to(self.device) for t in self.epoch_plan(epoch)]
        order, offset_y, offset_x, flip = plan
        bs = self.batch_size
        for start in range(0, self.steps_per_epoch() * bs, bs):
            sl = slice(start, start + bs)
            with small_ops_threads(self.device):
                idx = order[sl]
                x = crop_flip(self._train_x, idx, offset_y[sl], offset_x[sl], flip[sl], self.pad)
                batch = self._normalize(x), self._train_y[idx]
            yield batch

    def val_batches(self) -> Iterator[Batch]:
        for start in range(0, self.val_len, self.batch_size):
            sl = slice(start, start + self.batch_size)
            with small_ops_threads(self.device):
                batch = self._normalize(self._val_x[sl]), self._val_y[sl]
            yield batch


def _to_device(images: Tensor, device: torch.device) -> Tensor:
    if images.dtype != torch.uint8 or images.dim() != 4:
        shape = tuple(images.shape)
        raise ValueError(f"expected uint8 (N,C,H,W) images, got {images.dtype} {shape}")
    return images.to(device).contiguous(memory_format=torch.channels_last)


def build_tensor_data(
    *,
    name: str,
    class_names: list[str],
    train: tuple[Tensor, Tensor],
    val: tuple[Tensor, Tensor],
    stats: tuple[list[float], list[float]],
    device: torch.device,
    subset: int | None,
    seed: int,
    batch_size: int,
    train_size: int | None,
    source: str,
    digest: str,
) -> TensorData:
    """TensorData after the checks and the subset every in-memory dataset shares.

    stats come from the full training set, so a subset run normalises like a full run.
    """
    train_x, train_y = train
    side = int(train_x.shape[-1])
    if train_size is not None and train_size != side:
        raise SenetError(
            f"{name}: train_size {train_size} does not apply; its images are {side}x{side} "
            "(train_size is for imagenet-style datasets); leave it unset"
        )
    if subset is not None:
        keep = stratified_subset(train_y, subset, len(class_names))
        train_x, train_y = train_x[keep], train_y[keep]
        digest = short_digest(digest, f"subset={subset}")
    return TensorData(
        name=name,
        class_names=class_names,
        train_images=train_x,
        train_labels=train_y,
        val_images=val[0],
        val_labels=val[1],
        mean=stats[0],
        std=stats[1],
        device=device,
        seed=seed,
        batch_size=batch_size,
        source=source,
        digest=digest,
    )
